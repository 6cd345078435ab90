"""simulate/driver.py and the payloads: the simulator's codes against the seed documents, and short runs of `drive`
against a recording server (the payload, plan and scenario tests are in the files of their modules)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sms_analytics.simulate import plan as plan_module
from sms_analytics.simulate.conversions import CONVERSIONS_PATH, VERIFICATION_TEMPLATES
from sms_analytics.simulate.driver import (
    PROVIDERS,
    RECEIPT_PATHS,
    SEND_PATHS,
    UPLINK_PATHS,
    GroundTruth,
    SimulatorError,
    drive,
)
from sms_analytics.simulate.payloads.common import CHINA_TZ, carrier_of
from sms_analytics.simulate.plan import (
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SUBMIT_ERRORS,
    KX_RECEIPT_FAILURES,
    KX_SUBMIT_ERRORS,
    RECEIPT_MAX_S,
    TENCENT_DELIVERED,
    TENCENT_RECEIPT_FAILURES,
    TENCENT_SUBMIT_ERRORS,
    plan_traffic,
)
from sms_analytics.simulate.scenarios import Blackout, Outage

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
    for carrier, rows in ALIYUN_RECEIPT_FAILURES.items():
        for code, msg, _ in rows:
            assert f"\n{carrier}\t{code}\t{msg}\t" in aliyun_doc, (carrier, code)
    for code, msg in ALIYUN_SUBMIT_ERRORS:
        assert f"\n{code}\t{msg}\t" in aliyun_doc, code


def test_tencent_codes_are_documented(tencent_doc: str) -> None:
    assert f"\n{TENCENT_DELIVERED[0]} 三网 {TENCENT_DELIVERED[1]}\n" in tencent_doc
    for carrier, rows in TENCENT_RECEIPT_FAILURES.items():
        for code, msg, _ in rows:
            assert f"\n{code} {carrier} {msg}\n" in tencent_doc, (carrier, code)
    for code, msg in TENCENT_SUBMIT_ERRORS:
        assert f"\n{code}\n" in tencent_doc and msg in tencent_doc, code
    assert '"Code": "Ok"' in tencent_doc and '"Message": "send success"' in tencent_doc


def test_kx_codes_are_documented(kx_doc: str) -> None:
    assert '"code":"DELIVRD","msg":"成功"' in kx_doc
    for code, msg, _ in KX_RECEIPT_FAILURES:
        assert f"\n{code}\t{msg}\t" in kx_doc, code
    for code, msg in KX_SUBMIT_ERRORS:
        assert f"\n{code}\t{msg}\t" in kx_doc, code
    assert '"msg": "提交成功"' in kx_doc


# --- payload formats -------------------------------------------------------------------------


# --- the plan ---------------------------------------------------------------------------------


def _china(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ).timestamp()


def _kx(text: str) -> float:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ).timestamp()


def _report_lag(provider: str, record: dict[str, Any], send_wall: float) -> float:
    """Seconds from the send to the report time a receipt record states (whole seconds)."""
    if provider == "aliyun":
        return _china(record["report_time"]) - _china(record["send_time"])
    if provider == "tencent":
        return _china(record["user_receive_time"]) - send_wall
    return _kx(record["time"]) - send_wall


def _parts(text: str) -> int:
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


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
        if request.path.startswith("/v1/sends/") or request.path == "/v1/conversions":
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
    for provider in PROVIDERS:
        counts = truth.of(provider)
        sent: set[tuple[str, str]] = set()
        seen: set[tuple[str, str]] = set()
        sends = submit_failed = receipt_records = dups = delivered = failed = early = replies = 0
        send_requests = receipt_requests = segments = 0
        send_walls: dict[tuple[str, str], float] = {}
        firsts: dict[tuple[str, str], dict[str, Any]] = {}
        aliyun_keys: list[tuple[str, str]] = []
        for path, _, body in recorder.requests:
            if path == SEND_PATHS[provider]:
                keys, n_failed = _send_keys(provider, body)
                send_requests += 1
                sends += len(keys) + n_failed
                submit_failed += n_failed
                sent.update(keys)
                send_walls.update((key, _sent_wall(body["sent_at"])) for key in keys)
                known, receipt_keys = _send_segments(provider, body)
                segments += known
                aliyun_keys += receipt_keys
            elif path == RECEIPT_PATHS[provider]:
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
            elif path == UPLINK_PATHS[provider]:
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
        assert all(-2 <= lag <= RECEIPT_MAX_S for lag in lags if lag <= 3600)
        assert counts.late_receipts == len(late), provider
    assert truth.late_receipts == sum(truth.of(p).late_receipts for p in PROVIDERS)


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
    totals = {k: sum(getattr(truth.of(p), k) for p in PROVIDERS)
              for k in ("sends", "delivered", "failed", "receipts_before_send", "duplicate_receipts_posted",
                        "replies_posted")}
    assert totals["sends"] > 40 and totals["delivered"] > 30
    assert totals["receipts_before_send"] > 0 and totals["duplicate_receipts_posted"] > 0
    assert totals["replies_posted"] >= 3
    assert set(truth.to_dict()) == {"aliyun", "tencent", "kx"}
    assert all(truth.segments[p] > truth.of(p).sends - truth.of(p).submit_failed for p in ("aliyun", "kx"))
    assert all(truth.of(p).receipts_dropped == truth.of(p).receipts_caught_up == 0 for p in PROVIDERS)
    _check_conversions(truth, recorder)
    # No phone number reaches the logs.
    phones = {m for _, _, body in recorder.requests for m in re.findall(r"1[3-9]\d{9}", orjson.dumps(body).decode())}
    assert phones and not any(p in caplog.text for p in phones)


def _check_conversions(truth: Any, recorder: Recorder) -> None:
    """Every conversion posted names a delivered verification-code message; the ground truth counts the
    distinct ones, and repeats and conversions ahead of their receipt happen."""
    posted = [r for path, _, body in recorder.requests if path == CONVERSIONS_PATH for r in body]
    assert posted and len(posted) == sum(truth.of(p).conversions_posted for p in PROVIDERS)
    distinct = {orjson.dumps(r) for r in posted}
    assert len(distinct) == sum(truth.of(p).converted for p in PROVIDERS) < len(posted)  # some repeated
    assert sum(truth.of(p).conversions_before_receipt for p in PROVIDERS) > 0
    assert {r["provider"] for r in posted} <= set(VERIFICATION_TEMPLATES)
    assert any("message_id" not in r and r["template"] in VERIFICATION_TEMPLATES.values() for r in posted)
    assert all(truth.of(p).converted <= truth.of(p).delivered for p in PROVIDERS)


def _receipt_posts(recorder: Recorder, provider: str, t0: float) -> list[tuple[float, list[dict[str, Any]]]]:
    return [(at - t0, body) for (path, _, body), at in zip(recorder.requests, recorder.times, strict=True)
            if path == RECEIPT_PATHS[provider]]


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
    mobile = {"aliyun": {c for c, _, _ in ALIYUN_RECEIPT_FAILURES["移动"]},
              "tencent": {c for c, _, _ in TENCENT_RECEIPT_FAILURES["移动"]},
              "kx": {c for c, _, _ in KX_RECEIPT_FAILURES}}
    outcomes: Counter[tuple[str, bool]] = Counter()
    for provider in PROVIDERS:
        for _, body in _receipt_posts(recorder, provider, t0):
            for record in body:
                key, ok = _receipt_key(provider, record)
                is_mobile = carrier_of(key[1]) == "移动"
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
