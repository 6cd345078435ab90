"""The worker's agents, as module-level functions of one app's parts (`Streams`; app.py binds
them): the join agent over sends and receipts, the alert timer, and the receiver of partition
assignments. Where this ends: records on the output topics and changes of the state table; what
a join does to one message is join.py's, what an alert is alerts.py's, compensation is
compensation.py's."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, NoReturn

import msgspec
import structlog

from sms_analytics.model import topics
from sms_analytics.model.events import (
    Delivery,
    ReceiptEvent,
    SendEvent,
    decode_conversion,
    decode_message_events,
    delivery_headers,
    encode_deliveries,
)
from sms_analytics.model.times import now_ms
from sms_analytics.settings import Webhook
from sms_analytics.streams.alerts import Alert, Detector, Tally, cause_lines, webhook_body
from sms_analytics.streams.context import JoinStats, Streams
from sms_analytics.streams.join import apply, is_final
from sms_analytics.streams.state import RECORD_ITEMS, MessageStateStore, write_changes

log = structlog.get_logger(__name__)
_WEBHOOK_POSTS: set[asyncio.Task[None]] = set()  # the posts in flight: the loop keeps only weak references


async def join(streams: Streams, stream: Any) -> None:
    """The join agent: batches of records (`take_events`), each record a batch of events of one
    partition. Per batch and partition one changelog record and one record of deliveries."""
    async for records in stream.take_events(streams.batch, within=streams.within):
        try:
            await _join_batch(streams, records)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the batch must not be acknowledged
            stop_unacknowledged(exc)


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


async def _join_batch(streams: Streams, records: list[Any]) -> None:
    stats = streams.stats
    started = time.perf_counter()
    now = now_ms()
    stats.first_event_ms = stats.first_event_ms or now
    by_partition: dict[int, list[bytes]] = {}
    sent: list[Any] = []  # the records this batch writes
    tally = streams.detector.tally() if streams.detector is not None else None  # the batch's observations
    for record in records:
        by_partition.setdefault(record.message.partition, []).append(record.value)
    for partition, values in by_partition.items():
        sent += await _join_partition(streams, partition, values, tally, now)
    # The batch's events are acknowledged (and so their offsets committable) when the agent asks
    # for the next batch: wait until the broker has every delivery and state change they
    # produced, so a crash can never leave an event committed without its effects.
    if tally is not None and streams.detector is not None:
        streams.detector.add(tally, now)
    _note_offsets(stats.produced, await asyncio.gather(*sent))
    _note_offsets(stats.positions, [r.message for r in records])
    stats.last_event_ms = now_ms()
    stats.busy_seconds += time.perf_counter() - started


async def _join_partition(streams: Streams, partition: int, values: list[bytes], tally: Tally | None,
                          now: int) -> list[Any]:
    """Join one partition's records of a batch; the futures of the records it wrote."""
    stats = streams.stats
    changes: dict[str, Delivery | None] = {}
    out: dict[str, Delivery] = {}
    for raw in values:
        try:
            events = decode_message_events(raw)
        except Exception as exc:  # noqa: BLE001 - a record no receiver would write: keep it, don't crash
            stats.undecodable += 1
            await streams.dead.send(value=raw, headers={"reason": f"undecodable event: {exc}"[:500].encode(),
                                                        "endpoint": b"streams.join"})
            continue
        for event in events:
            joined = _join_one(streams.store, changes, out, event, now)
            if tally is not None:
                _observe(tally, event, joined)
        stats.events += len(events)
    sent = await write_changes(streams.table, streams.store, partition, changes, f"batch|{partition}".encode())
    emitted = list(out.values()) if streams.raw_phone else [_without_phone(d) for d in out.values()]
    for chunk in _chunks(emitted):
        sent.append(await streams.deliveries.send(value=encode_deliveries(chunk), partition=partition,
                                                  headers=delivery_headers(chunk)))
    stats.emitted += len(out)
    return sent


async def evaluate_alerts(streams: Streams, detector: Detector) -> None:
    """The alert timer (every evaluate_every_seconds): each alert that fires or resolves goes to
    sms.alerts.v1, the log and the webhooks."""
    for alert in detector.evaluate(now_ms()):
        streams.stats.alerts += 1
        await streams.alerts.send(key=alert.record_key(), value=msgspec.json.encode(alert))
        log.warning("alert", rule=alert.rule, key=alert.key, state=alert.state, summary=alert.summary,
                    causes=cause_lines(alert.causes))
        post_webhooks(detector.rules.webhooks, alert)


async def note_assignment(stats: JoinStats, sender: Any, assigned: Any, **_: Any) -> None:
    """on_partitions_assigned: the source partitions this worker now owns."""
    stats.partitions = sorted({tp.partition for tp in assigned if tp.topic in (topics.SENDS, topics.RECEIPTS)})
    log.info("worker.partitions_assigned", partitions=stats.partitions)


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
            tally.outcome(event.provider, event.carrier, False, None, province=joined.province,
                          template=joined.template or "", sign=joined.sign or "", error_code=event.submit_code)
    elif joined is not None:  # a new receipt (a duplicate changes nothing and joins nothing)
        tally.receipt(event.provider)
        tally.outcome(event.provider, event.carrier, event.delivered, joined.latency_ms, province=joined.province,
                      template=joined.template or "", sign=joined.sign or "", error_code=event.error_code)
        if event.delivered and joined.template:
            tally.delivered_template(event.provider, event.message_id, joined.template)


async def conversions(streams: Streams, stream: Any) -> None:
    """The conversion agent (sms.conversions.v1): each conversion counted by the alert detector. A
    record it cannot read is skipped (the sink stores conversions; here they only feed a rate)."""
    async for raw in stream:
        detector = streams.detector
        if detector is None:
            continue
        try:
            event = decode_conversion(raw)
        except Exception:  # noqa: BLE001 - not a conversion: nothing to count
            streams.stats.undecodable += 1
            continue
        detector.observe_conversion(event.provider, event.message_id, event.template, now_ms())


def post_webhooks(hooks: Iterable[Webhook], alert: Alert) -> list[asyncio.Task[None]]:
    """Post `alert` to every webhook in its format (alerts.webhook_body), in the background: a webhook
    down or slow never holds up the caller (the stream's timer, or the Grafana relay,
    dashboards/relay.py). Returns the posts, which a caller may await; each logs its own failure."""
    posts = []
    for hook in hooks:
        post = asyncio.create_task(_post_webhook(hook, alert))
        _WEBHOOK_POSTS.add(post)
        post.add_done_callback(_WEBHOOK_POSTS.discard)
        posts.append(post)
    return posts


async def _post_webhook(hook: Webhook, alert: Alert) -> None:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await session.post(hook.url, json=webhook_body(alert, hook.format))
    except Exception as exc:  # noqa: BLE001 - a webhook down must not stop the stream
        log.warning("alert.webhook_failed", format=hook.format, error=type(exc).__name__)


def _chunks(items: list[Any], size: int = RECORD_ITEMS) -> list[list[Any]]:
    """Deliveries per record: as many as a changelog record carries states."""
    return [items[i:i + size] for i in range(0, len(items), size)]


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
