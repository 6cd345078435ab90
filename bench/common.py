"""What the measurements share: sizes per scale, the component child processes, the embedded
broker, /proc readings and percentiles.

Nothing here imports `sms_analytics` at module level: the orchestrator (`python -m bench`) runs
without it, and every section runs in its own process with the source tree under test first on
PYTHONPATH (`--src`), so the package a section imports is the one being measured.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HASH_KEY = "bench-phone-hash-key-0123456789abcdef"  # not a secret: synthetic numbers only
SEED = 20_240_611

# --- sizes --------------------------------------------------------------------------------------

FULL: dict[str, int | float] = {  # int or float: the sizes keep the type of the full one
    "join_messages": 1_000_000,  # 2,000,000 events: sends + receipts
    "freshness_rate": 5_000,  # events/s offered (sends + receipts)
    "freshness_seconds": 120.0,
    "ingest_requests": 2_000,  # 100-receipt pushes
    "query_messages": 10_000_000,
    "memory_pending": 1_000_000,
    "soak_seconds": 600.0,  # 10 minutes of traffic through `sms-analytics up`
}
FLOORS = {  # the smallest sizes that still exercise every code path
    "join_messages": 500,
    "freshness_seconds": 3.0,
    "ingest_requests": 20,
    "query_messages": 10_000,
    "memory_pending": 500,
    "soak_seconds": 8.0,
}
SOAK_QUICK_S = 120.0  # QUICK=1 (and any scale >= 0.1): a plateau needs at least 2 minutes to show
SOAK_RATE = 400.0  # simulator messages/s: about 810 events/s (a send and ~1.02 receipts per message)


def sizes(scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, full in FULL.items():
        if name == "freshness_rate":
            out[name] = full  # the rate is the condition of the measurement; only its duration scales
            continue
        value = full * scale
        if name == "soak_seconds" and scale >= 0.1:
            value = max(SOAK_QUICK_S, value)
        floor = FLOORS[name]
        out[name] = max(floor, round(value, 1) if isinstance(full, float) else int(value))
    soak = out["soak_seconds"]
    out.update(soak_rate=SOAK_RATE, soak_chunk_seconds=60.0, soak_interval=5.0 if soak >= 60 else 1.0,
               soak_warehouse_every=6 if soak >= 60 else 2)
    # the smoke test (scale < 0.01) restarts once over one history: it checks the harness, not the figure
    out.update(restart_runs=3 if scale >= 0.01 else 1, push_size=100, ingest_concurrency=8, query_runs=5, partitions=int(os.environ.get("KAFKA_PARTITIONS", "4")))
    return out


# --- numbers ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) of a process from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (its own threads, not its children), from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the embedded broker ------------------------------------------------------------------------

BROKERS = ("embedded", "apache")


def bench_broker() -> str:
    """The broker this measurement runs on: $BENCH_BROKER (set by `python -m bench --broker`),
    embedded by default."""
    name = os.environ.get("BENCH_BROKER", "embedded")
    if name not in BROKERS:
        raise ValueError(f"BENCH_BROKER={name!r}: not one of {', '.join(BROKERS)}")
    return name


async def start_broker(partitions: int) -> Any:
    """A fresh broker with the pipeline's topics created: the embedded one (memory only), or with
    BENCH_BROKER=apache a single-node Apache Kafka (bench/__main__.py fetched its jars)."""
    from sms_analytics.broker.admin import ensure_topics
    from sms_analytics.broker.embedded import EmbeddedBroker

    if bench_broker() == "apache":
        from sms_analytics.broker.apache import ApacheKafkaBroker

        broker: Any = ApacheKafkaBroker()
    else:
        broker = EmbeddedBroker()
    await broker.start()
    await ensure_topics(broker.bootstrap, partitions, 1)
    return broker


async def start_publisher(bootstrap: str) -> Any:
    from sms_analytics.sources.producer import Publisher

    publisher = Publisher(bootstrap, send_timeout=60.0)
    await publisher.start()
    return publisher


# --- component processes ------------------------------------------------------------------------

ROLES = ("worker", "join-only", "receiver")


@dataclass
class Component:
    """One pipeline process (`python -m bench.child ROLE`): a Runtime with some Parts, reporting
    its state to a JSON status file."""

    role: str
    work: Path
    bootstrap: str
    name: str = ""
    expect_events: int = 0
    extra_env: dict[str, str] | None = None
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.role
        self.dir = self.work / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_path = self.dir / "status.json"
        self.log_path = self.dir / "child.log"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SMS_DATA_DIR": str(self.dir / "data"),
            "SMS_HTTP_HOST": "127.0.0.1", "SMS_HTTP_PORT": "0",
            "SMS_QUERY_HOST": "127.0.0.1", "SMS_QUERY_PORT": "0",
            "SMS_PHONE_HASH_KEY": HASH_KEY,
            "SMS_APP_ID": f"bench-{self.name}",
            "SMS_LOG_LEVEL": os.environ.get("BENCH_CHILD_LOG_LEVEL", "WARNING"),
        }
        env.pop("CLICKHOUSE_URL", None)
        env.pop("SMS_CALLBACK_TOKEN", None)
        env.update(self.extra_env or {})
        return env

    def start(self) -> Component:
        cmd = [sys.executable, "-m", "bench.child", self.role, "--status", str(self.status_path)]
        if self.expect_events:
            cmd += ["--expect-events", str(self.expect_events)]
        cmd += list(self.args)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=self.env(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    async def wait_for(self, predicate: Any, timeout: float, what: str, interval: float = 0.05) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            status = self.status()
            if status and predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {what} not reached in {timeout:.0f}s; status {status}\n{self.log_tail()}")
            await asyncio.sleep(interval)

    async def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        return await self.wait_for(lambda s: s.get("ready"), timeout, "ready")

    def stop(self, timeout: float = 30.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.proc = proc  # keep pid/returncode readable
        return proc.returncode


async def stop_all(*components: Component | None) -> None:
    for c in components:
        if c is not None and c.proc is not None:
            await asyncio.to_thread(c.stop)


def use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
