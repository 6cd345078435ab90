"""Pull feeds against the provider simulators, through the real broker, worker and warehouse:
records fetched by a poll land in sms.messages / sms.replies / sms.provider_balance; a receipt
delivered by both a push and a poll counts once; a poller's spool survives a restart."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from sms_analytics.runtime import Runtime
from sms_analytics.simulate.kx import KxSimulator
from sms_analytics.sources.base.feed import Checkpoint
from sms_analytics.sources.kx.client import KxClient
from sms_analytics.sources.kx.feeds import KxBalance, kx_reports, kx_uplink
from sms_analytics.sources.kx.parsers import Kx
from sms_analytics.sources.producer import BrokerUnavailable
from tests.conftest import TOKEN, eventually, rows, serve

pytestmark = pytest.mark.pipeline


@pytest_asyncio.fixture
async def kx() -> AsyncIterator[tuple[KxSimulator, KxClient]]:
    # A seed of its own: the simulator's taskids follow its seed, and tests share one warehouse.
    sim = KxSimulator(userid="100001", apikey="kx-test-key", report_delay=None, rng_seed=random.randrange(1 << 30))
    runner, url = await serve(sim.app())
    client = KxClient(url, "100001", "kx-test-key")
    yield sim, client
    await client.close()
    await runner.cleanup()


def kx_ids(pipeline: Runtime) -> Kx:
    return Kx(pipeline_ids(pipeline))


def pipeline_ids(pipeline: Runtime) -> Any:
    from sms_analytics.model.phone import PhoneHasher
    from sms_analytics.sources.base.fields import Identities

    return Identities(PhoneHasher(pipeline.settings.sms_phone_hash_key.get_secret_value().encode()))


async def run_until(feed: Any, condition: Any, timeout: float = 30.0) -> Any:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        return await eventually(condition, timeout=timeout)
    finally:
        stop.set()
        await task


async def test_kx_mtquery_receipts_and_push_plus_poll_count_once(pipeline: Runtime, kx: Any, tmp_path: Path) -> None:
    sim, client = kx
    response = await client.send(["15996480001", "15996480002"], "【邦邦快递】您的快递已到")
    taskid = response["data"]["taskid"]
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        async with http.post(f"/v1/sends/kx?token={TOKEN}", data=orjson.dumps({
            "request": {"userid": "100001", "ts": "1", "sign": "s", "mobile": "15996480001,15996480002",
                        "msgcontent": "【邦邦快递】您的快递已到"}, "response": response})) as resp:
            assert resp.status == 202
        assert sim.report_for_all() == 2
        sim.queue_report(taskid, "15996480002", code="DELIVRD")  # KX may report a number twice
        # The same receipt also arrives by push: it must count once.
        pushed = [{"time": r["time"], "taskid": r["taskid"], "code": r["code"], "msg": r["msg"], "mobile": r["mobile"]}
                  for r in sim_reports(sim) if r["mobile"] == "15996480001"]
        async with http.post(f"/callbacks/kx/report?token={TOKEN}", data=orjson.dumps(pushed)) as resp:
            assert await resp.text() == "SUCCESS"
    feed = kx_reports(client, kx_ids(pipeline), pipeline.publisher.publish, tmp_path, interval=0.2, rate=50)

    async def delivered() -> Any:
        got = await rows(pipeline, f"SELECT phone_masked, status, receipt_count FROM sms.messages "
                                   f"WHERE provider = 'kx' AND message_id = '{taskid}' ORDER BY phone_masked")
        return got if [r["status"] for r in got] == ["delivered", "delivered"] else None

    got = await run_until(feed, delivered)
    assert [r["receipt_count"] for r in got] == [1, 1] and feed.stats.records >= 3
    assert await client.mt_query() == []  # each record is returned once


def sim_reports(sim: KxSimulator) -> list[dict[str, Any]]:
    return [p.body for p in sim._reports]


async def test_kx_spool_survives_a_failed_publish_and_a_restart(pipeline: Runtime, kx: Any, tmp_path: Path) -> None:
    sim, client = kx
    response = await client.send(["15996480003"], "【邦邦快递】取件码 1234")
    taskid = response["data"]["taskid"]
    sim.report_for_all()

    async def broker_down(*args: Any) -> None:
        raise BrokerUnavailable("broker unreachable")

    failing = kx_reports(client, kx_ids(pipeline), broker_down, tmp_path, interval=0.1, rate=50, max_backoff=0.2)
    await run_until(failing, lambda: failing.stats.errors >= 2)
    spooled = Checkpoint(tmp_path / "feeds" / "kx.mtquery.json").load()["pending"]
    assert [r["taskid"] for r in spooled] == [taskid]
    assert await client.mt_query() == []  # KX will never return it again: only the spool has it

    restarted = kx_reports(client, kx_ids(pipeline), pipeline.publisher.publish, tmp_path, interval=0.1, rate=50)
    got = await run_until(restarted, lambda: rows_where(pipeline, f"provider = 'kx' AND message_id = '{taskid}'"))
    assert got[0]["status"] == "delivered" and got[0]["sent_at"] is None  # receipt-only: the send was never posted
    assert Checkpoint(tmp_path / "feeds" / "kx.mtquery.json").load() == {"pending": []}


async def rows_where(pipeline: Runtime, where: str) -> list[dict[str, Any]]:
    return await rows(pipeline, f"SELECT * FROM sms.messages WHERE {where}")


async def test_kx_moquery_and_balance(pipeline: Runtime, kx: Any, tmp_path: Path) -> None:
    sim, client = kx
    text = f"上行 {tmp_path.name}"
    sim.queue_mo("15996480329", text)
    uplink = kx_uplink(client, kx_ids(pipeline), pipeline.publisher.publish, tmp_path, interval=0.1, rate=50)
    got = await run_until(uplink, lambda: rows(pipeline, f"SELECT provider, phone_masked FROM sms.replies "
                                                        f"WHERE content = '{text}'"))
    assert got == [{"provider": "kx", "phone_masked": "159****0329"}]
    account = f"acct-{tmp_path.name[-8:]}"
    balance = KxBalance(client, account, pipeline.publisher.publish, interval=0.1, rate=50)
    got = await run_until(balance, lambda: rows(pipeline, f"SELECT balance FROM sms.provider_balance "
                                                         f"WHERE account = '{account}'"))
    assert got[0]["balance"] == sim.balance


async def test_mns_smsreport_queue_into_the_warehouse(pipeline: Runtime, tmp_path: Path) -> None:
    from sms_analytics.simulate.mns import MnsSimulator
    from sms_analytics.sources.aliyun.mns import MnsConsumer
    from sms_analytics.sources.aliyun.parsers import Aliyun

    sim = MnsSimulator(access_id="mns-id", access_key="mns-key", visibility_timeout=5)
    runner, url = await serve(sim.app())
    biz = f"{tmp_path.name[-10:]}^0"
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)
    for phone, ok in (("13900000041", True), ("13900000042", False)):
        sim.send("Alicom-Queue-report", {"phone_number": phone, "success": ok, "biz_id": biz, "out_id": "",
                                         "send_time": (now - timedelta(seconds=9)).strftime("%Y-%m-%d %H:%M:%S"),
                                         "report_time": now.strftime("%Y-%m-%d %H:%M:%S"),
                                         "err_code": "DELIVERED" if ok else "IB:0064", "err_msg": "", "sms_size": "1"})
    sim.send("Alicom-Queue-report", "not json at all")
    consumer = MnsConsumer(endpoint=url, access_id="mns-id", access_key="mns-key", queue="Alicom-Queue-report",
                           kind="SmsReport", publish=pipeline.publisher.publish,
                           parse=Aliyun(pipeline_ids(pipeline)).receipts, wait_seconds=1)
    try:
        got = await run_until(consumer, lambda: _two(rows(pipeline, f"SELECT phone_masked, status, failure_category, "
                                                                  f"latency_ms FROM sms.messages WHERE message_id = '{biz}' "
                                                                  f"ORDER BY phone_masked")))
    finally:
        await runner.cleanup()
    assert [(r["status"], r["failure_category"], r["latency_ms"]) for r in got] == [
        ("delivered", "delivered", 9000), ("failed", "unreachable", 9000)]
    assert sim.size("Alicom-Queue-report") == 0 and consumer.stats.rejected == 1  # dead-lettered, then deleted


async def _two(coro: Any) -> Any:
    got = await coro
    return got if len(got) == 2 else None


@pytest_asyncio.fixture
async def tencent() -> AsyncIterator[tuple[Any, Any]]:
    from sms_analytics.simulate.tencent import TencentSimulator
    from sms_analytics.sources.tencent.client import TencentClient

    sim = TencentSimulator(secret_id="AKIDtest", secret_key="tencent-test-key", app_id="1400006666")
    runner, url = await serve(sim.app())
    yield sim, TencentClient(secret_id="AKIDtest", secret_key="tencent-test-key", endpoint=url.removeprefix("http://"),
                             scheme="http")
    await runner.cleanup()


async def test_tencent_pulls_statistics_and_compensation(pipeline: Runtime, tencent: Any, tmp_path: Path) -> None:
    import time as clock

    from sms_analytics.model.events import CompensationRequest
    from sms_analytics.sources.compensation import Compensator
    from sms_analytics.sources.tencent.feeds import TencentStatistics, by_phone, tencent_replies, tencent_statuses
    from sms_analytics.sources.tencent.parsers import Tencent

    sim, client = tencent
    provider = Tencent(pipeline_ids(pipeline))
    sent = await client.send_sms("1400006666", ["+8613800000051", "+8613100000052", "+8613300000053"], "1110", "腾讯云")
    serials = [s["SerialNo"] for s in sent["SendStatusSet"]]
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        async with http.post(f"/v1/sends/tencent?token={TOKEN}", data=orjson.dumps({
            "request": {"PhoneNumberSet": ["+8613800000051", "+8613100000052", "+8613300000053"],
                        "SmsSdkAppId": "1400006666", "TemplateId": "1110", "SignName": "腾讯云"},
            "response": {"Response": sent}})) as resp:
            assert resp.status == 202
    at = clock.time() - 5
    sim.report(serials[0], at=at)
    sim.report(serials[1], delivered=False, errmsg="DB:0005", description="空号", at=at)
    sim.add_reply("+8613800000051", f"TD {tmp_path.name}")

    statuses = tencent_statuses(client, "1400006666", provider, pipeline.publisher.publish, tmp_path, interval=0.1, rate=50)
    where = "provider = 'tencent' AND message_id IN (" + ", ".join(f"'{s}'" for s in serials) + ")"
    got = await run_until(statuses, lambda: _n(rows(pipeline, f"SELECT message_id, status, failure_category FROM sms.messages "
                                                              f"WHERE {where} AND status != 'pending'"), 2))
    by_id = {r["message_id"]: r for r in got}
    assert (by_id[serials[0]]["status"], by_id[serials[1]]["failure_category"]) == ("delivered", "invalid_number")
    assert await client.pull_send_status("1400006666") == []  # each status is returned once

    replies = tencent_replies(client, "1400006666", provider, pipeline.publisher.publish, tmp_path, interval=0.1, rate=50)
    got = await run_until(replies, lambda: rows(pipeline, f"SELECT phone_masked FROM sms.replies WHERE content = 'TD {tmp_path.name}'"))
    assert got == [{"phone_masked": "138****0051"}]

    # Compensation: the third message is still pending; the provider knows it by now. Its number also
    # replied, and the pulls missed that reply: PullSmsReplyStatusByPhoneNumber fills it in.
    sim.report(serials[2], at=clock.time() - 2)
    assert len(await client.pull_send_status("1400006666")) == 1  # consumed: only the by-phone query can find it now
    sim.add_reply("+8613300000053", f"missed {tmp_path.name}")
    assert len(await client.pull_reply_status("1400006666")) == 1  # consumed too
    from aiokafka import AIOKafkaProducer

    from sms_analytics.model import topics
    from sms_analytics.model.events import encode

    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
    await producer.start()
    request = CompensationRequest(provider="tencent", message_id=serials[2], phone="+8613300000053",
                                  sent_at_ms=int((clock.time() - 60) * 1000), asked_at_ms=int(clock.time() * 1000))
    await producer.send_and_wait(topics.COMPENSATION, encode(request))
    await producer.stop()
    compensator = Compensator(pipeline.bootstrap, f"test-compensation-{tmp_path.name}", pipeline.publisher.publish,
                              askers={"tencent": by_phone(client, ["1400006666"], provider)}, interval=0.1, rate=50)
    got = await run_until(compensator, lambda: rows(pipeline, f"SELECT status FROM sms.messages WHERE message_id = "
                                                             f"'{serials[2]}' AND status = 'delivered'"), timeout=40)
    assert got and compensator.answered >= 2  # the status and the reply
    missed = f"SELECT phone_masked FROM sms.replies FINAL WHERE content = 'missed {tmp_path.name}'"
    assert await eventually(lambda: rows(pipeline, missed)) == [{"phone_masked": "133****0053"}]
    again = await by_phone(client, ["1400006666"], provider)(request)  # asked again: the same reply_id
    await pipeline.publisher.publish(again.events, [], "test")
    await asyncio.sleep(1.5)  # the sink has written the second copy (SMS_SINK_FLUSH_SECONDS < 1 s)
    assert await rows(pipeline, missed) == [{"phone_masked": "133****0053"}]

    hour_ms = int(clock.time() * 1000) // 3_600_000 * 3_600_000
    stats = TencentStatistics(client, "1400006666", pipeline.publisher.publish, tmp_path, interval=0.1, rate=50,
                              backfill_hours=0)
    stats.checkpoint.save({"next_hour_ms": hour_ms})
    stats.settle_ms = -3_600_000  # pull the current hour now (a test may not wait for it to end)
    got = await run_until(stats, lambda: rows(pipeline, f"SELECT request_success_count, callback_success_count, "
                                                       f"callback_fail_count, invalid_number_count FROM sms.provider_stats FINAL "
                                                       f"WHERE provider = 'tencent' AND hour = toDateTime({hour_ms // 1000}, 'UTC') "
                                                       f"AND request_success_count > 0"))
    assert got[0]["request_success_count"] >= 3 and got[0]["callback_fail_count"] >= 1
    assert stats.checkpoint.load() == {"next_hour_ms": hour_ms + 3_600_000}  # survives a restart


async def _n(coro: Any, n: int) -> Any:
    got = await coro
    return got if len(got) == n else None


async def test_aliyun_query_send_details_compensation_and_http_push(pipeline: Runtime, tmp_path: Path) -> None:
    import time as clock

    from aiokafka import AIOKafkaProducer

    from sms_analytics.model import topics
    from sms_analytics.model.events import CompensationRequest, encode
    from sms_analytics.simulate.aliyun import AliyunSimulator
    from sms_analytics.sources.aliyun.client import AliyunClient
    from sms_analytics.sources.aliyun.feeds import query_send_details
    from sms_analytics.sources.aliyun.parsers import Aliyun
    from sms_analytics.sources.compensation import Compensator

    sim = AliyunSimulator(access_key_id="LTAItest", access_key_secret="aliyun-test-secret")
    runner, url = await serve(sim.app())
    client = AliyunClient(access_key_id="LTAItest", access_key_secret="aliyun-test-secret",
                          endpoint=url.removeprefix("http://"), protocol="http")
    try:
        phones = ["13900000061", "13900000062"]
        sent = await client.send_sms(phones, "阿里云", "SMS_153055065")
        biz = sent["body"]["BizId"] if "body" in sent else sent["BizId"]
        async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
            async with http.post(f"/v1/sends/aliyun?token={TOKEN}", data=orjson.dumps({
                "request": {"PhoneNumbers": ",".join(phones), "SignName": "阿里云", "TemplateCode": "SMS_153055065"},
                "response": sent.get("body", sent)})) as resp:
                assert resp.status == 202
            # One receipt comes by the HTTP batch push (with the documented retry until {"code":0}) ...
            sim.push_to(f"{pipeline.receiver_url}/callbacks/aliyun/sms-report?token={TOKEN}", None)
            sim.report(biz, phones[0], at=clock.time() - 3)
            assert (await sim.flush_pushes(http))["reports"] == 1
        # ... the other is found only by QuerySendDetails, when the stream asks about it.
        sim.push_to(None, None)
        sim.report(biz, phones[1], delivered=False, err_code="IB:0064", at=clock.time() - 2)
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
        await producer.start()
        for phone in phones:  # asking about the pushed one too: the query's copy must count once
            await producer.send_and_wait(topics.COMPENSATION, encode(CompensationRequest(
                provider="aliyun", message_id=biz, phone=f"+86{phone}", sent_at_ms=int(clock.time() * 1000) - 60_000,
                asked_at_ms=int(clock.time() * 1000))))
        await producer.stop()
        compensator = Compensator(pipeline.bootstrap, f"test-aliyun-comp-{tmp_path.name}", pipeline.publisher.publish,
                                  askers={"aliyun": query_send_details(client, Aliyun(pipeline_ids(pipeline)))},
                                  interval=0.1, rate=50)
        got = await run_until(compensator, lambda: _n(rows(
            pipeline, f"SELECT phone_masked, status, error_code, receipt_count FROM sms.messages WHERE provider = 'aliyun' "
                      f"AND message_id = '{biz}' AND status != 'pending' ORDER BY phone_masked"), 2), timeout=40)
        assert [(r["status"], r["error_code"], r["receipt_count"]) for r in got] == [
            ("delivered", "DELIVERED", 1), ("failed", "IB:0064", 1)]
        assert compensator.answered == 2
    finally:
        await runner.cleanup()
