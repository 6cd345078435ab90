"""streams/state.py without a broker: the ChangeBatch records of the join's changelog, the store's
encoded states (partition prefix, put/get/forget), its rebuild from changelog records and its
trimming to the partitions a worker owns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import msgspec
import pytest
from faust.types import TP
from yarl import URL

from sms_analytics.model.events import Delivery
from sms_analytics.streams import state
from sms_analytics.streams.state import (
    ChangeBatch,
    MessageStateStore,
    changelog_retention,
    changelog_topic,
    decode_changes,
    encode_changes,
    encode_state,
)


def delivery(message_id: str, status: str = "pending") -> Delivery:
    return Delivery(provider="kx", message_id=message_id, phone="", phone_hash="h", phone_masked="139****1111",
                    carrier="unicom", country_code="86", has_send=True, sent_at_ms=1_700_000_000_000, status=status,
                    receipt_ids=["r1"] if status != "pending" else [])


@dataclass
class _Message:
    value: bytes | None
    partition: int


@dataclass
class _Event:
    message: _Message


@pytest.fixture
def store() -> MessageStateStore:
    app = faust.App("state-unit-test", broker="memory://", store="memory://")
    return MessageStateStore(URL("memory://"), app, None, table_name="message_state")  # type: ignore[arg-type]


def test_names_and_retention() -> None:
    assert changelog_topic("sms-analytics") == "sms-analytics-message_state-changelog"
    assert changelog_retention(timedelta(hours=72)) == timedelta(days=4)


def test_a_change_batch_round_trips_with_forgotten_messages() -> None:
    states = [encode_state(delivery("a")), None, encode_state(delivery("c", "delivered"))]
    raw = encode_changes(["a", "b", "c"], states)
    batch = decode_changes(raw)
    assert isinstance(batch, ChangeBatch)
    assert batch.keys == ["a", "b", "c"] and batch.states == states
    assert msgspec.msgpack.decode(raw)[0] == ["a", "b", "c"]  # array_like: [keys, states]
    assert decode_changes(encode_changes([], [])) == ChangeBatch([], [])


def test_a_malformed_record_is_refused() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_changes(msgspec.msgpack.encode({"keys": ["a"]}))


def test_put_get_forget_keep_the_partition(store: MessageStateStore) -> None:
    d = delivery("m1", "failed")
    store.put_encoded("m1", encode_state(d), 3)
    assert store.get_state("m1") == d
    assert store.partition_of("m1") == 3
    assert store.data["m1"][:2] == (3).to_bytes(2, "big")
    assert store.get_state("missing") is None
    store.forget("m1")
    store.forget("m1")  # forgetting twice is harmless
    assert store.get_state("m1") is None


def test_states_is_a_snapshot_and_unchanged_tells_a_replaced_state(store: MessageStateStore) -> None:
    store.put_encoded("a", encode_state(delivery("a")), 0)
    store.put_encoded("b", encode_state(delivery("b")), 1)
    seen = {}
    for key, partition, d, raw in store.states():
        seen[key] = (partition, d.message_id, raw)
        store.forget("b")  # changing the store while iterating is safe
    assert {k: v[:2] for k, v in seen.items()} == {"a": (0, "a"), "b": (1, "b")}
    assert store.unchanged("a", seen["a"][2])
    store.put_encoded("a", encode_state(delivery("a", "delivered")), 0)
    assert not store.unchanged("a", seen["a"][2])


def test_changelog_records_rebuild_the_store_per_partition(store: MessageStateStore) -> None:
    first = encode_changes(["a", "b"], [encode_state(delivery("a")), encode_state(delivery("b"))])
    second = encode_changes(["a", "b"], [encode_state(delivery("a", "delivered")), None])
    store.apply_changelog_batch([_Event(_Message(first, 2)), _Event(_Message(None, 2)), _Event(_Message(second, 5))],
                                to_key=lambda k: k, to_value=lambda v: v)
    assert store.get_state("b") is None
    a = store.get_state("a")
    assert a is not None and a.status == "delivered"
    assert store.partition_of("a") == 5  # the partition of the record that wrote it last


async def test_recovery_keeps_only_the_owned_partitions(store: MessageStateStore) -> None:
    for key, partition in (("p0", 0), ("p1", 1), ("p2", 2)):
        store.put_encoded(key, encode_state(delivery(key)), partition)
    await store.on_recovery_completed({TP("sms.sends", 0), TP("sms.sends", 2)}, set())
    assert sorted(store.data) == ["p0", "p2"]


class _Topic:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> str:
        self.sent.append(kwargs)
        return f"future-{len(self.sent)}"


class _Table:
    def __init__(self) -> None:
        self.changelog_topic = _Topic()


async def test_write_changes_applies_them_and_writes_records_of_at_most_record_items(
        store: MessageStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "RECORD_ITEMS", 2)
    store.put_encoded("gone", encode_state(delivery("gone")), 4)
    table = _Table()
    changes: dict[str, Delivery | None] = {"x": delivery("x"), "gone": None, "y": delivery("y", "delivered")}
    futures = await state.write_changes(table, store, 4, changes, b"k")
    assert futures == ["future-1", "future-2"]
    assert [s["partition"] for s in table.changelog_topic.sent] == [4, 4]
    assert {s["key"] for s in table.changelog_topic.sent} == {b"k"}
    batches = [decode_changes(s["value"]) for s in table.changelog_topic.sent]
    assert [b.keys for b in batches] == [["x", "gone"], ["y"]]
    assert batches[0].states[1] is None
    assert store.get_state("gone") is None and store.partition_of("y") == 4
    assert store.get_state("x") == delivery("x")
