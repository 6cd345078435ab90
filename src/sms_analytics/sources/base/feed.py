"""The extension point for a pull feed: a loop with its own checkpoint, rate limit, backoff and
metrics. A subclass implements `poll()`, which fetches one batch, publishes it (through the same
publisher as the HTTP receivers, so it returns only after the broker acknowledged) and returns how
many records it handled. A full batch is followed at once by the next poll (within the rate
limit); an empty one waits `interval`. Errors back off exponentially (1 s doubling) up to `max_backoff`,
through `sms_analytics.retrying`.

A provider hands its feeds to the runtime as a `FeedSet` (`Provider.build_feeds`). Where this ends:
which feeds run is the provider packages' and `sources/feeds.py`'s business, not this module's."""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog
from prometheus_client import Counter, Gauge

from sms_analytics.model.events import CompensationRequest
from sms_analytics.retrying import Backoff, pause, retry_unless_stopped
from sms_analytics.settings import Settings
from sms_analytics.sources.base.fields import Event, Parsed, Rejected

log = structlog.get_logger(__name__)

Publish = Callable[[Sequence[Event], Sequence[Rejected], str], Awaitable[None]]
Ask = Callable[[CompensationRequest], Awaitable[Parsed]]  # a provider's answer about one pending message

POLLS = Counter("sms_feed_polls_total", "Polls by feed and outcome", ["feed", "outcome"])
RECORDS = Counter("sms_feed_records_total", "Records handled by feed", ["feed"])
LAST_SUCCESS = Gauge("sms_feed_last_success_timestamp_seconds", "Last successful poll", ["feed"])


class Checkpoint:
    """A feed's small JSON state in the data dir, written atomically: survives a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            return dict(msgspec.json.decode(self.path.read_bytes()))
        except FileNotFoundError:
            return {}

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(msgspec.json.encode(state))
        tmp.replace(self.path)


class RateLimiter:
    """At most `rate` calls per second, spaced evenly."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.gap


class Runnable(Protocol):
    """What the runtime runs: a `Feed`, or a loop of its own (the MNS consumer)."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class Closes(Protocol):
    async def close(self) -> None: ...


@dataclass
class FeedSet:
    """A provider's pull side, as configured: the feeds to run, the clients to close when they stop,
    and how to ask it about a message still pending (None: it has no per-message query)."""

    feeds: list[Runnable] = field(default_factory=list)
    closers: list[Closes] = field(default_factory=list)
    compensation: Ask | None = None


def feed_options(settings: Settings) -> dict[str, float]:
    """The poll interval and rate limit every feed takes from the settings."""
    return {"interval": settings.sms_feed_interval_seconds, "rate": settings.sms_feed_rate}


@dataclass
class FeedStats:
    polls: int = 0
    records: int = 0
    errors: int = 0
    last_error: str = ""


class Feed(ABC):
    name: str = "feed"

    def __init__(self, publish: Publish, *, interval: float = 5.0, rate: float = 5.0, max_backoff: float = 60.0,
                 checkpoint: Checkpoint | None = None) -> None:
        self.publish = publish
        self.interval = interval
        self.limiter = RateLimiter(rate)
        self.max_backoff = max_backoff
        self.checkpoint = checkpoint
        self.stats = FeedStats()

    @abstractmethod
    async def poll(self) -> int:
        """Fetch, publish and return the number of records handled (0: nothing new)."""

    async def publish_parsed(self, parsed: Parsed) -> int:
        await self.publish(parsed.events, parsed.rejected, f"feed:{self.name}")
        handled = len(parsed.events) + len(parsed.rejected)
        RECORDS.labels(self.name).inc(handled)
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(first=1.0, cap=self.max_backoff)
        while not stop.is_set():
            handled = await retry_unless_stopped(self._limited_poll, backoff, stop, on_failure=self._poll_failed)
            if handled is None:  # stopped while backing off
                return
            self.stats.polls += 1
            self.stats.records += handled
            POLLS.labels(self.name, "ok").inc()
            LAST_SUCCESS.labels(self.name).set(time.time())
            if handled == 0:
                await pause(stop, self.interval)

    async def _limited_poll(self) -> int:
        await self.limiter.wait()
        return await self.poll()

    def _poll_failed(self, exc: BaseException, retry_in: float, attempt: int) -> None:
        """Any failure of one poll: counted, logged, retried after the backoff."""
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        POLLS.labels(self.name, "error").inc()
        log.warning("feed.poll_failed", feed=self.name, error=self.stats.last_error, retry_in=retry_in)


class SpooledPull(Feed):
    """A pull whose records the provider returns only once (KX MTQuery/MOQuery, Tencent
    PullSmsSendStatus/PullSmsReplyStatus): what was fetched is written to the checkpoint before it
    is published and cleared after the broker acknowledged, so neither a broker outage nor a
    crash between the two loses it (a crash may publish it twice; the join counts it once)."""

    def __init__(self, name: str, fetch: Callable[[], Awaitable[list[Any]]], parse: Callable[[list[Any], int], Parsed],
                 publish: Publish, data_dir: Path, **kwargs: Any) -> None:
        self.name = name
        self.spool = Checkpoint(data_dir / "feeds" / f"{name}.json")
        super().__init__(publish, checkpoint=self.spool, **kwargs)
        self.fetch, self.parse = fetch, parse

    async def poll(self) -> int:
        from sms_analytics.model.times import now_ms

        pending = list(self.spool.load().get("pending") or [])
        if not pending:
            pending = await self.fetch()
            if not pending:
                return 0
            self.spool.save({"pending": pending})
        handled = await self.publish_parsed(self.parse(pending, now_ms()))
        self.spool.save({"pending": []})
        return handled
