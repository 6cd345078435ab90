"""Tests of the traffic simulator: payload formats against the seed documents, and one short run."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sms_analytics.simulate import traffic as t
from sms_analytics.simulate.traffic import (
    GroundTruth,
    SimulatorError,
    aliyun_report,
    aliyun_send,
    aliyun_sms_up,
    drive,
    kx_mo,
    kx_report,
    kx_send,
    plan_traffic,
    tencent_reply,
    tencent_send,
    tencent_status,
)

REPO = Path(__file__).resolve().parents[1]
SEED_DIRS = (Path("/work/shared/seeds"), REPO.parent / "shared" / "seeds")
TS = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC = 2023-11-15 06:13:20 China time


def _seed(prefix: str) -> str:
    for directory in SEED_DIRS:
        found = sorted(directory.glob(f"{prefix}_*.txt")) if directory.is_dir() else []
        if found:
            return found[0].read_text(encoding="utf-8")
    pytest.skip("provider seed documents not available")


@pytest.fixture(scope="module")
def aliyun_doc() -> str:
    return _seed("000")


@pytest.fixture(scope="module")
def kx_doc() -> str:
    return _seed("001")


@pytest.fixture(scope="module")
def tencent_doc() -> str:
    return _seed("002")


# --- codes come from the documents ---------------------------------------------------------------


def test_aliyun_codes_are_documented(aliyun_doc: str) -> None:
    assert '"err_code" : "DELIVERED"' in aliyun_doc and '"err_msg" : "用户接收成功"' in aliyun_doc
    for carrier, rows in t.ALIYUN_RECEIPT_FAILURES.items():
        for code, msg, _ in rows:
            assert f"\n{carrier}\t{code}\t{msg}\t" in aliyun_doc, (carrier, code)
    for code, msg in t.ALIYUN_SUBMIT_ERRORS:
        assert f"\n{code}\t{msg}\t" in aliyun_doc, code


def test_tencent_codes_are_documented(tencent_doc: str) -> None:
    assert f"\n{t.TENCENT_DELIVERED[0]} 三网 {t.TENCENT_DELIVERED[1]}\n" in tencent_doc
    for carrier, rows in t.TENCENT_RECEIPT_FAILURES.items():
        for code, msg, _ in rows:
            assert f"\n{code} {carrier} {msg}\n" in tencent_doc, (carrier, code)
    for code, msg in t.TENCENT_SUBMIT_ERRORS:
        assert f"\n{code}\n" in tencent_doc and msg in tencent_doc, code
    assert '"Code": "Ok"' in tencent_doc and '"Message": "send success"' in tencent_doc


def test_kx_codes_are_documented(kx_doc: str) -> None:
    assert '"code":"DELIVRD","msg":"成功"' in kx_doc
    for code, msg, _ in t.KX_RECEIPT_FAILURES:
        assert f"\n{code}\t{msg}\t" in kx_doc, code
    for code, msg in t.KX_SUBMIT_ERRORS:
        assert f"\n{code}\t{msg}\t" in kx_doc, code
    assert '"msg": "提交成功"' in kx_doc


def test_plan_only_uses_documented_codes() -> None:
    plan = plan_traffic(duration=60, rate=50, seed=3, start=TS)
    allowed = {
        "aliyun": {c for rows in t.ALIYUN_RECEIPT_FAILURES.values() for c, _, _ in rows}
        | {c for c, _ in t.ALIYUN_SUBMIT_ERRORS} | {t.ALIYUN_DELIVERED[0]},
        "tencent": {c for rows in t.TENCENT_RECEIPT_FAILURES.values() for c, _, _ in rows}
        | {c for c, _ in t.TENCENT_SUBMIT_ERRORS} | {t.TENCENT_DELIVERED[0]},
        "kx": {c for c, _, _ in t.KX_RECEIPT_FAILURES} | {c for c, _ in t.KX_SUBMIT_ERRORS}
        | {t.KX_DELIVERED[0]},
    }
    for msg in plan.messages():
        if msg.outcome != "pending":
            assert msg.code in allowed[msg.provider]


# --- payload formats -------------------------------------------------------------------------


def test_china_time_formats() -> None:
    assert t.china_time(TS) == "2023-11-15 06:13:20"
    assert t.kx_time(TS) == "20231115061320"
    assert t.iso_time(TS) == "2023-11-15T06:13:20.000+08:00"


def test_aliyun_send_sendsms_and_batch() -> None:
    body = aliyun_send(["13800000000", "18600000001"], sign_name="阿里云", template_code="SMS_153055065",
                       request_id="R", sent_at=TS, biz_id="197703245997295588^0", out_id="abc")
    assert body == {
        "request": {"PhoneNumbers": "13800000000,18600000001", "SignName": "阿里云",
                    "TemplateCode": "SMS_153055065", "OutId": "abc"},
        "response": {"Code": "OK", "Message": "OK", "RequestId": "R", "BizId": "197703245997295588^0"},
        "sent_at": TS,
    }
    batch = aliyun_send(["15900000000", "13500000000"], sign_name="阿里云", template_code="SMS_152550005",
                        request_id="R", sent_at="2023-11-15T06:13:20+08:00", biz_id="1^0", batch=True)
    assert batch["request"] == {"PhoneNumberJson": '["15900000000","13500000000"]',
                                "SignNameJson": '["阿里云","阿里云"]', "TemplateCode": "SMS_152550005"}
    failed = aliyun_send(["13800000000"], sign_name="阿里云", template_code="SMS_153055065", request_id="R",
                         sent_at=TS, biz_id=None, error=("isv.BUSINESS_LIMIT_CONTROL", "业务限流"))
    assert failed["response"] == {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "业务限流", "RequestId": "R"}


def test_aliyun_report_and_sms_up() -> None:
    ok = aliyun_report("13900000001", "12345^0", send_time=TS, report_time=TS + 5,
                       err_code="DELIVERED", err_msg="用户接收成功", out_id="67890")
    assert ok == {"phone_number": "13900000001", "send_time": "2023-11-15 06:13:20",
                  "report_time": "2023-11-15 06:13:25", "success": True, "err_code": "DELIVERED",
                  "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345^0", "out_id": "67890"}
    bad = aliyun_report("13300000001", "12345^0", send_time=TS, report_time=TS, err_code="MK:0001",
                        err_msg="空号")
    assert bad["success"] is False
    up = aliyun_sms_up("18612345678", send_time=TS, content="TD", sign_name="签名", dest_code="1234",
                       sequence_id=1234567890)
    assert set(up) == {"phone_number", "send_time", "content", "sign_name", "dest_code", "sequence_id"}
    assert up["send_time"] == "2023-11-15 06:13:20" and up["sequence_id"] == 1234567890


def test_tencent_send_status_and_reply() -> None:
    body = tencent_send(["18501234444", "18501234445"], sdk_app_id="1400006666", template_id="1110",
                        sign_name="腾讯云", session_context="ctx", serial_nos=["5000:1", ""],
                        request_id="rid", sent_at=TS,
                        results=[("Ok", "send success"), t.TENCENT_SUBMIT_ERRORS[0]])
    assert body["request"] == {"PhoneNumberSet": ["+8618501234444", "+8618501234445"],
                               "SmsSdkAppId": "1400006666", "TemplateId": "1110", "SignName": "腾讯云",
                               "SessionContext": "ctx"}
    ok, failed = body["response"]["Response"]["SendStatusSet"]
    assert ok == {"SerialNo": "5000:1", "PhoneNumber": "+8618501234444", "Fee": 1, "SessionContext": "ctx",
                  "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
    assert failed["Code"] == "LimitExceeded.PhoneNumberDailyLimit" and failed["Fee"] == 0
    assert body["response"]["Response"]["RequestId"] == "rid"
    status = tencent_status("18501234444", "5000:1", receive_time=TS, errmsg="DELIVRD",
                            description="用户短信送达成功")
    assert status == {"user_receive_time": "2023-11-15 06:13:20", "nationcode": "86",
                      "mobile": "18501234444", "report_status": "SUCCESS", "errmsg": "DELIVRD",
                      "description": "用户短信送达成功", "sid": "5000:1"}
    assert tencent_status("18501234444", "x", receive_time=TS, errmsg="DB:0107",
                          description="关机")["report_status"] == "FAIL"
    reply = tencent_reply("18501234444", time_s=1457336869, text="TD", sign="腾讯云")
    assert reply == {"extend": "", "mobile": "18501234444", "nationcode": "86", "sign": "腾讯云",
                     "text": "TD", "time": 1457336869}


def test_kx_mt_p2p_report_mo() -> None:
    mt = kx_send(["13800000000", "13500000000"], contents="【邦邦快递】hello", taskid="T1", ts_ms=1476235100217,
                 sent_at=TS, userid="100001", apikey="k", extnum="1001")
    sign = hashlib.md5(b"1000011476235100217k").hexdigest()
    assert mt["request"] == {"userid": "100001", "ts": "1476235100217", "sign": sign,
                             "mobile": "13800000000,13500000000", "msgcontent": "【邦邦快递】hello",
                             "extnum": "1001"}
    assert mt["response"] == {"code": "0", "msg": "成功", "data": {"taskid": "T1"}}
    p2p = kx_send(["18600000001", "18600000002"], contents=["a", "b"], taskid="T2", ts_ms=1, sent_at=TS,
                  p2p=True, results=[("0", "提交成功"), ("11", "短信内容过长")])
    assert p2p["request"]["list"] == [{"mobile": "18600000001", "msgcontent": "a"},
                                      {"mobile": "18600000002", "msgcontent": "b"}]
    assert p2p["response"] == {"code": "0", "msg": "成功", "data": {"taskid": "T2", "result": [
        {"mobile": "18600000001", "code": "0", "msg": "提交成功"},
        {"mobile": "18600000002", "code": "11", "msg": "短信内容过长"}]}}
    all_failed = kx_send(["18600000001"], contents="a", taskid="T3", ts_ms=1, sent_at=TS, p2p=True,
                         results=[("1", "失败")])
    assert all_failed["response"]["code"] == "1" and all_failed["response"]["data"]["taskid"] == ""
    with pytest.raises(ValueError):
        kx_send(["18600000001"], contents="a", taskid="T", ts_ms=1, sent_at=TS, results=[("1", "失败")])
    report = kx_report("13505718888", "T1", report_time=TS, code="DELIVRD", msg="成功")
    assert report == {"time": "20231115061320", "taskid": "T1", "code": "DELIVRD", "msg": "成功",
                      "mobile": "13505718888"}
    mo = kx_mo("15996480329", mo_id="9d9d0f4d1b864c129e299cc400c26306", time_s=TS, content="TD",
               srcid="1069018889001")
    assert list(mo) == ["id", "time", "msgcontent", "srcid", "mobile"] and mo["time"] == "20231115061320"


# --- the plan ---------------------------------------------------------------------------------


def _bodies(plan: t.TrafficPlan) -> bytes:
    sends = [(s.provider, s.at, s.body) for s in plan.sends]
    receipts = [(m.receipt, m.receipt_due, m.duplicate_due, m.early) for m in plan.messages()]
    return orjson.dumps([sends, receipts, [(u.at, u.body) for u in plan.uplinks]])


def test_plan_is_deterministic_for_a_seed() -> None:
    a = plan_traffic(duration=10, rate=30, seed=7, start=TS)
    b = plan_traffic(duration=10, rate=30, seed=7, start=TS)
    c = plan_traffic(duration=10, rate=30, seed=8, start=TS)
    assert _bodies(a) == _bodies(b)
    assert _bodies(a) != _bodies(c)


def test_plan_shape() -> None:
    plan = plan_traffic(duration=120, rate=50, seed=1, start=TS)
    messages = list(plan.messages())
    assert 4500 < len(messages) < 7500
    segments = {s for segs in t.CARRIER_SEGMENTS.values() for s in segs}
    assert all(re.fullmatch(r"1\d{10}", m.phone) and m.phone[:3] in segments for m in messages)
    assert all(t.carrier_of(m.phone) == m.carrier for m in messages)
    for provider in t.PROVIDERS:
        mine = [m for m in messages if m.provider == provider]
        share = Counter(m.outcome for m in mine)
        assert 0.86 <= share["delivered"] / len(mine) <= 0.95, provider
        assert 0.002 <= share["submit_failed"] / len(mine) <= 0.03, provider
        assert share["pending"] > 0 and share["failed"] > 0
        with_receipt = [m for m in mine if m.receipt is not None]
        assert 0.02 < sum(m.duplicate_due is not None for m in with_receipt) / len(with_receipt) < 0.09
        assert 0.06 < sum(m.early for m in with_receipt) / len(with_receipt) < 0.14
        assert all(m.receipt is None for m in mine if m.outcome in ("pending", "submit_failed"))
    # Alibaba sometimes shares one BizId between several phones (multi-number SendSms / SendBatchSms).
    assert any(len(s.messages) > 1 for s in plan.sends if s.provider == "aliyun")
    assert any("PhoneNumberJson" in s.body["request"] for s in plan.sends if s.provider == "aliyun")
    assert any("list" in s.body["request"] for s in plan.sends if s.provider == "kx")
    # Receipt delays: median near 3 s, never over 30 s (a 120 s run is not compressed).
    delays = sorted(m.receipt_due - s.at for s in plan.sends for m in s.messages if m.receipt)
    assert 2.0 < delays[len(delays) // 2] < 4.5 and 10.0 < delays[-1] <= 30.0 + 1e-6


# --- one short run against a recording server -------------------------------------------------

REPLIES: dict[str, Any] = {
    "/callbacks/aliyun/sms-report": {"code": 0, "msg": "接收成功"},
    "/callbacks/aliyun/sms-up": {"code": 0, "msg": "接收成功"},
    "/callbacks/tencent/status": {"result": 0, "errmsg": "OK"},
    "/callbacks/tencent/reply": {"result": 0, "errmsg": "OK"},
    "/callbacks/kx/report": "SUCCESS",
    "/callbacks/kx/mo": "SUCCESS",
}


class Recorder:
    def __init__(self, replies: dict[str, Any]) -> None:
        self.requests: list[tuple[str, str | None, Any]] = []
        self.replies = replies

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append((request.path, request.query.get("token"), body))
        if request.path.startswith("/v1/sends/"):
            return web.json_response({"accepted": True}, status=202)
        reply = self.replies[request.path]
        if isinstance(reply, str):
            return web.Response(text=reply)
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app


def _send_keys(provider: str, body: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """(message keys accepted at submit, number of submit failures) of one send record."""
    req, resp = body["request"], body["response"]
    if provider == "aliyun":
        phones = json.loads(req["PhoneNumberJson"]) if "PhoneNumberJson" in req else req["PhoneNumbers"].split(",")
        if resp["Code"] != "OK":
            return [], len(phones)
        return [(resp["BizId"], p) for p in phones], 0
    if provider == "tencent":
        statuses = resp["Response"]["SendStatusSet"]
        ok = [(s["SerialNo"], s["PhoneNumber"][3:]) for s in statuses if s["Code"] == "Ok"]
        return ok, len(statuses) - len(ok)
    if "list" in req:
        results = resp["data"]["result"]
        ok = [(resp["data"]["taskid"], r["mobile"]) for r in results if r["code"] == "0"]
        return ok, len(results) - len(ok)
    return [(resp["data"]["taskid"], p) for p in req["mobile"].split(",")], 0


def _receipt_key(provider: str, record: dict[str, Any]) -> tuple[tuple[str, str], bool]:
    if provider == "aliyun":
        return (record["biz_id"], record["phone_number"]), record["success"] is True
    if provider == "tencent":
        return (record["sid"], record["mobile"]), record["report_status"] == "SUCCESS"
    return (record["taskid"], record["mobile"]), record["code"] == "DELIVRD"


def _check_against_server(truth: GroundTruth, recorder: Recorder) -> None:
    for provider in t.PROVIDERS:
        counts = truth.of(provider)
        sent: set[tuple[str, str]] = set()
        seen: set[tuple[str, str]] = set()
        sends = submit_failed = receipt_records = dups = delivered = failed = early = replies = 0
        send_requests = receipt_requests = 0
        for path, _, body in recorder.requests:
            if path == t.SEND_PATHS[provider]:
                keys, n_failed = _send_keys(provider, body)
                send_requests += 1
                sends += len(keys) + n_failed
                submit_failed += n_failed
                sent.update(keys)
            elif path == t.RECEIPT_PATHS[provider]:
                assert isinstance(body, list) and 1 <= len(body) <= 100
                receipt_requests += 1
                for record in body:
                    receipt_records += 1
                    key, ok = _receipt_key(provider, record)
                    if key in seen:
                        dups += 1
                        continue
                    seen.add(key)
                    delivered += ok
                    failed += not ok
                    early += key not in sent
            elif path == t.UPLINK_PATHS[provider]:
                replies += len(body) if isinstance(body, list) else 1
        assert seen <= sent, provider  # every receipt belongs to an accepted message
        assert counts.send_requests == send_requests and counts.sends == sends, provider
        assert counts.submit_failed == submit_failed
        assert counts.receipt_requests == receipt_requests and counts.receipts_posted == receipt_records
        assert counts.duplicate_receipts_posted == dups
        assert counts.delivered == delivered
        assert counts.failed == failed + submit_failed
        assert counts.pending == sends - delivered - failed - submit_failed
        assert counts.receipts_before_send == early
        assert counts.replies_posted == replies


@pytest.mark.asyncio
async def test_drive_against_recording_server(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(REPLIES)
    server = TestServer(recorder.app(), host="127.0.0.1")
    await server.start_server()
    try:
        with caplog.at_level(logging.DEBUG, logger="sms_analytics"):
            truth = await drive(str(server.make_url("")), duration=3.0, rate=25.0, token="tok-1", seed=5)
    finally:
        await server.close()
    assert all(token == "tok-1" for _, token, _ in recorder.requests)
    _check_against_server(truth, recorder)
    totals = {k: sum(getattr(truth.of(p), k) for p in t.PROVIDERS)
              for k in ("sends", "delivered", "failed", "receipts_before_send", "duplicate_receipts_posted",
                        "replies_posted")}
    assert totals["sends"] > 40 and totals["delivered"] > 30
    assert totals["receipts_before_send"] > 0 and totals["duplicate_receipts_posted"] > 0
    assert totals["replies_posted"] >= 3
    assert set(truth.to_dict()) == {"aliyun", "tencent", "kx"}
    # No phone number reaches the logs.
    phones = {m for _, _, body in recorder.requests for m in re.findall(r"1[3-9]\d{9}", orjson.dumps(body).decode())}
    assert phones and not any(p in caplog.text for p in phones)


@pytest.mark.asyncio
async def test_drive_rejects_an_undocumented_reply() -> None:
    recorder = Recorder({**REPLIES, "/callbacks/kx/report": "OK", "/callbacks/aliyun/sms-report": {"code": 0},
                         "/callbacks/tencent/status": {"result": 0}})
    server = TestServer(recorder.app(), host="127.0.0.1")
    await server.start_server()
    try:
        with pytest.raises(SimulatorError, match="expected HTTP 200"):
            await drive(str(server.make_url("")), duration=1.0, rate=20.0, seed=2)
    finally:
        await server.close()
