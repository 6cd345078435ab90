"""Minute rollups of send cohorts, kept exact under late receipts.

A cohort minute is the minute a message was sent (`sms.messages.sent_at`). Whenever the sink writes
a state of a message, the minutes that message belongs (or belonged) to are marked dirty; every
few seconds the dirty minutes are recomputed from `sms.messages` and written with a new
generation. Minutes whose pending messages just crossed SMS_EXPIRE_AFTER are recomputed too, and
at start the minutes touched since the last recompute are recovered from the parts table.

Metric definitions (the same everywhere; README "Metrics"):
- delivery rate = delivered / (delivered + failed + expired), over messages sent in the window;
- latency percentiles over delivered messages (quantilesDD, 0.5% relative accuracy);
- receipt completeness after N minutes = messages with a final receipt (delivered or failed by a
  receipt) whose receipt came within N minutes of the send / messages sent;
- maturation: delivered_within[i] = messages delivered within MATURATION_SECONDS[i] of the send.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import structlog

from sms_analytics.model.events import Delivery
from sms_analytics.sinks.warehouse import Warehouse

log = structlog.get_logger(__name__)

MATURATION_SECONDS = (10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400, 259200)
_MINUTE_MS = 60_000

RECOMPUTE = """
INSERT INTO sms.rollup_minute_raw
SELECT
    toStartOfMinute(sent_at) AS minute, provider, carrier, template, sign, country_code, failure_category,
    count() AS sent,
    countIf(status = 'delivered') AS delivered,
    countIf(status = 'failed') AS failed,
    countIf(status = 'expired') AS expired,
    countIf(status = 'pending') AS pending,
    sum(segments) AS segments,
    countIf(outcome_stage = 'receipt' AND latency_ms <= 60000) AS final_within_1m,
    countIf(outcome_stage = 'receipt' AND latency_ms <= 300000) AS final_within_5m,
    countIf(outcome_stage = 'receipt' AND latency_ms <= 1800000) AS final_within_30m,
    [{maturation}] AS delivered_within,
    quantilesDDStateIf(0.005, 0.5, 0.9, 0.95, 0.99)(assumeNotNull(latency_ms), status = 'delivered' AND latency_ms IS NOT NULL),
    sumIf(assumeNotNull(latency_ms), status = 'delivered') AS latency_sum_ms,
    {generation} AS generation
FROM sms.messages
WHERE sent_at IS NOT NULL AND toStartOfMinute(sent_at) IN ({minutes})
GROUP BY minute, provider, carrier, template, sign, country_code, failure_category
UNION ALL
SELECT toDateTime(m, 'UTC'), '', '', '', '', '', '', 0, 0, 0, 0, 0, 0, 0, 0, 0, [],
       quantilesDDStateIf(0.005, 0.5, 0.9, 0.95, 0.99)(toUInt32(0), 0), 0, {generation}
FROM (SELECT arrayJoin([{minutes}]) AS m)
GROUP BY m
"""


def _minute_of(ms: int) -> int:
    return ms // _MINUTE_MS * 60


def minutes_of(deliveries: Iterable[Delivery]) -> set[int]:
    """The minutes (epoch seconds) whose rollups these deliveries change."""
    return {ms // _MINUTE_MS * 60 for d in deliveries for ms in (d.sent_at_ms, d.receipt_sent_at_ms) if ms is not None}


class Rollups:
    def __init__(self, warehouse: Warehouse, expire_after_seconds: int) -> None:
        self.warehouse = warehouse
        self.expire_after = expire_after_seconds
        self.dirty: set[int] = set()  # epoch seconds of minute starts
        self._expiry_checked_to: int | None = None
        self.recomputed_minutes = 0

    def mark(self, deliveries: Iterable[Delivery]) -> None:
        self.dirty |= minutes_of(deliveries)

    def mark_expiring(self, now_s: int) -> None:
        """Minutes whose pending messages crossed SMS_EXPIRE_AFTER since the last check."""
        boundary = _minute_of((now_s - self.expire_after) * 1000)
        start = self._expiry_checked_to if self._expiry_checked_to is not None else boundary - 60
        self.dirty.update(range(start, boundary + 60, 60))
        self._expiry_checked_to = boundary

    def recover(self) -> None:
        """At start: minutes of parts written after the newest recompute (a crash in between)."""
        _, rows = self.warehouse.query(
            "SELECT DISTINCT toUnixTimestamp(toStartOfMinute(coalesce(sent_at, receipt_sent_at))) FROM sms.message_parts "
            "WHERE updated_at >= (SELECT max(generation) FROM sms.rollup_minute_raw) - INTERVAL 1 MINUTE "
            "AND coalesce(sent_at, receipt_sent_at) IS NOT NULL")
        self.dirty.update(int(r[0]) for r in rows)

    def recompute(self, chunk: int = 500) -> int:
        minutes = sorted(self.dirty)
        self.dirty.clear()
        for i in range(0, len(minutes), chunk):
            part = minutes[i:i + chunk]
            sql = RECOMPUTE.format(
                minutes=", ".join(f"toDateTime({m}, 'UTC')" for m in part),
                maturation=", ".join(f"countIf(status = 'delivered' AND latency_ms <= {s * 1000})" for s in MATURATION_SECONDS),
                generation=f"toDateTime64('{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')}', 6, 'UTC')",
            )
            try:
                self.warehouse.command(sql)
            except Exception:
                self.dirty.update(part)  # retried on the next round
                raise
        self.recomputed_minutes += len(minutes)
        return len(minutes)
