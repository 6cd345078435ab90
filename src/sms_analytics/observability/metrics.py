"""Prometheus metrics of a running pipeline process, served on `GET /metrics` of the port the
process already listens on (the receiver's, or the query endpoint's of a worker or sink).

Nothing is counted twice: a collector reads the live stats objects of one Runtime (JoinStats,
SinkStats, the sink's and the worker's Kafka consumers, the publisher's dead letters, the embedded
broker) when it is scraped. Each Runtime has its own CollectorRegistry, so several Runtimes in one
process (the tests) never clash; `/metrics` serves it followed by prometheus_client's default
registry (the pull feeds' metrics and the process's own: CPU, resident memory, file descriptors).

Names: `sms_` prefix, counters end in `_total`, durations in `_seconds`, sizes in `_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sms_analytics.broker.embedded import resident_bytes
from sms_analytics.model import topics
from sms_analytics.observability.health import runtime_verdict, sink_lag_seconds
from sms_analytics.observability.timings import Timings

log = structlog.get_logger(__name__)

# The worker's lag is reported for the topics it joins; its changelog partitions are read only at
# recovery and then hold the worker's own writes, so their "lag" would only grow.
WORKER_TOPICS = (topics.SENDS, topics.RECEIPTS)
LAG_HELP = ("Records on the broker not yet read by this consumer (highwater minus position), per topic and "
            "partition; consumer is worker (the faust join, its source topics) or sink (the ClickHouse sink). "
            "The embedded broker (Tansu) reports a highwater up to one fetched batch short of the log end, so "
            "there the figure can read low (never below 0) until the next fetch.")
# Every family this module can expose: the dashboards and alert rules may name only these (and the
# default registry's), which tests/test_observability.py checks against a real scrape.
FAMILIES = (
    "sms_component_ready", "sms_health_ok", "sms_consumer_lag_records",
    "sms_join_events_total", "sms_join_deliveries_emitted_total", "sms_join_states",
    "sms_join_undecodable_records_total", "sms_join_states_forgotten_total",
    "sms_join_compensation_requests_total", "sms_join_alerts_total", "sms_join_busy_seconds_total",
    "sms_join_partitions",
    "sms_sink_rows_written_total", "sms_sink_batches_total", "sms_sink_insert_retries_total",
    "sms_sink_undecodable_records_total", "sms_sink_batch_seconds", "sms_sink_oldest_unwritten_age_seconds",
    "sms_sink_unwritten_rows", "sms_sink_rollup_round_seconds", "sms_sink_rollup_failures_total",
    "sms_sink_rollup_pending_minutes",
    "sms_dead_letters_total",
    "sms_journal_rows", "sms_journal_unforwarded_rows",
    "sms_embedded_broker_resident_bytes", "sms_embedded_broker_rotations_total", "sms_memory_budget_bytes",
)
# Families of parts a test pipeline does not run (the Alibaba MNS consumers need MNS queues).
MNS_FAMILIES = ("sms_mns_polls_total", "sms_mns_messages_total", "sms_mns_events_total", "sms_mns_rejected_total",
                "sms_mns_errors_total", "sms_mns_backoff_seconds")


class Metrics:
    """A Runtime's metrics: its own registry with one PipelineCollector."""

    def __init__(self, runtime: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PipelineCollector(runtime))

    def exposition(self) -> bytes:
        """The text format of this runtime's metrics, then the process-wide default registry's."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class PipelineCollector(Collector):
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration: the families depend on the parts running

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        parts: list[Iterable[Metric]] = [_health(rt), _consumer_lag(rt)]
        if rt.join_stats is not None:
            parts.append(_join(rt.join_stats, rt.app))
        if rt.sink is not None:
            parts.append(_sink(rt.sink))
        if rt.publisher is not None or rt.join_stats is not None:
            parts.append(_dead_letters(rt.publisher, rt.join_stats))
        parts.append(_journal(getattr(rt, "journal", None)))
        if rt.broker is not None:
            parts.append(_broker(rt.broker, rt.settings.sms_memory_budget_mb))
        parts.append(_mns(rt.feeds))
        for part in parts:
            try:
                yield from part
            except Exception as exc:  # noqa: BLE001 - a scrape must never fail: an unreadable family is left out
                log.warning("metrics.collect_failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), doc, value=value)


def _histogram(name: str, doc: str, timings: Timings) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=timings.cumulative(), sum_value=timings.total)


# --- health -----------------------------------------------------------------------------------------

def _health(rt: Any) -> Iterator[Metric]:
    verdict = runtime_verdict(rt)
    ready = GaugeMetricFamily("sms_component_ready", "1 when the component of this process is ready (as /healthz)",
                              labels=["component"])
    for name, ok in verdict.components.items():
        ready.add_metric([name], 1.0 if ok else 0.0)
    yield ready
    yield _gauge("sms_health_ok", "1 when /healthz answers 200: every component ready and the sink's lag within "
                 "SMS_HEALTH_MAX_SINK_LAG_SECONDS", 1.0 if verdict.ok else 0.0)


# --- consumer lag -------------------------------------------------------------------------------------

def _consumer_lag(rt: Any) -> Iterator[Metric]:
    family = GaugeMetricFamily("sms_consumer_lag_records", LAG_HELP, labels=["consumer", "topic", "partition"])
    rows: list[tuple[str, Any, int | None, int | None]] = []
    if rt.app is not None:
        rows += [("worker", tp, hw, pos) for tp, (hw, pos) in worker_positions(rt.app).items()]
    if rt.sink is not None:
        rows += [("sink", tp, hw, pos) for tp, (hw, pos) in rt.sink.positions().items()]
    for consumer, tp, highwater, position in sorted(rows, key=lambda r: (r[0], r[1].topic, r[1].partition)):
        if highwater is None or position is None:
            continue  # not fetched yet: the broker's end is unknown
        family.add_metric([consumer, tp.topic, str(tp.partition)], float(max(0, highwater - position)))
    yield family


def worker_positions(app: Any) -> dict[Any, tuple[int | None, int | None]]:
    """(highwater, position) of the faust worker's source partitions. The position is the offset
    after the last record handed to the join (faust's read offset), else the aiokafka consumer's
    (records fetched but not yet handed over count as read there)."""
    if not getattr(app, "started", False):
        return {}
    try:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in WORKER_TOPICS]
        kafka = consumer._thread._ensure_consumer()
        states = kafka._subscription.subscription.assignment
    except Exception:  # noqa: BLE001 - not started or rebalancing: nothing assigned to report
        return {}
    out: dict[Any, tuple[int | None, int | None]] = {}
    for tp in assigned:
        state = states.state_value(tp)
        if state is None:
            continue
        read = consumer._read_offset.get(tp)
        position = read + 1 if read is not None else (state.position if state.has_valid_position else None)
        out[tp] = (state.highwater, position)
    return out


# --- the join -----------------------------------------------------------------------------------------

def states_held(app: Any) -> int:
    """Messages the join keeps a state for (sends waiting for their receipt and the like)."""
    table = app.tables.get("message_state") if app is not None else None
    return len(table.store.data) if table is not None else 0


def _join(stats: Any, app: Any) -> Iterator[Metric]:
    yield _counter("sms_join_events_total", "Send and receipt events the join processed "
                   "(rate(): events joined per second)", stats.events)
    yield _counter("sms_join_deliveries_emitted_total", "Message states (deliveries) the join wrote to "
                   f"{topics.DELIVERIES}", stats.emitted)
    yield _gauge("sms_join_states", "Messages whose state the join holds in memory (not yet final)", states_held(app))
    yield _counter("sms_join_undecodable_records_total", "Source records the join could not decode "
                   "(dead-lettered)", stats.undecodable)
    yield _counter("sms_join_states_forgotten_total", "States dropped after SMS_EXPIRE_AFTER", stats.forgotten)
    yield _counter("sms_join_compensation_requests_total", "Pending messages the join asked the pollers about",
                   stats.compensation_requests)
    yield _counter("sms_join_alerts_total", "In-stream alerts sent (firing and resolved)", stats.alerts)
    yield _counter("sms_join_busy_seconds_total", "Time the join spent processing batches (not waiting)",
                   stats.busy_seconds)
    yield _gauge("sms_join_partitions", "Source partitions this worker owns", len(stats.partitions))


# --- the sink -------------------------------------------------------------------------------------------

def _sink(sink: Any) -> Iterator[Metric]:
    stats = sink.stats
    yield _counter("sms_sink_rows_written_total", "Rows the sink wrote to the warehouse (rate(): rows per second)",
                   stats.rows_written)
    yield _counter("sms_sink_batches_total", "Batches written (each: its inserts, then the offset commit)",
                   stats.batches)
    yield _counter("sms_sink_insert_retries_total", "Failed inserts, each retried with the same deduplication "
                   "token", stats.retries)
    yield _counter("sms_sink_undecodable_records_total", "Records the sink could not decode and skipped",
                   stats.undecodable)
    yield _histogram("sms_sink_batch_seconds", "Latency of a sink batch: from its first insert to its offset "
                     "commit, retries included", stats.batch_seconds)
    yield _gauge("sms_sink_oldest_unwritten_age_seconds", "Age of the oldest row read from Kafka and not yet "
                 "written (since the record was produced); 0 when nothing is pending. /healthz answers 503 past "
                 "SMS_HEALTH_MAX_SINK_LAG_SECONDS", sink_lag_seconds(sink.oldest_unwritten_ms()))
    yield _gauge("sms_sink_unwritten_rows", "Rows read and not yet written: buffered and in flight",
                 sink.unwritten_rows())
    yield _histogram("sms_sink_rollup_round_seconds", "Duration of a rollup round (recompute of the changed "
                     "minutes)", stats.rollup_seconds)
    yield _counter("sms_sink_rollup_failures_total", "Rollup rounds that failed (their minutes are retried)",
                   stats.rollup_failures)
    rollups = sink.rollups
    pending = len(sink._written_minutes) + (len(rollups.dirty) if rollups is not None else 0)
    yield _gauge("sms_sink_rollup_pending_minutes", "Minutes written and waiting for a rollup round "
                 "(may count a minute twice while a round runs)", pending)


# --- dead letters ---------------------------------------------------------------------------------------

def _dead_letters(publisher: Any, join_stats: Any) -> Iterator[Metric]:
    family = CounterMetricFamily("sms_dead_letters", f"Records written to {topics.DEADLETTER} (acknowledged by "
                                 "the broker), per endpoint (receiver path, feed:<name>, streams.join) and reason "
                                 "class (observability/deadletters.py)", labels=["endpoint", "reason"])
    counts = dict(publisher.dead_letters.counts) if publisher is not None else {}
    if join_stats is not None:
        counts[("streams.join", "undecodable_event")] = counts.get(("streams.join", "undecodable_event"), 0) \
            + join_stats.undecodable
    for (endpoint, reason), n in sorted(counts.items()):
        family.add_metric([endpoint, reason], float(n))
    yield family


# --- journal and embedded broker ------------------------------------------------------------------------

def _journal(journal: Any) -> Iterator[Metric]:
    """A write-ahead journal of accepted input, when the Runtime has one (`runtime.journal` with int
    attributes `rows` and `unforwarded`); nothing otherwise."""
    if journal is None or not hasattr(journal, "rows") or not hasattr(journal, "unforwarded"):
        return
    yield _gauge("sms_journal_rows", "Rows in the local write-ahead journal of accepted input", int(journal.rows))
    yield _gauge("sms_journal_unforwarded_rows", "Journal rows not yet forwarded to the broker (backlog depth)",
                 int(journal.unforwarded))


def _broker(broker: Any, budget_mb: int) -> Iterator[Metric]:
    process = broker.process
    rss = resident_bytes(process.pid) if process is not None and process.poll() is None else None
    if rss:
        yield _gauge("sms_embedded_broker_resident_bytes", "Resident memory of the embedded broker's process "
                     "(Tansu keeps every topic in memory)", rss)
    yield _gauge("sms_memory_budget_bytes", "SMS_MEMORY_BUDGET_MB: what `up` on embedded defaults, with its broker, "
                 "should stay under (compare with process_resident_memory_bytes + the broker's)", budget_mb << 20)
    yield _counter("sms_embedded_broker_rotations_total", "Times the embedded broker was replaced by a fresh one",
                   float(getattr(broker, "rotations", 0) or 0))


# --- Alibaba MNS consumers (sources/aliyun/mns.py) ----------------------------------------------------------

def _mns(feeds: Iterable[Any]) -> Iterator[Metric]:
    """The MNS queue consumers among the feeds (the pull feeds export sms_feed_* themselves)."""
    consumers = [f for f in feeds if type(getattr(f, "stats", None)).__name__ == "MnsStats"]
    if not consumers:
        return
    polls = CounterMetricFamily("sms_mns_polls", "BatchReceiveMessage calls answered, with messages or empty",
                                labels=["feed", "outcome"])
    messages = CounterMetricFamily("sms_mns_messages", "Queue messages received (redeliveries included), deleted, "
                                   "or whose delete MNS refused (they come back)", labels=["feed", "outcome"])
    events = CounterMetricFamily("sms_mns_events", "Events published from queue messages", labels=["feed"])
    rejected = CounterMetricFamily("sms_mns_rejected", "Records dead-lettered from queue messages", labels=["feed"])
    errors = CounterMetricFamily("sms_mns_errors", "Failed consumer iterations (credentials, receive, publish, "
                                 "delete)", labels=["feed"])
    backoff = GaugeMetricFamily("sms_mns_backoff_seconds", "The consumer's current backoff; 0 after a success",
                                labels=["feed"])
    for feed in consumers:
        st, name = feed.stats, str(feed.name)
        polls.add_metric([name, "messages"], float(st.polls - st.empty))
        polls.add_metric([name, "empty"], float(st.empty))
        for outcome, n in (("received", st.received), ("deleted", st.deleted), ("delete_failed", st.delete_failed)):
            messages.add_metric([name, outcome], float(n))
        events.add_metric([name], float(st.events))
        rejected.add_metric([name], float(st.rejected))
        errors.add_metric([name], float(st.errors))
        backoff.add_metric([name], float(st.backoff))
    yield from (polls, messages, events, rejected, errors, backoff)
