"""The stream's alert detectors: a delivery-rate drop, a receipt blackout and a latency SLO each
fire once within the window and resolve once afterwards; normal traffic raises none."""

from __future__ import annotations

import random
from pathlib import Path

from sms_analytics.settings import AlertRules
from sms_analytics.streams.alerts import Detector, webhook_body

RULES = AlertRules(evaluate_every_seconds=1, window_seconds=60,
                   delivery_rate={"floor": 0.8, "min_volume": 50, "by": ("provider", "carrier")},
                   receipt_blackout={"lag_seconds": 30, "min_sends": 10},
                   latency_p95={"slo_ms": 20_000, "min_volume": 50})
T0 = 1_800_000_000_000


def run(detector: Detector, seconds: range, outcome: callable, per_second: int = 5) -> list:
    """Feed `per_second` sends and outcomes a second and evaluate every second."""
    fired = []
    rng = random.Random(7)
    for s in seconds:
        now = T0 + s * 1000
        for _ in range(per_second):
            carrier = rng.choice(("mobile", "unicom"))
            detector.observe_send("aliyun", now)
            result = outcome(s, carrier, rng)
            if result is not None:
                delivered, latency = result
                detector.observe_receipt("aliyun", now)
                detector.observe_outcome("aliyun", carrier, delivered, latency, now)
        fired += [(s, a.rule, a.key, a.state) for a in detector.evaluate(now)]
    return fired


def normal(s: int, carrier: str, rng: random.Random) -> tuple[bool, int]:
    return rng.random() < 0.95, int(rng.lognormvariate(8, 0.5))


def test_normal_traffic_raises_nothing() -> None:
    assert run(Detector(RULES), range(600), normal) == []


def test_a_carrier_outage_fires_once_and_resolves_once() -> None:
    def outage(s: int, carrier: str, rng: random.Random) -> tuple[bool, int]:
        if 100 <= s < 200 and carrier == "mobile":
            return rng.random() < 0.3, 3000
        return normal(s, carrier, rng)

    fired = run(Detector(RULES), range(400), outage)
    mobile = [f for f in fired if f[2] == "aliyun/mobile"]
    assert [f[3] for f in mobile] == ["firing", "resolved"]
    assert 100 < mobile[0][0] <= 100 + 60  # within the window
    assert 200 < mobile[1][0] <= 200 + 60 + 5  # once the outage left the window
    assert all(f[2] != "aliyun/unicom" for f in fired)


def test_a_receipt_blackout_fires_while_sends_continue_and_resolves() -> None:
    def blackout(s: int, carrier: str, rng: random.Random) -> tuple[bool, int] | None:
        return None if 100 <= s < 200 else normal(s, carrier, rng)

    fired = [f for f in run(Detector(RULES), range(300), blackout) if f[1] == "receipt_blackout"]
    assert [(f[2], f[3]) for f in fired] == [("aliyun", "firing"), ("aliyun", "resolved")]
    assert fired[0][0] == 100 + 30 and fired[1][0] == 200  # lag > 30 s after the last receipt at 99


def test_latency_above_the_slo_fires() -> None:
    def slow(s: int, carrier: str, rng: random.Random) -> tuple[bool, int]:
        return True, 45_000 if 100 <= s < 200 else 2_000

    fired = [f for f in run(Detector(RULES), range(300), slow) if f[1] == "latency_p95"]
    assert [f[3] for f in fired] == ["firing", "resolved"] and 100 < fired[0][0] <= 160


def test_rules_load_from_yaml_and_webhook_formats(tmp_path: Path) -> None:
    packaged = AlertRules.load()
    assert packaged == AlertRules.packaged()
    assert (packaged.window_seconds, packaged.delivery_rate.floor, packaged.receipt_blackout.lag_seconds) == (300, 0.8, 180)
    custom = tmp_path / "rules.yaml"
    custom.write_text("window_seconds: 20\ndelivery_rate: {floor: 0.5, min_volume: 3, by: [provider]}\n"
                      "webhooks: [{url: 'http://127.0.0.1:9/x', format: dingtalk}]\n")
    rules = AlertRules.load(custom)
    assert (rules.window_seconds, rules.delivery_rate.floor, rules.delivery_rate.min_volume,
            rules.delivery_rate.by_carrier) == (20, 0.5, 3, False)
    assert rules.receipt_blackout == packaged.receipt_blackout  # what the file does not give: the packaged
    detector = Detector(rules)
    for i in range(4):
        detector.observe_outcome("kx", "mobile", False, None, T0 + i)
    alert = detector.evaluate(T0 + 10)[0]
    assert (alert.rule, alert.key, alert.state) == ("delivery_rate", "kx", "firing")
    assert webhook_body(alert, "dingtalk")["msgtype"] == "text" and "FIRING" in webhook_body(alert, "slack")["text"]
    assert webhook_body(alert, "generic")["rule"] == "delivery_rate"




# --- conversion rate (issue 16) ------------------------------------------------------------------------------

CONVERSION_RULES = RULES.model_copy(update={"conversion_rate": AlertRules.packaged().conversion_rate})


def run_conversions(detector: Detector, seconds: range, rate: callable, per_second: int = 2) -> list:
    """Each second, `per_second` OTP messages delivered and each converted with probability rate(s), plus a
    marketing template that never converts; the conversions name their message by id only."""
    fired = []
    rng = random.Random(3)
    for s in seconds:
        now = T0 + s * 1000
        tally = detector.tally()
        for i in range(per_second):
            tally.delivered_template("tencent", f"{s}-{i}", "OTP").delivered_template("tencent", f"{s}-{i}-m", "PROMO")
        detector.add(tally, now)
        for i in range(per_second):
            if rng.random() < rate(s):
                detector.observe_conversion("tencent", f"{s}-{i}", "", now)
        if s % 10 == 0:  # the evaluation every 10 s
            fired += [(s, a.rule, a.key, a.state) for a in detector.evaluate(now)]
    return fired


def test_a_conversion_drop_of_a_tracked_template_fires_once_and_resolves() -> None:
    detector = Detector(CONVERSION_RULES)
    fired = run_conversions(detector, range(3600), lambda s: 0.1 if 2000 <= s < 2600 else 0.8)
    conversion = [f for f in fired if f[1] == "conversion_rate"]
    assert [(f[2], f[3]) for f in conversion] == [("OTP", "firing"), ("OTP", "resolved")]
    assert 2000 < conversion[0][0] < 2100 and 2600 < conversion[1][0] < 2700


def test_normal_conversions_and_untracked_templates_raise_nothing() -> None:
    assert run_conversions(Detector(CONVERSION_RULES), range(3600), lambda s: 0.8) == []
    # no conversions reported at all (no template tracked): nothing, whatever the rate
    assert run_conversions(Detector(CONVERSION_RULES), range(1200), lambda s: 0.0) == []
    assert run_conversions(Detector(RULES), range(1200), lambda s: 0.1 if s > 600 else 0.8) == []  # the rule off
