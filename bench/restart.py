"""The restart measurement: from starting a worker over an existing history to its first joined event.

One broker (bench/common.py `start_broker`: embedded, or Apache Kafka with BENCH_BROKER=apache).
For each history size: the workload is published and joined by a first worker (the faust worker
alone, as `sms-analytics worker --no-sink`), which leaves its states in the batch changelog and its
offsets committed; it is stopped (SIGTERM). Then, `restart_runs` times: a small probe workload is
published while no worker runs, and a worker with the same application id (same consumer group,
same changelog, same data directory) starts; the figure is the time from its start to its first
joined probe event (recovery of the history + the group join + the first fetch), beside the time
until all probe events are joined. The worker is stopped again before the next run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import (
    HASH_KEY,
    SEED,
    Component,
    bench_broker,
    log,
    start_broker,
    start_publisher,
    stop_all,
)
from bench.workload import Workload, publish

PROBE_MESSAGES = 200


def history_sizes(cfg: dict[str, Any]) -> list[int]:
    """Two history sizes (messages): a tenth of the join's workload and the join's workload."""
    big = cfg["join_messages"]
    if cfg["restart_runs"] < 3:  # the smoke test: one history
        return [big]
    return sorted({max(500, big // 10), big})


async def _publish(bootstrap: str, messages: int, seed: int, push_size: int) -> int:
    """Publish a workload; returns its events."""
    workload = Workload(messages, start_ms=int(time.time() * 1000) - 300_000, span_s=290.0, seed=seed,
                        hash_key=HASH_KEY, push_size=push_size)
    publisher = await start_publisher(bootstrap)
    try:
        await publish(publisher, workload)
    finally:
        await publisher.stop()
    return workload.truth.events


def _worker(work: Path, bootstrap: str, name: str, app_id: str, events: int) -> Component:
    """A join-only worker of application `app_id` (one data directory per application)."""
    env = {"SMS_APP_ID": app_id, "SMS_DATA_DIR": str(work / app_id / "data")}
    return Component("join-only", work, bootstrap, name=name, expect_events=events, extra_env=env)


async def _joined(worker: Component, events: int) -> dict[str, Any]:
    """Start the worker and wait until it joined `events` events; its start, first and last event."""
    worker.start()
    try:
        status = await worker.wait_for(lambda s: s.get("done"), 300 + events / 200, f"{events:,} events joined",
                                       interval=0.05)
    finally:
        await stop_all(worker)
    return {"first_event_s": status["t_first_event"] - status["t_start"],
            "all_joined_s": status["t_all_joined"] - status["t_start"],
            "started_s": (status.get("t_started") or status["t_start"]) - status["t_start"],
            "states": status.get("states")}


async def _history_run(cfg: dict[str, Any], work: Path, bootstrap: str, messages: int) -> dict[str, Any]:
    app_id = f"bench-restart-{messages}"
    log(f"restart: history of {messages:,} messages")
    history_events = await _publish(bootstrap, messages, SEED, cfg["push_size"])
    first = await _joined(_worker(work, bootstrap, f"{app_id}-0", app_id, history_events), history_events)
    log(f"restart: history of {history_events:,} events joined in {first['all_joined_s']:.1f}s")
    runs = []
    for i in range(1, cfg["restart_runs"] + 1):
        probe_events = await _publish(bootstrap, PROBE_MESSAGES, SEED + i, cfg["push_size"])
        run = await _joined(_worker(work, bootstrap, f"{app_id}-{i}", app_id, probe_events), probe_events)
        log(f"restart: {run['first_event_s']:.2f}s to the first joined event (all {run['all_joined_s']:.2f}s), "
            f"{run['states']:,} states after {first['states']:,}")
        runs.append(run)
    firsts = [r["first_event_s"] for r in runs]
    return {"history_messages": messages, "history_events": history_events, "first_join_s": first["all_joined_s"],
            "runs": runs, "median_first_event_s": statistics.median(firsts),
            "median_all_joined_s": statistics.median(r["all_joined_s"] for r in runs)}


async def run(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    broker = await start_broker(cfg["partitions"])
    try:
        histories = [await _history_run(cfg, work, broker.bootstrap, n) for n in history_sizes(cfg)]
    finally:
        broker.stop()
    medians = [h["median_first_event_s"] for h in histories]
    return {"restart": {"broker": bench_broker(), "histories": histories, "store": "memory://",
                        "median_first_event_s": max(medians), "probe_messages": PROBE_MESSAGES}}
