"""How the static report (dashboards/report.py) writes values: counts, rates, latencies, durations and
times as text, a column's unit and kind. Text only: escaping is the templates' job, drawing is
dashboards/charts.py's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_time(value: Any) -> bool:
    return isinstance(value, (datetime, date))


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def column_kinds(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """number, time, array or text: from the values (None ignored), the name `time` is a time."""
    kinds = {}
    for i, name in enumerate(columns):
        values = [r[i] for r in rows if r[i] is not None]
        if name == "time" or (values and all(is_time(v) for v in values)):
            kinds[name] = "time"
        elif values and all(is_number(v) for v in values):
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


def metric_unit(panel: dict[str, Any], metric: str) -> str:
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
        return when(utc(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, unit, precise=precise) for v in value)
    if not is_number(value):
        return str(value)
    v = float(value)
    if unit == "percentunit":
        return f"{v * 100:.2f}%" if precise else f"{v * 100:.{0 if (v * 100).is_integer() else 1}f}%"
    if unit == "ms":
        if abs(v) < 1000:
            return f"{v:,.0f} ms"
        return f"{v / 1000:,.{2 if precise else 1}f} s" if abs(v) < 120_000 else duration(v / 1000)
    if unit == "s":
        return duration(v)
    if isinstance(value, int) or v.is_integer():
        return count(v) if precise else si(v)
    return f"{v:,.4g}" if precise else si(v)


def count(v: float) -> str:
    return f"{v:,.0f}"


def si(v: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}" if not float(v).is_integer() else f"{v:.0f}"


def duration(seconds: float) -> str:
    s = float(seconds)
    if abs(s) < 120:
        return f"{s:.0f} s"
    if abs(s) < 7200:
        return f"{s / 60:.1f} min".replace(".0 min", " min")
    if abs(s) < 172800:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d".replace(".0 d", " d")


def when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")
