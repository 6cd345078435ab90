"""retrying.py: the one retry/backoff of the pipeline (tenacity), with the pauses made instant."""

from __future__ import annotations

import asyncio

import pytest

from sms_analytics import retrying
from sms_analytics.retrying import Backoff, pause, retry, retry_unless_stopped

FAST = Backoff(first=0.001, cap=0.004)


class Flaky:
    def __init__(self, failures: int, exc: BaseException | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.exc = exc or ConnectionError("down")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


def test_backoff_doubles_from_first_up_to_cap() -> None:
    wait = Backoff(first=0.2, cap=1.0).wait()
    assert (wait.multiplier, wait.max) == (0.2, 1.0)


async def test_retry_until_it_returns_reporting_each_failure() -> None:
    seen: list[tuple[str, float, int]] = []
    call = Flaky(3)
    assert await retry(call, FAST, on_failure=lambda exc, wait, n: seen.append((str(exc), wait, n))) == "ok"
    assert call.calls == 4
    assert [(e, n) for e, _, n in seen] == [("down", 1), ("down", 2), ("down", 3)]
    assert [w for _, w, _ in seen] == sorted(w for _, w, _ in seen) and max(w for _, w, _ in seen) <= FAST.cap


async def test_a_refused_failure_is_raised_at_once_and_attempts_are_a_limit() -> None:
    refused = Flaky(5, ValueError("bad request"))
    with pytest.raises(ValueError):
        await retry(refused, FAST, retry_if=lambda exc: isinstance(exc, ConnectionError))
    assert refused.calls == 1
    limited = Flaky(5)
    with pytest.raises(ConnectionError):
        await retry(limited, FAST, attempts=3)
    assert limited.calls == 3


async def test_a_cancellation_is_not_retried() -> None:
    assert retrying.is_error(RuntimeError()) and not retrying.is_error(asyncio.CancelledError())
    cancelled = Flaky(5, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry(cancelled, FAST)
    assert cancelled.calls == 1


async def test_retry_unless_stopped_gives_up_once_stopped() -> None:
    stop = asyncio.Event()
    call = Flaky(10**6)
    task = asyncio.create_task(retry_unless_stopped(call, Backoff(first=30.0, cap=30.0), stop))
    await asyncio.sleep(0.05)
    stop.set()  # ends the 30 s pause at once
    assert await asyncio.wait_for(task, 2) is None
    assert call.calls == 1
    stop2 = asyncio.Event()
    assert await retry_unless_stopped(Flaky(1), FAST, stop2) == "ok"


async def test_pause_ends_early_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(stop, 30)
    await pause(None, 0)
    assert loop.time() - started < 1
