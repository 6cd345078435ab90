"""The static report's SVG charts as geometry: a line chart with axes, ticks and labelled lone points,
grouped horizontal bars, a table cell's sparkline, a legend swatch. Numbers and already formatted
labels only; templates/charts.svg.j2 draws them (and escapes the text). Which chart a panel gets,
and its legend table, is dashboards/report_panels.py's job."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sms_analytics.dashboards.formats import column_kinds, fmt, is_number

Point = tuple[datetime, float]

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MIXED_COLOR = "#5b616b"  # one label for points of several colours
TIME_TICKS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MS_SCALES = ((7_200_000.0, "h"), (120_000.0, "min"), (1000.0, "s"), (1.0, "ms"))
MS_PER = {"h": 3_600_000.0, "min": 60_000.0, "s": 1000.0, "ms": 1.0}
LONE_LABELS_MAX = 12  # more lone points than this and none is labelled
DOTS_MAX_POINTS = 40  # a series with more points is drawn without its dots


# --- axes -----------------------------------------------------------------------------------------

def ms_scale(top: float) -> tuple[float, str]:
    """The display unit of a millisecond axis that reaches `top`: ms, s, min or h."""
    return next(((MS_PER[suffix], suffix) for size, suffix in MS_SCALES if top >= size), (1.0, "ms"))


def axis_label(value: float, unit: str, top: float) -> str:
    """A tick label; one scale per axis (a latency axis in ms, s, min or h by its top)."""
    if unit == "ms":
        factor, suffix = ms_scale(top)
        return f"{round(value / factor, 6):g} {suffix}"
    return fmt(value, unit, precise=False)


def nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw * (1 - 1e-9))


def y_axis(values: Sequence[float], unit: str, ticks: int = 4) -> tuple[float, float, list[float]]:
    """Bounds and tick values: counts and durations from 0, rates around the data inside [0, 1]."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if unit == "percentunit":
        if hi - lo < 0.02:
            lo, hi = lo - 0.01, hi + 0.01
    else:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi - lo < 1e-9:
            hi = lo + 1
    factor = ms_scale(hi)[0] if unit == "ms" else 1.0  # nice steps in the unit the labels show
    step = nice_step((hi - lo) / factor / ticks) * factor
    if unit == "short" and all(float(v).is_integer() for v in values):
        step = max(step, 1.0)  # whole counts: whole ticks
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    if unit == "percentunit":  # every nice step divides 1
        lo, hi = max(0.0, lo), min(1.0, hi)
    n = round((hi - lo) / step)
    return lo, hi, [round(lo + i * step, 10) for i in range(n + 1)]


def time_ticks(start: datetime, end: datetime, plot_width: int) -> list[tuple[datetime, str]]:
    """Ticks on whole steps (UTC) that leave room for their labels."""
    seconds = max(1.0, (end - start).total_seconds())
    long_labels = seconds > 86400
    room = 96 if long_labels else 58
    most = max(2, plot_width // room)
    step = next((s for s in TIME_TICKS_S if seconds / s <= most), TIME_TICKS_S[-1])
    label = "%m-%d" if step >= 86400 else ("%m-%d %H:%M" if long_labels else ("%H:%M:%S" if step < 60 else "%H:%M"))
    out = []
    t = math.ceil(start.timestamp() / step) * step
    while t <= end.timestamp():
        at = datetime.fromtimestamp(t, UTC)
        out.append((at, at.strftime(label)))
        t += step
    return out


# --- the line chart -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    group: str
    metric: str
    points: list[tuple[datetime, float | None]]


@dataclass(frozen=True)
class Tick:
    at: float  # px along its axis
    label: str


@dataclass(frozen=True)
class Mark:
    """A polyline (`points` set) or a dot, in drawing order."""

    kind: Literal["line", "dot"]
    color: str
    dash: str = ""
    points: str = ""
    x: float = 0.0
    y: float = 0.0
    r: float = 0.0


@dataclass(frozen=True)
class PointLabel:
    x: float
    y: float
    text: str
    color: str
    anchor: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    title: str
    left: int
    top: int
    plot_w: int
    plot_h: int
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    marks: list[Mark]
    labels: list[PointLabel]

    @property
    def bottom(self) -> int:
        return self.top + self.plot_h

    @property
    def right(self) -> int:
        return self.left + self.plot_w


@dataclass(frozen=True)
class _Frame:
    """Where values land: the plot's box, the time range and the value bounds."""

    left: int
    top: int
    plot_w: int
    plot_h: int
    t0: float
    span: float
    lo: float
    hi: float

    def x(self, when: datetime) -> float:
        return self.left + self.plot_w * min(1.0, max(0.0, (when.timestamp() - self.t0) / self.span))

    def y(self, v: float) -> float:
        return self.top + self.plot_h * (1 - (v - self.lo) / (self.hi - self.lo))


def line_chart(series: Sequence[Series], styles: dict[tuple[str, str], tuple[str, str]], start: datetime,
               end: datetime, unit: str, width: int, height: int, title: str = "") -> LineChart:
    """Series over [start, end] with `styles` (group, metric) -> (colour, dash): one y axis in `unit`."""
    left, right, top, bottom = 60, 24, 24 if title else 12, 26
    pw, ph = width - left - right, height - top - bottom
    values = [v for s in series for _, v in s.points if v is not None]
    lo, hi, y_values = y_axis(values, unit)
    label_top = max(values, default=hi)  # the scale of the labels, as y_axis chose it
    frame = _Frame(left, top, pw, ph, start.timestamp(), max(1.0, (end - start).total_seconds()), lo, hi)
    y_ticks = [Tick(frame.y(v), axis_label(v, unit, label_top)) for v in y_values]
    x_ticks = [Tick(frame.x(at), label) for at, label in time_ticks(start, end, pw)]
    marks: list[Mark] = []
    lone: list[PointLabel] = []  # a series' only point: labelled with its value
    for s in series:
        color, dash = styles[(s.group, s.metric)]
        marks += _series_marks(s, color, dash, frame)
        runs = _runs(s.points)
        if len(runs) == 1 and len(runs[0]) == 1:
            t, v = runs[0][0]
            lone.append(PointLabel(frame.x(t), frame.y(v), fmt(v, unit, precise=False), color, ""))
    labels = _point_labels(lone, left + pw, top, top + ph) if len(lone) <= LONE_LABELS_MAX else []
    return LineChart(width, height, title, left, top, pw, ph, y_ticks, x_ticks, marks, labels)


def _series_marks(s: Series, color: str, dash: str, frame: _Frame) -> list[Mark]:
    marks = []
    for run in _runs(s.points):
        if len(run) > 1:
            coords = " ".join(f"{frame.x(t):.1f},{frame.y(v):.1f}" for t, v in run)
            marks.append(Mark("line", color, dash, points=coords))
        if len(run) == 1 or len(s.points) <= DOTS_MAX_POINTS:
            radius = 2.6 if len(s.points) > 1 else 4
            marks += [Mark("dot", color, x=frame.x(t), y=frame.y(v), r=radius) for t, v in run]
    return marks


def _point_labels(points: list[PointLabel], right: float, top: float, bottom: float) -> list[PointLabel]:
    """Value labels beside lone points, stacked apart so that they do not overlap; one label for
    several points with the same value at the same place (in grey when their colours differ)."""
    merged: dict[tuple[int, int, str], PointLabel] = {}
    for p in points:
        key = (round(p.x), round(p.y), p.text)
        seen = merged.get(key)
        merged[key] = PointLabel(p.x, p.y, p.text, p.color if seen is None or seen.color == p.color else MIXED_COLOR, "")
    placed, last_y = [], top - 20.0
    for p in sorted(merged.values(), key=lambda p: p.y):
        last_y = max(p.y + 4, last_y + 13)
        placed.append((p, last_y))
    shift = max(0.0, last_y - bottom)  # a stack running past the axis moves up
    out = []
    for p, ly in placed:
        anchor, lx = ("end", p.x - 8) if p.x > right - 70 else ("start", p.x + 8)
        out.append(PointLabel(lx, max(top + 9, ly - shift), p.text, p.color, anchor))
    return out


def _runs(points: Sequence[tuple[datetime, float | None]]) -> list[list[Point]]:
    """Consecutive points without a missing value (NULL, NaN): one polyline each. Points further apart
    than the interval are joined, as Grafana joins them."""
    runs: list[list[Point]] = []
    current: list[Point] = []
    for when, v in points:
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((when, v))
    if current:
        runs.append(current)
    return runs


# --- bars -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    y: int
    width: float
    color: str
    title: str
    value: str
    value_x: float


@dataclass(frozen=True)
class BarGroup:
    name: str
    label_y: float
    bars: list[Bar]


@dataclass(frozen=True)
class LegendKey:
    x: int
    color: str
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: int
    bar_h: int
    groups: list[BarGroup]
    legend_y: int
    legend: list[LegendKey]


def bar_chart(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> BarChart | None:
    """Horizontal grouped bars: one group per row (its text columns), one bar per numeric column;
    None without a numeric column."""
    kinds = column_kinds(columns, rows)
    labels = [c for c in columns if kinds[c] == "text"]
    fields = [c for c in columns if kinds[c] == "number"]
    if not fields:
        return None
    names = [" ".join(str(r[columns.index(c)]) for c in labels) or "(none)" for r in rows]
    left = min(220, 16 + 7 * max(len(n) for n in names))
    bar_h, gap, top, legend_h = 11, 10, 8, 26
    group_h = bar_h * len(fields) + gap
    height = top + group_h * len(rows) + legend_h
    vmax = max([float(r[columns.index(f)] or 0) for r in rows for f in fields] + [1.0])
    pw = width - left - 70
    groups = []
    for i, (row, name) in enumerate(zip(rows, names, strict=True)):
        y0 = top + i * group_h
        bars = []
        for j, f in enumerate(fields):
            v = float(row[columns.index(f)] or 0)
            w = pw * v / vmax
            bars.append(Bar(y0 + j * bar_h, max(w, 0.5), PALETTE[j % len(PALETTE)], f"{name} {f}: {fmt(v)}", fmt(v),
                            left + w + 4))
        groups.append(BarGroup(name, y0 + group_h / 2 - gap / 2 + 4, bars))
    keys, x = [], left
    for j, f in enumerate(fields):
        keys.append(LegendKey(x, PALETTE[j % len(PALETTE)], f))
        x += 28 + 7 * len(f)
    return BarChart(width, height, left, bar_h, groups, height - 9, keys)


# --- sparkline ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    label: str  # every value, for the tooltip
    points: str  # "" for a single value: only its dot
    last_x: float
    last_y: float
    color: str = PALETTE[0]


def sparkline(values: Sequence[Any], unit: str = "percentunit", width: int = 96,
              height: int = 22) -> Sparkline | None:
    """A small line of the values, oldest first; the vertical scale spans at least 5 points of a rate.
    None without a number."""
    nums = [float(v) for v in values if is_number(v) and not math.isnan(float(v))]
    if not nums:
        return None
    label = ", ".join(fmt(v, unit) for v in nums)
    lo, hi = min(nums), max(nums)
    least = 0.05 if unit == "percentunit" else max(abs(hi) * 0.1, 1e-9)
    if hi - lo < least:
        mid = (hi + lo) / 2
        lo, hi = mid - least / 2, mid + least / 2
    pad = 3
    step = (width - 2 * pad) / max(1, len(nums) - 1)
    coords = [(pad + i * step if len(nums) > 1 else width / 2, pad + (height - 2 * pad) * (1 - (v - lo) / (hi - lo)))
              for i, v in enumerate(nums)]
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in coords) if len(coords) > 1 else ""
    return Sparkline(width, height, label, line, *coords[-1])
