"""End to end on real components: real HTTP into the receiver, the embedded broker, the faust
join, the sink and chDB. Each test uses its own message ids, so they share one pipeline."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from sms_analytics.model import topics
from sms_analytics.runtime import Runtime
from tests.conftest import HASH_KEY, TOKEN, eventually, rows

pytestmark = [pytest.mark.pipeline, pytest.mark.both_brokers]


@pytest.fixture
def pipeline(kind_pipeline: Runtime) -> Runtime:
    return kind_pipeline


@pytest.fixture
def http(kind_http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return kind_http
CHINA = timezone(timedelta(hours=8))
T0 = datetime.now(CHINA).replace(microsecond=0) - timedelta(hours=1)  # well inside SMS_EXPIRE_AFTER


def uid() -> str:
    return uuid.uuid4().hex[:16]


def china(dt: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return dt.astimezone(CHINA).strftime(fmt)


def hashed(e164: str) -> str:
    return hmac.new(HASH_KEY.encode(), e164.encode(), hashlib.sha256).hexdigest()


async def post(http: aiohttp.ClientSession, path: str, body: Any, token: str | None = TOKEN) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    url = path + (f"?token={token}" if token is not None else "")
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


async def message(pipeline: Runtime, provider: str, message_id: str, where: str = "1") -> list[dict[str, Any]]:
    return await rows(pipeline, f"SELECT * FROM sms.messages WHERE provider = '{provider}' "
                                f"AND message_id = '{message_id}' AND {where} ORDER BY phone_masked")


def aliyun_report(biz_id: str, phone: str, *, ok: bool = True, code: str = "DELIVERED", msg: str = "用户接收成功",
                  sent: datetime = T0, reported: datetime = T0 + timedelta(seconds=5)) -> dict[str, Any]:
    return {"phone_number": phone, "send_time": china(sent), "report_time": china(reported), "success": ok,
            "err_code": code, "err_msg": msg, "sms_size": "1", "biz_id": biz_id, "out_id": "o1"}


def aliyun_send(biz_id: str, phones: list[str], sent: datetime = T0, code: str = "OK") -> dict[str, Any]:
    response = {"Code": code, "Message": "OK" if code == "OK" else "触发分钟级流控", "RequestId": uid()}
    if code == "OK":
        response["BizId"] = biz_id
    return {"request": {"PhoneNumbers": ",".join(phones), "SignName": "阿里云", "TemplateCode": "SMS_153055065"},
            "response": response, "sent_at": sent.isoformat()}


async def test_healthz_reports_every_component_ready(http: aiohttp.ClientSession) -> None:
    async with http.get("/healthz") as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["components"] == {"worker": True, "sink": True, "warehouse": True, "broker": True}


async def test_consumers_fetch_with_the_configured_wait(pipeline: Runtime) -> None:
    """faust hard-codes fetch_max_wait_ms=1500 and the embedded broker answers a fetch only when
    that wait ends: streams/overrides.py replaces it with KAFKA_FETCH_MAX_WAIT_MS. Guards that the
    replacement still reaches the worker's aiokafka consumer (a faust or aiokafka upgrade may move
    it), and the sink's."""
    assert pipeline.app is not None and pipeline.sink is not None
    wanted = pipeline.settings.kafka_fetch_max_wait_ms
    worker = pipeline.app.consumer._thread._ensure_consumer()
    assert worker._fetcher._fetch_max_wait_ms == wanted != 1500
    assert pipeline.sink.consumer._fetcher._fetch_max_wait_ms == wanted


async def test_aliyun_multi_number_bizid_send_then_receipts(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    status, body = await post(http, "/v1/sends/aliyun", aliyun_send(biz, ["13900000001", "13100000002", "18900000003"]))
    assert (status, orjson.loads(body)) == (202, {"accepted": 3, "rejected": []})
    status, body = await post(http, "/callbacks/aliyun/sms-report", [
        aliyun_report(biz, "13900000001"),
        aliyun_report(biz, "13100000002", ok=False, code="R:00242", msg="空号",
                      reported=T0 + timedelta(seconds=9)),
    ])
    assert (status, orjson.loads(body)) == (200, {"code": 0, "msg": "接收成功"})
    got = await eventually(lambda: _n_rows(message(pipeline, "aliyun", biz, "status != 'pending'"), 2))
    by_mask = {r["phone_masked"]: r for r in await message(pipeline, "aliyun", biz)}
    assert set(by_mask) == {"139****0001", "131****0002", "189****0003"}
    delivered, failed, pending = by_mask["139****0001"], by_mask["131****0002"], by_mask["189****0003"]
    assert (delivered["status"], delivered["latency_ms"], delivered["carrier"]) == ("delivered", 5000, "mobile")
    assert (failed["status"], failed["error_code"], failed["latency_ms"]) == ("failed", "R:00242", 9000)
    assert failed["failure_category"] == "invalid_number" and failed["carrier"] == "unicom"
    assert (pending["status"], pending["reported_at"], pending["carrier"]) == ("pending", None, "telecom")
    assert delivered["phone_hash"] == hashed("+8613900000001")
    assert delivered["sent_at"].replace(tzinfo=UTC) == T0.astimezone(UTC)
    assert delivered["template"] == "SMS_153055065" and delivered["sign"] == "阿里云"
    assert all(r["receipt_count"] == (0 if r is pending else 1) for r in by_mask.values())
    assert len(got) == 2


async def _n_rows(coro: Any, n: int) -> list[dict[str, Any]] | None:
    result = await coro
    return result if len(result) == n else None


async def test_tencent_receipt_before_send_joins(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    serial = f"5000:{uid()}"
    status, body = await post(http, "/callbacks/tencent/status", [{
        "user_receive_time": china(T0 + timedelta(seconds=3)), "nationcode": "86", "mobile": "13800001111",
        "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": serial}])
    assert (status, orjson.loads(body)) == (200, {"result": 0, "errmsg": "OK"})
    await eventually(lambda: message(pipeline, "tencent", serial))
    status, _ = await post(http, "/v1/sends/tencent", {
        "request": {"PhoneNumberSet": ["+8613800001111"], "SmsSdkAppId": "1400006666", "TemplateId": "1110",
                    "SignName": "腾讯云", "SessionContext": "ctx"},
        "response": {"Response": {"SendStatusSet": [{"SerialNo": serial, "PhoneNumber": "+8613800001111", "Fee": 2,
                                                     "SessionContext": "ctx", "Code": "Ok", "Message": "send success",
                                                     "IsoCode": "CN"}], "RequestId": uid()}},
        "sent_at": T0.timestamp()})
    assert status == 202
    row = (await eventually(lambda: message(pipeline, "tencent", serial, "template = '1110'")))[0]
    assert (row["status"], row["latency_ms"], row["segments"], row["receipt_count"]) == ("delivered", 3000, 2, 1)
    assert row["phone_masked"] == "138****1111" and row["error_code"] == "DELIVRD"
    assert len(await message(pipeline, "tencent", serial)) == 1


async def test_kx_send_duplicate_receipts_count_once(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    task = uid()
    send = {"request": {"userid": "100001", "ts": "1476235100217", "sign": "x" * 32,
                        "mobile": "15996480329,13505718889", "msgcontent": "【邦邦快递】您的快递已到"},
            "response": {"code": "0", "msg": "成功", "data": {"taskid": task}}, "sent_at": T0.isoformat()}
    assert (await post(http, "/v1/sends/kx", send))[0] == 202
    report = [{"time": china(T0 + timedelta(seconds=4), "%Y%m%d%H%M%S"), "taskid": task, "code": "DELIVRD",
               "msg": "成功", "mobile": "15996480329"}]
    for _ in range(3):  # the provider retries the same push
        status, body = await post(http, "/callbacks/kx/report", report)
        assert (status, body) == (200, b"SUCCESS")
    await eventually(lambda: message(pipeline, "kx", task, "status = 'delivered'"))
    await pipeline_settled(pipeline)
    got = await message(pipeline, "kx", task)
    assert [(r["phone_masked"], r["status"], r["receipt_count"]) for r in got] == [
        ("135****8889", "pending", 0), ("159****0329", "delivered", 1)]
    assert got[1]["sign"] == "邦邦快递" and got[1]["latency_ms"] == 4000


async def pipeline_settled(pipeline: Runtime) -> None:
    """Wait until the join has consumed everything the receivers published so far."""
    stats = pipeline.join_stats
    assert stats is not None

    async def quiet() -> bool:
        before = stats.events
        import asyncio

        await asyncio.sleep(1.0)
        return stats.events == before

    await eventually(quiet, timeout=20)


async def test_newer_receipt_wins_and_delivery_after_failure(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    await post(http, "/v1/sends/aliyun", aliyun_send(biz, ["13700000007"]))
    later = aliyun_report(biz, "13700000007", reported=T0 + timedelta(seconds=30))
    earlier = aliyun_report(biz, "13700000007", ok=False, code="IC:0015", msg="运营商内部错误",
                            reported=T0 + timedelta(seconds=10))
    await post(http, "/callbacks/aliyun/sms-report", [later])
    await post(http, "/callbacks/aliyun/sms-report", [earlier])  # arrives late, reported earlier
    row = (await eventually(lambda: message(pipeline, "aliyun", biz, "receipt_count = 2")))[0]
    assert (row["status"], row["error_code"], row["latency_ms"]) == ("delivered", "DELIVERED", 30000)


async def test_receipt_without_send_takes_sent_at_from_receipt(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    await post(http, "/callbacks/aliyun/sms-report", [aliyun_report(biz, "13600000006", reported=T0 + timedelta(seconds=2))])
    row = (await eventually(lambda: message(pipeline, "aliyun", biz)))[0]
    assert row["status"] == "delivered" and row["latency_ms"] == 2000
    assert row["sent_at"].replace(tzinfo=UTC) == T0.astimezone(UTC)
    assert row["template"] == ""


async def test_submit_failures_are_failed_without_latency(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    marker = uid()
    body = aliyun_send("", ["13500000005"], code="isv.BUSINESS_LIMIT_CONTROL")
    body["response"]["RequestId"] = marker
    assert (await post(http, "/v1/sends/aliyun", body))[0] == 202
    task = uid()
    kx = {"request": {"userid": "1", "ts": "1", "sign": "s", "list": [
              {"mobile": "18600000001", "msgcontent": "【邦邦快递】a"}, {"mobile": "18600000002", "msgcontent": "【邦邦快递】b"}]},
          "response": {"code": "0", "msg": "成功", "data": {"taskid": task, "result": [
              {"mobile": "18600000001", "code": "0", "msg": "提交成功"},
              {"mobile": "18600000002", "code": "11", "msg": "短信内容过长"}]}}}
    assert (await post(http, "/v1/sends/kx", kx))[0] == 202
    ali = (await eventually(lambda: message(pipeline, "aliyun", f"submit-failed:{marker}")))[0]
    assert (ali["status"], ali["error_code"], ali["latency_ms"], ali["reported_at"], ali["outcome_stage"]) == (
        "failed", "isv.BUSINESS_LIMIT_CONTROL", None, None, "submit")
    assert ali["failure_category"] == "rate_limited"
    got = await eventually(lambda: _n_rows(message(pipeline, "kx", task), 2))
    assert [(r["phone_masked"], r["status"], r["error_code"]) for r in got] == [
        ("186****0001", "pending", ""), ("186****0002", "failed", "11")]


async def test_normalized_sends_accept_valid_and_reject_invalid(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    mid = uid()
    status, body = await post(http, "/v1/sends", [
        {"provider": "tencent", "message_id": mid, "phone": "+8613312345678", "sent_at": T0.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "template": "T9", "sign": "S", "segments": 2},
        {"provider": "nope", "message_id": "x", "phone": "13312345678", "sent_at": 1_700_000_000},
        {"provider": "kx", "message_id": "y", "phone": "not-a-number", "sent_at": 1_700_000_000},
        {"provider": "kx", "message_id": "z", "phone": "13312345678", "sent_at": "2026-11-20 04:00:00"},
    ])
    result = orjson.loads(body)
    assert status == 202 and result["accepted"] == 1
    assert [r["index"] for r in result["rejected"]] == [1, 2, 3]
    assert "provider" in result["rejected"][0]["reason"] and "offset" in result["rejected"][2]["reason"]
    row = (await eventually(lambda: message(pipeline, "tencent", mid)))[0]
    assert (row["carrier"], row["segments"], row["status"], row["template"]) == ("telecom", 2, "pending", "T9")


async def dead_letters(pipeline: Runtime) -> list[Any]:
    consumer = AIOKafkaConsumer(topics.DEADLETTER, bootstrap_servers=pipeline.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        records = []
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                return records
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("path, expected", [
    ("/callbacks/aliyun/sms-report", lambda b: orjson.loads(b)["code"] != 0),
    ("/callbacks/tencent/status", lambda b: orjson.loads(b)["result"] != 0),
    ("/callbacks/kx/report", lambda b: b.startswith(b"FAIL")),
    ("/v1/sends", lambda b: "error" in orjson.loads(b)),
])
async def test_malformed_body_gets_400_and_a_dead_letter(http: aiohttp.ClientSession, pipeline: Runtime,
                                                         path: str, expected: Any) -> None:
    raw = b"{not json " + uid().encode() + b"\xff"
    status, body = await post(http, path, raw)
    assert status == 400 and expected(body), body

    async def found() -> list[Any]:
        return [r for r in await dead_letters(pipeline) if r.value == raw]

    record = (await eventually(found))[0]
    headers = dict(record.headers)
    assert headers["endpoint"] == path.encode() and b"not valid JSON" in headers["reason"]


async def test_invalid_record_in_batch_is_dead_lettered_and_neighbours_kept(http: aiohttp.ClientSession,
                                                                           pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    bad = {"phone_number": "13900000009", "biz_id": biz, "success": "maybe", "report_time": "yesterday"}
    status, body = await post(http, "/callbacks/aliyun/sms-report", [aliyun_report(biz, "13900000008"), bad])
    assert (status, orjson.loads(body)) == (200, {"code": 0, "msg": "接收成功"})
    await eventually(lambda: message(pipeline, "aliyun", biz))

    async def found() -> list[Any]:
        return [r for r in await dead_letters(pipeline) if r.value == orjson.dumps(bad)]

    record = (await eventually(found))[0]
    assert dict(record.headers)["index"] == b"1" and b"success" in dict(record.headers)["reason"]
    assert [r["phone_masked"] for r in await message(pipeline, "aliyun", biz)] == ["139****0008"]


@pytest.mark.parametrize("path, token", [
    ("/callbacks/aliyun/sms-report", None), ("/callbacks/tencent/status", "wrong"),
    ("/callbacks/kx/report", ""), ("/v1/sends", "wrong"), ("/v1/sends/aliyun", None),
    ("/callbacks/tencent/reply", TOKEN[:-1]),
])
async def test_token_is_required(http: aiohttp.ClientSession, path: str, token: str | None) -> None:
    status, body = await post(http, path, [], token=token)
    assert status == 401, body
    assert b"token" in body


async def test_replies_reach_the_warehouse(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    seq = int(uuid.uuid4().int % 10**12)
    assert (await post(http, "/callbacks/aliyun/sms-up", [{
        "phone_number": "18612345678", "send_time": china(T0), "content": "TD", "sign_name": "阿里云",
        "dest_code": "1234", "sequence_id": seq}]))[0] == 200
    assert (await post(http, "/callbacks/tencent/reply", {
        "extend": "", "mobile": "13800002222", "nationcode": "86", "sign": "腾讯云", "text": f"hi {seq}",
        "time": int(T0.timestamp())}))[0] == 200
    assert await post(http, "/callbacks/kx/mo", [{"id": f"mo{seq}", "time": china(T0, "%Y%m%d%H%M%S"),
                                                  "msgcontent": "测试上行短信", "srcid": "1069018889001",
                                                  "mobile": "15996480329"}]) == (200, b"SUCCESS")
    got = await eventually(lambda: _n_rows(rows(pipeline, f"SELECT provider, phone_masked FROM sms.replies FINAL "
                                                         f"WHERE reply_id IN ('aliyun:{seq}', 'kx:mo{seq}') "
                                                         f"OR content = 'hi {seq}' ORDER BY provider"), 3))
    assert [(r["provider"], r["phone_masked"]) for r in got] == [
        ("aliyun", "186****5678"), ("kx", "159****0329"), ("tencent", "138****2222")]


async def test_no_column_holds_a_raw_phone_number(pipeline: Runtime) -> None:
    columns = await rows(pipeline, "SELECT name, type FROM system.columns WHERE database = 'sms' AND table = 'messages'")
    names = {c["name"] for c in columns}
    assert {"phone_hash", "phone_masked"} <= names and not names & {"phone", "phone_raw", "mobile"}
    leaked = await rows(pipeline, "SELECT count() AS n FROM sms.messages WHERE match(phone_masked, '^[0-9]{11}$')")
    assert leaked[0]["n"] == 0
    raw = await rows(pipeline, "SELECT countIf(phone_raw IS NOT NULL) AS n, count() AS total FROM sms.message_parts")
    assert raw[0]["total"] > 0 and raw[0]["n"] == 0


async def test_no_final_receipt_within_expire_after_is_expired_until_a_late_receipt(
        http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    old = datetime.now(CHINA).replace(microsecond=0) - pipeline.settings.sms_expire_after - timedelta(minutes=5)
    await post(http, "/v1/sends/aliyun", aliyun_send(biz, ["13900000011", "13900000012"], sent=old))
    got = await eventually(lambda: _n_rows(message(pipeline, "aliyun", biz), 2))
    assert [(r["status"], r["failure_category"], r["reported_at"]) for r in got] == [("expired", "expired", None)] * 2
    late = aliyun_report(biz, "13900000011", sent=old, reported=datetime.now(CHINA).replace(microsecond=0))
    await post(http, "/callbacks/aliyun/sms-report", [late])
    row = (await eventually(lambda: message(pipeline, "aliyun", biz, "phone_masked = '139****0011' AND status = 'delivered'")))[0]
    assert row["failure_category"] == "delivered" and row["receipt_count"] == 1


async def test_long_message_is_one_message_with_segments(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    biz = f"{uid()}^0"
    await post(http, "/v1/sends/aliyun", aliyun_send(biz, ["13900000013"]))
    report = aliyun_report(biz, "13900000013")
    report["sms_size"] = "3"
    await post(http, "/callbacks/aliyun/sms-report", [report])
    got = await eventually(lambda: message(pipeline, "aliyun", biz, "status = 'delivered'"))
    assert [(r["segments"], r["receipt_count"]) for r in got] == [(3, 1)]
    assert len(await message(pipeline, "aliyun", biz)) == 1


async def test_codes_resolve_through_the_knowledge_base_and_unmapped_ones_are_counted(
        http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    code = f"ZZ:{uid()[:6]}"
    tencent = lambda sid, errmsg, desc, mobile: {  # noqa: E731
        "user_receive_time": china(T0 + timedelta(seconds=3)), "nationcode": "86", "mobile": mobile,
        "report_status": "FAIL", "errmsg": errmsg, "description": desc, "sid": sid}
    known, unknown = f"5000:{uid()}", f"5000:{uid()}"
    await post(http, "/callbacks/tencent/status", [tencent(known, "DB:0005", "号码异常", "13100000021"),
                                                   tencent(unknown, code, "新错误", "13800000022")])
    await eventually(lambda: message(pipeline, "tencent", unknown))
    row = (await eventually(lambda: message(pipeline, "tencent", known)))[0]
    # DB:0005 means 空号 for 联通 in the Tencent table (and 运营商内部错误 for 移动).
    assert (row["failure_category"], row["carrier"]) == ("invalid_number", "unicom")
    joined = await rows(pipeline, f"SELECT dictGet('sms.error_code_dict', ('description', 'action', 'source'), "
                                  f"(provider, carrier, error_code, outcome_stage)) AS d FROM sms.messages "
                                  f"WHERE message_id = '{known}'")
    assert (joined[0]["d"]["description"], joined[0]["d"]["source"]) == ("空号", "tencent")
    unmapped = await rows(pipeline, f"SELECT provider, carrier, stage, count FROM sms.unmapped_codes WHERE code = '{code}'")
    assert unmapped == [{"provider": "tencent", "carrier": "mobile", "stage": "receipt", "count": 1}]
    loaded = await rows(pipeline, "SELECT count() AS n, uniqExact(kb_version) AS v FROM sms.error_codes")
    from sms_analytics.model.knowledge import KnowledgeBase
    assert loaded == [{"n": len(KnowledgeBase.load()), "v": 1}]


async def test_uplink_links_to_the_latest_send_to_that_number_within_48h(
        http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    phone = f"1390{uuid.uuid4().int % 10**7:07d}"
    old, new = f"{uid()}^0", f"{uid()}^0"
    await post(http, "/v1/sends/aliyun", aliyun_send(old, [phone], sent=T0 - timedelta(hours=50)))
    await post(http, "/v1/sends/aliyun", aliyun_send(new, [phone], sent=T0 - timedelta(minutes=30)))
    seq = uuid.uuid4().int % 10**12
    await post(http, "/callbacks/aliyun/sms-up", [{"phone_number": phone, "send_time": china(T0), "content": "好的",
                                                   "sign_name": "阿里云", "dest_code": "1", "sequence_id": seq}])
    orphan = uuid.uuid4().int % 10**12
    await post(http, "/callbacks/aliyun/sms-up", [{"phone_number": "13911112222", "send_time": china(T0),
                                                   "content": "?", "sign_name": "", "dest_code": "1", "sequence_id": orphan}])
    await eventually(lambda: _n_rows(message(pipeline, "aliyun", new), 1))
    got = await eventually(lambda: _n_rows(rows(pipeline, f"SELECT reply_id, linked_message_id FROM sms.replies_linked "
                                                          f"WHERE reply_id IN ('aliyun:{seq}', 'aliyun:{orphan}') "
                                                          f"ORDER BY reply_id = 'aliyun:{seq}'"), 2))
    assert [(r["reply_id"], r["linked_message_id"]) for r in got] == [(f"aliyun:{orphan}", ""), (f"aliyun:{seq}", new)]


async def test_pending_messages_past_compensate_after_are_asked_about_once(
        http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    from sms_analytics.model.events import decode_compensation

    stale, fresh = f"{uid()}^0", f"{uid()}^0"
    await post(http, "/v1/sends/aliyun", aliyun_send(stale, ["13900000031"], sent=datetime.now(CHINA) - timedelta(minutes=20)))
    await post(http, "/v1/sends/aliyun", aliyun_send(fresh, ["13900000032"], sent=datetime.now(CHINA) - timedelta(minutes=2)))
    await eventually(lambda: _n_rows(message(pipeline, "aliyun", stale), 1))

    async def requests() -> list[Any]:
        consumer = AIOKafkaConsumer(topics.COMPENSATION, bootstrap_servers=pipeline.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            found = []
            while batch := await consumer.getmany(timeout_ms=500):
                found += [decode_compensation(r.value) for recs in batch.values() for r in recs]
            return [r for r in found if r.message_id in (stale, fresh)]
        finally:
            await consumer.stop()

    got = await eventually(requests, timeout=20)
    assert [(r.message_id, r.phone) for r in got] == [(stale, "+8613900000031")]
    import asyncio
    await asyncio.sleep(3)  # three more scans: asked once per SMS_COMPENSATE_INTERVAL
    assert len(await requests()) == 1


async def test_raw_numbers_only_on_the_topics_a_poller_needs(http: aiohttp.ClientSession, pipeline: Runtime) -> None:
    """Sends and receipts carry the number (the join keeps it for the compensation pollers);
    deliveries and replies carry only its hash and masked form (SMS_STORE_RAW_PHONE is off)."""
    from aiokafka import AIOKafkaConsumer

    number, seq = "13677778888", int(uuid.uuid4().int % 10**12)
    biz = f"{uid()}^0"
    assert (await post(http, "/v1/sends/aliyun", aliyun_send(biz, [number])))[0] == 202
    assert (await post(http, "/callbacks/aliyun/sms-report", [aliyun_report(biz, number)]))[0] == 200
    assert (await post(http, "/callbacks/aliyun/sms-up", [{
        "phone_number": number, "send_time": china(T0), "content": "TD", "sign_name": "阿里云",
        "dest_code": "1234", "sequence_id": seq}]))[0] == 200
    await eventually(lambda: message(pipeline, "aliyun", biz, "status = 'delivered'"))
    await eventually(lambda: rows(pipeline, f"SELECT 1 FROM sms.replies WHERE reply_id = 'aliyun:{seq}'"))
    found: dict[str, int] = {}
    consumer = AIOKafkaConsumer(topics.SENDS, topics.RECEIPTS, topics.DELIVERIES, topics.REPLIES,
                                bootstrap_servers=pipeline.bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await eventually(lambda: len(consumer.assignment()) > 0)
        end = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    if number.encode() in (r.key or b"") + r.value:
                        found[tp.topic] = found.get(tp.topic, 0) + 1
            positions = {tp: await consumer.position(tp) for tp in end}
            if all(positions[tp] >= off for tp, off in end.items()):
                break
    finally:
        await consumer.stop()
    assert found.get(topics.SENDS) and found.get(topics.RECEIPTS), found
    assert topics.DELIVERIES not in found and topics.REPLIES not in found, found


async def test_changelog_topic_expires_by_time_and_is_never_compacted(pipeline: Runtime) -> None:
    """The join's changelog carries batch records keyed `batch|<partition>` (streams/state.py):
    compaction would keep only the last one per key and a recovery would lose states. The topic,
    as faust created it, must expire by time a day beyond SMS_EXPIRE_AFTER, and the pipeline's own
    topics carry the configured retentions (not the broker's defaults)."""
    from sms_analytics.broker.admin import topic_config
    from sms_analytics.streams.state import changelog_topic

    s = pipeline.settings
    # the app id of the running worker: after a rotation of the embedded broker it is SMS_APP_ID-r<n>
    changelog = await topic_config(pipeline.bootstrap, changelog_topic(pipeline.app.conf.id))
    assert changelog, f"no changelog topic {changelog_topic(pipeline.app.conf.id)} on {pipeline.bootstrap}"
    assert changelog["cleanup.policy"] == "delete"
    assert int(changelog["retention.ms"]) == (s.sms_expire_after + timedelta(days=1)) // timedelta(milliseconds=1)
    for topic, retention in ((topics.SENDS, s.kafka_input_retention), (topics.DELIVERIES, s.kafka_output_retention)):
        config = await topic_config(pipeline.bootstrap, topic)
        assert (config["cleanup.policy"], int(config["retention.ms"])) == ("delete", retention // timedelta(milliseconds=1))


async def test_receivers_publish_idempotently_on_apache_kafka(pipeline: Runtime, broker_kind: str) -> None:
    """Apache Kafka: the idempotent producer (acks=all), so a send retried after a lost acknowledgement
    is stored once. The embedded broker answers InitProducerId with an error: there the receivers
    publish through the journal (sources/journal.py), whose forwarder's producer is not idempotent."""
    from sms_analytics.sources.journal import JournaledPublisher
    from sms_analytics.sources.producer import Publisher

    publisher = pipeline.publisher
    if broker_kind == "embedded":
        assert isinstance(publisher, JournaledPublisher)
        return
    assert isinstance(publisher, Publisher) and publisher.ready
    producer = publisher._connected()
    assert producer._txn_manager is not None  # aiokafka's idempotence: producer id and sequence numbers
    assert producer._sender._acks == -1  # acks=all
