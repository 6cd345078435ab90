"""A scenario through the real pipeline against a separate, simple reference implementation.

Twelve hundred messages over the three providers, sent within one hour of their own (49 hours
ago, so no other test shares their rollup minutes): receipts out of order, duplicated, before
their send, intermediate failures followed by deliveries, submit rejections, receipt-only
messages and messages left pending. The reference folds the same events with plain Python; the
pipeline's `sms.messages` and rollups must agree with it exactly (latency quantiles from the
rollup's sketch within 1%)."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import aiohttp
import orjson
import pytest

from sms_analytics.model.knowledge import KnowledgeBase
from sms_analytics.model.phone import normalize
from sms_analytics.runtime import Runtime
from sms_analytics.simulate.payloads.aliyun import aliyun_report, aliyun_send
from sms_analytics.simulate.payloads.common import random_phone
from sms_analytics.simulate.payloads.kx import kx_report, kx_send
from sms_analytics.simulate.payloads.tencent import tencent_send, tencent_status
from tests.conftest import TOKEN, eventually, rolled_up_within, rows

pytestmark = pytest.mark.pipeline
OURS = "provider IN ('aliyun', 'kx', 'tencent')"  # other tests load providers of their own into nearby hours
KB = KnowledgeBase.load()
N = 1200
RECEIPT_CODES = {  # (code, message, delivered) per provider, from the seed tables
    "aliyun": [("DELIVERED", "用户接收成功", True)] * 6 + [("MK:0001", "空号", False), ("IB:0064", "关机", False),
                                                          ("DB:0141", "曾多次投诉移动或者工信部的黑名单", False), ("EXPIRED", "短消息超过有效期", False)],
    "tencent": [("DELIVRD", "用户短信送达成功", True)] * 6 + [("DB:0107", "关机", False), ("ERR:044", "空号", False),
                                                          ("MN:0006", "运营商频率限制", False)],
    "kx": [("DELIVRD", "成功", True)] * 6 + [("UNDELIV", "短信接收失败", False), ("EXPIRED", "短信接收失败", False),
                                            ("REJECTD", "客户接收失败", False)],
}


@dataclass
class Msg:
    provider: str
    message_id: str
    phone: str
    sent: int  # epoch seconds
    with_send: bool = True
    submit_error: tuple[str, str] | None = None
    receipts: list[tuple[int, str, str, bool]] = field(default_factory=list)  # (reported, code, msg, delivered)


def make_scenario(rng: random.Random, run: str, base: int) -> list[Msg]:
    msgs = []
    for i in range(N):
        provider = rng.choice(("aliyun", "aliyun", "tencent", "tencent", "kx"))
        phone, _ = random_phone(rng)
        m = Msg(provider, f"{run}-{i}" + ("^0" if provider == "aliyun" else ""), phone, base + rng.randrange(3540))
        roll = rng.random()
        if roll < 0.05 and provider != "kx":
            m.submit_error = ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控") if provider == "aliyun" else \
                ("LimitExceeded.PhoneNumberDailyLimit", "单个手机号日下发短信条数超过设定的上限")
        elif roll < 0.12:
            pass  # no receipt: pending
        else:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                code, text, ok = rng.choice(RECEIPT_CODES[provider])
                m.receipts.append((m.sent + rng.randrange(1, 900), code, text, ok))
            if roll > 0.95:
                m.with_send = False  # receipt-only (Alibaba receipts still carry their send_time)
        msgs.append(m)
    return msgs


def reference(msgs: list[Msg]) -> dict[tuple[str, str, str], Any]:
    """Plain fold: newest receipt wins (then delivered, then greater code); duplicates once."""
    out = {}
    for m in msgs:
        carrier = normalize(m.phone).carrier
        sent_ms = m.sent * 1000 if (m.with_send or m.provider == "aliyun") else None
        if m.submit_error:
            status, code, text, stage, latency = "failed", m.submit_error[0], m.submit_error[1], "submit", None
        elif m.receipts:
            reported, code, text, ok = max(set(m.receipts), key=lambda r: (r[0], r[3], r[1], r[2]))
            status, stage = ("delivered" if ok else "failed"), "receipt"
            latency = None if sent_ms is None else max(0, reported * 1000 - sent_ms)
        else:
            status, code, text, stage, latency = "pending", "", "", "", None
        if status == "failed":
            category = KB.classify(m.provider, code, carrier, stage, text)[0]
            category = "unknown" if category == "delivered" else category
        else:
            category = {"pending": "", "delivered": "delivered"}[status]
        out[(m.provider, m.message_id, normalize(m.phone).masked)] = {
            "status": status, "error_code": code, "failure_category": category, "latency_ms": latency,
            "receipt_count": len({(r[0], r[1]) for r in m.receipts}),
        }
    return out


def posts(msgs: list[Msg], rng: random.Random) -> list[tuple[str, Any]]:
    sends: list[tuple[str, Any]] = []
    receipts: dict[str, list[Any]] = {"aliyun": [], "tencent": [], "kx": []}
    for m in msgs:
        if m.with_send:
            sends.append(_send(m))
        for reported, code, text, ok in m.receipts:
            receipt = _receipt(m, reported, code, text, ok)
            receipts[m.provider] += [receipt] * (2 if rng.random() < 0.1 else 1)  # provider retries
    batches = [(f"/callbacks/{ {'aliyun': 'aliyun/sms-report', 'tencent': 'tencent/status', 'kx': 'kx/report'}[p]}", chunk)
               for p, rs in receipts.items() for chunk in _chunks(rng.sample(rs, len(rs)), 50)]
    everything = sends + batches
    rng.shuffle(everything)  # receipts before sends, out of order
    return everything


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def _send(m: Msg) -> tuple[str, Any]:
    if m.provider == "aliyun":
        body = aliyun_send([m.phone], sign_name="阿里云", template_code="SMS_1", request_id=_request_id(m),
                           sent_at=float(m.sent), biz_id=None if m.submit_error else m.message_id, error=m.submit_error)
        return "/v1/sends/aliyun", body
    if m.provider == "tencent":
        body = tencent_send([m.phone], sdk_app_id="1400006666", template_id="1110", sign_name="腾讯云",
                            session_context="", serial_nos=["" if m.submit_error else m.message_id],
                            request_id=_request_id(m), sent_at=float(m.sent),
                            results=[m.submit_error] if m.submit_error else None)
        return "/v1/sends/tencent", body
    return "/v1/sends/kx", kx_send([m.phone], contents="【邦邦快递】您的快递已到", taskid=m.message_id,
                                   ts_ms=m.sent * 1000, sent_at=float(m.sent))


def _request_id(m: Msg) -> str:
    return m.message_id.removeprefix("submit-failed:")


def _receipt(m: Msg, reported: int, code: str, text: str, ok: bool) -> Any:
    if m.provider == "aliyun":
        return aliyun_report(m.phone, m.message_id, send_time=m.sent, report_time=reported, err_code=code,
                             err_msg=text, success=ok)
    if m.provider == "tencent":
        return tencent_status(m.phone, m.message_id, receive_time=reported, errmsg=code, description=text,
                              report_status="SUCCESS" if ok else "FAIL")
    return kx_report(m.phone, m.message_id, report_time=reported, code=code, msg=text)


async def test_scenario_matches_reference_and_rollups(pipeline: Runtime) -> None:
    rng = random.Random(20261122)
    run = f"scn{time.time_ns() % 10**9}"
    base = (int(time.time()) - 49 * 3600) // 3600 * 3600
    msgs = make_scenario(rng, run, base)
    # Tencent submit failures have no SerialNo: their message id is submit-failed:<RequestId>.
    for m in msgs:
        if m.submit_error:
            m.message_id = f"submit-failed:{m.message_id}"
    expected = reference(msgs)
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        for path, body in posts(msgs, rng):
            async with http.post(f"{path}?token={TOKEN}", data=orjson.dumps(body)) as resp:
                assert resp.status in (200, 202), await resp.text()

    where = f"(message_id LIKE '{run}-%' OR message_id LIKE 'submit-failed:{run}-%')"

    def as_map(got: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(r["provider"], r["message_id"], r["phone_masked"]): {k: r[k] for k in (
            "status", "error_code", "failure_category", "latency_ms", "receipt_count")} for r in got}

    async def all_there() -> dict[tuple[str, str, str], dict[str, Any]] | None:
        got = as_map(await rows(pipeline, f"SELECT provider, message_id, phone_masked, status, error_code, "
                                          f"failure_category, latency_ms, receipt_count FROM sms.messages WHERE {where}"))
        return got if got == expected else None  # every send and receipt has landed

    try:
        actual = await eventually(all_there, timeout=90, interval=1.0)
    except AssertionError:
        actual = as_map(await rows(pipeline, f"SELECT provider, message_id, phone_masked, status, error_code, "
                                             f"failure_category, latency_ms, receipt_count FROM sms.messages WHERE {where}"))
    assert actual == expected
    by_class = Counter((v["status"], v["failure_category"]) for v in expected.values())
    assert by_class[("delivered", "delivered")] > 500 and len(by_class) >= 6  # the scenario is not trivial
    print(f"\nscenario: {N} messages; by (status, category): {dict(sorted(by_class.items()))}")

    # Latency quantiles: exact in sms.messages; the rollup sketch within 1%.
    latencies = sorted(v["latency_ms"] for v in expected.values() if v["status"] == "delivered" and v["latency_ms"] is not None)
    levels = (0.5, 0.9, 0.99)
    exact = [latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in levels]
    minutes = f"minute >= toDateTime({base}, 'UTC') AND minute < toDateTime({base + 3600}, 'UTC')"
    totals_sql = (f"SELECT sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed, sum(expired) AS expired, "
                  f"sum(pending) AS pending, quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state) AS q "
                  f"FROM sms.rollup_minute WHERE {minutes} AND provider IN ('aliyun', 'kx', 'tencent')")
    want = Counter(v["status"] for v in expected.values())
    messages_sent = sum(1 for m in msgs if m.with_send or m.provider == "aliyun")  # those with a sent_at

    async def rolled_up() -> dict[str, Any] | None:
        r = (await rows(pipeline, totals_sql))[0]
        ok = (r["sent"], r["delivered"], r["failed"], r["pending"]) == (
            messages_sent, *(sum(1 for (p, mid, _), v in expected.items() if v["status"] == s and _has_sent(msgs, mid))
                             for s in ("delivered", "failed", "pending")))
        return r if ok else None

    r = await rolled_up_within(pipeline, rolled_up)
    assert r["expired"] == 0 and sum(want.values()) == N
    q = dict(zip((0.5, 0.9, 0.95, 0.99), r["q"], strict=False))
    for level, value in zip(levels, exact, strict=False):
        assert abs(q[level] - value) <= 0.01 * value, (level, q[level], value)
    print(f"latency p50/p90/p99 exact {exact} ms; rollup sketch {[round(q[lv]) for lv in levels]} ms; "
          f"rollup totals {[r[k] for k in ('sent', 'delivered', 'failed', 'expired', 'pending')]}")
    exact_in_ch = (await rows(pipeline, f"SELECT quantilesExactLow(0.5, 0.9, 0.99)(latency_ms) AS q FROM sms.messages "
                                         f"WHERE {where} AND status = 'delivered' AND latency_ms IS NOT NULL"))[0]["q"]
    assert [abs(a - b) <= 1000 for a, b in zip(exact_in_ch, exact, strict=False)] == [True] * 3


def _has_sent(msgs: list[Msg], message_id: str) -> bool:
    m = _BY_ID.get(message_id)
    if m is None:
        _BY_ID.update({x.message_id: x for x in msgs})
        m = _BY_ID[message_id]
    return m.with_send or m.provider == "aliyun"


_BY_ID: dict[str, Msg] = {}


async def test_completeness_maturation_lag_and_reconciliation_views(pipeline: Runtime) -> None:
    """Run after the scenario: its hour (49 h ago) holds only scenario messages."""
    base = (int(time.time()) - 49 * 3600) // 3600 * 3600
    hour = f"toDateTime({base}, 'UTC')"
    msgs = await rows(pipeline, f"SELECT provider, carrier, status, outcome_stage, latency_ms FROM sms.messages "
                                f"WHERE sent_at >= {hour} AND sent_at < {hour} + INTERVAL 1 HOUR AND {OURS}")
    assert len(msgs) > 1000

    async def caught_up() -> list[dict[str, Any]] | None:  # the rollups recompute every few seconds, behind the rows
        found = await rows(pipeline, f"SELECT * FROM sms.receipt_completeness WHERE hour = {hour} AND {OURS}")
        sent = {(m["provider"], m["carrier"]) for m in msgs}
        counts = {(c["provider"], c["carrier"]): c["sent"] for c in found}
        return found if counts == {k: sum(1 for m in msgs if (m["provider"], m["carrier"]) == k) for k in sent} else None

    completeness = await rolled_up_within(pipeline, caught_up)
    for c in completeness:
        group = [m for m in msgs if (m["provider"], m["carrier"]) == (c["provider"], c["carrier"])]
        final = [m for m in group if m["outcome_stage"] == "receipt"]
        assert c["sent"] == len(group)
        for name, limit in (("within_1m", 60_000), ("within_5m", 300_000), ("within_30m", 1_800_000)):
            assert c[name] == pytest.approx(sum(1 for m in final if m["latency_ms"] <= limit) / len(group))
        assert 0 <= c["within_1m"] <= c["within_5m"] <= c["within_30m"] <= 1
    maturation_sql = f"SELECT * FROM sms.cohort_maturation WHERE hour = {hour} AND {OURS} ORDER BY provider"

    async def matured() -> list[dict[str, Any]] | None:  # the hourly level follows the minutes by a refresh
        found = await rows(pipeline, maturation_sql)
        return found if [m["provider"] for m in found] == ["aliyun", "kx", "tencent"] else None

    maturation = await rolled_up_within(pipeline, matured)
    for m in maturation:
        rates = m["provisional_rate"]
        assert rates == sorted(rates) and rates[0] >= 0 and rates[-1] <= 1
        delivered = sum(1 for x in msgs if x["provider"] == m["provider"] and x["status"] == "delivered")
        assert rates[-1] == pytest.approx(delivered / m["sent"])  # receipts all came within 72 h
    lag = await rows(pipeline, "SELECT provider, lag_seconds FROM sms.receipt_lag "
                               "WHERE provider IN ('aliyun', 'kx', 'tencent') ORDER BY provider")  # others' test data
    assert [r["provider"] for r in lag] == ["aliyun", "kx", "tencent"] and all(r["lag_seconds"] >= 0 for r in lag)

    ours = [m for m in msgs if m["provider"] == "tencent"]
    theirs = {"request_success_count": len(ours) + 3, "callback_success_count": sum(m["status"] == "delivered" for m in ours),
              "callback_fail_count": sum(m["status"] == "failed" for m in ours) - 2}
    pipeline.warehouse.insert("sms.provider_stats", [["tencent", "1400006666", datetime_utc(base), *theirs.values(),
                                                      datetime_utc(time.time())]],
                              ["provider", "app_id", "hour", *theirs, "pulled_at"])
    rec = await rows(pipeline, f"SELECT * FROM sms.reconciliation WHERE provider = 'tencent' AND hour = {hour}")
    assert len(rec) == 1
    assert (rec[0]["sent_diff"], rec[0]["delivered_diff"], rec[0]["failed_diff"]) == (-3, 0, 2)
    assert rec[0]["our_sent"] == len(ours)


def datetime_utc(ts: float) -> Any:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC)
