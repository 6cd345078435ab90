"""What each panel of the static report shows, as a view for templates/report.html.j2: a timeseries
as a line chart (or one small chart per metric) with its legend table, a table's cells (sparkline
columns as sparklines), a stat's big numbers, a barchart's bars. The panel's rows come from
dashboards/report.py; chart geometry is dashboards/charts.py's, the markup the templates'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sms_analytics.dashboards import build
from sms_analytics.dashboards.charts import (
    DASHES,
    PALETTE,
    BarChart,
    LineChart,
    Series,
    Sparkline,
    bar_chart,
    line_chart,
    sparkline,
)
from sms_analytics.dashboards.formats import (
    as_time,
    column_kinds,
    column_unit,
    duration,
    fmt,
    is_number,
    metric_unit,
)

MAX_TABLE_ROWS = 100
SPLIT_ABOVE_SERIES = 6  # more series than this and several metrics: one small chart per metric
SMALL_CHART_MIN_WIDTH = 300
CHART_HEIGHT, SMALL_CHART_HEIGHT = 240, 190
LONG_TEXT = 32  # characters: a longer text cell may wrap


@dataclass(frozen=True)
class LegendRow:
    """A series in a legend table: its swatch, its name and its values as text."""

    color: str
    dash: str
    name: str
    values: list[str]


@dataclass(frozen=True)
class Timeseries:
    one_interval: str | None  # the interval's length when only one has data (its dots are labelled)
    charts: list[LineChart]
    per_row: int | None  # small multiples: charts a row; None for one chart
    legend_head: list[str]
    legend: list[LegendRow]


@dataclass(frozen=True)
class Cell:
    css: str
    text: str
    spark: Sparkline | None = None
    is_spark: bool = False


@dataclass(frozen=True)
class Table:
    head: list[tuple[str, str]]  # (column, kind)
    rows: list[list[Cell]]
    more: int  # rows not shown


@dataclass(frozen=True)
class StatBox:
    label: str
    value: str
    column: str
    times: list[tuple[str, str]]  # (column, time) of the row


Content = Timeseries | Table | list[StatBox] | BarChart
State = Literal["error", "nodata", "timeseries", "table", "stat", "barchart"]


@dataclass(frozen=True)
class PanelView:
    kind: str  # the panel's type
    span: int  # grid columns of 24
    title: str
    description: str
    state: State
    error: str = ""
    content: Content | None = None


def panel_view(panel: dict[str, Any], columns: list[str], rows: list[tuple[Any, ...]], error: str | None,
               start: datetime, end: datetime, interval_s: int, span: int, width: int) -> PanelView:
    """The view of one panel drawn by its type, `width` px wide: timeseries, table (the default),
    stat or barchart; "nodata" when nothing can be drawn."""
    kind = str(panel.get("type", ""))
    state, content = ("error", None) if error else ("nodata", None) if not rows else _content(
        panel, kind, columns, rows, start, end, interval_s, width)
    return PanelView(kind, span, str(panel.get("title", "")), panel.get("description") or "", state, error or "",
                     content)


def _content(panel: dict[str, Any], kind: str, columns: list[str], rows: list[tuple[Any, ...]], start: datetime,
             end: datetime, interval_s: int, width: int) -> tuple[State, Content | None]:
    if kind == "timeseries":
        return _drawn("timeseries", timeseries(panel, columns, rows, start, end, interval_s, width))
    if kind == "barchart":
        return _drawn("barchart", bar_chart(columns, rows, width))
    if kind == "stat":
        return _drawn("stat", stat_boxes(panel, columns, rows) or None)
    return "table", table(panel, columns, rows)


def _drawn(state: State, content: Content | None) -> tuple[State, Content | None]:
    return (state if content is not None else "nodata"), content


# --- timeseries -----------------------------------------------------------------------------------

def to_series(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[str], list[Series]]:
    """Long rows (time, labels…, values…) into series, as Grafana splits a timeseries frame: one per
    combination of the text columns and numeric column. Returns (groups, metrics, series)."""
    kinds = column_kinds(columns, rows)
    time_col = "time" if "time" in kinds else next((c for c, k in kinds.items() if k == "time"), None)
    if time_col is None:
        return [], [], []
    labels = [c for c in columns if kinds[c] == "text"]
    metrics = [c for c in columns if kinds[c] == "number"]
    ti = columns.index(time_col)
    groups: list[str] = []
    points: dict[tuple[str, str], list[tuple[datetime, float | None]]] = {}
    for row in rows:
        when = as_time(row[ti])
        if when is None:
            continue
        group = " ".join(str(row[columns.index(c)]) for c in labels) or ""
        if group not in groups:
            groups.append(group)
        for m in metrics:
            v = row[columns.index(m)]
            ok = is_number(v) and not math.isnan(float(v))
            points.setdefault((group, m), []).append((when, float(v) if ok else None))
    series = [Series(g, m, sorted(points.get((g, m), []), key=lambda p: p[0])) for m in metrics for g in groups]
    return groups, metrics, series


def timeseries(panel: dict[str, Any], columns: list[str], rows: list[tuple[Any, ...]], start: datetime,
               end: datetime, interval_s: int, width: int) -> Timeseries | None:
    """One chart with a legend of last, min and max; small multiples when there are many series of
    several metrics. None when no series has a value."""
    groups, metrics, series = to_series(columns, rows)
    if not series or all(v is None for s in series for _, v in s.points):
        return None
    intervals = {t for s in series for t, v in s.points if v is not None}
    one_interval = duration(interval_s) if len(intervals) == 1 else None
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    if len(metrics) > 1 and len(series) > SPLIT_ABOVE_SERIES:
        return _small_multiples(panel, groups, metrics, series, colors, start, end, width, one_interval)
    styles = {}
    for s in series:
        if len(groups) > 1:
            styles[(s.group, s.metric)] = (colors[s.group], DASHES[metrics.index(s.metric) % len(DASHES)])
        else:
            styles[(s.group, s.metric)] = (PALETTE[metrics.index(s.metric) % len(PALETTE)], "")
    units = {metric_unit(panel, m) for m in metrics}
    unit = units.pop() if len(units) == 1 else "short"
    chart = line_chart(series, styles, start, end, unit, width, CHART_HEIGHT)
    legend = []
    for s in series:
        color, dash = styles[(s.group, s.metric)]
        values = [v for _, v in s.points if v is not None]
        name = " · ".join(x for x in (s.group, s.metric if len(metrics) > 1 or not s.group else "") if x)
        legend.append(LegendRow(color, dash, name or s.metric, [
            fmt(values[-1] if values else None, unit), fmt(min(values) if values else None, unit),
            fmt(max(values) if values else None, unit)]))
    return Timeseries(one_interval, [chart], None, ["last", "min", "max"], legend)


def _small_multiples(panel: dict[str, Any], groups: list[str], metrics: list[str], series: list[Series],
                     colors: dict[str, str], start: datetime, end: datetime, width: int,
                     one_interval: str | None) -> Timeseries:
    per_row = max(1, min(len(metrics), width // SMALL_CHART_MIN_WIDTH))
    chart_w = (width - 12 * (per_row - 1)) // per_row
    charts = []
    for m in metrics:
        mine = [s for s in series if s.metric == m]
        styles = {(s.group, s.metric): (colors[s.group], "") for s in mine}
        charts.append(line_chart(mine, styles, start, end, metric_unit(panel, m), chart_w, SMALL_CHART_HEIGHT,
                                 title=m))
    legend = []
    for g in groups:
        cells = []
        for m in metrics:
            values = [v for s in series if s.group == g and s.metric == m for _, v in s.points if v is not None]
            cells.append(fmt(values[-1] if values else None, metric_unit(panel, m)))
        legend.append(LegendRow(colors[g], "", g or "(all)", cells))
    return Timeseries(one_interval, charts, per_row, [f"{m} (last)" for m in metrics], legend)


# --- table and stat -------------------------------------------------------------------------------

def table(panel: dict[str, Any], columns: list[str], rows: list[tuple[Any, ...]]) -> Table:
    """The first MAX_TABLE_ROWS rows as text in each column's unit; sparkline columns as sparklines."""
    kinds = column_kinds(columns, rows)
    sparks = set(build.sparkline_columns(panel))
    units = {c: column_unit(panel, c) for c in columns}
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = []
        for c, v in zip(columns, row, strict=True):
            if c in sparks and isinstance(v, (list, tuple)):
                cells.append(Cell("spark", "", sparkline(v, units[c]), is_spark=True))
            else:
                cells.append(cell(v, kinds[c], units[c]))
        body.append(cells)
    return Table([(c, kinds[c]) for c in columns], body, max(0, len(rows) - MAX_TABLE_ROWS))


def cell(value: Any, kind: str, unit: str) -> Cell:
    if value == "":
        return Cell("text empty", "(empty)")
    text = fmt(value, unit, precise=not isinstance(value, (list, tuple)))
    return Cell(kind + (" long" if kind == "text" and len(text) > LONG_TEXT else ""), text)


def stat_boxes(panel: dict[str, Any], columns: list[str], rows: list[tuple[Any, ...]]) -> list[StatBox]:
    """One big number per row and numeric column, titled by the row's text columns; times beside it."""
    kinds = column_kinds(columns, rows)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    boxes = []
    for row in rows:
        name = " ".join(str(row[i]) for i, c in enumerate(columns) if kinds[c] == "text")
        times = [(c, fmt(row[i])) for i, c in enumerate(columns) if kinds[c] == "time"]
        for i, c in enumerate(columns):
            if kinds[c] == "number":
                value = fmt(row[i], unit if unit != "short" else column_unit(panel, c))
                boxes.append(StatBox(name or c, value, c, times))
    return boxes
