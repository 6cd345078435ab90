"""runtime's pure helpers: _reached, _offsets, _by_partition, _client_host, _until, _Phases (no
runtime started)."""

from __future__ import annotations

import time
from typing import NamedTuple

import pytest

from sms_analytics import runtime
from sms_analytics.model import topics
from sms_analytics.runtime import _by_partition, _client_host, _offsets, _Phases, _reached, _until


class TP(NamedTuple):
    topic: str
    partition: int


def test_reached_only_the_named_topics():
    positions = {("a", 0): 10, ("a", 1): 4, ("b", 0): 0}
    assert _reached(positions, {("a", 0): 10, ("a", 1): 4}, ("a",)) is True
    assert _reached(positions, {("a", 0): 11}, ("a",)) is False
    assert _reached(positions, {("a", 0): 11, ("b", 0): 0}, ("b",)) is True  # a's target not asked about
    assert _reached(positions, {("c", 0): 0}, ("c",)) is False  # no position yet
    assert _reached(positions, {("c", 0): -1}, ("c",)) is True
    assert _reached({}, {}, ("a",)) is True


def test_offsets_are_last_written():
    written = {TP(topic="sms.deliveries.v1", partition=0): 5, TP(topic="sms.replies.v1", partition=2): 1}
    assert _offsets(written) == {("sms.deliveries.v1", 0): 4, ("sms.replies.v1", 2): 0}
    assert _offsets({}) == {}


def test_by_partition_keeps_order():
    states = [("k1", 1, b"s1"), ("k2", 0, b"s2"), ("k3", 1, b"s3")]
    assert _by_partition(states) == {1: [("k1", b"s1"), ("k3", b"s3")], 0: [("k2", b"s2")]}
    assert _by_partition([]) == {}


@pytest.mark.parametrize("host, expected", [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"),
                                                 ("10.0.0.5", "10.0.0.5"), ("localhost", "localhost")])
def test_client_host(host, expected):
    assert _client_host(host) == expected


async def test_until_returns_when_true():
    calls = []

    def check():
        calls.append(1)
        return len(calls) >= 3

    await _until(check, 5.0, "three calls")
    assert len(calls) == 3


async def test_until_times_out_with_what():
    with pytest.raises(TimeoutError, match="waited 0s for the sink"):
        await _until(lambda: False, 0.1, "the sink")


def test_phases(monkeypatch):
    clock = iter([100.0, 100.5, 102.25])
    monkeypatch.setattr(runtime.time, "monotonic", lambda: next(clock))
    phases = _Phases()
    phases.done("drain")
    phases.done("snapshot")
    assert phases.seconds == {"drain_s": 0.5, "snapshot_s": 1.75}
    monkeypatch.setattr(runtime.time, "monotonic", time.monotonic)


def test_sink_topics():
    assert runtime.SINK_TOPICS == (topics.DELIVERIES, topics.REPLIES, topics.PROVIDER_STATS)
