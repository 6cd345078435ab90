"""`python -m bench`: the benchmark harness (`make bench`, `make bench QUICK=1`).

Runs every measurement in one go, each in its own process (and its components in their own
processes), prints the table with the targets and writes bench/results/<date>.json.

  python -m bench                     full size (1M-message join, 10M-message warehouse, ...)
  python -m bench --quick             10x smaller (QUICK=1)
  python -m bench --scale 0.001       any size (the smoke test)
  python -m bench --src /other/src    measure another source tree (put first on PYTHONPATH)
  python -m bench --only join,memory  some measurements only
  python -m bench --only soak         the soak alone: `sms-analytics up` 10 minutes at ~800 events/s
  python -m bench --broker embedded   the embedded broker only (default: embedded,apache; the Apache
                                      Kafka runs are join, freshness and restart, skipped with one
                                      line where java or mvn is missing)

Exit status: 0 when every measurement ran and the join's counts match the ground truth (targets
missed are reported, not errors), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.common import BROKERS, REPO, loadavg, log, sizes

SECTIONS = ("join", "freshness", "restart", "ingest", "queries", "memory", "soak", "freshness_up", "ingest_up")
RESULT_SECTIONS = ("ceiling", "join", "freshness", "restart", "ingest", "queries", "memory", "soak", "freshness_up",
                   "ingest_up")
APACHE_SECTIONS = ("join", "freshness", "restart")  # the others measure embedded-only paths (`up`) or the warehouse


def _timeout(name: str, cfg: dict[str, Any]) -> float:
    if name == "join":
        return 900 + cfg["join_messages"] * 12 / 1000  # publishing, the ceiling, a join as slow as 200 events/s
    if name in ("freshness", "freshness_up"):
        return 300 + cfg["freshness_seconds"] * 2
    if name == "queries":
        return 600 + cfg["query_messages"] / 5_000
    if name == "memory":
        return 300 + cfg["memory_pending"] / 1_000
    if name == "restart":  # two histories joined once, then restart_runs restarts of <= 60 s each
        return 600 + cfg["join_messages"] * 1.1 * 2 / 200 + 2 * cfg["restart_runs"] * 60
    if name == "soak":  # start-up, the traffic, the last chunk's receipts (<= 1 chunk + 90 s), stopping
        return 400 + cfg["soak_seconds"] + cfg["soak_chunk_seconds"]
    return 600


def run_section(name: str, cfg: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    out = work / f"{name}.json"
    limit = _timeout(name, cfg)
    if cfg.get("max_section_seconds"):
        limit = min(limit, float(cfg["max_section_seconds"]))
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.section", name, "--config", json.dumps(cfg),
                               "--work", str(work / name), "--out", str(out)],
                              check=False, env=env, cwd=REPO, timeout=limit,
                              stdout=subprocess.DEVNULL)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = f"timeout after {limit:.0f} s"
    seconds = time.monotonic() - started
    try:
        result = json.loads(out.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        result = {}
    if code != 0 or "error" in result:
        error = result.get("error") or f"section process ended with {code}"
        log(f"{name}: FAILED: {error.splitlines()[0][:300]}")
        targets = ("ceiling", "join") if name == "join" else (name,)
        return {t: {"error": error, "traceback": result.get("traceback"), "section_seconds": seconds} for t in targets}
    for value in result.values():
        value["section_seconds"] = seconds
    return result


def run_apache(names: list[str], cfg: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The Apache Kafka runs of these measurements (BENCH_BROKER=apache in their processes), or why
    they were skipped (java or mvn missing, the jars not fetched): one line."""
    from sms_analytics.broker.apache import KafkaUnavailable, fetch_libs, missing_tools

    if not names:
        return {"sections": {}}
    reason = missing_tools()
    if reason is None:
        try:
            fetch_libs()
        except KafkaUnavailable as exc:
            reason = str(exc).splitlines()[0]
    if reason is not None:
        log(f"apache: skipped ({reason})")
        return {"skipped": reason, "sections": {}}
    sections: dict[str, Any] = {}
    apache_env = {**env, "BENCH_BROKER": "apache"}
    for name in names:
        log(f"--- {name} on Apache Kafka")
        sections.update(run_section(name, cfg, work / "apache", apache_env))
    return {"sections": sections}


def section_problems(sections: dict[str, Any], src: Path) -> list[str]:
    """Errors, the join's counts differing from the ground truth, another source tree measured."""
    problems = []
    for name, section in sections.items():
        if "error" in section:
            problems.append(f"{name}: {section['error'].splitlines()[0][:300]}")
    join = sections.get("join", {})
    if "counts_match" in join and not join["counts_match"]:
        problems.append(f"join: warehouse counts differ from the ground truth: {join['mismatches']}")
    ceiling = sections.get("ceiling", {})
    if "joined_matches" in ceiling and not ceiling["joined_matches"]:
        problems.append(f"ceiling: joined {ceiling['joined']} messages, expected {ceiling['expected_joined']}")
    for name, section in sections.items():
        expected = str(src / "sms_analytics")
        if section.get("src") and section["src"] != expected:
            problems.append(f"{name}: measured {section['src']}, not {expected}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller (scale 0.1)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (1 = full, the default)")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="source tree to measure (default: this repo's src)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/<date>[-label].json)")
    parser.add_argument("--broker", default=",".join(BROKERS),
                        help=f"comma-separated brokers to measure on: {','.join(BROKERS)} (default both)")
    parser.add_argument("--label", default="", help="a name for this run (in the JSON and the default file name)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, warehouses)")
    parser.add_argument("--max-section-seconds", type=float, default=None,
                        help="end a measurement (as failed, named) after this long; default: its own limit by size")
    args = parser.parse_args(argv)

    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    quick = args.quick or scale == 0.1
    src = args.src.resolve()
    if not (src / "sms_analytics" / "__init__.py").exists():
        parser.error(f"{src} has no sms_analytics package")
    only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    brokers = [b for b in args.broker.split(",") if b]
    if not brokers or set(brokers) - set(BROKERS):
        parser.error(f"--broker: comma-separated subset of {','.join(BROKERS)}")
    cfg = sizes(scale)
    if args.max_section_seconds:
        cfg["max_section_seconds"] = args.max_section_seconds
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO)]), "PYTHONUNBUFFERED": "1"}
    now = datetime.now(UTC)
    out = args.out or REPO / "bench" / "results" / f"{now:%Y-%m-%d}{'-' + args.label if args.label else ''}.json"

    doc: dict[str, Any] = {
        "schema": 1, "label": args.label or None, "started_at": now.isoformat(timespec="seconds"),
        "scale": scale, "quick": quick, "sizes": cfg, "machine": report.machine_info(),
        "source": report.source_info(src), "sections": {}, "brokers": {},
    }
    work = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    log(f"scale {scale}, source {src}, work {work}")
    t0 = time.monotonic()
    try:
        if "embedded" in brokers:
            for name in SECTIONS:
                if name in only:
                    log(f"--- {name}")
                    doc["sections"].update(run_section(name, cfg, work, env))
        if "apache" in brokers:
            doc["brokers"]["apache"] = run_apache([n for n in APACHE_SECTIONS if n in only], cfg, work, env)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    doc["duration_s"] = time.monotonic() - t0
    doc["loadavg_end"] = loadavg()
    doc["targets"] = report.targets(doc["sections"])
    problems = section_problems(doc["sections"], src)
    apache = doc["brokers"].get("apache", {})
    problems += [f"apache {p}" for p in section_problems(apache.get("sections", {}), src)]
    doc["problems"] = problems
    out.parent.mkdir(parents=True, exist_ok=True)
    doc["out"] = str(out)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(report.render(doc))
    if args.keep:
        print(f"work directory kept: {work}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
