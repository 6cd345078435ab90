"""Measurements 1 and 2: the ceiling and the join throughput, on the same topics.

One embedded broker. The workload (bench/workload.py) is published first through
`Publisher.publish` (timed separately, not counted). Then, each in its own process:
1. the ceiling consumer (bench/ceiling.py) reads the topics from the start;
2. the real worker process (the faust worker alone, as `sms-analytics worker --no-sink`) and a
   sink process (`sms-analytics sink`: the ClickHouse sink and the query endpoint, an empty
   warehouse) start together against the broker, as N workers and a sink run in production; the
   join run lasts from their start until every event is joined and every delivery is in
   ClickHouse (the sink committed the deliveries topic's final offsets, which it does only after
   writing the rows). The worker's JoinStats (events / busy seconds) are reported beside it. Then
   the warehouse's messages by status are compared with the workload's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import HASH_KEY, SEED, Component, cpu_seconds, log, start_broker, start_publisher, stop_all
from bench.workload import Workload, publish


async def run(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    messages = cfg["join_messages"]
    broker = await start_broker(cfg["partitions"])
    worker: Component | None = None
    sink: Component | None = None
    try:
        workload = Workload(messages, start_ms=int(time.time() * 1000) - 300_000, span_s=290.0, seed=SEED,
                            hash_key=HASH_KEY, push_size=cfg["push_size"])
        publisher = await start_publisher(broker.bootstrap)
        log(f"join: publishing {messages:,} messages ({2 * messages:,} events)")
        t0 = time.monotonic()
        try:
            pushes = await publish(publisher, workload)
        finally:
            await publisher.stop()
        publish_s = time.monotonic() - t0
        truth = workload.truth
        log(f"join: published {truth.events:,} events in {pushes:,} pushes, {publish_s:.1f}s")

        log("join: ceiling consumer")
        ceiling = await asyncio.to_thread(_ceiling, broker.bootstrap, truth.events, cfg)
        ceiling["expected_joined"] = truth.distinct_receipts
        ceiling["joined_matches"] = ceiling["joined"] == truth.distinct_receipts
        log(f"join: ceiling {ceiling['events_per_s']:,.0f} events/s")

        log("join: worker process + sink process")
        worker = Component("join-only", work, broker.bootstrap, name="join-worker").start()
        sink = Component("sink", work, broker.bootstrap, name="join-sink", expect_events=truth.events,
                         args=("--join-status", str(worker.status_path))).start()
        timeout = 300 + truth.events / 200
        status = await sink.wait_for(lambda s: s.get("done"), timeout, "all events joined and in ClickHouse",
                                     interval=0.2)
        worker_status = worker.status()
        status["t_start"] = min(status["t_start"], worker_status.get("t_start", status["t_start"]))
        status["join"] = worker_status.get("join", {})
        status["VmRSS"], status["VmHWM"] = worker_status.get("VmRSS", 0), worker_status.get("VmHWM", 0)
        cpu = cpu_seconds(worker.pid)
        result = _join_result(status, truth.as_dict(), cpu)
        result["sink_cpu_seconds"] = cpu_seconds(sink.pid)
        result.update(publish_seconds=publish_s, publish_events_per_s=truth.events / publish_s, pushes=pushes,
                      push_size=cfg["push_size"], partitions=cfg["partitions"], src=status.get("src"))
        ratio = (result["events_per_s"] / ceiling["events_per_s"]) if ceiling.get("events_per_s") else None
        result["ratio_to_ceiling"] = ratio
        log(f"join: {result['events_per_s']:,.0f} events/s ({result['seconds']:.1f}s), counts "
            f"{'match' if result['counts_match'] else 'MISMATCH'}")
        return {"ceiling": ceiling, "join": result}
    finally:
        await stop_all(worker, sink)
        broker.stop()


def _ceiling(bootstrap: str, events: int, cfg: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.ceiling", "--bootstrap", bootstrap, "--events", str(events),
                          "--timeout", str(120 + events / 200)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ceiling consumer failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _join_result(status: dict[str, Any], truth: dict[str, Any], cpu: float | None) -> dict[str, Any]:
    t_start, t_done = status["t_start"], status["t_done"]
    t_first = status.get("t_first_event") or t_start
    seconds = t_done - t_start
    events = truth["events"]
    wh = status.get("warehouse", {})
    expected = {"messages": truth["messages"], "delivered": truth["delivered"], "failed": truth["failed"],
                "pending": truth["pending"], "expired": 0, "receipts": truth["distinct_receipts"]}
    counts = {k: wh.get(k) for k in expected}
    mismatches = {k: {"expected": v, "got": counts[k]} for k, v in expected.items() if counts[k] != v}
    join_stats = status.get("join", {})
    return {
        "messages": truth["messages"], "events": events,
        "seconds": seconds, "events_per_s": events / seconds,
        "startup_seconds": t_first - t_start,
        "seconds_from_first_event": t_done - t_first,
        "events_per_s_from_first_event": events / (t_done - t_first) if t_done > t_first else None,
        "join_seconds": status.get("t_all_joined", t_done) - t_start,
        "join_stats": join_stats,
        "join_capacity_events_per_s": join_stats.get("capacity"),
        "sink": status.get("sink", {}),
        "deliveries_records": status.get("deliveries_records"),
        "worker_cpu_seconds": cpu,
        "events_per_cpu_s": events / cpu if cpu else None,
        "worker_rss_mib": status.get("VmRSS", 0) / 1024, "worker_hwm_mib": status.get("VmHWM", 0) / 1024,
        "truth": truth, "counts": counts, "expected": expected,
        "counts_match": not mismatches, "mismatches": mismatches,
    }
