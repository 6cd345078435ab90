"""The overview dashboard as one static HTML file: `sms-analytics report --since 24h --out report.html`.

Every panel runs the SQL of dashboards/build.py: its rawSql, expanded by dashboards/macros.py the way
Grafana and the ClickHouse plugin do (range = start..end, every template variable = All, whose
options come from the dashboard's own variable queries, as in Grafana). Each panel is drawn by its
type: timeseries as an inline SVG line chart (axes, labels, legend), table as an HTML table (sparkline
columns as inline SVG), stat as big numbers, barchart as SVG bars. The file needs nothing else: the
CSS is inline and there is no script. All text is escaped.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import msgspec

from sms_analytics.dashboards import build
from sms_analytics.dashboards.macros import expand
from sms_analytics.model.times import parse_duration
from sms_analytics.sinks.query_api import QueryRefused, post_query  # noqa: F401 - QueryRefused: what a Query raises

Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
Point = tuple[datetime, float]

MIN_INTERVAL_S = 60  # the rollups are per minute: a finer interval shows nothing more
MAX_POINTS = 120  # about this many intervals per chart, like Grafana's max data points
NICE_INTERVALS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TIME_TICKS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MAX_TABLE_ROWS = 100
SPLIT_ABOVE_SERIES = 6  # more series than this and several metrics: one small chart per metric
PAGE_WIDTH = 1360  # px of content; panels get gridPos.w / 24 of it
SMALL_CHART_MIN_WIDTH = 300
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
STATUS_COLUMNS = ("sent", "delivered", "failed", "expired", "pending")
_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")

TOTALS_SQL = """
SELECT count() AS sent, countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed,
       countIf(status = 'expired') AS expired, countIf(status = 'pending') AS pending
FROM sms.messages
WHERE $__timeFilter(sent_at)"""


# --- range ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: int

    @property
    def seconds(self) -> float:
        return max(1.0, (self.end - self.start).total_seconds())


def parse_since(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `2w`, `30s`: the length of the range that ends now."""
    try:
        seconds = parse_duration(text, units=("s", "m", "h", "d", "w"))
    except ValueError:
        seconds = 0
    if not seconds:
        raise ValueError(f"--since takes a positive number and a unit s, m, h, d or w (e.g. 24h), got {text!r}")
    return timedelta(seconds=seconds)


def interval_for(seconds: float) -> int:
    """The query interval ($__interval_s): about MAX_POINTS steps of the range, a whole minute at least."""
    wanted = seconds / MAX_POINTS
    return next((s for s in NICE_INTERVALS_S if s >= wanted), NICE_INTERVALS_S[-1])


def time_range(start: datetime, end: datetime) -> TimeRange:
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError("the range must end after it starts")
    return TimeRange(start, end, interval_for((end - start).total_seconds()))


def last(span: timedelta, now: datetime | None = None) -> TimeRange:
    end = _utc(now or datetime.now(timezone.utc)).replace(microsecond=0)
    return time_range(end - span, end)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# --- queries --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PanelData:
    panel: dict[str, Any]
    columns: list[str]
    rows: list[tuple[Any, ...]]
    error: str | None = None

    @property
    def title(self) -> str:
        return str(self.panel.get("title", ""))


def panel_sql(panel: dict[str, Any], rng: TimeRange, options: dict[str, list[str]]) -> str:
    """The SQL the ClickHouse server would receive for the panel's first target, every variable All."""
    raw = panel["targets"][0]["rawSql"]
    return expand(raw, start=rng.start, end=rng.end, interval_s=rng.interval_s,
                  variables={name: "All" for name in options}, all_values=options)


def variable_options(query: Query, dashboard: dict[str, Any], rng: TimeRange) -> dict[str, list[str]]:
    """Every query variable's options for the range, resolved in order as Grafana does (each one All)."""
    options: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        sql = expand(build.variable_query(variable), start=rng.start, end=rng.end, interval_s=rng.interval_s,
                     variables={name: "All" for name in options}, all_values=options)
        try:
            options[variable["name"]] = [str(r[0]) for r in query(sql)[1]]
        except Exception:
            options[variable["name"]] = []
    return options


def run_panels(query: Query, dashboard: dict[str, Any], rng: TimeRange) -> list[PanelData]:
    options = variable_options(query, dashboard, rng)
    out = []
    for panel in _layout_order(dashboard["panels"]):
        try:
            columns, rows = query(panel_sql(panel, rng, options))
            out.append(PanelData(panel, list(columns), [tuple(r) for r in rows]))
        except Exception as exc:  # one broken panel must not lose the others
            out.append(PanelData(panel, [], [], str(exc).strip()[:500] or type(exc).__name__))
    return out


def totals(query: Query, rng: TimeRange) -> dict[str, Any]:
    """Messages sent in the range by status, and their delivery rate (README "Metrics"); `error` when
    the warehouse could not answer (e.g. no schema yet)."""
    sql = expand(TOTALS_SQL, start=rng.start, end=rng.end, interval_s=rng.interval_s, variables={}, all_values={})
    try:
        columns, rows = query(sql)
    except Exception as exc:
        return {**{k: None for k in STATUS_COLUMNS}, "delivery_rate": None, "error": str(exc).strip()[:500]}
    row = dict(zip(columns, rows[0])) if rows else {}
    out: dict[str, Any] = {k: int(row.get(k) or 0) for k in STATUS_COLUMNS}
    final = out["delivered"] + out["failed"] + out["expired"]
    out["delivery_rate"] = out["delivered"] / final if final else None
    return out


def _layout_order(panels: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(panels, key=lambda p: (p.get("gridPos", {}).get("y", 0), p.get("gridPos", {}).get("x", 0)))


def http_query(base_url: str, timeout: float = 60.0, token: str | None = None) -> Query:
    """A Query through a running process's read-only endpoint (POST /query?format=json); `token`:
    SMS_QUERY_TOKEN, when the endpoint requires one."""
    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        body = post_query(base_url, sql, token=token, timeout=timeout)  # QueryRefused: the endpoint's error
        records = [msgspec.json.decode(line) for line in body.splitlines() if line.strip()]
        columns = list(records[0]) if records else []
        return columns, [tuple(_revive(r[c]) for c in columns) for r in records]
    return query


def _revive(value: Any) -> Any:
    """The endpoint writes times as ISO-8601 text: read them back as datetimes."""
    if isinstance(value, str) and _ISO_UTC.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


# --- the report -----------------------------------------------------------------------------------

def build_report(query: Query, rng: TimeRange, *, generated_at: datetime | None = None,
                 dashboard: dict[str, Any] | None = None) -> str:
    dashboard = dashboard if dashboard is not None else build.overview()
    panels = run_panels(query, dashboard, rng)
    return render_html(dashboard, panels, totals(query, rng), rng, generated_at or datetime.now(timezone.utc))


def write_report(query: Query, path: Path | str, rng: TimeRange, **kwargs: Any) -> Path:
    path = Path(path)
    text = build_report(query, rng, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def render_html(dashboard: dict[str, Any], panels: Sequence[PanelData], sums: dict[str, Any], rng: TimeRange,
                generated_at: datetime) -> str:
    title = f"{dashboard.get('title', 'SMS delivery')} (static report)"
    spans = layout_spans([p.panel for p in panels])
    body = "\n".join(_panel_html(p, rng, span) for p, span in zip(panels, spans))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
{_header_html(title, sums, rng, generated_at)}
<main class="grid">
{body}
</main>
<footer>Every panel runs the SQL of the Grafana dashboard "{_e(dashboard.get('title', ''))}" (uid
{_e(dashboard.get('uid', ''))}) for this range with every variable set to All; times are UTC.</footer>
</body>
</html>
"""


def _header_html(title: str, sums: dict[str, Any], rng: TimeRange, generated_at: datetime) -> str:
    rate = sums.get("delivery_rate")
    cards = [(label, "n/a" if sums[key] is None else _count(sums[key]), key) for key, label in
             (("sent", "Sent"), ("delivered", "Delivered"), ("failed", "Failed"), ("pending", "Pending"),
              ("expired", "Expired"))]
    cards.append(("Delivery rate", "n/a" if rate is None else f"{rate * 100:.2f}%", "rate"))
    error = f'<p class="error">totals unavailable: {_e(sums["error"])}</p>' if sums.get("error") else ""
    card_html = "".join(f'<div class="card {_e(cls)}"><div class="label">{_e(label)}</div>'
                        f'<div class="big">{_e(value)}</div></div>' for label, value, cls in cards)
    return f"""<header>
<h1>{_e(title)}</h1>
<p class="meta">Range <b>{_e(_when(rng.start))}</b> &rarr; <b>{_e(_when(rng.end))}</b> UTC
({_e(_duration(rng.seconds))}, interval {_e(_duration(rng.interval_s))}) &middot; generated
{_e(_when(_utc(generated_at)))} UTC &middot; variables: All</p>
<div class="cards">{card_html}</div>{error}
<p class="note">Totals: messages sent in the range (sms.messages), by their status now. Delivery rate =
delivered / (delivered + failed + expired); pending messages are beside it, not in it.</p>
</header>"""


def layout_spans(panels: Sequence[dict[str, Any]]) -> list[int]:
    """Grid columns (of 24) per panel, in layout order: the dashboard's widths, except that a table
    gets half the page at least (a third is too narrow for its columns on a 1400 px page); the last
    panel of a line is stretched to the line's end, so a widened row leaves no hole."""
    spans: list[int] = []
    used, row_y = 0, None
    for panel in panels:
        grid = panel.get("gridPos", {})
        span = max(1, min(24, int(grid.get("w", 24))))
        if panel.get("type") == "table":
            span = max(span, 12)
        if spans and (used + span > 24 or grid.get("y") != row_y):
            spans[-1] += 24 - used  # close the line
            used = 0
        spans.append(span)
        used, row_y = used + span, grid.get("y")
    if spans:
        spans[-1] += 24 - used
    return spans


def _panel_html(data: PanelData, rng: TimeRange, span: int) -> str:
    panel = data.panel
    width = int(PAGE_WIDTH * span / 24) - 30  # minus the panel's padding and the grid gap
    kind = panel.get("type", "")
    if data.error:
        content = f'<p class="error">query failed: {_e(data.error)}</p>'
    elif not data.rows:
        content = '<p class="nodata">no data</p>'
    elif kind == "timeseries":
        content = timeseries_html(data, rng, width)
    elif kind == "barchart":
        content = bar_chart_svg(data.columns, data.rows, width)
    elif kind == "stat":
        content = stat_html(data)
    else:
        content = table_html(data)
    description = panel.get("description") or ""
    return (f'<section class="panel {_e(kind)}" style="grid-column: span {span}">'
            f'<h2>{_e(panel.get("title", ""))}</h2>'
            + (f'<p class="desc">{_e(description)}</p>' if description else "")
            + content + "</section>")


# --- columns and units ----------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    return isinstance(value, (datetime, date))


def _column_kinds(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """number, time, array or text: from the values (None ignored), the name `time` is a time."""
    kinds = {}
    for i, name in enumerate(columns):
        values = [r[i] for r in rows if r[i] is not None]
        if name == "time" or (values and all(_is_time(v) for v in values)):
            kinds[name] = "time"
        elif values and all(_is_number(v) for v in values):
            kinds[name] = "number"
        elif values and all(isinstance(v, (list, tuple)) for v in values):
            kinds[name] = "array"
        else:
            kinds[name] = "text" if values else "number"
    return kinds


def column_unit(panel: dict[str, Any], column: str) -> str:
    """The unit of a column: the panel's field override, else its name (rates, *_ms, *seconds), else short."""
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override.get("matcher", {}).get("options") == column:
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    return str(prop["value"])
    if column.endswith(("rate", "rate_vs_best")) or column.startswith("within_"):
        return "percentunit"
    if column.endswith("_ms") or column in ("p50", "p90", "p95", "p99"):
        return "ms"
    if column.endswith("seconds"):
        return "s"
    return "short"


def _metric_unit(panel: dict[str, Any], metric: str) -> str:
    """A timeseries metric's unit: its name's (rates, latencies), else the panel's; the counts beside
    the rates of a percent panel are counts."""
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    by_name = column_unit(panel, metric)
    if by_name != "short":
        return by_name
    return "short" if unit == "percentunit" else unit


def fmt(value: Any, unit: str = "short", *, precise: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, datetime):
        return _when(_utc(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, unit, precise=precise) for v in value)
    if not _is_number(value):
        return str(value)
    v = float(value)
    if unit == "percentunit":
        return f"{v * 100:.2f}%" if precise else f"{v * 100:.{0 if (v * 100).is_integer() else 1}f}%"
    if unit == "ms":
        if abs(v) < 1000:
            return f"{v:,.0f} ms"
        return f"{v / 1000:,.{2 if precise else 1}f} s" if abs(v) < 120_000 else _duration(v / 1000)
    if unit == "s":
        return _duration(v)
    if isinstance(value, int) or v.is_integer():
        return _count(v) if precise else _si(v)
    return f"{v:,.4g}" if precise else _si(v)


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _si(v: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}" if not float(v).is_integer() else f"{v:.0f}"


def _duration(seconds: float) -> str:
    s = float(seconds)
    if abs(s) < 120:
        return f"{s:.0f} s"
    if abs(s) < 7200:
        return f"{s / 60:.1f} min".replace(".0 min", " min")
    if abs(s) < 172800:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d".replace(".0 d", " d")


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


# --- timeseries -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    group: str
    metric: str
    points: list[tuple[datetime, float | None]]


def to_series(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[str], list[Series]]:
    """Long rows (time, labels…, values…) into series, as Grafana splits a timeseries frame: one per
    combination of the text columns and numeric column. Returns (groups, metrics, series)."""
    kinds = _column_kinds(columns, rows)
    time_col = "time" if "time" in kinds else next((c for c, k in kinds.items() if k == "time"), None)
    if time_col is None:
        return [], [], []
    labels = [c for c in columns if kinds[c] == "text"]
    metrics = [c for c in columns if kinds[c] == "number"]
    ti = columns.index(time_col)
    groups: list[str] = []
    points: dict[tuple[str, str], list[tuple[datetime, float | None]]] = {}
    for row in rows:
        when = _as_time(row[ti])
        if when is None:
            continue
        group = " ".join(str(row[columns.index(c)]) for c in labels) or ""
        if group not in groups:
            groups.append(group)
        for m in metrics:
            v = row[columns.index(m)]
            ok = _is_number(v) and not math.isnan(float(v))
            points.setdefault((group, m), []).append((when, float(v) if ok else None))
    series = [Series(g, m, sorted(points.get((g, m), []), key=lambda p: p[0])) for m in metrics for g in groups]
    return groups, metrics, series


def timeseries_html(data: PanelData, rng: TimeRange, width: int) -> str:
    groups, metrics, series = to_series(data.columns, data.rows)
    if not series or all(v is None for s in series for _, v in s.points):
        return '<p class="nodata">no data</p>'
    intervals = {t for s in series for t, v in s.points if v is not None}
    note = (f'<p class="note">Only one {_e(_duration(rng.interval_s))} interval has data in this range: the '
            f"labelled dots are its values.</p>" if len(intervals) == 1 else "")
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    if len(metrics) > 1 and len(series) > SPLIT_ABOVE_SERIES:
        return note + _small_multiples(data.panel, groups, metrics, series, colors, rng, width)
    styles = {}
    for s in series:
        if len(groups) > 1:
            styles[(s.group, s.metric)] = (colors[s.group], DASHES[metrics.index(s.metric) % len(DASHES)])
        else:
            styles[(s.group, s.metric)] = (PALETTE[metrics.index(s.metric) % len(PALETTE)], "")
    units = {_metric_unit(data.panel, m) for m in metrics}
    unit = units.pop() if len(units) == 1 else "short"
    chart = line_chart_svg(series, styles, rng, unit, width, 240)
    rows = []
    for s in series:
        color, dash = styles[(s.group, s.metric)]
        values = [v for _, v in s.points if v is not None]
        name = " · ".join(x for x in (s.group, s.metric if len(metrics) > 1 or not s.group else "") if x)
        rows.append(f"<tr><td>{_swatch(color, dash)} {_e(name or s.metric)}</td>"
                    f"<td>{_e(fmt(values[-1] if values else None, unit))}</td>"
                    f"<td>{_e(fmt(min(values) if values else None, unit))}</td>"
                    f"<td>{_e(fmt(max(values) if values else None, unit))}</td></tr>")
    legend = ('<table class="legend"><thead><tr><th>series</th><th>last</th><th>min</th><th>max</th></tr></thead>'
              f"<tbody>{''.join(rows)}</tbody></table>")
    return note + chart + legend


def _small_multiples(panel: dict[str, Any], groups: list[str], metrics: list[str], series: list[Series],
                     colors: dict[str, str], rng: TimeRange, width: int) -> str:
    per_row = max(1, min(len(metrics), width // SMALL_CHART_MIN_WIDTH))
    chart_w = (width - 12 * (per_row - 1)) // per_row
    charts = []
    for m in metrics:
        mine = [s for s in series if s.metric == m]
        styles = {(s.group, s.metric): (colors[s.group], "") for s in mine}
        charts.append(line_chart_svg(mine, styles, rng, _metric_unit(panel, m), chart_w, 190, title=m))
    head = "".join(f"<th>{_e(m)} (last)</th>" for m in metrics)
    body = []
    for g in groups:
        cells = []
        for m in metrics:
            values = [v for s in series if s.group == g and s.metric == m for _, v in s.points if v is not None]
            cells.append(f"<td>{_e(fmt(values[-1] if values else None, _metric_unit(panel, m)))}</td>")
        body.append(f"<tr><td>{_swatch(colors[g], '')} {_e(g or '(all)')}</td>{''.join(cells)}</tr>")
    legend = (f'<table class="legend"><thead><tr><th>series</th>{head}</tr></thead><tbody>{"".join(body)}'
              "</tbody></table>")
    return (f'<div class="multiples" style="grid-template-columns: repeat({per_row}, 1fr)">{"".join(charts)}</div>'
            + legend)


def _swatch(color: str, dash: str) -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<svg class="swatch" width="22" height="10" viewBox="0 0 22 10" aria-hidden="true">'
            f'<line x1="1" y1="5" x2="21" y2="5" stroke="{color}" stroke-width="2.5"{dash_attr}/></svg>')


def line_chart_svg(series: Sequence[Series], styles: dict[tuple[str, str], tuple[str, str]], rng: TimeRange,
                   unit: str, width: int, height: int, title: str = "") -> str:
    left, right, top, bottom = 60, 24, 24 if title else 12, 26
    pw, ph = width - left - right, height - top - bottom
    values = [v for s in series for _, v in s.points if v is not None]
    lo, hi, yticks = y_axis(values, unit)
    label_top = max(values, default=hi)  # the scale of the labels, as y_axis chose it
    t0, span = rng.start.timestamp(), rng.seconds

    def x(when: datetime) -> float:
        return left + pw * min(1.0, max(0.0, (when.timestamp() - t0) / span))

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{_e(title or "time series")}">']
    if title:
        parts.append(f'<text class="ctitle" x="{left}" y="15">{_e(title)}</text>')
    for v in yticks:
        yy = y(v)
        parts.append(f'<line class="grid" x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}"/>'
                     f'<text class="ylab" x="{left - 6}" y="{yy + 4:.1f}">{_e(axis_label(v, unit, label_top))}</text>')
    for when, label in time_ticks(rng, pw):
        xx = x(when)
        parts.append(f'<line class="tick" x1="{xx:.1f}" y1="{top + ph}" x2="{xx:.1f}" y2="{top + ph + 4}"/>'
                     f'<text class="xlab" x="{xx:.1f}" y="{top + ph + 17}">{_e(label)}</text>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>'
                 f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/>')
    lone: list[tuple[float, float, str, str]] = []  # a series' only point: labelled with its value
    for s in series:
        color, dash = styles[(s.group, s.metric)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        runs = _runs(s.points)
        for run in runs:
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            if len(run) > 1:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash_attr} points="{coords}"/>')
            if len(run) == 1 or len(s.points) <= 40:
                radius = 2.6 if len(s.points) > 1 else 4
                parts += [f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="{radius}" fill="{color}"/>' for t, v in run]
        if len(runs) == 1 and len(runs[0]) == 1:
            t, v = runs[0][0]
            lone.append((x(t), y(v), fmt(v, unit, precise=False), color))
    if len(lone) <= 12:
        parts += _point_labels(lone, left + pw, top, top + ph)
    parts.append("</svg>")
    return "".join(parts)


def _point_labels(points: list[tuple[float, float, str, str]], right: float, top: float, bottom: float) -> list[str]:
    """Value labels beside lone points, stacked apart so that they do not overlap; one label for
    several points with the same value at the same place (in grey when their colours differ)."""
    merged: dict[tuple[int, int, str], tuple[float, float, str, str]] = {}
    for px, py, text, color in points:
        key = (round(px), round(py), text)
        seen = merged.get(key)
        merged[key] = (px, py, text, color if seen is None or seen[3] == color else "#5b616b")
    placed, last_y = [], top - 20.0
    for px, py, text, color in sorted(merged.values(), key=lambda p: p[1]):
        last_y = max(py + 4, last_y + 13)
        placed.append((px, last_y, text, color))
    shift = max(0.0, last_y - bottom)  # a stack running past the axis moves up
    out = []
    for px, ly, text, color in placed:
        anchor, lx = ("end", px - 8) if px > right - 70 else ("start", px + 8)
        out.append(f'<text class="plab" x="{lx:.1f}" y="{max(top + 9, ly - shift):.1f}" fill="{color}" '
                   f'text-anchor="{anchor}">{_e(text)}</text>')
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
        if v is not None:
            current.append((when, v))
    if current:
        runs.append(current)
    return runs


MS_SCALES = ((7_200_000.0, "h"), (120_000.0, "min"), (1000.0, "s"), (1.0, "ms"))


def ms_scale(top: float) -> tuple[float, str]:
    """The display unit of a millisecond axis that reaches `top`: ms, s, min or h."""
    return next(((size if suffix == "ms" else {"h": 3_600_000.0, "min": 60_000.0, "s": 1000.0}[suffix], suffix)
                 for size, suffix in MS_SCALES if top >= size), (1.0, "ms"))


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
    n = int(round((hi - lo) / step))
    return lo, hi, [round(lo + i * step, 10) for i in range(n + 1)]


def time_ticks(rng: TimeRange, plot_width: int) -> list[tuple[datetime, str]]:
    """Ticks on whole steps (UTC) that leave room for their labels."""
    long_labels = rng.seconds > 86400
    room = 96 if long_labels else 58
    most = max(2, plot_width // room)
    step = next((s for s in TIME_TICKS_S if rng.seconds / s <= most), TIME_TICKS_S[-1])
    first = math.ceil(rng.start.timestamp() / step) * step
    label = "%m-%d" if step >= 86400 else ("%m-%d %H:%M" if long_labels else ("%H:%M:%S" if step < 60 else "%H:%M"))
    out = []
    t = first
    while t <= rng.end.timestamp():
        out.append((datetime.fromtimestamp(t, timezone.utc), datetime.fromtimestamp(t, timezone.utc).strftime(label)))
        t += step
    return out


# --- bar chart, stat, table -----------------------------------------------------------------------

def bar_chart_svg(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> str:
    """Horizontal grouped bars: one group per row (its text columns), one bar per numeric column."""
    kinds = _column_kinds(columns, rows)
    labels = [c for c in columns if kinds[c] == "text"]
    fields = [c for c in columns if kinds[c] == "number"]
    if not fields:
        return '<p class="nodata">no data</p>'
    names = [" ".join(str(r[columns.index(c)]) for c in labels) or "(none)" for r in rows]
    left = min(220, 16 + 7 * max(len(n) for n in names))
    bar_h, gap, top = 11, 10, 8
    group_h = bar_h * len(fields) + gap
    legend_h = 26
    height = top + group_h * len(rows) + legend_h
    vmax = max([float(r[columns.index(f)] or 0) for r in rows for f in fields] + [1.0])
    pw = width - left - 70
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="bar chart">']
    for i, (row, name) in enumerate(zip(rows, names)):
        y0 = top + i * group_h
        parts.append(f'<text class="blab" x="{left - 8}" y="{y0 + group_h / 2 - gap / 2 + 4:.1f}">{_e(name)}</text>')
        for j, f in enumerate(fields):
            v = float(row[columns.index(f)] or 0)
            w = pw * v / vmax
            yy = y0 + j * bar_h
            parts.append(f'<rect x="{left}" y="{yy}" width="{max(w, 0.5):.1f}" height="{bar_h - 2}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{_e(f"{name} {f}: {fmt(v)}")}</title></rect>'
                         f'<text class="bval" x="{left + w + 4:.1f}" y="{yy + bar_h - 3}">{_e(fmt(v))}</text>')
    ly = height - 9
    x = left
    for j, f in enumerate(fields):
        parts.append(f'<rect x="{x}" y="{ly - 9}" width="12" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text class="leg" x="{x + 16}" y="{ly}">{_e(f)}</text>')
        x += 28 + 7 * len(f)
    parts.append("</svg>")
    return "".join(parts)


def stat_html(data: PanelData) -> str:
    """One big number per row and numeric column, titled by the row's text columns; times beside it."""
    kinds = _column_kinds(data.columns, data.rows)
    unit = data.panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    boxes = []
    for row in data.rows:
        name = " ".join(str(row[i]) for i, c in enumerate(data.columns) if kinds[c] == "text")
        times = "".join(f'<div class="sub">{_e(c)}:<br>{_e(fmt(row[i]))}</div>'
                        for i, c in enumerate(data.columns) if kinds[c] == "time")
        for i, c in enumerate(data.columns):
            if kinds[c] != "number":
                continue
            value = fmt(row[i], unit if unit != "short" else column_unit(data.panel, c))
            boxes.append(f'<div class="stat"><div class="label">{_e(name or c)}</div><div class="big">{_e(value)}</div>'
                         f'<div class="sub">{_e(c)}</div>{times}</div>')
    return f'<div class="stats">{"".join(boxes)}</div>' if boxes else '<p class="nodata">no data</p>'


def table_html(data: PanelData) -> str:
    kinds = _column_kinds(data.columns, data.rows)
    sparks = set(build.sparkline_columns(data.panel))
    units = {c: column_unit(data.panel, c) for c in data.columns}
    head = "".join(f'<th class="{_e(kinds[c])}">{_e(c)}</th>' for c in data.columns)
    body = []
    for row in data.rows[:MAX_TABLE_ROWS]:
        cells = []
        for c, v in zip(data.columns, row):
            if c in sparks and isinstance(v, (list, tuple)):
                cells.append(f'<td class="spark">{sparkline_svg(v, units[c])}</td>')
            else:
                cells.append(_cell(v, kinds[c], units[c]))
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = len(data.rows) - MAX_TABLE_ROWS
    note = f'<p class="more">{more} more rows not shown</p>' if more > 0 else ""
    return (f'<div class="tablewrap"><table class="data"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{note}')


def _cell(value: Any, kind: str, unit: str) -> str:
    if value == "":
        return '<td class="text empty">(empty)</td>'
    text = fmt(value, unit, precise=not isinstance(value, (list, tuple)))
    wrap = " long" if kind == "text" and len(text) > 32 else ""
    return f'<td class="{_e(kind)}{wrap}">{_e(text)}</td>'


def sparkline_svg(values: Sequence[Any], unit: str = "percentunit", width: int = 96, height: int = 22) -> str:
    """A small line of the values, oldest first; the vertical scale spans at least 5 points of a rate."""
    nums = [float(v) for v in values if _is_number(v) and not math.isnan(float(v))]
    label = ", ".join(fmt(v, unit) for v in nums) or "no values"
    if not nums:
        return f'<span class="nodata" title="{_e(label)}">—</span>'
    lo, hi = min(nums), max(nums)
    least = 0.05 if unit == "percentunit" else max(abs(hi) * 0.1, 1e-9)
    if hi - lo < least:
        mid = (hi + lo) / 2
        lo, hi = mid - least / 2, mid + least / 2
    pad = 3

    def y(v: float) -> float:
        return pad + (height - 2 * pad) * (1 - (v - lo) / (hi - lo))

    step = (width - 2 * pad) / max(1, len(nums) - 1)
    coords = [(pad + i * step if len(nums) > 1 else width / 2, y(v)) for i, v in enumerate(nums)]
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in coords)
    last_x, last_y = coords[-1]
    shape = (f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{line}"/>'
             if len(coords) > 1 else "")
    return (f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
            f"<title>{_e(label)}</title>{shape}"
            f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.2" fill="{PALETTE[0]}"/></svg>')


CSS = """
*{box-sizing:border-box}
body{margin:0 auto;max-width:1400px;padding:20px;font:13px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",
Arial,"Noto Sans","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;color:#1f2328;background:#f4f5f7}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:14px;margin:0 0 2px}
header{background:#fff;border:1px solid #d9dce1;border-radius:6px;padding:14px 18px;margin-bottom:14px}
.meta,.note,.desc,footer,.more{color:#5b616b}
.meta{margin:0 0 10px}.note{margin:4px 0 6px;font-size:12px}
.desc{margin:0 0 8px;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{flex:1 1 140px;border:1px solid #e3e5e8;border-radius:6px;padding:8px 12px;background:#fafbfc}
.card .label,.stat .label{font-size:12px;color:#5b616b}
.card .big{font-size:26px;font-weight:600}
.card.delivered .big{color:#2f7d32}.card.failed .big{color:#c62828}.card.pending .big{color:#b26a00}
.card.expired .big{color:#6d6d6d}.card.rate .big{color:#1f4e8c}
.grid{display:grid;grid-template-columns:repeat(24,minmax(0,1fr));gap:14px;align-items:start}
.panel{background:#fff;border:1px solid #d9dce1;border-radius:6px;padding:12px 14px;min-width:0}
.nodata{color:#8a9099;font-style:italic;margin:18px 0;text-align:center}
.error{color:#c62828}
svg.chart{display:block;width:100%;height:auto;max-width:100%}
svg text{font-family:inherit}
.ctitle{font-size:12px;font-weight:600;fill:#1f2328}
.ylab{font-size:11px;fill:#5b616b;text-anchor:end}
.xlab{font-size:11px;fill:#5b616b;text-anchor:middle}
.blab{font-size:12px;fill:#1f2328;text-anchor:end}
.bval,.leg{font-size:11px;fill:#5b616b}
.plab{font-size:11px;font-weight:600}
line.grid{stroke:#e8eaed;stroke-width:1}
line.axis,line.tick{stroke:#9aa0a6;stroke-width:1}
.multiples{display:grid;gap:12px}
table{border-collapse:collapse}
table.legend{margin-top:6px;font-size:12px}
table.legend th,table.legend td{padding:2px 10px 2px 0;text-align:right;white-space:nowrap}
table.legend th:first-child,table.legend td:first-child{text-align:left}
.swatch{vertical-align:middle}
.tablewrap{overflow-x:auto}
table.data{width:100%;font-size:12px}
table.data th{position:sticky;top:0;background:#f0f2f5;text-align:left;font-weight:600;border-bottom:1px solid #d9dce1}
table.data th,table.data td{padding:3px 8px;vertical-align:top}
table.data tbody tr:nth-child(even){background:#fafbfc}
table.data td.number,table.data th.number{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.data td.time,table.data td.text{white-space:nowrap}
table.data td.long{white-space:normal;min-width:200px}
table.data td.empty{color:#8a9099;font-style:italic}
table.data td.array{font-size:11px;color:#3d434b;min-width:130px}
table.data td.spark{padding:1px 8px}
.stats{display:flex;flex-wrap:wrap;gap:10px}
.stat{flex:1 1 120px;border:1px solid #e3e5e8;border-radius:6px;padding:8px 12px}
.stat .big{font-size:28px;font-weight:600;color:#1f4e8c}
.stat .sub{font-size:11px;color:#8a9099}
footer{margin-top:16px;font-size:12px}
"""
