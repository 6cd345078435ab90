"""demo's pure parts: the expected and observed counts, their merge, and the waits against a fake
warehouse (no runtime, no chDB)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sms_analytics import demo
from sms_analytics.dashboards import summary


def test_expected_from_truth_with_or_without_providers_key():
    truth = {"providers": {"kx": {"sends": "3", "delivered": 2, "failed": 1, "pending": 0, "extra": 9}},
             "seed": 7}
    assert demo._expected(truth) == {"kx": {"sends": 3, "delivered": 2, "failed": 1, "pending": 0}}
    flat = {"aliyun": {"sends": 1, "delivered": 1, "failed": 0, "pending": 0}, "duration": 5, "other": {"x": 1}}
    assert demo._expected(flat) == {"aliyun": {"sends": 1, "delivered": 1, "failed": 0, "pending": 0}}


def test_observed_from_summary():
    s = {"providers": [{"provider": "kx", "sent": 4, "delivered": 2, "failed": 1, "expired": 0, "pending": 1}]}
    assert demo._observed(s) == {"kx": {"sends": 4, "delivered": 2, "failed": 1, "pending": 1}}


def test_merge_sums_per_provider():
    a = {"kx": {"sends": 1, "delivered": 1, "failed": 0, "pending": 0}}
    b = {"kx": {"sends": 2, "failed": 2}, "tencent": {"sends": 5, "pending": 5}}
    assert demo._merge(a, b) == {"kx": {"sends": 3, "delivered": 1, "failed": 2, "pending": 0},
                                 "tencent": {"sends": 5, "delivered": 0, "failed": 0, "pending": 5}}
    assert demo._merge() == {}


def test_template_names_file_exists():
    assert demo.DEMO_TEMPLATE_NAMES.is_file()


def runtime_with(warehouse: Any) -> Any:
    return SimpleNamespace(warehouse=warehouse)


class FakeWarehouse:
    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def query(self, sql, params=None):
        self.asked.append((sql, params))
        return self.answers(sql)


async def test_rollups_caught_up():
    wh = FakeWarehouse(lambda sql: ([], [(5, 3, 1, 0, 1)]))  # rollups and messages agree
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert await demo._rollups_caught_up(runtime_with(wh), start, 1.0) is True
    assert [p for _, p in wh.asked] == [{"start": 1_767_225_600}] * 2
    behind = FakeWarehouse(lambda sql: ([], [(4, 3, 1, 0, 0)] if "rollup_minute" in sql else [(5, 3, 1, 0, 1)]))
    assert await demo._rollups_caught_up(runtime_with(behind), start, 0.0) is False
    nulls = FakeWarehouse(lambda sql: ([], [(None, None, None, None, None)] if "rollup_minute" in sql else [(0, 0, 0, 0, 0)]))
    assert await demo._rollups_caught_up(runtime_with(nulls), start, 0.0) is True


def summary_answers(sent):
    def answer(sql):
        if sql is summary.PER_PROVIDER:
            return (["provider", "sent", "delivered", "failed", "expired", "pending", "delivery_rate",
                     "p50_latency_ms", "p95_latency_ms"], [("kx", sent, 1, 0, 0, sent - 1, 1.0, 5, 5)])
        return (["provider", "error_code", "error_message", "failure_category", "messages"], [])
    return answer


async def test_wait_caught_up():
    expected = {"kx": {"sends": 2, "delivered": 1, "failed": 0, "pending": 1}}
    got, ok = await demo._wait_caught_up(runtime_with(FakeWarehouse(summary_answers(2))), expected, 1.0)
    assert ok is True
    assert got["totals"]["sent"] == 2
    got, ok = await demo._wait_caught_up(runtime_with(FakeWarehouse(summary_answers(3))), expected, 0.0)
    assert ok is False
    assert got["totals"]["sent"] == 3
