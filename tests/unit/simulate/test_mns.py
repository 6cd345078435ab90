"""MnsConsumer (the real aliyun-mns-sdk underneath) against MnsSimulator over real HTTP on 127.0.0.1:
publish-then-delete, at-least-once redelivery after the visibility timeout, signature errors with
backoff, credential changes, dead-lettering of unusable bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from mns.account import Account
from mns.mns_exception import MNSServerException

from sms_analytics.model.events import ReceiptEvent, ReplyEvent
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.simulate.mns import MnsSimulator
from sms_analytics.sources.aliyun.mns import MnsConsumer, RefreshingCredentials, decode_body
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.producer import BrokerUnavailable

ACCESS_ID = "LTAI-test-id"
ACCESS_KEY = "test-secret-key"
REPORTS = "Alicom-Queue-1234567890-SmsReport"
UPLINKS = "Alicom-Queue-1234567890-SmsUp"
CHINA = timezone(timedelta(hours=8))

pytestmark = pytest.mark.timeout(60)


def provider() -> Aliyun:
    return Aliyun(Identities(PhoneHasher(b"k" * 32)))


def china(seconds_ago: float = 0.0) -> str:
    return (datetime.now(CHINA) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%d %H:%M:%S")


def report(i: int, **overrides: Any) -> dict[str, Any]:
    rec = {
        "phone_number": f"1380013{i:04d}", "success": i % 3 != 0, "biz_id": f"900{i:05d}^0",
        "out_id": f"out-{i}", "send_time": china(60), "report_time": china(55),
        "err_code": "DELIVERED" if i % 3 else "MK:0001", "err_msg": "用户接收成功" if i % 3 else "失败",
        "sms_size": "1",
    }
    rec.update(overrides)
    return rec


class Recorder:
    """A fake publisher: records what it was given, or fails like the broker being down."""

    def __init__(self, sim: MnsSimulator, queue: str) -> None:
        self.sim, self.queue = sim, queue
        self.calls: list[tuple[list, list, str]] = []
        self.undeleted_at_call: list[int] = []
        self.fail = False
        self.failures = 0

    async def __call__(self, events: list, rejected: list, endpoint: str) -> None:
        if self.fail:
            self.failures += 1
            raise BrokerUnavailable("broker down")
        self.undeleted_at_call.append(self.sim.size(self.queue))
        self.calls.append((list(events), list(rejected), endpoint))

    @property
    def events(self) -> list:
        return [e for call in self.calls for e in call[0]]

    @property
    def rejected(self) -> list:
        return [r for call in self.calls for r in call[1]]


class SwitchableCredentials:
    def __init__(self, access_id: str, access_key: str) -> None:
        self.value: tuple[str, str, str | None] = (access_id, access_key, None)

    def get(self) -> tuple[str, str, str | None]:
        return self.value


@pytest_asyncio.fixture
async def mns() -> AsyncIterator[tuple[MnsSimulator, str]]:
    sim = MnsSimulator(access_id=ACCESS_ID, access_key=ACCESS_KEY, visibility_timeout=1.0)
    sim.create_queue(REPORTS)
    sim.create_queue(UPLINKS)
    runner = web.AppRunner(sim.app(), shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield sim, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def consumer(endpoint: str, publish: Any, *, queue: str = REPORTS, kind: str = "SmsReport",
             access_key: str = ACCESS_KEY, **kwargs: Any) -> MnsConsumer:
    p = provider()
    kwargs.setdefault("wait_seconds", 1)
    kwargs.setdefault("min_backoff", 0.1)
    kwargs.setdefault("max_backoff", 0.4)
    return MnsConsumer(endpoint=endpoint, access_id=ACCESS_ID, access_key=access_key, queue=queue, kind=kind,
                       publish=publish, parse=p.receipts if kind == "SmsReport" else p.replies, **kwargs)


@asynccontextmanager
async def running(c: MnsConsumer) -> AsyncIterator[asyncio.Task]:
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(cond: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_reports_are_published_then_deleted(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    for i in range(1, 21):
        sim.send(REPORTS, report(i), base64_body=i % 2 == 0)  # the SMS service's base64, and plain JSON
    rec = Recorder(sim, REPORTS)
    c = consumer(endpoint, rec)
    async with running(c):
        await until(lambda: c.stats.deleted == 20)

    assert len(rec.calls) == 2  # batches of 16 + 4
    assert [len(call[0]) for call in rec.calls] == [16, 4]
    assert all(endpoint_ == "feed:aliyun-mns:SmsReport" for _, _, endpoint_ in rec.calls)
    # every batch was published while its messages were still in the queue
    assert rec.undeleted_at_call == [20, 4]
    events = rec.events
    assert all(isinstance(e, ReceiptEvent) for e in events)
    assert sorted(e.message_id for e in events) == sorted(f"900{i:05d}^0" for i in range(1, 21))
    by_id = {e.message_id: e for e in events}
    assert by_id["90000003^0"].delivered is False and by_id["90000003^0"].error_code == "MK:0001"
    assert by_id["90000004^0"].delivered is True and by_id["90000004^0"].phone == "+8613800130004"
    assert rec.rejected == []
    assert sim.size(REPORTS) == 0 and sim.deleted == 20
    assert c.stats.received == 20 and c.stats.published == 20 and c.stats.events == 20
    assert c.stats.errors == 0 and c.stats.account_builds == 1


@pytest.mark.asyncio
async def test_empty_queue_is_not_an_error_and_long_poll_delivers_at_once(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    rec = Recorder(sim, UPLINKS)
    c = consumer(endpoint, rec, queue=UPLINKS, kind="SmsUp", wait_seconds=2)
    async with running(c):
        await asyncio.sleep(0.3)  # the first long poll is now waiting on the empty queue
        sent = time.monotonic()
        sim.send(UPLINKS, {"phone_number": "13800138000", "content": "TD", "sign_name": "【阿里云】",
                           "send_time": china(5), "dest_code": "123456", "sequence_id": 1234567})
        await until(lambda: c.stats.deleted == 1)
        assert time.monotonic() - sent < 1.5  # answered by the pending long poll, not the next one
        await until(lambda: c.stats.empty >= 1, 5)  # the following poll finds the queue empty
    assert c.stats.errors == 0
    [event] = rec.events
    assert isinstance(event, ReplyEvent)
    assert event.reply_id == "aliyun:1234567" and event.content == "TD" and event.dest_code == "123456"
    assert rec.calls[0][2] == "feed:aliyun-mns:SmsUp"


@pytest.mark.asyncio
async def test_failed_publish_deletes_nothing_and_messages_come_back(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    for i in range(1, 4):
        sim.send(REPORTS, report(i))
    rec = Recorder(sim, REPORTS)
    rec.fail = True
    c = consumer(endpoint, rec)
    async with running(c) as task:
        await until(lambda: rec.failures >= 1)
        first = time.monotonic()
        assert c.stats.last_error == "BrokerUnavailable" and c.stats.last_error_stage == "publish"
        assert sim.deleted == 0 and sim.size(REPORTS) == 3
        assert sim.visible(REPORTS) == 0  # invisible while the visibility timeout runs
        await asyncio.sleep(0.5)
        assert c.stats.received == 3  # not received again before the timeout
        await until(lambda: c.stats.received >= 6)  # ... but after it (at-least-once)
        assert time.monotonic() - first >= 0.5
        assert rec.failures >= 2 and sim.deleted == 0 and not task.done()
        assert all(n >= 2 for n in sim.dequeue_counts(REPORTS))
        rec.fail = False
        await until(lambda: sim.size(REPORTS) == 0)
    assert sorted(e.message_id for e in rec.events) == ["90000001^0", "90000002^0", "90000003^0"]
    assert sim.deleted == 3 and c.stats.deleted == 3
    assert c.stats.errors >= 2


@pytest.mark.asyncio
async def test_bad_access_key_is_refused_and_the_consumer_backs_off(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    sim.send(REPORTS, report(7))

    def direct() -> MNSServerException:
        queue = Account(endpoint, ACCESS_ID, "wrong-key").get_queue(REPORTS)
        with pytest.raises(MNSServerException) as info:
            queue.batch_receive_message(16, 0)
        return info.value

    err = await asyncio.to_thread(direct)
    assert err.type == "SignatureDoesNotMatch"

    creds = SwitchableCredentials(ACCESS_ID, "wrong-key")
    rec = Recorder(sim, REPORTS)
    c = consumer(endpoint, rec, credentials=creds, min_backoff=0.1, max_backoff=0.4)
    async with running(c) as task:
        started = time.monotonic()
        await until(lambda: c.stats.errors >= 4)
        assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 - 0.05  # exponential backoff between tries
        assert c.stats.last_error == "SignatureDoesNotMatch" and c.stats.last_error_stage == "receive"
        assert c.stats.backoff == 0.4  # capped
        await asyncio.sleep(0.5)
        assert c.stats.errors <= 7 and not task.done()  # still running, no tight loop
        assert rec.calls == [] and sim.size(REPORTS) == 1 and sim.requests.get("SignatureDoesNotMatch", 0) >= 4
        creds.value = (ACCESS_ID, ACCESS_KEY, None)  # a corrected key: the SDK Account is rebuilt
        await until(lambda: c.stats.deleted == 1)
        assert c.stats.backoff == 0.0
    assert c.stats.account_builds == 2
    assert [e.message_id for e in rec.events] == ["90000007^0"]


@pytest.mark.asyncio
async def test_unusable_bodies_are_dead_lettered_and_deleted(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    sim.send(REPORTS, report(1))
    sim.send(REPORTS, "this is not json", base64_body=False)
    sim.send(REPORTS, {k: v for k, v in report(2).items() if k != "biz_id"})
    sim.send(REPORTS, b"\xff\xfe not utf-8 or json")
    sim.send(REPORTS, [1, 2, 3], base64_body=False)
    rec = Recorder(sim, REPORTS)
    c = consumer(endpoint, rec)
    async with running(c):
        await until(lambda: c.stats.deleted == 5)
    assert [e.message_id for e in rec.events] == ["90000001^0"]
    rejected = sorted(rec.rejected, key=lambda r: r.index)
    assert [r.index for r in rejected] == [1, 2, 3, 4]
    assert "neither JSON nor base64" in rejected[0].reason and rejected[0].raw == b"this is not json"
    assert "missing field 'biz_id'" in rejected[1].reason and orjson.loads(rejected[1].raw)["out_id"] == "out-2"
    assert "not of JSON" in rejected[2].reason
    assert "expected an object" in rejected[3].reason
    assert sim.size(REPORTS) == 0 and sim.deleted == 5
    assert c.stats.rejected == 4 and c.stats.events == 1 and c.stats.errors == 0


@pytest.mark.asyncio
async def test_temporary_token_is_refreshed_before_it_expires(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    now = [1_000.0]
    tokens = iter([("STS.first", "secret-1", "token-1", 1_600.0), ("STS.second", "secret-2", "token-2", 2_200.0)])
    creds = RefreshingCredentials(lambda: next(tokens), refresh_before=120, clock=lambda: now[0])
    sim.set_credentials("STS.first", "secret-1", "token-1")
    rec = Recorder(sim, REPORTS)
    c = consumer(endpoint, rec, credentials=creds)
    async with running(c):
        sim.send(REPORTS, report(1))
        await until(lambda: c.stats.deleted == 1)
        # the service rotates the token; ours is due for refresh two minutes before its expiry
        sim.set_credentials("STS.second", "secret-2", "token-2")
        now[0] = 1_500.0
        sim.send(REPORTS, report(2))
        await until(lambda: c.stats.deleted == 2)
    assert c.stats.account_builds == 2
    assert sim.requests.get("AccessDenied", 0) + sim.requests.get("InvalidAccessKeyId", 0) <= 1
    assert [e.message_id for e in rec.events] == ["90000001^0", "90000002^0"]


@pytest.mark.asyncio
async def test_security_token_is_checked(mns: tuple[MnsSimulator, str]) -> None:
    sim, endpoint = mns
    sim.set_credentials("STS.x", "secret-x", "token-x")

    def receive(token: str) -> str:
        queue = Account(endpoint, "STS.x", "secret-x", token).get_queue(REPORTS)
        try:
            queue.batch_receive_message(1, 0)
        except MNSServerException as exc:
            return exc.type
        return "OK"

    assert await asyncio.to_thread(receive, "token-y") == "AccessDenied"
    assert await asyncio.to_thread(receive, "token-x") == "MessageNotExist"


def test_decode_body_accepts_plain_and_base64_json() -> None:
    assert decode_body('{"a": 1}') == {"a": 1}
    assert decode_body("eyJhIjogMX0=") == {"a": 1}
    assert decode_body("eyJhIjog\nMX0=") == {"a": 1}
    for bad in ("", "   ", "not json", "bm90IGpzb24="):
        with pytest.raises(ValueError):
            decode_body(bad)
