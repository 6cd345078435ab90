"""Faults survived on real components: workers killed with SIGKILL (three times in a 200,000-message
run; one of two workers, the other taking over), a provider retrying a push the receiver died
in the middle of, and a receiver whose broker is unreachable at start and for 30 s.

The workers, sinks and receivers are `sms-analytics` processes; the broker is a new one started by
the test: an embedded Tansu, and an Apache Kafka node too for the tests marked both_brokers; the traffic is the benchmark's workload (sends, receipts, 5% duplicate
receipts, 10% receipts before their send) with its ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from bench.workload import Truth, Workload
from sms_analytics.broker.embedded import EmbeddedBroker, free_port
from sms_analytics.model import topics
from sms_analytics.model.events import decode_deliveries
from sms_analytics.model.times import now_ms
from sms_analytics.sources.producer import Publisher
from tests.conftest import HASH_KEY, TOKEN, eventually

CLI = str(Path(sys.executable).with_name("sms-analytics"))


class Service:
    """One `sms-analytics` process, restartable, with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([CLI, *self.args], env=self.env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def terminate(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.args[0]} exited: {self.log.read_text(errors='replace')[-3000:]}")
        return True


def environment(bootstrap: str, data_dir: Path, app_id: str, **extra: str) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SMS_DATA_DIR": str(data_dir),
            "SMS_APP_ID": app_id, "SMS_CALLBACK_TOKEN": TOKEN, "SMS_PHONE_HASH_KEY": HASH_KEY,
            "SMS_SINK_FLUSH_SECONDS": "0.3", "SMS_HTTP_PORT": str(free_port()),
            "SMS_QUERY_PORT": str(free_port()), "SMS_LOG_LEVEL": "INFO", **extra}


async def get_status(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return r.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


async def healthy(service: Service, timeout: float = 90.0) -> None:
    url = f"http://127.0.0.1:{service.env['SMS_QUERY_PORT']}/healthz"
    await eventually(lambda: service.alive() and _is_200(url), timeout=timeout, interval=0.3)


async def _is_200(url: str) -> bool:
    return await get_status(url) == 200


async def query(service: Service, sql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{service.env['SMS_QUERY_PORT']}/query?format=json"
    async with aiohttp.ClientSession() as s, s.post(url, data=sql.encode()) as r:
        text = await r.text()
        assert r.status == 200, text
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


COUNTS = ("SELECT count() AS messages, countIf(status = 'delivered') AS delivered, "
          "countIf(status = 'failed') AS failed, countIf(status = 'pending') AS pending, "
          "uniqExact(provider, message_id, phone_hash) AS distinct_messages FROM sms.messages")
ROLLUP = ("SELECT sum(sent) AS messages, sum(delivered) AS delivered, sum(failed) AS failed, "
          "sum(pending) AS pending FROM sms.rollup_minute")


def expected(truth: Truth) -> dict[str, int]:
    return {"messages": truth.messages, "delivered": truth.delivered, "failed": truth.failed,
            "pending": truth.pending, "distinct_messages": truth.messages}


async def converged(sink: Service, truth: Truth, timeout: float) -> dict[str, int]:
    want = expected(truth)

    async def check() -> dict[str, int] | None:
        got = {k: int(v) for k, v in (await query(sink, COUNTS))[0].items()}
        return got if got == want else None

    try:
        return await eventually(check, timeout=timeout, interval=1.0)
    except AssertionError:
        got = (await query(sink, COUNTS))[0]
        raise AssertionError(f"warehouse {got} != ground truth {want}") from None


async def publish_paced(publisher: Publisher, workload: Workload, seconds: float) -> int:
    """Publish the workload's pushes as the receivers would, spread over about `seconds`."""
    phases = list(workload.phases())
    pause = seconds / max(1, len(phases))
    pushes = 0
    for phase in phases:
        started = time.monotonic()
        await asyncio.gather(*(publisher.publish(events, [], endpoint) for endpoint, events in phase))
        pushes += len(phase)
        await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))
    return pushes


@pytest_asyncio.fixture
async def publisher(broker: str) -> AsyncIterator[Publisher]:
    from sms_analytics.broker.admin import ensure_topics

    await ensure_topics(broker, 4, 1)
    p = Publisher(broker)
    await p.start()
    yield p
    await p.stop()


@pytest.mark.timeout(600)
@pytest.mark.both_brokers
async def test_worker_sigkilled_three_times_in_a_200k_message_run(
        broker: str, publisher: Publisher, tmp_path: Path) -> None:
    worker = Service(["worker"], environment(broker, tmp_path / "worker", "faults-kill"), tmp_path / "worker.log")
    worker.start()
    try:
        await healthy(worker)
        workload = Workload(200_000, start_ms=now_ms() - 900_000, span_s=600, hash_key=HASH_KEY, seed=11)
        feeding = asyncio.create_task(publish_paced(publisher, workload, seconds=26))
        for _ in range(3):
            await asyncio.sleep(4)
            assert not feeding.done() or feeding.exception() is None
            worker.kill()
            worker.start()
            await healthy(worker)
        await feeding
        truth = workload.truth
        assert truth.messages == 200_000 and truth.duplicate_receipts > 0 and truth.receipts_before_send > 0
        got = await converged(worker, truth, timeout=240)
        rolled = await eventually(lambda: _rollup_equals(worker, got), timeout=60, interval=1.0)
        print(f"\nSIGKILL x{worker.kills} in {truth.messages} messages ({truth.events} events, "
              f"{truth.duplicate_receipts} duplicate receipts, {truth.receipts_before_send} receipts before send): "
              f"warehouse {got}, rollups {rolled}")
    finally:
        assert worker.terminate() == 0 or worker.kills  # a clean SIGTERM at the end


async def _rollup_equals(service: Service, counts: dict[str, int]) -> dict[str, int] | None:
    rolled = {k: int(v) for k, v in (await query(service, ROLLUP))[0].items()}
    want = {k: counts[k] for k in ("messages", "delivered", "failed", "pending")}
    return rolled if rolled == want else None


@pytest.mark.timeout(600)
@pytest.mark.both_brokers
async def test_two_workers_one_killed_the_other_takes_over(
        broker: str, publisher: Publisher, tmp_path: Path) -> None:
    app = "faults-pair"
    sink = Service(["sink"], environment(broker, tmp_path / "sink", app), tmp_path / "sink.log")
    a = Service(["worker", "--no-sink"], environment(broker, tmp_path / "a", app), tmp_path / "a.log")
    b = Service(["worker", "--no-sink"], environment(broker, tmp_path / "b", app), tmp_path / "b.log")
    services = [sink, a, b]
    for s in services:
        s.start()
    try:
        await healthy(sink)
        # both workers joined the group and share the partitions
        await eventually(lambda: a.alive() and b.alive() and len(owned(a) + owned(b)) == 4 and owned(b), timeout=60)
        workload = Workload(60_000, start_ms=now_ms() - 900_000, span_s=600, hash_key=HASH_KEY, seed=12)
        feeding = asyncio.create_task(publish_paced(publisher, workload, seconds=24))
        await asyncio.sleep(10)
        b.kill()  # not restarted: `a` must take its partitions and their state
        await feeding
        await eventually(lambda: owned(a) == [0, 1, 2, 3], timeout=60)  # `a` took over b's partitions
        got = await converged(sink, workload.truth, timeout=180)
        joined = await stream_joined_every_receipt(broker, workload)
        print(f"\ntwo workers, one SIGKILLed: warehouse {got}; {joined} messages joined by the stream")
    finally:
        for s in services:
            s.terminate()


def owned(worker: Service) -> list[int]:
    """The source partitions a worker last logged as assigned to it."""
    lines = [line for line in worker.log.read_text(errors="replace").splitlines() if "worker.partitions_assigned" in line]
    return orjson.loads(lines[-1].split("partitions=", 1)[1].split("]", 1)[0] + "]") if lines else []


async def stream_joined_every_receipt(bootstrap: str, workload: Workload) -> int:
    """Every message with a receipt has a final delivery from the stream that includes its send:
    the state of the killed worker's partitions (sends seen before the kill) was not lost."""
    final_with_send: set[tuple[str, str, str]] = set()
    consumer = AIOKafkaConsumer(topics.DELIVERIES, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        end = await consumer.end_offsets(list(consumer.assignment()) or await _assigned(consumer))
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    for d in decode_deliveries(r.value):
                        if d.has_send and d.status != "pending":  # (deliveries carry no raw number)
                            final_with_send.add((d.provider, d.message_id, d.phone_hash))
            positions = {tp: await consumer.position(tp) for tp in end}
            if all(positions[tp] >= off for tp, off in end.items()):
                break
    finally:
        await consumer.stop()
    truth = workload.truth
    decided = truth.delivered + truth.failed
    assert len(final_with_send) == decided, (len(final_with_send), decided)
    return len(final_with_send)


async def _assigned(consumer: AIOKafkaConsumer) -> list[Any]:
    await eventually(lambda: bool(consumer.assignment()), timeout=10)
    return list(consumer.assignment())


# --- a record faust dropped ------------------------------------------------------------------------

@pytest.mark.timeout(300)
async def test_a_record_faust_dropped_is_read_again(broker: str, publisher: Publisher, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """faust drops a partition's buffered records at a rebalance and fetches on from its position:
    such a record is never joined nor acknowledged, and the worker's commit holds behind it
    (streams/overrides.py). Here one record of sends is dropped the same way, past the drain and
    never acknowledged, in a real worker; the held commit must read the partition again from the
    committed offset, so that every message is joined with its send without a restart."""
    from sms_analytics.runtime import Parts, Runtime
    from sms_analytics.streams import agents
    from tests.conftest import pipeline_settings

    joined_batch = agents._join_batch
    dropped: list[tuple[int, int]] = []

    async def dropping(streams: Any, records: list[Any]) -> None:
        for r in records if not dropped else ():
            if r.message.topic == topics.SENDS and r.message.offset >= 1:
                r.message.acked = True  # faust will not acknowledge it: as a record dropped from its buffer
                dropped.append((r.message.partition, r.message.offset))
                records = [x for x in records if x is not r]
                break
        await joined_batch(streams, records)

    monkeypatch.setattr(agents, "_join_batch", dropping)
    worker = Runtime(pipeline_settings(tmp_path / "worker", kafka_bootstrap_servers=broker, sms_app_id="faults-dropped"),
                     Parts(receiver=False, sink=False, query=False))
    try:
        await worker.start()
        await worker.wait_ready(timeout=60)
        workload = Workload(4_000, start_ms=now_ms() - 900_000, span_s=600, hash_key=HASH_KEY, seed=15)
        await publish_paced(publisher, workload, seconds=2)
        await eventually(lambda: dropped, timeout=30)

        async def all_joined() -> int | None:
            try:
                return await stream_joined_every_receipt(broker, workload)
            except AssertionError:
                return None

        joined = await eventually(all_joined, timeout=90, interval=2.0)
        print(f"\ndropped record {dropped[0]} (partition, offset) of sends read again: {joined} messages joined")
    finally:
        await worker.stop()


# --- a batch the broker refuses -------------------------------------------------------------------

@pytest.mark.timeout(300)
async def test_a_batch_the_broker_refuses_ends_the_worker_and_is_replayed(tmp_path: Path) -> None:
    """Apache Kafka refuses a producer batch over the topic's max.message.bytes (the embedded broker
    does not check it). A refused delivery record must not be acknowledged: faust would commit past
    the batch and its messages would never reach the warehouse. The worker ends (exit 75) with the
    source offsets where they were; once the topic takes the records again, the next worker replays
    the batch and every message lands."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from sms_analytics.broker.admin import ensure_topics
    from sms_analytics.streams.agents import EXIT_UNACKNOWLEDGED
    from tests.conftest import apache_missing, start_broker

    if apache_missing():
        pytest.skip(f"Apache Kafka: {apache_missing()}")
    kafka = await start_broker("apache")
    worker: Service | None = None
    try:
        # every delivery record of more than a few deliveries is refused
        await ensure_topics(kafka.bootstrap, 4, 1, {topics.DELIVERIES: {"max.message.bytes": "1000"}})
        publisher = Publisher(kafka.bootstrap)
        await publisher.start()
        try:
            workload = Workload(5_000, start_ms=now_ms() - 900_000, span_s=600, hash_key=HASH_KEY, seed=14)
            await publish_paced(publisher, workload, seconds=1)
        finally:
            await publisher.stop()
        worker = Service(["worker"], environment(kafka.bootstrap, tmp_path / "worker", "faults-refused"),
                         tmp_path / "worker.log")
        worker.start()
        assert worker.proc is not None
        code = await asyncio.to_thread(worker.proc.wait, 120)
        log = worker.log.read_text(errors="replace")
        assert code == EXIT_UNACKNOWLEDGED, log[-3000:]
        assert "join.batch_failed" in log and "MessageSizeTooLarge" in log, log[-3000:]

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.DELIVERIES,
                                                      configs={"max.message.bytes": "1048588"})])
        finally:
            await admin.close()
        worker.start()
        await healthy(worker)
        got = await converged(worker, workload.truth, timeout=120)
        print(f"\nrefused batch: worker exit {code}; after the replay the warehouse has {got}")
    finally:
        if worker is not None:
            worker.terminate()
        kafka.stop()


# --- the warehouse refuses writes for 60 s ---------------------------------------------------------

@pytest.mark.timeout(400)
@pytest.mark.both_brokers
async def test_warehouse_writes_fail_for_60s_then_everything_lands_once(kind_pipeline: Any, broker_kind: str) -> None:
    """A fault at the sink boundary: every insert fails for 60 s. The sink retries the same batch
    with the same deduplication token, commits nothing past it, stops consuming meanwhile
    (backpressure: its buffer does not grow), and once writes work again every message lands once.
    On Apache Kafka the outage lasts 20 s (suite time): the fault and the sink's retries are the
    same; what the broker changes is the consumer group's committed offsets, checked alike."""
    from bench.workload import publish
    from tests.conftest import rows

    pipeline = kind_pipeline
    sink, warehouse = pipeline.sink, pipeline.warehouse
    real_insert, real_insert_json = warehouse.insert, warehouse.insert_json
    failing = True
    attempts: list[tuple[str, str | None, int]] = []

    def insert(table: str, data: Any, columns: Any, token: str | None = None) -> None:
        if failing:
            attempts.append((table, token, len(data)))
            raise ConnectionError("injected fault: the warehouse refuses writes")
        real_insert(table, data, columns, token)

    def insert_json(table: str, body: bytes, token: str | None = None) -> None:
        if failing:
            attempts.append((table, token, len(body)))
            raise ConnectionError("injected fault: the warehouse refuses writes")
        real_insert_json(table, body, token)

    # A window of its own, 31 days ago: no other test writes there, and its pending sends are past
    # the 30 days the providers can be asked about (a recent window would flood
    # sms.compensation.v1 for later tests) and past SMS_EXPIRE_AFTER (so they count as expired).
    # On Apache Kafka (--apache-all) the pipeline shares the session's warehouse: a window and
    # messages of its own, an hour earlier.
    apache = broker_kind == "apache"
    start_ms = now_ms() - 31 * 86_400_000 - apache * 3_600_000
    window = (f"sent_at >= fromUnixTimestamp64Milli({start_ms - 1000}) "
              f"AND sent_at < fromUnixTimestamp64Milli({start_ms + 62_000 + 1000})")
    workload = Workload(20_000, start_ms=start_ms, span_s=60, hash_key=HASH_KEY, seed=13 + apache)
    deliveries = [tp for tp in sink.consumer.assignment() if tp.topic == topics.DELIVERIES]
    committed_before = {tp: await sink.consumer.committed(tp) for tp in deliveries}
    warehouse.insert, warehouse.insert_json = insert, insert_json  # the sink's two ways to write
    try:
        await publish(pipeline.publisher, workload)
        buffered: list[int] = []
        for _ in range(20 if apache else 60):
            await asyncio.sleep(1)
            buffered.append(sink._buffered())
        committed_during = {tp: await sink.consumer.committed(tp) for tp in deliveries}
        landed = (await rows(pipeline, f"SELECT count() AS n FROM sms.messages WHERE {window}"))[0]["n"]
    finally:
        failing = False
        del warehouse.insert, warehouse.insert_json
    parts = [a for a in attempts if a[0] == "sms.delivery_ingest"]
    assert len(parts) >= 5, attempts  # retried with backoff through the minute
    assert len({token for _, token, _ in parts}) == 1 and parts[0][1]  # one batch, one token, every retry
    assert committed_during == committed_before  # no offset committed past unwritten rows
    assert landed == 0
    assert len(set(buffered[3:])) == 1, buffered  # nothing more consumed while blocked
    truth = workload.truth
    want = {"messages": truth.messages, "delivered": truth.delivered, "failed": truth.failed,
            "pending": 0, "distinct_messages": truth.messages}  # the workload's pending: expired by now

    async def exact() -> dict[str, int] | None:
        got = (await rows(pipeline, COUNTS.replace("FROM sms.messages", f"FROM sms.messages WHERE {window}")))[0]
        got = {k: int(v) for k, v in got.items()}
        return got if got == want else None

    got = await eventually(exact, timeout=120, interval=1.0)
    expired = (await rows(pipeline, f"SELECT countIf(status = 'expired') AS n FROM sms.messages WHERE {window}"))[0]
    assert expired["n"] == truth.pending
    print(f"\nwarehouse down {len(buffered)} s: {len(parts)} attempts with one token, buffer {buffered[-1]} rows constant, "
          f"then {got}")


# --- a provider retries a push the receiver died in the middle of ----------------------------------

def aliyun_receipts(prefix: str, n: int, sent: datetime) -> bytes:
    china = timezone(timedelta(hours=8))
    sent_text = sent.astimezone(china).strftime("%Y-%m-%d %H:%M:%S")
    reported = (sent + timedelta(seconds=4)).astimezone(china).strftime("%Y-%m-%d %H:%M:%S")
    return orjson.dumps([{"phone_number": f"139{i:08d}", "send_time": sent_text, "report_time": reported,
                          "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
                          "biz_id": f"{prefix}-{i}^0", "out_id": ""} for i in range(n)])


async def post_raw_then_kill(port: int, path: str, body: bytes, delay: float, service: Service) -> bool:
    """Send a whole request, SIGKILL the process `delay` s later; True if a response came first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    await writer.drain()
    if delay:
        await asyncio.sleep(delay)
    answered = bool(reader._buffer)  # type: ignore[attr-defined]  # bytes already received
    service.kill()
    with contextlib.suppress(TimeoutError, ConnectionError):
        answered = answered or bool(await asyncio.wait_for(reader.read(64), 2))
    writer.close()
    return answered


@pytest.mark.timeout(400)
@pytest.mark.both_brokers(apache_on_request="the receiver's crash and the warehouse's merge, 30 s more")
async def test_push_retried_after_the_receiver_died_mid_request_counts_once(broker: str, tmp_path: Path) -> None:
    up = Service(["up"], environment(broker, tmp_path / "up", "faults-retry"), tmp_path / "up.log")
    port = int(up.env["SMS_HTTP_PORT"])
    path = f"/callbacks/aliyun/sms-report?token={TOKEN}"
    up.start()
    try:
        await healthy(up)
        base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=20)
        pushes: list[tuple[str, bytes, datetime]] = []
        unanswered = 0
        for k, delay in enumerate((0.0, 0.02, 0.1)):
            sent = base + timedelta(minutes=k)
            prefix = f"midreq{now_ms()}x{k}"
            body = aliyun_receipts(prefix, 300, sent)
            pushes.append((prefix, body, sent))
            unanswered += not await post_raw_then_kill(port, path, body, delay, up)
            up.start()
            await healthy(up)
            async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}{path}", data=body) as r:
                assert r.status == 200 and (await r.json())["code"] == 0  # the provider's retry
        assert unanswered >= 1  # at least one push really died unanswered
        for prefix, _, sent in pushes:
            where = f"provider = 'aliyun' AND startsWith(message_id, '{prefix}-')"
            want = {"messages": 300, "delivered": 300, "failed": 0, "pending": 0, "distinct_messages": 300}

            async def once() -> dict[str, int] | None:
                got = {k: int(v) for k, v in (await query(up, COUNTS + f" WHERE {where}"))[0].items()}  # noqa: B023
                return got if got == want else None  # noqa: B023 - awaited within this iteration

            await eventually(once, timeout=60, interval=0.5)
            minute = f"minute = toDateTime('{sent.strftime('%Y-%m-%d %H:%M:%S')}', 'UTC')"
            await eventually(lambda: _rollup_is(up, f"provider = 'aliyun' AND {minute}", 300), timeout=60,  # noqa: B023
                             interval=0.5)
        print(f"\nreceiver killed mid-request {len(pushes)} times ({unanswered} unanswered): every receipt counted once")
    finally:
        up.terminate()


async def _rollup_is(service: Service, where: str, delivered: int) -> bool:
    got = await query(service, f"SELECT sum(delivered) AS d, sum(sent) AS s FROM sms.rollup_minute WHERE {where}")
    return int(got[0]["d"]) == delivered and int(got[0]["s"]) == delivered


# --- the broker unreachable at start and for 30 s --------------------------------------------------

@pytest.mark.timeout(300)
async def test_receiver_answers_503_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    env = environment(f"127.0.0.1:{port}", tmp_path / "receiver", "faults-broker",
                      SMS_PUBLISH_TIMEOUT_SECONDS="2")
    receiver = Service(["receiver"], env, tmp_path / "receiver.log")
    http = f"http://127.0.0.1:{env['SMS_HTTP_PORT']}"
    path = f"/callbacks/aliyun/sms-report?token={TOKEN}"
    sent = datetime.now(UTC) - timedelta(minutes=5)
    answers: dict[str, list[int]] = {"start": [], "outage": []}
    stored_needed: list[tuple[str, bytes]] = []

    async def push(prefix: str) -> int:
        body = aliyun_receipts(prefix, 50, sent)
        async with aiohttp.ClientSession() as s, s.post(http + path, data=body,
                                                        timeout=aiohttp.ClientTimeout(total=15)) as r:
            reply = await r.json()
            assert (r.status, reply["code"]) in ((200, 0), (503, 1)), (r.status, reply)
            if r.status == 503:
                stored_needed.append((prefix, body))
            return r.status

    receiver.start()
    broker = EmbeddedBroker(port=port)
    try:
        await eventually(lambda: receiver.alive() and _status_is(http + "/healthz", 503), timeout=60)
        for i in range(3):  # no broker at all yet: every push 503, none accepted
            answers["start"].append(await push(f"nobroker{now_ms()}x{i}"))
        assert answers["start"] == [503, 503, 503]
        await broker.start()
        await eventually(lambda: _status_is(http + "/healthz", 200), timeout=60)
        assert await push(f"up{now_ms()}") == 200
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)  # unreachable: accepts nothing, answers nothing
        stopped = time.monotonic()
        while time.monotonic() - stopped < 30:
            t0 = time.monotonic()
            answers["outage"].append(await push(f"outage{now_ms()}"))
            assert time.monotonic() - t0 < 6  # answered within the publish timeout, never hanging
        broker.process.send_signal(signal.SIGCONT)
        assert answers["outage"] and set(answers["outage"]) == {503}
        for _prefix, body in list(stored_needed):  # the providers retry every 503
            async def accepted(body: bytes = body) -> bool:
                async with aiohttp.ClientSession() as s, s.post(http + path, data=body) as r:
                    return r.status == 200
            await eventually(accepted, timeout=60, interval=1.0)
        ids = await receipt_ids(broker.bootstrap)
        for prefix, _ in stored_needed:
            assert {f"{prefix}-{i}^0" for i in range(50)} <= ids, prefix
        print(f"\nbroker down at start ({len(answers['start'])} pushes 503) and stopped 30 s "
              f"({len(answers['outage'])} pushes 503); every retried push stored")
    finally:
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        receiver.terminate()
        broker.stop()


async def _status_is(url: str, status: int) -> bool:
    return await get_status(url) == status


async def receipt_ids(bootstrap: str) -> set[str]:
    from sms_analytics.model.events import decode_message_events

    consumer = AIOKafkaConsumer(topics.RECEIPTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    ids: set[str] = set()
    try:
        end = await consumer.end_offsets(await _assigned(consumer))
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    ids.update(e.message_id for e in decode_message_events(r.value))
            positions = {tp: await consumer.position(tp) for tp in end}
            if all(positions[tp] >= off for tp, off in end.items()):
                return ids
    finally:
        await consumer.stop()
