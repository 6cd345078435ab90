"""Every query of the README's "Ad hoc analysis" runs on the warehouse and answers; `sql --file
--param` and `lookup` work through the running process's read-only endpoint."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sms_analytics.runtime import Runtime
from tests.conftest import HASH_KEY, TOKEN, eventually, rolled_up_within, rows

pytestmark = pytest.mark.pipeline
README = Path(__file__).resolve().parents[2] / "README.md"
CLI = str(Path(sys.executable).with_name("sms-analytics"))
CHINA = timezone(timedelta(hours=8))


def adhoc_queries() -> list[tuple[str, dict[str, str]]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Ad hoc analysis", 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```sql\n(.*?)```", section, re.S):
        params = {}
        first = block.splitlines()[0]
        if first.startswith("-- params:"):
            params = dict(p.split("=", 1) for p in first.removeprefix("-- params:").split())
        out.append((block, params))
    return out


def test_the_readme_has_at_least_ten_queries() -> None:
    assert len(adhoc_queries()) >= 10


async def seed(pipeline: Runtime) -> tuple[str, str]:
    """A few messages of template SMS_ADHOC_1 over two providers: delivered, failed (one with a code
no table has), stuck pending."""
    now = datetime.now(CHINA).replace(microsecond=0)
    biz, stuck = f"{uuid.uuid4().hex[:12]}^0", f"{uuid.uuid4().hex[:12]}^0"
    phone = f"1391{uuid.uuid4().int % 10**7:07d}"
    send = lambda b, phones, at: {"request": {"PhoneNumbers": ",".join(phones), "SignName": "阿里云",  # noqa: E731
                                              "TemplateCode": "SMS_ADHOC_1"},
                                  "response": {"Code": "OK", "Message": "OK", "RequestId": "r", "BizId": b},
                                  "sent_at": at.isoformat()}
    report = lambda p, ok, code: {"phone_number": p, "send_time": (now - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S"),  # noqa: E731
                                  "report_time": now.strftime("%Y-%m-%d %H:%M:%S"), "success": ok, "err_code": code,
                                  "err_msg": "", "sms_size": "1", "biz_id": biz, "out_id": ""}
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        for path, body in (
            ("/v1/sends/aliyun", send(biz, [phone, "13900000072", "13900000075"], now - timedelta(minutes=3))),
            ("/v1/sends/aliyun", send(stuck, ["13900000073"], now - timedelta(minutes=30))),
            ("/callbacks/aliyun/sms-report", [report(phone, True, "DELIVERED"), report("13900000072", False, "IB:0064"),
                                              report("13900000075", False, "ZZ:ADHOC")]),
            ("/v1/sends", {"provider": "tencent", "message_id": f"5000:{biz}", "phone": "+8613300000074",
                           "sent_at": (now - timedelta(minutes=2)).isoformat(), "template": "SMS_ADHOC_1"}),
        ):
            async with http.post(f"{path}?token={TOKEN}", data=orjson.dumps(body)) as resp:
                assert resp.status in (200, 202)
    return phone, stuck


async def test_every_readme_query_answers(pipeline: Runtime) -> None:
    phone, stuck = await seed(pipeline)

    async def rolled_up() -> Any:
        got = await rows(pipeline, "SELECT provider, sum(sent) AS sent FROM sms.rollup_minute "
                                   "WHERE template = 'SMS_ADHOC_1' GROUP BY provider ORDER BY provider")
        return got if [(r["provider"], r["sent"]) for r in got] == [("aliyun", 4), ("tencent", 1)] else None

    await rolled_up_within(pipeline, rolled_up)
    digest = hmac.new(HASH_KEY.encode(), f"+86{phone}".encode(), hashlib.sha256).hexdigest()
    for sql, params in adhoc_queries():
        if "hash" in params:
            params = {"hash": digest}
        columns, data = await _query(pipeline, sql, params)
        assert data, f"no rows from:\n{sql}"
        if "pending_minutes" in columns:
            assert stuck in [r[columns.index("message_id")] for r in data]
        if "delivery_rate" in columns:
            assert all(r[columns.index("delivery_rate")] is None or 0 <= r[columns.index("delivery_rate")] <= 1 for r in data)
    compare = dict(zip(*_by_provider(await _query(pipeline, adhoc_queries()[4][0], {"template": "SMS_ADHOC_1"})), strict=False))
    assert compare == {"aliyun": 0.3333, "tencent": None}  # 1 delivered, 2 failed, 1 pending; tencent all pending


def _by_provider(result: tuple[list[str], list[tuple[Any, ...]]]) -> tuple[list[str], list[Any]]:
    columns, data = result
    return [r[0] for r in data], [r[columns.index("delivery_rate")] for r in data]


async def _query(pipeline: Runtime, sql: str, params: dict[str, str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    import asyncio

    assert pipeline.warehouse is not None
    return await asyncio.to_thread(lambda: pipeline.warehouse.query(sql, params=params))


async def test_sql_file_params_and_lookup_through_the_running_process(pipeline: Runtime, tmp_path: Path) -> None:
    phone, _ = await seed(pipeline)
    await eventually(lambda: rows(pipeline, "SELECT 1 FROM sms.messages WHERE template = 'SMS_ADHOC_1' "
                                            "AND status = 'delivered'"))
    env = {**os.environ, "SMS_QUERY_PORT": pipeline.query_url.rsplit(":", 1)[1], "SMS_PHONE_HASH_KEY": HASH_KEY,
           "SMS_DATA_DIR": str(tmp_path)}
    query = tmp_path / "q.sql"
    query.write_text("SELECT count() AS n FROM sms.messages WHERE template = {t:String} AND status = {s:String}")
    code, out, err = await run_cli(env, "sql", "--file", str(query), "--param", "t=SMS_ADHOC_1", "--param", "s=delivered",
                                   "--format", "json")
    assert code == 0, err
    assert orjson.loads(out)["n"] >= 1
    code, out, err = await run_cli(env, "sql", "--file", str(query), "--param", "t=x' OR 1=1 --", "--param",
                                   "s=delivered", "--format", "json")
    assert code == 0 and orjson.loads(out)["n"] == 0, err  # a parameter is a value, not SQL
    code, out, err = await run_cli(env, "lookup", f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}", "--format", "json")
    assert code == 0, err
    history = [orjson.loads(line) for line in out.splitlines()]
    assert history and {h["phone_masked"] for h in history} == {f"{phone[:3]}****{phone[-4:]}"}
    assert phone not in out


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Without blocking the loop that serves the pipeline's query endpoint."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(CLI, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
