"""Measurement 4: HTTP ingest of one receiver process.

The receiver runs alone in a child process (Runtime with Parts(receiver=True) only, as
`sms-analytics receiver`) against a fresh embedded broker. The driver posts receipt pushes of
100 records in the providers' own formats (Alibaba SmsReport, Tencent status callback, KX
Report, in turn) from `concurrency` connections, each posting its next push when the previous
one is answered. Every push must be answered 200 (the broker acknowledged all of its records).
Reported: receipts accepted per second of wall time, per second of the receiver's CPU time, and
the p50/p99 time per request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from bench.common import SEED, Component, cpu_seconds, log, percentile, start_broker, stop_all
from bench.http_bodies import Bodies
from sms_analytics.model.providers import PROVIDERS

RECEIPTS_PER_PUSH = 100
DISTINCT_BODIES = 60
WARMUP_REQUESTS = 30


async def run(cfg: dict[str, Any], work: Path, mode: str = "receiver") -> dict[str, Any]:
    """mode "receiver": the receiver alone on an external broker (answers once the broker acked);
    "up": one `sms-analytics up` process on embedded defaults (answers once the journal committed;
    the same process also joins and writes what it takes in)."""
    import aiohttp

    requests = cfg["ingest_requests"]
    concurrency = cfg["ingest_concurrency"]
    broker = await start_broker(cfg["partitions"]) if mode == "receiver" else None
    receiver: Component | None = None
    try:
        if broker is None:
            receiver = Component("up", work, "", name="ingest-up").start()
        else:
            receiver = Component("receiver", work, broker.bootstrap, name="ingest-receiver").start()
        status = await receiver.wait_ready()
        url = status["receiver_url"]
        bodies = Bodies(SEED + 2)
        now = time.time()
        pushes = [(b.receipt_path, b.receipt_body)
                  for b in (bodies.batch(PROVIDERS[k % 3], RECEIPTS_PER_PUSH, now - 60 + k * 0.5)
                            for k in range(DISTINCT_BODIES))]
        avg_body = sum(len(b) for _, b in pushes) / len(pushes)
        connector = aiohttp.TCPConnector(limit=concurrency * 2)
        async with aiohttp.ClientSession(url, connector=connector) as session:
            await _drive(session, pushes, WARMUP_REQUESTS, concurrency)
            cpu0 = cpu_seconds(receiver.pid) or 0.0
            t0 = time.monotonic()
            latencies, failures = await _drive(session, pushes, requests, concurrency)
            wall = time.monotonic() - t0
            cpu = (cpu_seconds(receiver.pid) or 0.0) - cpu0
        ok = len(latencies)
        receipts = ok * RECEIPTS_PER_PUSH
        ms = [x * 1000 for x in latencies]
        result = {
            "requests": requests, "ok": ok, "failed": failures, "receipts_per_push": RECEIPTS_PER_PUSH,
            "concurrency": concurrency, "avg_body_bytes": round(avg_body), "seconds": wall,
            "receipts_per_s": receipts / wall, "receiver_cpu_seconds": cpu,
            "receipts_per_cpu_s": receipts / cpu if cpu > 0 else None,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms) if ms else None,
            "src": receiver.status().get("src"), "mode": mode,
        }
        log(f"ingest: {result['receipts_per_s']:,.0f} receipts/s, p99 {result['p99_ms']:.1f} ms")
        return {"ingest": result}
    finally:
        await stop_all(receiver)
        if broker is not None:
            broker.stop()


async def _drive(session: Any, pushes: list[tuple[str, bytes]], requests: int,
                 concurrency: int) -> tuple[list[float], int]:
    """`requests` posts from `concurrency` closed-loop connections; (latencies of 200s, failures)."""
    latencies: list[float] = []
    failures = 0
    counter = itertools.count()

    async def one_connection() -> None:
        nonlocal failures
        while True:
            n = next(counter)
            if n >= requests:
                return
            path, body = pushes[n % len(pushes)]
            started = time.perf_counter()
            async with session.post(path, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return latencies, failures
