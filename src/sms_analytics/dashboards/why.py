"""`sms-analytics why`: the slices that explain a provider's (or provider × carrier's) failures in a
window against a baseline, read from the warehouse and explained by model/rootcause.py.

Counts come from sms.messages: the messages *sent* in the window whose outcome is decided (delivered
or failed; pending and expired ones say nothing about a drop yet), per carrier, province, template,
sign and error code, in one query per window. The baseline is either

- `previous`: the window of the same length just before, or
- `week`: the same window on each of the last 7 days, summed and divided by 7.

The query takes a Query (sql -> (columns, rows)): the warehouse's `read` or a running process's
read-only endpoint (dashboards/report.py:http_query), like `sms-analytics report`. The values it
inlines are checked (a known provider and carrier) or integers (epoch ms), so no text of the user
reaches the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sms_analytics.model.knowledge import KnowledgeBase
from sms_analytics.model.providers import CARRIER_NAMES, PROVIDERS
from sms_analytics.model.region import PROVINCES
from sms_analytics.model.rootcause import DIMENSIONS, UNKNOWN_LABEL, Cause, SliceCounts, WindowCounts, explain

Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
Baseline = Literal["previous", "week"]
BASELINES: tuple[Baseline, ...] = ("previous", "week")
DAY_MS = 86_400_000
WEEK_DAYS = 7

# One row per (dimension, value) and one for the whole window (dimension ''): failures, decided messages.
# A dimension the scope fixes (carrier, province) is no slice: it holds the whole window.
_COUNTS_SQL = """
SELECT tupleElement(slice, 1) AS dimension, tupleElement(slice, 2) AS value,
       countIf(status = 'failed') AS failures, count() AS total
FROM sms.messages
ARRAY JOIN [('', ''), {slices}] AS slice
WHERE provider = '{provider}' {scope_filter}
  AND sent_at >= fromUnixTimestamp64Milli(toInt64({start_ms}), 'UTC')
  AND sent_at < fromUnixTimestamp64Milli(toInt64({end_ms}), 'UTC')
  AND status IN ('delivered', 'failed')
GROUP BY dimension, value
"""


def counts_sql(provider: str, carrier: str | None, start_ms: int, end_ms: int, province: str | None = None) -> str:
    """The counting query of one window; `provider`, `carrier` and `province` must be known names."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    if carrier is not None and carrier not in CARRIER_NAMES:
        raise ValueError(f"unknown carrier {carrier!r} (one of {', '.join(CARRIER_NAMES)})")
    if province is not None and province not in PROVINCES:
        raise ValueError(f"unknown province {province!r} (a short name: {', '.join(PROVINCES[:3])}, ...)")
    fixed = {"carrier": carrier, "province": province}
    slices = ", ".join(f"('{d}', {d})" for d in DIMENSIONS if not fixed.get(d))
    scope_filter = " ".join(f"AND {d} = '{v}'" for d, v in fixed.items() if v)
    return _COUNTS_SQL.format(provider=provider, slices=slices, scope_filter=scope_filter, start_ms=int(start_ms),
                              end_ms=int(end_ms))


def window_counts(rows: list[tuple[Any, ...]], divide: float = 1.0) -> WindowCounts:
    """WindowCounts from the counting query's rows (dimension, value, failures, total), each count
    divided by `divide` (7 for a week's average)."""
    failures = total = 0.0
    slices = []
    for dimension, value, fails, messages in rows:
        if dimension == "":
            failures, total = float(fails) / divide, float(messages) / divide
        elif dimension in DIMENSIONS and not (dimension == "error_code" and not int(fails)):
            slices.append(SliceCounts(dimension=dimension, value=str(value), failures=float(fails) / divide,
                                      total=float(messages) / divide))
    return WindowCounts(failures=failures, total=total, slices=tuple(slices))


def _read(query: Query, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in query(sql)[1]]


def baseline_windows(start_ms: int, end_ms: int, baseline: Baseline) -> list[tuple[int, int]]:
    """The windows whose counts, summed and divided by their number, are the baseline."""
    if baseline == "previous":
        return [(2 * start_ms - end_ms, start_ms)]
    if baseline == "week":
        return [(start_ms - d * DAY_MS, end_ms - d * DAY_MS) for d in range(1, WEEK_DAYS + 1)]
    raise ValueError(f"unknown baseline {baseline!r} (one of {', '.join(BASELINES)})")


def why(query: Query, provider: str, carrier: str | None, start_ms: int, end_ms: int, *,
        baseline: Baseline = "previous", top: int = 3, kb: KnowledgeBase | None = None,
        province: str | None = None) -> list[Cause]:
    """The top slices explaining the window's failures (rootcause.explain), error codes with their
    meaning from the knowledge base. `province` narrows the scope (a carrier × province alert)."""
    return why_against(query, provider, carrier, (start_ms, end_ms), baseline_windows(start_ms, end_ms, baseline),
                       top=top, kb=kb, province=province)


def why_against(query: Query, provider: str, carrier: str | None, window: tuple[int, int],
                windows: list[tuple[int, int]], *, top: int = 3, kb: KnowledgeBase | None = None,
                province: str | None = None) -> list[Cause]:
    """`why` against explicit baseline windows (epoch ms, [start, end)), averaged."""
    current = window_counts(_read(query, counts_sql(provider, carrier, *window, province=province)))
    rows = [row for s, e in windows for row in _read(query, counts_sql(provider, carrier, s, e, province=province))]
    before = window_counts(_summed(rows), divide=float(len(windows)))
    knowledge = kb or KnowledgeBase.load()

    def meaning(code: str) -> str:
        return knowledge.meaning(provider, code, carrier or "")

    return explain(current, before, top=top, meaning=meaning)


def _summed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of several windows, one per (dimension, value), their counts added."""
    sums: dict[tuple[str, str], tuple[int, int]] = {}
    for dimension, value, failures, total in rows:
        f, t = sums.get((dimension, value), (0, 0))
        sums[(dimension, value)] = (f + int(failures), t + int(total))
    return [(d, v, f, t) for (d, v), (f, t) in sums.items()]


def render(causes: list[Cause], provider: str, carrier: str | None, start: datetime, end: datetime,
           baseline: Baseline) -> str:
    """The causes as text, one per line: dimension, value, share, rates, the error code's meaning."""
    scope = f"{provider}{' × ' + carrier if carrier else ''}"
    head = f"{scope}, {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC, baseline {baseline}:"
    if not causes:
        return f"{head} nothing explains a drop (no excess failures beyond noise)\n"
    lines = [head]
    for i, c in enumerate(causes, 1):
        line = (f"{i}. {c.dimension}={c.value or UNKNOWN_LABEL}  share {c.share:.0%} of the excess "
                f"({c.excess:.0f} failures)  failure rate {c.rate:.1%} (baseline {c.baseline_rate:.1%}, "
                f"{c.failures:.0f} of {c.volume:.0f})")
        lines.append(line + (f"  meaning: {c.meaning}" if c.meaning else ""))
    return "\n".join(lines) + "\n"
