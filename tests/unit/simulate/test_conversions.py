"""simulate/conversions.py on a traffic plan, and the stream's conversion-rate alert fed with it: a conversion
drop scenario fires the alert for the verification-code templates, normal traffic fires nothing."""

from __future__ import annotations

from typing import Any

from sms_analytics.settings import AlertRules, ConversionRateRule
from sms_analytics.simulate.conversions import VERIFICATION_TEMPLATES, ConversionDrop, plan_conversions, template_of
from sms_analytics.simulate.plan import plan_traffic
from sms_analytics.streams.alerts import Detector

DURATION, RATE, SEED = 1500.0, 10.0, 11
RULES = AlertRules.packaged().model_copy(update={
    "window_seconds": 120,
    "conversion_rate": ConversionRateRule(drop=0.5, min_volume=20, baseline_seconds=600, min_baseline_conversions=20)})


def fired(drop: ConversionDrop | None) -> list[tuple[int, str, str]]:
    """Feed the detector the plan's delivered messages (at their receipt) and conversions (at their due time),
    second by second, evaluating every 5 s."""
    plan = plan_traffic(duration=DURATION, rate=RATE, seed=SEED, start=1_800_000_000.0)
    conversions = plan_conversions(plan, SEED, drop)
    events: list[tuple[float, str, Any]] = []
    for send in plan.sends:
        for m in send.messages:
            if m.outcome == "delivered" and m.receipt is not None:
                events.append((m.receipt_due, "delivered", (m.provider, m.message_id, template_of(send))))
    events += [(c.due, "conversion", c.record) for c in conversions]
    events.sort(key=lambda e: e[0])
    detector, out, i = Detector(RULES), [], 0
    for second in range(int(DURATION) + 30):
        now = 1_800_000_000_000 + second * 1000
        tally = detector.tally()
        while i < len(events) and events[i][0] < second + 1:
            _, kind, value = events[i]
            if kind == "delivered":
                tally.delivered_template(*value)
            else:
                detector.observe_conversion(value["provider"], value.get("message_id", ""), value.get("template", ""), now)
            i += 1
        detector.add(tally, now)
        if second % 5 == 0:
            out += [(second, a.key, a.state) for a in detector.evaluate(now) if a.rule == "conversion_rate"]
    return out


def test_conversions_only_for_delivered_verification_codes() -> None:
    plan = plan_traffic(duration=120, rate=20, seed=SEED)
    conversions = plan_conversions(plan, SEED)
    delivered = sum(m.outcome == "delivered" for s in plan.sends if VERIFICATION_TEMPLATES.get(s.provider) == template_of(s)
                    for m in s.messages)
    assert 0.4 * delivered < len(conversions) < 0.8 * delivered
    assert any(c.repeat for c in conversions) and any(c.before_receipt for c in conversions)
    assert any("message_id" not in c.record for c in conversions) and any("message_id" in c.record for c in conversions)


def test_a_conversion_drop_fires_for_the_verification_codes_and_normal_traffic_nothing() -> None:
    assert fired(None) == []
    alerts = fired(ConversionDrop(800, 1100))
    firing = {key for _, key, state in alerts if state == "firing"}
    assert firing and firing <= set(VERIFICATION_TEMPLATES.values()), alerts
    assert all(800 <= s <= 1150 for s, _, state in alerts if state == "firing"), alerts
    assert {key for _, key, state in alerts if state == "resolved"} == firing, alerts
