"""`make run`: the pipeline on embedded defaults, driven by simulated traffic from all three
providers, then a summary read back from the warehouse. Two lanes run side by side: provider
pushes to our own HTTP endpoints (`simulate.driver`), and messages sent through the provider
simulators with the real clients whose receipts our pull feeds collect (`simulate.lane`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog

from sms_analytics.dashboards.report import time_range, write_report
from sms_analytics.dashboards.summary import (
    collect,
    collect_metadata,
    collect_provider_side,
    render,
    render_metadata,
    render_provider_side,
)
from sms_analytics.runtime import Runtime
from sms_analytics.settings import Settings
from sms_analytics.simulate.driver import drive
from sms_analytics.simulate.lane import ProviderLane

log = structlog.get_logger(__name__)
DEMO_TEMPLATE_NAMES = Path(__file__).resolve().parent / "simulate" / "template_names.csv"  # unless SMS_TEMPLATE_NAMES


def _expected(truth: dict[str, Any]) -> dict[str, dict[str, int]]:
    providers = truth.get("providers", truth)
    return {
        name: {k: int(counts[k]) for k in ("sends", "delivered", "failed", "pending")}
        for name, counts in providers.items()
        if isinstance(counts, dict) and "sends" in counts
    }


def _observed(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        p["provider"]: {"sends": int(p["sent"]), "delivered": int(p["delivered"]), "failed": int(p["failed"]),
                        "pending": int(p["pending"])}
        for p in summary["providers"]
    }


def _merge(*truths: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for truth in truths:
        for provider, counts in truth.items():
            mine = out.setdefault(provider, {"sends": 0, "delivered": 0, "failed": 0, "pending": 0})
            for key in mine:
                mine[key] += int(counts.get(key, 0))
    return out


async def run_demo(settings: Settings, *, duration: float, rate: float, seed: int,
                   quota_left: int | None = None) -> bool:
    """`quota_left`: the quota-low scenario (Tencent's packages leave only that many messages)."""
    lane = ProviderLane()
    if quota_left is not None:
        lane.tencent.set_quota_left(quota_left)
    await lane.start()
    settings = Settings(_env_file=None, **{**settings.model_dump(), **lane.settings(),
                                           "sms_template_names": settings.sms_template_names or DEMO_TEMPLATE_NAMES})
    runtime = Runtime(settings)
    try:
        await runtime.start()
        await runtime.wait_ready(timeout=90)
        assert runtime.warehouse is not None and runtime.join_stats is not None
        print(f"pipeline ready: receiver {runtime.receiver_url}, broker {runtime.bootstrap}; "
              f"driving {duration:.0f}s of simulated traffic at {rate:.0f} messages/s", flush=True)
        started, started_at = time.monotonic(), datetime.now(UTC)
        truth, _ = await asyncio.gather(
            drive(runtime.receiver_url, duration=duration, rate=rate, token=settings.callback_token, seed=seed),
            lane.drive(runtime.receiver_url, duration=duration, rate=max(1.0, rate / 10), token=settings.callback_token,
                       seed=seed),
        )
        driven = time.monotonic() - started
        expected = _merge(_expected(truth.to_dict()), lane.ground_truth())
        summary, caught_up = await _wait_caught_up(runtime, expected, timeout=30.0)
        stats = runtime.join_stats
        print()
        print(render(summary))
        print()
        print(f"join: {stats.events} events in {driven:.1f}s of traffic "
              f"(offered {stats.events / driven:.0f} events/s); processing capacity "
              f"{stats.capacity:.0f} events/s (events / time spent in the join)")
        print(f"sink: {runtime.sink.stats.rows_written if runtime.sink else 0} rows written in "
              f"{runtime.sink.stats.batches if runtime.sink else 0} batches")
        feeds = ", ".join(f"{f.name} {getattr(f.stats, 'records', getattr(f.stats, 'events', 0))}" for f in runtime.feeds)
        print(f"provider-API lane (sent through the simulators): {msgspec.json.encode(lane.ground_truth()).decode()}")
        print(f"pull feeds (records): {feeds}")
        print(render_metadata(await asyncio.to_thread(collect_metadata, runtime.warehouse.query)))
        print(render_provider_side(await asyncio.to_thread(collect_provider_side, runtime.warehouse.query),
                                   settings.sms_quota_alert_hours))
        print(f"ground truth ({'matches the warehouse' if caught_up else 'DOES NOT match the warehouse'}): "
              f"{msgspec.json.encode(expected).decode()}")
        print(await _conversions_line(runtime, truth.to_dict(), started_at))
        print("the data stays queryable: sms-analytics sql \"SELECT status, count() FROM sms.messages GROUP BY status\"")
        print(f"report: {await _report(runtime, settings.sms_data_dir / 'report.html', started_at)}")
        return caught_up
    finally:
        await runtime.stop()
        await lane.stop()


CONVERTED = ("SELECT provider, countIf(converted_at IS NOT NULL) FROM sms.messages "
             "WHERE toStartOfMinute(sent_at) >= toDateTime({start:UInt32}) GROUP BY provider")


async def _conversions_line(runtime: Runtime, truth: dict[str, Any], started_at: datetime,
                            timeout: float = 20.0) -> str:
    """Conversions posted (simulate/conversions.py) against the messages the warehouse has converted, waited
    for a few rollup rounds: the window form is resolved there (sinks/rollups.py)."""
    assert runtime.warehouse is not None
    expected = {p: int(c.get("converted", 0)) for p, c in truth.items() if int(c.get("converted", 0))}
    posted = sum(int(c.get("conversions_posted", 0)) for c in truth.values())
    early = sum(int(c.get("conversions_before_receipt", 0)) for c in truth.values())
    params = {"start": int(started_at.replace(second=0, microsecond=0).timestamp())}
    deadline = time.monotonic() + timeout
    while True:
        _, rows = await asyncio.to_thread(runtime.warehouse.query, CONVERTED, params=params)
        observed = {str(r[0]): int(r[1]) for r in rows if int(r[1])}
        if observed == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    verdict = "matches the warehouse" if observed == expected else f"DOES NOT match the warehouse {observed}"
    return (f"conversions: {posted} posted ({early} before their receipt, the rest after; repeats counted once), "
            f"converted messages {msgspec.json.encode(expected).decode()} ({verdict})")


async def _report(runtime: Runtime, path: Path, started_at: datetime) -> str:
    """The overview dashboard as HTML for the run (from the minute the traffic began to now), through
    the runtime's open warehouse: a chDB path is opened by one process once."""
    assert runtime.warehouse is not None
    start = started_at.replace(second=0, microsecond=0)
    try:
        await _rollups_caught_up(runtime, start, timeout=15.0)
        rng = time_range(start, datetime.now(UTC).replace(microsecond=0))
        return str(await asyncio.to_thread(write_report, runtime.warehouse.query, path, rng))
    except Exception as exc:  # noqa: BLE001  (the run's result stands without its report)
        log.warning("demo.report_failed", error=str(exc))
        return f"not written ({exc})"


ROLLUP_COUNTS = ("SELECT sum(sent), sum(delivered), sum(failed), sum(expired), sum(pending) FROM sms.rollup_minute "
                 "WHERE minute >= toDateTime({start:UInt32})")
MESSAGE_COUNTS = ("SELECT count(), countIf(status = 'delivered'), countIf(status = 'failed'), countIf(status = 'expired'), "
                  "countIf(status = 'pending') FROM sms.messages WHERE toStartOfMinute(sent_at) >= toDateTime({start:UInt32})")


async def _rollups_caught_up(runtime: Runtime, start: datetime, timeout: float) -> bool:
    """Wait (a few seconds: SMS_ROLLUP_SECONDS) until the minute rollups that the panels read agree with
    sms.messages, so the report's charts and its totals tell the same story."""
    assert runtime.warehouse is not None
    params = {"start": int(start.timestamp())}
    deadline = time.monotonic() + timeout
    while True:
        rolled = await asyncio.to_thread(runtime.warehouse.query, ROLLUP_COUNTS, params=params)
        counted = await asyncio.to_thread(runtime.warehouse.query, MESSAGE_COUNTS, params=params)
        if [int(v or 0) for v in rolled[1][0]] == [int(v or 0) for v in counted[1][0]]:
            return True
        if time.monotonic() > deadline:
            log.warning("demo.rollups_behind", rollups=rolled[1][0], messages=counted[1][0])
            return False
        await asyncio.sleep(0.5)


async def _wait_caught_up(runtime: Runtime, expected: dict[str, dict[str, int]], timeout: float) -> tuple[dict[str, Any], bool]:
    assert runtime.warehouse is not None
    deadline = time.monotonic() + timeout
    while True:
        summary = await asyncio.to_thread(collect, runtime.warehouse.query)
        if _observed(summary) == expected:
            return summary, True
        if time.monotonic() > deadline:
            log.warning("demo.not_caught_up", expected=expected, observed=_observed(summary))
            return summary, False
        await asyncio.sleep(0.5)
