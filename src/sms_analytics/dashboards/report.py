"""The overview dashboard as one static HTML file: `sms-analytics report --since 24h --out report.html`.

Every panel runs the SQL of dashboards/build.py: its rawSql, expanded by dashboards/macros.py the way
Grafana and the ClickHouse plugin do (range = start..end, every template variable = All, whose
options come from the dashboard's own variable queries, as in Grafana). This module runs the queries
and the totals and lays the panels out; what each panel shows is dashboards/report_panels.py's, its
charts dashboards/charts.py's, and the page is rendered from templates/report.html.j2 (Jinja2,
autoescaped: all text is escaped). The file needs nothing else: the CSS is inline and there is no
script.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from sms_analytics.dashboards import build
from sms_analytics.dashboards.formats import count, duration, utc, when
from sms_analytics.dashboards.macros import expand
from sms_analytics.dashboards.report_panels import PanelView, panel_view
from sms_analytics.model.times import parse_duration
from sms_analytics.sinks.query_api import QueryRefused, post_query  # noqa: F401 - QueryRefused: what a Query raises

Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]

MIN_INTERVAL_S = 60  # the rollups are per minute: a finer interval shows nothing more
MAX_POINTS = 120  # about this many intervals per chart, like Grafana's max data points
NICE_INTERVALS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
PAGE_WIDTH = 1360  # px of content; panels get gridPos.w / 24 of it
PANEL_CHROME = 30  # px of a panel's padding and the grid gap
STATUS_COLUMNS = ("sent", "delivered", "failed", "expired", "pending")
CARDS = (("sent", "Sent"), ("delivered", "Delivered"), ("failed", "Failed"), ("pending", "Pending"),
         ("expired", "Expired"))
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
    start, end = utc(start), utc(end)
    if end <= start:
        raise ValueError("the range must end after it starts")
    return TimeRange(start, end, interval_for((end - start).total_seconds()))


def last(span: timedelta, now: datetime | None = None) -> TimeRange:
    end = utc(now or datetime.now(UTC)).replace(microsecond=0)
    return time_range(end - span, end)


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
                  variables=dict.fromkeys(options, "All"), all_values=options)


def variable_options(query: Query, dashboard: dict[str, Any], rng: TimeRange) -> dict[str, list[str]]:
    """Every query variable's options for the range, resolved in order as Grafana does (each one All)."""
    options: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        sql = expand(build.variable_query(variable), start=rng.start, end=rng.end, interval_s=rng.interval_s,
                     variables=dict.fromkeys(options, "All"), all_values=options)
        try:
            options[variable["name"]] = [str(r[0]) for r in query(sql)[1]]
        except Exception:  # noqa: BLE001  (a variable without options: the panels still run)
            options[variable["name"]] = []
    return options


def run_panels(query: Query, dashboard: dict[str, Any], rng: TimeRange) -> list[PanelData]:
    options = variable_options(query, dashboard, rng)
    out = []
    for panel in _layout_order(dashboard["panels"]):
        try:
            columns, rows = query(panel_sql(panel, rng, options))
            out.append(PanelData(panel, list(columns), [tuple(r) for r in rows]))
        except Exception as exc:  # noqa: BLE001  (one broken panel must not lose the others)
            out.append(PanelData(panel, [], [], str(exc).strip()[:500] or type(exc).__name__))
    return out


def totals(query: Query, rng: TimeRange) -> dict[str, Any]:
    """Messages sent in the range by status, and their delivery rate (README "Metrics"); `error` when
    the warehouse could not answer (e.g. no schema yet)."""
    sql = expand(TOTALS_SQL, start=rng.start, end=rng.end, interval_s=rng.interval_s, variables={}, all_values={})
    try:
        columns, rows = query(sql)
    except Exception as exc:  # noqa: BLE001  (the page says the totals are unavailable)
        return {**dict.fromkeys(STATUS_COLUMNS), "delivery_rate": None, "error": str(exc).strip()[:500]}
    row = dict(zip(columns, rows[0], strict=True)) if rows else {}
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
        return datetime.fromisoformat(value)
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


# --- the report -----------------------------------------------------------------------------------

def build_report(query: Query, rng: TimeRange, *, generated_at: datetime | None = None,
                 dashboard: dict[str, Any] | None = None) -> str:
    dashboard = dashboard if dashboard is not None else build.overview()
    panels = run_panels(query, dashboard, rng)
    return render_html(dashboard, panels, totals(query, rng), rng, generated_at or datetime.now(UTC))


def write_report(query: Query, path: Path | str, rng: TimeRange, **kwargs: Any) -> Path:
    path = Path(path)
    text = build_report(query, rng, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


@cache
def templates() -> jinja2.Environment:
    """The report's templates (templates/, shipped in the package), every value autoescaped."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("sms_analytics.dashboards", "templates"), autoescape=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["px"] = lambda value: f"{value:.1f}"  # a computed coordinate
    return env


def render_html(dashboard: dict[str, Any], panels: Sequence[PanelData], sums: dict[str, Any], rng: TimeRange,
                generated_at: datetime) -> str:
    title = f"{dashboard.get('title', 'SMS delivery')} (static report)"
    spans = layout_spans([p.panel for p in panels])
    return templates().get_template("report.html.j2").render(
        title=title, start=when(rng.start), end=when(rng.end), length=duration(rng.seconds),
        interval=duration(rng.interval_s), generated=when(utc(generated_at)), cards=cards(sums),
        totals_error=sums.get("error") or "", panel_views=[_view(p, rng, span) for p, span in zip(panels, spans, strict=True)],
        dashboard_title=dashboard.get("title", ""), dashboard_uid=dashboard.get("uid", ""))


@dataclass(frozen=True)
class Card:
    css: str
    label: str
    value: str


def cards(sums: dict[str, Any]) -> list[Card]:
    """The header's totals: a card per status, then the delivery rate; n/a where unknown."""
    out = [Card(key, label, "n/a" if sums[key] is None else count(sums[key])) for key, label in CARDS]
    rate = sums.get("delivery_rate")
    return [*out, Card("rate", "Delivery rate", "n/a" if rate is None else f"{rate * 100:.2f}%")]


def _view(data: PanelData, rng: TimeRange, span: int) -> PanelView:
    width = int(PAGE_WIDTH * span / 24) - PANEL_CHROME
    return panel_view(data.panel, data.columns, data.rows, data.error, rng.start, rng.end, rng.interval_s, span,
                      width)


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
