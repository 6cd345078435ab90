"""The driver: posts a plan of simulate/plan.py to our HTTP receivers in real time (sends, receipt
pushes per provider tick, uplinks), holds or drops receipts in a blackout, checks every reply against
the provider's documented success reply and returns the :class:`GroundTruth` of what was posted.
The `sms-analytics simulate` command (cli.py) is its command line."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import msgspec

from sms_analytics.model.providers import PROVIDERS, Provider
from sms_analytics.simulate.conversions import CONVERSIONS_PATH, ConversionDrop, PlannedConversion, plan_conversions
from sms_analytics.simulate.payloads.common import (
    EXPECTED_REPLIES,
    RECEIPT_PATHS,
    SEND_PATHS,
    UPLINK_PATHS,
    Json,
)
from sms_analytics.simulate.plan import (
    MAX_RECORDS_PER_PUSH,
    PUSH_TICK,
    PlannedMessage,
    PlannedSend,
    TrafficPlan,
    delay_scale,
    plan_traffic,
)
from sms_analytics.simulate.scenarios import Blackout, Outage

logger = logging.getLogger(__name__)

MAX_CONVERSIONS_PER_POST = 100


class SimulatorError(RuntimeError):
    """The receiver answered something other than the provider's documented success reply."""


# --- ground truth ------------------------------------------------------------------------------


@dataclass(slots=True)
class ProviderCounts:
    """What was actually posted for one provider (messages = phone numbers)."""

    sends: int = 0
    delivered: int = 0
    failed: int = 0  # receipt failures + submit failures
    pending: int = 0  # sent, no receipt posted
    duplicate_receipts_posted: int = 0
    receipts_before_send: int = 0  # messages whose receipt was posted before their send record
    replies_posted: int = 0  # uplink (MO / reply) records
    submit_failed: int = 0
    send_requests: int = 0
    receipts_posted: int = 0  # receipt records incl. duplicates
    receipt_requests: int = 0
    # Billed parts our pipeline should store, summed over the messages: Alibaba the sms_size of the
    # receipt posted for the message, else 1; Tencent the SendStatusSet Fee (0 for a number rejected
    # at submit); KX 1 up to 70 characters of content, else ceil(len / 67).
    segments: int = 0
    late_receipts: int = 0  # messages whose (first) receipt posted says report time 2..6 h after send
    receipts_dropped: int = 0  # messages whose receipt a blackout withheld for good (they stay pending)
    receipts_caught_up: int = 0  # messages whose receipt a catch-up blackout held, posted after it
    converted: int = 0  # messages with a conversion posted (simulate/conversions.py): the warehouse's converted
    conversions_posted: int = 0  # conversion records incl. repeats
    conversions_before_receipt: int = 0  # conversions posted before the message's receipt was due


@dataclass(slots=True)
class GroundTruth:
    aliyun: ProviderCounts = field(default_factory=ProviderCounts)
    tencent: ProviderCounts = field(default_factory=ProviderCounts)
    kx: ProviderCounts = field(default_factory=ProviderCounts)

    def of(self, provider: Provider) -> ProviderCounts:
        counts: ProviderCounts = getattr(self, provider)
        return counts

    @property
    def segments(self) -> dict[Provider, int]:
        """Segments per provider (see :attr:`ProviderCounts.segments`)."""
        return {p: self.of(p).segments for p in PROVIDERS}

    @property
    def late_receipts(self) -> int:
        """Late receipts posted, all providers (see :attr:`ProviderCounts.late_receipts`)."""
        return sum(self.of(p).late_receipts for p in PROVIDERS)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {p: asdict(self.of(p)) for p in PROVIDERS}


# --- the driver --------------------------------------------------------------------------------

_PHONE_RE = re.compile(r"1[3-9]\d{9}")


def _redact(text: str) -> str:
    return _PHONE_RE.sub("<phone>", text)[:300]


def check_reply(path: str, status: int, body: bytes, expected: Json | str | None) -> None:
    """Raise :class:`SimulatorError` unless the reply is HTTP 200 with the documented body.

    ``expected=None`` (our own send endpoints) accepts any 2xx.
    """
    text = body.decode("utf-8", "replace")
    if expected is None:
        if 200 <= status < 300:
            return
        raise SimulatorError(f"POST {path}: HTTP {status} {_redact(text)!r}")
    if status == 200:
        if isinstance(expected, str) and text.strip() == expected:
            return
        if isinstance(expected, dict):
            try:
                if msgspec.json.decode(body) == expected:
                    return
            except msgspec.DecodeError:
                pass
    raise SimulatorError(
        f"POST {path}: expected HTTP 200 with {expected!r}, got HTTP {status} {_redact(text)!r}"
    )


class _Runner:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None, plan: TrafficPlan,
                 conversions: list[PlannedConversion] | None = None):
        self.conversions = conversions or []
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.params = {"token": token} if token else None
        self.plan = plan
        self.truth = GroundTruth()
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.deadline = plan.duration + plan.duration * 0.5 + 10.0
        for blackout in plan.blackouts:  # held receipts go out once their window is over
            if blackout.catch_up:
                self.deadline = max(self.deadline, blackout.end + 5.0)
        self.send_slots = asyncio.Semaphore(32)
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None

    def now(self) -> float:
        return self.loop.time() - self.t0

    async def sleep_until(self, offset: float) -> None:
        delay = offset - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def post(self, path: str, body: Json | list[Json], expected: Json | str | None) -> None:
        data = msgspec.json.encode(body)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        async with self.session.post(self.base_url + path, data=data, headers=headers,
                                     params=self.params) as resp:
            check_reply(path, resp.status, await resp.read(), expected)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.error is None:
            self.error = task.exception()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # sends ---------------------------------------------------------------------------------------

    async def post_send(self, send: PlannedSend) -> None:
        send.state = "started"
        async with self.send_slots:
            await self.post(SEND_PATHS[send.provider], send.body, None)
        send.state = "done"
        counts = self.truth.of(send.provider)
        counts.send_requests += 1
        counts.sends += len(send.messages)
        failed = sum(m.outcome == "submit_failed" for m in send.messages)
        counts.submit_failed += failed
        counts.failed += failed

    async def deferred_send(self, send: PlannedSend) -> None:
        await asyncio.sleep(send.defer_lag * max(0.2, delay_scale(self.plan.duration)))
        await self.post_send(send)

    async def send_loop(self) -> None:
        for send in self.plan.sends:
            await self.sleep_until(send.at)
            self.raise_if_failed()
            if not send.deferred:
                self.spawn(self.post_send(send))

    # receipts ------------------------------------------------------------------------------------

    @staticmethod
    def may_post(msg: PlannedMessage, send: PlannedSend) -> bool:
        return send.state == "done" or (msg.early and send.state == "waiting")

    async def push(self, provider: Provider, records: list[Json]) -> None:
        limit = MAX_RECORDS_PER_PUSH[provider]
        for i in range(0, len(records), limit):
            await self.post(RECEIPT_PATHS[provider], records[i:i + limit], EXPECTED_REPLIES[provider])
            self.truth.of(provider).receipt_requests += 1

    def blackout(self, provider: Provider, now: float) -> Blackout | None:
        return next((b for b in self.plan.blackouts if b.covers(provider, now)), None)

    def withhold(
        self, provider: Provider, blackout: Blackout, now: float,
        firsts: list[tuple[PlannedMessage, PlannedSend]], dups: list[tuple[PlannedMessage, PlannedSend]],
    ) -> tuple[list[tuple[PlannedMessage, PlannedSend]], list[tuple[PlannedMessage, PlannedSend]]]:
        """During a blackout: the receipts due by now are held (catch-up) or lost for good."""
        due = [(m, s) for m, s in firsts if m.receipt_due <= now]
        if blackout.catch_up:
            for m, _ in due:
                m.receipt_held = True
            return firsts, dups
        for m, s in due:
            m.receipt_dropped = True
            if s.state == "waiting":  # its send waited for this receipt: the send goes out anyway
                s.state = "triggered"
                self.spawn(self.deferred_send(s))
        self.truth.of(provider).receipts_dropped += len(due)
        for m, _ in dups:  # a duplicate due in the window is lost, as is one of a lost receipt
            if m.receipt_dropped or (m.receipt_posted and (m.duplicate_due or 0) <= now):
                m.duplicate_dropped = True
        return ([(m, s) for m, s in firsts if not m.receipt_dropped],
                [(m, s) for m, s in dups if not m.duplicate_dropped])

    async def receipt_loop(self, provider: Provider) -> None:
        owned = [(m, s) for s in self.plan.sends if s.provider == provider for m in s.messages if m.receipt]
        firsts = sorted(owned, key=lambda ms: ms[0].receipt_due)
        dups = [(m, s) for m, s in owned if m.duplicate_due is not None]
        counts = self.truth.of(provider)
        while (firsts or dups) and self.now() < self.deadline:
            await asyncio.sleep(PUSH_TICK[provider])
            self.raise_if_failed()
            now = self.now()
            blackout = self.blackout(provider, now)
            if blackout is not None:
                firsts, dups = self.withhold(provider, blackout, now, firsts, dups)
                continue
            batch = [(m, s) for m, s in firsts if m.receipt_due <= now and self.may_post(m, s)]
            if batch:
                early = [s for _, s in batch if s.state != "done"]
                await self.push(provider, [m.receipt for m, _ in batch if m.receipt])
                for m, _ in batch:
                    m.receipt_posted = True
                    counts.receipts_posted += 1
                    counts.delivered += m.outcome == "delivered"
                    counts.failed += m.outcome == "failed"
                    counts.late_receipts += m.late
                    counts.receipts_caught_up += m.receipt_held
                counts.receipts_before_send += len(early)
                for s in early:
                    if s.state == "waiting":
                        s.state = "triggered"
                        self.spawn(self.deferred_send(s))
                firsts = [(m, s) for m, s in firsts if not m.receipt_posted]
            if self.blackout(provider, self.now()) is not None:
                continue  # the window opened while pushing: the duplicates wait for the next tick
            again = [m for m, _ in dups if m.receipt_posted and (m.duplicate_due or 0) <= now]
            if again:
                await self.push(provider, [m.receipt for m in again if m.receipt])
                for m in again:
                    m.duplicate_posted = True
                counts.duplicate_receipts_posted += len(again)
                counts.receipts_posted += len(again)
                dups = [(m, s) for m, s in dups if not m.duplicate_posted]

    # uplinks -------------------------------------------------------------------------------------

    async def uplink_loop(self) -> None:
        for uplink in self.plan.uplinks:
            await self.sleep_until(uplink.at)
            await self.post(UPLINK_PATHS[uplink.provider], uplink.body, EXPECTED_REPLIES[uplink.provider])
            self.truth.of(uplink.provider).replies_posted += 1

    # conversions ---------------------------------------------------------------------------------

    async def conversion_loop(self) -> None:
        """Each second, the conversions due; a repeated one goes out again with the next batch."""
        pending, repeats = list(self.conversions), list[PlannedConversion]()
        while pending or repeats:
            await asyncio.sleep(1.0)
            self.raise_if_failed()
            due = [c for c in pending if c.due <= self.now()]
            batch = [*repeats, *due]
            for i in range(0, len(batch), MAX_CONVERSIONS_PER_POST):
                await self.post(CONVERSIONS_PATH, [c.record for c in batch[i:i + MAX_CONVERSIONS_PER_POST]], None)
            for c in batch:
                counts = self.truth.of(c.provider)
                counts.conversions_posted += 1
                if not c.posted:
                    c.posted = True
                    counts.converted += 1
                    counts.conversions_before_receipt += c.before_receipt
            repeats = [c for c in due if c.repeat]
            pending = [c for c in pending if not c.posted]

    # the whole run -------------------------------------------------------------------------------

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_EXCEPTION)
            self.raise_if_failed()

    async def run(self) -> GroundTruth:
        loops = [self.send_loop(), self.uplink_loop(), self.conversion_loop(), *(self.receipt_loop(p) for p in PROVIDERS)]
        loop_tasks = [asyncio.ensure_future(coro) for coro in loops]
        try:
            done, _ = await asyncio.wait(loop_tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            await self.drain()
            # Anything still unposted (only if the deadline cut the run) goes out now.
            for send in self.plan.sends:
                if send.state == "waiting":
                    await self.post_send(send)
            await self.drain()
        finally:
            leftovers = [task for task in [*loop_tasks, *self.tasks] if not task.done()]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        for send in self.plan.sends:
            if send.state != "done":
                continue
            counts = self.truth.of(send.provider)
            for m in send.messages:
                counts.segments += m.segments if send.provider != "aliyun" or m.receipt_posted else 1
        for provider in PROVIDERS:
            c = self.truth.of(provider)
            c.pending = c.sends - c.delivered - c.failed
        return self.truth


async def drive(
    base_url: str,
    *,
    duration: float,
    rate: float = 50.0,
    token: str | None = None,
    seed: int = 1,
    session: aiohttp.ClientSession | None = None,
    outage: Outage | Sequence[Outage] | None = None,
    blackout: Blackout | Sequence[Blackout] | None = None,
    conversions: bool = True,
    conversion_drop: ConversionDrop | None = None,
) -> GroundTruth:
    """Post ~``rate`` messages/s of provider traffic for ``duration`` s, then the late receipts.

    Waits at most ``duration * 0.5 + 10`` s after the sends for the last scheduled receipts (or
    until 5 s after the end of a catch-up blackout, if later). ``outage`` / ``blackout``: the
    scenario switches of :func:`plan_traffic` (default off); ``conversions``: post the conversions of
    simulate/conversions.py to ``POST /v1/conversions`` (default on), fewer in ``conversion_drop``'s
    window (a scenario); the returned :class:`GroundTruth`
    counts exactly what was posted. Raises :class:`SimulatorError` on any reply that is not the
    documented success reply.
    """
    plan = plan_traffic(duration=duration, rate=rate, seed=seed, start=time.time(), outage=outage,
                        blackout=blackout)
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        planned = plan_conversions(plan, seed, conversion_drop) if conversions else []
        truth = await _Runner(client, base_url, token, plan, planned).run()
    finally:
        if own:
            await client.close()
    logger.info("simulated traffic posted: %s", msgspec.json.encode(truth.to_dict()).decode())
    return truth
