"""Minute rollups of send cohorts, kept exact under late receipts.

A cohort minute is the minute a message was sent (`sms.messages.sent_at`). Whenever the sink writes
a state of a message, the minutes that message belongs (or belonged) to are marked dirty; every
few seconds the dirty minutes are recomputed from `sms.messages` and written with a new
generation. Minutes whose pending messages just crossed SMS_EXPIRE_AFTER are recomputed too, and
at start the minutes touched since the last recompute are recovered from the parts table.

With a retention (SMS_RETENTION_DAYS), a minute is never recomputed once its message parts may have
expired (sinks/retention.sql keeps a part at least the retention past its send minute): from an hour
before that, whatever marks it (a late or replayed part, its expiry, a backfill), it keeps the rollups
it has, which outlive its messages (SMS_ROLLUP_RETENTION_DAYS).

One recompute reads the merged messages of its minutes once (into a temporary table of the
session) and writes, all with one generation (migrations/0002 and 0009, views in views.sql):
- sms.rollup_minute_raw: counts, completeness, maturation and the latency sketch per minute and
  dimensions (provider, carrier, template, sign, country, province, failure category);
- sms.rollup_error_minute_raw: failed messages per minute, dimensions and error code (with the
  first and last time seen, for unmapped codes);
- sms.undelivered_messages_raw: the messages not delivered (failed, expired, pending) themselves;
- sms.rollup_level_raw: the same measures at coarser levels, rebuilt for every bucket that
  contains a recomputed minute, each level from the next finer one just written: grain 'full'
  (every dimension) per 10 minutes, hour, 6 hours and day; grains 'provider_carrier', 'carrier' and
  'provider_carrier_province' (the other dimensions summed, province '' in the first two) per minute,
  5 and 10 minutes, hour, 6 hours and day; grain 'all_provinces' (every dimension but the province)
  per minute, 10 minutes, hour, 6 hours and day.

On a cluster (SMS_CLICKHOUSE_CLUSTER; sinks/cluster.py): the same statements, unchanged. They read
the Distributed tables (sms.messages over sms.message_parts, the views over the rollup tables) and
insert into Distributed tables; the scratch table is a temporary table of the sink's own session on the
node it is connected to. Who recomputes: every sink, for the minutes of the rows it wrote itself (its
Kafka partitions), as on one server; two sinks may recompute one minute, each writing all of the
minute's rows under its own generation. Why it stays exact:
- FINAL is exact per shard: the parts of a message are on one shard (sharded by the message key), and
  every row and generation of a minute or bucket on one shard (sharded by the minute or bucket), so the
  views' newest-generation filters run on each shard against its own rows;
- the key filter of MATERIALIZE (an IN subquery over sms.message_parts) runs once over every shard
  and its result goes to each (distributed_product_mode = 'global', cluster.SESSION_SETTINGS);
- a recompute reads every write acknowledged before it: inserts are synchronous
  (distributed_foreground_insert: each shard's block is in its local table when the INSERT returns),
  and every session reads and writes the same replica of each shard (load_balancing = 'in_order',
  prefer_localhost_replica = 0); so each level is built from the finer one just written, and of two
  recomputes of one minute the later generation (the sinks' clocks, NTP-synchronised) has read
  everything the earlier one read, and the parts its own sink wrote before it;
- after a failover to another replica, a read may miss parts not yet replicated to it: the minute is
  recomputed again with its next change, and at the latest when its pending messages expire
  (SMS_EXPIRE_AFTER), which rebuilds it and every bucket containing it.

Metric definitions (the same everywhere; README "Metrics"):
- delivery rate = delivered / (delivered + failed + expired), over messages sent in the window;
- latency percentiles over delivered messages (quantilesDD, 0.5% relative accuracy);
- receipt completeness after N minutes = messages with a final receipt (delivered or failed by a
  receipt) whose receipt came within N minutes of the send / messages sent;
- maturation: delivered_within[i] = messages delivered within MATURATION_SECONDS[i] of the send.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog

from sms_analytics.model.events import Delivery
from sms_analytics.sinks.warehouse import MATURATION_SECONDS, Warehouse

log = structlog.get_logger(__name__)

_MINUTE_MS = 60_000
# sms.rollup_level_raw: per grain, the dimensions it keeps (the others are '') and its levels
# (seconds; each divides the next). The minute level of grain 'full' is sms.rollup_minute_raw.
GRAIN_FULL, GRAIN_PROVIDER_CARRIER, GRAIN_CARRIER = "full", "provider_carrier", "carrier"
GRAIN_PROVINCE = "provider_carrier_province"  # the province × carrier panels and alert (migrations/0015)
# Every dimension but the province (summed): the former full grain, for the panels over templates and signs
# while the region is All (the province makes the full grain's rows several times as many).
GRAIN_ALL_PROVINCES = "all_provinces"
DIMENSIONS = ("provider", "carrier", "template", "sign", "country_code", "province")
GRAINS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    GRAIN_FULL: (DIMENSIONS, (600, 3600, 21600, 86400)),
    GRAIN_PROVIDER_CARRIER: (("provider", "carrier"), (60, 300, 600, 3600, 21600, 86400)),
    GRAIN_CARRIER: (("carrier",), (60, 300, 600, 3600, 21600, 86400)),
    GRAIN_PROVINCE: (("provider", "carrier", "province"), (60, 300, 600, 3600, 21600, 86400)),
    GRAIN_ALL_PROVINCES: (DIMENSIONS[:-1], (60, 600, 3600, 21600, 86400)),
}
# The grain added last: a minute without its rows at level 60 was rolled up before it existed, and is
# recomputed at start (Rollups.recover; a migration that adds a dimension adds a grain or moves this).
NEWEST_GRAIN = GRAIN_ALL_PROVINCES
# A minute is not recomputed from this long before its parts' TTL: the server's clock may differ from ours.
RETENTION_MARGIN_SECONDS = 3600
BACKFILL_PER_ROUND = 1440  # minutes of existing data recomputed per round for tables added later

# The merged messages of the minutes being recomputed, read once. Fields only the list of undelivered
# messages needs are kept for those only. sms.messages merges sms.message_parts FINAL, and a filter on its
# merged sent_at (the parts' sent_at, else their receipt_sent_at) cannot run before that merge: alone, it
# merged every message of the table each round. So the merge is first restricted to the keys of the parts
# sent or receipted in these minutes, a superset (a merged sent_at is one part's value) that the outer filter
# makes exact; optimize_move_to_prewhere_if_final runs that key filter as PREWHERE, before the merge (with
# FINAL, ClickHouse moves only conditions over the sorting key there; tests/test_warehouse.py checks the plan).
# The filter names the view's columns as m.*: unqualified, WHERE would read this SELECT's aliases (the blanked
# message_id and phone_hash of delivered messages).
MATERIALIZE = """
CREATE TEMPORARY TABLE {scratch} ENGINE = Memory AS
SELECT
    toStartOfMinute(assumeNotNull(sent_at)) AS minute, provider, carrier, template, sign, country_code, province,
    failure_category, status, segments, outcome_stage, latency_ms, assumeNotNull(sent_at) AS sent_at,
    error_code, coalesce(reported_at, sent_at, first_seen_at) AS seen, conversion_ms, converted_at IS NOT NULL AS has_conversion,
    if(status != 'delivered', message_id, '') AS message_id,
    if(status != 'delivered', phone_hash, '') AS phone_hash,
    if(status != 'delivered', phone_masked, '') AS phone_masked,
    if(status != 'delivered', error_message, '') AS error_message
FROM sms.messages AS m
WHERE m.sent_at IS NOT NULL AND toStartOfMinute(m.sent_at) IN ({minutes})
  AND (m.provider, m.message_id, m.phone_hash) IN (
      SELECT provider, message_id, phone_hash FROM sms.message_parts
      WHERE toStartOfMinute(sent_at) IN ({minutes}) OR toStartOfMinute(receipt_sent_at) IN ({minutes}))
SETTINGS optimize_move_to_prewhere_if_final = 1
"""

# The measures of a group of messages (sms.rollup_minute_raw's columns after the dimensions).
MEASURES = """count() AS sent,
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
    countIf(has_conversion) AS converted,
    countIf(status = 'delivered' AND NOT has_conversion) AS delivered_unconverted,
    sumIf(assumeNotNull(conversion_ms), has_conversion) AS conversion_ms_sum""".format(
    maturation=", ".join(f"countIf(status = 'delivered' AND latency_ms <= {s * 1000})" for s in MATURATION_SECONDS))
# The same measures summed from rows that have them (a coarser level from a finer one).
SUMMED_MEASURES = """sum(sent), sum(delivered), sum(failed), sum(expired), sum(pending), sum(segments),
    sum(final_within_1m), sum(final_within_5m), sum(final_within_30m), sumForEach(delivered_within),
    quantilesDDMergeState(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state), sum(latency_sum_ms), sum(converted),
    sum(delivered_unconverted), sum(conversion_ms_sum)"""
# A sentinel row's measures (sent = 0: it only marks that its minute or bucket was recomputed).
EMPTY_MEASURES = "0, 0, 0, 0, 0, 0, 0, 0, 0, [], quantilesDDStateIf(0.005, 0.5, 0.9, 0.95, 0.99)(toUInt32(0), 0), 0, 0, 0, 0"
# sms.rollup_level_raw's rows also carry their sketch finalized (after the measures).
LEVEL_QUANTILES = {
    "messages": "quantilesDDIf(0.005, 0.5, 0.9, 0.95, 0.99)(assumeNotNull(latency_ms), status = 'delivered' AND latency_ms IS NOT NULL)",
    "rows": "quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state)",
}

RECOMPUTE = """
INSERT INTO sms.rollup_minute_raw
SELECT minute, provider, carrier, template, sign, country_code, province, failure_category, {measures}, {generation}
FROM {scratch}
GROUP BY minute, provider, carrier, template, sign, country_code, province, failure_category
UNION ALL
SELECT toDateTime(m, 'UTC'), '', '', '', '', '', '', '', {empty}, {generation}
FROM (SELECT arrayJoin([{minutes}]) AS m)
GROUP BY m
"""

RECOMPUTE_ERRORS = """
INSERT INTO sms.rollup_error_minute_raw
SELECT
    minute, provider, carrier, template, sign, country_code, province, failure_category, error_code, outcome_stage,
    count() AS messages, min(seen) AS first_seen, max(seen) AS last_seen, any(error_message) AS example_message,
    {generation} AS generation
FROM {scratch}
WHERE status = 'failed'
GROUP BY minute, provider, carrier, template, sign, country_code, province, failure_category, error_code, outcome_stage
UNION ALL
SELECT toDateTime(m, 'UTC'), '', '', '', '', '', '', '', '', '', 0, toDateTime64(0, 3, 'UTC'), toDateTime64(0, 3, 'UTC'), '',
       {generation}
FROM (SELECT arrayJoin([{minutes}]) AS m)
"""

RECOMPUTE_UNDELIVERED = """
INSERT INTO sms.undelivered_messages_raw
SELECT
    minute, provider, message_id, phone_hash, phone_masked, carrier, country_code, province, template, sign, sent_at,
    status, error_code, error_message, failure_category, outcome_stage, {generation} AS generation
FROM {scratch}
WHERE status != 'delivered'
UNION ALL
SELECT toDateTime(m, 'UTC'), '', '', '', '', '', '', '', '', '', toDateTime64(0, 3, 'UTC'), 'pending', '', '', '', '',
       {generation}
FROM (SELECT arrayJoin([{minutes}]) AS m)
"""

# Conversions (migrations/0013). A conversion naming provider + message_id + number is already a part of
# its message (the materialized view); one naming the number, template and sent window, or a message_id
# without a number, is resolved here, every round, for the conversions written within
# CONVERSION_HORIZON_SECONDS: its message is the latest send of that number and template in the window
# (by message_id: the message with that id, when it has a single number). The matches that change a
# message (no conversion yet, or a later one) go to a scratch table, are inserted as parts (min folds them:
# idempotent), and their minutes are recomputed. A conversion that comes before its send is matched in
# the round after the send is written, within the horizon.
CONVERSION_HORIZON_SECONDS = 3600
CONVERSION_MARGIN_SECONDS = 120  # the watermark of direct conversions reaches back this far (clocks, inserts)
RESOLVE = """
CREATE TEMPORARY TABLE {scratch} ENGINE = Memory AS
WITH c AS (
    SELECT conversion_id, provider, message_id, phone_hash, template, sent_from, sent_to, converted_at, received_at
    FROM sms.conversions FINAL
    WHERE written_at >= {since} AND (message_id = '' OR phone_hash = '')
)
SELECT provider, best.1 AS message_id, best.2 AS phone_hash, best.3 AS phone_masked, best.4 AS carrier,
       best.5 AS country_code, toStartOfMinute(best.6) AS minute, converted_at, received_at
FROM (
    SELECT c.conversion_id, any(c.provider) AS provider, any(c.message_id) AS by_id,
           argMax(tuple(m.message_id, m.phone_hash, m.phone_masked, m.carrier, m.country_code,
                        assumeNotNull(m.sent_at), m.converted_at), assumeNotNull(m.sent_at)) AS best,
           uniqExact(m.phone_hash) AS numbers, min(c.converted_at) AS converted_at, min(c.received_at) AS received_at
    FROM c INNER JOIN (
        SELECT provider, message_id, phone_hash, phone_masked, carrier, country_code, template, sent_at, converted_at
        FROM sms.messages AS mm
        WHERE mm.sent_at IS NOT NULL AND (mm.provider, mm.message_id, mm.phone_hash) IN (
            SELECT provider, message_id, phone_hash FROM sms.message_parts
            WHERE phone_hash IN (SELECT phone_hash FROM c WHERE message_id = '')
               OR message_id IN (SELECT message_id FROM c WHERE phone_hash = ''))
    ) AS m ON c.provider = m.provider
    WHERE (c.message_id = '' AND m.phone_hash = c.phone_hash AND m.template = c.template
           AND m.sent_at >= c.sent_from AND m.sent_at <= c.sent_to)
       OR (c.message_id != '' AND m.message_id = c.message_id)
    GROUP BY c.conversion_id
)
WHERE (by_id = '' OR numbers = 1) AND (best.7 IS NULL OR converted_at < best.7)
"""
RESOLVED_PARTS = """
INSERT INTO sms.message_parts (provider, message_id, phone_hash, phone_masked, carrier, country_code, converted_at,
                               first_seen_at, updated_at)
SELECT provider, message_id, phone_hash, phone_masked, carrier, country_code, converted_at, received_at, received_at
FROM {scratch}
"""
# The minutes of the messages that direct conversions written since the watermark belong to.
CONVERTED_MINUTES = """
SELECT DISTINCT toUnixTimestamp(toStartOfMinute(coalesce(sent_at, receipt_sent_at))) FROM sms.message_parts
WHERE (provider, message_id, phone_hash) IN (
    SELECT provider, message_id, phone_hash FROM sms.conversions
    WHERE written_at >= {since} AND message_id != '' AND phone_hash != '')
  AND coalesce(sent_at, receipt_sent_at) IS NOT NULL
"""


def _times(seconds: Iterable[int]) -> str:
    return ", ".join(f"toDateTime({s}, 'UTC')" for s in sorted(seconds))


def _dimensions(grain: str) -> tuple[str, str]:
    """The grain's dimension columns as selected (kept ones, '' for the others) and as grouped."""
    kept = GRAINS[grain][0]
    return ", ".join(d if d in kept else "''" for d in DIMENSIONS), ", ".join(kept)


def _generations(grain: str, level: int, buckets: str, generation: str) -> str:
    """One row per recomputed bucket: its newest generation (written after its rows), even when it is empty."""
    return f"SELECT '{grain}', {level}, arrayJoin([{buckets}]), {generation}"


def minute_levels_sql(scratch: str, minutes: list[int], generation: str) -> tuple[str, str]:
    """INSERTs of the minute rows (level 60) of the grains that have them, from the materialized messages,
    and of their generations."""
    selects, generations = [], []
    for grain, (_, levels) in GRAINS.items():
        if levels[0] != 60:
            continue
        select, group = _dimensions(grain)
        selects.append(f"SELECT '{grain}', 60, minute, {select}, {MEASURES}, {LEVEL_QUANTILES['messages']}, "
                       f"{generation} FROM {scratch} GROUP BY minute, {group}")
        generations.append(_generations(grain, 60, _times(minutes), generation))
    return ("INSERT INTO sms.rollup_level_raw\n" + "\nUNION ALL\n".join(selects),
            "INSERT INTO sms.rollup_level_generations\n" + "\nUNION ALL\n".join(generations))


def level_sql(level: int, minutes: Iterable[int], generation: str) -> tuple[str, str] | None:
    """INSERTs of every grain's rows of this level for the buckets containing these minutes, each summed
    from the grain's next finer level (grain 'full' at its first level: from sms.rollup_minute), and of
    their generations."""
    selects, generations = [], []
    buckets = sorted({m // level * level for m in minutes})
    for grain, (_, levels) in GRAINS.items():
        if level not in levels or level == 60:
            continue
        finer = levels.index(level) - 1
        if finer < 0:
            source, column, where = "sms.rollup_minute", "minute", "1"
        else:
            source, column, where = "sms.rollup_level", "bucket", f"grain = '{grain}' AND level = {levels[finer]}"
        bucket = f"toDateTime(intDiv(toUInt32({column}), {level}) * {level}, 'UTC')"
        select, group = _dimensions(grain)
        selects.append(
            f"SELECT '{grain}', {level}, {bucket} AS b, {select}, {SUMMED_MEASURES}, {LEVEL_QUANTILES['rows']}, "
            f"{generation} FROM {source} "
            f"WHERE {where} AND {column} >= toDateTime({buckets[0]}, 'UTC') "
            f"AND {column} < toDateTime({buckets[-1] + level}, 'UTC') AND {bucket} IN ({_times(buckets)}) "
            f"GROUP BY b, {group}")
        generations.append(_generations(grain, level, _times(buckets), generation))
    if not selects:
        return None
    return ("INSERT INTO sms.rollup_level_raw\n" + "\nUNION ALL\n".join(selects),
            "INSERT INTO sms.rollup_level_generations\n" + "\nUNION ALL\n".join(generations))


def _instant(epoch_s: float) -> str:
    return f"toDateTime64({epoch_s:.3f}, 3, 'UTC')"


def _minute_of(ms: int) -> int:
    return ms // _MINUTE_MS * 60


def minutes_of(deliveries: Iterable[Delivery]) -> set[int]:
    """The minutes (epoch seconds) whose rollups these deliveries change."""
    return {ms // _MINUTE_MS * 60 for d in deliveries for ms in (d.sent_at_ms, d.receipt_sent_at_ms) if ms is not None}


class Rollups:
    def __init__(self, warehouse: Warehouse, expire_after_seconds: int, retention_days: int | None = None) -> None:
        self.warehouse = warehouse
        self.expire_after = expire_after_seconds
        self.retention_seconds = retention_days * 86400 if retention_days else None
        self.dirty: set[int] = set()  # epoch seconds of minute starts
        self._backfill: set[int] = set()  # minutes of data older than the tables of migrations/0009
        self._expiry_checked_to: int | None = None
        self.recomputed_minutes = 0
        self._conversions_since: float | None = None  # epoch seconds: direct conversions written since are marked
        self.resolved_conversions = 0

    def mark(self, deliveries: Iterable[Delivery]) -> None:
        self.dirty |= minutes_of(deliveries)

    def mark_expiring(self, now_s: int) -> None:
        """Minutes whose pending messages crossed SMS_EXPIRE_AFTER since the last check."""
        boundary = _minute_of((now_s - self.expire_after) * 1000)
        start = self._expiry_checked_to if self._expiry_checked_to is not None else boundary - 60
        self.dirty.update(range(start, boundary + 60, 60))
        self._expiry_checked_to = boundary

    def conversions(self, now_s: float | None = None) -> None:
        """Resolve the conversions that do not name their message fully, and mark dirty the minutes of
        every message a conversion changed since the last round (a conversion after its minute was
        rolled up corrects it, as a late receipt does)."""
        now = time.time() if now_s is None else now_s
        horizon = now - CONVERSION_HORIZON_SECONDS
        since = max(horizon, (self._conversions_since or horizon) - CONVERSION_MARGIN_SECONDS)
        _, rows = self.warehouse.query(CONVERTED_MINUTES.format(since=_instant(since)))
        marked = {int(r[0]) for r in rows}
        scratch = f"conversion_scratch_{uuid.uuid4().hex}"
        self.warehouse.command(RESOLVE.format(scratch=scratch, since=_instant(horizon)))
        try:
            _, rows = self.warehouse.query(f"SELECT DISTINCT toUnixTimestamp(minute) FROM {scratch}", read_only=False)
            if rows:
                self.warehouse.command(RESOLVED_PARTS.format(scratch=scratch))
                _, count = self.warehouse.query(f"SELECT count() FROM {scratch}", read_only=False)
                self.resolved_conversions += int(count[0][0])
            marked.update(int(r[0]) for r in rows)
        finally:
            self.warehouse.command(f"DROP TEMPORARY TABLE IF EXISTS {scratch}")
        self.dirty |= marked
        self._conversions_since = now

    def recover(self) -> None:
        """At start: minutes of parts written after the newest recompute (a crash in between), and
        minutes rolled up before the newest grain existed (the panel rollups of migrations/0009, the
        province of 0015; recomputed a few at a time)."""
        _, rows = self.warehouse.query(
            "SELECT DISTINCT toUnixTimestamp(toStartOfMinute(coalesce(sent_at, receipt_sent_at))) FROM sms.message_parts "
            "WHERE updated_at >= (SELECT max(generation) FROM sms.rollup_minute_raw) - INTERVAL 1 MINUTE "
            "AND coalesce(sent_at, receipt_sent_at) IS NOT NULL")
        self.dirty.update(int(r[0]) for r in rows)
        _, rows = self.warehouse.query(
            "SELECT DISTINCT toUnixTimestamp(minute) FROM sms.rollup_minute_raw WHERE minute NOT IN "
            f"(SELECT bucket FROM sms.rollup_level_generations WHERE grain = '{NEWEST_GRAIN}' AND level = 60)")
        self._backfill.update(int(r[0]) for r in rows)
        if self._backfill:
            log.info("rollups.backfill", minutes=len(self._backfill))

    def horizon(self, now_s: float | None = None) -> int | None:
        """The oldest minute (epoch seconds) still recomputed: older ones' parts may have expired, and
        their rollups, recomputed from what is left, would lose them. None: no retention."""
        if self.retention_seconds is None:
            return None
        now = time.time() if now_s is None else now_s
        return int(now) - self.retention_seconds + RETENTION_MARGIN_SECONDS

    def round(self) -> int:
        """One round of the sink's rollup loop: the conversions' minutes, then the recompute."""
        self.conversions()
        return self.recompute()

    def recompute(self, chunk: int = 500) -> int:
        horizon = self.horizon()
        if horizon is not None:
            expired = {m for m in self.dirty | self._backfill if m < horizon}
            if expired:
                self.dirty -= expired
                self._backfill -= expired
                log.debug("rollups.past_retention", minutes=len(expired))
        backfill = sorted(self._backfill - self.dirty)[-BACKFILL_PER_ROUND:]  # newest first
        minutes = sorted(self.dirty | set(backfill))
        self.dirty.clear()
        self._backfill.difference_update(backfill)
        for i in range(0, len(minutes), chunk):
            part = minutes[i:i + chunk]
            try:
                self._recompute(part)
            except Exception:
                self.dirty.update(part)  # retried on the next round
                raise
        self.recomputed_minutes += len(minutes)
        return len(minutes)

    def _recompute(self, minutes: list[int]) -> None:
        generation = f"toDateTime64('{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}', 6, 'UTC')"
        scratch = f"rollup_scratch_{uuid.uuid4().hex}"
        fill = dict(scratch=scratch, minutes=_times(minutes), generation=generation, measures=MEASURES,
                    empty=EMPTY_MEASURES)
        self.warehouse.command(MATERIALIZE.format(**fill))
        try:
            self.warehouse.command(RECOMPUTE.format(**fill))
            self.warehouse.command(RECOMPUTE_ERRORS.format(**fill))
            self.warehouse.command(RECOMPUTE_UNDELIVERED.format(**fill))
            rows, generations = minute_levels_sql(scratch, minutes, generation)
            self.warehouse.command(rows)
            self.warehouse.command(generations)
        finally:
            self.warehouse.command(f"DROP TEMPORARY TABLE IF EXISTS {scratch}")
        for level in sorted({lv for _, levels in GRAINS.values() for lv in levels}):  # finer levels first
            sql = level_sql(level, minutes, generation)
            if sql:
                self.warehouse.command(sql[0])
                self.warehouse.command(sql[1])
