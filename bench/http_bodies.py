"""Provider HTTP bodies for the HTTP measurements, built with the simulator's payload builders
(`sms_analytics.simulate.payloads`), i.e. exactly what the providers post."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sms_analytics.model.providers import Provider
from sms_analytics.simulate.payloads.aliyun import (
    ALIYUN_DELIVERED,
    ALIYUN_RECEIPT_FAILURES,
    ALIYUN_SIGNS,
    ALIYUN_TEMPLATES,
    aliyun_report,
    aliyun_send,
)
from sms_analytics.simulate.payloads.common import RECEIPT_PATHS, SEND_PATHS, Carrier, random_phone
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
from sms_analytics.simulate.plan import pick


@dataclass
class Batch:
    """One send push (a batch send of n numbers) and the matching receipt push."""

    provider: str
    send_path: str
    send_body: bytes
    receipt_path: str
    receipt_body: bytes
    keys: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, message_id, e164) per receipt


class Bodies:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def _phones(self, n: int) -> list[tuple[str, Carrier]]:
        return [random_phone(self.rng) for _ in range(n)]

    def batch(self, provider: Provider, n: int, sent_at: float, report_after: tuple[float, float] = (1.0, 3.0)) -> Batch:
        """A batch send of n numbers at `sent_at` (epoch s) and all n receipts, reported
        `report_after` seconds later."""
        rng = self.rng
        self.seq += 1
        numbers = self._phones(n)
        phones = [p for p, _ in numbers]
        reports = [sent_at + rng.uniform(*report_after) for _ in numbers]
        failed = [rng.random() < 0.07 for _ in numbers]
        keys: list[tuple[str, str, str]]
        if provider == "aliyun":
            biz = f"{rng.randrange(100000, 1000000)}{self.seq % 10**12:012d}^0"
            template, sms_size = rng.choice(ALIYUN_TEMPLATES)
            body = aliyun_send(phones, sign_name=rng.choice(ALIYUN_SIGNS), template_code=template,
                               request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper(),
                               sent_at=round(sent_at, 3), biz_id=biz, batch=True)
            receipts = [aliyun_report(p, biz, send_time=sent_at, report_time=r, sms_size=sms_size,
                                      **_code(rng, f, ALIYUN_DELIVERED, ALIYUN_RECEIPT_FAILURES[c], "err_code", "err_msg"))
                        for (p, c), r, f in zip(numbers, reports, failed, strict=True)]
            keys = [(provider, biz, f"+86{p}") for p in phones]
        elif provider == "tencent":
            serials = [f"5000:{rng.randrange(10**9, 10**10)}{self.seq:08d}{k:04d}" for k in range(n)]
            template, fee = rng.choice(TENCENT_TEMPLATES)
            body = tencent_send(phones, sdk_app_id=TENCENT_SDK_APP_IDS[0], template_id=template,
                                sign_name=rng.choice(TENCENT_SIGNS), session_context=f"bench_{self.seq}",
                                serial_nos=serials, request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                sent_at=round(sent_at, 3), fee=fee)
            receipts = [tencent_status(p, s, receive_time=r,
                                       **_code(rng, f, TENCENT_DELIVERED, TENCENT_RECEIPT_FAILURES[c], "errmsg",
                                                 "description"))
                        for (p, c), s, r, f in zip(numbers, serials, reports, failed, strict=True)]
            keys = [(provider, s, f"+86{p}") for p, s in zip(phones, serials, strict=True)]
        else:
            taskid = f"{kx_time(sent_at)[4:]}{rng.randrange(10**5, 10**6)}{self.seq:07d}"
            content = rng.choice(KX_CONTENTS).format(n=rng.randrange(1000, 1000000))
            body = kx_send(phones, contents=content, taskid=taskid, ts_ms=int(sent_at * 1000), sent_at=round(sent_at, 3))
            receipts = [kx_report(p, taskid, report_time=r,
                                  **_code(rng, f, KX_DELIVERED, KX_RECEIPT_FAILURES, "code", "msg"))
                        for p, r, f in zip(phones, reports, failed, strict=True)]
            keys = [(provider, taskid, f"+86{p}") for p in phones]
        return Batch(provider, SEND_PATHS[provider], msgspec.json.encode(body), RECEIPT_PATHS[provider],
                     msgspec.json.encode(receipts), keys)


def _code(rng: random.Random, failed: bool, delivered: tuple[str, str], failures: Any, code_key: str,
          msg_key: str) -> dict[str, Any]:
    code, msg = pick(rng, failures) if failed else delivered
    return {code_key: code, msg_key: msg}
