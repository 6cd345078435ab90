"""Wires the stages into one process: broker (embedded or external), receiver, faust worker,
sink and the read-only query endpoint. `up` runs them all; `worker` and `receiver` run parts.

Start order: broker -> topics -> warehouse (migrations) -> worker -> sink -> HTTP.
Stop order is the reverse: the receiver stops taking input, the worker stops (committing its
offsets), the sink flushes and commits, the warehouse closes, the embedded broker ends.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from aiohttp import web

from sms_analytics.broker.admin import ensure_topics
from sms_analytics.broker.embedded import EmbeddedBroker
from sms_analytics.model.phone import PhoneHasher, load_or_create_key
from sms_analytics.observability.health import Verdict, runtime_verdict
from sms_analytics.observability.metrics import Metrics
from sms_analytics.settings import Settings
from sms_analytics.sinks import error_codes
from sms_analytics.sinks import template_names
from sms_analytics.sinks.query_api import ops_app, query_app
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.warehouse import Warehouse
from sms_analytics.sinks.writer import ClickHouseSink
from sms_analytics.sources.base import Identities
from sms_analytics.sources.feeds.setup import build_feeds
from sms_analytics.sources.http import Guards, Receiver
from sms_analytics.sources.publisher import Publisher
from sms_analytics.streams.alerts import Rules
from sms_analytics.streams.app import Compensation, JoinStats, build_app, tune_gc

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Parts:
    receiver: bool = True
    worker: bool = True
    sink: bool = True
    query: bool = True


class Runtime:
    def __init__(self, settings: Settings, parts: Parts = Parts()) -> None:
        self.settings = settings
        self.parts = parts
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = settings.kafka_bootstrap_servers or ""
        self.warehouse: Warehouse | None = None
        self.app: Any = None
        self.join_stats: JoinStats | None = None
        self.sink: ClickHouseSink | None = None
        self._sink_task: asyncio.Task[None] | None = None
        self.publisher: Publisher | None = None
        self._runners: list[web.AppRunner] = []
        self.receiver_url = ""
        self.query_url = ""
        self.feeds: list[Any] = []
        self._feed_tasks: list[asyncio.Task[None]] = []
        self._feeds_stop = asyncio.Event()
        self._feed_clients: list[Any] = []
        self.metrics = Metrics(self)  # served on /metrics (observability/metrics.py)
        self.ops_url = ""  # /healthz and /metrics of a process with neither receiver nor query endpoint

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        if not self.bootstrap:
            self.broker = EmbeddedBroker()
            self.bootstrap = await self.broker.start()
        # A receiver alone starts without the broker and answers 503 until it is reachable.
        receiver_only = not (self.parts.worker or self.parts.sink)
        if not receiver_only:
            await ensure_topics(self.bootstrap, s.kafka_partitions, s.kafka_replication_factor)
        if self.parts.sink or self.parts.query:
            self.warehouse = Warehouse(s.warehouse_url)
            await asyncio.to_thread(self.warehouse.open)
            await asyncio.to_thread(self.warehouse.migrate)
            await asyncio.to_thread(self.warehouse.apply_views, int(s.sms_expire_after.total_seconds()))
            await asyncio.to_thread(error_codes.load, self.warehouse)
            await asyncio.to_thread(template_names.load, self.warehouse, s.sms_template_names)
        if self.parts.worker:
            s.sms_data_dir.mkdir(parents=True, exist_ok=True)
            self.app, self.join_stats = build_app(
                app_id=s.sms_app_id, bootstrap=self.bootstrap, partitions=s.kafka_partitions,
                replication=s.kafka_replication_factor, data_dir=str(s.sms_data_dir / "faust"),
                batch=s.sms_join_batch, within=s.sms_join_within_seconds,
                compensation=Compensation(after_ms=int(s.sms_compensate_after.total_seconds() * 1000),
                                          interval_ms=int(s.sms_compensate_interval.total_seconds() * 1000),
                                          scan_seconds=s.sms_compensate_scan_seconds,
                                          forget_after_ms=int(s.sms_expire_after.total_seconds() * 1000)),
                rules=Rules.load(s.sms_alert_rules), raw_phone=s.sms_store_raw_phone,
                fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            )
            await self.app.start()
            tune_gc()
        if self.parts.sink:
            assert self.warehouse is not None
            self.sink = ClickHouseSink(
                self.warehouse, self.bootstrap, group=f"{s.sms_app_id}-sink", batch_rows=s.sms_sink_batch_rows,
                flush_seconds=s.sms_sink_flush_seconds, store_raw_phone=s.sms_store_raw_phone,
                rollups=Rollups(self.warehouse, int(s.sms_expire_after.total_seconds())),
                rollup_seconds=s.sms_rollup_seconds, fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            )
            self._sink_task = asyncio.create_task(self.sink.run(), name="clickhouse-sink")
        if self.parts.receiver:
            self.publisher = Publisher(
                self.bootstrap, send_timeout=s.sms_publish_timeout_seconds, linger_ms=s.sms_publish_linger_ms,
                prepare=partial(ensure_topics, self.bootstrap, s.kafka_partitions, s.kafka_replication_factor),
            )
            await self.publisher.start(wait=not receiver_only)
            key = load_or_create_key(
                s.sms_phone_hash_key.get_secret_value() if s.sms_phone_hash_key else None, s.sms_data_dir
            )
            ids = Identities(PhoneHasher(key))
            receiver = Receiver(
                self.publisher, ids, token=s.callback_token,
                max_body=s.sms_max_body_bytes, max_records=s.sms_max_records_per_push, readiness=self.readiness,
                guards=Guards.from_settings(s),
                metrics=self.metrics.exposition, health=self.health,
            )
            port = await self._serve(receiver.app(), s.sms_http_host, s.sms_http_port)
            self.receiver_url = f"http://{_client_host(s.sms_http_host)}:{port}"
            self.feeds, self._feed_clients = build_feeds(s, ids, self.publisher.publish, self.bootstrap)
            self._feed_tasks = [asyncio.create_task(f.run(self._feeds_stop), name=f"feed:{f.name}") for f in self.feeds]
        if self.parts.query and self.warehouse is not None:
            port = await self._serve(query_app(self.warehouse, self.readiness, metrics=self.metrics.exposition,
                                               health=self.health), s.sms_query_host, s.sms_query_port)
            self.query_url = f"http://{_client_host(s.sms_query_host)}:{port}"
        if not self.receiver_url and not self.query_url:  # e.g. `worker --no-sink`: still /healthz and /metrics
            port = await self._serve(ops_app(self.health, self.metrics.exposition), s.sms_query_host, s.sms_query_port)
            self.ops_url = f"http://{_client_host(s.sms_query_host)}:{port}"
        log.info("runtime.started", bootstrap=self.bootstrap, receiver=self.receiver_url or None,
                 query=self.query_url or None, warehouse=_redact(s.warehouse_url))

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    def readiness(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        if self.parts.worker:
            out["worker"] = self.worker_ready()
        if self.parts.sink:
            out["sink"] = bool(self.sink and self.sink.ready)
        if self.warehouse is not None:
            out["warehouse"] = self.warehouse._client is not None
        if self.parts.receiver:
            out["broker"] = bool(self.publisher and self.publisher.ready)
        return out

    def health(self) -> Verdict:
        """What /healthz answers: readiness, and the sink's lag against SMS_HEALTH_MAX_SINK_LAG_SECONDS."""
        return runtime_verdict(self)

    def worker_ready(self) -> bool:
        app = self.app
        if app is None or not app.started or app.rebalancing:
            return False
        try:
            return bool(app.consumer.assignment())
        except Exception:
            return False

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(self.readiness().values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {self.readiness()}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        self._feeds_stop.set()
        if self._feed_tasks:
            await asyncio.gather(*self._feed_tasks, return_exceptions=True)
        for client in self._feed_clients:
            await client.close()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.app is not None:
            await self.app.stop()
        if self.sink is not None and self._sink_task is not None:
            self.sink.stop()
            await self._sink_task
        if self.warehouse is not None:
            await asyncio.to_thread(self.warehouse.close)
        if self.broker is not None:
            self.broker.stop()
        log.info("runtime.stopped")


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def run_until_signal(runtime: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        await stop.wait()
    finally:
        log.info("runtime.stopping")
        await runtime.stop()
