"""The faust app and its join agent.

Sends and receipts are read by one agent over both topics (co-partitioned by the message key),
in batches (`take`). Each message's state lives in a changelog-backed Table keyed by the message
key, so it survives a worker restart; a message that is joined and decided is emitted to
sms.deliveries.v1 and forgotten by the stream (the warehouse keeps the merged row).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import faust
import msgspec
import structlog

from sms_analytics.model import topics
from sms_analytics.model.events import (
    CompensationRequest, Delivery, encode, ReceiptEvent, SendEvent, decode_delivery, decode_message_event, encode_delivery,
)
from sms_analytics.model.times import now_ms
from sms_analytics.streams.alerts import Alert, Detector, Rules, webhook_body
from sms_analytics.streams.join import apply, is_final

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


def build_app(*, app_id: str, bootstrap: str, partitions: int, replication: int, data_dir: str,
              batch: int, within: float, compensation: Compensation | None = None,
              rules: Rules | None = None) -> tuple[faust.App, JoinStats]:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=partitions,
        topic_replication_factor=replication,
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        producer_linger=0.05,
        table_standby_replicas=0,
        web_enabled=False,
        topic_disable_leader=True,
    )
    stats = JoinStats()
    source = app.topic(topics.SENDS, topics.RECEIPTS, key_type=bytes, value_type=bytes, partitions=partitions)
    deliveries = app.topic(topics.DELIVERIES, key_type=bytes, value_type=bytes, partitions=partitions)
    dead = app.topic(topics.DEADLETTER, key_type=bytes, value_type=bytes, partitions=partitions)
    state = app.Table("message_state", default=None, key_type=bytes, value_type=bytes,
                      partitions=partitions, use_partitioner=True)
    requests = app.topic(topics.COMPENSATION, key_type=bytes, value_type=bytes, partitions=partitions)
    alerts_topic = app.topic(topics.ALERTS, key_type=bytes, value_type=bytes, partitions=partitions)
    policy = compensation or Compensation()
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

    @app.timer(interval=policy.scan_seconds, name="sms_compensation_scan")
    async def compensate() -> None:
        """Pending messages past SMS_COMPENSATE_AFTER become requests to the pollers, at most once
        per interval per message (the asked time is kept in the message's state)."""
        now = now_ms()
        for i, (key, raw) in enumerate(list(state.items())):
            if i % 5000 == 4999:
                await asyncio.sleep(0)  # a large table must not stall the join
            d = decode_delivery(raw)
            if should_forget(d, now, policy):
                del state[key]
                stats.forgotten += 1
                continue
            if not due_for_compensation(d, now, policy):
                continue
            d.compensation_asked_ms = now
            state[key] = encode_delivery(d)
            assert d.sent_at_ms is not None
            await requests.send(key=key, value=encode(CompensationRequest(
                provider=d.provider, message_id=d.message_id, phone=d.phone, sent_at_ms=d.sent_at_ms,
                asked_at_ms=now)))
            stats.compensation_requests += 1

    @app.agent(source, name="sms_join")
    async def join(stream: Any) -> None:
        async for values in stream.take(batch, within=within):
            started = time.perf_counter()
            out: list[Delivery] = []
            now = now_ms()
            stats.first_event_ms = stats.first_event_ms or now
            for raw in values:
                try:
                    event = decode_message_event(raw)
                except Exception as exc:  # a record no receiver would write: keep it, don't crash
                    stats.undecodable += 1
                    await dead.send(value=raw, headers={"reason": f"undecodable event: {exc}"[:500].encode(),
                                                        "endpoint": b"streams.join"})
                    continue
                joined = _join_one(state, event, now)
                if detector is not None:
                    _observe(detector, event, joined, now)
                out.extend(joined)
            stats.events += len(values)
            for delivery in out:
                await deliveries.send(key=topics.message_key(delivery.provider, delivery.message_id, delivery.phone),
                                      value=encode_delivery(delivery))
            stats.emitted += len(out)
            stats.last_event_ms = now_ms()
            stats.busy_seconds += time.perf_counter() - started

    return app, stats


def _observe(detector: Detector, event: SendEvent | ReceiptEvent, joined: list[Delivery], now: int) -> None:
    """Feed the alert windows: sends, and each outcome the first time the stream sees it."""
    if isinstance(event, SendEvent):
        detector.observe_send(event.provider, now)
        if not event.submit_ok and joined:
            detector.observe_outcome(event.provider, event.carrier, False, None, now)
    elif joined:  # a new receipt (a duplicate changes nothing and joins nothing)
        detector.observe_receipt(event.provider, now)
        detector.observe_outcome(event.provider, event.carrier, event.delivered, joined[0].latency_ms, now)


async def _post_webhook(hook: dict[str, str], alert: Alert) -> None:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await session.post(hook["url"], json=webhook_body(alert, hook.get("format", "generic")))
    except Exception as exc:  # a webhook down must not stop the stream
        log.warning("alert.webhook_failed", format=hook.get("format", "generic"), error=type(exc).__name__)


def _join_one(state: Any, event: SendEvent | ReceiptEvent, now: int) -> list[Delivery]:
    key = topics.message_key(event.provider, event.message_id, event.phone)
    raw = state.get(key)
    current = decode_delivery(raw) if raw is not None else None
    merged, changed = apply(current, event, now)
    if not changed:
        return []
    if is_final(merged):
        if raw is not None:
            del state[key]
    else:
        state[key] = encode_delivery(merged)
    return [merged]
