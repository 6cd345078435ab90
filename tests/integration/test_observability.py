"""The pipeline watches itself: /metrics of real processes, the pipeline-health dashboard and alert
rules against what /metrics really exposes, and /healthz answering 503 with its reason when the sink
cannot write."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import promql_parser
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from sms_analytics.dashboards import pipeline_health
from sms_analytics.model import topics
from sms_analytics.observability.deadletters import REASON_CLASSES
from sms_analytics.observability.metrics import FAMILIES
from sms_analytics.runtime import Parts, Runtime
from tests.conftest import TOKEN, eventually, pipeline_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SYNTHETIC = {"up"}  # series Prometheus makes itself, per scrape target


async def scrape(url: str) -> tuple[Samples, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert resp.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def names(text: str) -> set[str]:
    """Every sample name of an exposition (histograms as _bucket, _sum, _count)."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


# --- the running pipeline (`up`: receiver, worker, sink, embedded broker in one process) --------------------

CHINA = timezone(timedelta(hours=8))


def _sends_and_receipts(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sent = datetime.now(CHINA).replace(microsecond=0) - timedelta(minutes=30)
    ids = [f"obs-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    sends = [{"provider": "tencent", "message_id": mid, "phone": f"+8613312{i:06d}",
              "sent_at": sent.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")} for i, mid in enumerate(ids)]
    receipts = [{"mobile": f"13312{i:06d}", "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok",
                 "sid": mid, "user_receive_time": (sent + timedelta(seconds=4)).strftime("%Y-%m-%d %H:%M:%S"),
                 "nationcode": "86"} for i, mid in enumerate(ids)]
    return sends, receipts


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> int:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(f"{path}?token={TOKEN}", data=data,
                         headers={"Content-Type": "application/json"}) as resp:
        await resp.read()
        return resp.status


@pytest.mark.pipeline
async def test_metrics_of_the_running_pipeline(pipeline: Runtime, http: aiohttp.ClientSession) -> None:
    before, _ = await scrape(pipeline.receiver_url)
    sends, receipts = _sends_and_receipts(20)
    assert await post(http, "/v1/sends", sends) == 202
    assert await post(http, "/callbacks/tencent/status", receipts) == 200
    bad = [{"provider": "kx", "message_id": "obs-bad", "phone": "not-a-number", "sent_at": 1_700_000_000}]
    assert await post(http, "/v1/sends", bad) == 202  # accepted 0, the record dead-lettered

    def grew(now: Samples, name: str, by: float, **labels: str) -> bool:
        return (value(now, name, **labels) or 0) >= (value(before, name, **labels) or 0) + by

    async def progressed() -> Samples | None:
        now, _ = await scrape(pipeline.receiver_url)
        ok = (grew(now, "sms_join_events_total", 40) and grew(now, "sms_join_deliveries_emitted_total", 20)
              and grew(now, "sms_sink_rows_written_total", 20) and grew(now, "sms_sink_batch_seconds_count", 1)
              and grew(now, "sms_dead_letters_total", 1, endpoint="/v1/sends", reason="bad_phone"))
        return now if ok else None

    now = await eventually(progressed, timeout=30)

    # consumer lag: every partition of the worker's source topics and of the sink's topics, never negative
    lag = series(now, "sms_consumer_lag_records")
    partitions = [str(p) for p in range(pipeline.settings.kafka_partitions)]
    for consumer, topic in (("worker", topics.SENDS), ("worker", topics.RECEIPTS), ("sink", topics.DELIVERIES)):
        for p in partitions:
            assert (("consumer", consumer), ("partition", p), ("topic", topic)) in lag, (consumer, topic, p, lag)
    assert all(v >= 0 for v in lag.values())
    assert not any(labels for labels in lag if dict(labels)["topic"].endswith("-changelog"))

    assert value(now, "sms_join_states") is not None and value(now, "sms_join_states") >= 0
    assert value(now, "sms_join_partitions") == pipeline.settings.kafka_partitions
    assert value(now, "sms_sink_oldest_unwritten_age_seconds") < 60
    assert value(now, "sms_sink_unwritten_rows") >= 0
    buckets = series(now, "sms_sink_batch_seconds_bucket")
    assert value(now, "sms_sink_batch_seconds_count") == buckets[(("le", "+Inf"),)] >= 1
    assert value(now, "sms_sink_batch_seconds_sum") > 0
    assert value(now, "sms_embedded_broker_resident_bytes") > 1_000_000  # a live process's VmRSS
    assert pipeline.broker is not None
    assert value(now, "sms_embedded_broker_rotations_total") == pipeline.broker.rotations
    assert value(now, "sms_health_ok") == 1
    assert {dict(k)["component"] for k in series(now, "sms_component_ready")} == {"worker", "sink", "warehouse", "broker"}
    assert "process_resident_memory_bytes" in {n for n, _ in now}  # the default registry follows

    # rollup rounds run every SMS_ROLLUP_SECONDS
    later = await eventually(lambda: _rounds(pipeline.receiver_url), timeout=30)
    assert value(later, "sms_sink_rollup_round_seconds_sum") > 0

    # labels carry classes and paths, never input: no phone number, no message id
    _, text = await scrape(pipeline.receiver_url)
    labels = "".join(re.findall(r"\{[^}]*\}", text))
    # a pull feed is named by its configured account (Tencent's SmsSdkAppId, e.g. 1400006666): configuration,
    # not input, and present when an earlier test of this process ran the feeds
    labels = re.sub(r'feed="[a-z_.]+\.\d+"', 'feed=""', labels)
    assert not re.search(r"\d{7,}", labels)
    assert "obs-" not in text
    for labels in series(now, "sms_dead_letters_total"):
        assert dict(labels)["reason"] in REASON_CLASSES


async def _rounds(url: str) -> Samples | None:
    now, _ = await scrape(url)
    return now if (value(now, "sms_sink_rollup_round_seconds_count") or 0) >= 1 else None


@pytest.mark.pipeline
async def test_query_endpoint_serves_the_same_metrics(pipeline: Runtime) -> None:
    samples, _ = await scrape(pipeline.query_url)
    for name in ("sms_join_events_total", "sms_sink_rows_written_total", "sms_consumer_lag_records"):
        assert name in {n for n, _ in samples}


@pytest.mark.pipeline
async def test_journal_depth_is_exposed_when_the_runtime_has_one(pipeline: Runtime, tmp_path: Path) -> None:
    assert pipeline.journal is not None  # the session's pipeline is embedded `up`: journaled
    samples, _ = await scrape(pipeline.receiver_url)
    rows = value(samples, "sms_journal_rows")
    assert rows is not None and rows >= 0 and value(samples, "sms_journal_unforwarded_rows") is not None
    real = pipeline.journal
    pipeline.journal = SimpleNamespace(rows=12, unforwarded=5)  # the values come from the journal object
    try:
        samples, _ = await scrape(pipeline.receiver_url)
    finally:
        pipeline.journal = real
    assert (value(samples, "sms_journal_rows"), value(samples, "sms_journal_unforwarded_rows")) == (12, 5)
    # a process without a journal (a receiver on an external broker) has no such gauge
    receiver = Runtime(pipeline_settings(tmp_path, kafka_bootstrap_servers=pipeline.bootstrap),
                       Parts(receiver=True, worker=False, sink=False, query=False))
    assert receiver.journal is None and b"sms_journal_rows" not in receiver.metrics.exposition()


# --- the dashboard and the alert rules read only what /metrics exposes --------------------------------------

def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (parsed by promql-parser, the Prometheus grammar).
    Grafana's `$__rate_interval` is replaced by a duration first."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            assert name, f"a selector without a metric name in {expr}"
            found.add(name)

    promql_parser.walk(promql_parser.parse(expr.replace("$__rate_interval", "1m")), visit)
    return found


@pytest.mark.pipeline
async def test_dashboard_and_alert_rules_name_only_exposed_metrics(pipeline: Runtime) -> None:
    assert pipeline.journal is not None  # embedded `up`: every family, the journal's too
    _, text = await scrape(pipeline.receiver_url)
    exposed = names(text)
    expressions = pipeline_health.expressions() + pipeline_health.rule_expressions()
    assert len(pipeline_health.rule_expressions()) == 4
    wanted = set().union(*(metric_names(e) for e in expressions))
    assert wanted - SYNTHETIC <= exposed, sorted(wanted - SYNTHETIC - exposed)
    # and every family the module declares is really exposed by a full pipeline with a journal
    families = {n.removesuffix("_total") for n in FAMILIES}
    assert families <= {n.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
                        for n in exposed}, sorted(families)
    # the list: each is on the dashboard
    for name in ("sms_consumer_lag_records", "sms_join_events_total", "sms_join_deliveries_emitted_total",
                 "sms_join_states", "sms_sink_rows_written_total", "sms_sink_batch_seconds_bucket",
                 "sms_sink_oldest_unwritten_age_seconds", "sms_sink_rollup_round_seconds_bucket",
                 "sms_dead_letters_total", "sms_journal_unforwarded_rows", "sms_embedded_broker_resident_bytes"):
        assert name in wanted, name


# --- files: dashboard JSON, alert rules, provisioning -------------------------------------------------------


# --- reason classes ----------------------------------------------------------------------------------------


# --- a sink that cannot write: /healthz 503 with the reason, and back ---------------------------------------

@pytest.mark.pipeline
@pytest.mark.timeout(180)
async def test_healthz_answers_503_with_the_reason_while_the_sink_cannot_write(pipeline: Runtime) -> None:
    """The warehouse refuses every insert (as in test_faults.py): the sink's oldest unwritten row ages
    past SMS_HEALTH_MAX_SINK_LAG_SECONDS (2 s here), both /healthz of the process answer 503 and say
    why, /metrics shows the age and the retries; once inserts work, 200 again. (chDB opens one
    warehouse per process, so this is the session's pipeline with a small bound.)"""
    assert pipeline.warehouse is not None
    settings, warehouse = pipeline.settings, pipeline.warehouse
    bound, real_insert_json, real_insert = settings.sms_health_max_sink_lag_seconds, warehouse.insert_json, warehouse.insert
    failing = True

    def insert_json(table: str, body: bytes, token: str | None = None) -> None:
        if failing:
            raise ConnectionError("injected fault: the warehouse refuses writes")
        real_insert_json(table, body, token)

    def insert(table: str, data: Any, columns: Any, token: str | None = None) -> None:
        if failing:
            raise ConnectionError("injected fault: the warehouse refuses writes")
        real_insert(table, data, columns, token)

    before, _ = await scrape(pipeline.query_url)
    settings.sms_health_max_sink_lag_seconds = 2.0
    warehouse.insert_json, warehouse.insert = insert_json, insert  # type: ignore[method-assign]
    try:
        assert await _health(f"{pipeline.query_url}/healthz") == (200, True)
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topics.DELIVERIES, _delivery(f"obs-health-{uuid.uuid4().hex[:8]}"))
        finally:
            await producer.stop()

        async def refused() -> dict[str, Any] | None:
            status, body = await _get(f"{pipeline.query_url}/healthz")
            return body if status == 503 else None

        body = await eventually(refused, timeout=30)
        assert body["status"] == "lagging" and body["ready"] is False
        assert all(body["components"].values()), body
        [reason] = body["reasons"]
        assert reason.startswith("sink lag ") and "> 2 s" in reason and "SMS_HEALTH_MAX_SINK_LAG_SECONDS" in reason
        assert body["sink"]["max_lag_seconds"] == 2.0 and body["sink"]["lag_seconds"] > 2.0
        status, answer = await _get(f"{pipeline.receiver_url}/healthz")  # the receiver of the same process
        assert status == 503 and answer["reasons"][0].startswith("sink lag ")
        samples, _ = await scrape(pipeline.query_url)
        assert value(samples, "sms_sink_oldest_unwritten_age_seconds") > 2.0
        assert value(samples, "sms_sink_insert_retries_total") > value(before, "sms_sink_insert_retries_total")
        assert value(samples, "sms_sink_unwritten_rows") >= 1
        assert value(samples, "sms_health_ok") == 0
        assert value(samples, "sms_sink_rows_written_total") == value(before, "sms_sink_rows_written_total")
    finally:
        failing = False
        del warehouse.insert_json, warehouse.insert
        settings.sms_health_max_sink_lag_seconds = 2.0  # still small: 200 must come from the written row
    try:
        assert await eventually(lambda: _health_ok(f"{pipeline.query_url}/healthz"), timeout=40)
        samples, _ = await scrape(pipeline.query_url)
        assert value(samples, "sms_sink_oldest_unwritten_age_seconds") < 2.0
        assert value(samples, "sms_sink_rows_written_total") > value(before, "sms_sink_rows_written_total")
        assert value(samples, "sms_health_ok") == 1
    finally:
        settings.sms_health_max_sink_lag_seconds = bound


def _delivery(message_id: str) -> bytes:
    """A delivery of its own window (40 days ago: no other test reads there)."""
    from sms_analytics.model.events import Delivery, encode_deliveries

    sent = int(datetime.now(UTC).timestamp() * 1000) - 40 * 86_400_000
    d = Delivery(provider="tencent", message_id=message_id, phone="", phone_hash="0" * 64,
                 phone_masked="133****0000", carrier="telecom", country_code="86", has_send=True, status="pending",
                 sent_at_ms=sent, updated_at_ms=sent)
    return encode_deliveries([d])


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def _health(url: str) -> tuple[int, bool]:
    status, body = await _get(url)
    return status, body["ready"]


async def _health_ok(url: str) -> bool:
    return (await _health(url)) == (200, True)


# --- processes running one part: a receiver alone, a worker alone (`worker --no-sink`) ----------------------

@pytest.mark.pipeline
async def test_a_receiver_alone_serves_its_metrics(pipeline: Runtime, tmp_path: Path) -> None:
    runtime = Runtime(pipeline_settings(tmp_path, kafka_bootstrap_servers=pipeline.bootstrap),
                      Parts(worker=False, sink=False, query=False))
    await runtime.start()
    try:
        await runtime.wait_ready(timeout=30)
        async with aiohttp.ClientSession(base_url=runtime.receiver_url) as http:
            assert await post(http, "/callbacks/kx/report", b"{not json") == 400
            samples, _ = await scrape(runtime.receiver_url)
            status, body = await _get(f"{runtime.receiver_url}/healthz")
    finally:
        await runtime.stop()
    assert (status, body["components"], body["reasons"]) == (200, {"broker": True}, [])
    assert value(samples, "sms_dead_letters_total", endpoint="/callbacks/kx/report", reason="unreadable_body") == 1
    assert value(samples, "sms_component_ready", component="broker") == 1
    got = {n for n, _ in samples}
    assert not {"sms_join_events_total", "sms_sink_rows_written_total", "sms_embedded_broker_resident_bytes"} & got
    assert "process_resident_memory_bytes" in got


@pytest.mark.timeout(180)
async def test_a_worker_alone_serves_health_and_metrics(tmp_path: Path) -> None:
    """`sms-analytics worker --no-sink` has neither the receiver nor the query endpoint: it serves
    /healthz and /metrics on SMS_QUERY_PORT. Its own embedded broker; events through the Publisher."""
    from bench.workload import Workload, publish
    from sms_analytics.model.times import now_ms
    from sms_analytics.sources.producer import Publisher
    from tests.conftest import HASH_KEY

    runtime = Runtime(pipeline_settings(tmp_path, sms_app_id="obs-worker"), Parts(receiver=False, sink=False, query=False))
    await runtime.start()
    try:
        await runtime.wait_ready(timeout=90)
        assert runtime.ops_url and not runtime.query_url and not runtime.receiver_url
        status, body = await _get(f"{runtime.ops_url}/healthz")
        assert (status, body["components"]) == (200, {"worker": True}), body
        publisher = Publisher(runtime.bootstrap)
        await publisher.start()
        try:
            await publish(publisher, Workload(50, start_ms=now_ms() - 3_600_000, span_s=60, hash_key=HASH_KEY, seed=3))
            producer = publisher._producer
            assert producer is not None
            await producer.send_and_wait(topics.SENDS, b"not an event", partition=0)
        finally:
            await publisher.stop()

        async def joined() -> Samples | None:
            samples, _ = await scrape(runtime.ops_url)
            done = (value(samples, "sms_join_events_total") or 0) >= 50 and \
                (value(samples, "sms_join_undecodable_records_total") or 0) == 1
            return samples if done else None

        samples = await eventually(joined, timeout=60)
    finally:
        await runtime.stop()
    assert value(samples, "sms_join_deliveries_emitted_total") >= 50
    assert value(samples, "sms_join_states") >= 0
    assert value(samples, "sms_dead_letters_total", endpoint="streams.join", reason="undecodable_event") == 1
    lag = series(samples, "sms_consumer_lag_records")
    assert {dict(k)["consumer"] for k in lag} == {"worker"}
    assert {dict(k)["topic"] for k in lag} == {topics.SENDS, topics.RECEIPTS}
    assert value(samples, "sms_embedded_broker_resident_bytes") > 1_000_000
    assert value(samples, "sms_sink_rows_written_total") is None


def test_an_unstarted_runtime_scrapes_and_mns_consumers_are_counted(tmp_path: Path) -> None:
    """A scrape before start (or after a failed one) never raises; the Alibaba MNS consumers among the
    feeds are exported from their MnsStats."""
    from prometheus_client import generate_latest

    from sms_analytics.observability.metrics import MNS_FAMILIES
    from sms_analytics.sources.aliyun.mns import MnsConsumer

    async def publish(*_: Any) -> None:
        return None

    runtime = Runtime(pipeline_settings(tmp_path))
    consumer = MnsConsumer(endpoint="http://127.0.0.1:9", access_id="id", access_key="key", queue="q",
                           kind="SmsReport", publish=publish, parse=lambda doc, now: None)  # type: ignore[arg-type]
    consumer.stats.polls, consumer.stats.empty, consumer.stats.received, consumer.stats.events = 5, 2, 7, 9
    consumer.stats.rejected, consumer.stats.errors, consumer.stats.backoff = 1, 3, 2.5
    runtime.feeds = [consumer]
    text = generate_latest(runtime.metrics.registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    feed = "aliyun.mns.SmsReport"
    assert value(samples, "sms_mns_polls_total", feed=feed, outcome="messages") == 3
    assert value(samples, "sms_mns_messages_total", feed=feed, outcome="received") == 7
    assert (value(samples, "sms_mns_events_total", feed=feed), value(samples, "sms_mns_rejected_total", feed=feed)) == (9, 1)
    assert (value(samples, "sms_mns_errors_total", feed=feed), value(samples, "sms_mns_backoff_seconds", feed=feed)) == (3, 2.5)
    assert set(MNS_FAMILIES) <= names(text)
    assert value(samples, "sms_health_ok") == 0  # nothing started
    assert value(samples, "sms_join_events_total") is None and value(samples, "sms_sink_rows_written_total") is None
