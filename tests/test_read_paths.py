"""The read paths (`POST /query`, `sms-analytics sql`) read the warehouse's tables and nothing else:
every table function but the row generators is refused, by ClickHouse's own parse of the statement
(`EXPLAIN AST`), wherever it stands; the host's files (/proc/self/environ holds every secret) are
never readable."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
import pytest

from sms_analytics.runtime import Parts, QueryEndpointUnprotected, Runtime
from sms_analytics.sinks.query_api import query_app
from sms_analytics.sinks.warehouse import SAFE_TABLE_FUNCTIONS, unsafe_sources
from tests.conftest import pipeline_settings, rows, serve

pytestmark = pytest.mark.pipeline
ENVIRON = "file('/proc/self/environ', 'LineAsString')"
FORMS = {
    "alone": f"SELECT * FROM {ENVIRON}",
    "aliased": f"SELECT line FROM {ENVIRON} AS f",
    "subquery": f"SELECT count() FROM (SELECT * FROM {ENVIRON})",
    "cte": f"WITH e AS (SELECT * FROM {ENVIRON}) SELECT * FROM e",
    "join": f"SELECT * FROM numbers(1) AS n JOIN {ENVIRON} AS e ON 1 = 1",
    "in": f"SELECT 1 WHERE 'x' IN (SELECT line FROM {ENVIRON})",
    "view": f"SELECT * FROM view(SELECT * FROM {ENVIRON})",
    "describe": f"DESCRIBE TABLE {ENVIRON}",
    "explain": f"EXPLAIN SELECT * FROM {ENVIRON}",
    "scalar": "SELECT file('/proc/self/environ')",
    "union": f"SELECT 'a' AS line UNION ALL SELECT line FROM {ENVIRON}",
}


async def post_query(pipeline: Runtime, sql: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{pipeline.query_url}/query?format=json", data=sql.encode()) as resp:
            return resp.status, await resp.text()


def test_unsafe_sources_reads_the_parse_tree() -> None:
    ast = "\n".join([
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        "  SelectQuery (children 2)",
        "   ExpressionList (children 1)",
        "    Function file (children 1)",
        "   TablesInSelectQuery (children 2)",
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        "      Function numbers (children 1)",
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        "      Function url (alias u) (children 1)",
        "       ExpressionList (children 1)",
        "        Function concat (children 1)",
    ])
    assert unsafe_sources(ast) == ["function file", "table function url"]
    assert unsafe_sources(ast.replace("Function file", "Function lower").replace("url", "zeros")) == []


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_the_environment_is_never_readable(pipeline: Runtime, form: str) -> None:
    status, body = await post_query(pipeline, FORMS[form])
    assert status == 403, (status, body[:300])
    assert "only the warehouse's tables" in body and "file" in body
    assert "SMS_" not in body and "PATH=" not in body


async def test_every_table_function_but_the_generators_is_refused(pipeline: Runtime) -> None:
    names = [r["name"] for r in await rows(pipeline, "SELECT name FROM system.table_functions ORDER BY name")]
    assert len(names) > 50 and {"file", "url", "s3", "remote", "input", "dictionary"} <= set(names)
    refused: dict[str, int] = {}
    for name in names:
        if name in SAFE_TABLE_FUNCTIONS:
            continue
        for args in ("'x'", "SELECT 1", "SELECT 1 ELSE null('x UInt8')"):  # the arguments' syntax differs
            status, body = await post_query(pipeline, f"SELECT * FROM (SELECT 1 FROM {name}({args})) LIMIT 1")
            if "Syntax error" not in body:
                break
        refused[name] = status
        assert status == 403 and f"table function {name}" in body, (name, status, body[:300])
    assert len(refused) == len(names) - len(SAFE_TABLE_FUNCTIONS & set(names))


async def test_the_row_generators_and_the_tables_still_read(pipeline: Runtime) -> None:
    for sql in ("SELECT sum(number) AS n FROM numbers(10)", "SELECT count() AS n FROM zeros(3)",
                "SELECT count() AS n FROM sms.messages", "SELECT count() AS n FROM view(SELECT 1)",
                "EXPLAIN SELECT count() FROM sms.messages", "SHOW TABLES FROM sms"):
        status, body = await post_query(pipeline, sql)
        assert status == 200, (sql, body[:300])


async def test_the_sql_command_refuses_the_same(pipeline: Runtime) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "KAFKA_", "CLICKHOUSE_"))}
    host, port = pipeline.query_url.removeprefix("http://").rsplit(":", 1)
    env.update(SMS_QUERY_HOST=host, SMS_QUERY_PORT=port, SMS_DATA_DIR=str(pipeline.settings.sms_data_dir))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sms_analytics.cli", "sql", FORMS["cte"], env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)  # the pipeline answers on this same event loop
    assert proc.returncode != 0 and "only the warehouse's tables" in err.decode(), (proc.returncode, err[-500:])
    assert b"SMS_" not in out


async def test_the_query_endpoint_requires_its_token_when_it_has_one(pipeline: Runtime) -> None:
    assert pipeline.warehouse is not None
    runner, url = await serve(query_app(pipeline.warehouse, pipeline.readiness, token="q-token-0123456789"))
    try:
        async with aiohttp.ClientSession() as session:
            for headers, want in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                  ({"Authorization": "Bearer q-token-0123456789"}, 200)):
                async with session.post(f"{url}/query", data=b"SELECT 1 AS one", headers=headers) as resp:
                    assert resp.status == want, (headers, await resp.text())
            async with session.get(f"{url}/healthz") as resp:  # health stays open to probes
                assert resp.status in (200, 503)
    finally:
        await runner.cleanup()


async def test_a_query_endpoint_beyond_loopback_needs_a_token(tmp_path: Any) -> None:
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        runtime = Runtime(pipeline_settings(tmp_path, sms_query_host=host, sms_query_token=None),
                          Parts(receiver=False, worker=False, sink=False, query=True))
        with pytest.raises(QueryEndpointUnprotected, match="SMS_QUERY_TOKEN"):
            await runtime.start()
