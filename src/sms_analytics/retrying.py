"""One retry/backoff for the whole pipeline, on tenacity. After the n-th failure in a row the next
attempt waits `first * 2**(n-1)` seconds, at most `cap` (`Backoff`); a success starts the count
again. `retry` runs a call until it returns; `retry_unless_stopped` also gives up, returning None,
when its stop event is set (a pause ends early then).

The sites: the pull feeds' polls (sources/base/feed.py), the MNS consumer's rounds and deletes
(sources/aliyun/mns.py), the journal forwarder's rounds (sources/journal.py), the sink's inserts
(sinks/writer.py), and the start-up waits (startup.py, which keeps its own deadline and uses
`Backoff.wait`).

Where this ends: a site says what it retries (`retry_if`), how often (`attempts`), and what it logs
and counts on each failure (`on_failure`); this module logs and counts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_never, wait_exponential

T = TypeVar("T")
# Called before each pause: the failure, the pause (seconds) and the attempt that failed (1: the first call).
OnFailure = Callable[[BaseException, float, int], None]


@dataclass(frozen=True)
class Backoff:
    """`first` seconds before the second attempt, doubled after each further failure, at most `cap`."""

    first: float
    cap: float

    def wait(self) -> wait_exponential:
        """The pauses as a tenacity wait strategy."""
        return wait_exponential(multiplier=self.first, max=self.cap)


def is_error(exc: BaseException) -> bool:
    """The default of what is retried: any Exception (a cancellation or an exit is not one)."""
    return isinstance(exc, Exception)


async def pause(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep `seconds`, or until `stop` is set if that comes first."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def retry(call: Callable[[], Awaitable[T]], backoff: Backoff, *, on_failure: OnFailure | None = None,
                retry_if: Callable[[BaseException], bool] = is_error, attempts: int | None = None) -> T:
    """`await call()` until it returns, and its value. A failure `retry_if` refuses is raised at once,
    so is the last one when `attempts` (calls in all) are used up; None: no limit."""
    async for attempt in _retrying(backoff, on_failure, retry_if, attempts, None):
        with attempt:
            return await call()
    raise AssertionError("tenacity stops by a return or by raising")  # pragma: no cover


async def retry_unless_stopped(call: Callable[[], Awaitable[T]], backoff: Backoff, stop: asyncio.Event, *,
                               on_failure: OnFailure | None = None) -> T | None:
    """`await call()` until it returns (its value), retrying every Exception; None, without calling
    again, once `stop` is set (checked before each call; a pause ends when it is set)."""
    async for attempt in _retrying(backoff, on_failure, is_error, None, stop):
        if stop.is_set():
            return None
        with attempt:
            return await call()
    raise AssertionError("tenacity stops by a return or by raising")  # pragma: no cover


def _retrying(backoff: Backoff, on_failure: OnFailure | None, retry_if: Callable[[BaseException], bool],
              attempts: int | None, stop: asyncio.Event | None) -> AsyncRetrying:
    return AsyncRetrying(wait=backoff.wait(), retry=retry_if_exception(retry_if), reraise=True,
                         stop=stop_after_attempt(attempts) if attempts else stop_never,
                         sleep=partial(pause, stop),
                         before_sleep=None if on_failure is None else partial(_report, on_failure))


def _report(on_failure: OnFailure, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is not None:
        on_failure(exc, state.upcoming_sleep, state.attempt_number)
