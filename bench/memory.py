"""Measurement 6: the worker's memory with messages pending in the join state.

The faust worker runs alone in a child process (Runtime with Parts(worker=True) only: no sink,
no warehouse, no receiver) against a fresh embedded broker. Its VmRSS (/proc/<pid>/status) is
read once it is ready and idle (the baseline), then N sends without receipts are published
(bench/workload.py, `sends_only`: every message stays `pending` in the join state), and VmRSS is
read again once the worker has consumed all of them and its RSS has settled. Growth per pending
message = (RSS after - baseline) / N; the figure for 1,000,000 pending is extrapolated from it
when the run is smaller.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import HASH_KEY, SEED, Component, log, proc_status, start_broker, start_publisher, stop_all
from bench.workload import Workload, publish

MIB = 1024 * 1024


async def _settled_rss(pid: int, seconds: float = 1.0, rounds: int = 10) -> dict[str, int]:
    """VmRSS once two readings `seconds` apart differ by less than 1% (at most `rounds` tries)."""
    last = proc_status(pid)
    for _ in range(rounds):
        await asyncio.sleep(seconds)
        now = proc_status(pid)
        if abs(now.get("VmRSS", 0) - last.get("VmRSS", 0)) <= 0.01 * max(1, last.get("VmRSS", 1)):
            return now
        last = now
    return last


async def run(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    pending = cfg["memory_pending"]
    broker = await start_broker(cfg["partitions"])
    worker: Component | None = None
    try:
        worker = Component("join-only", work, broker.bootstrap, name="memory-worker").start()
        await worker.wait_ready()
        await asyncio.sleep(1.0)
        baseline = await _settled_rss(worker.pid)
        log(f"memory: baseline RSS {baseline.get('VmRSS', 0) / 1024:.0f} MiB; publishing {pending:,} sends")
        workload = Workload(pending, start_ms=int(time.time() * 1000) - 240_000, span_s=230.0, seed=SEED + 1,
                            hash_key=HASH_KEY, push_size=cfg["push_size"], sends_only=True)
        publisher = await start_publisher(broker.bootstrap)
        try:
            await publish(publisher, workload)
        finally:
            await publisher.stop()
        await worker.wait_for(lambda s: s.get("join", {}).get("events", 0) >= pending, 120 + pending / 500,
                              "all sends consumed", interval=0.2)
        after = await _settled_rss(worker.pid)
        status = worker.status()
        base_b = baseline.get("VmRSS", 0) * 1024
        after_b = after.get("VmRSS", 0) * 1024
        growth = (after_b - base_b) / pending
        at_1m = base_b + growth * 1_000_000
        log(f"memory: {after_b / MIB:.0f} MiB with {pending:,} pending ({growth:.0f} B/message)")
        return {"memory": {
            "pending": pending, "events_consumed": status.get("join", {}).get("events"),
            "baseline_rss_mib": base_b / MIB, "rss_mib": after_b / MIB, "hwm_mib": after.get("VmHWM", 0) / 1024,
            "growth_bytes_per_pending": growth,
            "rss_mib_at_1m_pending": after_b / MIB if pending == 1_000_000 else at_1m / MIB,
            "extrapolated": pending != 1_000_000,
            "src": status.get("src"),
        }}
    finally:
        await stop_all(worker)
        broker.stop()
