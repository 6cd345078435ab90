"""Compensation and forgetting: the timer that scans the join's states for messages pending past
SMS_COMPENSATE_AFTER (asked of the providers' pollers on sms.compensation.v1, at most once per
SMS_COMPENSATE_INTERVAL) and for states older than SMS_EXPIRE_AFTER (dropped from the table). The
policy is `CompensationPolicy` of the settings. Where this ends: requests on the topic and changes
to the table; the pollers that answer them are sources/feeds/compensation.py."""

from __future__ import annotations

import asyncio

from sms_analytics.model.events import CompensationRequest, Delivery, encode
from sms_analytics.model.times import now_ms
from sms_analytics.settings import CompensationPolicy
from sms_analytics.streams.context import Streams
from sms_analytics.streams.state import write_changes

YIELD_EVERY = 5000  # states scanned between two yields to the loop: a large table must not stall the join


def due_for_compensation(d: Delivery, now: int, policy: CompensationPolicy) -> bool:
    if d.status != "pending" or not d.has_send or d.sent_at_ms is None or d.provider not in policy.providers:
        return False
    age = now - d.sent_at_ms
    if age < policy.after_ms or age > policy.max_age_ms:
        return False
    return d.compensation_asked_ms is None or now - d.compensation_asked_ms >= policy.interval_ms


def should_forget(d: Delivery, now: int, policy: CompensationPolicy) -> bool:
    """A state still waiting after SMS_EXPIRE_AFTER (a send without a final receipt: expired in the
    warehouse; a receipt whose send never came) leaves the stream's table. A receipt arriving later
    still lands in the warehouse, which merges it with what it has."""
    since = d.sent_at_ms if d.sent_at_ms is not None else d.updated_at_ms
    return now - since > policy.forget_after_ms


async def scan(streams: Streams, policy: CompensationPolicy) -> None:
    """The timer (every policy.scan_seconds): pending messages past SMS_COMPENSATE_AFTER become
    requests to the pollers, at most once per interval per message (the asked time is kept in the
    message's state); states past SMS_EXPIRE_AFTER are forgotten."""
    now = now_ms()
    store, stats = streams.store, streams.stats
    changes: dict[int, dict[str, Delivery | None]] = {}
    for i, (key, partition, d, raw) in enumerate(store.states()):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
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
        await streams.requests.send(key=key.encode(), value=encode(_request(d, now)))
        stats.compensation_requests += 1
    for partition, changed in changes.items():
        await asyncio.gather(*await write_changes(streams.table, store, partition, changed, b"scan"))


def _request(d: Delivery, now: int) -> CompensationRequest:
    assert d.sent_at_ms is not None  # due_for_compensation checked it
    return CompensationRequest(provider=d.provider, message_id=d.message_id, phone=d.phone,
                               sent_at_ms=d.sent_at_ms, asked_at_ms=now)
