"""Issue 17 in the stream: delivery-rate drops per carrier × province with their own minimum volume,
and the root cause a firing drop alert carries (streams/alerts.py over model/rootcause.py): a
regional outage's province alert names its error code, the carrier's alert names the province and
the code, a one-template failure names that template only, and normal traffic raises nothing."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec
import pytest

from sms_analytics.settings import AlertRules
from sms_analytics.sinks.rows import alert_row
from sms_analytics.streams import alerts
from sms_analytics.streams.alerts import Alert, Detector, webhook_body

T0 = 1_800_000_000_000
PROVINCES = ("广东", "北京", "江苏", "四川", "浙江", "山东", "河南", "湖北")  # 广东 a quarter, the rest even
TEMPLATES = ("SMS_1", "SMS_2", "SMS_3", "SMS_4")
SIGNS = ("阿里云", "美团")
NORMAL_CODES = ("MK:0001", "IC:0015", "UNDELIV")
OUTAGE_CODE = "MK:0005"
SEEDS = pytest.mark.parametrize("seed", range(8))


def rules(**delivery_rate: object) -> AlertRules:
    rate = {"floor": 0.8, "min_volume": 50, "region_min_volume": 60, "by": ("provider", "carrier", "province"),
            **delivery_rate}
    return AlertRules(evaluate_every_seconds=1, window_seconds=60, delivery_rate=rate,
                      receipt_blackout={"lag_seconds": 30, "min_sends": 10},
                      latency_p95={"slo_ms": 600_000, "min_volume": 50})


Outcome = Callable[[int, str, str, str], tuple[bool, str]]  # (second, carrier, province, template) -> (ok, code)


def normal(s: int, carrier: str, province: str, template: str, rng: random.Random) -> tuple[bool, str]:
    return (True, "DELIVERED") if rng.random() < 0.96 else (False, rng.choice(NORMAL_CODES))


def run(detector: Detector, seconds: range, outcome: Callable[..., tuple[bool, str]],
        per_second: int = 20, seed: int = 11) -> list[Alert]:
    """Every second `per_second` outcomes of aliyun (carrier, province, template and sign at random),
    one tally a second as the join adds a batch, and an evaluation."""
    fired: list[Alert] = []
    rng = random.Random(seed)
    for s in seconds:
        now = T0 + s * 1000
        tally = detector.tally()
        for _ in range(per_second):
            carrier = rng.choice(("mobile", "mobile", "unicom"))
            province = "广东" if rng.random() < 0.25 else rng.choice(PROVINCES[1:])
            template = rng.choice(TEMPLATES)
            delivered, code = outcome(s, carrier, province, template, rng)
            tally.send("aliyun").receipt("aliyun").outcome(
                "aliyun", carrier, delivered, 3000 if delivered else None, province=province, template=template,
                sign=rng.choice(SIGNS), error_code="" if delivered else code)
        detector.add(tally, now)
        fired += detector.evaluate(now)
    return fired


def meaning(provider: str, code: str, carrier: str) -> str:
    return f"meaning of {code}"


def firing(fired: list[Alert], key: str) -> Alert:
    found = [a for a in fired if a.key == key and a.state == "firing"]
    assert len(found) == 1, [(a.key, a.state) for a in fired]
    return found[0]


def regional(s: int, carrier: str, province: str, template: str, rng: random.Random) -> tuple[bool, str]:
    if 200 <= s < 300 and carrier == "mobile" and province == "广东":
        return (True, "DELIVERED") if rng.random() < 0.05 else (False, OUTAGE_CODE)
    return normal(s, carrier, province, template, rng)


@SEEDS
def test_normal_traffic_raises_nothing(seed: int) -> None:
    assert run(Detector(rules(), meaning), range(600), normal, seed=seed) == []


@SEEDS
def test_a_regional_outage_fires_the_province_alert_with_its_code_and_the_carrier_alert_names_the_province(
        seed: int) -> None:
    # 广东 mobile ~200 outcomes a window, every other province × carrier under 100: below region_min_volume
    fired = run(Detector(rules(floor=0.85, region_min_volume=150), meaning), range(400), regional, seed=seed)
    province = firing(fired, "aliyun/mobile/广东")
    assert province.causes and province.baseline == "previous"
    first = province.causes[0]
    assert (first.dimension, first.value, first.meaning) == ("error_code", OUTAGE_CODE, f"meaning of {OUTAGE_CODE}")
    assert first.share > 0.5 and first.baseline_rate == 0  # at the first evaluation over the floor
    assert {c.dimension for c in province.causes} <= {"template", "sign", "error_code"}  # the scope's are out
    # the carrier's rate fell below 0.85 too (广东 is a quarter of it); its alert says where and why
    carrier = firing(fired, "aliyun/mobile")
    assert {(c.dimension, c.value) for c in carrier.causes[:2]} == {("province", "广东"), ("error_code", OUTAGE_CODE)}
    assert not any(c.dimension == "carrier" for c in carrier.causes)
    # no other province, no other carrier
    assert {a.key for a in fired} <= {"aliyun", "aliyun/mobile", "aliyun/mobile/广东"}
    assert [a.state for a in fired if a.key == "aliyun/mobile/广东"] == ["firing", "resolved"]
    resolved = [a for a in fired if a.state == "resolved"]
    assert all(a.causes == [] and a.baseline == "" for a in resolved)


def test_a_small_province_does_not_fire_below_its_minimum_volume() -> None:
    # 广东 mobile has ~10 outcomes a second: 600 in the window; with a minimum of 1,000 it never fires
    fired = run(Detector(rules(floor=0.5, region_min_volume=1000), meaning), range(400), regional)
    assert not any(a.key.count("/") == 2 for a in fired)
    assert any(a.key == "aliyun/mobile/广东" for a in run(Detector(rules(floor=0.5), meaning), range(400), regional))


@SEEDS
def test_a_failing_template_names_that_template_only(seed: int) -> None:
    def template(s: int, carrier: str, province: str, tpl: str, rng: random.Random) -> tuple[bool, str]:
        if 200 <= s < 300 and tpl == "SMS_3":
            return False, OUTAGE_CODE
        return normal(s, carrier, province, tpl, rng)

    fired = run(Detector(rules(floor=0.9, by=("provider",)), meaning), range(400), template, seed=seed)
    alert = firing(fired, "aliyun")
    named = {(c.dimension, c.value) for c in alert.causes}
    assert named == {("template", "SMS_3"), ("error_code", OUTAGE_CODE)}  # its code too; no province, carrier, sign


def test_causes_off_and_the_bounded_slices() -> None:
    off = run(Detector(rules(floor=0.9, causes=0), meaning), range(400), regional)
    assert off and all(a.causes == [] for a in off)

    detector = Detector(rules(), meaning)
    limit = alerts.SLICE_COMBOS_PER_BUCKET
    tally = detector.tally()
    for i in range(limit + 50):
        tally.outcome("kx", "mobile", False, None, province="广东", template=f"T{i}", sign="s", error_code="E")
    detector.add(tally, T0)
    (_start, counts), = detector.slices["kx"].buckets
    assert len(counts) == limit + 1 and counts[("mobile", "广东", alerts.OTHER, alerts.OTHER, "E")] == [50, 50]


def test_the_causes_travel_in_every_format_and_to_the_warehouse_row() -> None:
    fired = run(Detector(rules(floor=0.85, region_min_volume=150), meaning), range(300), regional)
    alert = firing(fired, "aliyun/mobile")
    record = msgspec.json.encode(alert)
    assert msgspec.json.decode(record, type=Alert) == alert  # a code new in the window: lift None, not inf
    generic = webhook_body(alert, "generic")
    assert [(c["dimension"], c["value"]) for c in generic["causes"]] == [(c.dimension, c.value) for c in alert.causes]
    for fmt, text in (("dingtalk", lambda b: b["text"]["content"]), ("wecom", lambda b: b["text"]["content"]),
                      ("slack", lambda b: b["text"])):
        body = text(webhook_body(alert, fmt))
        assert ". province=广东: " in body and f". error_code={OUTAGE_CODE}: " in body, fmt
        assert f"meaning of {OUTAGE_CODE}" in body and "why (against the time just before)" in body
    row = alert_row(record)
    source, baseline, causes = row[-3:]
    assert (source, baseline) == ("stream", "previous")
    assert {c[:2] for c in causes[:2]} == {("province", "广东"), ("error_code", OUTAGE_CODE)}
    assert [c[-1] for c in causes if c[0] == "error_code"] == [f"meaning of {OUTAGE_CODE}"]
    old = msgspec.json.encode({k: v for k, v in msgspec.to_builtins(alert).items()
                               if k not in ("source", "baseline", "causes")})
    assert alert_row(old)[-3:] == ["stream", "", []]  # a record from before issue 17
