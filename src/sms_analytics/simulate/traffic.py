"""Realistic provider traffic against our own HTTP endpoints.

Everything is posted in the providers' own formats (see /work/shared/seeds):

* Alibaba Cloud (000): SendSms / SendBatchSms (§7), SmsReport HTTP push (§11.3.2), SmsUp (§11.3.1),
  receipt codes per carrier from §6.2, submit codes from §6.1.
* KX aggregator (001): MT (§4) and P2PBatch (§10), Report push (§5), MO push (§6),
  submit codes §12.1, receipt codes §12.2.
* Tencent Cloud (002): SendSms (SendStatusSet), status callback and reply callback,
  receipt codes from 回执状态错误码, per-number submit codes from the SendSms error codes.

The pure builders (``aliyun_send``, ``aliyun_report``, ``tencent_send``, ``tencent_status``,
``kx_send``, ``kx_report`` and the uplink builders) take explicit arguments and return the exact
JSON bodies, so tests can craft precise cases. ``plan_traffic`` turns a seed into a deterministic
schedule; ``drive`` posts that schedule and returns the :class:`GroundTruth`.

The traffic model:

* receipt latency is log-normal per carrier (移动 fastest, 电信 slowest, see ``CARRIER_LATENCY``)
  with a slow tail, capped at 30 s and compressed for runs shorter than a minute;
* about 1% of receipts are *late*: their report time is 2..6 h after the send in provider time,
  while the POST itself is time-scaled into the run (6 h of provider time = 30 s of a full run);
* some messages are long: Alibaba reports them with ``sms_size`` N > 1, Tencent bills
  ``Fee`` N, KX content is longer than 70 characters (67 characters a part);
* scenario switches (default off): :class:`Outage` (one carrier delivers only at a given rate for a
  while) and :class:`Blackout` (one provider's receipt pushes stop for a while, lost or caught up
  afterwards). ``parse_scenario`` reads them from command-line strings.

Phone numbers never appear in log output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import aiohttp
import orjson

logger = logging.getLogger(__name__)

Provider = Literal["aliyun", "tencent", "kx"]
Carrier = Literal["移动", "联通", "电信"]
Outcome = Literal["delivered", "failed", "pending", "submit_failed"]
Json = dict[str, Any]
SentAt = float | str

PROVIDERS: tuple[Provider, ...] = ("aliyun", "tencent", "kx")
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

# --- codes, all copied from the seed documents ---------------------------------------------------

# 000 §11.3.2 request sample: success receipt.
ALIYUN_DELIVERED: tuple[str, str] = ("DELIVERED", "用户接收成功")
# 000 §6.2 rows "<carrier>\t<code>\t<message>\t<advice>": (code, message, weight).
ALIYUN_RECEIPT_FAILURES: dict[Carrier, tuple[tuple[str, str, int], ...]] = {
    "移动": (
        ("DB:0141", "曾多次投诉移动或者工信部的黑名单", 3),
        ("IC:0055", "用户欠费停机", 3),
        ("IB:0064", "关机", 3),
        ("MB:1031", "内存满", 1),
        ("DB:0100", "手机号码不存在", 2),
        ("EXPIRED", "短消息超过有效期", 2),
        ("IC:0001", "运营商内部错误", 1),
    ),
    "联通": (
        ("UNDELIV", "发送失败", 3),
        ("R:00242", "空号", 2),
        ("R:00182", "停机", 2),
        ("R:00068", "无法接通", 1),
        ("SGIP:98", "停机", 1),
        ("W-BLACK", "黑名单", 1),
    ),
    "电信": (
        ("MK:0001", "空号", 3),
        ("MK:0005", "关机", 3),
        ("MK:0000", "用户欠费停机", 2),
        ("MN:0001", "SMSC返回状态报告为REJECT", 1),
        ("EXPIRED", "超时", 2),
        ("UNDELIV_64", "空号", 1),
    ),
}
# 000 §6.1 rows "<Code>\t<Message>\t...": a SendSms/SendBatchSms response without BizId.
ALIYUN_SUBMIT_ERRORS: tuple[tuple[str, str], ...] = (
    ("isv.BUSINESS_LIMIT_CONTROL", "业务限流"),
    ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
    ("isv.DAY_LIMIT_CONTROL", "触发日发送限额"),
    ("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单管控"),
)

# 002 回执状态错误码 rows "<code> <carrier> <description>" and the status callback sample.
TENCENT_DELIVERED: tuple[str, str] = ("DELIVRD", "用户短信送达成功")
TENCENT_RECEIPT_FAILURES: dict[Carrier, tuple[tuple[str, str, int], ...]] = {
    "移动": (
        ("DB:0141", "运营商免打扰名单", 2),
        ("DB:0107", "关机", 3),
        ("DB:0318", "空号/停机/关机", 3),
        ("EXPIRED", "终端信号异常", 2),
        ("MI:0024", "关机", 1),
        ("IC:0001", "终端信号异常", 1),
        ("MB:1078", "空号/停机/关机", 1),
    ),
    "联通": (
        ("ERR:000", "空号/停机/关机", 3),
        ("ERR:003", "停机", 2),
        ("ERR:004", "终端信号异常", 2),
        ("ERR:044", "空号", 1),
        ("ERR:012", "运营商免打扰名单", 1),
        ("DB:0141", "运营商免打扰名单", 1),
    ),
    "电信": (
        ("EXPIRED", "空号/停机/关机", 3),
        ("IC:0055", "关机", 2),
        ("MA:0602", "关机", 2),
        ("MK:0044", "空号/停机/关机", 2),
        ("MN:0006", "运营商频率限制", 1),
        ("REJECTD174", "空号", 1),
    ),
}
# 002 SendSms error codes (LimitExceeded.* / FailedOperation.*), message = the documented text.
TENCENT_SUBMIT_ERRORS: tuple[tuple[str, str], ...] = (
    ("LimitExceeded.PhoneNumberDailyLimit", "单个手机号日下发短信条数超过设定的上限"),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", "单个手机号30秒内下发短信条数超过设定的上限"),
    ("LimitExceeded.PhoneNumberOneHourLimit", "单个手机号1小时内下发短信条数超过设定的上限"),
    ("FailedOperation.PhoneNumberInBlacklist",
     "手机号在免打扰名单库中，通常是用户退订或者命中运营商免打扰名单导致的"),
)
TENCENT_SEND_OK: tuple[str, str] = ("Ok", "send success")

# 001 §5.2 sample and §12.2 rows "<code>\t<description>\t<action>".
KX_DELIVERED: tuple[str, str] = ("DELIVRD", "成功")
KX_RECEIPT_FAILURES: tuple[tuple[str, str, int], ...] = (
    ("UNDELIV", "短信接收失败", 8),
    ("EXPIRED", "短信接收失败", 4),
    ("REJECTD", "客户接收失败", 3),
    ("F11300", "系统频控超过日限额", 2),
    ("F1120", "一级黑名单", 1),
    ("F1110", "号段错误,号段不存在", 1),
)
# 001 §12.1 rows, used as P2PBatch per-number results (§10.3).
KX_SUBMIT_ERRORS: tuple[tuple[str, str], ...] = (("11", "短信内容过长"), ("1", "失败"))
KX_SUBMIT_OK: tuple[str, str] = ("0", "提交成功")
KX_OK: tuple[str, str] = ("0", "成功")

# --- templates and signs -------------------------------------------------------------------------

ALIYUN_SIGNS: tuple[str, ...] = ("阿里云短信测试", "云栖科技", "鲜果园", "速达物流")
ALIYUN_TEMPLATES: tuple[tuple[str, int], ...] = (  # (TemplateCode, sms_size): long ones have N > 1
    ("SMS_153055065", 1), ("SMS_152550005", 1), ("SMS_205392047", 1), ("SMS_217436583", 2),
    ("SMS_229843212", 3),
)
TENCENT_SDK_APP_IDS: tuple[str, ...] = ("1400006666", "1400787878")
TENCENT_SIGNS: tuple[str, ...] = ("腾讯云", "乐享出行", "微鲸健康")
TENCENT_TEMPLATES: tuple[tuple[str, int], ...] = (  # (TemplateId, Fee): long ones bill N > 1
    ("1110", 1), ("449739", 1), ("1528346", 2), ("1733921", 3),
)
KX_USERID = "100001"
KX_APIKEY = "simulator-apikey"  # not a credential: the simulator signs with a fixed fake key
KX_CONTENTS: tuple[str, ...] = (
    "【邦邦快递】您的快递已到，取件号：{n}",
    "【鲜果园】您的验证码为{n}，5分钟内有效，请勿泄露。",
    "【安心保险】尊敬的客户，您的保单{n}已生效，详情请登录APP查看。退订回T",
    "【城市燃气】您本月燃气费账单已出，户号{n}，请及时缴费。",
    # Long messages (> 70 characters: billed 67 characters a part): 2 and 3 parts.
    "【安心保险】尊敬的客户，您的保单{n}已完成续保，保障期间为一年。电子保单已发送至您预留的邮箱，"
    "如需纸质保单请在APP内申请邮寄，如有疑问请致电客服热线。退订回T",
    "【城市燃气】尊敬的用户，您的户号{n}本月燃气费账单已出。为保障用气安全，我司将于近期开展入户安检，"
    "请您提前预约上门时间并保持家中有人。安检人员均佩戴工作证并出示安检工单，安检过程不收取任何费用，"
    "请勿向任何人员支付现金，谨防上当受骗。如需改约请拨打客服热线或在公众号内办理。退订回T",
)
KX_SEGMENT_CHARS = 70  # up to 70 characters is one part
KX_PART_CHARS = 67  # longer messages are billed 67 characters a part
LONG_WEIGHT = 0.15  # a long template / content is picked this much as often as a short one
UPLINK_TEXTS: tuple[str, ...] = ("TD", "退订", "收到，谢谢", "好的", "R", "1")

# --- traffic shape -------------------------------------------------------------------------------


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


class SimulatorError(RuntimeError):
    """The receiver answered something other than the provider's documented success reply."""


# --- scenarios -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outage:
    """A carrier outage: messages to ``carrier`` sent in ``[start, start + duration)`` (seconds after
    the run start) are delivered only at ``delivery_rate``; the rest fail with that carrier's receipt
    codes from the seed tables (KX: its §12.2 codes). Messages rejected at submit and messages that
    never get a receipt are unaffected."""

    carrier: Carrier
    delivery_rate: float
    start: float
    duration: float

    def __post_init__(self) -> None:
        if self.carrier not in CARRIER_WEIGHTS:
            raise ValueError(f"unknown carrier {self.carrier!r} (one of {', '.join(CARRIER_WEIGHTS)})")
        if not 0.0 <= self.delivery_rate <= 1.0:
            raise ValueError("delivery_rate must be within 0..1")
        _check_window(self.start, self.duration)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def covers(self, carrier: Carrier, at: float) -> bool:
        return carrier == self.carrier and self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Blackout:
    """A provider's receipt pushes stop during ``[start, start + duration)`` (seconds after the run
    start). Receipts that would have been pushed in the window are never posted (their messages stay
    pending), or with ``catch_up=True`` are posted once the window ends. Send records and uplinks
    are not affected."""

    provider: Provider
    start: float
    duration: float
    catch_up: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r} (one of {', '.join(PROVIDERS)})")
        _check_window(self.start, self.duration)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def covers(self, provider: Provider, now: float) -> bool:
        return provider == self.provider and self.start <= now < self.end


Scenario = Outage | Blackout


def _check_window(start: float, duration: float) -> None:
    if not (math.isfinite(start) and start >= 0):
        raise ValueError("start must be a finite number of seconds >= 0")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError("duration must be a finite number of seconds > 0")


CARRIER_ALIASES: dict[str, Carrier] = {
    "移动": "移动", "cmcc": "移动", "mobile": "移动", "chinamobile": "移动",
    "联通": "联通", "cucc": "联通", "unicom": "联通", "chinaunicom": "联通",
    "电信": "电信", "ctcc": "电信", "telecom": "电信", "chinatelecom": "电信",
}
PROVIDER_ALIASES: dict[str, Provider] = {
    "aliyun": "aliyun", "alibaba": "aliyun", "000": "aliyun",
    "kx": "kx", "001": "kx",
    "tencent": "tencent", "qcloud": "tencent", "002": "tencent",
}
_CATCH_UP_WORDS = {"catch_up", "catch-up", "catchup", "1", "true", "yes"}
_NO_CATCH_UP_WORDS = {"drop", "0", "false", "no"}


def parse_scenario(text: str) -> Scenario:
    """A scenario switch from a command-line string (fields separated by ``:``).

    * ``outage:<carrier>:<delivery_rate>:<start>:<duration>`` -> :class:`Outage`, e.g.
      ``"outage:移动:0.3:10:30"``: messages to China Mobile sent from 10 s to 40 s after the start
      are delivered at 30%. ``<carrier>`` is 移动/联通/电信 or cmcc/cucc/ctcc
      (mobile/unicom/telecom); ``<delivery_rate>`` is 0..1.
    * ``blackout:<provider>:<start>:<duration>[:catch_up]`` -> :class:`Blackout`, e.g.
      ``"blackout:tencent:5:20"``: Tencent's receipt pushes stop from 5 s to 25 s after the start
      and the receipts of that window are lost; with a fifth field ``catch_up`` they are posted
      when the window ends (``drop``, the default, loses them). ``<provider>`` is aliyun/tencent/kx.

    Times are seconds relative to the run start. Raises ValueError on anything else.
    """
    parts = [part.strip() for part in text.strip().split(":")]
    kind = parts[0].lower()
    try:
        if kind == "outage" and len(parts) == 5:
            carrier = CARRIER_ALIASES.get(parts[1].lower())
            if carrier is None:
                raise ValueError(f"unknown carrier {parts[1]!r}")
            return Outage(carrier, float(parts[2]), float(parts[3]), float(parts[4]))
        if kind == "blackout" and len(parts) in (4, 5):
            provider = PROVIDER_ALIASES.get(parts[1].lower())
            if provider is None:
                raise ValueError(f"unknown provider {parts[1]!r}")
            mode = parts[4].lower() if len(parts) == 5 else "drop"
            if mode not in _CATCH_UP_WORDS | _NO_CATCH_UP_WORDS:
                raise ValueError(f"the fifth field must be catch_up or drop, not {parts[4]!r}")
            return Blackout(provider, float(parts[2]), float(parts[3]), catch_up=mode in _CATCH_UP_WORDS)
    except ValueError as exc:
        raise ValueError(f"scenario {text!r}: {exc}") from None
    raise ValueError(
        f"scenario {text!r}: expected outage:<carrier>:<rate>:<start>:<duration> or "
        "blackout:<provider>:<start>:<duration>[:catch_up]"
    )


def _as_tuple(value: Any, kind: type) -> tuple[Any, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, kind) else tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"expected {kind.__name__}, got {item!r}")
    return items


# --- time formats --------------------------------------------------------------------------------


def china_time(ts: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DD HH:MM:SS`` in China time (UTC+8)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def kx_time(ts: float) -> str:
    """Epoch seconds -> ``yyyyMMddHHmmss`` in China time (UTC+8)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y%m%d%H%M%S")


def iso_time(ts: float) -> str:
    """Epoch seconds -> ISO-8601 with the +08:00 offset and milliseconds."""
    return datetime.fromtimestamp(ts, CHINA_TZ).isoformat(timespec="milliseconds")


def kx_sign(userid: str, ts: str, apikey: str) -> str:
    """KX signature: lower-case 32-char md5(userid + ts + apikey) (001 §4.2)."""
    return hashlib.md5(f"{userid}{ts}{apikey}".encode()).hexdigest()


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


# --- payload builders: sends ---------------------------------------------------------------------


def send_envelope(request: Json, response: Json, sent_at: SentAt) -> Json:
    """Our receiver's send record: ``{"request", "response", "sent_at"}``."""
    return {"request": request, "response": response, "sent_at": sent_at}


def aliyun_send(
    phones: Sequence[str],
    *,
    sign_name: str,
    template_code: str,
    request_id: str,
    sent_at: SentAt,
    biz_id: str | None,
    out_id: str | None = None,
    batch: bool = False,
    error: tuple[str, str] | None = None,
) -> Json:
    """Body for ``POST /v1/sends/aliyun``.

    ``aliyun_send(phones, *, sign_name, template_code, request_id, sent_at, biz_id,
    out_id=None, batch=False, error=None) -> dict``

    ``batch=False``: SendSms params (PhoneNumbers comma-separated, SignName, TemplateCode, OutId?).
    ``batch=True``: SendBatchSms params (PhoneNumberJson / SignNameJson as JSON-encoded string
    arrays, TemplateCode; SendBatchSms has no OutId). ``error=(Code, Message)`` from §6.1 gives a
    failed response without BizId; otherwise the response is Code/Message "OK" with ``biz_id``.
    """
    request: Json
    if batch:
        request = {
            "PhoneNumberJson": orjson.dumps(list(phones)).decode(),
            "SignNameJson": orjson.dumps([sign_name] * len(phones)).decode(),
            "TemplateCode": template_code,
        }
    else:
        request = {"PhoneNumbers": ",".join(phones), "SignName": sign_name, "TemplateCode": template_code}
        if out_id is not None:
            request["OutId"] = out_id
    response: Json
    if error is not None:
        response = {"Code": error[0], "Message": error[1], "RequestId": request_id}
    else:
        if biz_id is None:
            raise ValueError("a successful Alibaba response needs a BizId")
        response = {"Code": "OK", "Message": "OK", "RequestId": request_id, "BizId": biz_id}
    return send_envelope(request, response, sent_at)


def tencent_send(
    phones: Sequence[str],
    *,
    sdk_app_id: str,
    template_id: str,
    sign_name: str,
    session_context: str,
    serial_nos: Sequence[str],
    request_id: str,
    sent_at: SentAt,
    results: Sequence[tuple[str, str]] | None = None,
    fee: int = 1,
) -> Json:
    """Body for ``POST /v1/sends/tencent``.

    ``tencent_send(phones, *, sdk_app_id, template_id, sign_name, session_context, serial_nos,
    request_id, sent_at, results=None, fee=1) -> dict``

    ``phones`` are 11-digit numbers; they are sent as E.164 ``+86...``. ``results[i]`` is the
    ``(Code, Message)`` of phone i (default ``("Ok", "send success")``). A failed entry gets
    ``Fee`` 0; pass ``""`` as its serial number, as SendSms does for numbers it did not accept.
    """
    if len(serial_nos) != len(phones):
        raise ValueError("one SerialNo per phone")
    codes = list(results) if results is not None else [TENCENT_SEND_OK] * len(phones)
    request = {
        "PhoneNumberSet": [f"+86{p}" for p in phones],
        "SmsSdkAppId": sdk_app_id,
        "TemplateId": template_id,
        "SignName": sign_name,
        "SessionContext": session_context,
    }
    statuses = [
        {
            "SerialNo": serial,
            "PhoneNumber": f"+86{phone}",
            "Fee": fee if code == TENCENT_SEND_OK[0] else 0,
            "SessionContext": session_context,
            "Code": code,
            "Message": message,
            "IsoCode": "CN",
        }
        for phone, serial, (code, message) in zip(phones, serial_nos, codes, strict=True)
    ]
    response = {"Response": {"SendStatusSet": statuses, "RequestId": request_id}}
    return send_envelope(request, response, sent_at)


def kx_send(
    phones: Sequence[str],
    *,
    contents: str | Sequence[str],
    taskid: str,
    ts_ms: int,
    sent_at: SentAt,
    userid: str = KX_USERID,
    apikey: str = KX_APIKEY,
    extnum: str | None = None,
    p2p: bool = False,
    results: Sequence[tuple[str, str]] | None = None,
) -> Json:
    """Body for ``POST /v1/sends/kx``.

    ``kx_send(phones, *, contents, taskid, ts_ms, sent_at, userid=KX_USERID, apikey=KX_APIKEY,
    extnum=None, p2p=False, results=None) -> dict``

    ``p2p=False``: MT params (userid, ts, sign, mobile comma-separated, msgcontent, extnum?) and
    the MT response ``{"code":"0","msg":"成功","data":{"taskid":...}}``; ``contents`` is one text.
    ``p2p=True``: P2PBatch body with ``list:[{mobile, msgcontent}]`` (``contents`` is one text or
    one per phone) and ``data.result`` per mobile; ``results[i] = (code, msg)`` (default
    ``("0", "提交成功")``). When every number fails, the top-level code is the first failure's and
    ``taskid`` is ``""`` (001 §10.3).
    """
    ts = str(ts_ms)
    base: Json = {"userid": userid, "ts": ts, "sign": kx_sign(userid, ts, apikey)}
    if not p2p:
        if results is not None and any(code != KX_SUBMIT_OK[0] for code, _ in results):
            raise ValueError("MT has no per-number results; use p2p=True for per-number failures")
        if not isinstance(contents, str):
            raise ValueError("MT sends one msgcontent to all numbers")
        request = {**base, "mobile": ",".join(phones), "msgcontent": contents}
        if extnum is not None:
            request["extnum"] = extnum
        response = {"code": KX_OK[0], "msg": KX_OK[1], "data": {"taskid": taskid}}
        return send_envelope(request, response, sent_at)
    texts = [contents] * len(phones) if isinstance(contents, str) else list(contents)
    codes = list(results) if results is not None else [KX_SUBMIT_OK] * len(phones)
    request = dict(base)
    if extnum is not None:
        request["extnum"] = extnum
    request["list"] = [{"mobile": p, "msgcontent": t} for p, t in zip(phones, texts, strict=True)]
    result = [{"mobile": p, "code": c, "msg": m} for p, (c, m) in zip(phones, codes, strict=True)]
    failures = [(c, m) for c, m in codes if c != KX_SUBMIT_OK[0]]
    top = failures[0] if len(failures) == len(codes) else KX_OK
    response = {"code": top[0], "msg": top[1],
                "data": {"taskid": "" if top != KX_OK else taskid, "result": result}}
    return send_envelope(request, response, sent_at)


# --- payload builders: receipts and uplinks ------------------------------------------------------


def aliyun_report(
    phone: str,
    biz_id: str,
    *,
    send_time: float,
    report_time: float,
    err_code: str,
    err_msg: str,
    success: bool | None = None,
    sms_size: int = 1,
    out_id: str = "",
) -> Json:
    """One SmsReport record (000 §11.3.2); the POST body is a JSON array of these.

    ``aliyun_report(phone, biz_id, *, send_time, report_time, err_code, err_msg, success=None,
    sms_size=1, out_id="") -> dict``. Times are epoch seconds, rendered in China time;
    ``success`` defaults to ``err_code == "DELIVERED"``.
    """
    return {
        "phone_number": phone,
        "send_time": china_time(send_time),
        "report_time": china_time(report_time),
        "success": err_code == ALIYUN_DELIVERED[0] if success is None else success,
        "err_code": err_code,
        "err_msg": err_msg,
        "sms_size": str(sms_size),
        "biz_id": biz_id,
        "out_id": out_id,
    }


def tencent_status(
    phone: str,
    sid: str,
    *,
    receive_time: float,
    errmsg: str,
    description: str,
    report_status: Literal["SUCCESS", "FAIL"] | None = None,
    nationcode: str = "86",
) -> Json:
    """One status-callback record (002 短信下发状态通知); the POST body is a JSON array.

    ``tencent_status(phone, sid, *, receive_time, errmsg, description, report_status=None,
    nationcode="86") -> dict``. ``phone`` without country code; ``sid`` = SerialNo;
    ``report_status`` defaults to SUCCESS iff ``errmsg == "DELIVRD"``.
    """
    status = report_status or ("SUCCESS" if errmsg == TENCENT_DELIVERED[0] else "FAIL")
    return {
        "user_receive_time": china_time(receive_time),
        "nationcode": nationcode,
        "mobile": phone,
        "report_status": status,
        "errmsg": errmsg,
        "description": description,
        "sid": sid,
    }


def kx_report(phone: str, taskid: str, *, report_time: float, code: str, msg: str) -> Json:
    """One Report-push record (001 §5.2); the POST body is a JSON array.

    ``kx_report(phone, taskid, *, report_time, code, msg) -> dict``; ``time`` is yyyyMMddHHmmss
    China time.
    """
    return {"time": kx_time(report_time), "taskid": taskid, "code": code, "msg": msg, "mobile": phone}


def aliyun_sms_up(
    phone: str, *, send_time: float, content: str, sign_name: str, dest_code: str, sequence_id: int
) -> Json:
    """One SmsUp record (000 §11.3.1); the POST body is a JSON array.

    ``aliyun_sms_up(phone, *, send_time, content, sign_name, dest_code, sequence_id) -> dict``.
    """
    return {
        "phone_number": phone,
        "send_time": china_time(send_time),
        "content": content,
        "sign_name": sign_name,
        "dest_code": dest_code,
        "sequence_id": sequence_id,
    }


def tencent_reply(phone: str, *, time_s: int, text: str, sign: str, extend: str = "") -> Json:
    """The reply-callback body (002 短信回复), a single JSON object.

    ``tencent_reply(phone, *, time_s, text, sign, extend="") -> dict``; ``time`` is UNIX seconds.
    """
    return {"extend": extend, "mobile": phone, "nationcode": "86", "sign": sign, "text": text,
            "time": time_s}


def kx_mo(phone: str, *, mo_id: str, time_s: float, content: str, srcid: str) -> Json:
    """One MO-push record (001 §6.2); the POST body is a JSON array.

    ``kx_mo(phone, *, mo_id, time_s, content, srcid) -> dict``.
    """
    return {"id": mo_id, "time": kx_time(time_s), "msgcontent": content, "srcid": srcid, "mobile": phone}


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

    def outage_outcome(self, outcome: Outcome, carrier: Carrier, at: float) -> tuple[Outcome, bool]:
        """(outcome, in an outage): in an outage window a receipt says delivered at its rate."""
        for outage in self.outages:
            if outage.covers(carrier, at):
                if outcome not in ("delivered", "failed"):
                    return outcome, True
                return ("delivered" if self.outage_rng.random() < outage.delivery_rate else "failed"), True
        return outcome, False

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


def kx_segments(text: str) -> int:
    """KX billing parts: up to 70 characters is 1, longer messages are 67 characters a part."""
    return 1 if len(text) <= KX_SEGMENT_CHARS else math.ceil(len(text) / KX_PART_CHARS)


def _pick(rng: random.Random, rows: Sequence[tuple[str, str, int]]) -> tuple[str, str]:
    code, msg, _ = rng.choices(rows, weights=[w for *_, w in rows])[0]
    return code, msg


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
    template, sms_size = _pick_long(rng, ALIYUN_TEMPLATES, lambda row: row[1] > 1)
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
        outcome, in_outage = ctx.outage_outcome(outcome, carrier, at)
        msg = PlannedMessage("aliyun", phone, carrier, biz_id or "", outcome, error[0] if error else "",
                             segments=sms_size, in_outage=in_outage)

        def make(report: float, code: str, text: str, phone: str = phone) -> Json:
            return aliyun_report(phone, biz_id or "", send_time=send_wall, report_time=report,
                                 err_code=code, err_msg=text, sms_size=sms_size, out_id=out_id or "")

        _attach_receipt(ctx, msg, at, make, ALIYUN_DELIVERED, _pick(rng, ALIYUN_RECEIPT_FAILURES[carrier]))
        send.messages.append(msg)
    return send


def _plan_tencent(ctx: _Ctx, at: float) -> PlannedSend:
    rng = ctx.rng
    n = 1 if rng.random() < 0.85 else rng.randint(2, 5)
    numbers = [random_phone(rng) for _ in range(n)]
    template, fee = _pick_long(rng, TENCENT_TEMPLATES, lambda row: row[1] > 1)
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
        outcome, in_outage = ctx.outage_outcome(drawn, carrier, at)
        msg = PlannedMessage("tencent", phone, carrier, serial, outcome, code if outcome == "submit_failed" else "",
                             segments=fee if outcome != "submit_failed" else 0, in_outage=in_outage)

        def make(report: float, c: str, text: str, phone: str = phone, serial: str = serial) -> Json:
            return tencent_status(phone, serial, receive_time=report, errmsg=c, description=text)

        _attach_receipt(ctx, msg, at, make, TENCENT_DELIVERED, _pick(rng, TENCENT_RECEIPT_FAILURES[carrier]))
        send.messages.append(msg)
    return send


def _pick_long(rng: random.Random, rows: Sequence[Any], long: Callable[[Any], bool]) -> Any:
    """One of ``rows``, the long ones (multi-segment) weighted by LONG_WEIGHT."""
    return rng.choices(rows, weights=[LONG_WEIGHT if long(row) else 1.0 for row in rows])[0]


def _kx_content(rng: random.Random) -> str:
    text: str = _pick_long(rng, KX_CONTENTS, lambda c: kx_segments(c.format(n=0)) > 1)
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
        outcome, in_outage = ctx.outage_outcome(drawn, carrier, at)
        msg = PlannedMessage("kx", phone, carrier, "" if all_failed else taskid, outcome,
                             code if outcome == "submit_failed" else "", segments=kx_segments(content),
                             in_outage=in_outage)

        def make(report: float, c: str, text: str, phone: str = phone) -> Json:
            return kx_report(phone, taskid, report_time=report, code=c, msg=text)

        _attach_receipt(ctx, msg, at, make, KX_DELIVERED, _pick(rng, KX_RECEIPT_FAILURES))
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
    outages: tuple[Outage, ...] = _as_tuple(outage, Outage)
    blackouts: tuple[Blackout, ...] = _as_tuple(blackout, Blackout)
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
                if orjson.loads(body) == expected:
                    return
            except orjson.JSONDecodeError:
                pass
    raise SimulatorError(
        f"POST {path}: expected HTTP 200 with {expected!r}, got HTTP {status} {_redact(text)!r}"
    )


class _Runner:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None, plan: TrafficPlan):
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
        data = orjson.dumps(body)
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

    # the whole run -------------------------------------------------------------------------------

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_EXCEPTION)
            self.raise_if_failed()

    async def run(self) -> GroundTruth:
        loops = [self.send_loop(), self.uplink_loop(), *(self.receipt_loop(p) for p in PROVIDERS)]
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
) -> GroundTruth:
    """Post ~``rate`` messages/s of provider traffic for ``duration`` s, then the late receipts.

    Waits at most ``duration * 0.5 + 10`` s after the sends for the last scheduled receipts (or
    until 5 s after the end of a catch-up blackout, if later). ``outage`` / ``blackout``: the
    scenario switches of :func:`plan_traffic` (default off); the returned :class:`GroundTruth`
    counts exactly what was posted. Raises :class:`SimulatorError` on any reply that is not the
    documented success reply.
    """
    plan = plan_traffic(duration=duration, rate=rate, seed=seed, start=time.time(), outage=outage,
                        blackout=blackout)
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        truth = await _Runner(client, base_url, token, plan).run()
    finally:
        if own:
            await client.close()
    logger.info("simulated traffic posted: %s", orjson.dumps(truth.to_dict()).decode())
    return truth


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sms_analytics.simulate.traffic --url http://127.0.0.1:8080 --duration 30``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", type=parse_scenario, action="append", default=[],
                        help='repeatable: "outage:<carrier>:<rate>:<start>:<duration>" or '
                             '"blackout:<provider>:<start>:<duration>[:catch_up]"')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    outages = [s for s in args.scenario if isinstance(s, Outage)]
    blackouts = [s for s in args.scenario if isinstance(s, Blackout)]
    truth = asyncio.run(drive(args.url, duration=args.duration, rate=args.rate, token=args.token, seed=args.seed,
                              outage=outages, blackout=blackouts))
    print(orjson.dumps(truth.to_dict(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
