"""The journal's forwarder on an embedded broker, and a send before a rotation joining its receipt after it in a pipeline (from tests/test_journal.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from sms_analytics.broker.admin import ensure_topics
from sms_analytics.broker.embedded import EmbeddedBroker
from sms_analytics.model import topics
from sms_analytics.model.events import decode_deliveries, decode_message_events
from sms_analytics.runtime import Runtime
from sms_analytics.sources.journal import Forwarder, Journal, JournaledPublisher, rows_of
from tests.conftest import eventually, rows
from tests.integration.test_pipeline import aliyun_report, aliyun_send, post, uid
from tests.unit.sources.test_journal import send


# --- forwarding to a real broker ----------------------------------------------------------------------
async def test_forwarder_delivers_in_order_pauses_and_resumes_on_a_new_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    bootstrap = await broker.start()
    journal = await Journal(tmp_path / "j.sqlite3", partitions=4).open()
    forwarder = Forwarder(journal)
    publisher = JournaledPublisher(journal, forwarder)
    try:
        await ensure_topics(bootstrap, 4, 1)
        await forwarder.start(bootstrap)
        await publisher.start()
        for push in range(10):
            await publisher.publish([send(push * 100 + i) for i in range(50)], [], "/v1/sends")
        await publisher.dead_letter(b"not json", "cannot parse", "/callbacks/kx/report")
        await eventually(lambda: journal.unforwarded == 0)  # forwarded without being asked
        cursor = await forwarder.pause()
        assert cursor == journal.last_seq
        first = await _read(bootstrap, topics.SENDS, 500)
        for partition, ids in first.items():
            assert ids == sorted(ids, key=lambda m: int(m[1:])), f"partition {partition} out of order"
        assert (await _read(bootstrap, topics.DEADLETTER, 1))

        # a new empty broker on the same address, forwarding again from a snapshot point
        await forwarder.stop()
        await journal.save_snapshot(cursor, [], keep_dead_letters_ms=0)
        await publisher.publish([send(5000 + i) for i in range(30)], [], "/v1/sends")  # while no broker forwards
        await broker.restart()
        await ensure_topics(bootstrap, 4, 1)
        await forwarder.start(bootstrap)
        again = await _read(bootstrap, topics.SENDS, 30)
        assert sorted(m for ids in again.values() for m in ids) == sorted(f"m{5000 + i}" for i in range(30))
    finally:
        await forwarder.stop()
        await journal.close()
        broker.stop()


async def test_forwarder_waits_while_the_join_is_too_far_behind(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    bootstrap = await broker.start()
    journal = await Journal(tmp_path / "j.sqlite3", partitions=4).open()
    joined = 0
    forwarder = Forwarder(journal, consumed=lambda: joined, max_ahead=100)
    try:
        await ensure_topics(bootstrap, 4, 1)
        for push in range(3):  # 3 pushes of 50 events before it starts: its first round takes them all
            await journal.append(rows_of([send(push * 100 + i) for i in range(50)], [], "/v1/sends", 4))
        await forwarder.start(bootstrap)
        await eventually(lambda: forwarder.forwarded_events == 150)
        for push in range(3, 10):
            await journal.append(rows_of([send(push * 100 + i) for i in range(50)], [], "/v1/sends", 4))
            forwarder.wake()
        await asyncio.sleep(1.0)
        assert forwarder.forwarded_events == 150 and journal.unforwarded > 0  # 150 - 0 joined > 100: it waits
        joined = 10_000  # the join caught up
        await eventually(lambda: journal.unforwarded == 0)
        assert forwarder.forwarded_events == 500
    finally:
        await forwarder.stop()
        await journal.close()
        broker.stop()


async def _read(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> dict[int, list[str]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: dict[int, list[str]] = {}
    seen = 0
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while seen < expect and asyncio.get_running_loop().time() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if topic == topics.DEADLETTER:
                        out.setdefault(tp.partition, []).append(record.value.decode())
                        seen += 1
                        continue
                    ids = [e.message_id for e in decode_message_events(record.value)]
                    out.setdefault(tp.partition, []).extend(ids)
                    seen += len(ids)
    finally:
        await consumer.stop()
    assert seen >= expect, f"read {seen} of {expect}"
    return out


# --- rotation, on the session's pipeline (embedded `up`: journaled) -----------------------------------
@pytest.mark.pipeline
async def test_a_send_before_a_rotation_joins_its_receipt_after_it(pipeline: Runtime,
                                                                   http: aiohttp.ClientSession) -> None:
    assert pipeline.journal is not None and pipeline.broker is not None, "the session pipeline is embedded `up`"
    biz = [f"rot{uid()}" for _ in range(20)]
    phones = [f"1390000{i:04d}" for i in range(20)]
    for b, phone in zip(biz, phones, strict=False):
        status, body = await post(http, "/v1/sends/aliyun", aliyun_send(b, [phone]))
        assert status == 202, body
    await eventually(lambda: _count(pipeline, biz, "status = 'pending'", 20), timeout=30)
    rotations, pid = pipeline.broker.rotations, pipeline.broker.process.pid if pipeline.broker.process else None
    assert await pipeline.rotate(), "rotated"
    assert pipeline.broker.rotations == rotations + 1 and pipeline.broker.process is not None
    assert pipeline.broker.process.pid != pid
    snapshot = await pipeline.journal.load_snapshot()
    held = {key for states in snapshot.values() for key, _ in states}
    assert all(any(b in key for key in held) for b in biz), "the pending sends are in the snapshot"

    consumer = AIOKafkaConsumer(topics.DELIVERIES, bootstrap_servers=pipeline.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        status, body = await post(http, "/callbacks/aliyun/sms-report",
                                  [aliyun_report(b, phone) for b, phone in zip(biz, phones, strict=False)])
        assert status == 200, body
        joined: dict[str, Any] = {}

        async def stream_joined() -> bool:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    for d in decode_deliveries(record.value):
                        if d.message_id in biz and d.status == "delivered":
                            joined[d.message_id] = d
            return len(joined) == 20

        await eventually(stream_joined, timeout=30)
    finally:
        await consumer.stop()
    # in the stream: the delivery after the rotation carries the send's fields from before it
    assert all(d.has_send and d.sent_at_ms is not None for d in joined.values())
    await eventually(lambda: _count(pipeline, biz, "status = 'delivered' AND latency_ms IS NOT NULL", 20), timeout=30)


async def _count(pipeline: Runtime, ids: list[str], where: str, expect: int) -> bool:
    listed = ",".join(f"'{i}'" for i in ids)
    found = await rows(pipeline, f"SELECT count() AS n FROM sms.messages WHERE provider = 'aliyun' "
                                 f"AND message_id IN ({listed}) AND {where}")
    return int(found[0]["n"]) == expect
