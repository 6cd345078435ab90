"""Measurement 3: freshness at a steady offered load through the HTTP receivers.

Two child processes against a fresh embedded broker, as deployed: the receiver (`sms-analytics
receiver`) and the worker (faust worker + sink + query endpoint, `sms-analytics worker`), with
an empty warehouse. The driver offers `rate` events/s, half sends and half receipts, on a fixed
schedule (open loop: a push is posted at its time whether or not earlier ones were answered):
every 100 sends/receipts one push, a batch send of 100 numbers (Alibaba SendBatchSms, Tencent
SendSms, KX MT, in turn) and, one second later, the push of those 100 numbers' receipts
(SmsReport, status callback, Report). For 5 random receipts of every receipt push, the time from
the push's HTTP 200 to the first poll of `sms.messages` (through the worker's read-only query
endpoint, every 0.1 s) that shows the receipt's outcome is that receipt's freshness.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.common import HASH_KEY, SEED, Component, cpu_seconds, log, percentile, start_broker, stop_all
from bench.http_bodies import Bodies
from sms_analytics.model.providers import PROVIDERS

PUSH = 100
SAMPLES_PER_PUSH = 5
RECEIPT_LAG_S = 1.0
POLL_INTERVAL_S = 0.1
POLL_MAX_KEYS = 400
DRAIN_TIMEOUT_S = 30.0


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Tracker:
    def __init__(self, session: Any, query_url: str) -> None:
        self.session = session
        self.query_url = query_url
        self.accepted: dict[tuple[str, str, str], float] = {}  # sample -> time of HTTP 200
        self.seen: dict[tuple[str, str, str], float] = {}
        self.polls = 0
        self.poll_seconds: list[float] = []
        self.errors = 0

    def outstanding(self) -> list[tuple[str, str, str]]:
        return [k for k in self.accepted if k not in self.seen]

    async def poll_once(self) -> None:
        keys = self.outstanding()[:POLL_MAX_KEYS]
        if not keys:
            return
        ids = ", ".join(sorted({f"({_lit(p)}, {_lit(m)})" for p, m, _ in keys}))
        sql = (f"SELECT provider, message_id, phone_hash FROM sms.messages WHERE (provider, message_id) IN ({ids}) "
               f"AND reported_at IS NOT NULL")
        import msgspec

        started = time.monotonic()
        async with self.session.post(f"{self.query_url}/query?format=json", data=sql.encode()) as resp:
            text = await resp.read()
            if resp.status != 200:
                self.errors += 1
                return
        now = time.monotonic()
        self.polls += 1
        self.poll_seconds.append(now - started)
        wanted = set(keys)
        for line in text.splitlines():
            if line.strip():
                row = msgspec.json.decode(line)
                key = (row["provider"], row["message_id"], row["phone_hash"])
                if key in wanted and key not in self.seen:
                    self.seen[key] = now

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - a failed poll is counted and the poller keeps going
                self.errors += 1
            await asyncio.sleep(max(0.0, POLL_INTERVAL_S - (time.monotonic() - started)))


async def run(cfg: dict[str, Any], work: Path, mode: str = "split") -> dict[str, Any]:
    """mode "split": receiver and worker processes on an external broker (as deployed with Kafka);
    "up": one `sms-analytics up` process on embedded defaults (its own broker, the journal)."""
    import aiohttp

    from sms_analytics.model.phone import PhoneHasher

    rate = cfg["freshness_rate"]
    duration = cfg["freshness_seconds"]
    broker = await start_broker(cfg["partitions"]) if mode == "split" else None
    worker = receiver = None
    try:
        if broker is None:
            worker = receiver = Component("up", work, "", name="fresh-up").start()
        else:
            worker = Component("worker", work, broker.bootstrap, name="fresh-worker").start()
            receiver = Component("receiver", work, broker.bootstrap, name="fresh-receiver").start()
        wstatus = await worker.wait_ready()
        rstatus = await receiver.wait_ready()
        hasher = PhoneHasher(HASH_KEY.encode())
        bodies = Bodies(SEED + 3)
        rng = random.Random(SEED + 4)
        tick = PUSH / (rate / 2)  # one send push and one receipt push per tick
        n_pushes = max(1, round(duration / tick))
        lag = max(1, round(RECEIPT_LAG_S / tick))
        batches: dict[int, Any] = {}
        statuses: dict[int, int] = {}
        accepted_at: dict[tuple[str, int], float] = {}
        behind: list[float] = []
        async with aiohttp.ClientSession(rstatus["receiver_url"], connector=aiohttp.TCPConnector(limit=256)) as rs, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as qs:
            tracker = Tracker(qs, wstatus["query_url"])
            stop_polling = asyncio.Event()
            poller = asyncio.create_task(tracker.run(stop_polling))

            async def post(kind: str, j: int, path: str, body: bytes, samples: list[Any]) -> None:
                async with rs.post(path, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if resp.status in (200, 202):
                        now = time.monotonic()
                        accepted_at[(kind, j)] = now
                        for key in samples:
                            tracker.accepted[key] = now

            log(f"freshness: offering {rate:,} events/s for {duration:.0f}s")
            cpu_w0, cpu_r0 = cpu_seconds(worker.pid) or 0.0, cpu_seconds(receiver.pid) or 0.0
            tasks = []
            t0 = time.monotonic()
            for j in range(n_pushes + lag):
                at = t0 + j * tick
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind.append(-delay)
                if j < n_pushes:
                    b = bodies.batch(PROVIDERS[j % 3], PUSH, time.time())
                    batches[j] = b
                    tasks.append(asyncio.create_task(post("send", j, b.send_path, b.send_body, [])))
                if j >= lag:
                    b = batches.pop(j - lag)
                    picks = rng.sample(b.keys, min(SAMPLES_PER_PUSH, len(b.keys)))
                    samples = [(p, m, hasher(e164)) for p, m, e164 in picks]
                    tasks.append(asyncio.create_task(post("receipt", j - lag, b.receipt_path, b.receipt_body, samples)))
            await asyncio.gather(*tasks)
            t_offered = time.monotonic()
            deadline = t_offered + DRAIN_TIMEOUT_S
            while tracker.outstanding() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a count with a deadline
                await asyncio.sleep(0.1)
            stop_polling.set()
            await poller
            cpu_w = (cpu_seconds(worker.pid) or 0.0) - cpu_w0
            cpu_r = (cpu_seconds(receiver.pid) or 0.0) - cpu_r0

        latencies = [tracker.seen[k] - t for k, t in tracker.accepted.items() if k in tracker.seen]
        missing = len(tracker.accepted) - len(latencies)
        # A sample never seen counts with the time it waited until polling stopped (a lower bound).
        t_end = time.monotonic()
        padded = latencies + [t_end - t for k, t in tracker.accepted.items() if k not in tracker.seen]
        steady_start, steady_end = t0 + lag * tick, t0 + n_pushes * tick
        steady = [t for t in accepted_at.values() if steady_start <= t < steady_end]  # pushes answered in it
        window = steady_end - steady_start
        achieved = len(steady) * PUSH / window if window > 0 else None
        ok = sum(v for s, v in statuses.items() if s in (200, 202))
        result = {
            "rate_target": rate, "duration_s": duration, "push_size": PUSH, "receipt_lag_s": lag * tick,
            "offered_events": 2 * n_pushes * PUSH, "accepted_events": ok * PUSH, "http_statuses": statuses,
            "steady_window_s": window, "achieved_events_per_s": achieved,
            "driver_max_behind_s": max(behind) if behind else 0.0,
            "samples": len(tracker.accepted), "visible": len(latencies), "missing": missing,
            "p50_s": percentile(padded, 50), "p99_s": percentile(padded, 99), "max_s": max(padded) if padded else None,
            "p99_is_lower_bound": missing > 0.01 * len(padded), "drain_timeout_s": DRAIN_TIMEOUT_S,
            "poll_interval_s": POLL_INTERVAL_S, "polls": tracker.polls, "poll_errors": tracker.errors,
            "poll_p50_ms": (percentile(tracker.poll_seconds, 50) or 0) * 1000,
            "worker_cpu_seconds": cpu_w, "receiver_cpu_seconds": cpu_r,
            "join_stats": worker.status().get("join", {}), "sink": worker.status().get("sink", {}),
            "src": worker.status().get("src"), "mode": mode,
        }
        log(f"freshness ({mode}): p50 {result['p50_s']}, p99 {result['p99_s']} s over {len(tracker.accepted)} samples "
            f"({missing} missing), achieved {achieved or 0:,.0f} events/s")
        return {"freshness": result}
    finally:
        await stop_all(receiver, worker if worker is not receiver else None)
        if broker is not None:
            broker.stop()
