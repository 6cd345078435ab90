"""Durations kept as a histogram by the component that measures them (no prometheus_client here:
the sink and the worker import this, the collector reads it at scrape time)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in seconds: a sink batch takes milliseconds to seconds, a rollup round up to minutes.
SECONDS_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                      120.0, 300.0)


@dataclass
class Timings:
    """Observations of a duration: per-bucket counts (not cumulative; +Inf last), their sum and the
    latest one."""

    buckets: tuple[float, ...] = SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    last: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1
        self.last = seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) for every bound and +Inf, as Prometheus histograms expose them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip([*map(_le, self.buckets), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
