"""One pipeline process of a measurement: `python -m bench.child ROLE --status FILE`.

Roles (the same Runtime and Parts as `sms-analytics worker|receiver`):
  worker     faust worker + ClickHouse sink + read-only query endpoint (`sms-analytics worker`)
  join-only  the faust worker alone (no sink, no warehouse): the memory measurement, and the
             join run's worker (`sms-analytics worker --no-sink`)
  sink       the ClickHouse sink and the query endpoint (`sms-analytics sink`): the join run's sink,
             which watches for the end of the run, reading the worker's status file (--join-status)
  receiver   the HTTP receiver alone (`sms-analytics receiver`)
  up         everything in one process (`sms-analytics up`); without KAFKA_BOOTSTRAP_SERVERS it
             starts the embedded broker and journals its input

Configuration comes from the environment (KAFKA_BOOTSTRAP_SERVERS, SMS_DATA_DIR, ...). Every 0.1 s
the process writes its state to the status file: readiness, URLs, the join's JoinStats, the
sink's stats, its RSS. With `--expect-events N` (worker) it also watches for the end of a join
run: the join has processed N events, the deliveries topic's end offsets stopped moving and the
sink has committed them (its offsets are committed only after the rows are written), i.e. every
joined state is in ClickHouse; it then counts the warehouse's messages by status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.common import proc_status, use_uvloop

SETTLE_SECONDS = 1.0  # deliveries' end offsets unchanged this long (and committed) = the run is over
COUNT_SQL = """
SELECT count() AS messages, countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed,
       countIf(status = 'pending') AS pending, countIf(status = 'expired') AS expired,
       sum(receipt_count) AS receipts, countIf(sent_at IS NULL) AS without_send
FROM sms.messages
"""


def _plain(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    # Shallow: dataclasses.asdict deep-copies every field, and JoinStats.detector holds the alert
    # windows (millions of entries in a join run): copying them 10 times a second took more CPU than
    # the join itself, in the very process being measured.
    raw = {f.name: getattr(obj, f.name) for f in fields(obj)} if is_dataclass(obj) else dict(vars(obj))
    return {k: v for k, v in raw.items() if isinstance(v, (int, float, str, bool)) or v is None}


class Child:
    def __init__(self, role: str, status_path: Path, expect_events: int, join_status: Path | None = None) -> None:
        from sms_analytics.runtime import Parts

        self.role = role
        self.status_path = status_path
        self.expect_events = expect_events
        self.join_status = join_status
        self.parts = {
            "worker": Parts(receiver=False, worker=True, sink=True, query=True),
            "join-only": Parts(receiver=False, worker=True, sink=False, query=False),
            "sink": Parts(receiver=False, worker=False, sink=True, query=True),
            "receiver": Parts(receiver=True, worker=False, sink=False, query=False),
            "up": Parts(),  # `sms-analytics up`: everything; with no bootstrap, the embedded broker and journal
        }[role]
        self.runtime: Any = None
        self.state: dict[str, Any] = {"role": role, "pid": os.getpid(), "phase": "starting", "ready": False}
        self.stop_event = asyncio.Event()

    def write(self) -> None:
        rt = self.runtime
        s = self.state
        if rt is not None:
            if rt.join_stats is not None:
                stats = _plain(rt.join_stats)
                stats["capacity"] = rt.join_stats.capacity
                s["join"] = stats
            if rt.sink is not None:
                s["sink"] = _plain(rt.sink.stats)
            s["receiver_url"] = rt.receiver_url
            s["query_url"] = rt.query_url
            try:
                s["ready"] = s["phase"] == "running" and all(rt.readiness().values())
            except Exception:  # noqa: BLE001 - a readiness probe failing means not ready
                s["ready"] = False
        s.update(proc_status(os.getpid()))
        s["t_written"] = time.monotonic()
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(s, default=str))
        os.replace(tmp, self.status_path)

    async def report(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        import sms_analytics
        from sms_analytics.runtime import Runtime
        from sms_analytics.settings import Settings

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_event.set)
        settings = Settings(_env_file=None)
        self.state["src"] = str(Path(sms_analytics.__file__).resolve().parent)  # noqa: ASYNC240 - once, at start-up
        self.runtime = Runtime(settings, self.parts)
        reporter = asyncio.create_task(self.report())
        self.state["t_start"] = time.monotonic()
        try:
            await self.runtime.start()
            self.state["t_started"] = time.monotonic()
            self.state["phase"] = "running"
            if self.expect_events:
                await asyncio.wait([asyncio.create_task(self.watch_join()), asyncio.create_task(self.stop_event.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
            await self.stop_event.wait()
        except Exception as exc:
            self.state["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.state["phase"] = "stopping"
            self.write()
            try:
                await self.runtime.stop()
            finally:
                reporter.cancel()
                self.state["phase"] = "stopped"
                self.write()

    async def watch_join(self) -> None:
        """The end of a join run (see the module docstring); the time it was reached is when the
        sink's committed offsets first covered the final end offsets."""
        from aiokafka import TopicPartition

        from sms_analytics.model import topics

        rt = self.runtime
        sink = rt.sink
        while (events := self._joined_events()) < self.expect_events:
            if not self.state.get("t_first_event") and events:
                self.state["t_first_event"] = time.monotonic()
            await asyncio.sleep(0.02)
        self.state["t_all_joined"] = time.monotonic()
        if not self.state.get("t_first_event"):
            self.state["t_first_event"] = self.state["t_all_joined"]
        if sink is None:  # join-only (the restart measurement): no warehouse to wait for
            self.state["states"] = self._states()  # the recovered history's states + the new ones
            self.state["done"] = True
            return
        while not sink.ready:  # noqa: ASYNC110 - its consumer started (a join finished before the sink started); the sink's plain flag, no event to await
            await asyncio.sleep(0.02)
        partitions = sorted(sink.consumer.partitions_for_topic(topics.DELIVERIES) or [])
        tps = [TopicPartition(topics.DELIVERIES, p) for p in partitions]
        last_ends: dict[Any, int] | None = None
        caught_up_at: float | None = None
        changed_at = time.monotonic()
        while True:
            now = time.monotonic()
            ends = await sink.consumer.end_offsets(tps)
            if ends != last_ends:
                last_ends, changed_at, caught_up_at = ends, now, None
            if caught_up_at is None:
                committed = [await sink.consumer.committed(tp) or 0 for tp in tps]
                if all(c >= ends[tp] for c, tp in zip(committed, tps, strict=True)):
                    caught_up_at = time.monotonic()
            if caught_up_at is not None and now - changed_at >= SETTLE_SECONDS:
                break
            await asyncio.sleep(0.05)
        self.state["t_done"] = caught_up_at
        assert last_ends is not None  # the loop's first round sets it
        self.state["deliveries_records"] = sum(last_ends.values())
        columns, rows = await asyncio.to_thread(rt.warehouse.query, COUNT_SQL)
        self.state["warehouse"] = {c: int(v or 0) for c, v in zip(columns, rows[0], strict=True)}
        self.state["done"] = True


    def _states(self) -> int:
        """The states in the join's table store (this process's worker)."""
        from sms_analytics.streams.state import TABLE

        return len(self.runtime.app.tables[TABLE].store.data)

    def _joined_events(self) -> int:
        """Events joined so far: this process's join, or the worker's (its status file)."""
        if self.join_status is None:
            return self.runtime.join_stats.events
        try:
            return int(json.loads(self.join_status.read_text()).get("join", {}).get("events", 0))
        except (FileNotFoundError, json.JSONDecodeError):
            return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("role", choices=("worker", "join-only", "sink", "receiver", "up"))
    parser.add_argument("--join-status", type=Path, default=None)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--expect-events", type=int, default=0)
    args = parser.parse_args()
    from sms_analytics import logs

    logs.configure(os.environ.get("SMS_LOG_LEVEL", "WARNING"))
    use_uvloop()
    child = Child(args.role, args.status, args.expect_events, args.join_status)
    if not os.environ.get("BENCH_PROFILE"):
        asyncio.run(child.run())
        return
    import cProfile  # BENCH_PROFILE=1: the process's profile, written beside its status file

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(child.run())
    finally:
        profiler.disable()
        profiler.dump_stats(str(args.status.with_suffix(".prof")))


if __name__ == "__main__":
    main()
