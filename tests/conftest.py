"""The test session runs the real pipeline in-process: the embedded broker (Tansu), the faust
worker, the chDB warehouse, the ClickHouse sink and the aiohttp receiver on free ports.

Tests marked `both_brokers` run on the embedded broker and on Apache Kafka (a single KRaft node
fetched with Maven, broker/apache.py); `--brokers=embedded` (or `apache`) narrows that, and those
marked `both_brokers(apache_on_request=...)` run on Apache Kafka only with `--apache-all`. Every
other broker-dependent test runs on the embedded broker only. Without java or mvn the Apache
Kafka runs are left out, said in one line (header and summary).

Layout: tests/unit/ mirrors src/sms_analytics/ (tests/unit/sinks/test_writer.py tests sinks/writer.py)
and starts no broker, pipeline, chDB or sms-analytics process; tests/integration/ holds the tests that
do. `pytest_collection_modifyitems` below marks them `unit` and `integration` by folder, so
`pytest -m unit` runs the fast ones. This conftest stays at tests/ so its session fixtures serve both."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

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
    """A both_brokers test that needs a broker runs once per broker kind (unmarked ones: embedded,
    unparametrized)."""
    marker = metafunc.definition.get_closest_marker("both_brokers")
    if marker is None or "broker_kind" not in metafunc.fixturenames:
        return
    kinds = brokers_for(metafunc.config, marker)
    metafunc.parametrize("broker_kind", kinds, indirect=True)


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


@pytest.fixture
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


async def start_pipeline(data_dir: Path, **overrides: Any) -> Runtime:
    logs.configure("WARNING")
    runtime = Runtime(pipeline_settings(data_dir, **overrides))
    try:
        await runtime.start()
        await runtime.wait_ready(timeout=90)
    except BaseException:
        await runtime.stop()
        raise
    return runtime


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded pipeline's SMS_DATA_DIR, with the session's chDB warehouse. chDB opens one path
    per process: a pipeline on Apache Kafka, alive beside the embedded one, shares that warehouse
    (the tests tell their rows apart by their own ids)."""
    return tmp_path_factory.mktemp("pipeline")


@pytest_asyncio.fixture(scope="session")
async def embedded_pipeline(pipeline_dir: Path) -> AsyncIterator[Runtime]:
    """The session's pipeline on the embedded broker."""
    runtime = await start_pipeline(pipeline_dir)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest_asyncio.fixture(scope="session")
async def embedded_http(embedded_pipeline: Runtime) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=embedded_pipeline.receiver_url) as session:
        yield session


@pytest.fixture(scope="session")
def pipeline(embedded_pipeline: Runtime) -> Runtime:
    """What the tests use: the embedded one, or in a both_brokers module (which overrides it with
    kind_pipeline) the one of the test's broker."""
    return embedded_pipeline


@pytest.fixture(scope="session")
def http(embedded_http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return embedded_http


@pytest_asyncio.fixture(scope="module")
async def apache_pipeline(tmp_path_factory: pytest.TempPathFactory, pipeline_dir: Path) -> AsyncIterator[Runtime]:
    """A pipeline on Apache Kafka, for one module's both_brokers tests: the node and the pipeline
    end with the module, so that the rest of the session does not carry them."""
    kafka = await start_broker("apache")
    try:
        runtime = await start_pipeline(tmp_path_factory.mktemp("apache-pipeline"), kafka_bootstrap_servers=kafka.bootstrap,
                                       clickhouse_url=pipeline_settings(pipeline_dir).warehouse_url)
        try:
            yield runtime
        finally:
            await runtime.stop()
    finally:
        kafka.stop()


@pytest_asyncio.fixture(scope="module")
async def apache_http(apache_pipeline: Runtime) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=apache_pipeline.receiver_url) as session:
        yield session


@pytest.fixture
def kind_pipeline(broker_kind: str, request: pytest.FixtureRequest) -> Runtime:
    """The pipeline on the test's broker (a both_brokers module overrides `pipeline` with this).
    Function-scoped, so that parametrizing broker_kind leaves the session's test order alone."""
    return request.getfixturevalue(f"{broker_kind}_pipeline")


@pytest.fixture
def kind_http(broker_kind: str, request: pytest.FixtureRequest) -> aiohttp.ClientSession:
    return request.getfixturevalue(f"{broker_kind}_http")


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


async def rolled_up_within(pipeline: Runtime, check: Callable[[], Awaitable[Any]]) -> Any:
    """`check` until it holds, for as long as a few rollup rounds take on a loaded machine: a round
    waits three times the last one's length (sinks/writer.py), and with the whole suite's data in
    the session's warehouse a round on 2 busy cores can take 10 s or more. On failure the message
    says where the rollups were."""
    try:
        return await eventually(check, timeout=150, interval=1.0)
    except AssertionError as exc:
        sink, rollups = pipeline.sink, pipeline.rollups
        timings = sink.stats.rollup_seconds if sink is not None else None
        state = (f"rollup rounds {timings.count}, last {timings.last:.1f} s, mean "
                 f"{timings.total / max(1, timings.count):.1f} s, failures {sink.stats.rollup_failures}; "
                 if sink is not None and timings is not None else "no sink; ")
        if rollups is not None:
            state += f"dirty minutes {len(rollups.dirty)}, recomputed {rollups.recomputed_minutes}"
        raise AssertionError(f"{exc}; {state}") from None


async def wait_healthy(base_url: str, died: Callable[[], str | None] = lambda: None, timeout: float = 90) -> None:
    """Wait until `{base_url}/healthz` answers 200; `died()` returns why the process under test is gone
    (its log's tail), if it is, to fail at once with it."""

    async def healthy() -> bool:
        reason = died()
        if reason is not None:
            raise AssertionError(f"the process exited early: {reason}")
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{base_url}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(healthy, timeout=timeout, interval=0.5)


async def rows(runtime: Runtime, sql: str) -> list[dict[str, Any]]:
    assert runtime.warehouse is not None
    columns, data = await asyncio.to_thread(runtime.warehouse.query, sql)
    return [dict(zip(columns, r, strict=False)) for r in data]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app (a provider simulator, a recording receiver) on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


KINDS = ("unit", "integration")  # tests/unit/ mirrors src/sms_analytics/; tests/integration/ starts real components


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its folder: `unit` under tests/unit/, `integration` under tests/integration/
    (`pytest -m unit` runs the fast ones). The order of the items is left as collected."""
    root = Path(__file__).resolve().parent
    for item in items:
        try:
            kind = item.path.resolve().relative_to(root).parts[0]
        except ValueError:
            continue
        if kind in KINDS:
            item.add_marker(kind)
