"""`ingest` measured on one `sms-analytics up` process on embedded defaults: the receivers answer
once the journal committed a push (sources/journal.py), and the same process joins and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.ingest import run as _run


async def run(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    return {"ingest_up": (await _run(cfg, work, mode="up"))["ingest"]}
