"""The test session runs the real pipeline in-process: the embedded broker (Tansu), the faust
worker, the chDB warehouse, the ClickHouse sink and the aiohttp receiver on free ports."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web
import pytest
import pytest_asyncio

from sms_analytics import logs
from sms_analytics.runtime import Runtime
from sms_analytics.settings import Settings

TOKEN = "test-token-0123456789"
HASH_KEY = "test-hash-key-0123456789abcdef"
SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def pipeline_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        sms_data_dir=data_dir, sms_http_port=0, sms_query_port=0, sms_callback_token=TOKEN,
        sms_phone_hash_key=HASH_KEY, sms_sink_flush_seconds=0.2, sms_join_within_seconds=0.05,
        sms_compensate_scan_seconds=1.0,
        # The tests' messages and rollups are timed from 2023 (1_700_000_000_000 ms): kept, and recomputed.
        sms_retention_days=3650, sms_rollup_retention_days=3651,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest_asyncio.fixture(scope="session")
async def pipeline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Runtime]:
    logs.configure("WARNING")
    runtime = Runtime(pipeline_settings(tmp_path_factory.mktemp("pipeline")))
    try:
        await runtime.start()
        await runtime.wait_ready(timeout=90)
        yield runtime
    finally:
        await runtime.stop()


@pytest_asyncio.fixture(scope="session")
async def http(pipeline: Runtime) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as session:
        yield session


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.2) -> Any:
    """Poll an (async or sync) check until it returns a truthy value; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def rows(runtime: Runtime, sql: str) -> list[dict[str, Any]]:
    assert runtime.warehouse is not None
    columns, data = await asyncio.to_thread(runtime.warehouse.query, sql)
    return [dict(zip(columns, r)) for r in data]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app (a provider simulator, a recording receiver) on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
