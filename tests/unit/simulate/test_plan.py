"""simulate/plan.py: the traffic plan (documented codes only, deterministic per seed, latencies, late receipts, long messages, outages) (from tests/test_simulate.py)."""

from __future__ import annotations

import math
import random
import re
import statistics
from collections import Counter
from statistics import NormalDist
from typing import Any

import orjson

from sms_analytics.model.providers import segments as kx_segments
from sms_analytics.model.region import region_of_national
from sms_analytics.simulate.driver import PROVIDERS
from sms_analytics.simulate.payloads.common import CARRIER_SEGMENTS, carrier_of
from sms_analytics.simulate.plan import (
    ALIYUN_DELIVERED,
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SUBMIT_ERRORS,
    CARRIER_LATENCY,
    KX_DELIVERED,
    KX_RECEIPT_FAILURES,
    KX_SUBMIT_ERRORS,
    RECEIPT_MAX_S,
    TENCENT_DELIVERED,
    TENCENT_RECEIPT_FAILURES,
    TENCENT_SUBMIT_ERRORS,
    PlannedMessage,
    TrafficPlan,
    plan_traffic,
    receipt_delay,
)
from sms_analytics.simulate.scenarios import CARRIER_WEIGHTS, Blackout, Outage
from tests.unit.simulate.test_driver import TS, _parts, _report_lag


def test_plan_only_uses_documented_codes() -> None:
    plan = plan_traffic(duration=60, rate=50, seed=3, start=TS)
    allowed = {
        "aliyun": {c for rows in ALIYUN_RECEIPT_FAILURES.values() for c, _, _ in rows}
        | {c for c, _ in ALIYUN_SUBMIT_ERRORS} | {ALIYUN_DELIVERED[0]},
        "tencent": {c for rows in TENCENT_RECEIPT_FAILURES.values() for c, _, _ in rows}
        | {c for c, _ in TENCENT_SUBMIT_ERRORS} | {TENCENT_DELIVERED[0]},
        "kx": {c for c, _, _ in KX_RECEIPT_FAILURES} | {c for c, _ in KX_SUBMIT_ERRORS}
        | {KX_DELIVERED[0]},
    }
    for msg in plan.messages():
        if msg.outcome != "pending":
            assert msg.code in allowed[msg.provider]


def _bodies(plan: TrafficPlan) -> bytes:
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


def test_receipt_latency_is_per_carrier_with_a_slow_tail() -> None:
    plan = plan_traffic(duration=120, rate=50, seed=4, start=TS)  # a full-length run: not compressed
    delays: dict[str, list[float]] = {c: [] for c in CARRIER_WEIGHTS}
    for send in plan.sends:
        for m in send.messages:
            if m.receipt is not None and not m.late:
                delays[m.carrier].append(m.receipt_due - send.at)
    medians = {c: statistics.median(v) for c, v in delays.items()}
    for carrier, median in medians.items():
        assert len(delays[carrier]) > 500
        assert abs(median / CARRIER_LATENCY[carrier].median - 1) < 0.15, (carrier, median)
        assert max(delays[carrier]) <= RECEIPT_MAX_S + 1e-6
    assert medians["移动"] * 1.25 < medians["联通"] and medians["联通"] * 1.25 < medians["电信"], medians


def test_receipt_delay_has_a_slow_tail_per_carrier() -> None:
    rng = random.Random(3)
    for carrier, profile in CARRIER_LATENCY.items():
        draws = [receipt_delay(rng, carrier) for _ in range(20000)]
        assert min(draws) >= 0.5 and max(draws) <= RECEIPT_MAX_S
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
            assert send.at < m.receipt_due <= send.at + RECEIPT_MAX_S + 1e-6  # posted within the run
            if m.late:
                late += 1
                assert 2 * 3600 - 2 <= lag <= 6 * 3600 + 2, (m.provider, lag)
                assert not m.early
            else:
                normal += 1
                assert -1 <= lag <= RECEIPT_MAX_S + 1, (m.provider, lag)
    assert 0.004 < late / (late + normal) < 0.02, late
    # Late ones are posted in step with their provider time, scaled: 6 h -> 30 s of a full run.
    for send in plan.sends:
        for m in send.messages:
            if m.late and m.receipt is not None:
                lag = _report_lag(m.provider, m.receipt, TS + send.at)
                assert abs((m.receipt_due - send.at) - lag / (6 * 3600) * RECEIPT_MAX_S) < 0.01


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
    for provider in PROVIDERS:
        segs = Counter(m.segments for m in plan.messages(provider) if m.outcome != "submit_failed")
        long_share = sum(n for k, n in segs.items() if k > 1) / sum(segs.values())
        assert {1, 2, 3} <= set(segs) and 0.03 < long_share < 0.25, (provider, segs)
    assert kx_segments("x" * 70) == 1 and kx_segments("x" * 71) == 2 and kx_segments("x" * 135) == 3


def _delivered_share(messages: list[PlannedMessage]) -> float:
    with_receipt = [m for m in messages if m.outcome in ("delivered", "failed")]
    assert len(with_receipt) > 100
    return sum(m.outcome == "delivered" for m in with_receipt) / len(with_receipt)


def test_outage_lowers_that_carriers_delivery_inside_its_window_only() -> None:
    outage = Outage(carrier="移动", delivery_rate=0.3, start=30.0, duration=30.0)
    base = plan_traffic(duration=90, rate=50, seed=11, start=TS)
    hit = plan_traffic(duration=90, rate=50, seed=11, start=TS, outage=outage)
    inside: list[PlannedMessage] = []
    outside: list[PlannedMessage] = []
    others_inside: list[PlannedMessage] = []
    base_inside: list[PlannedMessage] = []
    mobile_codes = {c for c, _, _ in ALIYUN_RECEIPT_FAILURES["移动"]} | {
        c for c, _, _ in TENCENT_RECEIPT_FAILURES["移动"]} | {c for c, _, _ in KX_RECEIPT_FAILURES}
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


def test_plan_shape() -> None:
    plan = plan_traffic(duration=120, rate=50, seed=1, start=TS)
    messages = list(plan.messages())
    assert 4500 < len(messages) < 7500
    segments = {s for segs in CARRIER_SEGMENTS.values() for s in segs}
    assert all(re.fullmatch(r"1\d{10}", m.phone) and m.phone[:3] in segments for m in messages)
    assert all(carrier_of(m.phone) == m.carrier for m in messages)
    for provider in PROVIDERS:
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


def test_a_regional_outage_hits_that_provinces_numbers_only_with_one_code() -> None:
    outage = Outage(carrier="移动", delivery_rate=0.0, start=0.0, duration=60.0, province="广东")
    base = plan_traffic(duration=60, rate=50, seed=17, start=TS)
    hit = plan_traffic(duration=60, rate=50, seed=17, start=TS, outage=outage)
    inside = []
    for m0, m1 in zip(base.messages(), hit.messages(), strict=True):
        regional = m1.carrier == "移动" and region_of_national(m1.phone).province == "广东"
        assert m1.in_outage == regional
        if regional:
            inside.append(m1)
        else:
            assert (m0.outcome, m0.code, m0.receipt) == (m1.outcome, m1.code, m1.receipt)
    failed = [m for m in inside if m.outcome == "failed"]
    assert len(failed) > 20 and all(m.outcome != "delivered" for m in inside)
    # One fault, one code per provider: the first of its 移动 table.
    firsts = {ALIYUN_RECEIPT_FAILURES["移动"][0][0], TENCENT_RECEIPT_FAILURES["移动"][0][0], KX_RECEIPT_FAILURES[0][0]}
    assert {m.code for m in failed} <= firsts


def test_a_template_failure_hits_that_template_on_every_carrier() -> None:
    template = "SMS_153055065"
    hit = plan_traffic(duration=60, rate=50, seed=5, start=TS,
                       outage=Outage(None, 0.0, 0.0, 60.0, template=template))
    for send in hit.sends:
        used = send.provider == "aliyun" and template in orjson.dumps(send.body).decode()
        assert all(m.in_outage == used for m in send.messages)
    assert {m.carrier for m in hit.messages() if m.in_outage and m.outcome == "failed"} == {"移动", "联通", "电信"}
