"""dashboards.summary: collect() over a fake query, render() of the text."""

from __future__ import annotations

import math

from sms_analytics.dashboards import summary

PROVIDER_COLS = ["provider", "sent", "delivered", "failed", "expired", "pending", "delivery_rate",
                 "p50_latency_ms", "p95_latency_ms"]
FAILURE_COLS = ["provider", "error_code", "error_message", "failure_category", "messages"]


def fake(provider_rows, failure_rows):
    asked = []

    def query(sql):
        asked.append(sql)
        if sql is summary.PER_PROVIDER:
            return PROVIDER_COLS, provider_rows
        if sql is summary.TOP_FAILURES:
            return FAILURE_COLS, failure_rows
        raise AssertionError(sql)
    return query, asked


def test_collect_totals_and_rate():
    query, asked = fake(
        [("aliyun", 10, 6, 2, 1, 1, 0.6667, 120.0, 300.0), ("kx", 5, 3, 1, 0, 1, 0.75, 80.0, 90.0)],
        [("aliyun", "isv.MOBILE_NUMBER_ILLEGAL", "bad number", "invalid_number", 2)],
    )
    result = summary.collect(query)
    assert asked == [summary.PER_PROVIDER, summary.TOP_FAILURES]
    assert result["totals"] == {"sent": 15, "delivered": 9, "failed": 3, "expired": 1, "pending": 2,
                                "delivery_rate": 0.6923}
    assert result["providers"][1]["provider"] == "kx"
    assert result["top_failures"] == [{"provider": "aliyun", "error_code": "isv.MOBILE_NUMBER_ILLEGAL",
                                       "error_message": "bad number", "failure_category": "invalid_number",
                                       "messages": 2}]


def test_collect_without_final_messages_has_no_rate():
    query, _ = fake([("tencent", 4, 0, 0, 0, 4, math.nan, math.nan, math.nan)], [])
    assert summary.collect(query)["totals"]["delivery_rate"] is None


def test_render():
    query, _ = fake(
        [("aliyun", 10, 6, 2, 1, 1, 0.6667, 120.4, 300.6), ("tencent", 4, 0, 0, 0, 4, math.nan, None, math.nan)],
        [("aliyun", "E1", "boom", "carrier", 2)],
    )
    lines = summary.render(summary.collect(query)).splitlines()
    assert lines[0] == ("messages: sent 14, delivered 6, failed 2, expired 1, pending 5; delivery rate 66.67%")
    assert lines[1] == ""
    assert lines[2].split() == ["provider", "sent", "delivered", "failed", "expired", "pending", "rate",
                                "p50", "ms", "p95", "ms"]
    assert lines[3].split() == ["aliyun", "10", "6", "2", "1", "1", "66.67%", "120", "301"]
    assert lines[4].split() == ["tencent", "4", "0", "0", "0", "4", "n/a", "n/a", "n/a"]
    assert lines[6] == "top failure reasons:"
    assert lines[7].split() == ["2", "aliyun", "E1", "carrier", "boom"]


def test_render_no_failures_and_no_rate():
    text = summary.render({"totals": {"sent": 0, "delivered": 0, "failed": 0, "expired": 0, "pending": 0,
                                      "delivery_rate": None}, "providers": [], "top_failures": []})
    assert text.splitlines()[0].endswith("delivery rate n/a")
    assert text.splitlines()[-1] == "  (none)"


def test_metadata_lines_per_provider():
    answers = {summary.TEMPLATES_BY_TYPE: (["provider", "type", "templates"],
                                           [("aliyun", "marketing", 1), ("aliyun", "verification", 2)]),
               summary.SIGNS: (["provider", "signs", "approved"], [("aliyun", 3, 2), ("tencent", 1, 1)])}
    metadata = summary.collect_metadata(lambda sql: answers[sql])
    assert metadata["tencent"] == {"templates": {}, "signs": 1, "approved_signs": 1}
    assert summary.render_metadata(metadata).splitlines() == [
        "template and sign metadata (metadata feeds):",
        "  aliyun   templates: 3 (marketing 1, verification 2); signs: 3 (2 approved)",
        "  tencent  templates: 0 (none); signs: 1 (1 approved)"]
    assert summary.render_metadata({}) == "template and sign metadata: (none pulled)"


def test_provider_side_lines():
    from datetime import datetime

    answers = {
        "provider_balance": (["provider", "account", "left_now", "sends_last_hour"],
                             [("kx", "demo", 99_000, 100), ("tencent", "1400", 1000, 880), ("tencent", "1401", 5, 0)]),
        "reconciliation": (["provider", "hour", "period_hours", "our_sent", "their_sent", "our_delivered",
                            "their_delivered", "our_failed", "their_failed"],
                           [("aliyun", datetime(2026, 1, 1, 16), 24, 90, 30, 80, 27, 5, 2)]),
    }
    side = summary.collect_provider_side(lambda sql: next(v for k, v in answers.items() if f"sms.{k}" in sql))
    text = summary.render_provider_side(side, 24.0)
    assert "  kx       demo              99000  990.0 h\n" in text
    assert "  tencent  1400               1000  1.1 h  RUNS OUT within 24 h" in text
    assert "  tencent  1401                  5  n/a (no sends)" in text
    assert "  aliyun   2026-01-01 16:00 UTC day (China) sent 90/30, delivered 80/27, failed 5/2" in text
    empty = summary.render_provider_side({"balances": [], "reconciliation": []}, 24.0)
    assert "(none pulled)" in empty and "(no provider statistics yet)" in empty
