"""The join's state: a faust Table whose changelog carries batches of state changes.

A faust Table writes one changelog record per key set; at tens of thousands of events a second
that per-record cost is the bottleneck. Here the join updates the in-memory store directly and
writes one changelog record per processed batch and partition (`ChangeBatch`: the final state of
every message the batch touched, `None` for a message the stream forgot). The record goes to the
changelog partition equal to the source partition, so faust's recovery (which replays the
changelog partitions matching the worker's assigned source partitions) rebuilds exactly the
states of the partitions the worker owns, through `MessageStateStore.apply_changelog_batch`.

Batch records have no per-message key, so the changelog is not compacted but expires by time:
its retention is longer than SMS_EXPIRE_AFTER, after which the stream forgets a state anyway
(`should_forget`). A restart replays that window of changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterable

import faust
import msgspec
from faust.stores import memory
from faust.types import EventT
from yarl import URL

from sms_analytics.model.events import Delivery


class ChangeBatch(msgspec.Struct, array_like=True):
    keys: list[str]
    states: list[Delivery | None]


_change_encoder = msgspec.json.Encoder()
_change_decoder = msgspec.json.Decoder(ChangeBatch)


def encode_changes(changes: dict[str, Delivery | None]) -> bytes:
    return _change_encoder.encode(ChangeBatch(list(changes), list(changes.values())))


def decode_changes(raw: bytes) -> ChangeBatch:
    return _change_decoder.decode(raw)


class MessageStateStore(memory.Store):
    """In-memory store of message key -> Delivery, rebuilt from ChangeBatch records."""

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        for event in batch:
            raw = event.message.value
            if raw is None:
                continue
            change = decode_changes(raw)
            for key, state in zip(change.keys, change.states):
                if state is None:
                    self.forget(key)
                else:
                    self.put(key, state, event.message.partition)

    def put(self, key: str, state: Delivery, partition: int) -> None:
        self.data[key] = state
        self._key_partition[key] = partition

    def forget(self, key: str) -> None:
        self.data.pop(key, None)
        self._key_partition.pop(key, None)


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
