"""The read paths (`POST /query`, `sms-analytics sql`) read the warehouse's tables and nothing else:
every table function but the row generators is refused, by ClickHouse's own parse of the statement
(`EXPLAIN AST`), wherever it stands; the host's files (/proc/self/environ holds every secret) are
never readable."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from sms_analytics.dashboards.report import http_query, last, run_panels
from sms_analytics.runtime import Parts, QueryEndpointUnprotected, Runtime
from sms_analytics.sinks.query_api import query_app
from sms_analytics.sinks.warehouse import (
    SAFE_TABLE_FUNCTIONS,
    NotReadOnly,
    unsafe_sources,
)
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


# Where a table function can stand in a statement: each one is tried in every place.
PLACES = {
    "alone": "SELECT * FROM {f}",
    "subquery": "SELECT count() FROM (SELECT * FROM {f})",
    "cte": "WITH t AS (SELECT * FROM {f}) SELECT * FROM t",
    "join": "SELECT * FROM numbers(1) AS n JOIN {f} AS t ON 1 = 1",
}


async def table_function_calls(pipeline: Runtime) -> dict[str, str]:
    """Every table function the engine lists but the generators, called with arguments it parses."""
    assert pipeline.warehouse is not None
    names = [r["name"] for r in await rows(pipeline, "SELECT name FROM system.table_functions ORDER BY name")]
    assert len(names) > 50 and {"file", "url", "s3", "remote", "input", "dictionary", "executable"} <= set(names)
    calls: dict[str, str] = {}
    for name in names:
        if name in SAFE_TABLE_FUNCTIONS:
            continue
        for args in ("'x'", "SELECT 1", "SELECT 1 ELSE null('x UInt8')"):  # the arguments' syntax differs
            try:
                await asyncio.to_thread(pipeline.warehouse.query, f"EXPLAIN AST SELECT * FROM {name}({args})")
            except DatabaseError:  # a syntax error: try the next form
                continue
            calls[name] = f"{name}({args})"
            break
        assert name in calls, f"no argument form parses for table function {name}"
    return calls


def refusals(results: dict[tuple[str, str], str], what: str) -> list[str]:
    """The (function, place) whose answer is not a refusal naming the function."""
    return [f"{name} {place}: {answer[:200]}" for (name, place), answer in results.items()
            if "only the warehouse's tables" not in answer or f"table function {name}" not in answer
            or "SMS_" in answer or "PATH=" in answer] + ([] if results else [f"{what}: nothing tried"])


async def test_every_table_function_in_every_place_is_refused_by_every_read_path(pipeline: Runtime) -> None:
    assert pipeline.warehouse is not None
    warehouse = pipeline.warehouse
    calls = await table_function_calls(pipeline)
    statements = {(name, place): form.format(f=call) for name, call in calls.items() for place, form in PLACES.items()}

    # POST /query, which `sql` and `lookup` use while a process runs
    posted = {}
    for key, sql in statements.items():
        status, body = await post_query(pipeline, sql)
        posted[key] = body if status == 403 else f"HTTP {status} {body}"
    assert not refusals(posted, "POST /query")

    # Warehouse.read: `sql` and `lookup` when no process runs, `report --url`
    def read_each() -> dict[tuple[str, str], str]:
        out = {}
        for key, sql in statements.items():
            try:
                warehouse.read(sql)
                out[key] = "answered"
            except NotReadOnly as exc:
                out[key] = str(exc)
        return out
    assert not refusals(await asyncio.to_thread(read_each), "Warehouse.read")

    # `report`: a dashboard whose panels read them, through the endpoint and directly
    dashboard = {"templating": {"list": []}, "panels": [
        {"title": f"{name} {place}", "targets": [{"rawSql": sql}], "gridPos": {"x": 0, "y": i}}
        for i, ((name, place), sql) in enumerate(statements.items())]}
    rng = last(timedelta(hours=1))
    for path, query in (("report via POST /query", http_query(pipeline.query_url)), ("report --url", warehouse.read)):
        panels = await asyncio.to_thread(run_panels, query, dashboard, rng)
        answers = {(p.title.split(" ", 1)[0], p.title.split(" ", 1)[1]): p.error or f"answered {p.rows[:1]}"
                   for p in panels}
        assert not refusals(answers, path)
    assert len(statements) == 4 * len(calls)


async def test_only_the_warehouses_own_dictionaries_are_read(pipeline: Runtime) -> None:
    own = "SELECT dictGetOrDefault('sms.template_name_dict', 'name', ('aliyun', 'SMS_0', ''), 'none') AS name"
    status, body = await post_query(pipeline, own)
    assert status == 200, body
    for sql in ("SELECT dictGet('system.secrets', 'value', toUInt64(1))",
                "SELECT dictGet(concat('sms', '.template_name_dict'), 'name', ('a', 'b', ''))",
                "SELECT 1 FROM numbers(1) WHERE dictHas('other.dict', toUInt64(number))",
                "WITH d AS (SELECT dictGetString('default.creds', 'password', toUInt64(1)) AS p) SELECT * FROM d"):
        status, body = await post_query(pipeline, sql)
        assert status == 403 and "dictionary outside sms" in body, (sql, status, body[:300])


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


def test_the_allowlist_holds_only_row_generators() -> None:
    # numbers/zeros/generate_series/primes make rows from their arguments, values from its literals,
    # view and null from a query that is itself checked; none reads a file, the network or a process.
    assert {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
                                    "primes", "values", "view", "null"} == SAFE_TABLE_FUNCTIONS


CHDB_USER_FILES = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(interface="chdb", path=sys.argv[1], chdb_options={"user_files_path": sys.argv[2]})
print(client.query("SELECT value FROM system.server_settings WHERE name = 'user_files_path'").result_rows[0][0])
print(client.query("SELECT count() FROM file('/etc/hostname', 'LineAsString')").result_rows[0][0])
"""


def test_chdb_takes_a_user_files_path_but_does_not_confine_file_to_it(tmp_path: Any) -> None:
    """Why Warehouse.open sets no user_files_path on chDB: chDB takes one, but its file() reads any path
    as clickhouse-local does, so the parse check above is the guard. If this fails, chDB confines
    file(): set user_files_path inside the data dir in Warehouse.open."""
    import subprocess

    files = tmp_path / "user_files"
    files.mkdir()
    out = subprocess.run([sys.executable, "-c", CHDB_USER_FILES, str(tmp_path / "db"), str(files)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    taken, lines = out.stdout.split()
    assert taken.rstrip("/") == str(files) and int(lines) >= 1
