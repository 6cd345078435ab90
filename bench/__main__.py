"""`python -m bench`: the benchmark harness (`make bench`, `make bench QUICK=1`).

Runs every measurement in one go, each in its own process (and its components in their own
processes), prints the table with the targets and writes bench/results/<date>.json.

  python -m bench                     full size (1M-message join, 10M-message warehouse, ...)
  python -m bench --quick             10x smaller (QUICK=1)
  python -m bench --scale 0.001       any size (the smoke test)
  python -m bench --src /other/src    measure another source tree (put first on PYTHONPATH)
  python -m bench --only join,memory  some measurements only
  python -m bench --only soak         the soak alone: `sms-analytics up` 10 minutes at ~800 events/s

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import report
from bench.common import REPO, loadavg, log, sizes

SECTIONS = ("join", "freshness", "ingest", "queries", "memory", "soak", "freshness_up", "ingest_up")
RESULT_SECTIONS = ("ceiling", "join", "freshness", "ingest", "queries", "memory", "soak", "freshness_up", "ingest_up")


def _timeout(name: str, cfg: dict[str, Any]) -> float:
    if name == "join":
        return 900 + cfg["join_messages"] * 12 / 1000  # publishing, the ceiling, a join as slow as 200 events/s
    if name in ("freshness", "freshness_up"):
        return 300 + cfg["freshness_seconds"] * 2
    if name == "queries":
        return 600 + cfg["query_messages"] / 5_000
    if name == "memory":
        return 300 + cfg["memory_pending"] / 1_000
    if name == "soak":  # start-up, the traffic, the last chunk's receipts (<= 1 chunk + 90 s), stopping
        return 400 + cfg["soak_seconds"] + cfg["soak_chunk_seconds"]
    return 600


def run_section(name: str, cfg: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    out = work / f"{name}.json"
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.section", name, "--config", json.dumps(cfg),
                               "--work", str(work / name), "--out", str(out)],
                              env=env, cwd=REPO, timeout=_timeout(name, cfg), stdout=subprocess.DEVNULL)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller (scale 0.1)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (1 = full, the default)")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="source tree to measure (default: this repo's src)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/<date>[-label].json)")
    parser.add_argument("--label", default="", help="a name for this run (in the JSON and the default file name)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, warehouses)")
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
    cfg = sizes(scale)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO)]), "PYTHONUNBUFFERED": "1"}
    now = datetime.now(timezone.utc)
    out = args.out or REPO / "bench" / "results" / f"{now:%Y-%m-%d}{'-' + args.label if args.label else ''}.json"

    doc: dict[str, Any] = {
        "schema": 1, "label": args.label or None, "started_at": now.isoformat(timespec="seconds"),
        "scale": scale, "quick": quick, "sizes": cfg, "machine": report.machine_info(),
        "source": report.source_info(src), "sections": {},
    }
    work = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    log(f"scale {scale}, source {src}, work {work}")
    t0 = time.monotonic()
    try:
        for name in SECTIONS:
            if name in only:
                log(f"--- {name}")
                doc["sections"].update(run_section(name, cfg, work, env))
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    doc["duration_s"] = time.monotonic() - t0
    doc["loadavg_end"] = loadavg()
    doc["targets"] = report.targets(doc["sections"])
    problems = []
    for name, section in doc["sections"].items():
        if "error" in section:
            problems.append(f"{name}: {section['error'].splitlines()[0][:300]}")
    join = doc["sections"].get("join", {})
    if "counts_match" in join and not join["counts_match"]:
        problems.append(f"join: warehouse counts differ from the ground truth: {join['mismatches']}")
    ceiling = doc["sections"].get("ceiling", {})
    if "joined_matches" in ceiling and not ceiling["joined_matches"]:
        problems.append(f"ceiling: joined {ceiling['joined']} messages, expected {ceiling['expected_joined']}")
    for name, section in doc["sections"].items():
        expected = str(src / "sms_analytics")
        if section.get("src") and section["src"] != expected:
            problems.append(f"{name}: measured {section['src']}, not {expected}")
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
