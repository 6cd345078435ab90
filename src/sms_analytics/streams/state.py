"""The join's state: a faust Table whose changelog carries batches of state changes.

A faust Table writes one changelog record per key set; at tens of thousands of events a second
that per-record cost is the bottleneck. Here the join updates the in-memory store directly and
writes one changelog record per processed batch and partition (`ChangeBatch`, msgpack: the final
state of every message the batch touched, `None` for a message the stream forgot). The record goes to the
changelog partition equal to the source partition, so faust's recovery (which replays the
changelog partitions matching the worker's assigned source partitions) rebuilds exactly the
states of the partitions the worker owns, through `MessageStateStore.apply_changelog_batch`.

Batch records have no per-message key, so the changelog is not compacted but expires by time:
its retention is longer than SMS_EXPIRE_AFTER, after which the stream forgets a state anyway
(`should_forget`, compensation.py). A restart replays that window of changes. `write_changes` applies
a batch's changes to the store and writes their records (the join's and the compensation scan's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import faust
import msgspec
from faust.stores import memory
from faust.types import TP, EventT
from yarl import URL

from sms_analytics.model.events import Delivery

TABLE = "message_state"
SEED_KEY = b"snapshot"
SEED_ITEMS = 500  # states per seeded record, as the join's own changelog records


def changelog_topic(app_id: str) -> str:
    """The join table's changelog topic (faust names it `<app id>-<table>-changelog`)."""
    return f"{app_id}-{TABLE}-changelog"


def changelog_retention(expire_after: timedelta) -> timedelta:
    """The changelog's time retention: a day beyond SMS_EXPIRE_AFTER, after which the stream has
    forgotten a message's state anyway."""
    return expire_after + timedelta(days=1)


class ChangeBatch(msgspec.Struct, array_like=True):
    """One changelog record: message keys and their new states (msgpack-encoded Delivery, or None
    for a message the stream forgot)."""

    keys: list[str]
    states: list[bytes | None]


_change_encoder = msgspec.msgpack.Encoder()
_change_decoder = msgspec.msgpack.Decoder(ChangeBatch)
_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(Delivery)


def encode_changes(keys: list[str], states: list[bytes | None]) -> bytes:
    return _change_encoder.encode(ChangeBatch(keys, states))


def decode_changes(raw: bytes) -> ChangeBatch:
    return _change_decoder.decode(raw)


def encode_state(state: Delivery) -> bytes:
    return _state_encoder.encode(state)


class MessageStateStore(memory.Store):
    """In-memory store of message key -> state, rebuilt from ChangeBatch records.

    A state is kept encoded (two bytes of partition, then msgpack): about a third of the memory of
    a live object with its strings, which is what lets a worker hold a million pending messages
    in well under a gigabyte. The join decodes a state when an event for it arrives."""

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        for event in batch:
            raw = event.message.value
            if raw is None:
                continue
            change = decode_changes(raw)
            prefix = event.message.partition.to_bytes(2, "big")
            data = self.data
            for key, state in zip(change.keys, change.states, strict=True):
                if state is None:
                    data.pop(key, None)
                else:
                    data[key] = prefix + state

    def get_state(self, key: str) -> Delivery | None:
        raw = self.data.get(key)
        return None if raw is None else _state_decoder.decode(memoryview(raw)[2:])

    def put_encoded(self, key: str, state: bytes, partition: int) -> None:
        self.data[key] = partition.to_bytes(2, "big") + state

    def forget(self, key: str) -> None:
        self.data.pop(key, None)

    def partition_of(self, key: str) -> int:
        return int.from_bytes(self.data[key][:2], "big")

    def states(self) -> Iterator[tuple[str, int, Delivery, bytes]]:
        """Every state with its partition and stored bytes (a snapshot: safe while the join changes
        the store; `unchanged(key, raw)` tells whether the state is still the one yielded)."""
        for key, raw in list(self.data.items()):
            yield key, int.from_bytes(raw[:2], "big"), _state_decoder.decode(memoryview(raw)[2:]), raw

    def unchanged(self, key: str, raw: bytes) -> bool:
        return self.data.get(key) is raw

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Keep only the states of the partitions this worker now owns."""
        owned = {partition.to_bytes(2, "big") for _, partition in active_tps}
        for key in [k for k, raw in self.data.items() if raw[:2] not in owned]:
            del self.data[key]


class MessageStateTable(faust.Table):
    """A faust Table over MessageStateStore whose changelog expires by time instead of compaction."""

    def __init__(self, app: Any, *, retention: timedelta, **kwargs: Any) -> None:
        self.retention = retention
        super().__init__(app, **kwargs)

    def _new_store(self) -> MessageStateStore:
        return MessageStateStore(
            URL("memory://"), self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options,
        )

    def _new_changelog_topic(self, *, retention: Any = None, compacting: bool | None = None,
                             deleting: bool | None = None) -> Any:
        return super()._new_changelog_topic(retention=self.retention.total_seconds(), compacting=False,
                                            deleting=True)

    @property
    def store(self) -> MessageStateStore:
        return self.data  # type: ignore[return-value]


async def seed_changelog(bootstrap: str, topic: str, partitions: int, replication: int,
                         states: dict[int, list[tuple[str, bytes]]], retention: timedelta) -> int:
    """Write states (per partition: message key, msgpack state) into an empty broker's changelog as
    ChangeBatch records, before the worker starts: its recovery then rebuilds them (the embedded
    mode's snapshot, see sources/journal.py). Each partition ends with an empty record sent on its
    own, so a broker that reports the log end as the last batch's first offset + 1 (the embedded
    one) still lets the recovery read every state. The topic, if missing, is created as faust
    creates it (time retention, no compaction). Returns the records written."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from sms_analytics.broker.admin import MAX_BATCH_BYTES, retention_configs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            try:
                configs = retention_configs(retention)
                await admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=configs)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    if not any(states.values()):
        return 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=16 * 1024 * 1024, max_batch_size=MAX_BATCH_BYTES)
    await producer.start()
    written = 0
    try:
        acks = []
        for partition, rows in states.items():
            for i in range(0, len(rows), SEED_ITEMS):
                chunk = rows[i:i + SEED_ITEMS]
                acks.append(await producer.send(topic, key=SEED_KEY, partition=partition,
                                                value=encode_changes([k for k, _ in chunk], [v for _, v in chunk])))
        await asyncio.gather(*acks)
        for partition in states:  # alone in its batch: the end of the partition's log is exact
            await (await producer.send(topic, key=SEED_KEY, partition=partition, value=encode_changes([], [])))
        written = len(acks) + len(states)
    finally:
        await producer.stop()
    return written


RECORD_ITEMS = 500  # states per changelog record: a record stays far below a broker's 1 MiB limit


async def write_changes(table: Any, store: MessageStateStore, partition: int,
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
