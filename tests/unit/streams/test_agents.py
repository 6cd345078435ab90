"""streams.agents' pure parts: _chunks, _note_offsets, _key, _without_phone, note_assignment,
_join_one against a MessageStateStore (memory), and stop_unacknowledged's exit code in a child
process (no broker, no worker)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from yarl import URL

from sms_analytics.model import topics
from sms_analytics.model.events import Delivery, ReceiptEvent, SendEvent
from sms_analytics.streams import agents
from sms_analytics.streams.agents import EXIT_UNACKNOWLEDGED, _chunks, _join_one, _key, _note_offsets, _without_phone
from sms_analytics.streams.context import JoinStats
from sms_analytics.streams.state import RECORD_ITEMS, MessageStateStore, encode_state

IDENT: dict[str, Any] = dict(provider="kx", message_id="m-1", phone="+8613812341234", phone_hash="a" * 64,
             phone_masked="138****1234", carrier="mobile", country_code="86")
KEY = "kx|m-1|+8613812341234"
SENT = 1_700_000_000_000
NOW = SENT + 120_000


def send(ok=True):
    return SendEvent(**IDENT, sent_at_ms=SENT, received_at_ms=SENT + 5, template="T1", sign="S", segments=1,
                     out_id="", submit_ok=ok, submit_code="" if ok else "E1", submit_message="")


def receipt(delivered=True):
    return ReceiptEvent(**IDENT, delivered=delivered, error_code="DELIVRD" if delivered else "UNDELIV",
                        error_message="", reported_at_ms=SENT + 3_000, received_at_ms=SENT + 60_000)


@pytest.fixture
def store():
    app = faust.App("agents-unit-test", broker="memory://", store="memory://")
    return MessageStateStore(URL("memory://"), app, None, table_name="message_state")  # type: ignore[arg-type]


def test_chunks():
    assert _chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert _chunks([], 3) == []
    assert _chunks(list(range(RECORD_ITEMS + 1))) == [list(range(RECORD_ITEMS)), [RECORD_ITEMS]]


def test_note_offsets_keeps_the_highest():
    seen = {("a", 0): 10}
    records = [SimpleNamespace(topic="a", partition=0, offset=5), SimpleNamespace(topic="a", partition=0, offset=12),
               SimpleNamespace(topic="a", partition=1, offset=0), SimpleNamespace(topic="b", partition=0, offset=3),
               SimpleNamespace(topic="a", partition=0, offset=11)]
    _note_offsets(seen, records)
    assert seen == {("a", 0): 12, ("a", 1): 0, ("b", 0): 3}


def test_key_and_without_phone():
    assert _key(send()) == KEY
    d = Delivery(**IDENT)
    bare = _without_phone(d)
    assert bare.phone == ""
    assert d.phone == "+8613812341234"
    assert bare.phone_hash == d.phone_hash


async def test_note_assignment_keeps_source_partitions():
    stats = JoinStats()
    tp = SimpleNamespace
    await agents.note_assignment(stats, None, [tp(topic=topics.SENDS, partition=2), tp(topic=topics.RECEIPTS, partition=0),
                                               tp(topic=topics.RECEIPTS, partition=2), tp(topic=topics.DELIVERIES, partition=5)])
    assert stats.partitions == [0, 2]


def test_join_one_new_pending_is_kept(store):
    changes: dict[str, Any] = {}
    out: dict[str, Any] = {}
    joined = _join_one(store, changes, out, send(), NOW)
    assert joined is not None
    assert (joined.status, joined.has_send, joined.updated_at_ms) == ("pending", True, NOW)
    assert out == {KEY: joined}
    assert changes == {KEY: joined}


def test_join_one_decided_in_one_batch_is_forgotten(store):
    changes: dict[str, Any] = {}
    out: dict[str, Any] = {}
    _join_one(store, changes, out, send(), NOW)
    joined = _join_one(store, changes, out, receipt(), NOW)
    assert joined is not None
    assert joined.status == "delivered"
    assert changes == {KEY: None}
    assert out[KEY] is joined


def test_join_one_repeat_changes_nothing(store):
    changes: dict[str, Any] = {}
    out: dict[str, Any] = {}
    first = _join_one(store, changes, out, send(), NOW)
    assert _join_one(store, changes, out, send(), NOW + 1) is None
    assert out[KEY] is first
    assert changes == {KEY: first}


def test_join_one_decided_at_once_leaves_no_change(store):
    changes: dict[str, Any] = {}
    out: dict[str, Any] = {}
    joined = _join_one(store, changes, out, send(ok=False), NOW)
    assert joined is not None
    assert joined.status == "failed"
    assert changes == {}  # nothing stored, nothing to forget
    assert out == {KEY: joined}


def test_join_one_reads_the_store(store):
    pending = Delivery(**IDENT, has_send=True, sent_at_ms=SENT)
    store.put_encoded(KEY, encode_state(pending), 0)
    changes: dict[str, Any] = {}
    out: dict[str, Any] = {}
    joined = _join_one(store, changes, out, receipt(delivered=False), NOW)
    assert joined is not None
    assert (joined.status, joined.sent_at_ms) == ("failed", SENT)
    assert changes == {KEY: None}


def test_stop_unacknowledged_exits_75():
    code = ("from sms_analytics.streams.agents import stop_unacknowledged\n"
            "try:\n    stop_unacknowledged(RuntimeError('boom'))\nfinally:\n    print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == EXIT_UNACKNOWLEDGED == 75
    output = done.stdout + done.stderr
    assert "join.batch_failed" in output
    assert "RuntimeError: boom" in output
    assert "not reached" not in output
