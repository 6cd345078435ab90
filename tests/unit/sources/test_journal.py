"""The embedded mode's journal (sources/journal.py) and the broker rotation built on it (runtime.py):
accepted input is on disk before it is answered, forwarded in order, and the join's pending
states cross a rotation of the embedded broker."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.model import topics
from sms_analytics.model.events import ReceiptEvent, SendEvent, decode_message_events
from sms_analytics.sources.base.fields import Rejected
from sms_analytics.sources.journal import ANY_PARTITION, Journal, Row, coalesce, rows_of
from sms_analytics.sources.producer import MAX_BATCH_EVENTS, partition_of


def _identity(i: int) -> dict[str, Any]:
    return dict(provider="aliyun", message_id=f"m{i}", phone=f"+86138{i:08d}", phone_hash=f"h{i}",
                phone_masked="138****0000", carrier="mobile", country_code="CN")


def send(i: int) -> SendEvent:
    return SendEvent(**_identity(i), sent_at_ms=1_700_000_000_000 + i, received_at_ms=1_700_000_000_000 + i)


def receipt(i: int) -> ReceiptEvent:
    return ReceiptEvent(**_identity(i), delivered=True, error_code="DELIVERED", error_message="",
                        reported_at_ms=1_700_000_060_000 + i, received_at_ms=1_700_000_060_000 + i)


# --- what a push becomes ----------------------------------------------------------------------------
def test_a_push_becomes_one_row_per_partition_and_its_dead_letters() -> None:
    events = [send(i) for i in range(40)] + [receipt(i) for i in range(10)]
    rejected = [Rejected(index=3, reason="bad phone", raw=b'{"x":1}')]
    out = rows_of(events, rejected, "/v1/sends", partitions=4)
    batched = [r for r in out if r.topic in (topics.SENDS, topics.RECEIPTS)]
    assert sum(r.events for r in batched) == 50
    for row in batched:  # every event sits in the partition its key hashes to
        for event in decode_message_events(row.value):
            assert partition_of(f"{event.provider}|{event.message_id}|{event.phone}".encode(), 4) == row.partition
    dead = [r for r in out if r.topic == topics.DEADLETTER]
    assert len(dead) == 1 and dead[0].value == b'{"x":1}' and dead[0].partition == ANY_PARTITION
    assert dict(dead[0].headers)["reason"] == b"bad phone"


def test_coalesce_keeps_order_per_partition_and_caps_records() -> None:
    rows_in = []
    seq = 0
    for push in range(30):  # 30 pushes of 40 sends over 4 partitions
        for row in rows_of([send(push * 100 + i) for i in range(40)], [], "/v1/sends", 4):
            seq += 1
            rows_in.append(Row(row.topic, row.partition, row.key, row.value, row.headers, row.events, seq))
    out = coalesce(rows_in)
    assert len(out) < len(rows_in)
    assert all(r.events <= MAX_BATCH_EVENTS for r in out)
    for partition in range(4):
        before = [e.message_id for r in rows_in if r.partition == partition for e in decode_message_events(r.value)]
        after = [e.message_id for r in out if r.partition == partition for e in decode_message_events(r.value)]
        assert after == before


# --- the file -----------------------------------------------------------------------------------------
async def test_journal_is_private_survives_reopen_and_prunes_to_its_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = await Journal(path, partitions=4).open()
    await journal.append(rows_of([send(i) for i in range(20)], [], "/v1/sends", 4))
    await journal.append([Row(topics.DEADLETTER, ANY_PARTITION, None, b"raw", (("reason", b"r"),))])
    written = journal.last_seq
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # raw numbers inside
    await journal.close()

    journal = await Journal(path, partitions=4).open()  # what was committed is there after a reopen
    assert journal.last_seq == written and journal.snapshot_seq == 0
    got = await journal.read_after(0)
    assert sum(r.events for r in got if r.topic == topics.SENDS) == 20
    states = [("k1", 1, b"state-1"), ("k2", 3, b"state-2")]
    pruned = await journal.save_snapshot(written, states, keep_dead_letters_ms=86_400_000)
    assert pruned == len(got) - 1  # the dead letter stays for its retention
    assert await journal.read_after(written) == []
    assert [r.topic for r in await journal.read_after(0)] == [topics.DEADLETTER]
    assert await journal.load_snapshot() == {1: [("k1", b"state-1")], 3: [("k2", b"state-2")]}
    await journal.close()

    with pytest.raises(RuntimeError, match="KAFKA_PARTITIONS"):
        await Journal(path, partitions=8).open()


async def test_concurrent_pushes_share_commits_and_lose_nothing(tmp_path: Path) -> None:
    journal = await Journal(tmp_path / "j.sqlite3", partitions=4).open()
    await asyncio.gather(*(journal.append(rows_of([send(p * 10 + i) for i in range(10)], [], "x", 4))
                           for p in range(200)))
    got = await journal.read_after(0, limit=100_000)
    ids = sorted(int(e.message_id[1:]) for r in got for e in decode_message_events(r.value))
    assert ids == list(range(2000))
    await journal.close()


