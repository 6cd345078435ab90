"""A deterministic, realistic join workload: SendEvent / ReceiptEvent structs of the model, as the
receivers would publish them (pushes of up to 100 events of one provider and kind), with its
ground truth.

Per message: a provider (the simulator's mix: Alibaba 45%, Tencent 35%, KX 20%), a mainland
number on a real segment (hashed with PhoneHasher, masked, carrier from the segment), the
provider's own message-id format, templates, signs, KX contents and segments, receipt codes per
carrier from the provider documents (via `sms_analytics.simulate.payloads` and `simulate.plan`), and receipt report
times a carrier-dependent log-normal delay after the send.

The exact composition (per block of messages, so it holds at every size):
- one send per message; 1% of the sends fail at submit (a final `failed`, no receipt);
- 95% of the messages get one receipt, delivered or failed at the provider's rate;
- 4% get no receipt and stay `pending`;
- 5% of the receipt events are duplicates (a provider retry of an earlier receipt), so the
  number of events is exactly 2 x messages;
- 10% of the receipts are published before their message's send.

Publishing order, block by block: the block's early receipts, the block's sends, then the
previous block's remaining receipts and the duplicates of the block before that.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from typing import Any

from sms_analytics.model.providers import Provider, segments
from sms_analytics.simulate.payloads.aliyun import (
    ALIYUN_DELIVERED,
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SIGNS,
    ALIYUN_SUBMIT_ERRORS,
    ALIYUN_TEMPLATES,
)
from sms_analytics.simulate.payloads.common import CARRIER_SEGMENTS, CARRIER_WEIGHTS, RECEIPT_PATHS, SEND_PATHS
from sms_analytics.simulate.payloads.kx import KX_CONTENTS, KX_DELIVERED, KX_RECEIPT_FAILURES, KX_SUBMIT_ERRORS, kx_time
from sms_analytics.simulate.payloads.tencent import (
    TENCENT_DELIVERED,
    TENCENT_RECEIPT_FAILURES,
    TENCENT_SIGNS,
    TENCENT_SUBMIT_ERRORS,
    TENCENT_TEMPLATES,
)
from sms_analytics.simulate.plan import PROFILES, PROVIDER_WEIGHTS, pick, pick_long, receipt_delay

Push = tuple[str, list[Any]]  # (endpoint, events)

BLOCK = 2_000
NO_RECEIPT_SHARE = 0.05
SUBMIT_FAILED_OF_NO_RECEIPT = 0.2  # 1% of all messages
EARLY_SHARE = 0.10


@dataclass
class Truth:
    messages: int = 0
    sends: int = 0
    receipt_events: int = 0
    distinct_receipts: int = 0
    duplicate_receipts: int = 0
    receipts_before_send: int = 0
    delivered: int = 0
    failed: int = 0
    submit_failed: int = 0
    pending: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    sampled_send_bytes: int = 0
    sampled_sends: int = 0
    sampled_receipt_bytes: int = 0
    sampled_receipts: int = 0

    @property
    def events(self) -> int:
        return self.sends + self.receipt_events

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("sampled_send_bytes", "sampled_sends", "sampled_receipt_bytes", "sampled_receipts"):
            out.pop(k)
        out["events"] = self.events
        out["avg_send_bytes"] = round(self.sampled_send_bytes / self.sampled_sends) if self.sampled_sends else None
        out["avg_receipt_bytes"] = (round(self.sampled_receipt_bytes / self.sampled_receipts)
                                    if self.sampled_receipts else None)
        return out


class Workload:
    def __init__(self, messages: int, *, start_ms: int, span_s: float = 300.0, seed: int = 20_240_611,
                 hash_key: str, push_size: int = 100, sends_only: bool = False) -> None:
        from sms_analytics.model.phone import PhoneHasher

        self.n = messages
        self.start_ms = start_ms
        self.step_ms = span_s * 1000 / max(1, messages)
        self.rng = random.Random(seed)
        self.hasher = PhoneHasher(hash_key.encode())
        self.push_size = push_size
        self.sends_only = sends_only
        self.truth = Truth()
        self._sample = 0
        self._prepare_tables()

    def _prepare_tables(self) -> None:
        self.providers = list(PROVIDER_WEIGHTS)
        self.provider_weights = [PROVIDER_WEIGHTS[p] for p in self.providers]
        self.delivered_share = {p: prof.delivered / (1.0 - prof.pending - prof.submit_failed)
                                for p, prof in PROFILES.items()}
        self.carriers = list(CARRIER_WEIGHTS)
        self.carrier_weights = [CARRIER_WEIGHTS[c] for c in self.carriers]

    # --- one message -----------------------------------------------------------------------------
    def _message(self, i: int, submit_failed: bool, with_receipt: bool) -> tuple[Any, Any]:
        from sms_analytics.model.events import ReceiptEvent, SendEvent
        from sms_analytics.model.phone import Phone

        rng = self.rng
        provider = rng.choices(self.providers, self.provider_weights)[0]
        cn_carrier = rng.choices(self.carriers, self.carrier_weights)[0]
        national = f"{rng.choice(CARRIER_SEGMENTS[cn_carrier])}{rng.randrange(10**8):08d}"
        phone = Phone(e164=f"+86{national}", country_code="86", national=national)
        sent_ms = self.start_ms + int(i * self.step_ms) + rng.randrange(1000)
        sent_s = sent_ms // 1000
        ident: dict[str, Any] = dict(provider=provider, phone=phone.e164, phone_hash=self.hasher(phone.e164),
                                     phone_masked=phone.masked, carrier=phone.carrier, country_code="86")
        delivered = rng.random() < self.delivered_share[provider]
        report_ms = (sent_ms + int(receipt_delay(rng, cn_carrier) * 1000)) // 1000 * 1000
        received_ms = report_ms + rng.randrange(50, 2000)
        send_fields: dict[str, Any] = {}
        receipt_fields: dict[str, Any] = {}
        if provider == "aliyun":
            template, sms_size = pick_long(rng, ALIYUN_TEMPLATES, lambda row: row[1] > 1)
            out_id = f"ord{rng.randrange(10**8, 10**9)}" if rng.random() < 0.6 else ""
            message_id = f"{rng.randrange(100000, 1000000)}{(sent_s * 1000 + i) % 10**12:012d}^0"
            send_fields = dict(template=template, sign=rng.choice(ALIYUN_SIGNS), out_id=out_id)
            if submit_failed:
                code, text = rng.choice(ALIYUN_SUBMIT_ERRORS)
                message_id = f"submit-failed:{uuid.UUID(int=rng.getrandbits(128), version=4)}".upper()
            code_msg = ALIYUN_DELIVERED if delivered else pick(rng, ALIYUN_RECEIPT_FAILURES[cn_carrier])
            receipt_fields = dict(sent_at_ms=sent_s * 1000, segments=sms_size, out_id=out_id)
        elif provider == "tencent":
            template, fee = pick_long(rng, TENCENT_TEMPLATES, lambda row: row[1] > 1)
            message_id = f"5000:{rng.randrange(10**9, 10**10)}{sent_s % 10**10:010d}{i % 10**8:08d}"
            send_fields = dict(template=template, sign=rng.choice(TENCENT_SIGNS), segments=fee)
            if submit_failed:
                code, text = rng.choice(TENCENT_SUBMIT_ERRORS)
                message_id = f"submit-failed:{uuid.UUID(int=rng.getrandbits(128), version=4)}:{i}"
                send_fields["segments"] = 0
            code_msg = TENCENT_DELIVERED if delivered else pick(rng, TENCENT_RECEIPT_FAILURES[cn_carrier])
        else:
            content = pick_long(rng, KX_CONTENTS, lambda c: segments(c.format(n=0)) > 1)
            content = content.format(n=rng.randrange(1000, 1000000))
            message_id = f"{kx_time(sent_s)[4:]}{rng.randrange(10**5, 10**6)}{i:07d}"
            send_fields = dict(sign=_kx_sign(content), segments=segments(content))
            if submit_failed:
                code, text = rng.choice(KX_SUBMIT_ERRORS)
                message_id = f"submit-failed:{sent_ms}{i:07d}"
            code_msg = KX_DELIVERED if delivered else pick(rng, KX_RECEIPT_FAILURES)
        ident["message_id"] = message_id
        send = SendEvent(**ident, sent_at_ms=sent_ms, received_at_ms=sent_ms + rng.randrange(20, 400), **send_fields)
        if submit_failed:
            send.submit_ok, send.submit_code, send.submit_message = False, code, text
        truth = self.truth
        truth.messages += 1
        truth.by_provider[provider] = truth.by_provider.get(provider, 0) + 1
        if submit_failed:
            truth.failed += 1
            truth.submit_failed += 1
            return send, None
        if not with_receipt:
            truth.pending += 1
            return send, None
        truth.delivered += delivered
        truth.failed += not delivered
        receipt = ReceiptEvent(**ident, delivered=delivered, error_code=code_msg[0], error_message=code_msg[1],
                               reported_at_ms=report_ms, received_at_ms=received_ms, **receipt_fields)
        return send, receipt

    # --- pushes ----------------------------------------------------------------------------------
    def _pushes(self, events: list[Any], kind: str) -> list[Push]:
        """Events of one phase as pushes of one provider and kind, providers interleaved."""
        from sms_analytics.model.events import encode

        by_provider: dict[Provider, list[Any]] = {}
        for e in events:
            by_provider.setdefault(e.provider, []).append(e)
            self._sample += 1
            if self._sample % 50 == 0:  # payload size, sampled
                size = len(encode(e))
                if kind == "sends":
                    self.truth.sampled_send_bytes += size
                    self.truth.sampled_sends += 1
                else:
                    self.truth.sampled_receipt_bytes += size
                    self.truth.sampled_receipts += 1
        chunked = []
        for provider, evs in by_provider.items():
            endpoint = SEND_PATHS[provider] if kind == "sends" else RECEIPT_PATHS[provider]
            chunked.append([(endpoint, evs[i:i + self.push_size]) for i in range(0, len(evs), self.push_size)])
        return [p for group in zip_longest(*chunked) for p in group if p is not None]

    def phases(self) -> Iterator[list[Push]]:
        """Lists of pushes; a list may be published concurrently, lists strictly in order."""
        import msgspec

        rng, truth = self.rng, self.truth
        late: list[Any] = []  # receipts of the previous block, published after its sends
        dup_waiting: list[list[Any]] = []  # duplicates, published two blocks later
        for b0 in range(0, self.n, BLOCK):
            size = min(BLOCK, self.n - b0)
            if self.sends_only:
                sends = [self._message(b0 + k, False, False)[0] for k in range(size)]
                truth.sends += len(sends)
                yield self._pushes(sends, "sends")
                continue
            no_receipt = set(rng.sample(range(size), round(size * NO_RECEIPT_SHARE)))
            submit_failed = set(rng.sample(sorted(no_receipt), round(len(no_receipt) * SUBMIT_FAILED_OF_NO_RECEIPT)))
            sends, receipts = [], []
            for k in range(size):
                send, receipt = self._message(b0 + k, k in submit_failed, k not in no_receipt)
                sends.append(send)
                if receipt is not None:
                    receipts.append(receipt)
            early_idx = set(rng.sample(range(len(receipts)), round(len(receipts) * EARLY_SHARE)))
            early = [r for k, r in enumerate(receipts) if k in early_idx]
            dups = [msgspec.structs.replace(r, received_at_ms=r.received_at_ms + rng.randrange(1000, 60000))
                    for r in rng.sample(receipts, min(len(no_receipt), len(receipts)))]
            truth.sends += len(sends)
            truth.distinct_receipts += len(receipts)
            truth.duplicate_receipts += len(dups)
            truth.receipt_events += len(receipts) + len(dups)
            truth.receipts_before_send += len(early)
            dup_waiting.append(dups)
            if early:
                yield self._pushes(early, "receipts")
            yield self._pushes(sends, "sends")
            due = late + (dup_waiting.pop(0) if len(dup_waiting) > 2 else [])
            if due:
                yield self._pushes(due, "receipts")
            late = [r for k, r in enumerate(receipts) if k not in early_idx]
        rest = late + [r for dups in dup_waiting for r in dups]
        if rest:
            yield self._pushes(rest, "receipts")


def _kx_sign(content: str) -> str:
    try:
        from sms_analytics.sources.kx.parsers import sign_of
    except ImportError:  # pragma: no cover
        return ""
    return sign_of(content)


async def publish(publisher: Any, workload: Workload) -> int:
    """Publish every push through `Publisher.publish` (as the receivers do); returns the number
    of pushes. The pushes of one phase go concurrently, phases in order."""
    import asyncio

    pushes = 0
    for phase in workload.phases():
        await asyncio.gather(*(publisher.publish(events, [], endpoint) for endpoint, events in phase))
        pushes += len(phase)
    return pushes
