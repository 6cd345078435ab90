"""The root cause of a delivery-rate drop: which slices hold the excess failures (pure, no I/O).

A drop alert says *that* a scope (a provider, provider × carrier, provider × carrier × province)
fails more than it did. `explain` says *where*: over the dimensions carrier, province, template,
sign and error code it returns the slices with the largest share of the excess failures against a
baseline. The caller counts both windows (the stream from its windows, the warehouse from its
rollups) and picks the baseline: the previous window, or the same hour of the last 7 days averaged
(counts divided by 7, hence floats).

Per slice s of a dimension, with n_s its current volume and f_s its current failures:

    baseline rate  r_s = baseline failures_s / baseline volume_s
    excess         e_s = f_s - r_s * n_s     (failures beyond what the baseline rate predicts)
    share          e_s / D, D = max(E, sum of the dimension's positive e_s)

where E = F - r * N is the whole window's excess (F, N the window's failures and volume, r its
baseline rate). D is the dimension's positive excess whenever its slices partition the window
(then it is >= E); the max keeps every share in [0, 1] and a dimension's shares summing to <= 1
whatever the caller passes.

Error code is a dimension of failures, not of messages: a code slice's volume is the whole
window's, and its baseline rate is the code's failures per message of the baseline window (so a
code absent from the baseline has rate 0, and all its failures are excess). Its `total` is ignored.

Edge cases:
- a slice with no baseline volume (a new template, a province without traffic then) is measured
  against the window's baseline rate; if the baseline window is empty too, against 0;
- slices whose excess is <= 0 (they improved or held) are never returned;
- a slice appearing more than once in the input is summed, and sums use math.fsum: the result does
  not depend on the order of the slices, nor of floating-point additions;
- ties (equal shares) are broken by excess, then by dimension in DIMENSIONS order, then by value.

What is *not* a cause, so that normal traffic names nothing and a one-template failure names no
province (defaults in parentheses):
- nothing at all unless the window's excess E clears its noise: E > z * sd and E >= min_excess
  (z = 3, min_excess = 3 failures), with sd the binomial standard deviation of F - r * N, which
  counts the baseline's own noise: sqrt(N * r * (1 - r) * (1 + N / N_baseline));
- a slice whose own excess does not clear its noise the same way;
- a slice whose share of the excess is not above its share of the traffic (lift = share / volume
  share < min_lift = 1.2): a template that fails everywhere spreads its excess over the provinces
  in proportion to their volume, which says nothing about provinces; and a slice holding all the
  window's volume (the alert's own carrier) explains nothing beyond the alert. For an error code the
  "volume share" is the code's share of the baseline failures: a code that was already 80% of the
  failures and still is explains nothing; a new one does. With fewer than 20 failures in the
  baseline (MIN_BASELINE_FAILURES_FOR_MIX) that mix is chance and a code's lift is not checked: one
  failure in the baseline would make its code 100% of them;
- a slice of messages (not an error code) that does not stand out from the other slices of its
  dimension: its excess beyond the typical slice's (e_s - m * n_s, m the median excess per message
  of the dimension's slices) must clear z standard deviations of a binomial count at the window's
  failure rate p = F / N, sqrt(d * n_s * p * (1 - p)), with d the dimension's dispersion (the median
  squared standardized residual over 0.455, at least 1, from 5 slices up). The lift of a small slice
  varies by chance, more so when the failures cluster in another dimension: a one-template failure
  must not name the province that happened to send a little more of that template.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import msgspec

DIMENSIONS = ("carrier", "province", "template", "sign", "error_code")
UNKNOWN_LABEL = "(unknown)"  # how an empty value prints (a province the data cannot place, a message without a sign)
FAILURE_DIMENSIONS = ("error_code",)  # dimensions that partition failures, not messages


class SliceCounts(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One slice of a window: failures and messages with an outcome (delivered or failed).
    Floats, so that an averaged baseline (7 days / 7) fits; integers are accepted."""

    dimension: str  # one of DIMENSIONS
    value: str  # 移动 / mobile, 广东, SMS_123, the sign, the error code
    failures: float
    total: float = 0.0  # ignored for error_code (its volume is the window's)


class WindowCounts(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A window of one alert scope: its totals and its slices (any dimensions, any order)."""

    failures: float
    total: float
    slices: tuple[SliceCounts, ...] = ()


class Cause(msgspec.Struct, frozen=True, kw_only=True):
    """One slice that explains part of a drop (a record attached to an alert)."""

    dimension: str
    value: str
    share: float  # of the excess failures, 0..1
    excess: float  # failures beyond the baseline rate
    failures: float  # current
    volume: float  # current messages of the slice (the window's for an error code)
    rate: float  # current failure rate
    baseline_rate: float
    baseline_volume: float
    lift: float | None  # share / volume share; None for a code new in the window (no share of the baseline)
    meaning: str = ""  # error codes: the knowledge base's description, if a `meaning` was given


def _sum(slices: Iterable[SliceCounts]) -> dict[tuple[str, str], tuple[float, float]]:
    parts: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for s in slices:
        if s.dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {s.dimension!r} (one of {', '.join(DIMENSIONS)})")
        if not (s.failures >= 0 and s.total >= 0 and math.isfinite(s.failures) and math.isfinite(s.total)):
            raise ValueError(f"counts of {s.dimension}={s.value!r} must be finite and >= 0")
        if s.dimension not in FAILURE_DIMENSIONS and s.failures > s.total:
            raise ValueError(f"{s.dimension}={s.value!r} has more failures than messages")
        failures, totals = parts.setdefault((s.dimension, s.value), ([], []))
        failures.append(s.failures)
        totals.append(s.total)
    return {key: (math.fsum(f), math.fsum(t)) for key, (f, t) in parts.items()}


def _rate(failures: float, total: float) -> float:
    return min(failures / total, 1.0) if total > 0 else 0.0


def _noise(volume: float, rate: float, baseline_volume: float) -> float:
    """Standard deviation of failures - rate * volume when both windows are binomial draws."""
    if volume <= 0:
        return 0.0
    inflation = 1.0 + volume / baseline_volume if baseline_volume > 0 else 1.0
    return math.sqrt(volume * rate * (1.0 - rate) * inflation)


# An error code's lift compares its share of the excess with its share of the baseline's failures: with
# fewer failures than this in the baseline, that mix is chance (one failure makes its code 100%).
MIN_BASELINE_FAILURES_FOR_MIX = 20
CHI2_1_MEDIAN = 0.455  # the median of a chi-squared variable of one degree of freedom
MIN_SLICES_FOR_DISPERSION = 5


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _beyond_the_others(slices: list[tuple[float, float]], rate: float) -> tuple[float, float]:
    """Of a dimension's slices of messages, (excess, volume) each: the typical excess rate (the median
    of the slices' excess per message: robust to the few slices that are the cause) and the
    dispersion, how much more the slices vary around it than binomial counts at the window's failure
    rate would (the median squared standardized residual over the chi-squared median, >= 1; 1 with
    fewer than MIN_SLICES_FOR_DISPERSION slices). Failures clustered in another dimension (one
    template's, spread over every province) make each province's count vary more than a binomial."""
    measured = [(e, n) for e, n in slices if n > 0]
    if not measured:
        return 0.0, 1.0
    center = _median([e / n for e, n in measured])
    variance = rate * (1.0 - rate)
    if len(measured) < MIN_SLICES_FOR_DISPERSION or variance <= 0:
        return center, 1.0
    ratios = [(e - center * n) ** 2 / (n * variance) for e, n in measured]
    return center, max(1.0, _median(ratios) / CHI2_1_MEDIAN)


def explain(
    current: WindowCounts,
    baseline: WindowCounts,
    *,
    top: int = 3,
    meaning: Callable[[str], str] | None = None,
    z: float = 3.0,
    min_excess: float = 3.0,
    min_lift: float = 1.2,
) -> list[Cause]:
    """The `top` slices with the largest share of the excess failures, largest first (see the
    module docstring for the definitions and the filters). `meaning(code)` describes an error
    code (with the knowledge base: the description of ``kb.lookup(provider, code, carrier)``, "" if
    None); without it `meaning` is empty."""
    for window in (current, baseline):
        if not (0 <= window.failures <= window.total and math.isfinite(window.total)):
            raise ValueError("a window's counts must be finite, >= 0, failures <= total")
    now, then = _sum(current.slices), _sum(baseline.slices)
    volume, base_volume = float(current.total), float(baseline.total)
    base_rate = _rate(baseline.failures, base_volume)
    window_excess = current.failures - base_rate * volume
    if window_excess < min_excess or window_excess <= z * _noise(volume, base_rate, base_volume):
        return []
    base_failures_total = float(baseline.failures)

    candidates: dict[str, list[tuple[float, float, float, float, float, str]]] = {d: [] for d in DIMENSIONS}
    positive: dict[str, list[float]] = {d: [] for d in DIMENSIONS}  # every positive excess, significant or not
    every: dict[str, list[tuple[float, float]]] = {d: [] for d in DIMENSIONS}  # (excess, volume) of every slice
    window_rate = _rate(current.failures, volume)
    for (dimension, value), (failures, total) in now.items():
        b_failures, b_total = then.get((dimension, value), (0.0, 0.0))
        if dimension in FAILURE_DIMENSIONS:
            n, n_b = volume, base_volume
            rate_b = _rate(b_failures, base_volume)
            traffic_share = b_failures / base_failures_total if base_failures_total > 0 else 0.0
        else:
            n, n_b = total, b_total
            rate_b = _rate(b_failures, b_total) if b_total > 0 else base_rate
            traffic_share = total / volume if volume > 0 else 0.0
        excess = failures - rate_b * n
        if dimension not in FAILURE_DIMENSIONS:
            every[dimension].append((excess, n))
        if excess <= 0:
            continue
        positive[dimension].append(excess)
        if excess < min_excess or excess <= z * _noise(n, rate_b, n_b if n_b > 0 else base_volume):
            continue
        candidates[dimension].append((excess, n, rate_b, n_b, traffic_share, value))

    causes: list[Cause] = []
    for dimension, found in candidates.items():
        if not found:
            continue
        denominator = max(window_excess, math.fsum(positive[dimension]))
        center, dispersion = _beyond_the_others(every[dimension], window_rate)
        for excess, n, rate_b, n_b, traffic_share, value in found:
            share = min(excess / denominator, 1.0)
            lift = share / traffic_share if traffic_share > 0 else None  # None: new, so above any lift
            mix_known = dimension not in FAILURE_DIMENSIONS or base_failures_total >= MIN_BASELINE_FAILURES_FOR_MIX
            if lift is not None and lift < min_lift and mix_known:
                continue
            if dimension not in FAILURE_DIMENSIONS and z > 0 and (
                    excess - center * n <= z * math.sqrt(dispersion * n * window_rate * (1.0 - window_rate))):
                continue
            failures = now[(dimension, value)][0]
            causes.append(
                Cause(
                    dimension=dimension,
                    value=value,
                    share=share,
                    excess=excess,
                    failures=failures,
                    volume=n,
                    rate=_rate(failures, n),
                    baseline_rate=rate_b,
                    baseline_volume=n_b,
                    lift=lift,
                    meaning=meaning(value) if meaning is not None and dimension in FAILURE_DIMENSIONS else "",
                )
            )
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    causes.sort(key=lambda c: (-c.share, -c.excess, order[c.dimension], c.value))
    return causes[: max(top, 0)]
