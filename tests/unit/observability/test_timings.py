"""observability/timings.py: durations counted into buckets and exposed cumulatively, as Prometheus."""

from __future__ import annotations

from sms_analytics.observability.timings import SECONDS_BUCKETS, Timings


def test_observations_fall_in_the_first_bucket_that_holds_them() -> None:
    t = Timings(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0, 30.0):
        t.observe(seconds)
    assert t.counts == [2, 1, 2]  # <= 0.1 (a bound is inclusive), <= 1.0, +Inf
    assert (t.count, t.last) == (5, 30.0)
    assert abs(t.total - 32.65) < 1e-9


def test_cumulative_counts_end_with_inf() -> None:
    t = Timings(buckets=(0.1, 1.0))
    t.observe(0.5)
    t.observe(5.0)
    assert t.cumulative() == [("0.1", 0), ("1.0", 1), ("+Inf", 2)]


def test_defaults() -> None:
    t = Timings()
    assert t.buckets == SECONDS_BUCKETS and list(SECONDS_BUCKETS) == sorted(SECONDS_BUCKETS)
    assert t.counts == [0] * (len(SECONDS_BUCKETS) + 1)
    assert t.cumulative()[-1] == ("+Inf", 0)
    assert Timings(counts=[1, 2, 3], buckets=(1.0, 2.0)).counts == [1, 2, 3]
