"""The faust app and its join agent.

Sends and receipts are read by one agent over both topics (co-partitioned by the message key).
A record carries a batch of events of one partition (see sources/producer.py), and the agent
takes records in batches (`take_events`), so faust's per-record cost is paid once per batch of
events. Per batch and partition the agent writes one changelog record (the changed states, see
streams/state.py) and one record of deliveries (the final state of each message it touched) to
sms.deliveries.v1. A message that is joined and decided is forgotten by the stream (the warehouse
keeps the merged row). A batch's events are acknowledged only once the broker has every record
the batch produced, and a batch that fails ends the process without acknowledging it
(`stop_unacknowledged`), so a crash replays records whose effects were not stored; the join and
the warehouse ignore repeats.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

import faust
import msgspec
from faust.transport.drivers import aiokafka as aiokafka_driver
import structlog

from sms_analytics.broker.admin import MAX_BATCH_BYTES
from sms_analytics.model import topics
from sms_analytics.model.events import (
    CompensationRequest, Delivery, delivery_headers, encode, encode_deliveries, ReceiptEvent, SendEvent, decode_message_events,
)
from sms_analytics.model.times import now_ms
from sms_analytics.streams.alerts import Alert, Detector, Rules, Tally, webhook_body
from sms_analytics.streams.join import apply, is_final
from sms_analytics.streams.state import (
    TABLE, MessageStateStore, MessageStateTable, changelog_retention, encode_changes, encode_state,
)

log = structlog.get_logger(__name__)


@dataclass
class JoinStats:
    events: int = 0
    undecodable: int = 0
    emitted: int = 0
    compensation_requests: int = 0
    forgotten: int = 0
    alerts: int = 0
    detector: Any = None
    busy_seconds: float = 0.0  # time spent processing batches (not waiting for input)
    first_event_ms: int = 0
    last_event_ms: int = 0
    partitions: list[int] = field(default_factory=list)  # source partitions this worker owns
    # Per (topic, partition): the last source offset whose effects the broker has acknowledged, and
    # the last offset this worker produced (deliveries, changelog). The embedded mode's broker
    # rotation waits on them (runtime.py): a drained worker has reached what was forwarded to it.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    produced: dict[tuple[str, int], int] = field(default_factory=dict)

    def carry(self, previous: "JoinStats") -> None:
        """Continue the counts of the worker this one replaces (the embedded broker's rotation);
        offsets and partitions belong to the old broker and are not carried."""
        for name in ("events", "undecodable", "emitted", "compensation_requests", "forgotten", "alerts",
                     "busy_seconds", "first_event_ms", "last_event_ms"):
            setattr(self, name, getattr(previous, name))

    @property
    def capacity(self) -> float:
        """Events per second of processing time: what the join sustains when never idle."""
        return self.events / self.busy_seconds if self.busy_seconds else 0.0


@dataclass(frozen=True)
class Compensation:
    """Which pending messages to ask the provider about, and how often."""

    after_ms: int = 600_000  # SMS_COMPENSATE_AFTER
    interval_ms: int = 1_800_000  # never ask about one message twice within this
    scan_seconds: float = 30.0
    max_age_ms: int = 30 * 86_400_000  # QuerySendDetails looks back 30 days
    providers: tuple[str, ...] = ("aliyun", "tencent")  # KX has no per-message query
    forget_after_ms: int = 72 * 3_600_000  # SMS_EXPIRE_AFTER: the stream drops states older than this


def due_for_compensation(d: Delivery, now: int, policy: Compensation) -> bool:
    if d.status != "pending" or not d.has_send or d.sent_at_ms is None or d.provider not in policy.providers:
        return False
    age = now - d.sent_at_ms
    if age < policy.after_ms or age > policy.max_age_ms:
        return False
    return d.compensation_asked_ms is None or now - d.compensation_asked_ms >= policy.interval_ms


def should_forget(d: Delivery, now: int, policy: Compensation) -> bool:
    """A state still waiting after SMS_EXPIRE_AFTER (a send without a final receipt: expired in the
    warehouse; a receipt whose send never came) leaves the stream's table. A receipt arriving later
    still lands in the warehouse, which merges it with what it has."""
    since = d.sent_at_ms if d.sent_at_ms is not None else d.updated_at_ms
    return now - since > policy.forget_after_ms


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 1500  # faust's fixed value; set per app by build_app

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust passes fetch_max_wait_ms=1500 with no setting to change it; aiokafka reads this
        # attribute when the consumer starts (it hands it to its fetcher then).
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def _transport(app: faust.App, fetch_max_wait_ms: int) -> Any:
    """faust's aiokafka transport, with consumers whose fetches wait at most fetch_max_wait_ms."""
    thread = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms})

    class Consumer(aiokafka_driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread(self, loop=self.loop, beacon=self.beacon)

    class Transport(aiokafka_driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)


class TableManager(faust.tables.TableManager):
    """faust's table manager without its one-second sleep at start (a grace period for tables
    declared after the app starts): this app adds its only table in build_app, before the start,
    and every worker start (and so every failover) is one second shorter."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def tune_gc() -> None:
    """For a worker process, after its start: the join allocates short-lived containers by the
    million (records, lists, dicts per batch) while its long-lived state is bytes the collector
    never visits. With Python's default thresholds (700, 10, 10) collections ran every few hundred
    events and re-scanned the older generations (7% of the worker's samples in a join run);
    objects alive after the start are frozen out of collection, and the youngest generation is
    collected every 50,000 allocations. Called again after a new worker replaced an old one (the
    embedded broker's rotation), it first unfreezes: the old worker's objects, frozen by the last
    call, would otherwise never be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def build_app(*, app_id: str, bootstrap: str, partitions: int, replication: int, data_dir: str,
              batch: int, within: float, compensation: Compensation | None = None,
              rules: Rules | None = None, raw_phone: bool = False,
              fetch_max_wait_ms: int = 50, session_timeout: float = 6.0) -> tuple[faust.App, JoinStats]:
    """The join app. Deliveries carry the raw number only with raw_phone (SMS_STORE_RAW_PHONE): the
    sink needs it only then; the state (and the compensation requests) keep it for the pollers."""
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=partitions,
        topic_replication_factor=replication,
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(1.0, session_timeout / 4),
        # Records of hundreds of events: a producer batch must hold several of them, or aiokafka
        # sends one record per partition per round trip (it keeps one batch per partition).
        producer_linger=0.005,
        producer_max_batch_size=MAX_BATCH_BYTES,  # Apache Kafka refuses a larger batch (broker/admin.py)
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=4 * 1024 * 1024,  # per partition: several large records per fetch
        table_standby_replicas=0,
        web_enabled=False,
        topic_disable_leader=True,
        TableManager=TableManager,
        # The broker validates each batch's CRC when it is produced, and TCP guards the fetch;
        # checking it again in the consumer's thread cost ~5% of the worker's CPU (software CRC32C).
        broker_check_crcs=False,
    )
    app.transport = _transport(app, fetch_max_wait_ms)
    stats = JoinStats()
    source = app.topic(topics.SENDS, topics.RECEIPTS, key_type=bytes, value_type=bytes, partitions=partitions)
    deliveries = app.topic(topics.DELIVERIES, key_type=bytes, value_type=bytes, partitions=partitions)
    dead = app.topic(topics.DEADLETTER, key_type=bytes, value_type=bytes, partitions=partitions)
    policy = compensation or Compensation()
    state = app.tables.add(MessageStateTable(
        app, name=TABLE, default=None, beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
        partitions=partitions, retention=changelog_retention(timedelta(milliseconds=policy.forget_after_ms))))
    store: MessageStateStore = state.store
    requests = app.topic(topics.COMPENSATION, key_type=bytes, value_type=bytes, partitions=partitions)
    alerts_topic = app.topic(topics.ALERTS, key_type=bytes, value_type=bytes, partitions=partitions)
    detector = Detector(rules) if rules is not None else None
    stats.detector = detector

    if detector is not None:
        @app.timer(interval=detector.rules.evaluate_every_seconds, name="sms_alerts")
        async def evaluate_alerts() -> None:
            for alert in detector.evaluate(now_ms()):
                stats.alerts += 1
                await alerts_topic.send(key=f"{alert.rule}|{alert.key}".encode(), value=msgspec.json.encode(alert))
                log.warning("alert", rule=alert.rule, key=alert.key, state=alert.state, summary=alert.summary)
                for hook in detector.rules.webhooks:
                    asyncio.create_task(_post_webhook(hook, alert))

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        stats.partitions = sorted({tp.partition for tp in assigned if tp.topic in (topics.SENDS, topics.RECEIPTS)})
        log.info("worker.partitions_assigned", partitions=stats.partitions)

    @app.timer(interval=policy.scan_seconds, name="sms_compensation_scan")
    async def compensate() -> None:
        """Pending messages past SMS_COMPENSATE_AFTER become requests to the pollers, at most once
        per interval per message (the asked time is kept in the message's state)."""
        now = now_ms()
        changes: dict[int, dict[str, Delivery | None]] = {}
        for i, (key, partition, d, raw) in enumerate(store.states()):
            if i % 5000 == 4999:
                await asyncio.sleep(0)  # a large table must not stall the join
            if not store.unchanged(key, raw):
                continue  # changed by the join meanwhile
            if should_forget(d, now, policy):
                store.forget(key)
                changes.setdefault(partition, {})[key] = None
                stats.forgotten += 1
                continue
            if not due_for_compensation(d, now, policy):
                continue
            d.compensation_asked_ms = now
            changes.setdefault(partition, {})[key] = d
            assert d.sent_at_ms is not None
            await requests.send(key=key.encode(), value=encode(CompensationRequest(
                provider=d.provider, message_id=d.message_id, phone=d.phone, sent_at_ms=d.sent_at_ms,
                asked_at_ms=now)))
            stats.compensation_requests += 1
        for partition, changed in changes.items():
            await asyncio.gather(*await _write_changes(state, store, partition, changed, b"scan"))

    @app.agent(source, name="sms_join")
    async def join(stream: Any) -> None:
        async for records in stream.take_events(batch, within=within):
            try:
                await join_batch(records)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the batch must not be acknowledged
                stop_unacknowledged(exc)

    async def join_batch(records: list[Any]) -> None:
        started = time.perf_counter()
        now = now_ms()
        stats.first_event_ms = stats.first_event_ms or now
        by_partition: dict[int, list[bytes]] = {}
        sent: list[Any] = []  # the records this batch writes
        tally = detector.tally() if detector is not None else None  # the batch's observations
        for record in records:
            by_partition.setdefault(record.message.partition, []).append(record.value)
        for partition, values in by_partition.items():
            changes: dict[str, Delivery | None] = {}
            out: dict[str, Delivery] = {}
            for raw in values:
                try:
                    events = decode_message_events(raw)
                except Exception as exc:  # a record no receiver would write: keep it, don't crash
                    stats.undecodable += 1
                    await dead.send(value=raw, headers={"reason": f"undecodable event: {exc}"[:500].encode(),
                                                        "endpoint": b"streams.join"})
                    continue
                for event in events:
                    joined = _join_one(store, changes, out, event, now)
                    if tally is not None:
                        _observe(tally, event, joined)
                stats.events += len(events)
            sent += await _write_changes(state, store, partition, changes, f"batch|{partition}".encode())
            for chunk in _chunks(list(out.values()) if raw_phone else [_without_phone(d) for d in out.values()]):
                sent.append(await deliveries.send(value=encode_deliveries(chunk), partition=partition,
                                                  headers=delivery_headers(chunk)))
            stats.emitted += len(out)
        # The batch's events are acknowledged (and so their offsets committable) when this loop
        # asks for the next batch: wait until the broker has every delivery and state change
        # they produced, so a crash can never leave an event committed without its effects.
        if tally is not None:
            detector.add(tally, now)
        _note_offsets(stats.produced, await asyncio.gather(*sent))
        _note_offsets(stats.positions, [r.message for r in records])
        stats.last_event_ms = now_ms()
        stats.busy_seconds += time.perf_counter() - started

    return app, stats


EXIT_UNACKNOWLEDGED = 75  # EX_TEMPFAIL: a batch failed; the next worker replays it


def stop_unacknowledged(exc: BaseException) -> NoReturn:
    """End the worker process at once, acknowledging nothing: a batch failed after it changed the
    state (a delivery or changelog record the broker refused, e.g. Apache Kafka's
    MessageSizeTooLargeError, or a bug). faust's `take_events` acknowledges a batch's events when
    the agent's loop ends, whatever ended it, and would then commit past them: the batch's effects
    would be lost for good. Ending here, the source offsets stay where they were, and the worker
    that starts next (docker-compose `restart: unless-stopped`, or any supervisor) replays the
    batch from the broker and the state from the changelog."""
    log.critical("join.batch_failed", error=f"{type(exc).__name__}: {exc}"[:500], exit_code=EXIT_UNACKNOWLEDGED)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_UNACKNOWLEDGED)


def _note_offsets(seen: dict[tuple[str, int], int], records: list[Any]) -> None:
    """Keep the highest offset per (topic, partition) of records or their acknowledgements."""
    for r in records:
        key = (r.topic, r.partition)
        if r.offset > seen.get(key, -1):
            seen[key] = r.offset


def _observe(tally: Tally, event: SendEvent | ReceiptEvent, joined: Delivery | None) -> None:
    """Feed the alert windows: sends, and each outcome the first time the stream sees it."""
    if isinstance(event, SendEvent):
        tally.send(event.provider)
        if not event.submit_ok and joined is not None:
            tally.outcome(event.provider, event.carrier, False, None)
    elif joined is not None:  # a new receipt (a duplicate changes nothing and joins nothing)
        tally.receipt(event.provider)
        tally.outcome(event.provider, event.carrier, event.delivered, joined.latency_ms)


async def _post_webhook(hook: dict[str, str], alert: Alert) -> None:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await session.post(hook["url"], json=webhook_body(alert, hook.get("format", "generic")))
    except Exception as exc:  # a webhook down must not stop the stream
        log.warning("alert.webhook_failed", format=hook.get("format", "generic"), error=type(exc).__name__)


RECORD_ITEMS = 500  # states or deliveries per record: a record stays far below a broker's 1 MiB limit


def _chunks(items: list[Any], size: int = RECORD_ITEMS) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def _write_changes(table: Any, store: MessageStateStore, partition: int,
                         changes: dict[str, Delivery | None], key: bytes) -> list[Any]:
    """Apply a batch's changes to the store and write them as changelog records; returns the
    records' futures (acknowledged by the broker when they resolve)."""
    futures: list[Any] = []
    keys: list[str] = []
    states: list[bytes | None] = []
    for k, d in changes.items():
        if d is None:
            store.forget(k)
            states.append(None)
        else:
            encoded = encode_state(d)
            store.put_encoded(k, encoded, partition)
            states.append(encoded)
        keys.append(k)
    for i in range(0, len(keys), RECORD_ITEMS):
        futures.append(await table.changelog_topic.send(
            key=key, value=encode_changes(keys[i:i + RECORD_ITEMS], states[i:i + RECORD_ITEMS]), partition=partition))
    return futures


def _without_phone(d: Delivery) -> Delivery:
    return msgspec.structs.replace(d, phone="")


def _key(event: SendEvent | ReceiptEvent) -> str:
    return f"{event.provider}|{event.message_id}|{event.phone}"


def _join_one(store: MessageStateStore, changes: dict[str, Delivery | None], out: dict[str, Delivery],
              event: SendEvent | ReceiptEvent, now: int) -> Delivery | None:
    """Merge one event into its message's state; the state if it changed, else None. The batch's
    output holds the newest state of every message it touched (a decided message too, so a repeat
    later in the same batch is still recognized as one); `changes` what the store must keep
    (None: forget), applied when the batch ends.

    The message's state is emitted even when the event changed nothing: after a crash, a replayed
    event may find its change in the changelog while the delivery that carried it never reached
    the broker (the two are separate records), and only re-emitting makes that delivery whole.
    A repeat costs one more row, which the warehouse merges away."""
    key = _key(event)
    current = out.get(key)
    if current is None:
        current = store.get_state(key)
    merged, changed = apply(current, event, now)
    out[key] = merged
    if not changed:
        return None
    if is_final(merged):
        if current is not None or key in changes:
            changes[key] = None
    else:
        changes[key] = merged
    return merged
