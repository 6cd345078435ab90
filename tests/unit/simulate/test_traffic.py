"""Tests of the traffic simulator: payload formats against the seed documents, and one short run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import statistics
from collections import Counter
from datetime import datetime
from statistics import NormalDist
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sms_analytics.simulate import plan as plan_module
from sms_analytics.simulate import traffic as t
from sms_analytics.simulate.traffic import (
    Blackout,
    GroundTruth,
    Outage,
    SimulatorError,
    aliyun_report,
    aliyun_send,
    aliyun_sms_up,
    drive,
    kx_mo,
    kx_report,
    kx_send,
    parse_scenario,
    plan_traffic,
    tencent_reply,
    tencent_send,
    tencent_status,
)

REPO = Path(__file__).resolve().parents[3]
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
    receipts = [(m.outcome, m.receipt, m.receipt_due, m.duplicate_due, m.early, m.late, m.segments, m.in_outage)
                for m in plan.messages()]
    return orjson.dumps([sends, receipts, [(u.at, u.body) for u in plan.uplinks]])


def test_plan_is_deterministic_for_a_seed() -> None:
    a = plan_traffic(duration=10, rate=30, seed=7, start=TS)
    b = plan_traffic(duration=10, rate=30, seed=7, start=TS)
    c = plan_traffic(duration=10, rate=30, seed=8, start=TS)
    assert _bodies(a) == _bodies(b)
    assert _bodies(a) != _bodies(c)
    # With the scenario switches too; a blackout is for the driver and leaves the plan as it is.
    scenarios: dict[str, Any] = {"outage": Outage("联通", 0.2, 2.0, 5.0),
                                 "blackout": Blackout("kx", 1.0, 3.0, catch_up=True)}
    d = plan_traffic(duration=10, rate=30, seed=7, start=TS, **scenarios)
    e = plan_traffic(duration=10, rate=30, seed=7, start=TS, **scenarios)
    assert _bodies(d) == _bodies(e) and _bodies(d) != _bodies(a)
    assert d.outages == (scenarios["outage"],) and d.blackouts == (scenarios["blackout"],)
    blackout_only = plan_traffic(duration=10, rate=30, seed=7, start=TS, blackout=scenarios["blackout"])
    assert _bodies(blackout_only) == _bodies(a)


def _china(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=t.CHINA_TZ).timestamp()


def _kx(text: str) -> float:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=t.CHINA_TZ).timestamp()


def _report_lag(provider: str, record: dict[str, Any], send_wall: float) -> float:
    """Seconds from the send to the report time a receipt record states (whole seconds)."""
    if provider == "aliyun":
        return _china(record["report_time"]) - _china(record["send_time"])
    if provider == "tencent":
        return _china(record["user_receive_time"]) - send_wall
    return _kx(record["time"]) - send_wall


def _parts(text: str) -> int:
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


def test_receipt_latency_is_per_carrier_with_a_slow_tail() -> None:
    plan = plan_traffic(duration=120, rate=50, seed=4, start=TS)  # a full-length run: not compressed
    delays: dict[str, list[float]] = {c: [] for c in t.CARRIER_WEIGHTS}
    for send in plan.sends:
        for m in send.messages:
            if m.receipt is not None and not m.late:
                delays[m.carrier].append(m.receipt_due - send.at)
    medians = {c: statistics.median(v) for c, v in delays.items()}
    for carrier, median in medians.items():
        assert len(delays[carrier]) > 500
        assert abs(median / t.CARRIER_LATENCY[carrier].median - 1) < 0.15, (carrier, median)
        assert max(delays[carrier]) <= t.RECEIPT_MAX_S + 1e-6
    assert medians["移动"] * 1.25 < medians["联通"] and medians["联通"] * 1.25 < medians["电信"], medians


def test_receipt_delay_has_a_slow_tail_per_carrier() -> None:
    rng = random.Random(3)
    for carrier, profile in t.CARRIER_LATENCY.items():
        draws = [t.receipt_delay(rng, carrier) for _ in range(20000)]
        assert 0.5 <= min(draws) and max(draws) <= t.RECEIPT_MAX_S
        # Above 12 s: what the log-normal body alone gives, plus most of the tail share.
        body = 1 - NormalDist().cdf(math.log(12.0 / profile.median) / profile.sigma)
        slow = sum(d > 12.0 for d in draws) / len(draws)
        assert body + profile.tail_share * 0.3 < slow < body + profile.tail_share * 1.2, (carrier, body, slow)


def test_late_receipts_report_hours_after_the_send_but_post_within_the_run() -> None:
    plan = plan_traffic(duration=90, rate=50, seed=6, start=TS)
    late = normal = 0
    for send in plan.sends:
        for m in send.messages:
            if m.receipt is None:
                continue
            lag = _report_lag(m.provider, m.receipt, TS + send.at)
            assert send.at < m.receipt_due <= send.at + t.RECEIPT_MAX_S + 1e-6  # posted within the run
            if m.late:
                late += 1
                assert 2 * 3600 - 2 <= lag <= 6 * 3600 + 2, (m.provider, lag)
                assert not m.early
            else:
                normal += 1
                assert -1 <= lag <= t.RECEIPT_MAX_S + 1, (m.provider, lag)
    assert 0.004 < late / (late + normal) < 0.02, late
    # Late ones are posted in step with their provider time, scaled: 6 h -> 30 s of a full run.
    for send in plan.sends:
        for m in send.messages:
            if m.late and m.receipt is not None:
                lag = _report_lag(m.provider, m.receipt, TS + send.at)
                assert abs((m.receipt_due - send.at) - lag / (6 * 3600) * t.RECEIPT_MAX_S) < 0.01


def test_long_messages_have_segments_in_their_provider_format() -> None:
    plan = plan_traffic(duration=60, rate=50, seed=2, start=TS)
    for send in plan.sends:
        req, resp = send.body["request"], send.body["response"]
        for i, m in enumerate(send.messages):
            if m.provider == "aliyun":
                if m.receipt is not None:
                    assert int(m.receipt["sms_size"]) == m.segments
            elif m.provider == "tencent":
                assert resp["Response"]["SendStatusSet"][i]["Fee"] == m.segments
            else:
                text = req["list"][i]["msgcontent"] if "list" in req else req["msgcontent"]
                assert _parts(text) == m.segments
    for provider in t.PROVIDERS:
        segs = Counter(m.segments for m in plan.messages(provider) if m.outcome != "submit_failed")
        long_share = sum(n for k, n in segs.items() if k > 1) / sum(segs.values())
        assert {1, 2, 3} <= set(segs) and 0.03 < long_share < 0.25, (provider, segs)
    assert t.kx_segments("x" * 70) == 1 and t.kx_segments("x" * 71) == 2 and t.kx_segments("x" * 135) == 3


def _delivered_share(messages: list[t.PlannedMessage]) -> float:
    with_receipt = [m for m in messages if m.outcome in ("delivered", "failed")]
    assert len(with_receipt) > 100
    return sum(m.outcome == "delivered" for m in with_receipt) / len(with_receipt)


def test_outage_lowers_that_carriers_delivery_inside_its_window_only() -> None:
    outage = Outage(carrier="移动", delivery_rate=0.3, start=30.0, duration=30.0)
    base = plan_traffic(duration=90, rate=50, seed=11, start=TS)
    hit = plan_traffic(duration=90, rate=50, seed=11, start=TS, outage=outage)
    inside: list[t.PlannedMessage] = []
    outside: list[t.PlannedMessage] = []
    others_inside: list[t.PlannedMessage] = []
    base_inside: list[t.PlannedMessage] = []
    mobile_codes = {c for c, _, _ in t.ALIYUN_RECEIPT_FAILURES["移动"]} | {
        c for c, _, _ in t.TENCENT_RECEIPT_FAILURES["移动"]} | {c for c, _, _ in t.KX_RECEIPT_FAILURES}
    for s0, s1 in zip(base.sends, hit.sends, strict=True):
        assert s0.at == s1.at and s0.body == s1.body  # sends are the same
        for m0, m1 in zip(s0.messages, s1.messages, strict=True):
            window = outage.start <= s1.at < outage.end
            assert m1.in_outage == (window and m1.carrier == "移动")
            if m1.in_outage:
                inside.append(m1)
                base_inside.append(m0)
                if m1.outcome == "failed":
                    assert m1.code in mobile_codes
            else:
                # Everything outside the window (and other carriers inside it) is untouched.
                assert (m0.outcome, m0.code, m0.receipt, m0.receipt_due) == (m1.outcome, m1.code, m1.receipt,
                                                                            m1.receipt_due)
                (others_inside if window else outside).append(m1)
    assert 0.2 < _delivered_share(inside) < 0.4
    assert _delivered_share(base_inside) > 0.85
    assert _delivered_share([m for m in outside if m.carrier == "移动"]) > 0.85
    assert _delivered_share(others_inside) > 0.85


def test_parse_scenario() -> None:
    assert parse_scenario("outage:移动:0.3:10:30") == Outage("移动", 0.3, 10.0, 30.0)
    assert parse_scenario(" outage:unicom:0:0:5.5 ") == Outage("联通", 0.0, 0.0, 5.5)
    assert parse_scenario("blackout:tencent:5:20") == Blackout("tencent", 5.0, 20.0, catch_up=False)
    assert parse_scenario("blackout:KX:0:1:catch_up") == Blackout("kx", 0.0, 1.0, catch_up=True)
    assert parse_scenario("blackout:aliyun:1:2:drop").catch_up is False
    for bad in ("outage:移动:1.5:10:30", "outage:卫星:0.3:10:30", "outage:移动:0.3:10", "blackout:tencent:5:0",
                "blackout:wechat:5:20", "blackout:tencent:-1:20", "blackout:tencent:5:20:maybe", "storm:1:2",
                "outage:移动:x:10:30", ""):
        with pytest.raises(ValueError):
            parse_scenario(bad)
    with pytest.raises(ValueError):
        Outage("移动", 0.3, 0.0, math.inf)


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
        self.times: list[float] = []  # event-loop time at which each request arrived
        self.replies = replies

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append((request.path, request.query.get("token"), body))
        self.times.append(asyncio.get_running_loop().time())
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


def _sent_wall(sent_at: float | str) -> float:
    return float(sent_at) if not isinstance(sent_at, str) else datetime.fromisoformat(sent_at).timestamp()


def _send_segments(provider: str, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    """(segments known from the send record, Alibaba message keys whose segments the receipt says)."""
    req, resp = body["request"], body["response"]
    if provider == "tencent":
        return sum(s["Fee"] for s in resp["Response"]["SendStatusSet"]), []
    if provider == "kx":
        if "list" in req:
            return sum(_parts(item["msgcontent"]) for item in req["list"]), []
        return _parts(req["msgcontent"]) * len(req["mobile"].split(",")), []
    keys, n_failed = _send_keys(provider, body)
    return n_failed, keys  # a message rejected at submit counts 1


def _check_against_server(truth: GroundTruth, recorder: Recorder) -> None:
    for provider in t.PROVIDERS:
        counts = truth.of(provider)
        sent: set[tuple[str, str]] = set()
        seen: set[tuple[str, str]] = set()
        sends = submit_failed = receipt_records = dups = delivered = failed = early = replies = 0
        send_requests = receipt_requests = segments = 0
        send_walls: dict[tuple[str, str], float] = {}
        firsts: dict[tuple[str, str], dict[str, Any]] = {}
        aliyun_keys: list[tuple[str, str]] = []
        for path, _, body in recorder.requests:
            if path == t.SEND_PATHS[provider]:
                keys, n_failed = _send_keys(provider, body)
                send_requests += 1
                sends += len(keys) + n_failed
                submit_failed += n_failed
                sent.update(keys)
                send_walls.update((key, _sent_wall(body["sent_at"])) for key in keys)
                known, receipt_keys = _send_segments(provider, body)
                segments += known
                aliyun_keys += receipt_keys
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
                    firsts[key] = record
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
        # Segments: Alibaba's from the receipt posted for the message, else 1.
        segments += sum(int(firsts[key]["sms_size"]) if key in firsts else 1 for key in aliyun_keys)
        assert counts.segments == segments == truth.segments[provider], provider
        lags = [_report_lag(provider, record, send_walls[key]) for key, record in firsts.items()]
        late = [lag for lag in lags if lag > 3600]
        assert all(2 * 3600 - 2 <= lag <= 6 * 3600 + 2 for lag in late)
        assert all(-2 <= lag <= t.RECEIPT_MAX_S for lag in lags if lag <= 3600)
        assert counts.late_receipts == len(late), provider
    assert truth.late_receipts == sum(truth.of(p).late_receipts for p in t.PROVIDERS)


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
    assert all(truth.segments[p] > truth.of(p).sends - truth.of(p).submit_failed for p in ("aliyun", "kx"))
    assert all(truth.of(p).receipts_dropped == truth.of(p).receipts_caught_up == 0 for p in t.PROVIDERS)
    # No phone number reaches the logs.
    phones = {m for _, _, body in recorder.requests for m in re.findall(r"1[3-9]\d{9}", orjson.dumps(body).decode())}
    assert phones and not any(p in caplog.text for p in phones)


def _receipt_posts(recorder: Recorder, provider: str, t0: float) -> list[tuple[float, list[dict[str, Any]]]]:
    return [(at - t0, body) for (path, _, body), at in zip(recorder.requests, recorder.times, strict=True)
            if path == t.RECEIPT_PATHS[provider]]


@pytest.mark.asyncio
async def test_drive_with_outage_blackouts_and_late_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "LATE_RECEIPT_SHARE", 0.25)  # enough late receipts in a short run
    monkeypatch.setattr(plan_module, "LONG_WEIGHT", 1.0)  # and enough long messages
    duration, rate, seed = 2.5, 30.0, 5
    outage = Outage(carrier="移动", delivery_rate=0.0, start=0.0, duration=duration)  # 移动 fails all run
    lost = Blackout(provider="aliyun", start=0.8, duration=1.0)
    held = Blackout(provider="tencent", start=0.8, duration=0.8, catch_up=True)
    plan = plan_traffic(duration=duration, rate=rate, seed=seed, start=TS, outage=outage, blackout=[lost, held])
    # The plan has receipts due in both windows, so the checks below are not vacuous.
    for b in (lost, held):
        assert sum(b.start <= m.receipt_due < b.end for m in plan.messages(b.provider) if m.receipt) >= 3
    assert sum(m.segments > 1 and m.receipt is not None and lost.start <= m.receipt_due < lost.end
               for m in plan.messages("aliyun")) >= 2

    recorder = Recorder(REPLIES)
    server = TestServer(recorder.app(), host="127.0.0.1")
    await server.start_server()
    try:
        t0 = asyncio.get_running_loop().time()
        truth = await drive(str(server.make_url("")), duration=duration, rate=rate, seed=seed, outage=outage,
                            blackout=[lost, held])
    finally:
        await server.close()
    _check_against_server(truth, recorder)

    # Blackouts: no receipt push of that provider inside its window (the margin covers a push that
    # started just before it); pushes before and after it.
    for b in (lost, held):
        times = [at for at, _ in _receipt_posts(recorder, b.provider, t0)]
        assert not [at for at in times if b.start + 0.3 <= at < b.end], (b, times)
        assert any(at < b.start + 0.3 for at in times) and any(at >= b.end for at in times), (b, times)
    # Lost for good: exactly the receipts the blackout withheld are missing; they stay pending, and
    # a long message without its receipt counts 1 segment (nothing said its sms_size).
    aliyun = truth.aliyun
    planned = sum(1 for m in plan.messages("aliyun") if m.receipt)
    assert aliyun.receipts_dropped > 0 and aliyun.receipts_caught_up == 0
    assert aliyun.delivered + aliyun.failed - aliyun.submit_failed == planned - aliyun.receipts_dropped
    assert aliyun.pending >= aliyun.receipts_dropped
    assert aliyun.segments < sum(m.segments for m in plan.messages("aliyun"))
    # Caught up: nothing lost, the held ones go out right after the window.
    tencent = truth.tencent
    assert tencent.receipts_caught_up > 0 and tencent.receipts_dropped == 0
    assert tencent.delivered == sum(m.outcome == "delivered" for m in plan.messages("tencent"))
    assert tencent.failed == sum(m.outcome in ("failed", "submit_failed") for m in plan.messages("tencent"))
    assert tencent.segments == sum(m.segments for m in plan.messages("tencent"))
    after = [len(body) for at, body in _receipt_posts(recorder, "tencent", t0) if held.end <= at < held.end + 0.6]
    assert sum(after) >= tencent.receipts_caught_up
    # Outage: every receipt for a 移动 number says failed, with that carrier's codes; others deliver.
    mobile = {"aliyun": {c for c, _, _ in t.ALIYUN_RECEIPT_FAILURES["移动"]},
              "tencent": {c for c, _, _ in t.TENCENT_RECEIPT_FAILURES["移动"]},
              "kx": {c for c, _, _ in t.KX_RECEIPT_FAILURES}}
    outcomes: Counter[tuple[str, bool]] = Counter()
    for provider in t.PROVIDERS:
        for _, body in _receipt_posts(recorder, provider, t0):
            for record in body:
                key, ok = _receipt_key(provider, record)
                is_mobile = t.carrier_of(key[1]) == "移动"
                outcomes[("移动" if is_mobile else "other", ok)] += 1
                if is_mobile:
                    code = {"aliyun": "err_code", "tencent": "errmsg", "kx": "code"}[provider]
                    assert record[code] in mobile[provider]
    assert outcomes[("移动", True)] == 0 and outcomes[("移动", False)] > 5
    assert outcomes[("other", True)] > 10
    assert truth.late_receipts > 0


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
