"""Measurement 7: soak. `sms-analytics up` on embedded defaults under sustained traffic, and the
resident memory of its whole process tree over time.

`python -m sms_analytics.cli up` runs as a user starts it: a fresh SMS_DATA_DIR, no
KAFKA_BOOTSTRAP_SERVERS and no CLICKHOUSE_URL (so the embedded Tansu broker, a child process,
and chDB), free ports (SMS_HTTP_PORT=0, SMS_QUERY_PORT=0; the URLs are read from its
`runtime.started` log line), its log in a file. Once its receiver's /healthz answers 200, the
traffic is the project's simulator, `sms-analytics simulate --url <receiver> --rate R`, in the
providers' own formats: one simulator process per `chunk` seconds of traffic (60 s at full
size), each started on schedule (1 s early, for its own start-up) whether or not the previous
one has finished, so the load stays steady and one failed chunk does not end the soak.
R = 400 messages/s is about 810 events/s: a send record per message and a receipt for about
97% of them, 5% of the receipts posted twice. Every event a simulator counts was answered with
the provider's documented success reply (it stops at the first other reply).

Every `interval` seconds (5 s at full size) the process tree is read from /proc: the `up`
process and every descendant (by ppid; the broker has its own session but is still a child),
VmRSS of each. total = the sum over the tree, broker = the Tansu process(es), pipeline = the
`up` Python process itself. Every `warehouse_every` samples the warehouse counts are read
through the query endpoint (messages, sends and receipts visible).

Figures, over the traffic window [0, T] (t = 0 at the first simulator's start):
  growth over the second half = (the peak of total RSS over t in (T/2, T] - its peak over
  [0, T/2]) / the latter: the envelope. On embedded defaults the broker is rotated when its memory
  passes a bound, so the total is a sawtooth whose period (minutes) is longer than any short
  window: a point figure would depend on where in its cycle the window falls, while the envelope
  says whether it still rises, and it is what the budget is about. The same for the broker and
  the pipeline process alone. Also kept, as point figures: mid = median of total RSS over t in
  [T/2 - w, T/2], end = the same over [T - w, T], w = min(30 s, T/4), growth_point = (end - mid) / mid.
  peak = the largest total RSS sample.
Achieved events/s = the events accepted by all simulators / T (in a steady state the tail of
the last chunk, posted after T, equals the tail a chunk before the first would have posted).
Targets: growth <= 10%, peak <= the memory budget (SMS_MEMORY_BUDGET_MB, default 1536 MiB).

At the end `up` gets SIGTERM (then SIGKILL of its group after a timeout) and every broker
process seen in the samples is checked gone (SIGTERM/SIGKILL of its group if not). The `up` and
simulator processes also get SIGTERM from the kernel if this section's process dies
(PR_SET_PDEATHSIG), so a timed-out section does not leave them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, loadavg, log

MIB = 1024.0
DEFAULT_BUDGET_MB = 1536
CHUNK_LEAD_S = 1.0  # a simulator starts (imports, plans its chunk) in about this long
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
WAREHOUSE_SQL = ("SELECT count() AS messages, countIf(sent_at IS NOT NULL) AS sent, "
                 "sum(receipt_count) AS receipts FROM sms.messages")


# --- /proc ----------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, starttime) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(root: int) -> list[int]:
    """`root` and all its descendants (by ppid), root first."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def is_broker(pid: int) -> bool:
    return _comm(pid).startswith("tansu")


@dataclass
class Sample:
    t: float
    total_mib: float
    broker_mib: float
    pipeline_mib: float
    other_mib: float
    processes: int

    def row(self) -> list[float]:
        return [round(self.t, 1), round(self.total_mib, 1), round(self.broker_mib, 1), round(self.pipeline_mib, 1),
                round(self.other_mib, 1), self.processes]


@dataclass
class Tree:
    """The `up` process tree: samples it, remembers every broker process it has seen."""

    root: int
    brokers: dict[int, int] = field(default_factory=dict)  # pid -> starttime

    def sample(self, t: float) -> Sample:
        total = broker = pipeline = other = 0
        pids = descendants(self.root) if _stat(self.root) else []
        for pid in pids:
            rss = _rss_kib(pid)
            total += rss
            if pid == self.root:
                pipeline += rss
            elif is_broker(pid):
                broker += rss
                st = _stat(pid)
                if st:
                    self.brokers.setdefault(pid, st[1])
            else:
                other += rss
        return Sample(t, total / MIB, broker / MIB, pipeline / MIB, other / MIB, len(pids))

    def leftover_brokers(self) -> list[int]:
        return [pid for pid, start in self.brokers.items() if (_stat(pid) or (0, -1))[1] == start]


# --- processes ------------------------------------------------------------------------------------

def _die_with_parent() -> None:  # preexec_fn: SIGTERM when this section's process dies
    with contextlib.suppress(Exception):  # no prctl (not Linux): the child merely outlives a killed parent
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "CLICKHOUSE_")) and k not in ("SMS_CALLBACK_TOKEN", "SMS_PHONE_HASH_KEY")}
    env.update(SMS_DATA_DIR=str(data_dir), SMS_HTTP_HOST="127.0.0.1", SMS_HTTP_PORT="0",
               SMS_QUERY_HOST="127.0.0.1", SMS_QUERY_PORT="0", SMS_LOG_JSON="true", SMS_LOG_LEVEL="INFO")
    return env


def _started_line(log_path: Path) -> dict[str, Any] | None:
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if '"runtime.started"' in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _warehouse_counts(query_url: str) -> dict[str, int] | None:
    req = urllib.request.Request(f"{query_url}/query?format=json", data=WAREHOUSE_SQL.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            row = json.loads(resp.read().decode().splitlines()[0])
        return {k: int(row[k] or 0) for k in ("messages", "sent", "receipts")}
    except Exception:  # noqa: BLE001 - a sample the warehouse could not answer is a gap, not a failed soak
        return None


def stop_up(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """SIGTERM, wait; SIGKILL its process group if it does not end in `timeout`."""
    started = time.monotonic()
    killed = False
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return {"returncode": proc.returncode, "stop_seconds": time.monotonic() - started, "killed": killed}


def end_brokers(pids: list[int], starts: dict[int, int]) -> list[int]:
    """End broker processes still alive (each leads its own session/group). Returns those found."""
    found = [pid for pid in pids if (_stat(pid) or (0, -1))[1] == starts[pid]]
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        alive = [pid for pid in found if (_stat(pid) or (0, -1))[1] == starts[pid]]
        if not alive:
            break
        for pid in alive:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any((_stat(p) or (0, -1))[1] == starts[p] for p in alive):
            time.sleep(0.1)
    return found


# --- the simulator chunks -------------------------------------------------------------------------

@dataclass
class Chunk:
    index: int
    seconds: float
    launched_at: float  # t (s after traffic start)
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    ended_at: float | None = None
    events: int | None = None
    messages: int | None = None
    error: str | None = None

    def collect(self, t: float) -> None:
        self.ended_at = t
        if self.proc.returncode != 0:
            last = (_tail(self.err, 600).strip().splitlines() or [""])[-1]
            self.error = f"exit {self.proc.returncode}: {last}"
            return
        try:
            truth = json.loads(self.out.read_text())
            self.messages = sum(c["sends"] for c in truth.values())
            self.events = sum(c["sends"] + c["receipts_posted"] + c["replies_posted"] for c in truth.values())
        except Exception as exc:  # noqa: BLE001 - pragma: no cover; any unreadable output becomes the chunk's error
            self.error = f"unreadable output: {exc}"

    def summary(self) -> dict[str, Any]:
        return {"index": self.index, "seconds": self.seconds, "launched_at": round(self.launched_at, 2),
                "ended_at": None if self.ended_at is None else round(self.ended_at, 2),
                "messages": self.messages, "events": self.events, "error": self.error}


def _launch_chunk(i: int, seconds: float, rate: float, url: str, t: float, work: Path, env: dict[str, str]) -> Chunk:
    out, err = work / f"sim-{i:03d}.json", work / f"sim-{i:03d}.log"
    cmd = [sys.executable, "-m", "sms_analytics.cli", "simulate", "--url", url, "--duration", f"{seconds:g}",
           "--rate", f"{rate:g}", "--seed", str(1000 + i)]
    proc = subprocess.Popen(cmd, env={**env, "SMS_LOG_LEVEL": "WARNING", "SMS_LOG_JSON": "false"}, cwd=work,
                            stdin=subprocess.DEVNULL, stdout=out.open("wb"), stderr=err.open("wb"),
                            preexec_fn=_die_with_parent)
    return Chunk(i, seconds, t, proc, out, err)


# --- figures --------------------------------------------------------------------------------------

def _window_median(samples: list[Sample], lo: float, hi: float) -> tuple[float | None, int]:
    values = [s.total_mib for s in samples if lo <= s.t <= hi]
    if not values:  # no sample in the window: the nearest one before hi
        before = [s for s in samples if s.t <= hi]
        values = [before[-1].total_mib] if before else []
    return (statistics.median(values) if values else None), len(values)


def budget_mib() -> tuple[float, str]:
    env = os.environ.get("SMS_MEMORY_BUDGET_MB")
    if env:
        return float(env), "env SMS_MEMORY_BUDGET_MB"
    try:
        from sms_analytics.settings import Settings

        spec = Settings.model_fields.get("sms_memory_budget_mb")
        if spec is not None and isinstance(spec.default, (int, float)):
            return float(spec.default), "settings default sms_memory_budget_mb"
    except Exception:  # noqa: BLE001 - settings not importable (--src of another tree): the bench default
        pass
    return float(DEFAULT_BUDGET_MB), "bench default"


def figures(samples: list[Sample], traffic_s: float) -> dict[str, Any]:
    during = [s for s in samples if 0 <= s.t <= traffic_s + 1e-6]
    w = min(30.0, traffic_s / 4)
    mid, n_mid = _window_median(during, traffic_s / 2 - w, traffic_s / 2)
    end, n_end = _window_median(during, traffic_s - w, traffic_s)
    peak = max(samples, key=lambda s: s.total_mib) if samples else None
    first = during[0] if during else None
    return {
        "window_s": w, "mid_rss_mib": mid, "mid_samples": n_mid, "end_rss_mib": end, "end_samples": n_end,
        "growth_point": (end - mid) / mid if mid and end is not None else None,
        **_envelope(during, traffic_s),
        "start_rss_mib": first.total_mib if first else None,
        "peak_rss_mib": peak.total_mib if peak else None, "peak_at_s": peak.t if peak else None,
        "peak_broker_mib": max((s.broker_mib for s in samples), default=None),
        "peak_pipeline_mib": max((s.pipeline_mib for s in samples), default=None),
        "end_broker_mib": _median_of(during, traffic_s - w, traffic_s, "broker_mib"),
        "end_pipeline_mib": _median_of(during, traffic_s - w, traffic_s, "pipeline_mib"),
        "mid_broker_mib": _median_of(during, traffic_s / 2 - w, traffic_s / 2, "broker_mib"),
        "mid_pipeline_mib": _median_of(during, traffic_s / 2 - w, traffic_s / 2, "pipeline_mib"),
    }


def _envelope(samples: list[Sample], traffic_s: float) -> dict[str, float | None]:
    """Each half's peak, of the total and of each part, and the growth of the peak."""
    out: dict[str, float | None] = {}
    for attr, name in (("total_mib", "rss"), ("broker_mib", "broker"), ("pipeline_mib", "pipeline")):
        first = max((getattr(s, attr) for s in samples if s.t <= traffic_s / 2), default=None)
        second = max((getattr(s, attr) for s in samples if s.t > traffic_s / 2), default=None)
        out[f"first_half_peak_{name}_mib"] = first
        out[f"second_half_peak_{name}_mib"] = second
        out["growth_second_half" if name == "rss" else f"growth_second_half_{name}"] = (
            (second - first) / first if first and second is not None else None)
    return out


def _median_of(samples: list[Sample], lo: float, hi: float, attr: str) -> float | None:
    values = [getattr(s, attr) for s in samples if lo <= s.t <= hi]
    return statistics.median(values) if values else None


# --- the run --------------------------------------------------------------------------------------

async def run(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    import sms_analytics

    traffic_s = float(cfg["soak_seconds"])
    rate = float(cfg["soak_rate"])
    chunk_s = min(float(cfg["soak_chunk_seconds"]), traffic_s)
    interval = float(cfg["soak_interval"])
    wh_every = max(1, int(cfg.get("soak_warehouse_every", 6)))
    budget, budget_source = budget_mib()
    env = _env(work / "data")
    up_log = work / "up.log"
    cmd = [sys.executable, "-m", "sms_analytics.cli", "up"]
    log(f"soak: starting `{' '.join(cmd[1:])}` (embedded broker, chDB) in {work}")
    up = subprocess.Popen(  # noqa: ASYNC220 - Popen only starts it; the tree is watched, not awaited
        cmd, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=up_log.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    tree = Tree(up.pid)
    chunks: list[Chunk] = []
    samples: list[Sample] = []
    warehouse: list[dict[str, Any]] = []
    stopped: dict[str, Any] = {}
    leftover: list[int] = []
    try:
        # --- ready: the runtime.started line, then the receiver's /healthz
        t_launch = time.monotonic()
        started_line = None
        while started_line is None:
            if up.poll() is not None:
                raise RuntimeError(f"`up` exited with {up.returncode} before it started:\n{_tail(up_log)}")
            if time.monotonic() - t_launch > READY_TIMEOUT_S:
                raise TimeoutError(f"`up` not started in {READY_TIMEOUT_S:.0f}s:\n{_tail(up_log)}")
            started_line = _started_line(up_log)
            await asyncio.sleep(0.2)
        receiver, query = started_line["receiver"], started_line["query"]
        while await asyncio.to_thread(_get, f"{receiver}/healthz") != 200:
            if up.poll() is not None or time.monotonic() - t_launch > READY_TIMEOUT_S:
                raise TimeoutError(f"receiver {receiver} not healthy in {READY_TIMEOUT_S:.0f}s:\n{_tail(up_log)}")
            await asyncio.sleep(0.5)
        startup_s = time.monotonic() - t_launch
        idle = tree.sample(0.0)
        log(f"soak: up ready in {startup_s:.1f}s at {receiver}, idle RSS {idle.total_mib:.0f} MiB "
            f"(broker {idle.broker_mib:.0f}, pipeline {idle.pipeline_mib:.0f}); "
            f"driving {rate:g} messages/s for {traffic_s:.0f}s in {chunk_s:.0f}s chunks")

        # --- traffic and sampling
        t0 = time.monotonic()
        cpu0 = {"pipeline": cpu_seconds(up.pid) or 0.0,
                "broker": sum(cpu_seconds(p) or 0.0 for p in tree.brokers)}
        n_chunks = max(1, round(traffic_s / chunk_s))
        next_sample = 0.0
        tail_deadline = traffic_s + chunk_s + 90.0  # a chunk's receipts end about 40 s after its sends
        while True:
            now = time.monotonic() - t0
            if up.poll() is not None:
                raise RuntimeError(f"`up` exited with {up.returncode} during the soak:\n{_tail(up_log)}")
            # chunk i starts at i*chunk_s (1 s early after the first, for the simulator's start-up)
            while len(chunks) < n_chunks and now >= len(chunks) * chunk_s - (CHUNK_LEAD_S if chunks else 0.0):
                chunks.append(_launch_chunk(len(chunks), chunk_s, rate, receiver, now, work, env))
            for c in chunks:
                if c.ended_at is None and c.proc.poll() is not None:
                    c.collect(now)
                    if c.error:
                        log(f"soak: simulator chunk {c.index} failed: {c.error}")
            if now >= next_sample:
                s = tree.sample(now)
                samples.append(s)
                if len(samples) % wh_every == 1 or wh_every == 1:
                    counts = await asyncio.to_thread(_warehouse_counts, query)
                    if counts is not None:
                        warehouse.append({"t": round(time.monotonic() - t0, 1), **counts})
                if len(samples) % max(1, round(60 / interval)) == 1:
                    log(f"soak: t={now:5.0f}s total {s.total_mib:6.0f} MiB, broker {s.broker_mib:5.0f}, "
                        f"pipeline {s.pipeline_mib:5.0f}")
                next_sample += interval
            traffic_over = now >= traffic_s
            chunks_over = len(chunks) == n_chunks and all(c.ended_at is not None for c in chunks)
            if traffic_over and (chunks_over or now >= tail_deadline):
                break
            await asyncio.sleep(max(0.0, min(0.2, next_sample - (time.monotonic() - t0))))
        wall_s = time.monotonic() - t0
        for c in chunks:
            if c.ended_at is None:
                c.proc.terminate()
                try:
                    c.proc.wait(10)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait(10)
                c.collect(wall_s)
                c.error = c.error or "still running at the tail deadline: terminated"
        cpu = {"pipeline": (cpu_seconds(up.pid) or 0.0) - cpu0["pipeline"],
               "broker": sum(cpu_seconds(p) or 0.0 for p in tree.brokers) - cpu0["broker"]}
        final_wh = await asyncio.to_thread(_warehouse_counts, query)
        if final_wh is not None:
            warehouse.append({"t": round(time.monotonic() - t0, 1), **final_wh})
    finally:
        # Learn every child before stopping `up`: a broker it fails to stop is ended below.
        if up.poll() is None:
            tree.sample(-1.0)
        for c in chunks:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait(10)
        stopped = await asyncio.to_thread(stop_up, up)
        leftover = await asyncio.to_thread(end_brokers, list(tree.brokers), dict(tree.brokers))
        if leftover:
            log(f"soak: broker process(es) {leftover} outlived `up`: ended")

    events = sum(c.events or 0 for c in chunks)
    messages = sum(c.messages or 0 for c in chunks)
    failed = [c.summary() for c in chunks if c.error]
    fig = figures(samples, traffic_s)
    wh_rate = None
    wh_in = [w for w in warehouse if traffic_s * 0.25 <= w["t"] <= traffic_s]
    if len(wh_in) >= 2 and wh_in[-1]["t"] > wh_in[0]["t"]:
        a, b = wh_in[0], wh_in[-1]
        wh_rate = ((b["sent"] + b["receipts"]) - (a["sent"] + a["receipts"])) / (b["t"] - a["t"])
    result = {
        "seconds": traffic_s, "rate_messages_per_s": rate, "chunk_seconds": chunk_s, "chunks": len(chunks),
        "failed_chunks": len(failed), "chunk_errors": failed[:5],
        "chunk_runs": [c.summary() for c in chunks], "interval_s": interval,
        "messages": messages, "events": events, "achieved_events_per_s": events / traffic_s if traffic_s else None,
        "achieved_is_lower_bound": bool(failed), "traffic_wall_s": wall_s,
        "warehouse_events_per_s": wh_rate, "warehouse": warehouse,
        "startup_s": startup_s, "idle_rss_mib": idle.total_mib, "idle_broker_mib": idle.broker_mib,
        "idle_pipeline_mib": idle.pipeline_mib,
        **fig,
        "budget_mib": budget, "budget_source": budget_source,
        "trace_columns": ["t_s", "total_mib", "broker_mib", "pipeline_mib", "other_mib", "processes"],
        "trace": [s.row() for s in samples],
        "cpu_seconds": cpu, "loadavg_end": loadavg(),
        "up_stop": stopped, "leftover_brokers": leftover, "up_command": "python -m sms_analytics.cli up",
        "src": str(Path(sms_analytics.__file__).resolve().parent),  # noqa: ASYNC240 - once, after the run
    }
    g = result["growth_second_half"]
    log(f"soak: {events:,} events in {traffic_s:.0f}s = {result['achieved_events_per_s']:,.0f} events/s; "
        f"peak of the 1st half {fig['first_half_peak_rss_mib'] or 0:.0f} -> of the 2nd {fig['second_half_peak_rss_mib'] or 0:.0f} MiB "
        f"({(g or 0) * 100:+.1f}%), peak {fig['peak_rss_mib'] or 0:.0f} MiB (budget {budget:.0f})")
    return {"soak": result}
