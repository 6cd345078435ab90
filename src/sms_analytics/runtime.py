"""Wires the stages into one process: broker (embedded or external), receiver, faust worker,
sink and the read-only query endpoint. `up` runs them all; `worker` and `receiver` run parts.

Start order: broker -> topics -> warehouse (migrations) -> worker -> sink -> HTTP.
Stop order is the reverse: the receiver stops taking input, the worker stops (committing its
offsets), the sink flushes and commits, the warehouse closes, the embedded broker ends.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from sms_analytics import startup
from sms_analytics.broker.admin import PartitionMismatch, ensure_topics, topic_configs
from sms_analytics.broker.embedded import EmbeddedBroker
from sms_analytics.dashboards import relay
from sms_analytics.model import region, topics
from sms_analytics.model.addresses import is_loopback
from sms_analytics.model.phone import PhoneHasher, load_or_create_key
from sms_analytics.observability.health import Verdict, runtime_verdict
from sms_analytics.observability.metrics import Metrics
from sms_analytics.settings import Settings
from sms_analytics.sinks import error_codes, template_names
from sms_analytics.sinks.query_api import ops_app, query_app
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.warehouse import Warehouse
from sms_analytics.sinks.writer import ClickHouseSink
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.feeds import build_feeds
from sms_analytics.sources.journal import Forwarder, Journal, JournaledPublisher
from sms_analytics.sources.producer import Publisher, Publishes
from sms_analytics.sources.receiver import Guards, Receiver
from sms_analytics.streams.app import build_app
from sms_analytics.streams.context import JoinStats
from sms_analytics.streams.overrides import tune_gc
from sms_analytics.streams.state import (
    TABLE,
    MessageStateStore,
    changelog_retention,
    changelog_topic,
    seed_changelog,
)
from sms_analytics.urls import redact

log = structlog.get_logger(__name__)

JOURNAL_FILE = "journal.sqlite3"


class QueryEndpointUnprotected(startup.SettingInvalid):
    """The read-only query endpoint would listen beyond this machine without a token."""


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
        self.publisher: Publishes | None = None
        self._own_publisher: Publisher | None = None  # the Grafana relay's, in a process without receivers
        self._runners: list[web.AppRunner] = []
        self.receiver_url = ""
        self.query_url = ""
        self.feeds: list[Any] = []
        self._feed_tasks: list[asyncio.Task[None]] = []
        self._feeds_stop = asyncio.Event()
        self._feed_clients: list[Any] = []
        self.rollups: Rollups | None = None
        self.journal: Journal | None = None  # embedded `up` only: accepted input on disk
        self.forwarder: Forwarder | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._rotating = False  # a planned pause of the worker: still ready
        self._unrecovered = False  # a recovery failed part-way: the keeper tries again
        self._recovering = False  # the stream is being restarted on a new broker: not ready
        # False from the moment a rotation or a recovery takes the stream apart until it runs again on
        # the new broker: a stop that cuts one short has no stream to checkpoint
        self._stream_whole = True
        self._incarnation = 0  # embedded mode: the stream's restarts on a new broker
        self.metrics = Metrics(self)  # served on /metrics (observability/metrics.py)
        self.ops_url = ""  # /healthz and /metrics of a process with neither receiver nor query endpoint
        self.started = False  # start() completed

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        if self.parts.query and not is_loopback(s.sms_query_host) and not s.query_token:
            raise QueryEndpointUnprotected(
                "SMS_QUERY_HOST", s.sms_query_host, "not a loopback address: set SMS_QUERY_TOKEN, which "
                "POST /query will then require (Authorization: Bearer …)")
        if not self.bootstrap:
            self.broker = EmbeddedBroker()
            self.bootstrap = await self.broker.start()
            if self.parts.receiver and self.parts.worker and self.parts.sink:
                # `up` on the embedded broker: accepted input is journaled before it is answered
                self.journal = await Journal(s.sms_data_dir / JOURNAL_FILE, partitions=s.kafka_partitions,
                                             synchronous=s.sms_journal_sync).open()
                self.forwarder = Forwarder(self.journal, linger_ms=s.sms_publish_linger_ms,
                                           consumed=lambda: self.join_stats.events if self.join_stats else 0)
        # A receiver alone serves at once, answering 503 until its first connection to the broker.
        receiver_only = not (self.parts.worker or self.parts.sink)
        if not receiver_only:
            await self._first_connection(self._ensure_topics)
        if self.parts.sink or self.parts.query:
            warehouse = self.warehouse = Warehouse(s.warehouse_url, s.sms_clickhouse_cluster)
            await startup.wait_async(startup.warehouse(s), lambda: asyncio.to_thread(warehouse.open),
                                     s.sms_startup_wait_seconds)
            await asyncio.to_thread(self.warehouse.migrate)
            await asyncio.to_thread(self.warehouse.apply_views, int(s.sms_expire_after.total_seconds()))
            await asyncio.to_thread(self.warehouse.apply_retention, s.sms_retention_days, s.sms_rollup_retention_days)
            await asyncio.to_thread(error_codes.load, self.warehouse)
            await asyncio.to_thread(template_names.load, self.warehouse, s.sms_template_names)
            if self.parts.sink:
                self.rollups = Rollups(self.warehouse, int(s.sms_expire_after.total_seconds()), s.sms_retention_days)
        if self.journal is not None:
            await self._seed_changelog(await self.journal.load_snapshot())
        if self.parts.worker:
            s.sms_data_dir.mkdir(parents=True, exist_ok=True)
            await self._start_worker()
        if self.parts.sink:
            self._start_sink()
        if self.parts.receiver:
            await self._start_receiver(receiver_only)
        if self.parts.query and self.warehouse is not None:
            app = query_app(self.warehouse, self.readiness, metrics=self.metrics.exposition, health=self.health,
                            token=s.query_token)
            publisher = await self._relay_publisher()
            if publisher is not None:
                relay.install(app, self.warehouse.read, publisher, lambda: self.settings.sms_alert_rules.webhooks,
                              s.query_token)
            port = await self._serve(app, s.sms_query_host, s.sms_query_port)
            self.query_url = f"http://{_client_host(s.sms_query_host)}:{port}"
        if not self.receiver_url and not self.query_url:  # e.g. `worker --no-sink`: still /healthz and /metrics
            port = await self._serve(ops_app(self.health, self.metrics.exposition), s.sms_query_host, s.sms_query_port)
            self.ops_url = f"http://{_client_host(s.sms_query_host)}:{port}"
        if self.journal is not None:
            self._keeper = asyncio.create_task(self._keep_broker(), name="embedded-broker-keeper")
        if receiver_only and self.publisher is not None:
            await self._first_connection(self.publisher.start)
        self.started = True
        log.info("runtime.started", bootstrap=self.bootstrap, receiver=self.receiver_url or None,
                 query=self.query_url or None, warehouse=redact(s.warehouse_url),
                 journal=str(self.journal.path) if self.journal else None,
                 replaying=self.journal.last_seq - self.journal.snapshot_seq if self.journal else None)

    async def _relay_publisher(self) -> Publishes | None:
        """What the Grafana relay (dashboards/relay.py) publishes through: the receivers' publisher, else
        one of its own (a worker or sink process), stopped with the process; None in a process with
        neither (a query endpoint alone, which no command runs): no relay there."""
        if self.publisher is not None:
            return self.publisher
        if not (self.parts.worker or self.parts.sink):
            return None
        s = self.settings
        self._own_publisher = Publisher(self.bootstrap, send_timeout=s.sms_publish_timeout_seconds,
                                        linger_ms=s.sms_publish_linger_ms, idempotent=self._idempotent)
        await self._first_connection(self._own_publisher.start)
        return self._own_publisher

    async def _first_connection(self, attempt: Callable[[], Awaitable[Any]]) -> None:
        """The first call to the broker: waited for (SMS_STARTUP_WAIT_SECONDS) unless the broker is our own."""
        if self.broker is not None:
            await attempt()
        else:
            await startup.wait_async(startup.kafka(self.settings), attempt, self.settings.sms_startup_wait_seconds)

    async def _start_worker(self) -> None:
        s = self.settings
        previous = self.join_stats
        self.app, self.join_stats = build_app(
            app_id=self._app_id, bootstrap=self.bootstrap, partitions=s.kafka_partitions,
            replication=s.kafka_replication_factor, data_dir=str(s.sms_data_dir / "faust"),
            batch=s.sms_join_batch, within=s.sms_join_within_seconds,
            compensation_policy=s.compensation, rules=s.sms_alert_rules, raw_phone=s.sms_store_raw_phone,
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms, session_timeout=self._session_timeout,
        )
        if previous is not None:  # a new broker: the counts go on, the offsets start again
            self.join_stats.carry(previous)
        await self.app.start()
        tune_gc()

    def _start_sink(self) -> None:
        s = self.settings
        assert self.warehouse is not None
        previous = self.sink
        self.sink = ClickHouseSink(
            self.warehouse, self.bootstrap, group=f"{self._app_id}-sink", batch_rows=s.sms_sink_batch_rows,
            flush_seconds=s.sms_sink_flush_seconds, store_raw_phone=s.sms_store_raw_phone,
            rollups=self.rollups, rollup_seconds=s.sms_rollup_seconds, fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            session_timeout=self._session_timeout,
        )
        if previous is not None:  # a new broker (rotation): the counts go on
            self.sink.stats = previous.stats
        self._sink_task = asyncio.create_task(self.sink.run(), name="clickhouse-sink")

    async def _start_receiver(self, receiver_only: bool) -> None:
        s = self.settings
        if self.journal is not None and self.forwarder is not None:
            self.publisher = JournaledPublisher(self.journal, self.forwarder)
            await self.forwarder.start(self.bootstrap)
        else:
            self.publisher = Publisher(
                self.bootstrap, send_timeout=s.sms_publish_timeout_seconds, linger_ms=s.sms_publish_linger_ms,
                prepare=self._ensure_topics, idempotent=self._idempotent,
            )
        if not receiver_only:  # alone, it connects once it serves (start)
            await self.publisher.start()
        key = load_or_create_key(
            s.sms_phone_hash_key.get_secret_value() if s.sms_phone_hash_key else None, s.sms_data_dir
        )
        ids = Identities(PhoneHasher(key))
        # The region of a number (model/region.py) loads phonenumbers' geocoding data on first use:
        # ~0.2-0.5 s and ~100 MB of RSS, paid here once rather than by the first push.
        await asyncio.to_thread(region.warm)
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
            out["worker"] = not self._recovering and (self._rotating or self.worker_ready())
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
        except Exception:  # noqa: BLE001  (a consumer that cannot say is not ready)
            return False

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(self.readiness().values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {self.readiness()}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        self._feeds_stop.set()
        if self._feed_tasks:
            await asyncio.gather(*self._feed_tasks, return_exceptions=True)
        for client in self._feed_clients:
            await client.close()
        for publisher in (self.publisher, self._own_publisher):
            if publisher is not None:
                await publisher.stop()
        whole = self._stream_whole
        if not whole:
            log.warning("runtime.stop_without_checkpoint", reason="a rotation or recovery of the embedded broker "
                        "was cut short; the next start replays the journal from the last snapshot")
        if (whole and self.forwarder is not None and self.broker is not None and self.broker.alive
                and self.app is not None):
            try:  # a clean stop saves the stream's states: the next start has nothing to replay
                await self._checkpoint()
            except Exception as exc:  # noqa: BLE001  (a failed checkpoint only costs a replay at the next start)
                log.warning("journal.checkpoint_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self.app is not None:
            if whole:
                await self.app.stop()
            else:  # a worker whose start was cut short: its stop may wait on what never started
                try:
                    await asyncio.wait_for(self.app.stop(), STOP_SECONDS)
                except Exception as exc:  # noqa: BLE001  (stopping anyway: nothing of it is needed any more)
                    log.warning("worker.stop_failed", error=type(exc).__name__)
        await self._stop_sink(flush=True)
        if self.journal is not None:
            await self.journal.close()
        if self.warehouse is not None:
            await asyncio.to_thread(self.warehouse.close)
        if self.broker is not None:
            self.broker.stop()
        if self.started:
            log.info("runtime.stopped")

    async def _stop_sink(self, *, flush: bool, final_round: bool = True) -> None:
        sink, task = self.sink, self._sink_task
        if sink is None or task is None:
            return
        self._sink_task = None
        if flush:
            sink.stop(final_round=final_round)
        else:
            task.cancel()
        await asyncio.gather(task, return_exceptions=not flush)

    # --- the embedded broker: rotation and recovery -------------------------------------------------
    async def _keep_broker(self) -> None:
        """Embedded mode: recover when the broker died; rotate it when it holds too much memory."""
        assert self.broker is not None
        s = self.settings
        last_rotation = time.monotonic()
        limit = s.sms_broker_max_memory_mb * 1024 * 1024
        while True:
            await asyncio.sleep(KEEPER_SECONDS)
            try:
                if not self.broker.alive or self._unrecovered:
                    if not self.broker.alive:
                        log.error("embedded_broker.died", bootstrap=self.bootstrap)
                    await self._recover_watched()
                elif (self.broker.resident_bytes > limit
                      and time.monotonic() - last_rotation >= s.sms_broker_rotate_min_seconds):
                    await self.rotate()  # postponed (False) while the stream cannot catch up: tried again later
                    last_rotation = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep keeping: the next round tries again
                log.exception("embedded_broker.keeper_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def rotate(self) -> bool:
        """Replace the embedded broker by an empty one, carrying the join's pending states over
        (`_checkpoint`). Receivers keep answering meanwhile (into the journal). When the stream
        cannot catch up in time, nothing is rotated (False) and the stream goes on."""
        assert self.forwarder is not None and self.broker is not None
        started = time.monotonic()
        before = self.broker.resident_bytes
        self._rotating = True
        try:
            point = await self._checkpoint(final_round=False)
            if point is None:
                return False
            seq, states, pruned = point
            self._stream_whole = False
            closing = self.sink.closing if self.sink is not None else None
            await self.forwarder.stop()
            await self.broker.restart()
            if closing is not None:
                await asyncio.wait([closing], timeout=STOP_SECONDS)
            self.broker.rotations += 1
            await self._resume(_by_partition(states))
        except Exception as exc:  # noqa: BLE001  (the broker or a restart failed: start again from the snapshot)
            log.error("embedded_broker.rotation_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await self._recover_watched()
            return False
        finally:
            self._rotating = False
        log.info("embedded_broker.rotated", seconds=round(time.monotonic() - started, 2), snapshot_seq=seq,
                 states=len(states), pruned=pruned, broker_mib_before=before >> 20)
        return True

    async def _checkpoint(self, *, final_round: bool = True) -> tuple[int, list[tuple[str, int, bytes]], int] | None:
        """Stop the stream at a point of the journal and save its states there.

        The forwarder stops at journal row P; once the worker has joined every record up to P and
        the sink has written everything the worker produced, the worker's states are exactly the
        states after P: they become the journal's snapshot, and the rows up to P are pruned. The
        worker and the sink are then stopped; returns (P, states, rows pruned). If the worker or
        the sink does not catch up within DRAIN_SECONDS, forwarding resumes and None is returned:
        nothing was stopped."""
        assert self.journal is not None and self.forwarder is not None
        phases = _Phases()
        seq = await self.forwarder.pause()
        stats, app, sink = self.join_stats, self.app, self.sink
        assert stats is not None and app is not None and sink is not None
        forwarded = dict(self.forwarder.produced.offsets)
        phases.done("forwarder")
        try:
            await _until(lambda: _reached(stats.positions, forwarded, (topics.SENDS, topics.RECEIPTS)),
                         DRAIN_SECONDS, "the worker to join every forwarded record")
            phases.done("join")
            produced = {**forwarded, **stats.produced}
            await _until(lambda: _reached(_offsets(sink.written), produced, SINK_TOPICS),
                         DRAIN_SECONDS, "the sink to write every delivery")
            phases.done("sink")
        except TimeoutError as exc:
            self.forwarder.resume()
            log.warning("journal.checkpoint_postponed", reason=str(exc), **phases.seconds)
            return None
        await app.stop()
        states = self._state_rows()
        phases.done("worker_stop")
        await self._stop_sink(flush=True, final_round=final_round)
        phases.done("sink_stop")
        pruned = await self.journal.save_snapshot(seq, states, keep_dead_letters_ms=self._keep_dead_letters_ms)
        phases.done("snapshot")
        log.info("journal.checkpoint", snapshot_seq=seq, states=len(states), pruned=pruned, **phases.seconds)
        return seq, states, pruned

    async def _recover_watched(self) -> None:
        """`_recover`, begun again whenever the broker it started dies while it runs: a recovery waits
        on its broker (faust's start retries a broker that is gone for ever), so a second death in the
        middle of one would otherwise hang it, with the stream stopped and /healthz 503 until a restart.
        Not ready (/healthz 503, "worker not ready") until a recovery completes; one that fails leaves
        `_unrecovered` set, and the keeper tries again."""
        assert self.broker is not None
        self._recovering = True
        self._unrecovered = True
        try:
            while True:
                dead = self.broker.process  # the one that died (or None): the recovery replaces it
                task = asyncio.create_task(self._recover(), name="embedded-broker-recovery")
                try:
                    while not task.done() and not (self.broker.died and self.broker.process is not dead):
                        await asyncio.wait([task], timeout=KEEPER_SECONDS)
                finally:  # the keeper cancelled (the pipeline stops): the recovery with it
                    if not task.done():
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
                if not task.cancelled():
                    task.result()  # a failed recovery raises: the keeper tries again
                    self._unrecovered = False
                    return
                log.error("embedded_broker.died_during_recovery", bootstrap=self.bootstrap)
        finally:
            self._recovering = False

    async def _recover(self) -> None:
        """Start again on an empty broker from the journal's snapshot, replaying every row after it:
        after the broker died, or a rotation failed. Nothing is lost (the rows are in the journal);
        what was already written is written again and merged by the warehouse.

        The old worker, sink and forwarder are stopped against a stand-in broker on the same address
        (faust's stop waits a minute for a broker that is gone), which is then replaced by a clean
        one: whatever they flush while stopping never reaches the broker the stream resumes on."""
        assert self.journal is not None and self.forwarder is not None and self.broker is not None
        started = time.monotonic()
        self._stream_whole = False
        if not self.broker.alive:
            await self.broker.restart()
            # the pipeline's topics on the stand-in too: a commit to a topic it does not know is retried
            # by the old worker's consumer for as long as its stop is given (STOP_SECONDS)
            await self._ensure_topics()
        await self.forwarder.stop()
        if self.app is not None:
            try:
                await asyncio.wait_for(self.app.stop(), STOP_SECONDS)
            except Exception as exc:  # noqa: BLE001  (the stop goes on: the sink next)
                log.warning("worker.stop_failed", error=type(exc).__name__)
        await self._stop_sink(flush=False)
        await self.broker.restart()
        await self._resume(await self.journal.load_snapshot())
        log.info("embedded_broker.recovered", seconds=round(time.monotonic() - started, 2),
                 snapshot_seq=self.journal.snapshot_seq, replaying=self.journal.last_seq - self.journal.snapshot_seq)

    async def _resume(self, states: dict[int, list[tuple[str, bytes]]]) -> None:
        """On a new empty broker: topics, the snapshot as the changelog, worker, sink, forwarder."""
        assert self.journal is not None and self.forwarder is not None
        self._incarnation += 1  # new consumer groups: an old worker still stopping can never join them
        await self._ensure_topics()
        await self._seed_changelog(states)
        await self._start_worker()
        self._start_sink()
        await self.forwarder.start(self.bootstrap, from_seq=self.journal.snapshot_seq)
        self._stream_whole = True

    async def _ensure_topics(self) -> None:
        """The pipeline's topics with their configs; an existing one (the join's changelog too) with
        another partition count than KAFKA_PARTITIONS stops the start (admin.PartitionMismatch)."""
        s = self.settings
        try:
            await ensure_topics(self.bootstrap, s.kafka_partitions, s.kafka_replication_factor,
                                topic_configs(s.kafka_input_retention, s.kafka_output_retention),
                                check=(changelog_topic(self._app_id),))
        except PartitionMismatch as exc:  # a setting that cannot work with these topics: one line, exit 2
            cause = str(exc).split(" but ", 1)[-1]
            raise startup.SettingInvalid("KAFKA_PARTITIONS", str(s.kafka_partitions), cause) from exc

    @property
    def _idempotent(self) -> bool | None:
        """Whether the receivers' producer is idempotent: KAFKA_IDEMPOTENT_PRODUCER if set; else
        whenever the broker grants a producer id (None: the publisher finds out), which Apache Kafka
        does and Tansu does not, embedded or external."""
        return self.settings.kafka_idempotent_producer

    def _state_rows(self) -> list[tuple[str, int, bytes]]:
        store: MessageStateStore = self.app.tables[TABLE].store
        return [(k, int.from_bytes(raw[:2], "big"), bytes(raw[2:])) for k, raw in store.data.items()]

    async def _seed_changelog(self, states: dict[int, list[tuple[str, bytes]]]) -> None:
        """Write the snapshot's states into the join's changelog, which the worker recovers from."""
        s = self.settings
        await seed_changelog(self.bootstrap, changelog_topic(self._app_id), s.kafka_partitions,
                             s.kafka_replication_factor, states, changelog_retention(s.sms_expire_after))

    @property
    def _app_id(self) -> str:
        """The faust app id (and so the worker's group, its changelog and the sink's group). In
        embedded mode each start on a new broker takes a new one: an old worker whose stop did not
        finish (faust's stop can wait on a broker that went away) reconnects to the same address, and
        in the same groups it would take partitions from the new one."""
        suffix = f"-r{self._incarnation}" if self.journal is not None and self._incarnation else ""
        return f"{self.settings.sms_app_id}{suffix}"

    @property
    def _session_timeout(self) -> float:
        """Consumer-group session timeout of the worker and the sink. The embedded broker makes a
        group join wait half of it (measured: 5.0 / 3.0 / 1.0 s at 10 / 6 / 2 s), and each broker
        rotation starts both groups anew; in embedded `up` both consumers live in this one process,
        with no other member to fail over to, so a short timeout costs nothing there. Elsewhere 6 s
        keeps a worker that stalls for a moment from being expelled."""
        return EMBEDDED_SESSION_SECONDS if self.journal is not None else 6.0

    @property
    def _keep_dead_letters_ms(self) -> int:
        return int(self.settings.sms_journal_deadletter_days * 86_400_000)


EMBEDDED_SESSION_SECONDS = 2.0
KEEPER_SECONDS = 1.0  # how often the keeper looks at the embedded broker
DRAIN_SECONDS = 60.0  # longest wait for the worker or the sink to catch up before a rotation
STOP_SECONDS = 20.0
SINK_TOPICS = (topics.DELIVERIES, topics.REPLIES, topics.PROVIDER_STATS)


class _Phases:
    """How long each step of a checkpoint took (logged)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[f"{name}_s"] = round(now - self._last, 3)
        self._last = now


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        await asyncio.sleep(0.05)


def _reached(positions: dict[tuple[str, int], int], targets: dict[tuple[str, int], int],
             which: tuple[str, ...]) -> bool:
    """Every target offset of the topics `which` is at or below the position reached."""
    return all(positions.get(tp, -1) >= offset for tp, offset in targets.items() if tp[0] in which)


def _offsets(written: dict[Any, int]) -> dict[tuple[str, int], int]:
    """The sink's next offsets as the last offsets written."""
    return {(tp.topic, tp.partition): next_offset - 1 for tp, next_offset in written.items()}


def _by_partition(states: list[tuple[str, int, bytes]]) -> dict[int, list[tuple[str, bytes]]]:
    """(key, partition, state) rows as the snapshot's shape: per partition, (key, state) in order."""
    out: dict[int, list[tuple[str, bytes]]] = {}
    for key, partition, state in states:
        out.setdefault(partition, []).append((key, state))
    return out


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


async def run_until_signal(runtime: Runtime) -> None:
    """Start, run until SIGINT/SIGTERM, stop. A signal during the start (e.g. while it waits for the
    broker) ends the start; a start that fails stops what it started, quietly, and raises."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.ensure_future(runtime.start())
    signalled = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        else:
            starting.result()
            await signalled
    finally:
        signalled.cancel()
        if runtime.started:
            log.info("runtime.stopping")
        await runtime.stop()
