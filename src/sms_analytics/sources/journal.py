"""The embedded mode's durable acceptance: a SQLite journal (WAL) of every record the receivers and
pull feeds accept, written before they answer, and forwarded from there to the broker.

The embedded broker keeps its topics in memory only, so with it a 200 is a promise only once the
record is on local disk. `JournaledPublisher` has the same contract as `Publisher` (publish,
dead_letter, ready) but answers once the journal has committed the push; `Forwarder` sends the
journal's rows to the broker in order and keeps a cursor of what the broker acknowledged.

The journal also holds the join's snapshot: the pending states of the stream at a point P of the
journal (every row up to P joined and written to the warehouse). Starting from the snapshot and
replaying the rows after P rebuilds exactly the stream's state, on any new broker: after a crash
of the process, after the broker died, and when the runtime rotates the broker to bound its
memory (runtime.py). Rows up to P are pruned then (dead letters are kept for the retention).

Where this module's job ends: it knows nothing of the join or the warehouse; the runtime decides
when a snapshot is consistent. With an external broker (KAFKA_BOOTSTRAP_SERVERS) none of this
runs: the broker is the durable log and the receivers publish to it directly (producer.py).

The file holds raw phone numbers (sends and receipts carry them; so does the snapshot): it is
created 0600 in SMS_DATA_DIR.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaProducer

from sms_analytics.model import topics
from sms_analytics.model.events import ReplyEvent, encode
from sms_analytics.model.times import now_ms
from sms_analytics.observability.deadletters import DeadLetters
from sms_analytics.retrying import Backoff, retry_unless_stopped
from sms_analytics.sources.base.fields import Event, Rejected
from sms_analytics.sources.producer import (
    BATCHED,
    MAX_BATCH_EVENTS,
    BrokerUnavailable,
    partition_of,
    route,
)

log = structlog.get_logger(__name__)

ANY_PARTITION = -1  # a record the producer places by its key (non-batched topics)
READ_ROWS = 5_000  # rows the forwarder reads per round
MAX_AHEAD_EVENTS = 200_000  # events forwarded and not yet joined, at most (a few seconds of the join)
FORWARD_BACKOFF = Backoff(first=0.2, cap=5.0)  # after a failed round (broker down): 0.2 s doubling to 5 s

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers BLOB,
    events INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot (key TEXT PRIMARY KEY, partition INTEGER NOT NULL, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    """One journal row: a Kafka record to be (re)sent, as the publisher would have sent it."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    events: int = 1
    seq: int = 0


_headers_encoder = msgspec.msgpack.Encoder()
_headers_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


class Journal:
    """The SQLite file. Every call runs on one thread of its own (the connection's), so async
    callers never block the event loop and writes never interleave. Commits of concurrent pushes
    are grouped: a push waits for one commit that carries every push queued meanwhile."""

    def __init__(self, path: Path, *, partitions: int, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.partitions = partitions
        self._synchronous = synchronous
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.last_seq = 0  # the newest row written
        self.snapshot_seq = 0  # rows up to this one are in the snapshot (and pruned)
        self.rows = 0  # rows in the journal

    # --- lifecycle ----------------------------------------------------------------------------------
    async def open(self) -> Journal:
        await self._call(self._open)
        return self

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # raw numbers inside: owner only
        os.close(fd)
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is in the WAL file before the call returns, so a killed process loses
        # nothing; only a power loss can lose the last commits (SMS_JOURNAL_SYNC=FULL for that).
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.executescript(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            extra = Path(f"{self.path}{suffix}")
            if extra.exists():
                os.chmod(extra, 0o600)
        self._db = db
        stored = self._meta("partitions")
        if stored is None:
            self._set_meta("partitions", self.partitions)
        elif stored != self.partitions:
            raise RuntimeError(
                f"the journal {self.path} was written with {stored} partitions and KAFKA_PARTITIONS is now "
                f"{self.partitions}: its rows and snapshot are placed by partition, so start with "
                f"KAFKA_PARTITIONS={stored} (or move the journal away to start empty)")
        self.snapshot_seq = self._meta("snapshot_seq") or 0
        self.last_seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])
        self.last_seq = max(self.last_seq, self.snapshot_seq)
        self.rows = int(db.execute("SELECT count(*) FROM entries").fetchone()[0])

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def _meta(self, name: str) -> int | None:
        found = self._conn().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if found is None else int(found[0])

    def _set_meta(self, name: str, value: int) -> None:
        self._conn().execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    # --- appending ----------------------------------------------------------------------------------
    async def append(self, rows: list[Row]) -> None:
        """Returns once the rows are committed (grouped with the other pushes waiting)."""
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="journal-commit")
        await done

    async def _commit_queued(self) -> None:
        while self._queue:
            queued, self._queue = self._queue, []
            try:
                await self._call(self._insert, [row for rows, _ in queued for row in rows])
            except Exception as exc:  # noqa: BLE001 - handed on to every waiter of the batch
                for _, done in queued:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in queued:
                if not done.done():
                    done.set_result(None)

    def _insert(self, rows: list[Row]) -> None:
        db = self._conn()
        at = now_ms()
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO entries (topic, partition, key, value, headers, events, at_ms) VALUES (?,?,?,?,?,?,?)",
                [(r.topic, r.partition, r.key, r.value, _headers_encoder.encode(list(r.headers)) if r.headers else None,
                  r.events, at) for r in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.last_seq = int(db.execute("SELECT max(seq) FROM entries").fetchone()[0])
        self.rows += len(rows)

    # --- reading ------------------------------------------------------------------------------------
    async def read_after(self, seq: int, limit: int = READ_ROWS) -> list[Row]:
        return list(await self._call(self._read_after, seq, limit))

    def _read_after(self, seq: int, limit: int) -> list[Row]:
        found = self._conn().execute(
            "SELECT seq, topic, partition, key, value, headers, events FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)).fetchall()
        return [Row(topic, partition, key, value, tuple(_headers_decoder.decode(h)) if h else (), events, s)
                for s, topic, partition, key, value, h, events in found]

    # --- snapshot -----------------------------------------------------------------------------------
    async def load_snapshot(self) -> dict[int, list[tuple[str, bytes]]]:
        """The states of the last snapshot, by partition."""
        return dict(await self._call(self._load_snapshot))

    def _load_snapshot(self) -> dict[int, list[tuple[str, bytes]]]:
        out: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        for key, partition, state in self._conn().execute("SELECT key, partition, state FROM snapshot"):
            out[int(partition)].append((key, bytes(state)))
        return out

    async def save_snapshot(self, seq: int, states: Iterable[tuple[str, int, bytes]],
                            *, keep_dead_letters_ms: int) -> int:
        """Replace the snapshot by `states` (key, partition, state) taken at journal row `seq`, and
        prune the rows it covers, in one transaction: a crash leaves the old snapshot and its rows.
        Dead letters stay until keep_dead_letters_ms old (they have no other durable home).
        Returns the rows pruned."""
        return int(await self._call(self._save_snapshot, seq, list(states), keep_dead_letters_ms))

    def _save_snapshot(self, seq: int, states: list[tuple[str, int, bytes]], keep_ms: int) -> int:
        db = self._conn()
        db.execute("BEGIN")
        try:
            db.execute("DELETE FROM snapshot")
            db.executemany("INSERT INTO snapshot (key, partition, state) VALUES (?, ?, ?)", states)
            self._set_meta("snapshot_seq", seq)
            pruned = db.execute("DELETE FROM entries WHERE seq <= ? AND (topic != ? OR at_ms < ?)",
                                (seq, topics.DEADLETTER, now_ms() - keep_ms)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.snapshot_seq = seq
        self.rows = int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
        if pruned > 100_000:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # give the pages back to the file
        return int(pruned)

    @property
    def unforwarded(self) -> int:
        """Rows written and not yet acknowledged by the current broker (the forwarder moves
        `forwarded_seq`)."""
        return max(0, self.last_seq - self.forwarded_seq)

    forwarded_seq = 0


# --- what a push becomes ----------------------------------------------------------------------------
def rows_of(events: Sequence[Event], rejected: Sequence[Rejected], endpoint: str, partitions: int) -> list[Row]:
    """The journal rows of one push: the records publisher.Publisher would send (sends and receipts
    grouped by partition, one row per group), then its dead letters."""
    out: list[Row] = []
    grouped: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for event in events:
        topic, key = route(event)
        if topic in BATCHED:
            grouped[(topic, partition_of(key, partitions))].append(event)
            continue
        if isinstance(event, ReplyEvent):  # as Publisher: a reply travels by its hash only
            event = msgspec.structs.replace(event, phone="")
        out.append(Row(topic, ANY_PARTITION, key, encode(event)))
    for (topic, partition), group in grouped.items():
        for i in range(0, len(group), MAX_BATCH_EVENTS):
            chunk = group[i:i + MAX_BATCH_EVENTS]
            out.append(Row(topic, partition, None, b"[" + b",".join(encode(e) for e in chunk) + b"]",
                           events=len(chunk)))
    out += [dead_letter_row(r.raw, r.reason, endpoint, r.index) for r in rejected]
    return out


def dead_letter_row(raw: bytes, reason: str, endpoint: str, index: int) -> Row:
    headers = (("reason", reason.encode()[:2000]), ("endpoint", endpoint.encode()),
               ("index", str(index).encode()), ("received_at_ms", str(now_ms()).encode()))
    return Row(topics.DEADLETTER, ANY_PARTITION, None, raw, headers)


class JournaledPublisher:
    """The receivers' and feeds' publisher in embedded mode: `publish` returns once the push is in
    the journal (a crash after that loses nothing: the next start forwards it), then wakes the
    forwarder. The same contract as publisher.Publisher: BrokerUnavailable (answered 503) when the
    journal cannot take it."""

    def __init__(self, journal: Journal, forwarder: Forwarder) -> None:
        self.journal = journal
        self.forwarder = forwarder
        self.ready = False
        self.dead_letters = DeadLetters()  # journaled dead letters per endpoint and reason class

    async def start(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    async def publish(self, events: Sequence[Event], rejected: Sequence[Rejected], endpoint: str) -> None:
        await self._append(rows_of(events, rejected, endpoint, self.journal.partitions), endpoint)
        for r in rejected:
            self.dead_letters.count(endpoint, r.reason)

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None:
        await self._append([dead_letter_row(raw, reason, endpoint, index)], endpoint)
        self.dead_letters.count(endpoint, reason)

    async def publish_record(self, topic: str, key: bytes | None, value: bytes, endpoint: str) -> None:
        """One record as it is (an alert the Grafana relay publishes), journaled like a push."""
        await self._append([Row(topic, ANY_PARTITION, key, value)], endpoint)

    async def _append(self, rows: list[Row], endpoint: str) -> None:
        if not self.ready:
            raise BrokerUnavailable("stopping")
        try:
            await self.journal.append(rows)
        except Exception as exc:
            log.error("journal.append_failed", endpoint=endpoint, error=f"{type(exc).__name__}: {exc}"[:300])
            raise BrokerUnavailable(f"journal: {type(exc).__name__}") from exc
        self.forwarder.wake()


# --- forwarding -------------------------------------------------------------------------------------
@dataclass
class Produced:
    """The highest offset the forwarder produced per (topic, partition) on the current broker."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def note(self, topic: str, partition: int, offset: int) -> None:
        if offset > self.offsets.get((topic, partition), -1):
            self.offsets[(topic, partition)] = offset


def coalesce(rows: list[Row]) -> list[Row]:
    """Consecutive rows of one batched topic and partition become one record (up to
    MAX_BATCH_EVENTS events): pushes that arrived together travel together, as Publisher's linger
    does. Order within a partition is kept; the last row's seq stands for the record."""
    out: list[Row] = []
    open_: dict[tuple[str, int], int] = {}  # (topic, partition) -> index in out of its open record
    for row in rows:
        if row.topic not in BATCHED:
            out.append(row)
            continue
        at = open_.get((row.topic, row.partition))
        if at is not None and out[at].events + row.events <= MAX_BATCH_EVENTS:
            merged = out[at]
            out[at] = Row(row.topic, row.partition, None, merged.value[:-1] + b"," + _array_body(row.value),
                          events=merged.events + row.events, seq=row.seq)
            continue
        open_[(row.topic, row.partition)] = len(out)
        out.append(Row(row.topic, row.partition, None, _as_array(row.value), events=row.events, seq=row.seq))
    return out


def _as_array(value: bytes) -> bytes:
    return value if value[:1] == b"[" else b"[" + value + b"]"


def _array_body(value: bytes) -> bytes:
    return _as_array(value)[1:]


class Forwarder:
    """Sends the journal's rows after `cursor` to the broker, in order, and moves the cursor when
    the broker acknowledged them. A failed send is retried (the rows stay in the journal); a
    repeat is harmless downstream (the join and the warehouse merge repeats)."""

    def __init__(self, journal: Journal, *, linger_ms: float = 2.0,
                 consumed: Callable[[], int] | None = None, max_ahead: int = MAX_AHEAD_EVENTS) -> None:
        """`consumed`: how many forwarded send and receipt events the stream has taken (the
        forwarder waits while it is more than `max_ahead` behind, so a backlog in the journal
        reaches the memory-only broker no faster than the join takes it)."""
        self.journal = journal
        self._consumed = consumed
        self._max_ahead = max_ahead
        self.forwarded_events = 0  # send and receipt events forwarded
        self.cursor = journal.snapshot_seq
        self.produced = Produced()
        self.forwarded_rows = 0
        self._linger = linger_ms / 1000
        self._wake = asyncio.Event()
        self._paused = asyncio.Event()  # set: no new round starts
        self._idle = asyncio.Event()  # set: no round in progress
        self._idle.set()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def unforwarded(self) -> int:
        return max(0, self.journal.last_seq - self.cursor)

    async def start(self, bootstrap: str, *, from_seq: int | None = None) -> None:
        """Forward to `bootstrap` from `from_seq` (default: the snapshot's point)."""
        self.cursor = self.journal.forwarded_seq = self.journal.snapshot_seq if from_seq is None else from_seq
        self.produced = Produced()
        if self._consumed is not None:  # a new broker: nothing on it is waiting for the join
            self.forwarded_events = self._consumed()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                    max_request_size=8 * 1024 * 1024, max_batch_size=2 * 1024 * 1024)
        await producer.start()
        self._producer = producer
        self._paused.clear()
        self._task = asyncio.create_task(self._run(), name="journal-forwarder")
        self._wake.set()

    async def pause(self) -> int:
        """Stop forwarding after the round in progress; returns the cursor (every row up to it is
        acknowledged by the broker, none after it was sent)."""
        self._paused.set()
        self._wake.set()
        await self._idle.wait()
        return self.cursor

    def resume(self) -> None:
        """Forward again after `pause`, to the same broker."""
        if self._producer is None or (self._task is not None and not self._task.done()):
            return
        self._paused.clear()
        self._task = asyncio.create_task(self._run(), name="journal-forwarder")
        self._wake.set()

    async def stop(self) -> None:
        self._paused.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._idle.set()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except Exception as exc:  # noqa: BLE001 - a dead broker: nothing to flush that the journal lacks
                log.warning("forwarder.stop_failed", error=type(exc).__name__)

    async def _run(self) -> None:
        while not self._paused.is_set():
            if self._consumed is not None and self.forwarded_events - self._consumed() > self._max_ahead:
                await asyncio.sleep(0.05)  # the join is behind: let it catch up first
                continue
            sent = await retry_unless_stopped(self._try_round, FORWARD_BACKOFF, self._paused, on_failure=_send_failed)
            if sent is None:  # paused while backing off
                return
            if sent == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except TimeoutError:
                    continue
                if self._linger:
                    await asyncio.sleep(self._linger)  # let concurrent pushes land in one round

    async def _try_round(self) -> int:
        self._wake.clear()  # a push after this line wakes the wait in `_run`
        self._idle.clear()
        try:
            return await self._round()
        finally:
            self._idle.set()

    async def _round(self) -> int:
        rows = await self.journal.read_after(self.cursor)
        if not rows:
            return 0
        assert self._producer is not None
        producer = self._producer
        pending: list[tuple[Row, asyncio.Future[Any]]] = []
        for record in coalesce(rows):
            headers = list(record.headers)
            if record.topic in BATCHED:
                headers = [("events", str(record.events).encode())]
            partition = None if record.partition == ANY_PARTITION else record.partition
            pending.append((record, await producer.send(record.topic, key=record.key, value=record.value,
                                                        partition=partition, headers=headers or None)))
        for _, ack in pending:
            meta = await ack
            self.produced.note(meta.topic, meta.partition, meta.offset)
        self.cursor = self.journal.forwarded_seq = rows[-1].seq
        self.forwarded_rows += len(rows)
        self.forwarded_events += sum(r.events for r in rows if r.topic in BATCHED)
        return len(rows)


def _send_failed(exc: BaseException, retry_in: float, attempt: int) -> None:
    log.warning("forwarder.send_failed", error=f"{type(exc).__name__}: {exc}"[:200], retry_in=retry_in)
