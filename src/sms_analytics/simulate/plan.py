"""The traffic model: a seed into a deterministic schedule of send records, receipts and uplinks
(``plan_traffic``), built with simulate/payloads; it posts nothing (simulate/driver.py does).

* requests arrive as a Poisson process of ~rate messages/s, over the providers by PROVIDER_WEIGHTS,
  with each provider's outcome mix (PROFILES) and failure codes per carrier from the seed tables;
* receipt latency is log-normal per carrier (移动 fastest, 电信 slowest, see ``CARRIER_LATENCY``)
  with a slow tail, capped at 30 s and compressed for runs shorter than a minute;
* about 1% of receipts are *late*: their report time is 2..6 h after the send in provider time,
  while the POST itself is time-scaled into the run (6 h of provider time = 30 s of a full run);
* duplicates, receipts posted before their send record, receipts that never come;
* some messages are long: Alibaba reports them with ``sms_size`` N > 1, Tencent bills
  ``Fee`` N, KX content is longer than 70 characters (67 characters a part);
* an :class:`~sms_analytics.simulate.scenarios.Outage` changes the outcomes in its window only; a
  blackout is kept on the plan for the driver.
"""

from __future__ import annotations

import itertools
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sms_analytics.model.providers import PROVIDERS, Provider, segments
from sms_analytics.model.region import region_of_national
from sms_analytics.simulate.payloads.aliyun import (
    ALIYUN_DELIVERED,
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SIGNS,
    ALIYUN_SUBMIT_ERRORS,
    ALIYUN_TEMPLATES,
    aliyun_report,
    aliyun_send,
    aliyun_sms_up,
)
from sms_analytics.simulate.payloads.common import (
    Carrier,
    Json,
    Outcome,
    SentAt,
    iso_time,
    random_phone,
)
from sms_analytics.simulate.payloads.kx import (
    KX_CONTENTS,
    KX_DELIVERED,
    KX_RECEIPT_FAILURES,
    KX_SUBMIT_ERRORS,
    KX_SUBMIT_OK,
    kx_mo,
    kx_report,
    kx_send,
    kx_time,
)
from sms_analytics.simulate.payloads.tencent import (
    TENCENT_DELIVERED,
    TENCENT_RECEIPT_FAILURES,
    TENCENT_SDK_APP_IDS,
    TENCENT_SEND_OK,
    TENCENT_SIGNS,
    TENCENT_SUBMIT_ERRORS,
    TENCENT_TEMPLATES,
    tencent_reply,
    tencent_send,
    tencent_status,
)
from sms_analytics.simulate.scenarios import Blackout, Outage, as_tuple

LONG_WEIGHT = 0.15  # a long template / content is picked this much as often as a short one
UPLINK_TEXTS: tuple[str, ...] = ("TD", "退订", "收到，谢谢", "好的", "R", "1")


@dataclass(frozen=True, slots=True)
class OutcomeProfile:
    delivered: float
    pending: float
    submit_failed: float


PROFILES: dict[Provider, OutcomeProfile] = {
    "aliyun": OutcomeProfile(delivered=0.91, pending=0.02, submit_failed=0.01),
    "tencent": OutcomeProfile(delivered=0.925, pending=0.015, submit_failed=0.01),
    "kx": OutcomeProfile(delivered=0.885, pending=0.03, submit_failed=0.012),
}
PROVIDER_WEIGHTS: dict[Provider, float] = {"aliyun": 0.45, "tencent": 0.35, "kx": 0.20}
DUPLICATE_SHARE = 0.05
EARLY_RECEIPT_SHARE = 0.10
MAX_RECORDS_PER_PUSH: dict[Provider, int] = {"aliyun": 100, "tencent": 100, "kx": 100}
PUSH_TICK: dict[Provider, float] = {"aliyun": 0.4, "tencent": 0.25, "kx": 0.8}
RECEIPT_MEDIAN_S = 3.0  # the carrier-independent profile of ``receipt_delay(rng)``
RECEIPT_MAX_S = 30.0
RECEIPT_SIGMA = 0.85  # p99 ~ 22 s


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """Receipt delay of one carrier: log-normal body plus a slower log-normal tail (seconds)."""

    median: float
    sigma: float
    tail_share: float
    tail_median: float
    tail_sigma: float = 0.4


CARRIER_LATENCY: dict[Carrier, LatencyProfile] = {
    "移动": LatencyProfile(median=2.2, sigma=0.6, tail_share=0.03, tail_median=14.0),
    "联通": LatencyProfile(median=3.4, sigma=0.65, tail_share=0.04, tail_median=16.0),
    "电信": LatencyProfile(median=5.0, sigma=0.7, tail_share=0.05, tail_median=18.0),
}
# Late receipts: report time 2..6 h after the send (provider time), POSTed within the run; the
# POST delay is the late time scaled so that LATE_REPORT_MAX_S maps onto RECEIPT_MAX_S.
LATE_RECEIPT_SHARE = 0.01
LATE_REPORT_MIN_S = 2 * 3600.0
LATE_REPORT_MAX_S = 6 * 3600.0


# --- the plan ------------------------------------------------------------------------------------

SendState = Literal["waiting", "triggered", "started", "done"]


@dataclass(slots=True, eq=False)
class PlannedSend:
    """One send-record POST; ``at`` is seconds after the start of the run."""

    provider: Provider
    at: float
    body: Json
    messages: list[PlannedMessage] = field(default_factory=list)
    defer_lag: float = 0.0
    state: SendState = "waiting"

    @property
    def deferred(self) -> bool:
        """Posted only after one of its receipts (a receipt-before-send case)."""
        return any(m.early for m in self.messages)


@dataclass(slots=True, eq=False)
class PlannedMessage:
    """One message (one phone). ``receipt`` is None for pending and submit-failed messages.

    ``segments``: Alibaba the receipt's ``sms_size``, Tencent the ``Fee`` (0 if rejected at
    submit), KX the parts of its content. ``late``: the receipt's report time is hours after the
    send (its POST is still within the run). ``in_outage``: sent to a carrier during an outage.
    """

    provider: Provider
    phone: str
    carrier: Carrier
    message_id: str
    outcome: Outcome
    code: str
    receipt: Json | None = None
    receipt_due: float = math.inf
    duplicate_due: float | None = None
    early: bool = False
    receipt_posted: bool = False
    duplicate_posted: bool = False
    segments: int = 1
    late: bool = False
    in_outage: bool = False
    receipt_dropped: bool = False  # a blackout withheld the receipt for good
    receipt_held: bool = False  # a catch-up blackout held the receipt back
    duplicate_dropped: bool = False  # a blackout lost the duplicate (or the receipt it repeats)


@dataclass(slots=True)
class PlannedUplink:
    provider: Provider
    at: float
    body: Json | list[Json]


@dataclass(slots=True)
class TrafficPlan:
    start: float
    duration: float
    sends: list[PlannedSend]
    uplinks: list[PlannedUplink]
    outages: tuple[Outage, ...] = ()
    blackouts: tuple[Blackout, ...] = ()

    def messages(self, provider: Provider | None = None) -> Iterator[PlannedMessage]:
        for send in self.sends:
            if provider is None or send.provider == provider:
                yield from send.messages


@dataclass(slots=True)
class _Ctx:
    rng: random.Random
    start: float
    scale: float
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    outages: tuple[Outage, ...] = ()
    # Outage draws come from their own stream, so an outage changes nothing outside its window.
    outage_rng: random.Random = field(default_factory=random.Random)

    def outage_outcome(self, outcome: Outcome, carrier: Carrier, at: float, phone: str = "",
                       template: str = "") -> tuple[Outcome, Outage | None]:
        """(outcome, the outage it is in): in an outage window a receipt says delivered at its rate."""
        for outage in self.outages:
            province = region_of_national(phone).province if outage.province is not None else None
            if outage.covers(carrier, at, province, template):
                if outcome not in ("delivered", "failed"):
                    return outcome, outage
                return ("delivered" if self.outage_rng.random() < outage.delivery_rate else "failed"), outage
        return outcome, None

    def wall(self, offset: float) -> float:
        return self.start + offset

    def sent_at(self, offset: float) -> SentAt:
        ts = self.wall(offset)
        return iso_time(ts) if self.rng.random() < 0.25 else round(ts, 3)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def biz_id(self) -> str:
        return f"{self.rng.randrange(100000, 1000000)}{(int(self.start) * 1000 + next(self.seq)) % 10**12:012d}^0"

    def serial_no(self) -> str:
        stamp = int(self.start) % 10**10
        return f"5000:{self.rng.randrange(10**9, 10**10)}{stamp:010d}{next(self.seq) % 10**8:08d}"

    def taskid(self, offset: float) -> str:
        return f"{kx_time(self.wall(offset))[4:]}{self.rng.randrange(10**5, 10**6)}{next(self.seq) % 10**6:06d}"


def delay_scale(duration: float) -> float:
    """Receipt delays (median 3 s, tail 30 s) are compressed for runs shorter than a minute."""
    return max(0.01, min(1.0, duration / 60.0))


def receipt_delay(rng: random.Random, carrier: Carrier | None = None) -> float:
    """Unscaled receipt delay in seconds, redrawn above 30 s (floor 0.5 s).

    With ``carrier``: that carrier's :data:`CARRIER_LATENCY` (log-normal body, slow log-normal
    tail); without: one log-normal with median 3 s.
    """
    for _ in range(8):
        if carrier is None:
            delay = rng.lognormvariate(math.log(RECEIPT_MEDIAN_S), RECEIPT_SIGMA)
        else:
            profile = CARRIER_LATENCY[carrier]
            if rng.random() < profile.tail_share:
                delay = rng.lognormvariate(math.log(profile.tail_median), profile.tail_sigma)
            else:
                delay = rng.lognormvariate(math.log(profile.median), profile.sigma)
        if delay <= RECEIPT_MAX_S:
            return max(delay, 0.5)
    return RECEIPT_MAX_S


def pick(rng: random.Random, rows: Sequence[tuple[str, str, int]]) -> tuple[str, str]:
    """A ``(code, message)`` of ``rows`` ``(code, message, weight)``, drawn by weight."""
    code, msg, _ = rng.choices(rows, weights=[w for *_, w in rows])[0]
    return code, msg


def failure_of(rng: random.Random, rows: Sequence[tuple[str, str, int]], outage: Outage | None) -> tuple[str, str]:
    """A failed receipt's ``(code, message)``: drawn by weight, or in a narrowed outage (one fault)
    the table's first. The draw happens either way, so an outage changes nothing outside it."""
    drawn = pick(rng, rows)
    return (rows[0][0], rows[0][1]) if outage is not None and outage.targeted else drawn


def _receipt_outcome(rng: random.Random, profile: OutcomeProfile) -> Outcome:
    """delivered / failed / pending, renormalised without the submit-failure share."""
    rest = 1.0 - profile.submit_failed
    r = rng.random() * rest
    if r < profile.delivered:
        return "delivered"
    if r < profile.delivered + profile.pending:
        return "pending"
    return "failed"


def _draw_outcome(rng: random.Random, profile: OutcomeProfile) -> Outcome:
    return "submit_failed" if rng.random() < profile.submit_failed else _receipt_outcome(rng, profile)


ReceiptMaker = Callable[[float, str, str], Json]  # (report wall time, code, msg) -> record


def _attach_receipt(ctx: _Ctx, msg: PlannedMessage, at: float, make: ReceiptMaker,
                    delivered: tuple[str, str], code_msg: tuple[str, str] | None) -> None:
    """Give a delivered/failed message its receipt record, delay, late, duplicate and early flags.

    A late receipt (LATE_RECEIPT_SHARE) reports 2..6 h after the send; it is posted after the
    same time scaled down (6 h -> RECEIPT_MAX_S, compressed for short runs) and never before its
    send record."""
    if msg.outcome not in ("delivered", "failed"):
        return
    rng = ctx.rng
    code, text = delivered if msg.outcome == "delivered" else (code_msg or delivered)
    delay = receipt_delay(rng, msg.carrier) * ctx.scale
    report = ctx.wall(at + delay)
    if rng.random() < LATE_RECEIPT_SHARE:
        # Hours late in provider time; the POST is time-scaled into the run (6 h -> 30 s).
        late_s = rng.uniform(LATE_REPORT_MIN_S, LATE_REPORT_MAX_S)
        delay = late_s / LATE_REPORT_MAX_S * RECEIPT_MAX_S * ctx.scale
        report = ctx.wall(at) + late_s
        msg.late = True
    msg.code = code
    msg.receipt_due = at + delay
    msg.receipt = make(report, code, text)
    if rng.random() < DUPLICATE_SHARE:
        msg.duplicate_due = msg.receipt_due + rng.uniform(1.0, 10.0) * ctx.scale
    msg.early = rng.random() < EARLY_RECEIPT_SHARE and not msg.late


def _plan_aliyun(ctx: _Ctx, at: float) -> PlannedSend:
    rng = ctx.rng
    kind = rng.choices(("single", "multi", "batch"), weights=(85, 10, 5))[0]
    n = 1 if kind == "single" else rng.randint(2, 5) if kind == "multi" else rng.randint(2, 10)
    numbers = [random_phone(rng) for _ in range(n)]
    sign = rng.choice(ALIYUN_SIGNS)
    template, sms_size = pick_long(rng, ALIYUN_TEMPLATES, lambda row: row[1] > 1)
    out_id = f"ord{rng.randrange(10**8, 10**9)}" if kind != "batch" and rng.random() < 0.6 else None
    error = rng.choice(ALIYUN_SUBMIT_ERRORS) if rng.random() < PROFILES["aliyun"].submit_failed else None
    biz_id = None if error else ctx.biz_id()
    body = aliyun_send([p for p, _ in numbers], sign_name=sign, template_code=template,
                       request_id=ctx.uuid().upper(), sent_at=ctx.sent_at(at), biz_id=biz_id,
                       out_id=out_id, batch=kind == "batch", error=error)
    send = PlannedSend("aliyun", at, body, defer_lag=rng.uniform(0.05, 0.5))
    send_wall = ctx.wall(at)
    for phone, carrier in numbers:
        outcome: Outcome = "submit_failed" if error else _receipt_outcome(rng, PROFILES["aliyun"])
        outcome, outage = ctx.outage_outcome(outcome, carrier, at, phone, template)
        msg = PlannedMessage("aliyun", phone, carrier, biz_id or "", outcome, error[0] if error else "",
                             segments=sms_size, in_outage=outage is not None)

        def make(report: float, code: str, text: str, phone: str = phone) -> Json:
            return aliyun_report(phone, biz_id or "", send_time=send_wall, report_time=report,
                                 err_code=code, err_msg=text, sms_size=sms_size, out_id=out_id or "")

        _attach_receipt(ctx, msg, at, make, ALIYUN_DELIVERED, failure_of(rng, ALIYUN_RECEIPT_FAILURES[carrier], outage))
        send.messages.append(msg)
    return send


def _plan_tencent(ctx: _Ctx, at: float) -> PlannedSend:
    rng = ctx.rng
    n = 1 if rng.random() < 0.85 else rng.randint(2, 5)
    numbers = [random_phone(rng) for _ in range(n)]
    template, fee = pick_long(rng, TENCENT_TEMPLATES, lambda row: row[1] > 1)
    sign = rng.choice(TENCENT_SIGNS)
    outcomes = [_draw_outcome(rng, PROFILES["tencent"]) for _ in numbers]
    results = [rng.choice(TENCENT_SUBMIT_ERRORS) if o == "submit_failed" else TENCENT_SEND_OK for o in outcomes]
    serials = ["" if o == "submit_failed" else ctx.serial_no() for o in outcomes]
    session = f"outsid_{int(ctx.wall(at))}_{rng.randrange(1000, 10000)}"
    body = tencent_send([p for p, _ in numbers], sdk_app_id=rng.choice(TENCENT_SDK_APP_IDS),
                        template_id=template, sign_name=sign, session_context=session,
                        serial_nos=serials, request_id=ctx.uuid(), sent_at=ctx.sent_at(at),
                        results=results, fee=fee)
    send = PlannedSend("tencent", at, body, defer_lag=rng.uniform(0.05, 0.5))
    for (phone, carrier), drawn, serial, (code, _) in zip(numbers, outcomes, serials, results, strict=True):
        outcome, outage = ctx.outage_outcome(drawn, carrier, at, phone, template)
        msg = PlannedMessage("tencent", phone, carrier, serial, outcome, code if outcome == "submit_failed" else "",
                             segments=fee if outcome != "submit_failed" else 0, in_outage=outage is not None)

        def make(report: float, c: str, text: str, phone: str = phone, serial: str = serial) -> Json:
            return tencent_status(phone, serial, receive_time=report, errmsg=c, description=text)

        _attach_receipt(ctx, msg, at, make, TENCENT_DELIVERED, failure_of(rng, TENCENT_RECEIPT_FAILURES[carrier], outage))
        send.messages.append(msg)
    return send


def pick_long(rng: random.Random, rows: Sequence[Any], long: Callable[[Any], bool]) -> Any:
    """One of ``rows``, the long ones (multi-segment) weighted by LONG_WEIGHT."""
    return rng.choices(rows, weights=[LONG_WEIGHT if long(row) else 1.0 for row in rows])[0]


def _kx_content(rng: random.Random) -> str:
    text: str = pick_long(rng, KX_CONTENTS, lambda c: segments(c.format(n=0)) > 1)
    return text.format(n=rng.randrange(1000, 1000000))


def _plan_kx(ctx: _Ctx, at: float) -> PlannedSend:
    rng = ctx.rng
    kind = rng.choices(("single", "multi", "p2p"), weights=(80, 10, 10))[0]
    n = 1 if kind == "single" else rng.randint(2, 5) if kind == "multi" else rng.randint(2, 8)
    numbers = [random_phone(rng) for _ in range(n)]
    outcomes = [_draw_outcome(rng, PROFILES["kx"]) for _ in numbers]
    p2p = kind == "p2p" or "submit_failed" in outcomes  # per-number failures only exist in P2PBatch
    contents: str | list[str] = [_kx_content(rng) for _ in numbers] if kind == "p2p" else _kx_content(rng)
    results = [rng.choice(KX_SUBMIT_ERRORS) if o == "submit_failed" else KX_SUBMIT_OK for o in outcomes]
    all_failed = all(o == "submit_failed" for o in outcomes)
    taskid = ctx.taskid(at)
    extnum = f"{rng.randrange(1000, 10000)}" if rng.random() < 0.2 else None
    body = kx_send([p for p, _ in numbers], contents=contents, taskid=taskid,
                   ts_ms=int(ctx.wall(at) * 1000), sent_at=ctx.sent_at(at), extnum=extnum,
                   p2p=p2p, results=results if p2p else None)
    send = PlannedSend("kx", at, body, defer_lag=rng.uniform(0.05, 0.5))
    texts = [contents] * len(numbers) if isinstance(contents, str) else contents
    for (phone, carrier), drawn, (code, _), content in zip(numbers, outcomes, results, texts, strict=True):
        outcome, outage = ctx.outage_outcome(drawn, carrier, at, phone)
        msg = PlannedMessage("kx", phone, carrier, "" if all_failed else taskid, outcome,
                             code if outcome == "submit_failed" else "", segments=segments(content),
                             in_outage=outage is not None)

        def make(report: float, c: str, text: str, phone: str = phone) -> Json:
            return kx_report(phone, taskid, report_time=report, code=c, msg=text)

        _attach_receipt(ctx, msg, at, make, KX_DELIVERED, failure_of(rng, KX_RECEIPT_FAILURES, outage))
        send.messages.append(msg)
    return send


_PLANNERS: dict[Provider, Callable[[_Ctx, float], PlannedSend]] = {
    "aliyun": _plan_aliyun,
    "tencent": _plan_tencent,
    "kx": _plan_kx,
}


def _plan_uplink(ctx: _Ctx, provider: Provider, at: float, msg: PlannedMessage) -> PlannedUplink:
    rng = ctx.rng
    text = rng.choice(UPLINK_TEXTS)
    wall = ctx.wall(at)
    if provider == "aliyun":
        record = aliyun_sms_up(msg.phone, send_time=wall, content=text, sign_name=rng.choice(ALIYUN_SIGNS),
                               dest_code=f"{rng.randrange(1000, 10000)}",
                               sequence_id=rng.randrange(10**9, 10**10))
        return PlannedUplink(provider, at, [record])
    if provider == "tencent":
        return PlannedUplink(provider, at, tencent_reply(msg.phone, time_s=int(wall), text=text,
                                                         sign=rng.choice(TENCENT_SIGNS)))
    record = kx_mo(msg.phone, mo_id=f"{rng.getrandbits(128):032x}", time_s=wall, content=text,
                   srcid=f"106901888{rng.randrange(1000, 10000)}")
    return PlannedUplink(provider, at, [record])


def _plan_uplinks(ctx: _Ctx, sends: Sequence[PlannedSend], duration: float) -> list[PlannedUplink]:
    uplinks: list[PlannedUplink] = []
    per_provider = max(1, min(5, round(duration / 20)))
    for provider in PROVIDERS:
        candidates = [(s.at, m) for s in sends if s.provider == provider for m in s.messages]
        for _ in range(per_provider if candidates else 0):
            sent, msg = ctx.rng.choice(candidates)
            at = ctx.rng.uniform(sent, max(sent, duration))
            uplinks.append(_plan_uplink(ctx, provider, at, msg))
    return sorted(uplinks, key=lambda u: u.at)


def plan_traffic(
    *,
    duration: float,
    rate: float = 50.0,
    seed: int = 1,
    start: float | None = None,
    outage: Outage | Sequence[Outage] | None = None,
    blackout: Blackout | Sequence[Blackout] | None = None,
) -> TrafficPlan:
    """A deterministic schedule for ``seed``: the same seed, ``start`` and scenarios give identical
    bodies.

    Requests arrive as a Poisson process of ~``rate`` messages/s over ``duration`` seconds.
    ``start`` (epoch seconds, default now) only shifts the timestamps and the id prefixes.
    ``outage`` (one :class:`Outage` or several) changes the outcomes of the messages in its window
    only: everything else is the same as without it. ``blackout`` (one :class:`Blackout` or
    several) is kept on the plan for the driver; it does not change the plan itself.
    """
    if duration <= 0 or rate <= 0:
        raise ValueError("duration and rate must be positive")
    outages: tuple[Outage, ...] = as_tuple(outage, Outage)
    blackouts: tuple[Blackout, ...] = as_tuple(blackout, Blackout)
    ctx = _Ctx(random.Random(seed), time.time() if start is None else start, delay_scale(duration),
               outages=outages, outage_rng=random.Random(f"outage:{seed}"))
    providers = list(PROVIDER_WEIGHTS)
    sends: list[PlannedSend] = []
    at = 0.0
    while True:
        provider = ctx.rng.choices(providers, weights=[PROVIDER_WEIGHTS[p] for p in providers])[0]
        at += ctx.rng.expovariate(rate)
        if at >= duration:
            break
        send = _PLANNERS[provider](ctx, at)
        at += sum(ctx.rng.expovariate(rate) for _ in send.messages[1:])  # keep ~rate messages/s
        sends.append(send)
    return TrafficPlan(ctx.start, duration, sends, _plan_uplinks(ctx, sends, duration), outages, blackouts)
