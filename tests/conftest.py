"""The test session runs the real pipeline in-process: the embedded broker (Tansu), the faust
worker, the chDB warehouse, the ClickHouse sink and the aiohttp receiver on free ports.

Tests marked `both_brokers` run on the embedded broker and on Apache Kafka (a single KRaft node
fetched with Maven, broker/apache.py); `--brokers=embedded` (or `apache`) narrows that, and those
marked `both_brokers(apache_on_request=...)` run on Apache Kafka only with `--apache-all`. Every
other broker-dependent test runs on the embedded broker only. Without java or mvn the Apache
Kafka runs are left out, said in one line (header and summary)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web
import pytest
import pytest_asyncio

from sms_analytics import logs
from sms_analytics.broker.apache import ApacheKafkaBroker, kafka_version, missing_tools
from sms_analytics.broker.embedded import EmbeddedBroker
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


BROKERS = ("embedded", "apache")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--brokers", default=",".join(BROKERS),
                     help="comma-separated brokers the tests marked both_brokers run on (embedded, apache)")
    parser.addoption("--apache-all", action="store_true",
                     help="also run the tests marked both_brokers(apache_on_request=...) on Apache Kafka")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_brokers(apache_on_request=reason): run on the embedded broker and on "
                            "Apache Kafka; with apache_on_request, on Apache Kafka only with --apache-all")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that needs a broker gets `broker_kind`: both kinds if marked both_brokers."""
    if "broker_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("both_brokers")
    kinds = brokers_for(metafunc.config, marker) if marker else ["embedded"]
    metafunc.parametrize("broker_kind", kinds, indirect=True, scope="session")


def brokers_for(config: pytest.Config, marker: pytest.Mark) -> list[str]:
    """The brokers a both_brokers test runs on: --brokers, less Apache Kafka for a test that runs
    there only on request (suite time: see its apache_on_request reason) unless --apache-all."""
    wanted = [k.strip() for k in config.getoption("--brokers").split(",") if k.strip()]
    unknown = set(wanted) - set(BROKERS)
    if unknown:
        raise pytest.UsageError(f"--brokers: unknown {sorted(unknown)}; choose from {BROKERS}")
    if marker.kwargs.get("apache_on_request") and not config.getoption("--apache-all"):
        wanted = [k for k in wanted if k != "apache"]
    if "apache" in wanted and apache_missing() is not None:
        wanted.remove("apache")  # said once for the session: pytest_report_header, pytest_terminal_summary
    return wanted


@functools.cache
def apache_missing() -> str | None:
    """Why Apache Kafka cannot run here (no java, no mvn), or None."""
    return missing_tools()


def pytest_report_header(config: pytest.Config) -> str:
    reason = apache_missing()
    return f"Apache Kafka runs skipped: {reason}" if reason else f"Apache Kafka {kafka_version()} for both_brokers tests"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reason = apache_missing()
    if reason:
        terminalreporter.write_line(f"Apache Kafka runs skipped: {reason}", yellow=True)


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "embedded"))


async def start_broker(kind: str) -> EmbeddedBroker | ApacheKafkaBroker:
    """A new broker of that kind on free ports."""
    if kind == "apache":
        broker: EmbeddedBroker | ApacheKafkaBroker = ApacheKafkaBroker()
    else:
        broker = EmbeddedBroker()
    await broker.start()
    return broker


@pytest_asyncio.fixture
async def broker(broker_kind: str) -> AsyncIterator[str]:
    """A new broker for one test (embedded, or Apache Kafka for the tests marked both_brokers)."""
    started = await start_broker(broker_kind)
    try:
        yield started.bootstrap
    finally:
        started.stop()


@pytest_asyncio.fixture(scope="session")
async def session_kafka(broker_kind: str) -> AsyncIterator[ApacheKafkaBroker | None]:
    """Apache Kafka, started once for the session's pipeline (None on the embedded broker, which the
    pipeline starts itself)."""
    if broker_kind != "apache":
        yield None
        return
    broker = await start_broker("apache")
    assert isinstance(broker, ApacheKafkaBroker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest_asyncio.fixture(scope="session")
async def pipeline(tmp_path_factory: pytest.TempPathFactory,
                   session_kafka: ApacheKafkaBroker | None) -> AsyncIterator[Runtime]:
    logs.configure("WARNING")
    external: dict[str, Any] = {}
    if session_kafka is not None:  # a real broker outlives a pipeline: groups of their own
        external = {"kafka_bootstrap_servers": session_kafka.bootstrap, "sms_app_id": f"tests-{uuid.uuid4().hex[:8]}"}
    runtime = Runtime(pipeline_settings(tmp_path_factory.mktemp("pipeline"), **external))
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
