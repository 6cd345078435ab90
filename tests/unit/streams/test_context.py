"""streams.context: JoinStats' carry and capacity, Streams as a frozen record."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sms_analytics.streams.context import JoinStats, Streams

CARRIED = ("events", "undecodable", "emitted", "compensation_requests", "forgotten", "alerts",
           "busy_seconds", "first_event_ms", "last_event_ms")


def _none() -> Any:
    return None


def test_defaults():
    stats = JoinStats()
    assert stats.events == 0
    assert stats.partitions == []
    assert stats.positions == {}
    assert stats.produced == {}
    assert stats.capacity == 0.0


def test_capacity_is_events_per_busy_second():
    assert JoinStats(events=300, busy_seconds=1.5).capacity == 200.0


def test_mutable_defaults_not_shared():
    a, b = JoinStats(), JoinStats()
    a.partitions.append(1)
    a.positions[("t", 0)] = 5
    assert b.partitions == []
    assert b.positions == {}


def test_carry_copies_counts_not_offsets():
    old = JoinStats(**{name: i + 1 for i, name in enumerate(CARRIED)}, partitions=[0, 2],
                    positions={("sms.events", 0): 9}, produced={("sms.deliveries", 1): 4}, detector="old")
    new = JoinStats(partitions=[1], positions={("sms.events", 1): 3})
    new.carry(old)
    for i, name in enumerate(CARRIED):
        assert getattr(new, name) == i + 1
    assert new.partitions == [1]
    assert new.positions == {("sms.events", 1): 3}
    assert new.produced == {}
    assert new.detector is None


def test_streams_is_frozen():
    streams = Streams(stats=JoinStats(), table=None, store=_none(), deliveries=None, dead=None, requests=None,
                      alerts=None, detector=None, batch=100, within=0.5, raw_phone=False)
    assert streams.batch == 100
    with pytest.raises(dataclasses.FrozenInstanceError):
        streams.batch = 1  # type: ignore[misc]
