"""sources.base.feed: Checkpoint, RateLimiter, feed_options, Feed.run's counting and SpooledPull's
spool, with fake fetches (no network)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import Checkpoint, Feed, FeedSet, RateLimiter, SpooledPull, feed_options
from sms_analytics.sources.base.fields import Parsed


class Published:
    def __init__(self, fail=0):
        self.calls = []
        self.fail = fail

    async def __call__(self, events, rejected, origin):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        self.calls.append((list(events), list(rejected), origin))


def test_checkpoint_roundtrip(tmp_path):
    cp = Checkpoint(tmp_path / "feeds" / "x.json")
    assert cp.load() == {}
    cp.save({"next": 5, "pending": [{"a": 1}]})
    assert cp.load() == {"next": 5, "pending": [{"a": 1}]}
    assert sorted(p.name for p in (tmp_path / "feeds").iterdir()) == ["x.json"]  # no temporary left
    assert Checkpoint(cp.path).load() == {"next": 5, "pending": [{"a": 1}]}


def test_rate_limiter_gap():
    assert RateLimiter(4).gap == 0.25
    assert RateLimiter(0).gap == 0.0
    assert RateLimiter(-1).gap == 0.0


async def test_rate_limiter_spaces_calls():
    limiter = RateLimiter(20)  # 50 ms apart
    began = time.monotonic()
    for _ in range(4):
        await limiter.wait()
    assert time.monotonic() - began >= 0.14


async def test_rate_limiter_unlimited_does_not_wait():
    limiter = RateLimiter(0)
    began = time.monotonic()
    for _ in range(100):
        await limiter.wait()
    assert time.monotonic() - began < 0.1


def test_feed_options():
    s = Settings(_env_file=None, sms_feed_interval_seconds=2.5, sms_feed_rate=7.0)
    assert feed_options(s) == {"interval": 2.5, "rate": 7.0}


def test_feedset_defaults():
    fs = FeedSet()
    assert (fs.feeds, fs.closers, fs.compensation) == ([], [], None)
    assert FeedSet().feeds is not fs.feeds


def parse(records, now):
    return Parsed(events=[f"event:{r['id']}" for r in records])  # type: ignore[misc]


async def test_spooled_pull_publishes_and_clears(tmp_path):
    fetched = [[{"id": 1}, {"id": 2}], []]

    async def fetch():
        return fetched.pop(0)

    publish = Published()
    feed = SpooledPull("kx.test", fetch, parse, publish, tmp_path, rate=0)
    assert feed.name == "kx.test"
    assert feed.spool.path == tmp_path / "feeds" / "kx.test.json"
    assert await feed.poll() == 2
    assert publish.calls == [(["event:1", "event:2"], [], "feed:kx.test")]
    assert feed.spool.load() == {"pending": []}
    assert await feed.poll() == 0
    assert len(publish.calls) == 1


async def test_spooled_pull_keeps_what_was_not_published(tmp_path):
    fetched = [[{"id": 7}]]

    async def fetch():
        return fetched.pop(0)  # a second fetch would fail: the spool must be used

    publish = Published(fail=1)
    feed = SpooledPull("tencent.test", fetch, parse, publish, tmp_path)
    with pytest.raises(ConnectionError):
        await feed.poll()
    assert feed.spool.load() == {"pending": [{"id": 7}]}
    again = SpooledPull("tencent.test", fetch, parse, publish, tmp_path)  # as after a restart
    assert await again.poll() == 1
    assert publish.calls == [(["event:7"], [], "feed:tencent.test")]
    assert again.spool.load() == {"pending": []}


class Scripted(Feed):
    name = "scripted"

    def __init__(self, results, stop, **kw):
        super().__init__(Published(), **kw)
        self.results, self.stop = list(results), stop

    async def poll(self):
        result = self.results.pop(0)
        if not self.results:
            self.stop.set()
        if isinstance(result, Exception):
            raise result
        return result


async def test_feed_run_counts_polls_records_and_errors():
    stop = asyncio.Event()
    feed = Scripted([3, RuntimeError("x" * 300), 2, 0], stop, interval=0.01, rate=0, max_backoff=0.01)
    await asyncio.wait_for(feed.run(stop), 10)
    assert feed.stats.polls == 3
    assert feed.stats.records == 5
    assert feed.stats.errors == 1
    assert feed.stats.last_error == "RuntimeError: " + "x" * 200


async def test_feed_run_returns_when_stopped_before():
    stop = asyncio.Event()
    stop.set()
    feed = Scripted([1], stop)
    await asyncio.wait_for(feed.run(stop), 5)
    assert feed.stats.polls == 0


def test_checkpoint_tmp_named_by_pid(tmp_path, monkeypatch):
    cp = Checkpoint(tmp_path / "a.json")
    written = []
    original = type(cp.path).write_bytes

    def spy(self, data):
        written.append(self.name)
        return original(self, data)

    monkeypatch.setattr(type(cp.path), "write_bytes", spy)
    cp.save({})
    assert written == [f"a.{os.getpid()}.tmp"]
