"""The batched, idempotent sink: Kafka topics -> ClickHouse tables.

A plain aiokafka consumer group. Rows are buffered per table and flushed when a batch is full or
the flush interval passed; offsets are committed only after the rows up to them are written, so a
crash replays (never loses) rows, and the insert deduplication token plus the merge semantics of
the tables make a replay harmless. A failed insert is retried with backoff (`sms_analytics.retrying`)
and the same token, and consumption pauses meanwhile (backpressure).

One batch is written (in a thread) while the next is read and decoded; at most one batch is in
flight, so memory stays bounded by two batches. The rollups of a batch's minutes are marked dirty
only once its rows are written, and recomputed by rounds that run beside the writes (see
`_roll_up_loop`).

On a cluster (SMS_CLICKHOUSE_CLUSTER, sinks/cluster.py) the same tables are Distributed tables sharded
by each table's key (deliveries by the message key), written synchronously
(distributed_foreground_insert): an insert returns once each shard's rows are in its replicated local
table, where the token deduplicates a retried batch shard by shard (each retry splits the same rows
the same way), through the ingest materialized views too. Offsets are committed after that, as here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from sms_analytics.model import topics
from sms_analytics.model.events import (
    ProviderBalance,
    ProviderMetric,
    ProviderStats,
    TemplateInfo,
    decode_conversion,
    decode_deliveries,
    decode_provider_metric,
    decode_reply,
    read_delivery_headers,
)
from sms_analytics.model.times import now_ms
from sms_analytics.observability.timings import Timings
from sms_analytics.retrying import Backoff, retry
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.rows import (
    ALERT_COLUMNS,
    BALANCE_COLUMNS,
    CONVERSION_COLUMNS,
    REPLY_COLUMNS,
    SIGN_COLUMNS,
    STATS_COLUMNS,
    TEMPLATE_COLUMNS,
    alert_row,
    balance_row,
    conversion_row,
    reply_row,
    sign_row,
    stats_row,
    template_row,
)
from sms_analytics.sinks.warehouse import Warehouse

log = structlog.get_logger(__name__)


@dataclass
class Table:
    """A warehouse table's buffer: rows, or (json=True) records' JSON arrays passed on as they are."""

    name: str
    columns: tuple[str, ...] = ()
    rows: list[Any] = field(default_factory=list)
    json: bool = False
    count: int = 0  # rows buffered
    reloads: tuple[str, ...] = ()  # dictionaries that read this table, reloaded once its rows are written


_ROW_KEY = b'"phone_hash":'  # once per delivery object (inside a string it would read \")
_MINUTE_FIELDS = re.compile(rb'"(?:sent_at_ms|receipt_sent_at_ms)":(\d+)')


# A backlog (this many records or more on the broker, not yet read; at a steady rate the sink reads
# all there is) postpones rollup rounds, at most ROLLUP_MAX_DEFER_SECONDS.
BACKLOG_RECORDS = 50
ROLLUP_MAX_DEFER_SECONDS = 60.0
INSERT_BACKOFF = Backoff(first=0.2, cap=10.0)  # between failed inserts of a batch: 0.2 s doubling to 10 s
METADATA_DICTIONARIES = ("sms.template_info_dict", "sms.template_name_dict")  # over sms.templates


def json_array(raw: bytes) -> bytes:
    """A deliveries record as a JSON array (a single-delivery record is an object)."""
    return raw if raw[:1] == b"[" else b"[" + raw + b"]"


def joined_arrays(arrays: list[bytes]) -> bytes:
    """One JSON array of the elements of several (non-empty) JSON arrays."""
    return b"[" + b",".join(a[1:-1] for a in arrays) + b"]"


@dataclass
class Batch:
    """Rows taken from the buffers, the offsets they cover and the rollup minutes they change."""

    rows: list[tuple[Table, list[Any], int]]  # table, its rows (or JSON arrays), how many rows
    pending: dict[TopicPartition, tuple[int, int]]
    minutes: set[int]
    oldest_ms: int | None = None  # when its oldest row was produced (or read), epoch ms


@dataclass
class SinkStats:
    rows_written: int = 0
    batches: int = 0
    undecodable: int = 0
    retries: int = 0
    last_flush_ms: float = 0.0
    batch_seconds: Timings = field(default_factory=Timings)  # each batch: its inserts and the commit
    rollup_seconds: Timings = field(default_factory=Timings)  # each rollup round
    rollup_failures: int = 0


class ClickHouseSink:
    def __init__(self, warehouse: Warehouse, bootstrap: str, *, group: str, batch_rows: int,
                 flush_seconds: float, store_raw_phone: bool, rollups: Rollups | None = None,
                 rollup_seconds: float = 5.0, fetch_max_wait_ms: int = 50, session_timeout: float = 6.0) -> None:
        self.warehouse = warehouse
        self.rollups = rollups
        self.rollup_seconds = rollup_seconds
        self.store_raw_phone = store_raw_phone
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.stats = SinkStats()
        messages = Table("sms.delivery_ingest_raw" if store_raw_phone else "sms.delivery_ingest", json=True)
        replies = Table("sms.replies", REPLY_COLUMNS)
        balances = Table("sms.provider_balance", BALANCE_COLUMNS)
        stats = Table("sms.provider_stats", STATS_COLUMNS)
        alerts = Table("sms.alerts", ALERT_COLUMNS)
        # The metadata's dictionaries (sinks/dictionaries.sql) are reloaded as soon as a pull is written:
        # chDB does not reload dictionaries by their LIFETIME.
        templates = Table("sms.templates", TEMPLATE_COLUMNS, reloads=METADATA_DICTIONARIES)
        signs = Table("sms.signs", SIGN_COLUMNS)
        # Conversions: their table's materialized view folds the fully named ones into sms.message_parts;
        # the rollup round resolves the others and marks the minutes they change (migrations/0013).
        conversions = Table("sms.conversions", CONVERSION_COLUMNS)
        self.tables = [messages, replies, balances, stats, alerts, templates, signs, conversions]
        metrics = ProviderTables(balances, stats, templates, signs)
        # Each topic's record becomes rows of one table (a deliveries record carries a batch, kept
        # as its JSON: ClickHouse parses it, see migrations/0008_delivery_ingest.sql).
        self.routes: dict[str, Callable[[Any], tuple[Table, list[Any], int]]] = {
            topics.DELIVERIES: lambda record: (messages, *self._deliveries(record)),
            topics.REPLIES: lambda record: (replies, [reply_row(decode_reply(record.value))], 1),
            topics.PROVIDER_STATS: lambda record: (*metrics.row(decode_provider_metric(record.value)), 1),
            topics.ALERTS: lambda record: (alerts, [alert_row(record.value)], 1),
            topics.CONVERSIONS: lambda record: (conversions, [conversion_row(decode_conversion(record.value))], 1),
        }
        self.consumer = AIOKafkaConsumer(
            *self.routes, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=int(session_timeout * 1000),
            heartbeat_interval_ms=int(min(1.0, session_timeout / 4) * 1000),
            max_poll_records=max(10, batch_rows // 20),  # a deliveries record holds up to hundreds of rows
            max_partition_fetch_bytes=16 * 1024 * 1024,
            check_crcs=False,  # as the worker (streams/app.py): the broker checked them on produce
            fetch_max_wait_ms=fetch_max_wait_ms,  # KAFKA_FETCH_MAX_WAIT_MS (settings.py)
        )
        self._pending: dict[TopicPartition, tuple[int, int]] = {}  # first, last offset not yet written
        self._minutes: set[int] = set()  # rollup minutes of the buffered rows
        self._inflight: asyncio.Task[None] | None = None
        # Retries of a batch reuse its token (ClickHouse drops a repeat of a write that did land);
        # a new sink process uses new tokens. After a crash inside an insert, the deduplication log
        # may hold a token whose part was never committed, and replaying under that token would be
        # dropped as a repeat: a fresh token writes the replay again and the table's merge folds
        # any duplicate.
        self._incarnation = uuid.uuid4().hex
        self._stopping = asyncio.Event()
        self._final_round = True
        self.closing: asyncio.Task[None] | None = None  # the consumer's stop, when left to finish later
        self._written_minutes: set[int] = set()  # rollup minutes of written rows, for the next round
        self._rollup_round_seconds = 0.0  # how long the last round took
        self._lag: dict[TopicPartition, int] = {}  # records on the broker not yet read, per partition
        self.written: dict[TopicPartition, int] = {}  # next offset per partition: every row before it is written
        # The oldest unwritten row: when the first record buffered since the last write was produced
        # (its Kafka timestamp; the time it was read if that is missing or ahead of this clock), and
        # that of the batch in flight; None when there is none.
        self._oldest_ms: int | None = None
        self._inflight_oldest_ms: int | None = None
        self._inflight_rows = 0
        self.ready = False

    def _deliveries(self, record: Any) -> tuple[list[bytes], int]:
        """The record's JSON array and its number of deliveries. The stream's headers give the count
        and the rollup minutes (marked dirty once these rows are written); a record without them
        is scanned for both."""
        raw: bytes = record.value
        if raw[:1] not in (b"[", b"{"):
            raise ValueError("not a JSON array or object of deliveries")
        described = read_delivery_headers(record.headers)
        if described is None:
            count, minutes = raw.count(_ROW_KEY), [int(ms) // 60_000 for ms in _MINUTE_FIELDS.findall(raw)]
        else:
            count, minutes = described
        if self.rollups is not None:
            self._minutes.update(m * 60 for m in minutes)
        return [json_array(raw)], count

    async def _roll_up(self) -> None:
        """One rollup round over the minutes of the rows written so far. The minutes are handed
        over here, on the event loop, so the recompute's thread is the only one to touch the
        rollups' dirty set while it runs."""
        assert self.rollups is not None
        self.rollups.dirty |= self._written_minutes
        self._written_minutes = set()
        self.rollups.mark_expiring(int(time.time()))
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.rollups.round)
        except Exception as exc:  # noqa: BLE001  (the minutes stay dirty and are retried next round)
            self.stats.rollup_failures += 1
            log.warning("rollups.recompute_failed", error=str(exc)[:300])
        self._rollup_round_seconds = time.monotonic() - started
        self.stats.rollup_seconds.observe(self._rollup_round_seconds)

    async def _roll_up_loop(self) -> None:
        """Rollup rounds beside the writes, every SMS_ROLLUP_SECONDS, or three times the last
        round's length when that is longer: rounds take at most a quarter of the warehouse's time.
        A round's statements and the inserts share the warehouse one statement at a time, so an
        insert waits for one statement, never a whole round (receipts stay fresh in sms.messages),
        and under a backlog the rollups fall behind instead of the rows: while BACKLOG_RECORDS or
        more records wait on the broker, a round waits, up to ROLLUP_MAX_DEFER_SECONDS."""
        while True:
            last = time.monotonic()
            pause = max(self.rollup_seconds, 3 * self._rollup_round_seconds)
            while True:
                try:
                    await asyncio.wait_for(self._stopping.wait(), pause)
                    return
                except TimeoutError:
                    pass
                if sum(self._lag.values()) < BACKLOG_RECORDS or time.monotonic() - last >= ROLLUP_MAX_DEFER_SECONDS:
                    break
                pause = 1.0
            await self._roll_up()

    async def run(self) -> None:
        await self.consumer.start()
        if self.rollups is not None:
            await asyncio.to_thread(self.rollups.recover)
        self.ready = True
        last_flush = time.monotonic()
        rounds = asyncio.create_task(self._roll_up_loop(), name="sink-rollups") if self.rollups else None
        try:
            while not self._stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=100)
                for tp, records in batches.items():
                    self._buffer(tp, records)
                due = time.monotonic() - last_flush >= self.flush_seconds
                if self._buffered() >= self.batch_rows or (due and self._pending):
                    await self._start_write()  # waits for the batch in flight first (backpressure)
                    last_flush = time.monotonic()
                elif due:
                    last_flush = time.monotonic()
            await self.flush()
            if rounds is not None:
                await rounds  # ends after its current round (stopping is set)
                if self._final_round:
                    await self._roll_up()
                elif self.rollups is not None:  # always (rounds run only with rollups); handed over: the
                    # next sink on the same Rollups recomputes them
                    self.rollups.dirty |= self._written_minutes
        finally:
            self.ready = False
            if rounds is not None and not rounds.done():  # an error above: don't leave the round behind
                self._stopping.set()
                await asyncio.gather(rounds, return_exceptions=True)
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()  # stopped abruptly: its offsets are not committed, a replay rewrites it
                await asyncio.gather(self._inflight, return_exceptions=True)
            if self._final_round:
                await self.consumer.stop()
            else:  # a broker rotation follows: leaving the group there only waits on a broker about to go
                self.closing = asyncio.create_task(self.consumer.stop(), name="sink-consumer-stop")

    def stop(self, *, final_round: bool = True) -> None:
        """Stop after writing everything read; final_round=False (a broker rotation follows) leaves the
        last rollup minutes dirty in the Rollups object for the next sink, and the consumer's stop
        running in `closing`."""
        self._final_round = final_round
        self._stopping.set()

    def _buffer(self, tp: TopicPartition, records: list[Any]) -> None:
        route = self.routes[tp.topic]
        for record in records:
            try:
                table, rows, count = route(record)
                table.rows.extend(rows)
                table.count += count
            except Exception as exc:  # noqa: BLE001  (only our own stream writes these topics: count and skip)
                self.stats.undecodable += 1
                log.warning("sink.undecodable", topic=tp.topic, offset=record.offset, error=str(exc)[:200])
        if records:
            self._note_oldest(records[0])
            first = self._pending.get(tp, (records[0].offset, 0))[0]
            self._pending[tp] = (first, records[-1].offset)
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self._lag[tp] = highwater - records[-1].offset - 1

    def _note_oldest(self, record: Any) -> None:
        now = now_ms()
        produced = record.timestamp if isinstance(record.timestamp, int) and 0 < record.timestamp <= now else now
        if self._oldest_ms is None or produced < self._oldest_ms:
            self._oldest_ms = produced

    def _buffered(self) -> int:
        return sum(t.count for t in self.tables)

    def oldest_unwritten_ms(self) -> int | None:
        """When the oldest row read but not yet written (buffered or in flight) was produced, epoch ms."""
        times = [self._oldest_ms]
        if self._inflight is not None and not self._inflight.done():
            times.append(self._inflight_oldest_ms)
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def unwritten_rows(self) -> int:
        """Rows read and not yet written: buffered, and in the batch in flight."""
        inflight = self._inflight_rows if self._inflight is not None and not self._inflight.done() else 0
        return self._buffered() + inflight

    def positions(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """(highwater, position) of every assigned partition: the broker's next offset and ours."""
        out: dict[TopicPartition, tuple[int | None, int | None]] = {}
        try:
            assignment = self.consumer._subscription.subscription.assignment  # aiokafka's state, read-only
            for tp in self.consumer.assignment():
                state = assignment.state_value(tp)
                out[tp] = (state.highwater, state.position if state.has_valid_position else None)
        except Exception:  # noqa: BLE001 - not started, or rebalancing: nothing assigned to report
            return {}
        return out

    async def flush(self) -> None:
        """Write everything buffered and wait until it and the batch in flight are written."""
        await self._start_write()
        await self._wait_inflight()

    async def _wait_inflight(self) -> None:
        if self._inflight is not None:
            task, self._inflight = self._inflight, None
            await task

    async def _start_write(self) -> None:
        await self._wait_inflight()
        if not self._pending:
            return
        batch = Batch(rows=[(t, t.rows, t.count) for t in self.tables if t.rows], pending=dict(self._pending),
                      minutes=self._minutes, oldest_ms=self._oldest_ms)
        self._inflight_oldest_ms, self._inflight_rows = batch.oldest_ms, sum(count for _, _, count in batch.rows)
        self._oldest_ms = None
        for table in self.tables:
            table.rows, table.count = [], 0
        self._pending.clear()
        self._minutes = set()
        self._inflight = asyncio.create_task(self._write(batch), name="sink-write")

    async def _write(self, batch: Batch) -> None:
        started = time.monotonic()
        token_base = ",".join(f"{tp.topic}:{tp.partition}:{a}-{b}" for tp, (a, b) in sorted(batch.pending.items()))
        for table, rows, count in batch.rows:
            token = hashlib.sha1(f"{self._incarnation}|{table.name}|{token_base}".encode()).hexdigest()
            await self._insert_with_retry(table, rows, count, token)
        for tp, (_, last) in batch.pending.items():
            self.written[tp] = max(self.written.get(tp, 0), last + 1)
        for table in {table.name: table for table, _, _ in batch.rows if table.reloads}.values():
            await self._reload(table)
        try:
            await self.consumer.commit({tp: last + 1 for tp, (_, last) in batch.pending.items()})
        except CommitFailedError as exc:  # rebalanced meanwhile: the rows are written, a replay is harmless
            log.warning("sink.commit_failed", error=str(exc)[:200])
        self.stats.batches += 1
        self.stats.last_flush_ms = (time.monotonic() - started) * 1000
        self.stats.batch_seconds.observe(time.monotonic() - started)
        if self.rollups is not None:
            self._written_minutes |= batch.minutes

    async def _reload(self, table: Table) -> None:
        """Reload the dictionaries over a table just written; a failure is logged, not retried (the
        next write reloads again, and a ClickHouse server also reloads them by their LIFETIME)."""
        for dictionary in table.reloads:
            try:
                await asyncio.to_thread(self.warehouse.reload_dictionary, dictionary, table.name)
            except Exception as exc:  # noqa: BLE001  (the rows are written; the names follow at the next reload)
                log.warning("sink.reload_failed", dictionary=dictionary, error=str(exc)[:200])

    async def _insert_with_retry(self, table: Table, rows: list[Any], count: int, token: str) -> None:
        """Insert until it succeeds (INSERT_BACKOFF between failures, the same token each time). A
        deliveries batch that fails once is first checked record by record: a record ClickHouse
        cannot parse must not block the rest."""
        if table.json:
            try:
                await self._insert_counted(table, rows, count, token)
                return
            except Exception as exc:  # noqa: BLE001 - any failure: check the records, then retry
                self._insert_failed(table, rows, exc, 0.0)
            rows = self._parseable(rows)
            if not rows:
                return
            count = sum(raw.count(_ROW_KEY) for raw in rows)
        await retry(lambda: self._insert_counted(table, rows, count, token), INSERT_BACKOFF,
                    on_failure=lambda exc, retry_in, _: self._insert_failed(table, rows, exc, retry_in))

    async def _insert_counted(self, table: Table, rows: list[Any], count: int, token: str) -> None:
        await asyncio.to_thread(self._insert, table, rows, token)
        self.stats.rows_written += count

    def _insert_failed(self, table: Table, rows: list[Any], exc: BaseException, retry_in: float) -> None:
        self.stats.retries += 1
        log.warning("sink.insert_failed", table=table.name, records=len(rows), error=str(exc)[:300], retry_in=retry_in)

    def _insert(self, table: Table, rows: list[Any], token: str) -> None:
        if table.json:
            self.warehouse.insert_json(table.name, joined_arrays(rows), token)
        else:
            self.warehouse.insert(table.name, rows, table.columns, token)

    def _parseable(self, arrays: list[bytes]) -> list[bytes]:
        """The records that decode as deliveries; the others are counted and logged, then skipped
        (only our own stream writes the topic, so they are not expected)."""
        kept = []
        for raw in arrays:
            try:
                decode_deliveries(raw)
                kept.append(raw)
            except Exception as exc:  # noqa: BLE001  (counted and skipped, as the other undecodable records)
                self.stats.undecodable += 1
                log.error("sink.undecodable_deliveries", bytes=len(raw), error=str(exc)[:200])
        return kept


@dataclass
class ProviderTables:
    """The tables of sms.provider_stats.v1's records: balances, hourly statistics, templates, signs."""

    balances: Table
    stats: Table
    templates: Table
    signs: Table

    def row(self, metric: ProviderMetric) -> tuple[Table, list[Any]]:
        if isinstance(metric, ProviderBalance):
            return self.balances, [balance_row(metric)]
        if isinstance(metric, ProviderStats):
            return self.stats, [stats_row(metric)]
        if isinstance(metric, TemplateInfo):
            return self.templates, [template_row(metric)]
        return self.signs, [sign_row(metric)]
