"""Runs one measurement module in this (fresh) process: `python -m bench.section NAME --config
JSON --work DIR --out FILE`. The module's `run(cfg, work)` returns {section name: figures}."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import traceback
from pathlib import Path

from bench.common import use_uvloop

MODULES = ("join", "freshness", "ingest", "queries", "memory", "soak", "freshness_up", "ingest_up", "restart")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.section")
    parser.add_argument("name", choices=MODULES)
    parser.add_argument("--config", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from sms_analytics import logs

    logs.configure("WARNING")
    module = importlib.import_module(f"bench.{args.name}")
    args.work.mkdir(parents=True, exist_ok=True)
    use_uvloop()
    try:
        result = asyncio.run(module.run(json.loads(args.config), args.work))
    except BaseException as exc:
        args.out.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:4000],
                                        "traceback": traceback.format_exc()[-4000:]}))
        raise
    args.out.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
