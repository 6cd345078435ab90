"""The provider-side feeds of issue 16 through the real broker, sink and warehouse: Alibaba
QuerySendStatistics (official SDK against the Alibaba simulator) fills sms.provider_stats with a
China-time day that agrees with our own counts of the same messages (sent through the simulator,
posted to the receiver, their receipts pushed) and shows in sms.reconciliation; Tencent
SmsPackagesStatistics (official SDK against the Tencent simulator, in the quota-low scenario) lands
in sms.provider_balance beside KX's balance."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import pytest

from sms_analytics.model.times import CHINA
from sms_analytics.runtime import Runtime
from sms_analytics.simulate.aliyun import AliyunSimulator
from sms_analytics.simulate.tencent import TencentSimulator
from sms_analytics.sources.aliyun.client import AliyunClient
from sms_analytics.sources.aliyun.feeds import AliyunStatistics
from sms_analytics.sources.tencent.client import TencentClient
from sms_analytics.sources.tencent.feeds import TencentQuota
from tests.conftest import TOKEN, eventually, rows, serve

pytestmark = pytest.mark.pipeline
OUTCOMES = ("delivered",) * 4 + ("failed", "pending")


async def _send_through(sim: AliyunSimulator, client: AliyunClient, http: aiohttp.ClientSession) -> list[str]:
    """Six sends through the SDK, each posted to the receiver; four delivered, one failed, one pending
    (their receipts pushed by the simulator's §11.3 HTTP push)."""
    biz_ids = []
    for outcome in OUTCOMES:
        phone = f"139{random.randrange(10**8):08d}"
        answer = await client.send_sms([phone], "阿里云", "SMS_153055065", {"code": "1234"})
        body = {"request": {"PhoneNumbers": phone, "SignName": "阿里云", "TemplateCode": "SMS_153055065"},
                "response": answer}
        async with http.post(f"/v1/sends/aliyun?token={TOKEN}", data=msgspec.json.encode(body)) as resp:
            assert resp.status == 202
        biz_ids.append(answer["BizId"])
        if outcome != "pending":
            sim.report(answer["BizId"], phone, delivered=outcome == "delivered",
                       err_code="DELIVERED" if outcome == "delivered" else "MK:0001")
    await sim.flush_pushes(http)
    return biz_ids


async def test_alibaba_statistics_agree_with_our_counts(pipeline: Runtime) -> None:
    assert pipeline.publisher is not None
    key = f"LTAIrec{random.randrange(10**8):08d}"  # the tests share one warehouse
    sim = AliyunSimulator(access_key_id=key, access_key_secret="rec-secret",  # BizIds of its own: the
                         rng_seed=random.randrange(2, 10**9))  # default seed repeats test_feeds' BizIds
    runner, url = await serve(sim.app())
    try:
        client = AliyunClient(access_key_id=key, access_key_secret="rec-secret", endpoint=url.removeprefix("http://"),
                              protocol="http")
        sim.push_to(f"{pipeline.receiver_url}/callbacks/aliyun/sms-report?token={TOKEN}", None)
        async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
            biz_ids = await _send_through(sim, client, http)
        feed = AliyunStatistics(client, key, pipeline.publisher.publish)
        await feed.poll()
        assert feed.stats.records == 1  # today, domestic (nothing yesterday, nothing international)
    finally:
        await runner.cleanup()
    today = datetime.now(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    day = f"toDateTime({int(today.timestamp())}, 'UTC')"
    theirs_sql = (f"SELECT request_success_count, callback_success_count, callback_fail_count, period_hours "
                  f"FROM sms.provider_stats FINAL WHERE provider = 'aliyun' AND app_id = '{key}/domestic' AND hour = {day}")
    theirs = await eventually(lambda: _one(pipeline, theirs_sql), timeout=30)
    assert theirs == {"request_success_count": 6, "callback_success_count": 4, "callback_fail_count": 1,
                      "period_hours": 24}
    ids = ", ".join(f"'{b}'" for b in biz_ids)
    ours_sql = (f"SELECT count() AS sent, countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed "
                f"FROM sms.messages WHERE provider = 'aliyun' AND message_id IN ({ids})")

    async def ours_settled() -> dict[str, Any] | None:
        found = await _one(pipeline, ours_sql)
        return found if found and found["delivered"] + found["failed"] == 5 else None

    ours = await eventually(ours_settled, timeout=30)
    assert (ours["sent"], ours["delivered"], ours["failed"]) == (theirs["request_success_count"],
                                                                  theirs["callback_success_count"],
                                                                  theirs["callback_fail_count"])

    async def reconciled() -> dict[str, Any] | None:  # the rollups follow sms.messages by a refresh
        found = await _one(pipeline, f"SELECT * FROM sms.reconciliation WHERE provider = 'aliyun' AND hour = {day}")
        return found if found and found["our_sent"] >= 6 else None

    rec = await eventually(reconciled, timeout=30)
    assert rec["period_hours"] == 24 and rec["their_sent"] >= 6 and rec["their_delivered"] >= 4


async def test_tencent_quota_lands_beside_the_balances(pipeline: Runtime) -> None:
    assert pipeline.publisher is not None
    app_id = f"14{random.randrange(10**8):08d}"
    sim = TencentSimulator(secret_id="AKIDquota", secret_key="quota-key", app_id=app_id)
    runner, url = await serve(sim.app())
    try:
        client = TencentClient(secret_id="AKIDquota", secret_key="quota-key", endpoint=url.removeprefix("http://"),
                               scheme="http")
        feed = TencentQuota(client, app_id, pipeline.publisher.publish)
        await feed.poll()  # the default package: 10,000,000 left
        sim.set_quota_left(1000)  # the quota-low scenario
        await feed.poll()
        assert feed.stats.records == 2
    finally:
        await runner.cleanup()
    sql = (f"SELECT count() AS readings, argMax(balance, at) AS left_now, max(balance) AS most "
           f"FROM sms.provider_balance WHERE provider = 'tencent' AND account = '{app_id}'")

    async def both() -> dict[str, Any] | None:
        found = await _one(pipeline, sql)
        return found if found and found["readings"] == 2 else None

    assert await eventually(both, timeout=20) == {"readings": 2, "left_now": 1000, "most": 10_000_000}


async def _one(pipeline: Runtime, sql: str) -> dict[str, Any] | None:
    found = await rows(pipeline, sql)
    return found[0] if found else None
