"""What every provider's payloads share: the carrier names, our receiver's endpoint
paths and the providers' documented success replies, mainland phone numbers by carrier, China-time
formats and our send-record envelope. The providers' own codes and bodies are in the modules beside
this one; how often each is drawn is simulate/plan.py's job."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sms_analytics.model.providers import Provider

Carrier = Literal["移动", "联通", "电信"]
Outcome = Literal["delivered", "failed", "pending", "submit_failed"]
Json = dict[str, Any]
SentAt = float | str

CHINA_TZ = timezone(timedelta(hours=8))

SEND_PATHS: dict[Provider, str] = {
    "aliyun": "/v1/sends/aliyun",
    "tencent": "/v1/sends/tencent",
    "kx": "/v1/sends/kx",
}
RECEIPT_PATHS: dict[Provider, str] = {
    "aliyun": "/callbacks/aliyun/sms-report",
    "tencent": "/callbacks/tencent/status",
    "kx": "/callbacks/kx/report",
}
UPLINK_PATHS: dict[Provider, str] = {
    "aliyun": "/callbacks/aliyun/sms-up",
    "tencent": "/callbacks/tencent/reply",
    "kx": "/callbacks/kx/mo",
}
# The documented success replies (000 §11.3.1/§11.3.2, 002 callbacks, 001 §5/§6).
EXPECTED_REPLIES: dict[Provider, Json | str] = {
    "aliyun": {"code": 0, "msg": "接收成功"},
    "tencent": {"result": 0, "errmsg": "OK"},
    "kx": "SUCCESS",
}

# --- phone numbers ------------------------------------------------------------------------------

CARRIER_SEGMENTS: dict[Carrier, tuple[str, ...]] = {
    "移动": ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159",
             "182", "183", "184", "187", "188", "198"),
    "联通": ("130", "131", "132", "155", "156", "185", "186", "166"),
    "电信": ("133", "153", "180", "181", "189", "199"),
}
CARRIER_WEIGHTS: dict[Carrier, float] = {"移动": 0.56, "联通": 0.25, "电信": 0.19}


# --- time formats and the envelope ----------------------------------------------------------


def china_time(ts: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DD HH:MM:SS`` in China time (UTC+8)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ts: float) -> str:
    """Epoch seconds -> ISO-8601 with the +08:00 offset and milliseconds."""
    return datetime.fromtimestamp(ts, CHINA_TZ).isoformat(timespec="milliseconds")


def random_phone(rng: random.Random) -> tuple[str, Carrier]:
    """An 11-digit mainland mobile number on a real segment, with its carrier."""
    carriers = list(CARRIER_WEIGHTS)
    carrier = rng.choices(carriers, weights=[CARRIER_WEIGHTS[c] for c in carriers])[0]
    prefix = rng.choice(CARRIER_SEGMENTS[carrier])
    return f"{prefix}{rng.randrange(10**8):08d}", carrier


def carrier_of(phone: str) -> Carrier | None:
    """Carrier of an 11-digit number by its 3-digit segment (None if unknown)."""
    for carrier, segments in CARRIER_SEGMENTS.items():
        if phone[:3] in segments:
            return carrier
    return None


def send_envelope(request: Json, response: Json, sent_at: SentAt) -> Json:
    """Our receiver's send record: ``{"request", "response", "sent_at"}``."""
    return {"request": request, "response": response, "sent_at": sent_at}
