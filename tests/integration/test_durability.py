"""Durability on one machine: `sms-analytics up` (embedded broker, chDB in SMS_DATA_DIR) killed
with SIGKILL at any moment loses no acknowledged record and counts none twice.

- `up` is SIGKILLed at least 5 times in a run of 100,000 messages pushed over HTTP in the
  providers' formats, and restarted on the same data dir each time; also on Apache Kafka (`up`
  with KAFKA_BOOTSTRAP_SERVERS: no journal, the broker is the durable log). The moments: while traffic
  flows, right after a 2xx answer, while the sink writes to the warehouse, and during the start
  (recovery) that follows an earlier kill. The driver behaves like the providers: every push not
  answered 2xx (refused, reset, 503, timeout) is retried until it is; a 2xx is the promise.
- Only the embedded broker's process is SIGKILLed (a machine fault), twice, the second time also
  the broker its recovery resumes on; `up` recovers by itself.
- No broker outlives its pipeline: after a SIGKILL of `up`, its broker is gone within 5 s.

Ground truth: every message whose send and/or receipt push was acknowledged; its status
(delivered / failed from its receipt, else pending) and its receipt count (duplicates are the same
receipt). `sms.messages` and `sms.rollup_minute` must equal it: 0 lost, 0 doubled.

The random moments and the traffic come from one seed, printed (DURABILITY_SEED overrides it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from bench.http_bodies import _code
from sms_analytics.broker.embedded import free_port
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.simulate.payloads.aliyun import (
    ALIYUN_DELIVERED,
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SIGNS,
    ALIYUN_TEMPLATES,
    aliyun_report,
    aliyun_send,
)
from sms_analytics.simulate.payloads.common import RECEIPT_PATHS, SEND_PATHS, random_phone
from sms_analytics.simulate.payloads.kx import (
    KX_CONTENTS,
    KX_DELIVERED,
    KX_RECEIPT_FAILURES,
    kx_report,
    kx_send,
    kx_time,
)
from sms_analytics.simulate.payloads.tencent import (
    TENCENT_DELIVERED,
    TENCENT_RECEIPT_FAILURES,
    TENCENT_SDK_APP_IDS,
    TENCENT_SIGNS,
    TENCENT_TEMPLATES,
    tencent_send,
    tencent_status,
)
from sms_analytics.simulate.plan import PROVIDER_WEIGHTS
from tests.conftest import HASH_KEY, TOKEN, start_broker

pytestmark = pytest.mark.pipeline

CLI = str(Path(sys.executable).with_name("sms-analytics"))
SEED = int(os.environ.get("DURABILITY_SEED") or random.SystemRandom().randrange(10**6))
BROKER_GONE_WITHIN = 5.0
RECEIPT_SHARE = 0.96  # 4% of the messages never get a receipt: they stay pending
FAILED_SHARE = 0.07
EARLY_SHARE = 0.10  # receipts pushed before their message's send
DUPLICATE_SHARE = 0.05  # receipts pushed a second time (a provider's retry of an answered push)


# --- processes ------------------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process from /proc/<pid>/stat, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Pid:
    """A process identified by pid and start time (a reused pid is another process)."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> Pid | None:
        stat = proc_stat(pid)
        return cls(pid, stat[2]) if stat else None

    def alive(self) -> bool:
        stat = proc_stat(self.pid)
        return stat is not None and stat[2] == self.started and stat[0] not in ("Z", "X", "x")

    def state(self) -> str:
        stat = proc_stat(self.pid)
        if stat is None or stat[2] != self.started:
            return "gone"
        return stat[0]


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat:
                children.setdefault(stat[1], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


BROKER_LINE = re.compile(r"embedded_broker\.starting.*?\bpid[\"']?[=:]\s*(\d+)")


class Up:
    """`sms-analytics up` on a fixed data dir and fixed ports, restartable, its log in one file."""

    def __init__(self, data_dir: Path, **extra: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.http_port, self.query_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "KAFKA_"))}
        self.env = {**env, "SMS_DATA_DIR": str(data_dir), "SMS_HTTP_PORT": str(self.http_port),
                    "SMS_QUERY_PORT": str(self.query_port), "SMS_CALLBACK_TOKEN": TOKEN,
                    "SMS_PHONE_HASH_KEY": HASH_KEY, "SMS_APP_ID": "durability", "SMS_LOG_LEVEL": "INFO",
                    "SMS_SINK_FLUSH_SECONDS": "0.2", "SMS_JOIN_WITHIN_SECONDS": "0.05",
                    "SMS_ROLLUP_SECONDS": "1", **extra}
        self.log = data_dir.parent / f"{data_dir.name}-up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0
        self.starts = 0
        self.brokers: list[Pid] = []  # every broker process any incarnation started

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        # its own process group, so that the clean-up can end everything it started
        self.proc = subprocess.Popen([CLI, "up"], env=self.env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, since_start: bool = False) -> str:
        if not self.log.exists():
            return ""
        data = self.log.read_bytes()
        return data[self.log_offset:].decode("utf-8", "replace") if since_start else data.decode("utf-8", "replace")

    def tail(self, lines: int = 25) -> str:
        """The last lines of the log, without the broker client's connection noise."""
        kept = [line for line in self.log_text().splitlines() if "aiokafka" not in line and line.strip()]
        return "\n".join(line[:300] for line in kept[-lines:])

    def current_brokers(self) -> list[Pid]:
        """The broker processes of this incarnation: logged as started, or tansu children of `up`."""
        found: list[Pid] = []
        for line in self.log_text(since_start=True).splitlines():
            m = BROKER_LINE.search(line) if "embedded_broker.starting" in line else None
            if m and (p := Pid.of(int(m.group(1)))) is not None and self._ours(p, line):
                found.append(p)
        if self.running():
            for child in descendants(self.pid):
                if "tansu" in proc_comm(child) and (p := Pid.of(child)) is not None:
                    found.append(p)
        out = list(dict.fromkeys(found))
        for p in out:
            if p not in self.brokers:
                self.brokers.append(p)
        return out

    def _ours(self, p: Pid, line: str) -> bool:
        """A logged broker pid is this incarnation's broker (not a reused pid): a tansu process that
        is a child of `up`, or that listens on the address logged with it."""
        if "tansu" not in proc_comm(p.pid):
            return False
        stat = proc_stat(p.pid)
        if stat is not None and self.running() and stat[1] == self.pid:
            return True
        address = re.search(r"bootstrap[\"']?[=:]\s*[\"']?([\d.]+:\d+)", line)
        try:
            cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            return False
        return address is not None and f"//{address.group(1)}\0" in cmdline + "\0"

    def live_broker(self) -> Pid | None:
        live = [p for p in self.current_brokers() if p.alive()]
        return live[-1] if live else None

    def sigkill(self) -> None:
        """A crash of `up` itself: SIGKILL to its process only (not its group)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    def reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(10)

    def cleanup(self) -> list[Pid]:
        """End everything this test started; returns the brokers that were still alive."""
        self.current_brokers()
        if self.proc is not None and self.proc.poll() is None:  # not reaped: its group id is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        leaked = [p for p in self.brokers if p.alive()]
        for p in leaked:
            kill_pid(p)
        return leaked


def kill_pid(p: Pid) -> None:
    if p.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)


async def get_status(url: str, timeout: float = 2.0) -> int:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0


async def get_text(url: str, timeout: float = 2.0) -> str:
    """Status and body of a GET, for a failure message."""
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return f"{r.status} {(await r.text())[:500]}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return f"no answer ({type(exc).__name__})"


async def wait_healthy(up: Up, timeout: float = 90.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not up.running():
            raise AssertionError(f"`up` exited (rc {up.proc.returncode if up.proc else None}) before it was "
                                 f"healthy:\n{up.tail()}")
        if await get_status(up.http + "/healthz") == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"`up` not healthy within {timeout:.0f}s:\n{up.tail()}")


async def query(up: Up, sql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(up.query_url + "/query?format=json", data=sql.encode(),
                                                    timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        text = await r.text()
        assert r.status == 200, text
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


async def watch_broker_dies(p: Pid | None, when: str, orphans: list[str]) -> None:
    """After a SIGKILL of `up`: its broker must be gone within BROKER_GONE_WITHIN s. A leftover
    is noted and then ended, so that the run goes on as after a fixed orphan."""
    if p is None:
        return
    deadline = time.monotonic() + BROKER_GONE_WITHIN
    while time.monotonic() < deadline and p.alive():
        await asyncio.sleep(0.1)
    if p.alive():
        orphans.append(f"broker pid {p.pid} (state {p.state()}) outlived `up` killed {when}")
        kill_pid(p)


# --- the providers -------------------------------------------------------------------------------

@dataclass
class Message:
    provider: str
    message_id: str
    e164: str
    status: str  # the outcome of its receipt, or "pending" when it gets none
    minute: int  # the minute of its sent_at (epoch s): its rollup cohort
    send_acked: bool = False
    receipt_acked: bool = False

    @property
    def expected_status(self) -> str | None:
        if self.receipt_acked:
            return self.status
        return "pending" if self.send_acked else None


@dataclass
class Push:
    kind: str  # "send" | "receipt"
    provider: str
    path: str
    body: bytes
    messages: list[Message]
    attempts: int = 0
    acked: bool = False


class Traffic:
    """Batch sends (/v1/sends/<provider>) and receipt pushes (Alibaba SmsReport arrays, Tencent
    status callbacks, KX Report pushes) built with the simulator's payload builders; per block of
    about 2,000 messages: 10% of its receipts before its sends, the rest after, 5% of the receipts
    pushed again two blocks later, 4% of the messages without any receipt."""

    def __init__(self, messages: int, seed: int, start_s: float, span_s: float) -> None:
        self.n = messages
        self.rng = random.Random(seed)
        self.start_s, self.span_s = start_s, span_s
        self.messages: list[Message] = []
        self.seq = 0
        self.pushes: list[Push] = []
        self.duplicate_receipts = 0
        self.early_receipts = 0

    def _batch(self, provider: str, n: int, sent_at: float) -> tuple[Push, list[tuple[Message, dict[str, Any]]]]:
        rng = self.rng
        self.seq += 1
        numbers: dict[str, Any] = {}
        while len(numbers) < n:
            phone, carrier = random_phone(rng)
            numbers.setdefault(phone, carrier)
        phones = list(numbers)
        failed = {p: rng.random() < FAILED_SHARE for p in phones}
        reports = {p: sent_at + rng.uniform(1.0, 20.0) for p in phones}
        receipts: list[tuple[str, dict[str, Any]]] = []  # (message id, record)
        if provider == "aliyun":
            biz = f"{rng.randrange(100000, 1000000)}{self.seq:012d}^0"
            template, sms_size = rng.choice(ALIYUN_TEMPLATES)
            body = aliyun_send(phones, sign_name=rng.choice(ALIYUN_SIGNS), template_code=template,
                               request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper(),
                               sent_at=round(sent_at, 3), biz_id=biz, batch=True)
            for p in phones:
                receipts.append((biz, aliyun_report(
                    p, biz, send_time=sent_at, report_time=reports[p], sms_size=sms_size,
                    **_code(rng, failed[p], ALIYUN_DELIVERED, ALIYUN_RECEIPT_FAILURES[numbers[p]],
                            "err_code", "err_msg"))))
        elif provider == "tencent":
            serials = [f"5000:{rng.randrange(10**9, 10**10)}{self.seq:08d}{k:04d}" for k in range(n)]
            template, fee = rng.choice(TENCENT_TEMPLATES)
            body = tencent_send(phones, sdk_app_id=TENCENT_SDK_APP_IDS[0], template_id=template,
                                sign_name=rng.choice(TENCENT_SIGNS), session_context=f"dur_{self.seq}",
                                serial_nos=serials, request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                sent_at=round(sent_at, 3), fee=fee)
            for p, s in zip(phones, serials, strict=False):
                receipts.append((s, tencent_status(
                    p, s, receive_time=reports[p],
                    **_code(rng, failed[p], TENCENT_DELIVERED, TENCENT_RECEIPT_FAILURES[numbers[p]],
                            "errmsg", "description"))))
        else:
            taskid = f"{kx_time(sent_at)[4:]}{rng.randrange(10**5, 10**6)}{self.seq:07d}"
            content = rng.choice(KX_CONTENTS).format(n=rng.randrange(1000, 1000000))
            body = kx_send(phones, contents=content, taskid=taskid, ts_ms=int(sent_at * 1000),
                           sent_at=round(sent_at, 3))
            for p in phones:
                receipts.append((taskid, kx_report(
                    p, taskid, report_time=reports[p],
                    **_code(rng, failed[p], KX_DELIVERED, KX_RECEIPT_FAILURES, "code", "msg"))))
        minute = int(round(sent_at, 3) // 60 * 60)
        messages = [Message(provider, mid, f"+86{p}", "failed" if failed[p] else "delivered", minute)
                    for (mid, _), p in zip(receipts, phones, strict=False)]
        self.messages.extend(messages)
        send = Push("send", provider, SEND_PATHS[provider], orjson.dumps(body), messages)
        with_receipt = []
        for m, (_, record) in zip(messages, receipts, strict=False):
            if rng.random() < RECEIPT_SHARE:
                with_receipt.append((m, record))
            else:
                m.status = "pending"
        return send, with_receipt

    def _receipt_pushes(self, items: list[tuple[Message, dict[str, Any]]]) -> list[Push]:
        by_provider: dict[str, list[tuple[Message, dict[str, Any]]]] = {}
        for m, record in items:
            by_provider.setdefault(m.provider, []).append((m, record))
        out = []
        for provider, rows in by_provider.items():
            i = 0
            while i < len(rows):
                size = self.rng.randint(100, 500)
                chunk = rows[i:i + size]
                i += size
                out.append(Push("receipt", provider, RECEIPT_PATHS[provider],
                                orjson.dumps([r for _, r in chunk]), [m for m, _ in chunk]))
        self.rng.shuffle(out)
        return out

    def phases(self) -> Iterator[tuple[int, list[Push]]]:
        """(messages sent so far, pushes): the pushes of a phase go concurrently, phases in order."""
        rng = self.rng
        providers = list(PROVIDER_WEIGHTS)
        weights = [PROVIDER_WEIGHTS[p] for p in providers]
        late: list[tuple[Message, dict[str, Any]]] = []
        dup_waiting: list[list[tuple[Message, dict[str, Any]]]] = []
        made = 0
        while made < self.n:
            sends, receipts = [], []
            block = 0
            while block < 2000 and made < self.n:
                n = min(rng.randint(100, 300), self.n - made)
                sent_at = self.start_s + self.span_s * made / self.n
                send, with_receipt = self._batch(rng.choices(providers, weights)[0], n, sent_at)
                sends.append(send)
                receipts.extend(with_receipt)
                made += n
                block += n
            rng.shuffle(receipts)
            cut = round(len(receipts) * EARLY_SHARE)
            early, rest = receipts[:cut], receipts[cut:]
            self.early_receipts += len(early)
            dups = rng.sample(receipts, round(len(receipts) * DUPLICATE_SHARE))
            self.duplicate_receipts += len(dups)
            dup_waiting.append(dups)
            if early:
                yield made, self._receipt_pushes(early)
            rng.shuffle(sends)
            yield made, sends
            due = late + (dup_waiting.pop(0) if len(dup_waiting) > 2 else [])
            if due:
                yield made, self._receipt_pushes(due)
            late = rest
        rest_all = late + [r for d in dup_waiting for r in d]
        if rest_all:
            yield made, self._receipt_pushes(rest_all)


class Driver:
    """Pushes the traffic as the providers would: phases in order, up to `concurrency` pushes at
    once, each retried after a short pause until it is answered 2xx."""

    def __init__(self, up: Up, traffic: Traffic, concurrency: int = 6) -> None:
        self.up, self.traffic, self.concurrency = up, traffic, concurrency
        self.answers: Counter[str] = Counter()
        self.acked_pushes = 0
        self.retries = 0
        self.on_ack: Callable[[Push], None] | None = None  # called the moment a 2xx arrives
        self.fast = asyncio.Event()  # stop pacing
        # when set: the last block of the traffic waits for it, so that traffic is still flowing
        # at a fault the test injects late (however long the recovery from an earlier one took)
        self.hold_last: asyncio.Event | None = None
        self.holding = False  # waiting at hold_last, everything before it answered
        self.pushes: list[Push] = []

    async def _push(self, session: aiohttp.ClientSession, push: Push, sem: asyncio.Semaphore) -> None:
        url = f"{self.up.http}{push.path}?token={TOKEN}"
        async with sem:
            while True:
                push.attempts += 1
                try:
                    async with session.post(url, data=push.body, headers={"Content-Type": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=20)) as r:
                        status = r.status
                        if 200 <= status < 300:
                            if self.on_ack is not None:
                                self.on_ack(push)  # before anything else: a kill "right after a 200"
                            self._acked(push)
                            self.answers[str(status)] += 1
                            if push.kind == "send":  # 202 {"accepted": n, "rejected": [...]}
                                try:
                                    reply = orjson.loads(await r.read())
                                except (aiohttp.ClientError, orjson.JSONDecodeError, ConnectionError):
                                    reply = None  # the answer was cut by a kill; its status is the promise
                                if isinstance(reply, dict) and reply.get("rejected"):
                                    raise AssertionError(f"send records rejected: {reply['rejected'][:3]}")
                            return
                        text = (await r.text())[:300]
                        self.answers[str(status)] += 1
                        if 400 <= status < 500 and status not in (408, 429):
                            raise AssertionError(f"push {push.kind} {push.path} refused for good: {status} {text}")
                except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                    self.answers[type(exc).__name__] += 1
                self.retries += 1
                await asyncio.sleep(0.3)

    def _acked(self, push: Push) -> None:
        push.acked = True
        self.acked_pushes += 1
        for m in push.messages:
            if push.kind == "send":
                m.send_acked = True
            else:
                m.receipt_acked = True

    async def run(self, paced_seconds: float) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        rate = self.traffic.n / paced_seconds
        connector = aiohttp.TCPConnector(limit=self.concurrency + 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            started, paced_up_to = time.monotonic(), 0
            for made, phase in self.traffic.phases():
                if self.hold_last is not None and made >= self.traffic.n and not self.hold_last.is_set():
                    self.holding = True
                    await self.hold_last.wait()
                    self.holding = False
                self.pushes.extend(phase)
                t0 = time.monotonic()
                await asyncio.gather(*(self._push(session, p, sem) for p in phase))
                if not self.fast.is_set() and made > paced_up_to:
                    # a block's messages take (messages / rate) s; no catching up after a stall
                    await asyncio.sleep(max(0.0, (made - paced_up_to) / rate - (time.monotonic() - t0)))
                paced_up_to = made
            self.elapsed = time.monotonic() - started

    def unacked(self) -> list[Push]:
        return [p for p in self.pushes if not p.acked]

    async def finish(self, feeding: asyncio.Task[None], timeout: float) -> None:
        """The rest of the traffic at full speed; every push acknowledged within `timeout` s."""
        self.fast.set()
        try:
            await asyncio.wait_for(asyncio.shield(feeding), timeout)
        except TimeoutError:
            feeding.cancel()
            waiting = self.unacked()
            raise AssertionError(
                f"the traffic did not end within {timeout:.0f} s: {len(waiting)} pushes not acknowledged "
                f"(e.g. {[(p.kind, p.path, p.attempts) for p in waiting[:3]]}), answers {dict(self.answers)}\n"
                f"{self.up.tail()}") from None


# --- the comparison with the ground truth --------------------------------------------------------

COUNTS = ("SELECT count() AS rows, uniqExact(provider, message_id, phone_hash) AS distinct_messages, "
          "countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed, "
          "countIf(status = 'pending') AS pending, countIf(status = 'expired') AS expired, "
          "sum(receipt_count) AS receipts FROM sms.messages")
ROLLUP = ("SELECT sum(sent) AS messages, sum(delivered) AS delivered, sum(failed) AS failed, "
          "sum(pending) AS pending FROM sms.rollup_minute")
ROLLUP_CELLS = ("SELECT toUnixTimestamp(minute) AS minute, provider, sum(sent) AS messages, "
                "sum(delivered) AS delivered, sum(failed) AS failed, sum(pending) AS pending "
                "FROM sms.rollup_minute GROUP BY minute, provider")


def truth_counts(messages: list[Message]) -> dict[str, int]:
    statuses = Counter(m.expected_status for m in messages)
    known = sum(v for k, v in statuses.items() if k is not None)
    return {"rows": known, "distinct_messages": known, "delivered": statuses["delivered"],
            "failed": statuses["failed"], "pending": statuses["pending"], "expired": 0,
            "receipts": sum(m.receipt_acked for m in messages)}


async def counts(up: Up) -> dict[str, int]:
    return {k: int(v or 0) for k, v in (await query(up, COUNTS))[0].items()}


async def converge(up: Up, want: dict[str, int], timeout: float = 120.0, stall: float = 40.0) -> dict[str, int]:
    """Wait until the warehouse equals `want`; give up after `timeout` s, or after `stall` s
    without any change (nothing is on its way any more)."""
    started = time.monotonic()
    last, changed = None, time.monotonic()
    while True:
        got = await counts(up)
        if got == want:
            return got
        if got != last:
            last, changed = got, time.monotonic()
        if time.monotonic() - started > timeout or time.monotonic() - changed > stall:
            return got
        await asyncio.sleep(1.0)


async def compare(up: Up, messages: list[Message], label: str) -> tuple[dict[str, int], str]:
    """Per message: lost (acknowledged, but missing or less advanced in the warehouse) and doubled
    (more than one row, more receipts than acknowledged, or counted twice in the rollups)."""
    hasher = PhoneHasher(HASH_KEY.encode())
    want: dict[tuple[str, str, str], Message] = {}
    for m in messages:
        if m.expected_status is not None:
            want[(m.provider, m.message_id, hasher(m.e164))] = m
    rows = await query(up, "SELECT provider, message_id, phone_hash, status, receipt_count FROM sms.messages",
                       timeout=120)
    seen: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        seen.setdefault((r["provider"], r["message_id"], r["phone_hash"]), []).append(r)
    lost: list[str] = []
    lost_receipts: list[str] = []
    wrong: list[str] = []
    doubled: list[str] = []
    for key, m in want.items():
        got = seen.get(key)
        if not got:
            lost.append(f"{m.provider}:{m.message_id}:{m.e164[-4:]}(send {'acked' if m.send_acked else '-'}, "
                        f"receipt {'acked' if m.receipt_acked else '-'})")
            continue
        if len(got) > 1:
            doubled.append(f"{m.provider}:{m.message_id}:{m.e164[-4:]} ({len(got)} rows)")
        row = got[0]
        if int(row["receipt_count"]) > int(m.receipt_acked):
            doubled.append(f"{m.provider}:{m.message_id}:{m.e164[-4:]} (receipt_count {row['receipt_count']})")
        if m.receipt_acked and int(row["receipt_count"]) == 0:
            lost_receipts.append(f"{m.provider}:{m.message_id}:{m.e164[-4:]} (acknowledged {m.status} receipt, "
                                 f"warehouse {row['status']})")
        elif row["status"] != m.expected_status:
            wrong.append(f"{m.provider}:{m.message_id}:{m.e164[-4:]} (want {m.expected_status}, got {row['status']})")
    unexpected = [k for k in seen if k not in want]
    want_counts = truth_counts(messages)
    got_counts = await counts(up)
    rollup_want = {k: want_counts[k] for k in ("delivered", "failed", "pending")}
    rollup_want["messages"] = want_counts["rows"]
    rolled: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the rollup rounds trail the rows by a few seconds
        rolled = {k: int(v or 0) for k, v in (await query(up, ROLLUP))[0].items()}
        if rolled == rollup_want or lost or lost_receipts or doubled or wrong:
            break
        await asyncio.sleep(1.0)
    rollup_diff = {k: rolled.get(k, 0) - v for k, v in rollup_want.items() if rolled.get(k, 0) != v}
    # and per (minute sent, provider): no cohort short of a message while another has one too many
    cells_want: dict[tuple[int, str], Counter[str]] = {}
    for m in want.values():
        if m.send_acked:
            cell = cells_want.setdefault((m.minute, m.provider), Counter())
            cell["messages"] += 1
            cell[m.expected_status or ""] += 1
    cells_got = {(int(r["minute"]), r["provider"]): r for r in await query(up, ROLLUP_CELLS)}
    cells_off = []
    for key in sorted(set(cells_want) | set(cells_got)):
        w, g = cells_want.get(key, Counter()), cells_got.get(key, {})
        diff = {k: int(g.get(k) or 0) - w[k] for k in ("messages", "delivered", "failed", "pending")
                if int(g.get(k) or 0) != w[k]}
        if diff:
            cells_off.append(f"{time.strftime('%H:%M', time.gmtime(key[0]))} {key[1]} {diff}")
    summary = {"acknowledged_messages": len(want), "warehouse_rows": len(rows), "lost_messages": len(lost),
               "lost_receipts": len(lost_receipts), "wrong_status": len(wrong), "doubled": len(doubled),
               "unexpected_rows": len(unexpected)}
    awaited = "" if rolled == rollup_want or not (lost or lost_receipts or doubled or wrong) else \
        " (not awaited: the rows are already wrong; later rollup rounds may still move)"
    report = (f"{label}: {summary}\n  truth     {want_counts}\n  warehouse {got_counts}\n"
              f"  rollups   {rolled} (want {rollup_want}, diff {rollup_diff}){awaited}")
    for name, items in (("lost messages", lost), ("lost receipts", lost_receipts), ("wrong status", wrong),
                        ("doubled", doubled), ("unexpected rows", [":".join(k[:2]) for k in unexpected]),
                        ("rollup cells (minute, provider) off", cells_off)):
        if items:
            report += f"\n  {name} ({len(items)}), e.g. {items[:5]}"
    summary["rollup_off"] = sum(abs(v) for v in rollup_diff.values())
    summary["rollup_cells_off"] = len(cells_off)
    return summary, report


def failures_of(summary: dict[str, int]) -> bool:
    return any(summary[k] for k in ("lost_messages", "lost_receipts", "wrong_status", "doubled",
                                    "unexpected_rows", "rollup_off", "rollup_cells_off"))


def rotations(up: Up) -> int:
    """Broker rotations `up` logged, over all its incarnations."""
    return up.log.read_text(errors="replace").count("embedded_broker.rotated") if up.log.exists() else 0


@pytest_asyncio.fixture
async def up_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(name: str = "data", **extra: str) -> Up:
        u = Up(tmp_path / name, **extra)
        made.append(u)
        return u

    try:
        yield make
    finally:
        for u in made:
            u.cleanup()


# --- 1. `up` SIGKILLed at random moments during a 100,000-message run ----------------------------

async def kill_when_warehouse_busy(up: Up, rng: random.Random) -> str:
    """SIGKILL `up` while the sink writes: the warehouse serializes its calls, so a one-row query
    that is not answered within a few times its usual latency waits on a write in progress; the
    kill comes while the row count is moving (the sink is inserting)."""
    sql = "SELECT count() AS n FROM sms.message_parts"
    latencies: list[float] = []
    last_n: int | None = None
    before: int | None = None
    moving = False
    deadline = time.monotonic() + 15

    async def count(s: aiohttp.ClientSession) -> int:
        async with s.post(up.query_url + "/query?format=json", data=sql.encode()) as r:
            return int(orjson.loads((await r.text()).splitlines()[0])["n"])

    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            task = asyncio.ensure_future(count(s))
            threshold = max(0.03, 4 * sorted(latencies)[len(latencies) // 2]) if len(latencies) >= 5 else 1.0
            done, _ = await asyncio.wait({task}, timeout=threshold)
            if not done and moving:
                up.sigkill()
                task.cancel()
                return (f"while the sink was writing (rows {before} -> {last_n} in the last poll, then a query "
                        f"waited > {threshold * 1000:.0f} ms on the warehouse)")
            try:
                n = await task
            except Exception:  # noqa: BLE001 - a failed probe is left out of the latencies; the counts check it
                continue
            latencies.append(time.monotonic() - t0)
            moving = last_n is not None and n != last_n
            before, last_n = last_n, n
            await asyncio.sleep(rng.uniform(0.0, 0.03))
    up.sigkill()
    return "while rows were arriving (no write caught in 15 s)"


@pytest.mark.timeout(420)
@pytest.mark.both_brokers(apache_on_request="66 s more; passed with 0 lost and 0 doubled, the suite's 15 min allow no more")
async def test_up_sigkilled_at_random_moments_loses_and_doubles_nothing(
        up_factory: Callable[..., Up], broker_kind: str) -> None:
    kafka = await start_broker("apache") if broker_kind == "apache" else None
    try:
        await sigkilled_at_random_moments(up_factory, {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap} if kafka else {})
    finally:
        if kafka is not None:
            kafka.stop()


async def sigkilled_at_random_moments(up_factory: Callable[..., Up], external: dict[str, str]) -> None:
    rng = random.Random(SEED)
    print(f"\nDURABILITY_SEED={SEED}")
    # a small broker budget: the broker is rotated (checkpoint, new broker, states carried over) every
    # few seconds of traffic, so kills may also land before, during and after rotations (how many
    # happen depends on where the kills fall: reported, not asserted). On an external broker
    # (`external`: KAFKA_BOOTSTRAP_SERVERS) none of that applies: `up` keeps no broker.
    up = up_factory(SMS_BROKER_MAX_MEMORY_MB="48", SMS_BROKER_ROTATE_MIN_SECONDS="5", **external)
    now = time.time()
    traffic = Traffic(100_000, seed=rng.randrange(10**9), start_s=now - 240, span_s=200)
    driver = Driver(up, traffic)
    orphans: list[str] = []
    watchers: list[asyncio.Task[None]] = []
    kills: list[str] = []
    started = time.monotonic()
    up.start()
    await wait_healthy(up)
    feeding = asyncio.create_task(driver.run(paced_seconds=50))

    def traffic_alive() -> None:
        if feeding.done():
            feeding.result()  # a driver error fails the test here
            raise AssertionError("the traffic ended before every kill was made; make it longer")

    def kill(when: str) -> None:
        broker = up.live_broker()
        up.sigkill()
        up.reap()
        kills.append(when)
        watchers.append(asyncio.create_task(watch_broker_dies(broker, when, orphans)))

    moments = ["traffic", "after_ack", "sink_insert", "traffic"]
    rng.shuffle(moments)
    moments.insert(2, "recovery")  # the start that follows the second kill is itself killed
    try:
        for moment in moments:
            if moment != "recovery":
                await wait_healthy(up)
                await asyncio.sleep(rng.uniform(1.0, 4.0))
            traffic_alive()
            if moment == "traffic":
                kill(f"#{len(kills) + 1} during traffic ({driver.acked_pushes} pushes acknowledged)")
            elif moment == "after_ack":
                acked = asyncio.get_running_loop().create_future()

                def on_ack(push: Push) -> None:
                    if push.kind == "receipt" and not acked.done():  # noqa: B023 - called within this iteration
                        up.sigkill()  # synchronously, the moment the 2xx arrived
                        driver.on_ack = None
                        acked.set_result(push)  # noqa: B023 - called within this iteration

                broker_before = up.live_broker()
                driver.on_ack = on_ack
                try:
                    push = await asyncio.wait_for(acked, 20)
                except TimeoutError:
                    raise AssertionError("no receipt push was acknowledged within 20 s") from None
                up.reap()
                kills.append(f"#{len(kills) + 1} right after a 200 to a push of {len(push.messages)} receipts")
                watchers.append(asyncio.create_task(watch_broker_dies(broker_before, kills[-1], orphans)))
            elif moment == "sink_insert":
                broker = up.live_broker()
                how = await kill_when_warehouse_busy(up, rng)
                up.reap()
                kills.append(f"#{len(kills) + 1} {how}")
                watchers.append(asyncio.create_task(watch_broker_dies(broker, kills[-1], orphans)))
            else:  # recovery: 1-3 s into the start after the previous kill, before it is healthy
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                status = await get_status(up.http + "/healthz", timeout=0.5)
                kill(f"#{len(kills) + 1} during the start after the previous kill "
                     f"({'/healthz 200 already' if status == 200 else 'not healthy yet'})")
            up.start()
        await wait_healthy(up)
        await driver.finish(feeding, 240)
        sent_s = time.monotonic() - started
        await asyncio.gather(*watchers)
        want = truth_counts(traffic.messages)
        got = await converge(up, want)
        summary, report = await compare(up, traffic.messages, "up SIGKILLed")
    finally:
        feeding.cancel()  # the session's event loop outlives the test: no driver left retrying
        for w in watchers:
            w.cancel()
    total = time.monotonic() - started
    print(f"\n{report}\n  kills ({len(kills)}): " + "; ".join(kills))
    print(f"  tried {len(traffic.messages)} messages in {len(driver.pushes)} pushes ({traffic.early_receipts} "
          f"receipts before their send, {traffic.duplicate_receipts} duplicate receipts, "
          f"{want['pending']} pending); {driver.retries} retries, answers {dict(driver.answers)}; "
          f"traffic {sent_s:.0f}s, total {total:.0f}s; orphaned brokers {len(orphans)}")
    print(f"  durability: tried {len(traffic.messages)} messages, kills {len(kills)}, lost "
          f"{summary['lost_messages']} messages + {summary['lost_receipts']} receipts, doubled {summary['doubled']}, "
          f"orphaned brokers {len(orphans)}, broker rotations {rotations(up)}")
    assert len(traffic.messages) >= 100_000 and len(kills) >= 5
    problems = []
    if failures_of(summary) or got != want:
        problems.append(report)
    if orphans:
        problems.append("brokers outlived `up`: " + "; ".join(orphans))
    assert not problems, (f"SIGKILL x{len(kills)} of `up` (seed {SEED}): lost {summary['lost_messages']} messages "
                          f"and {summary['lost_receipts']} receipts, doubled {summary['doubled']}\n"
                          + "\n".join(problems) + "\nkills: " + "; ".join(kills))
    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(20) == 0


# --- 2. only the embedded broker's process SIGKILLed ---------------------------------------------

async def kill_broker_twice(up: Up, driver: Driver, feeding: asyncio.Task[None], rng: random.Random,
                            kills: list[str]) -> list[float]:
    """SIGKILL the live broker process of `up` mid-traffic, twice; the second time, also the broker
    its recovery starts the stream on, while the recovery waits for it. Each time `up` must recover
    by itself (still running, healthy, acknowledging pushes again) within 60 s."""
    recovered: list[float] = []
    for kill in range(2):
        await asyncio.sleep(rng.uniform(2.0, 4.0))
        broker = up.live_broker()
        assert broker is not None, f"no live broker process of `up` found:\n{up.tail()}"
        assert not feeding.done(), "the traffic ended before the broker was killed"
        os.kill(broker.pid, signal.SIGKILL)
        kills.append(f"broker pid {broker.pid} after {driver.acked_pushes} acknowledged pushes")
        t0 = time.monotonic()
        if kill == 1:
            await kill_during_recovery(up, kills)
            if driver.hold_last is not None:
                driver.hold_last.set()  # the held last block goes into the outage
        await asyncio.sleep(0.5)
        acked_before = driver.acked_pushes
        # recovered: `up` is still running, healthy, and acknowledges pushes again
        while not (up.running() and (driver.acked_pushes > acked_before + 3 or feeding.done() or driver.holding)
                   and await get_status(up.http + "/healthz") == 200):
            if not up.running():
                raise AssertionError(f"`up` exited (rc {up.proc.returncode if up.proc else None}) after its "
                                     f"broker was SIGKILLed:\n{up.tail()}")
            if time.monotonic() - t0 > 60:
                raise AssertionError(
                    f"`up` did not recover within 60 s of its broker's SIGKILL ({kills[-1]}): /healthz "
                    f"{await get_text(up.http + '/healthz')}, {driver.acked_pushes - acked_before} pushes "
                    f"acknowledged since, answers {dict(driver.answers)}\n{up.tail()}")
            await asyncio.sleep(0.3)
        recovered.append(time.monotonic() - t0)
    return recovered


async def kill_during_recovery(up: Up, kills: list[str]) -> None:
    """After a broker SIGKILL: a recovery starts a stand-in broker, then the broker the stream resumes
    on, and waits for the stream to start on it. SIGKILL that second broker a moment after it
    started, while the recovery waits on it (`embedded_broker.starting` lines of the log)."""
    logged = len(up.log_text())
    deadline = time.monotonic() + 50
    while True:
        started = [int(m.group(1)) for line in up.log_text()[logged:].splitlines()
                   if "embedded_broker.starting" in line and (m := BROKER_LINE.search(line))]
        if len(started) >= 2:
            break
        assert time.monotonic() < deadline, f"no recovery of `up` started after its broker's SIGKILL:\n{up.tail()}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    broker = Pid.of(started[1])
    assert broker is not None and broker.alive(), f"the recovery's broker {started[1]} is gone:\n{up.tail()}"
    os.kill(broker.pid, signal.SIGKILL)
    kills.append(f"broker pid {broker.pid} during the recovery")


@pytest.mark.timeout(300)
async def test_broker_process_sigkilled_up_recovers_by_itself(up_factory: Callable[..., Up]) -> None:
    rng = random.Random(SEED + 1)
    print(f"\nDURABILITY_SEED={SEED}")
    up = up_factory()
    now = time.time()
    traffic = Traffic(20_000, seed=rng.randrange(10**9), start_s=now - 240, span_s=200)
    driver = Driver(up, traffic)
    driver.hold_last = asyncio.Event()
    kills: list[str] = []
    started = time.monotonic()
    up.start()
    await wait_healthy(up)
    feeding = asyncio.create_task(driver.run(paced_seconds=16))
    try:
        recovered = await kill_broker_twice(up, driver, feeding, rng, kills)
        await driver.finish(feeding, 120)
    finally:
        driver.hold_last.set()
        feeding.cancel()  # the session's event loop outlives the test: no driver left retrying
    want = truth_counts(traffic.messages)
    got = await converge(up, want)
    summary, report = await compare(up, traffic.messages, "broker SIGKILLed")
    print(f"\n{report}\n  broker kills: {kills}; recovered in {[round(r, 1) for r in recovered]} s; "
          f"{driver.retries} retries, answers {dict(driver.answers)}; total {time.monotonic() - started:.0f}s")
    print(f"  durability: tried {len(traffic.messages)} messages, broker kills {len(kills)}, lost "
          f"{summary['lost_messages']} messages + {summary['lost_receipts']} receipts, doubled {summary['doubled']}")
    assert not failures_of(summary) and got == want, (
        f"broker SIGKILL x{len(kills)} (seed {SEED}): lost {summary['lost_messages']} messages and "
        f"{summary['lost_receipts']} receipts, doubled {summary['doubled']}\n{report}")


# --- 2b. `up` stopped (SIGTERM) in the middle of a rotation ---------------------------------------

@pytest.mark.timeout(300)
async def test_up_stopped_during_a_rotation_stops_in_time_and_loses_nothing(up_factory: Callable[..., Up]) -> None:
    """A SIGTERM that lands while a rotation starts the stream on its new broker: `up` must exit 0
    within 20 s (the stream it would checkpoint is taken apart: it stops without a checkpoint), and
    the next start replays the journal from the rotation's snapshot, losing and doubling nothing."""
    rng = random.Random(SEED + 2)
    print(f"\nDURABILITY_SEED={SEED}")
    up = up_factory(SMS_BROKER_MAX_MEMORY_MB="48", SMS_BROKER_ROTATE_MIN_SECONDS="5")
    traffic = Traffic(40_000, seed=rng.randrange(10**9), start_s=time.time() - 240, span_s=200)
    driver = Driver(up, traffic)
    up.start()
    await wait_healthy(up)
    feeding = asyncio.create_task(driver.run(paced_seconds=20))
    try:
        await rotation_under_way(up, feeding)
        assert up.proc is not None
        up.proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        try:
            code: int | None = await asyncio.to_thread(up.proc.wait, 30)
        except subprocess.TimeoutExpired:
            code = None
        stopped_in = time.monotonic() - stopping
        log = up.log_text(since_start=True)
        assert code == 0 and stopped_in < 20, (f"`up` stopped in {stopped_in:.1f} s (rc {code}) after a SIGTERM "
                                               f"during a rotation:\n{up.tail()}")
        assert "runtime.stop_without_checkpoint" in log, f"the SIGTERM missed the rotation:\n{up.tail()}"
        up.start()
        await wait_healthy(up)
        await driver.finish(feeding, 120)
    finally:
        feeding.cancel()
    want = truth_counts(traffic.messages)
    got = await converge(up, want)
    summary, report = await compare(up, traffic.messages, "stopped during a rotation")
    print(f"\n{report}\n  stopped in {stopped_in:.1f} s; {driver.retries} retries, answers {dict(driver.answers)}")
    assert not failures_of(summary) and got == want, (
        f"SIGTERM during a rotation (seed {SEED}): lost {summary['lost_messages']} messages and "
        f"{summary['lost_receipts']} receipts, doubled {summary['doubled']}\n{report}")


async def rotation_under_way(up: Up, feeding: asyncio.Task[None]) -> None:
    """Return a moment after a rotation replaced the broker (`embedded_broker.stopped`, then the new
    one's `topics.created`), while the worker starts on the new one (about a second: its group join)."""
    logged = len(up.log_text())
    deadline = time.monotonic() + 60
    while True:
        lines = up.log_text()[logged:].splitlines()
        stops = [i for i, line in enumerate(lines) if "embedded_broker.stopped" in line]
        if stops and any("topics.created" in line for line in lines[stops[0]:]):
            break
        assert not feeding.done() and time.monotonic() < deadline, f"no rotation during the traffic:\n{up.tail()}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


# --- 3. no broker outlives its pipeline ----------------------------------------------------------

@pytest.mark.timeout(120)
async def test_broker_gone_within_seconds_after_up_is_sigkilled(up_factory: Callable[..., Up]) -> None:
    up = up_factory()
    up.start()
    await wait_healthy(up)
    broker = up.live_broker()
    assert broker is not None, f"no broker process of `up` found:\n{up.tail()}"
    up.sigkill()
    up.reap()
    killed = time.monotonic()
    while broker.alive() and time.monotonic() - killed < BROKER_GONE_WITHIN:
        await asyncio.sleep(0.05)
    gone_after = time.monotonic() - killed
    state = broker.state()
    assert not broker.alive(), (f"the embedded broker (pid {broker.pid}, state {state}) still runs "
                                f"{BROKER_GONE_WITHIN:.0f} s after `up` (pid {up.pid}) was SIGKILLed: orphaned")
    print(f"\nbroker pid {broker.pid} gone {gone_after:.2f} s after the SIGKILL of `up` (state now {state})")
