"""The faust app: its topics, its state table and the wiring of its agents and timers.

Sends and receipts are read by one agent over both topics (co-partitioned by the message key).
A record carries a batch of events of one partition (see sources/producer.py), and the agent
takes records in batches (`take_events`), so faust's per-record cost is paid once per batch of
events. Per batch and partition the agent writes one changelog record (the changed states, see
streams/state.py) and one record of deliveries (the final state of each message it touched) to
sms.deliveries.v1. A message that is joined and decided is forgotten by the stream (the warehouse
keeps the merged row). A batch's events are acknowledged only once the broker has every record
the batch produced, and a batch that fails ends the process without acknowledging it
(`agents.stop_unacknowledged`), so a crash replays records whose effects were not stored; the join
and the warehouse ignore repeats.

Several apps may be built in one process (tests; the runtime's new worker after a rotation of the
embedded broker): the agents are module-level functions (agents.py, compensation.py) bound here to
one app's parts (`Streams`), never to module state. Where this ends: declarations and wiring; what
the agents do is theirs, the faust adjustments are overrides.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import faust

from sms_analytics.broker.admin import MAX_BATCH_BYTES
from sms_analytics.model import topics
from sms_analytics.settings import AlertRules, CompensationPolicy
from sms_analytics.streams import agents, compensation
from sms_analytics.streams.alerts import Detector
from sms_analytics.streams.context import JoinStats, Streams
from sms_analytics.streams.overrides import TableManager, transport
from sms_analytics.streams.state import TABLE, MessageStateTable, changelog_retention


def build_app(*, app_id: str, bootstrap: str, partitions: int, replication: int, data_dir: str,
              batch: int, within: float, compensation_policy: CompensationPolicy,
              rules: AlertRules | None = None, raw_phone: bool = False,
              fetch_max_wait_ms: int = 50, session_timeout: float = 6.0) -> tuple[faust.App, JoinStats]:
    """The join app. Deliveries carry the raw number only with raw_phone (SMS_STORE_RAW_PHONE): the
    sink needs it only then; the state (and the compensation requests) keep it for the pollers."""
    app = _app(app_id, bootstrap, partitions, replication, data_dir, session_timeout)
    app.transport = transport(app, fetch_max_wait_ms)
    streams = _declare(app, partitions, compensation_policy, rules, batch, within, raw_phone)
    source = _topic(app, (topics.SENDS, topics.RECEIPTS), partitions)
    app.agent(source, name="sms_join")(_bound(agents.join, streams))
    app.timer(interval=compensation_policy.scan_seconds, name="sms_compensation_scan")(
        _bound(compensation.scan, streams, compensation_policy))
    if streams.detector is not None:
        if streams.detector.rules.conversion_rate is not None:
            app.agent(_topic(app, topics.CONVERSIONS, partitions), name="sms_conversions")(
                _bound(agents.conversions, streams))
        app.timer(interval=streams.detector.rules.evaluate_every_seconds, name="sms_alerts")(
            _bound(agents.evaluate_alerts, streams, streams.detector))
    app.on_partitions_assigned.connect(_bound(agents.note_assignment, streams.stats))
    return app, streams.stats


def _app(app_id: str, bootstrap: str, partitions: int, replication: int, data_dir: str,
         session_timeout: float) -> faust.App:
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=partitions,
        topic_replication_factor=replication,
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(1.0, session_timeout / 4),
        # Records of hundreds of events: a producer batch must hold several of them, or aiokafka
        # sends one record per partition per round trip (it keeps one batch per partition).
        producer_linger=0.005,
        producer_max_batch_size=MAX_BATCH_BYTES,  # Apache Kafka refuses a larger batch (broker/admin.py)
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=4 * 1024 * 1024,  # per partition: several large records per fetch
        table_standby_replicas=0,
        web_enabled=False,
        topic_disable_leader=True,
        TableManager=TableManager,
        # The broker validates each batch's CRC when it is produced, and TCP guards the fetch;
        # checking it again in the consumer's thread cost ~5% of the worker's CPU (software CRC32C).
        broker_check_crcs=False,
    )


def _declare(app: faust.App, partitions: int, policy: CompensationPolicy, rules: AlertRules | None,
             batch: int, within: float, raw_phone: bool) -> Streams:
    """The app's output topics and state table, and the detector of its alerts."""
    table = MessageStateTable(
        app, name=TABLE, default=None, beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
        partitions=partitions, retention=changelog_retention(timedelta(milliseconds=policy.forget_after_ms)))
    app.tables.add(table)  # returns the same table, typed as faust's CollectionT
    detector = Detector(rules) if rules is not None else None
    return Streams(stats=JoinStats(detector=detector), table=table, store=table.store,
                   deliveries=_topic(app, topics.DELIVERIES, partitions), dead=_topic(app, topics.DEADLETTER, partitions),
                   requests=_topic(app, topics.COMPENSATION, partitions), alerts=_topic(app, topics.ALERTS, partitions),
                   detector=detector,
                   batch=batch, within=within, raw_phone=raw_phone)


def _topic(app: faust.App, names: str | tuple[str, ...], partitions: int) -> Any:
    """A topic of raw bytes (keys and values are encoded by model/events.py)."""
    return app.topic(*((names,) if isinstance(names, str) else names), key_type=bytes, value_type=bytes,
                     partitions=partitions)


def _bound(fun: Callable[..., Any], *parts: Any) -> Callable[..., Any]:
    """`fun` with its first arguments bound to one app's parts, keeping its name and docstring
    (faust names timers and describes agents by them). Not marked as wrapping `fun`: faust reads
    a task's signature through `__wrapped__`, and would pass the app to a function taking parts."""
    bound = partial(fun, *parts)
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(bound, name, getattr(fun, name))
    return bound
