"""dashboards/why.py: the counting query, the baselines and the wiring into rootcause.explain."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from sms_analytics.dashboards.why import baseline_windows, counts_sql, render, why, window_counts

MIN = 60_000
END = 1_700_000_000_000
START = END - 30 * MIN


def _rows(province_fail: int, code: str = "IC:0055") -> list[tuple[Any, ...]]:
    """1,000 messages over two provinces, 20 failures spread, `province_fail` more in 广东 with `code`."""
    failures = 20 + province_fail
    return [("", "", failures, 1000), ("carrier", "mobile", failures, 1000),
            ("province", "广东", 10 + province_fail, 300), ("province", "北京", 10, 700),
            ("template", "SMS_1", failures // 2, 500), ("template", "SMS_2", failures - failures // 2, 500),
            ("error_code", "DELIVERED", 0, 1000 - failures), ("error_code", "MB:1031", 20, 20),
            *([("error_code", code, province_fail, province_fail)] if province_fail else [])]


def test_the_query_inlines_only_checked_values() -> None:
    sql = counts_sql("aliyun", "mobile", START, END)
    assert "provider = 'aliyun'" in sql and "carrier = 'mobile'" in sql and str(START) in sql
    assert "carrier =" not in counts_sql("kx", None, START, END)
    for provider, carrier in (("aliyun'--", None), ("aliyun", "x' OR 1")):
        with pytest.raises(ValueError):
            counts_sql(provider, carrier, START, END)


def test_a_fixed_carrier_or_province_filters_and_is_no_dimension() -> None:
    """A carrier × province alert: both fixed, so both filter and neither is sliced (it holds the window)."""
    sql = counts_sql("aliyun", "mobile", START, END, province="广东")
    assert "carrier = 'mobile'" in sql and "province = '广东'" in sql
    assert "('carrier', carrier)" not in sql and "('province', province)" not in sql and "('template', template)" in sql
    assert "('carrier', carrier)" in counts_sql("aliyun", None, START, END)
    with pytest.raises(ValueError, match="unknown province"):
        counts_sql("aliyun", "mobile", START, END, province="广东' OR 1")


def test_baselines() -> None:
    assert baseline_windows(START, END, "previous") == [(START - 30 * MIN, START)]
    week = baseline_windows(START, END, "week")
    assert len(week) == 7 and week[0] == (START - 86_400_000, END - 86_400_000)


def test_window_counts_drop_codes_without_failures_and_average() -> None:
    counts = window_counts(_rows(0), divide=2)
    assert (counts.failures, counts.total) == (10, 500)
    assert ("error_code", "DELIVERED") not in {(s.dimension, s.value) for s in counts.slices}


def test_a_regional_failure_names_the_province_and_its_code_with_its_meaning() -> None:
    queries: list[str] = []

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        queries.append(sql)
        now = str(START) in re.search(r">= fromUnixTimestamp64Milli\(toInt64\((\d+)\)", sql)[0]  # type: ignore[index]
        return ["dimension", "value", "failures", "total"], _rows(200 if now else 0)

    causes = why(query, "aliyun", None, START, END)
    assert len(queries) == 2
    assert [(c.dimension, c.value) for c in causes][:2] == [("province", "广东"), ("error_code", "IC:0055")]
    assert causes[1].meaning  # from the knowledge base
    at = datetime(2023, 11, 14, tzinfo=UTC)
    text = render(causes, "aliyun", None, at, at, "previous")
    assert "province=广东" in text and "IC:0055" in text


def test_normal_traffic_names_nothing() -> None:
    assert why(lambda sql: ([], _rows(0)), "aliyun", None, START, END, baseline="week") == []
