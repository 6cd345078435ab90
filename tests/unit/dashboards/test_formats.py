"""dashboards/formats.py: how the static report writes values, and a column's kind and unit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from sms_analytics.dashboards.formats import as_time, column_kinds, column_unit, duration, fmt, metric_unit, si


@pytest.mark.parametrize("value, unit, precise, text", [
    (None, "short", True, "—"),
    (float("nan"), "ms", True, "—"),
    (1234567, "short", True, "1,234,567"),
    (1234567, "short", False, "1.23M"),
    (0.98765, "percentunit", True, "98.77%"),
    (0.5, "percentunit", False, "50%"),
    (0.123, "percentunit", False, "12.3%"),
    (850, "ms", True, "850 ms"),
    (1500, "ms", True, "1.50 s"),
    (1500, "ms", False, "1.5 s"),
    (600_000, "ms", True, "10 min"),
    (90, "s", True, "90 s"),
    (5400, "s", True, "90 min"),
    (9000, "s", True, "2.5 h"),
    (3 * 86400, "s", True, "3 d"),
    (2.5, "short", True, "2.5"),
    ("aliyun", "short", True, "aliyun"),
    ([1, 2000], "short", True, "1, 2,000"),
    (datetime(2026, 1, 2, 11, 4, 5, tzinfo=timezone(timedelta(hours=8))), "short", True, "2026-01-02 03:04:05"),
])
def test_fmt(value: object, unit: str, precise: bool, text: str) -> None:
    assert fmt(value, unit, precise=precise) == text


def test_si_and_duration() -> None:
    assert [si(v) for v in (999, 1000, 2_500_000, 3e9, 0.25)] == ["999", "1K", "2.5M", "3G", "0.25"]
    assert [duration(s) for s in (59, 120, 3600, 7200, 86400, 172800)] == ["59 s", "2 min", "60 min", "2 h", "24 h", "2 d"]


def test_as_time() -> None:
    utc = UTC
    assert as_time(datetime(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=utc)
    assert as_time(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=utc)
    assert as_time("2026-01-02T08:00:00+08:00") == datetime(2026, 1, 2, tzinfo=utc)
    assert as_time("yesterday") is None and as_time(5) is None


def test_column_kinds() -> None:
    rows = [(datetime(2026, 1, 1), 1, "a", [1, 2], None), (None, 2.5, 3, (3,), None)]
    assert column_kinds(["t", "n", "mixed", "spark", "empty"], rows) == \
        {"t": "time", "n": "number", "mixed": "text", "spark": "array", "empty": "number"}
    assert column_kinds(["time"], [("not a time",)]) == {"time": "time"}
    assert column_kinds(["flag"], [(True,)]) == {"flag": "text"}  # a bool is not a number


def test_units_by_override_then_by_name() -> None:
    panel = {"fieldConfig": {"defaults": {"unit": "percentunit"},
                             "overrides": [{"matcher": {"options": "sent"}, "properties": [{"id": "unit", "value": "none"}]}]}}
    assert column_unit(panel, "sent") == "none"
    assert [column_unit({}, c) for c in ("delivery_rate", "within_60s", "lag_ms", "p95", "age_seconds", "sent")] == \
        ["percentunit", "percentunit", "ms", "ms", "s", "short"]
    assert metric_unit(panel, "delivery_rate") == "percentunit"
    assert metric_unit(panel, "messages") == "short"  # the counts beside the rates of a percent panel
    assert metric_unit({"fieldConfig": {"defaults": {"unit": "reqps"}}}, "messages") == "reqps"
