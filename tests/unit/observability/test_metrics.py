"""observability/metrics.py: metric names in PromQL and their conventions (from tests/test_observability.py)."""

from __future__ import annotations

from sms_analytics.observability.metrics import FAMILIES
from tests.integration.test_observability import metric_names


def test_metric_names_are_parsed_from_promql() -> None:
    assert metric_names('sum by (le) (rate(a_bucket{x="1"}[$__rate_interval])) / on() group_left b + '
                        'max_over_time(c[5m:1m]) > 3 and absent({__name__="d"})') == {"a_bucket", "b", "c", "d"}


def test_metric_names_follow_the_conventions() -> None:
    for name in FAMILIES:
        assert name.startswith("sms_"), name
    for name in ("sms_join_busy_seconds_total", "sms_sink_batch_seconds", "sms_sink_rollup_round_seconds",
                 "sms_sink_oldest_unwritten_age_seconds", "sms_embedded_broker_resident_bytes"):
        assert name in FAMILIES


