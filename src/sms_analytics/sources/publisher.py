"""Publishing to Kafka from the receivers: an HTTP request is answered 200 only after the broker
acknowledged every record of it, so a provider retries whatever we could not store."""

from __future__ import annotations

import asyncio
from typing import Sequence

import structlog
from aiokafka import AIOKafkaProducer

from sms_analytics.model import topics
from sms_analytics.model.events import ProviderBalance, ProviderStats, ReceiptEvent, ReplyEvent, SendEvent, encode
from sms_analytics.model.times import now_ms
from sms_analytics.sources.base import Event, Rejected

log = structlog.get_logger(__name__)


class BrokerUnavailable(RuntimeError):
    pass


def route(event: Event) -> tuple[str, bytes]:
    if isinstance(event, SendEvent):
        return topics.SENDS, topics.message_key(event.provider, event.message_id, event.phone)
    if isinstance(event, ReceiptEvent):
        return topics.RECEIPTS, topics.message_key(event.provider, event.message_id, event.phone)
    if isinstance(event, ReplyEvent):
        return topics.REPLIES, f"{event.provider}|{event.phone}".encode()
    if isinstance(event, ProviderBalance):
        return topics.PROVIDER_STATS, f"balance|{event.provider}|{event.account}".encode()
    if isinstance(event, ProviderStats):
        return topics.PROVIDER_STATS, f"stats|{event.provider}|{event.app_id}|{event.hour_ms}".encode()
    raise TypeError(f"not an event: {type(event).__name__}")


class Publisher:
    def __init__(self, bootstrap: str, *, send_timeout: float = 10.0) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=2, request_timeout_ms=int(send_timeout * 1000),
            max_request_size=8 * 1024 * 1024,
        )
        self._timeout = send_timeout
        self.ready = False

    async def start(self) -> None:
        await self._producer.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self._producer.stop()

    async def publish(self, events: Sequence[Event], rejected: Sequence[Rejected], endpoint: str) -> None:
        """Send every event and dead letter, then wait for all acknowledgements."""
        try:
            futures = []
            for event in events:
                topic, key = route(event)
                futures.append(await self._producer.send(topic, key=key, value=encode(event)))
            futures += [await self._dead_letter(r.raw, r.reason, endpoint, r.index) for r in rejected]
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        except Exception as exc:
            log.warning("publish.failed", endpoint=endpoint, error=type(exc).__name__)
            raise BrokerUnavailable(str(exc)) from exc

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None:
        try:
            fut = await self._dead_letter(raw, reason, endpoint, index)
            await asyncio.wait_for(fut, self._timeout)
        except Exception as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def _dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int) -> asyncio.Future:
        headers = [
            ("reason", reason.encode()[:2000]),
            ("endpoint", endpoint.encode()),
            ("index", str(index).encode()),
            ("received_at_ms", str(now_ms()).encode()),
        ]
        return await self._producer.send(topics.DEADLETTER, value=raw, headers=headers)

