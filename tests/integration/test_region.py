"""Issue 17 through the session pipeline: province and city reach sms.messages, and `why` (dashboards/
why.py over the warehouse) names a regional outage's province and code, a failing template, and
nothing for normal traffic, driven by the simulator's scenario switches."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from sms_analytics.dashboards.why import why, why_against
from sms_analytics.runtime import Runtime
from sms_analytics.simulate.driver import drive
from sms_analytics.simulate.payloads.aliyun import ALIYUN_RECEIPT_FAILURES, aliyun_report, aliyun_send
from sms_analytics.simulate.scenarios import parse_scenario
from tests.conftest import TOKEN, eventually, rows
from tests.integration.test_adhoc import run_cli

pytestmark = pytest.mark.pipeline


async def test_province_and_city_reach_the_messages_view(pipeline: Runtime, http: Any) -> None:
    run = f"region{time.time_ns() % 10**9}"
    sent = time.time() - 60
    posts = [  # a send and its receipt (广东 广州), and a receipt only (北京), a foreign number (unknown)
        ("/v1/sends/aliyun", aliyun_send(["13500000000"], sign_name="阿里云", template_code="SMS_1",
                                         request_id=f"{run}-r", sent_at=sent, biz_id=f"{run}-1")),
        ("/callbacks/aliyun/sms-report", [
            aliyun_report("13500000000", f"{run}-1", send_time=sent, report_time=sent + 2, err_code="DELIVERED",
                          err_msg="用户接收成功"),
            aliyun_report("18600000001", f"{run}-2", send_time=sent, report_time=sent + 2, err_code="DELIVERED",
                          err_msg="用户接收成功")]),
    ]
    for path, body in posts:
        async with http.post(f"{path}?token={TOKEN}", data=orjson.dumps(body)) as resp:
            assert resp.status in (200, 202), await resp.text()

    async def both() -> dict[str, tuple[str, str, str]] | None:
        got = await rows(pipeline, f"SELECT message_id, province, city, status FROM sms.messages "
                                   f"WHERE message_id LIKE '{run}-%'")
        found = {r["message_id"]: (r["province"], r["city"], r["status"]) for r in got}
        return found if len(found) == 2 and all(v[2] == "delivered" for v in found.values()) else None

    found = await eventually(both, timeout=30)
    assert found == {f"{run}-1": ("广东", "广州", "delivered"), f"{run}-2": ("北京", "北京", "delivered")}

    # A conversion's part knows no province (migrations/0013): folded after the delivery's, it leaves it.
    conversion = [{"provider": "aliyun", "message_id": f"{run}-1", "phone": "13500000000",
                   "converted_at": datetime.fromtimestamp(sent + 5, UTC).isoformat()}]
    async with http.post(f"/v1/conversions?token={TOKEN}", data=orjson.dumps(conversion)) as resp:
        assert resp.status == 202, await resp.text()

    async def converted() -> tuple[str, str] | None:
        got = await rows(pipeline, f"SELECT province, city FROM sms.messages WHERE message_id = '{run}-1' "
                                   "AND converted_at IS NOT NULL")
        return (got[0]["province"], got[0]["city"]) if got else None

    assert await eventually(converted, timeout=30) == ("广东", "广州")


SEGMENT = 4.0  # seconds of traffic per phase: normal, regional outage, normal, template failure
TEMPLATE = "SMS_153055065"


async def test_why_names_the_province_and_code_of_a_regional_outage_and_the_failing_template(
        pipeline: Runtime) -> None:
    scenarios = [parse_scenario(f"outage:mobile@广东:0:{SEGMENT}:{SEGMENT}"),
                 parse_scenario(f"template:{TEMPLATE}:0:{3 * SEGMENT}:{SEGMENT}")]
    started = time.time()
    truth = await drive(pipeline.receiver_url, duration=4 * SEGMENT, rate=150, seed=17, token=TOKEN,
                        outage=scenarios)
    ms = [int((started + i * SEGMENT) * 1000) for i in range(5)]
    decided = truth.aliyun.delivered + truth.aliyun.failed - truth.aliyun.submit_failed

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        assert pipeline.warehouse is not None
        columns, data = pipeline.warehouse.query(sql)
        return list(columns), [tuple(r) for r in data]

    async def landed() -> int | None:
        got = await rows(pipeline, "SELECT count() AS n FROM sms.messages WHERE provider = 'aliyun' AND "
                                   f"sent_at >= fromUnixTimestamp64Milli(toInt64({ms[0]}), 'UTC') AND "
                                   "status IN ('delivered', 'failed')")
        return got[0]["n"] if got[0]["n"] >= decided else None

    await eventually(landed, timeout=40, interval=0.5)
    # The scope of the alert it would explain: provider × carrier (a 广东移动 outage drops aliyun/mobile).
    regional = why(query, "aliyun", "mobile", ms[1], ms[2])
    named = [(c.dimension, c.value) for c in regional]
    code_of_outage = ALIYUN_RECEIPT_FAILURES["移动"][0][0]  # a narrowed outage fails with its table's first code
    assert [v for d, v in named if d == "province"][:1] == ["广东"], regional
    assert [v for d, v in named if d == "error_code"][:1] == [code_of_outage], regional
    assert next(c for c in regional if c.dimension == "error_code").meaning

    template = why(query, "aliyun", None, ms[3], ms[4])
    assert [(c.dimension, c.value) for c in template][:1] == [("template", TEMPLATE)], template
    assert not [c for c in template if c.dimension == "province"], template

    assert why_against(query, "aliyun", None, (ms[2], ms[3]), [(ms[0], ms[1])]) == []

    # The command, through the running process's query endpoint, prints the same.
    until = datetime.fromtimestamp(ms[2] / 1000, UTC).isoformat()
    env = {**os.environ, "SMS_QUERY_PORT": pipeline.query_url.rsplit(":", 1)[1]}
    code, out, err = await run_cli(env, "why", "--provider", "aliyun", "--carrier", "移动", "--since", f"{SEGMENT:g}s",
                                   "--until", until)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("aliyun × mobile, ") and len(lines) == 1 + len(regional), out
    assert "province=广东" in out and f"error_code={code_of_outage}" in out and "meaning: " in out


async def test_why_on_a_chdb_path_with_nothing_in_it(tmp_path: Path) -> None:
    env = {**os.environ, "SMS_DATA_DIR": str(tmp_path)}
    code, _, err = await run_cli(env, "migrate")
    assert code == 0, err
    code, out, err = await run_cli(env, "why", "--provider", "kx", "--url", f"chdb://{tmp_path / 'warehouse'}",
                                   "--baseline", "week")
    assert code == 0, err
    assert out.startswith("kx, ") and "baseline week: nothing explains a drop" in out
