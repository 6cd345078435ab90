"""Publishing to Kafka from the receivers: an HTTP request is answered 200 only after the broker
acknowledged every record of it, so a provider retries whatever we could not store.

Sends and receipts travel in batch records: the events of one push are grouped by the partition
their message key hashes to (Kafka's default murmur2 partitioner, so a send and its receipts still
meet in the same partition), and each group becomes one record (a JSON array) on that partition.
The join then pays faust's per-record cost once per push and partition, not once per event.
A record with a single event is a plain JSON object, as before.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownError, UnsupportedVersionError

from sms_analytics.broker.admin import MAX_BATCH_BYTES
from sms_analytics.model import topics
from sms_analytics.model.events import (
    ConversionEvent,
    ProviderBalance,
    ProviderStats,
    ReceiptEvent,
    ReplyEvent,
    SendEvent,
    SignInfo,
    TemplateInfo,
    encode,
    encode_batch,
)
from sms_analytics.model.times import now_ms
from sms_analytics.observability.deadletters import DeadLetters
from sms_analytics.sources.base.fields import Event, Rejected

log = structlog.get_logger(__name__)


class BrokerUnavailable(RuntimeError):
    pass


class Publishes(Protocol):
    """What the receivers and feeds publish through: `Publisher` (straight to Kafka) or, in the
    embedded mode, `journal.JournaledPublisher` (to the journal, forwarded from there). Both answer
    only once the push is stored, and raise BrokerUnavailable (answered 503) when it is not."""

    ready: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Sequence[Event], rejected: Sequence[Rejected], endpoint: str) -> None: ...

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None: ...

    async def publish_record(self, topic: str, key: bytes | None, value: bytes, endpoint: str) -> None: ...


def route(event: Event) -> tuple[str, bytes]:
    if isinstance(event, SendEvent):
        return topics.SENDS, topics.message_key(event.provider, event.message_id, event.phone)
    if isinstance(event, ReceiptEvent):
        return topics.RECEIPTS, topics.message_key(event.provider, event.message_id, event.phone)
    if isinstance(event, ReplyEvent):  # no poller needs a reply's number: keyed and sent by its hash only
        return topics.REPLIES, f"{event.provider}|{event.phone_hash}".encode()
    if isinstance(event, ConversionEvent):  # no raw number: keyed by the message id, else the number's hash
        return topics.CONVERSIONS, f"{event.provider}|{event.message_id or event.phone_hash}".encode()
    if isinstance(event, ProviderBalance):
        return topics.PROVIDER_STATS, f"balance|{event.provider}|{event.account}".encode()
    if isinstance(event, ProviderStats):
        return topics.PROVIDER_STATS, f"stats|{event.provider}|{event.app_id}|{event.hour_ms}".encode()
    if isinstance(event, TemplateInfo):
        return topics.PROVIDER_STATS, f"template|{event.provider}|{event.template_code}".encode()
    if isinstance(event, SignInfo):
        return topics.PROVIDER_STATS, f"sign|{event.provider}|{event.sign_name}".encode()
    raise TypeError(f"not an event: {type(event).__name__}")


BATCHED = (topics.SENDS, topics.RECEIPTS)
MAX_BATCH_EVENTS = 500  # events per batch record (a record stays well under a broker's 1 MiB default)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka)."""
    return (murmur2_fast(key) & 0x7FFFFFFF) % partitions


def murmur2_fast(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's Utils.murmur2), the same bits as aiokafka's `murmur2`
    (tested on random keys) in a third of its time: the 4-byte words are read as one array."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for k in memoryview(data[:whole]).cast("I") if _LITTLE_ENDIAN else _words(data[:whole]):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    extra = length & 3
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


_LITTLE_ENDIAN = sys.byteorder == "little"


async def _started(producer: AIOKafkaProducer) -> AIOKafkaProducer:
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


def _words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


@dataclass
class _OpenBatch:
    done: asyncio.Future[None]
    events: list[Event] = field(default_factory=list)


class Publisher:
    """The receivers' producer. Until it is connected (a receiver alone serves while its first
    connection is waited for, runtime.py) and whenever a send is not acknowledged within the
    timeout, `publish` raises BrokerUnavailable, which the receivers answer with 503, so the
    provider keeps the data and retries."""

    def __init__(self, bootstrap: str, *, send_timeout: float = 10.0, linger_ms: float = 2.0,
                 prepare: Callable[[], Awaitable[Any]] | None = None, idempotent: bool | None = False) -> None:
        self._bootstrap = bootstrap
        # Kafka's idempotent producer (with acks=all): a send retried after a lost acknowledgement is
        # stored once. None: used if the broker grants a producer id (`_start_producer`).
        self._idempotent = idempotent
        self._linger = linger_ms / 1000
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._timeout = send_timeout
        self._prepare = prepare  # e.g. create the topics, before the first publish
        self._producer: AIOKafkaProducer | None = None
        self._partition_counts: dict[str, int] = {}
        self.ready = False
        self.dead_letters = DeadLetters()  # acknowledged dead letters per endpoint and reason class

    def _new_producer(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=idempotent, linger_ms=2,
            request_timeout_ms=int(self._timeout * 1000), max_request_size=8 * 1024 * 1024,
            max_batch_size=MAX_BATCH_BYTES,  # several batch records per partition, within the broker's limit
        )

    async def start(self) -> None:
        """Connect now, raising if the broker is unreachable."""
        if self._prepare is not None:
            await self._prepare()
        self._producer = await self._start_producer()
        self.ready = True
        log.info("publisher.connected", bootstrap=self._bootstrap, idempotent=self._idempotent)

    async def _start_producer(self) -> AIOKafkaProducer:
        """A started producer. Undecided idempotence (None) is decided here, once: a broker that
        refuses a producer id (the embedded Tansu answers InitProducerId with an unknown error)
        gets a plain one, and the publisher stays so."""
        try:
            producer = await _started(self._new_producer(self._idempotent is not False))
        except (UnknownError, UnsupportedVersionError) as exc:
            if self._idempotent is not None:
                raise
            log.warning("publisher.idempotence_unsupported", bootstrap=self._bootstrap, error=type(exc).__name__)
            self._idempotent = False
            return await _started(self._new_producer(False))
        self._idempotent = self._idempotent is not False
        return producer

    async def stop(self) -> None:
        self.ready = False
        if self._producer is not None:
            await self._producer.stop()

    def _connected(self) -> AIOKafkaProducer:
        if self._producer is None or not self.ready:
            raise BrokerUnavailable("not connected to the broker yet")
        return self._producer

    async def publish(self, events: Sequence[Event], rejected: Sequence[Rejected], endpoint: str) -> None:
        """Send every event and dead letter, then wait for all acknowledgements (bounded by the timeout)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._publish(self._connected(), events, rejected, endpoint)
        except Exception as exc:
            log.warning("publish.failed", endpoint=endpoint, error=type(exc).__name__)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    async def _publish(self, producer: AIOKafkaProducer, events: Sequence[Event], rejected: Sequence[Rejected],
                       endpoint: str) -> None:
        futures = []
        grouped: dict[tuple[str, int], list[Event]] = defaultdict(list)
        for event in events:
            topic, key = route(event)
            if topic in BATCHED:
                grouped[(topic, partition_of(key, await self._partitions(topic)))].append(event)
            else:
                if isinstance(event, ReplyEvent):
                    event = msgspec.structs.replace(event, phone="")
                futures.append(await producer.send(topic, key=key, value=encode(event)))
        for (topic, partition), group in grouped.items():
            futures.append(asyncio.shield(self._coalesce(topic, partition, group)))  # shared with other pushes
        futures += [await self._dead_letter(r.raw, r.reason, endpoint, r.index) for r in rejected]
        if futures:
            await asyncio.gather(*futures)

    async def _partitions(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(await self._connected().partitions_for(topic))
        return count

    def _coalesce(self, topic: str, partition: int, events: list[Event]) -> asyncio.Future[None]:
        """Add events to the partition's open batch record; the future resolves when the broker has
        acknowledged that record. Pushes handled within the same few milliseconds (SMS_PUBLISH_LINGER_MS)
        share records, so a busy receiver writes few large records, not many small ones."""
        key = (topic, partition)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _OpenBatch(asyncio.get_running_loop().create_future())
            asyncio.get_running_loop().call_later(self._linger, self._close, key, batch)
        batch.events.extend(events)
        if len(batch.events) >= MAX_BATCH_EVENTS:
            self._close(key, batch)
        return batch.done

    def _close(self, key: tuple[str, int], batch: _OpenBatch) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
            task = asyncio.create_task(self._send_batch(key, batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_batch(self, key: tuple[str, int], batch: _OpenBatch) -> None:
        topic, partition = key
        try:
            acks = [await self._send_group(topic, partition, batch.events[i:i + MAX_BATCH_EVENTS])
                    for i in range(0, len(batch.events), MAX_BATCH_EVENTS)]
            await asyncio.gather(*acks)
        except Exception as exc:  # noqa: BLE001 - handed on to every caller through batch.done
            if not batch.done.done():
                batch.done.set_exception(exc)
            batch.done.exception()  # retrieved: every caller gets it through its own await
            return
        if not batch.done.done():
            batch.done.set_result(None)

    async def _send_group(self, topic: str, partition: int, group: list[Event]) -> asyncio.Future:
        if len(group) == 1:
            return await self._connected().send(topic, key=route(group[0])[1], value=encode(group[0]),
                                                partition=partition)
        return await self._connected().send(topic, value=encode_batch(group), partition=partition,  # type: ignore[arg-type]
                                         headers=[("events", str(len(group)).encode())])

    async def publish_record(self, topic: str, key: bytes | None, value: bytes, endpoint: str) -> None:
        """One record as it is (an alert the Grafana relay publishes, dashboards/relay.py), answered once
        the broker acknowledged it; BrokerUnavailable otherwise."""
        try:
            async with asyncio.timeout(self._timeout):
                await (await self._connected().send(topic, key=key, value=value))
        except Exception as exc:
            log.warning("publish.failed", endpoint=endpoint, error=type(exc).__name__)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await (await self._dead_letter(raw, reason, endpoint, index))
        except Exception as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def _dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int) -> asyncio.Future:
        headers = [
            ("reason", reason.encode()[:2000]),
            ("endpoint", endpoint.encode()),
            ("index", str(index).encode()),
            ("received_at_ms", str(now_ms()).encode()),
        ]
        future = await self._connected().send(topics.DEADLETTER, value=raw, headers=headers)
        self.dead_letters.watch(future, endpoint, reason)
        return future

