"""sinks/writer.py without a broker or a warehouse: the JSON arrays it passes on, how records are
buffered per table, the insert token of a batch (the same on a retry, new per table and per sink
process), the offsets it commits, and a deliveries batch that fails being checked record by record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from sms_analytics.model import topics
from sms_analytics.model.events import Delivery, delivery_headers, encode_deliveries
from sms_analytics.sinks import writer
from sms_analytics.sinks.writer import ClickHouseSink, joined_arrays, json_array

MINUTE = 60_000
T0 = 1_700_000_000_000


def delivery(message_id: str, *, sent_at_ms: int | None = T0, receipt_sent_at_ms: int | None = None) -> Delivery:
    return Delivery(provider="aliyun", message_id=message_id, phone="", phone_hash="h-" + message_id,
                    phone_masked="138****0000", carrier="mobile", country_code="86", has_send=True,
                    sent_at_ms=sent_at_ms, receipt_sent_at_ms=receipt_sent_at_ms)


@dataclass
class Record:
    value: bytes
    offset: int
    headers: Any = ()
    timestamp: int = T0


@dataclass
class FakeWarehouse:
    """Records every insert; fails the first `fail_json` JSON inserts."""
    json_inserts: list[tuple[str, bytes, str]] = field(default_factory=list)
    inserts: list[tuple[str, list[Any], tuple[str, ...], str]] = field(default_factory=list)
    fail_json: int = 0

    def insert_json(self, table: str, data: bytes, token: str) -> None:
        if self.fail_json:
            self.fail_json -= 1
            raise RuntimeError("Cannot parse input")
        self.json_inserts.append((table, data, token))

    def insert(self, table: str, rows: list[Any], columns: tuple[str, ...], token: str) -> None:
        self.inserts.append((table, rows, columns, token))


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def make_sink(wh: FakeWarehouse) -> ClickHouseSink:
    sink = ClickHouseSink(wh, "127.0.0.1:9", group="g", batch_rows=1000, flush_seconds=1.0,  # type: ignore[arg-type]
                          store_raw_phone=False)
    sink.consumer = FakeConsumer()  # type: ignore[assignment]
    return sink


def test_json_array_wraps_a_single_object_and_keeps_an_array() -> None:
    assert json_array(b'{"a":1}') == b'[{"a":1}]'
    assert json_array(b'[{"a":1},{"a":2}]') == b'[{"a":1},{"a":2}]'


def test_joined_arrays_concatenates_the_elements() -> None:
    assert joined_arrays([b'[{"a":1}]', b'[{"a":2},{"a":3}]']) == b'[{"a":1},{"a":2},{"a":3}]'


async def test_deliveries_are_buffered_as_json_counted_by_headers_or_by_scanning() -> None:
    sink = await make_sink(FakeWarehouse())
    tp = TopicPartition(topics.DELIVERIES, 0)
    with_headers = [delivery("m1"), delivery("m2", receipt_sent_at_ms=T0 + 5 * MINUTE)]
    without = [delivery("m3", sent_at_ms=T0 + 10 * MINUTE)]
    sink._buffer(tp, [Record(encode_deliveries(with_headers), 5, delivery_headers(with_headers)),
                      Record(encode_deliveries(without), 6)])
    [messages] = [t for t in sink.tables if t.json]
    assert messages.name == "sms.delivery_ingest" and messages.count == 3
    assert [raw[:1] for raw in messages.rows] == [b"[", b"["]
    assert sink.unwritten_rows() == 3
    assert sink._pending == {tp: (5, 6)}
    assert sink.oldest_unwritten_ms() == T0


async def test_an_undecodable_record_is_counted_and_skipped_but_its_offset_covered() -> None:
    sink = await make_sink(FakeWarehouse())
    tp = TopicPartition(topics.DELIVERIES, 1)
    sink._buffer(tp, [Record(b"not json", 3), Record(encode_deliveries([delivery("m1")]), 4)])
    assert sink.stats.undecodable == 1
    assert sink.unwritten_rows() == 1
    assert sink._pending == {tp: (3, 4)}


async def test_a_batch_is_inserted_with_one_token_per_table_then_its_offsets_committed() -> None:
    wh = FakeWarehouse()
    sink = await make_sink(wh)
    tp0, tp1 = TopicPartition(topics.DELIVERIES, 0), TopicPartition(topics.DELIVERIES, 1)
    sink._buffer(tp0, [Record(encode_deliveries([delivery("a")]), 10), Record(encode_deliveries([delivery("b")]), 11)])
    sink._buffer(tp1, [Record(encode_deliveries([delivery("c")]), 7)])
    await sink.flush()
    [(table, data, token)] = wh.json_inserts
    assert table == "sms.delivery_ingest"
    assert data.count(b'"message_id"') == 3 and data[:1] == b"[" and data[-1:] == b"]"
    assert len(token) == 40 and int(token, 16) >= 0  # a sha1
    assert sink.consumer.commits == [{tp0: 12, tp1: 8}]  # type: ignore[attr-defined]
    assert sink.written == {tp0: 12, tp1: 8}
    assert sink.stats.rows_written == 3 and sink.stats.batches == 1
    assert sink.unwritten_rows() == 0 and sink.oldest_unwritten_ms() is None
    await sink.flush()  # nothing pending: nothing written, nothing committed
    assert len(wh.json_inserts) == 1 and len(sink.consumer.commits) == 1  # type: ignore[attr-defined]


async def test_the_token_follows_the_offsets_and_the_process() -> None:
    async def token_of(sink: ClickHouseSink, first: int) -> str:
        wh = sink.warehouse
        sink._buffer(TopicPartition(topics.DELIVERIES, 0), [Record(encode_deliveries([delivery("x")]), first)])
        await sink.flush()
        return wh.json_inserts[-1][2]  # type: ignore[attr-defined]

    one = await make_sink(FakeWarehouse())
    same_offsets_again = await token_of(one, 1), await token_of(one, 1)
    assert same_offsets_again[0] == same_offsets_again[1]  # a replay of the same offsets: the same token
    assert await token_of(one, 2) != same_offsets_again[0]
    other_process = await make_sink(FakeWarehouse())
    assert await token_of(other_process, 1) != same_offsets_again[0]  # a new sink: new tokens


async def test_a_failed_deliveries_insert_drops_only_the_records_that_do_not_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    wh = FakeWarehouse(fail_json=1)
    sink = await make_sink(wh)
    good = encode_deliveries([delivery("g1"), delivery("g2")])
    bad = b'[{"phone_hash":"x"}]'  # an array, but not a Delivery
    sink._buffer(TopicPartition(topics.DELIVERIES, 0), [Record(good, 0), Record(bad, 1)])
    await sink.flush()
    [(_, data, _)] = wh.json_inserts
    assert data == joined_arrays([good])
    assert sink.stats.undecodable == 1 and sink.stats.retries == 1
    assert sink.stats.rows_written == 2  # counted again from what was kept


async def test_other_topics_become_rows_of_their_tables() -> None:
    wh = FakeWarehouse()
    sink = await make_sink(wh)
    assert set(sink.routes) == {topics.DELIVERIES, topics.REPLIES, topics.PROVIDER_STATS, topics.ALERTS,
                                topics.CONVERSIONS}
    assert {t.name for t in sink.tables} == {"sms.delivery_ingest", "sms.replies", "sms.provider_balance",
                                             "sms.provider_stats", "sms.alerts", "sms.templates", "sms.signs",
                                             "sms.conversions"}
    raw_sink = ClickHouseSink(wh, "127.0.0.1:9", group="g", batch_rows=10, flush_seconds=1.0,  # type: ignore[arg-type]
                              store_raw_phone=True)
    assert raw_sink.tables[0].name == "sms.delivery_ingest_raw"
    assert writer.INSERT_BACKOFF.first == 0.2
