"""The Grafana alert rules' queries run on the session pipeline's warehouse (from tests/test_grafana_alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sms_analytics.dashboards.macros import expand
from sms_analytics.model.events import Delivery
from sms_analytics.runtime import Runtime
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.rows import BALANCE_COLUMNS, CONVERSION_COLUMNS, MESSAGE_COLUMNS, message_row
from tests.unit.dashboards.test_alerting import BY_UID, OPS, RULES

BAD, OK = "alerttest_bad", "alerttest_ok"
REGIONAL = "alerttest_region"  # a provider with a regional outage: 广东 × mobile down, the rest normal


def _deliveries(now: datetime) -> list[Delivery]:
    """Recent hour: BAD 400 finals at 30 % delivered, latency 120 s, receipts older than 35 min, a new
    unknown code, then 150 sends in the last 15 min without receipts; OK 400 finals at 95 %, latency
    5 s, receipts up to 2 min ago. Same hour 1..7 days ago: 50 messages a day each at 95 %."""
    now_ms = int(now.timestamp() * 1000)
    out: list[Delivery] = []

    def make(provider: str, key: str, sent: int, outcome: str | None, latency_ms: int = 5000,
             code: str = "MK:0001", category: str = "unreachable") -> None:
        n = len(out)
        base = {"provider": provider, "message_id": f"alerttest-{key}", "phone": f"+86137{n:08d}",
                "phone_hash": f"alerttest-h{n}", "phone_masked": f"137****{n % 10000:04d}",
                "carrier": ("mobile", "unicom")[n % 2], "country_code": "86", "has_send": True, "template": "ALERT_TPL",
                "sign": "AlertSign", "segments": 1, "sent_at_ms": sent, "updated_at_ms": sent + 1000, "province": "广东"}
        if outcome is None:
            out.append(Delivery(**base))
        elif outcome == "delivered":
            out.append(Delivery(**base, status="delivered", stage="receipt", outcome_at_ms=sent + latency_ms,
                                error_code="DELIVERED", failure_category="delivered", receipt_ids=[f"adr{n}"]))
        else:
            out.append(Delivery(**base, status="failed", stage="receipt", outcome_at_ms=sent + latency_ms,
                                error_code=code, error_message="alerttest", failure_category=category,
                                receipt_ids=[f"adr{n}"]))

    minute = 60_000
    for i in range(400):
        sent = now_ms - 58 * minute + (i * 18 * minute) // 400            # now-58m .. now-40m
        bad = "delivered" if i % 10 < 3 else "failed"
        unknown = i % 10 == 9
        make(BAD, f"bad-{i}", sent, bad, 120_000, "ALERTTEST:X1" if unknown else "MK:0001",
             "unknown" if unknown else "unreachable")
        sent = now_ms - 58 * minute + (i * 56 * minute) // 400            # now-58m .. now-2m
        make(OK, f"ok-{i}", sent, "failed" if i % 20 == 0 else "delivered")
    for i in range(150):
        make(BAD, f"bad-pending-{i}", now_ms - 14 * minute + (i * 13 * minute) // 150, None)
    for day in range(1, 8):
        for i in range(50):
            sent = now_ms - day * 86_400_000 - 55 * minute + (i * 50 * minute) // 50   # same slot, day ago
            for p in (BAD, OK):
                make(p, f"{p}-d{day}-{i}", sent, "failed" if i % 20 == 0 else "delivered")
    return out


def _conversions(deliveries: list[Delivery]) -> list[list[Any]]:
    """Conversions of delivered messages, 30 s after the send: BAD's recent ones 1 in 10 (a conversion drop),
    every other 4 in 5 (OK's recent ones as its baseline days)."""
    out = []
    for n, d in enumerate(deliveries):
        recent = "-d" not in d.message_id
        share = 10 if d.provider == BAD and recent else 5
        if d.status != "delivered" or d.sent_at_ms is None or (n % share != 0 if share == 10 else n % share == 0):
            continue
        at = datetime.fromtimestamp((d.sent_at_ms + 30_000) / 1000, tz=UTC)
        out.append([d.provider, d.message_id, d.phone_hash, f"c-{d.message_id}", d.phone_masked, d.carrier,
                    d.country_code, d.template, None, None, at, at])
    return out


def _regional(now: datetime) -> list[Delivery]:
    """REGIONAL's last hour per (carrier, province, outcomes, delivered share): 广东 × mobile 300 at 30 % (the
    outage), 广东 × unicom and 北京 × mobile 300 at 95 %, 西藏 × mobile 150 at 0 % (below region_min_volume:
    too few to fire), and 300 numbers the data cannot place ('') at 0 % (no province label: not this rule's)."""
    now_ms = int(now.timestamp() * 1000)
    out = []
    groups = [("mobile", "广东", 300, 6), ("unicom", "广东", 300, 19), ("mobile", "北京", 300, 19),
              ("mobile", "西藏", 150, 0), ("mobile", "", 300, 0)]
    for carrier, province, count, delivered_of_20 in groups:
        for i in range(count):
            n = len(out)
            sent = now_ms - 55 * 60_000 + (i * 50 * 60_000) // count
            base = {"provider": REGIONAL, "message_id": f"alerttest-region-{n}", "phone": f"+86138{n:08d}",
                    "phone_hash": f"alerttest-rh{n}", "phone_masked": f"138****{n % 10000:04d}", "carrier": carrier,
                    "country_code": "86", "has_send": True, "template": "ALERT_TPL", "sign": "AlertSign", "segments": 1,
                    "sent_at_ms": sent, "updated_at_ms": sent + 1000, "province": province}
            ok = i % 20 < delivered_of_20
            out.append(Delivery(**base, status="delivered" if ok else "failed", stage="receipt",
                                outcome_at_ms=sent + 5000, error_code="DELIVERED" if ok else "MK:0001",
                                failure_category="delivered" if ok else "unreachable", receipt_ids=[f"ardr{n}"]))
    return out


@pytest.fixture(scope="module")
def warehouse(pipeline: Runtime) -> Any:
    wh = pipeline.warehouse
    assert wh is not None
    now = datetime.now(UTC)
    deliveries = _deliveries(now) + _regional(now)
    wh.insert("sms.message_parts", [message_row(d, store_raw_phone=False) for d in deliveries], MESSAGE_COLUMNS)
    wh.insert("sms.conversions", _conversions(deliveries), CONVERSION_COLUMNS)
    rollups = Rollups(wh, 72 * 3600)
    rollups.mark(deliveries)
    rollups.recompute()
    # The quota rule: BAD's quota lasts 1000 / 550 sends an hour (the quota-low scenario), OK's 10,000,000 / 400.
    at = now - timedelta(minutes=5)
    wh.insert("sms.provider_balance", [[BAD, "1400", 1000, at], [OK, "1400", 10_000_000, at],
                                       [OK, "1400", 5, at - timedelta(days=2)]], BALANCE_COLUMNS)  # too old to count
    return wh


def evaluate(wh: Any, rule: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """Run A for a range ending now; per provider: (value, firing) as B (last) and C would give."""
    return {labels[0]: value for labels, value in evaluate_instances(wh, rule).items()}


def evaluate_instances(wh: Any, rule: dict[str, Any]) -> dict[tuple[str, ...], tuple[float, bool]]:
    """Run A for a range ending now; per instance (its label values): (value, firing) as B and C would give."""
    a = rule["data"][0]
    end = datetime.now(UTC)
    start = end - timedelta(seconds=a["relativeTimeRange"]["from"])
    sql = expand(a["model"]["rawSql"], start=start, end=end, interval_s=a["model"]["intervalMs"] // 1000,
                 variables={}, all_values={})
    assert "$" not in sql, sql
    columns, rows = wh.query(sql)
    evaluator = rule["data"][2]["model"]["conditions"][0]["evaluator"]
    result = {}
    for row in rows:
        numeric = [v for v in row if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)]
        labels = [v for v in row if isinstance(v, str)]
        assert len(numeric) == 1 and len(labels) + 1 == len(row), (columns, row)  # one value column per row
        value = float(numeric[0])
        result[tuple(labels)] = (value, OPS[evaluator["type"]](value, evaluator["params"][0]))
    return result


def test_the_region_rule_fires_for_a_regional_outage_only(warehouse: Any) -> None:
    """Per provider × carrier × province with at least region_min_volume final outcomes in the hour: the outage's
    instance fires, the same provider's normal carriers and provinces do not, nor a province too small to count;
    each instance is labelled provider, carrier, province, and the rule baseline=previous."""
    from sms_analytics.dashboards import alerting

    rule = BY_UID["sms-region-rate-floor"]
    assert rule["labels"]["baseline"] == "previous" and alerting.REGION_MIN_FINAL == 200
    columns = warehouse.query(expand(rule["data"][0]["model"]["rawSql"], start=datetime.now(UTC) - timedelta(hours=1),
                                     end=datetime.now(UTC), interval_s=60, variables={}, all_values={}))[0]
    assert columns == ["provider", "carrier", "province", "delivery_rate"]
    regional = {k: v for k, v in evaluate_instances(warehouse, rule).items() if k[0] == REGIONAL}
    assert regional == {(REGIONAL, "mobile", "广东"): (pytest.approx(0.3), True),
                        (REGIONAL, "unicom", "广东"): (pytest.approx(0.95), False),
                        (REGIONAL, "mobile", "北京"): (pytest.approx(0.95), False)}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["uid"])
def test_rule_fires_for_bad_provider_only(warehouse: Any, rule: dict[str, Any]) -> None:
    result = evaluate(warehouse, rule)
    assert result.get(BAD, (None, False))[1], (rule["uid"], result.get(BAD))
    assert not result.get(OK, (None, False))[1], (rule["uid"], result.get(OK))


def test_values(warehouse: Any) -> None:
    floor = evaluate(warehouse, BY_UID["sms-rate-floor"])
    assert floor[BAD][0] == pytest.approx(0.3) and floor[OK][0] == pytest.approx(0.95)
    drop = evaluate(warehouse, BY_UID["sms-rate-drop"])
    base = 47 / 50  # i % 20 == 0 of 50 a day failed
    assert drop[BAD][0] == pytest.approx(1 - 0.3 / base) and drop[OK][0] == pytest.approx(1 - 0.95 / base)
    latency = evaluate(warehouse, BY_UID["sms-latency-p95"])
    assert latency[BAD][0] == pytest.approx(120, rel=0.02) and latency[OK][0] == pytest.approx(5, rel=0.02)
    backlog = evaluate(warehouse, BY_UID["sms-pending-backlog"])
    assert backlog[BAD][0] == 150 and OK not in backlog  # OK has nothing pending
    blackout = evaluate(warehouse, BY_UID["sms-receipt-blackout"])
    assert blackout[OK][0] < 4 * 60  # OK sends and gets receipts until 2 min ago
    assert 35 * 60 < blackout[BAD][0] < 40 * 60
    conversion = evaluate(warehouse, BY_UID["sms-conversion-drop"])
    assert conversion[BAD][0] > 0.9 and abs(conversion[OK][0]) < 0.1
    quota = evaluate(warehouse, BY_UID["sms-quota-runout"])
    assert quota[BAD][0] == pytest.approx(1000 / 550) and quota[OK][0] == pytest.approx(10_000_000 / 400)
    unmapped = evaluate(warehouse, BY_UID["sms-unmapped-codes"])
    assert unmapped[BAD][0] == 1 and OK not in unmapped


def test_the_conversion_rule_keeps_verification_codes_apart_from_marketing(warehouse: Any) -> None:
    """A template typed marketing (a link followed also converts) is no verification code: the rule
    leaves it out; typed verification (or unknown: 'other'), it is in."""
    columns = ["provider", "template_code", "name", "content", "type", "raw_type", "status", "raw_status", "reason",
               "pulled_at"]

    def typed(kind: str) -> dict[str, tuple[float, bool]]:
        row = [BAD, "ALERT_TPL", "alert test", "", kind, "", "approved", "1", "", datetime.now(UTC)]
        warehouse.insert("sms.templates", [row], columns)
        warehouse.reload_dictionary("sms.template_info_dict", "sms.templates")
        return evaluate(warehouse, BY_UID["sms-conversion-drop"])

    assert BAD not in typed("marketing")
    assert typed("verification")[BAD][1]  # and firing again
