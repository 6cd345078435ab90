"""A faithful local Tencent Cloud SMS API 3.0 (seed 002, version 2021-01-11) on aiohttp.

One endpoint, ``/`` (POST ``application/json``; GET ``x-www-form-urlencoded`` query as the SDK
sends it with ``reqMethod="GET"``), the action in ``X-TC-Action``:

* ``SendSms``                            one ``SendStatus`` per number (SerialNo ``5000:<28 digits>``)
* ``PullSmsSendStatus``                  queue mode: every status is returned once, Limit 1..100
* ``PullSmsSendStatusByPhoneNumber``     one number, BeginTime/EndTime (epoch s), not consuming
* ``PullSmsReplyStatus``                 queue mode, Limit 1..100
* ``PullSmsReplyStatusByPhoneNumber``    one number, BeginTime/EndTime (epoch s), not consuming
* ``CallbackStatusStatistics``           BeginTime/EndTime ``yyyymmddhh`` China time, ≤ 32 days
* ``SendStatusStatistics``               BeginTime/EndTime ``yyyymmddhh`` China time
* ``DescribeSmsTemplateList``            International; TemplateIdSet, or without it Limit (≤ 100) and Offset
* ``DescribeSmsSignList``                International, SignIdSet (required, ≤ 100)
* ``SmsPackagesStatistics``              the packages created in BeginTime..EndTime (``yyyymmddhh``), Limit
                                         (≤ 500) and Offset: PackageAmount, CurrentUsage and their times

Packages (套餐包, :class:`SimPackage`): by default one purchased package of 10,000,000 messages
(never near its end in simulated traffic); :meth:`set_quota_left` replaces them with one whose
amount leaves the given number (the quota-low scenario). Every accepted number's Fee is charged to
the effective package that expires first, and once every one is used up a send is refused with
``FailedOperation.InsufficientBalanceInSmsPackage`` (套餐包余量不足).

The two Describe actions answer from the account's catalogue (by default the simulated traffic's
templates and signs, simulate/payloads/metadata.py), those of the International asked; ids not in it
are left out. They take no SmsSdkAppId, as the document defines them.

Authentication is signature method v3 exactly as "签名方法 v3" describes it: the Authorization
header ``TC3-HMAC-SHA256 Credential=<SecretId>/<Date>/sms/tc3_request, SignedHeaders=...,
Signature=...``; CanonicalRequest = method, ``/``, query string (GET only), the signed headers
(``content-type`` and ``host`` mandatory, any more allowed) as lower-cased, trimmed
``key:value`` lines, SignedHeaders, and the lower-case hex SHA-256 of the body
(``UNSIGNED-PAYLOAD`` when ``X-TC-Content-SHA256`` says so); StringToSign = algorithm,
X-TC-Timestamp, ``Date/sms/tc3_request`` and the hash of the CanonicalRequest; the key chain
``HMAC("TC3"+SecretKey, Date) -> HMAC(., "sms") -> HMAC(., "tc3_request")``. ``Date`` must be the
UTC date of X-TC-Timestamp, and X-TC-Timestamp within 5 minutes of the simulator's clock.

Check order: X-TC-Action present (MissingParameter) -> Authorization well-formed
(AuthFailure.InvalidAuthorization) -> X-TC-Timestamp present and an integer -> SecretId known
(AuthFailure.SecretIdNotFound) -> timestamp within ±5 min (AuthFailure.SignatureExpire) -> no
X-TC-Token (this account has long-term keys only: AuthFailure.TokenFailure) -> signature
(AuthFailure.SignatureFailure) -> X-TC-Version 2021-01-11 (NoSuchVersion) -> action known
(InvalidAction) -> X-TC-Region in the product's region list (UnsupportedRegion) -> body JSON
(FailedOperation.JsonParseFail) -> parameters (UnknownParameter for a name the action does not
define, MissingParameter, InvalidParameter for a wrong type) -> SmsSdkAppId
(UnauthorizedOperation.SmsSdkAppIdVerifyFail) -> the action's own checks. Every answer is HTTP 200
with ``Content-Type: application/json`` (exactly: the SDK only looks for ``Error`` under that
content type) and ``{"Response": {..., "RequestId": ...}}``.

Choices where the document is silent:

* PullSmsSendStatus / PullSmsReplyStatus / the ByPhoneNumber actions: "拉取最大条数，最多100条"
  is enforced by refusing Limit outside 1..100 with ``InvalidParameter`` (their error tables have
  no LimitVerifyFail); a status is pullable once its ``at`` (UserReceiveTime) has come. The
  statistics actions refuse Limit/Offset other than 0 ("目前固定设置为0") with
  ``InvalidParameterValue.LimitVerifyFail`` / ``OffsetVerifyFail``.
* PullSms*ByPhoneNumber select by the *send* time (reply: the reply time) in
  [BeginTime, EndTime], EndTime defaulting to now; BeginTime more than 7 days back is
  ``InvalidParameterValue.BeginTimeVerifyFail``; Offset is honoured (the doc fixes it at 0).
* Pull status ``Description`` carries the receipt code (the doc's samples: ``"DELIVRD"``), the
  callback carries both ``errmsg`` (the code) and ``description`` (the text).
* Statistics count by *send* time in [BeginTime:00, EndTime:59:59] China time.
  SendStatusStatistics: RequestCount = numbers that got a SendStatus (refused numbers included,
  whole-request errors not), RequestSuccessCount = those with Code ``Ok``, FeeCount = their Fee.
  CallbackStatusStatistics: RequestSuccessCount as above, CallbackCount = reports that have come
  for those messages (= success + fail), and each failure counted in at most one category,
  judged from its ``description`` (then ``errmsg``): 黑名单/免打扰 -> BlackListCount,
  频率/频控/超过下发限制 -> FrequencyLimitCount, 空号/号码异常/号码无效/号段 ->
  InvalidNumberCount, 停机/关机/暂停服务 -> ShutdownErrorCount, 内部错误/网关异常 ->
  InternalErrorCount (so "空号/停机/关机" is an invalid number); other failures (keyword
  interception …) only count in CallbackFailCount.
* Fee: the text is ``【SignName】`` + the template with ``{1}..{n}`` filled. Up to 70 characters is
  1, longer is ceil(n/67) (the doc's 80-character example is 2); a non-Chinese number whose text is
  all ASCII uses 160/153. Templates are accepted as any ``TemplateId`` with the text ``{1}{2}…``
  unless ``add_template`` registered some: then an unknown id is
  ``FailedOperation.TemplateUnapprovedOrNotExist`` and a wrong parameter count
  ``FailedOperation.TemplateParamSetNotMatchApprovedTemplate``.
* A malformed number gets its own SendStatus with Code
  ``InvalidParameterValue.IncorrectPhoneNumber`` (SerialNo ``""``, Fee 0); Chinese and foreign
  numbers in one request are ``UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber``;
  a Chinese number needs a SignName of 2-12 Chinese/ASCII letters or digits
  (``FailedOperation.SignatureIncorrectOrUnapproved``).

Callbacks (短信下发状态通知 / 短信回复): ``callback_to`` + ``flush_callbacks`` POST due statuses as
JSON arrays of at most 100 and every reply as one JSON object. Success is HTTP 200 with a JSON
body whose ``result`` is 0; a failed request is retried 2 more times ("回调请求推送失败后会再重试
2次"), then its records are given up (dropped) and the next request goes on. Pull and callback are
independent: a status is both pullable and pushed.

Secrets and phone numbers are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import msgspec
import phonenumbers
from aiohttp import web

from sms_analytics.model.providers import GSM_SEGMENT_CHARS, segments
from sms_analytics.simulate.payloads.metadata import (
    TENCENT_SIGN_CATALOGUE,
    TENCENT_TEMPLATE_CATALOGUE,
    SimSign,
    SimTemplate,
)

logger = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8))
ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "sms"
API_VERSION = "2021-01-11"
REGIONS = ("ap-beijing", "ap-guangzhou", "ap-nanjing")  # 地域列表
TIMESTAMP_WINDOW = 300  # "如果与服务器时间相差超过5分钟，会引起签名过期错误"
MAX_PHONES = 200  # SendSms: "单次请求最多支持200个手机号"
MAX_PULL = 100  # Pull*: "拉取最大条数，最多100条"
MAX_CALLBACK_BATCH = 100  # "目前单次推送最多100条"
CALLBACK_RETRIES = 2  # "回调请求推送失败后会再重试2次"
BY_PHONE_MAX_AGE = 7 * 86400  # "最大可拉取当前时期前7天的数据"
CALLBACK_STATS_MAX_DAYS = 32  # CallbackStatusStatistics: "相差不超过32天"
MAX_SESSION_CONTEXT_BYTES = 512  # "注意长度需小于512字节"

OK_CODE = "Ok"
OK_MESSAGE = "send success"
BAD_NUMBER = ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number format")

# Parameters each action defines (anything else is UnknownParameter), as the SDK models have them.
_PARAMS: dict[str, frozenset[str]] = {
    "SendSms": frozenset({"PhoneNumberSet", "SmsSdkAppId", "TemplateId", "SignName", "TemplateParamSet",
                          "ExtendCode", "SessionContext", "SenderId"}),
    "PullSmsSendStatus": frozenset({"Limit", "SmsSdkAppId"}),
    "PullSmsReplyStatus": frozenset({"Limit", "SmsSdkAppId"}),
    "PullSmsSendStatusByPhoneNumber": frozenset({"BeginTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId",
                                                 "EndTime"}),
    "PullSmsReplyStatusByPhoneNumber": frozenset({"BeginTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId",
                                                  "EndTime"}),
    "CallbackStatusStatistics": frozenset({"BeginTime", "EndTime", "SmsSdkAppId", "Limit", "Offset"}),
    "SendStatusStatistics": frozenset({"BeginTime", "EndTime", "SmsSdkAppId", "Limit", "Offset"}),
    "DescribeSmsTemplateList": frozenset({"International", "TemplateIdSet", "Limit", "Offset"}),
    "DescribeSmsSignList": frozenset({"SignIdSet", "International"}),
    "SmsPackagesStatistics": frozenset({"SmsSdkAppId", "Limit", "Offset", "BeginTime", "EndTime"}),
}
MAX_PACKAGES = 500  # SmsPackagesStatistics Limit: "Limit默认最大值为500"
DEFAULT_PACKAGE_AMOUNT = 10_000_000
PACKAGE_DAYS = 365

_AUTH_RE = re.compile(
    r"^(?P<alg>\S+)\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$")
_CN_MOBILE = re.compile(r"^1\d{10}$")
_INTL = re.compile(r"^\+(\d{7,15})$")
_SIGN_NAME = re.compile(r"^[\u4e00-\u9fffA-Za-z0-9]{2,12}$")
_HOUR = re.compile(r"^\d{10}$")
_URL = re.compile(r"(https?://|www\.)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{(\d+)\}")

# Failure categories of CallbackStatusStatistics, first match wins (see the module docstring).
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("BlackListCount", ("黑名单", "免打扰")),
    ("FrequencyLimitCount", ("频率", "频控", "超过下发限制")),
    ("InvalidNumberCount", ("空号", "号码异常", "号码无效", "号段")),
    ("ShutdownErrorCount", ("停机", "关机", "暂停服务")),
    ("InternalErrorCount", ("内部错误", "网关异常")),
)
_CALLBACK_STAT_KEYS = ("CallbackCount", "RequestSuccessCount", "CallbackFailCount", "CallbackSuccessCount",
                       "InternalErrorCount", "InvalidNumberCount", "ShutdownErrorCount", "BlackListCount",
                       "FrequencyLimitCount")


# --- signature method v3 (pure functions) --------------------------------------------------------


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def canonical_request(method: str, uri: str, query: str, headers: Mapping[str, str],
                      signed_headers: Iterable[str], payload_hash: str) -> str:
    """CanonicalRequest of 签名方法 v3 step 1. ``headers`` maps lower-case names to raw values;
    each signed header is written ``key:value\\n`` with key and value lower-cased and trimmed."""
    names = [h.strip().lower() for h in signed_headers]
    canonical_headers = "".join(f"{n}:{headers[n].strip().lower()}\n" for n in names)
    return "\n".join([method, uri, query, canonical_headers, ";".join(names), payload_hash])


def credential_scope(date: str, service: str = SERVICE) -> str:
    return f"{date}/{service}/tc3_request"


def string_to_sign(timestamp: int | str, scope: str, canonical: str) -> str:
    """StringToSign of step 2."""
    return "\n".join([ALGORITHM, str(timestamp), scope, sha256_hex(canonical)])


def tc3_signature(secret_key: str, date: str, service: str, to_sign: str) -> str:
    """Signature of step 3: the derived key chain, then HMAC-SHA256 of StringToSign, hex."""
    def _hmac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    secret_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = _hmac(secret_date, service)
    secret_signing = _hmac(secret_service, "tc3_request")
    return hmac.new(secret_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def china_time(ts: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DD HH:MM:SS`` China time (the status callback's user_receive_time)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def china_hour(ts: float) -> str:
    """Epoch seconds -> ``yyyymmddhh`` China time (the statistics actions' BeginTime/EndTime)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y%m%d%H")


def fee_for(text: str, *, domestic: bool) -> int:
    """Billed messages for one text: ≤70 characters is 1, longer every 67 is 1; a foreign number
    with an all-ASCII text uses the GSM limits 160/153."""
    return segments(text, *GSM_SEGMENT_CHARS) if not domestic and text.isascii() else segments(text)


def callback_stat_key(errmsg: str, description: str) -> str | None:
    """Which counter of Tencent's CallbackStatusStatistics a failed report adds to (Tencent's own
    buckets, as the simulated provider reports them); not this pipeline's failure category, which
    streams/join.py gives from the knowledge base."""
    for key, words in _CATEGORIES:
        for source in (description, errmsg):
            if any(w in source for w in words):
                return key
    return None


# --- state ---------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message


@dataclass
class _Report:
    seq: int
    at: float
    delivered: bool
    errmsg: str
    description: str


@dataclass
class _Message:
    seq: int
    serial_no: str
    phone: str
    country_code: str
    subscriber: str
    template_id: str
    sign: str
    session_context: str
    fee: int
    sent_at: float
    report: _Report | None = None


@dataclass
class _Attempt:
    """One number of a SendSms that got a SendStatus (for SendStatusStatistics)."""
    sent_at: float
    ok: bool
    fee: int


@dataclass
class SimPackage:
    """A 套餐包: PackageAmount messages, CurrentUsage used; times are epoch seconds."""
    package_id: int
    amount: int
    created: float
    expires: float
    usage: int = 0
    package_type: int = 1  # 0 赠送, 1 购买

    @property
    def left(self) -> int:
        return max(0, self.amount - self.usage)

    def record(self) -> dict[str, Any]:
        return {"PackageCreateTime": int(self.created), "PackageEffectiveTime": int(self.created),
                "PackageExpiredTime": int(self.expires), "PackageType": self.package_type,
                "CurrentUsage": self.usage, "PackageId": self.package_id, "PackageAmount": self.amount}


@dataclass
class _Reply:
    seq: int
    at: float
    phone: str
    country_code: str
    subscriber: str
    sign: str
    text: str
    extend: str = ""


@dataclass
class _Call:
    action: str
    params: dict[str, Any]
    form: bool = False  # GET: every value arrives as a string


@dataclass
class CallbackAttempt:
    """One POST of ``flush_callbacks``: kind ``status``/``reply``, HTTP status (0: no answer), ok."""
    kind: str
    url: str
    records: int
    status: int
    ok: bool


@dataclass
class _Outbox:
    statuses: list[_Message] = field(default_factory=list)
    replies: list[_Reply] = field(default_factory=list)


def _split_phone(raw: Any) -> tuple[str, str, str] | None:
    """A SendSms / PullSms*ByPhoneNumber number -> (E.164, country code, subscriber) or None.
    Chinese numbers may also be ``0086…``, ``86…`` or the bare 11 digits."""
    if not isinstance(raw, str):
        return None
    s = raw.strip()
    for prefix in ("+86", "0086", "86"):
        if s.startswith(prefix) and _CN_MOBILE.match(s[len(prefix):]):
            return "+86" + s[len(prefix):], "86", s[len(prefix):]
    if _CN_MOBILE.match(s):
        return "+86" + s, "86", s
    if s.startswith("+86"):
        return None
    m = _INTL.match(s)
    if not m:
        return None
    try:
        number = phonenumbers.parse(s, None)
    except Exception:  # noqa: BLE001 - phonenumbers raises its own NumberParseException
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    cc = str(number.country_code)
    return s, cc, str(number.national_number)


def _iso_code(country_code: str) -> str:
    if country_code == "86":
        return "CN"
    try:
        region = phonenumbers.region_code_for_country_code(int(country_code))
    except Exception:  # noqa: BLE001
        return "DEF"
    return region if region and region != "ZZ" else "DEF"


def _hour_of(value: str | None, code: str, name: str) -> float:
    """A ``yyyymmddhh`` hour (China time) as epoch seconds; ``code`` when it is not one."""
    if value is None or not _HOUR.match(value):
        raise _ApiError(code, f"{name} must be yyyymmddhh")
    try:
        return datetime.strptime(value, "%Y%m%d%H").replace(tzinfo=CHINA_TZ).timestamp()
    except ValueError:
        raise _ApiError(code, f"{name} is not a valid yyyymmddhh hour") from None


def _unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """GET parameters ``PhoneNumberSet.0=…&PhoneNumberSet.1=…`` -> ``{"PhoneNumberSet": [...]}``."""
    out: dict[str, Any] = {}
    lists: dict[str, dict[int, str]] = {}
    for key, value in pairs:
        name, dot, index = key.partition(".")
        if dot and index.isdigit():
            lists.setdefault(name, {})[int(index)] = value
        else:
            out[key] = value
    for name, items in lists.items():
        out[name] = [items[i] for i in sorted(items)]
    return out


class TencentSimulator:
    """An in-memory Tencent Cloud SMS account: one key pair, one SmsSdkAppId."""

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        app_id: str = "1400006666",
        rng_seed: int = 1,
        clock: Callable[[], float] = time.time,
        template_catalogue: Iterable[SimTemplate] = TENCENT_TEMPLATE_CATALOGUE,
        sign_catalogue: Iterable[SimSign] = TENCENT_SIGN_CATALOGUE,
    ) -> None:
        self.template_catalogue = {t.code: t for t in template_catalogue}
        self.sign_catalogue = {s.sign_id: s for s in sign_catalogue}
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.app_id = app_id
        self.rng = random.Random(rng_seed)
        self.clock = clock
        self.templates: dict[str, str] = {}
        self.sent: list[tuple[str, str, str, str]] = []  # (serial_no, phone_e164, template_id, sign)
        self.status_url: str | None = None
        self.reply_url: str | None = None
        self.callback_retry_delay = 0.0
        self.callback_attempts: list[CallbackAttempt] = []
        self.callbacks_given_up: dict[str, int] = {"statuses": 0, "replies": 0}
        self.requests: list[tuple[str, str]] = []  # (action, error code or "") per API call
        self._messages: dict[str, _Message] = {}
        self._attempts: list[_Attempt] = []
        self._replies: list[_Reply] = []
        self._status_queue: list[_Message] = []
        self._reply_queue: list[_Reply] = []
        self._outbox = _Outbox()
        self._seq = itertools.count(1)
        self._flush_lock: asyncio.Lock | None = None
        self.packages = [SimPackage(1_000_791_745, DEFAULT_PACKAGE_AMOUNT, self.clock() - 30 * 86400,
                                    self.clock() + PACKAGE_DAYS * 86400)]
        self._actions: dict[str, Callable[[_Call], dict[str, Any]]] = {
            "SendSms": self._send_sms,
            "PullSmsSendStatus": self._pull_send_status,
            "PullSmsSendStatusByPhoneNumber": self._pull_send_status_by_phone,
            "PullSmsReplyStatus": self._pull_reply_status,
            "PullSmsReplyStatusByPhoneNumber": self._pull_reply_status_by_phone,
            "CallbackStatusStatistics": self._callback_status_statistics,
            "SendStatusStatistics": self._send_status_statistics,
            "DescribeSmsTemplateList": self._describe_sms_template_list,
            "DescribeSmsSignList": self._describe_sms_sign_list,
            "SmsPackagesStatistics": self._sms_packages_statistics,
        }

    def __repr__(self) -> str:
        return f"TencentSimulator(app_id={self.app_id!r}, sent={len(self.sent)})"

    # --- the application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024,  # v3 POST "支持10MB"
                              handler_args={"max_line_size": 64 * 1024, "max_field_size": 64 * 1024})
        app.router.add_route("*", "/", self._handle)
        return app

    # --- test helpers ---------------------------------------------------------------------------

    def add_template(self, template_id: str, content: str) -> None:
        """Register an approved template (``{1}``…``{n}`` placeholders). Once any is registered,
        SendSms refuses unregistered ids."""
        self.templates[str(template_id)] = content

    def set_quota_left(self, left: int) -> None:
        """One purchased package, created an hour ago, with ``left`` messages of it unused."""
        now = self.clock()
        used = DEFAULT_PACKAGE_AMOUNT - left
        self.packages = [SimPackage(1_000_876_572, DEFAULT_PACKAGE_AMOUNT, now - 3600, now + PACKAGE_DAYS * 86400,
                                    usage=max(0, used))]

    def _charge(self, fee: int) -> bool:
        """Charge ``fee`` to the effective packages, the one expiring first first; False (nothing
        charged) when they do not hold it."""
        now = self.clock()
        usable = sorted((p for p in self.packages if p.created <= now < p.expires and p.left),
                        key=lambda p: p.expires)
        if sum(p.left for p in usable) < fee:
            return False
        for package in usable:
            take = min(fee, package.left)
            package.usage += take
            fee -= take
        return True

    @property
    def pending_statuses(self) -> int:
        """Statuses reported but not pulled yet."""
        return len(self._status_queue)

    @property
    def pending_replies(self) -> int:
        return len(self._reply_queue)

    def report(self, serial_no: str, *, delivered: bool = True, errmsg: str = "DELIVRD",
               description: str = "用户短信送达成功", at: float | None = None) -> dict[str, Any]:
        """Record the delivery status of one sent message (UserReceiveTime ``at``, default now).
        It becomes pullable once due and is queued for the status callback. Returns the
        PullSmsSendStatus record."""
        msg = self._messages.get(serial_no)
        if msg is None:
            raise KeyError("unknown SerialNo")
        if msg.report is not None:
            raise ValueError("this SerialNo has already been reported")
        msg.report = _Report(next(self._seq), self.clock() if at is None else float(at), delivered, errmsg,
                             description)
        self._status_queue.append(msg)
        self._outbox.statuses.append(msg)
        return self._pull_record(msg)

    def report_all(self, *, delivered: bool = True, errmsg: str = "DELIVRD", description: str = "用户短信送达成功",
                   at: float | None = None) -> int:
        """``report`` every sent message not reported yet; returns how many."""
        count = 0
        for serial_no, *_ in self.sent:
            if self._messages[serial_no].report is None:
                self.report(serial_no, delivered=delivered, errmsg=errmsg, description=description, at=at)
                count += 1
        return count

    def add_reply(self, phone_e164: str, text: str, sign: str = "腾讯云", at: float | None = None,
                  extend: str = "") -> dict[str, Any]:
        """A user's reply (uplink). Returns the PullSmsReplyStatus record."""
        parts = _split_phone(phone_e164)
        if parts is None:
            raise ValueError("not a phone number")
        phone, cc, subscriber = parts
        reply = _Reply(next(self._seq), self.clock() if at is None else float(at), phone, cc, subscriber, sign,
                       text, extend)
        self._replies.append(reply)
        self._reply_queue.append(reply)
        self._outbox.replies.append(reply)
        return self._reply_record(reply)

    def callback_to(self, status_url: str | None, reply_url: str | None) -> None:
        """The callback URLs of the console's 回调配置 (``None``: not configured)."""
        self.status_url, self.reply_url = status_url, reply_url

    async def flush_callbacks(self, session: aiohttp.ClientSession) -> dict[str, int]:
        """POST the due statuses (JSON arrays of ≤100) and replies (one object each) to the
        configured URLs. A request is retried up to 2 more times; success is HTTP 200 with
        ``{"result": 0}``. Returns acknowledged and given-up record counts."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        out = {"statuses": 0, "replies": 0, "statuses_given_up": 0, "replies_given_up": 0}
        async with self._flush_lock:
            now = self.clock()
            if self.status_url:
                due = sorted((m for m in self._outbox.statuses if m.report and m.report.at <= now),
                             key=lambda m: (m.report.at, m.report.seq))  # type: ignore[union-attr]
                for i in range(0, len(due), MAX_CALLBACK_BATCH):
                    batch = due[i:i + MAX_CALLBACK_BATCH]
                    ok = await self._post(session, "status", self.status_url, [self._status_body(m) for m in batch],
                                          len(batch))
                    self._drop(self._outbox.statuses, batch)
                    out["statuses" if ok else "statuses_given_up"] += len(batch)
            if self.reply_url:
                due_replies = sorted((r for r in self._outbox.replies if r.at <= now), key=lambda r: (r.at, r.seq))
                for reply in due_replies:
                    ok = await self._post(session, "reply", self.reply_url, self._reply_body(reply), 1)
                    self._drop(self._outbox.replies, [reply])
                    out["replies" if ok else "replies_given_up"] += 1
        self.callbacks_given_up["statuses"] += out["statuses_given_up"]
        self.callbacks_given_up["replies"] += out["replies_given_up"]
        return out

    # --- callbacks ------------------------------------------------------------------------------

    @staticmethod
    def _drop(queue: list[Any], items: list[Any]) -> None:
        gone = {id(x) for x in items}
        queue[:] = [x for x in queue if id(x) not in gone]

    async def _post(self, session: aiohttp.ClientSession, kind: str, url: str, body: Any, records: int) -> bool:
        payload = msgspec.json.encode(body)
        for attempt in range(1 + CALLBACK_RETRIES):
            if attempt and self.callback_retry_delay:
                await asyncio.sleep(self.callback_retry_delay)
            status, ok = 0, False
            try:
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                    status = resp.status
                    raw = await resp.read()
                if status == 200:
                    try:
                        answer = msgspec.json.decode(raw)
                    except msgspec.DecodeError:
                        answer = None
                    ok = isinstance(answer, dict) and answer.get("result") == 0 and not isinstance(
                        answer.get("result"), bool)
            except (TimeoutError, aiohttp.ClientError) as exc:
                logger.info("tencent sim %s callback failed: %s", kind, type(exc).__name__)
            self.callback_attempts.append(CallbackAttempt(kind, url, records, status, ok))
            if ok:
                return True
        logger.info("tencent sim %s callback given up after %d attempts (%d records)", kind,
                    1 + CALLBACK_RETRIES, records)
        return False

    @staticmethod
    def _status_body(msg: _Message) -> dict[str, Any]:
        assert msg.report is not None
        body = {
            "user_receive_time": china_time(msg.report.at),
            "nationcode": msg.country_code,
            "mobile": msg.subscriber,
            "report_status": "SUCCESS" if msg.report.delivered else "FAIL",
            "errmsg": msg.report.errmsg,
            "description": msg.report.description,
            "sid": msg.serial_no,
        }
        if msg.session_context:
            body["ext"] = msg.session_context
        return body

    @staticmethod
    def _reply_body(reply: _Reply) -> dict[str, Any]:
        return {"extend": reply.extend, "mobile": reply.subscriber, "nationcode": reply.country_code,
                "sign": reply.sign, "text": reply.text, "time": int(reply.at)}

    # --- records --------------------------------------------------------------------------------

    @staticmethod
    def _pull_record(msg: _Message) -> dict[str, Any]:
        assert msg.report is not None
        return {
            "UserReceiveTime": int(msg.report.at),
            "CountryCode": msg.country_code,
            "SubscriberNumber": msg.subscriber,
            "PhoneNumber": msg.phone,
            "SerialNo": msg.serial_no,
            "ReportStatus": "SUCCESS" if msg.report.delivered else "FAIL",
            "Description": msg.report.errmsg,
            "SessionContext": msg.session_context,
        }

    @staticmethod
    def _reply_record(reply: _Reply) -> dict[str, Any]:
        return {
            "ExtendCode": reply.extend,
            "CountryCode": reply.country_code,
            "PhoneNumber": reply.phone,
            "SignName": reply.sign,
            "ReplyContent": reply.text,
            "ReplyTime": int(reply.at),
            "SubscriberNumber": reply.subscriber,
        }

    # --- the request pipeline -------------------------------------------------------------------

    def _request_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    @staticmethod
    def _answer(doc: dict[str, Any]) -> web.Response:
        # Exactly "application/json": the SDK's _check_error ignores any other Content-Type.
        return web.Response(body=msgspec.json.encode({"Response": doc}), headers={"Content-Type": "application/json"})

    async def _handle(self, request: web.Request) -> web.Response:
        request_id = self._request_id()
        action = request.headers.get("X-TC-Action", "").strip()
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _ApiError("RequestSizeLimitExceeded", "the request body is larger than 10 MB") from None
            call = self._authenticate(request, body, action)
            data = self._actions[call.action](call)
        except _ApiError as err:
            self.requests.append((action, err.code))
            logger.info("tencent sim %s refused: %s", action or "-", err.code)
            return self._answer({"Error": {"Code": err.code, "Message": err.message}, "RequestId": request_id})
        self.requests.append((action, ""))
        return self._answer({**data, "RequestId": request_id})

    def _authenticate(self, request: web.Request, body: bytes, action: str) -> _Call:
        if request.method not in ("GET", "POST"):
            raise _ApiError("UnsupportedProtocol", "only GET and POST requests are supported")
        if not action:
            raise _ApiError("MissingParameter", "The request is missing a required parameter `Action`.")
        auth = request.headers.get("Authorization", "")
        m = _AUTH_RE.match(auth.strip())
        if not m or m["alg"] != ALGORITHM:
            raise _ApiError("AuthFailure.InvalidAuthorization",
                            "Authorization is not a TC3-HMAC-SHA256 header (signature method v3 is required).")
        cred = m["cred"].split("/")
        if len(cred) != 4 or cred[3] != "tc3_request":
            raise _ApiError("AuthFailure.InvalidAuthorization",
                            "Credential must be SecretId/Date/service/tc3_request.")
        secret_id, date, service, _ = cred
        signed = m["signed"].split(";")
        if "content-type" not in signed or "host" not in signed:
            raise _ApiError("AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host.")
        raw_ts = request.headers.get("X-TC-Timestamp", "").strip()
        if not raw_ts:
            raise _ApiError("MissingParameter", "The request is missing a required parameter `Timestamp`.")
        if not raw_ts.isdigit():
            raise _ApiError("InvalidParameter", "Timestamp must be an integer (UNIX seconds).")
        if secret_id != self.secret_id:
            raise _ApiError("AuthFailure.SecretIdNotFound",
                            "The SecretId is not found, please ensure that your SecretId is correct.")
        timestamp = int(raw_ts)
        now = self.clock()
        if abs(now - timestamp) > TIMESTAMP_WINDOW:
            raise _ApiError("AuthFailure.SignatureExpire",
                            f"Signature expired. Timestamp is {timestamp}, server time is {int(now)}; "
                            "they cannot differ by more than 5 minutes.")
        if request.headers.get("X-TC-Token"):
            raise _ApiError("AuthFailure.TokenFailure", "Token is not allowed with a long-term SecretId.")
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw_query = request.raw_path.partition("?")[2] if request.method == "GET" else ""
        if headers.get("x-tc-content-sha256", "").strip() == "UNSIGNED-PAYLOAD":
            payload_hash = sha256_hex("UNSIGNED-PAYLOAD")
        else:
            payload_hash = sha256_hex(b"" if request.method == "GET" else body)
        expected = ""
        if all(h in headers for h in signed) and service == SERVICE and date == utc_date(timestamp):
            canonical = canonical_request(request.method, request.path, raw_query, headers, signed, payload_hash)
            expected = tc3_signature(self._secret_key, date, service,
                                     string_to_sign(raw_ts, credential_scope(date, service), canonical))
        if not expected or not hmac.compare_digest(expected, m["sig"].lower()):
            raise _ApiError("AuthFailure.SignatureFailure",
                            "The provided credentials could not be validated. Please check your signature is correct.")
        # Authenticated: the common parameters, then the body.
        version = request.headers.get("X-TC-Version", "").strip()
        if not version:
            raise _ApiError("MissingParameter", "The request is missing a required parameter `Version`.")
        if version != API_VERSION:
            raise _ApiError("NoSuchVersion", f"The requested version `{version[:20]}` of API `{action[:60]}` "
                                             "does not exist.")
        if action not in self._actions:
            raise _ApiError("InvalidAction", f"The action `{action[:60]}` does not exist.")
        region = request.headers.get("X-TC-Region", "").strip()
        if not region:
            raise _ApiError("MissingParameter", "The request is missing a required parameter `Region`.")
        if region not in REGIONS:
            raise _ApiError("UnsupportedRegion", f"The region `{region[:40]}` is not supported.")
        if request.method == "GET":
            params = _unflatten(parse_qsl(raw_query, keep_blank_values=True))
            return self._checked(_Call(action, params, form=True))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _ApiError("InvalidParameter", "POST with signature v3 must be Content-Type: application/json.")
        try:
            doc = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            raise _ApiError("FailedOperation.JsonParseFail", "the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _ApiError("FailedOperation.JsonParseFail", "the request body must be a JSON object")
        return self._checked(_Call(action, doc))

    def _checked(self, call: _Call) -> _Call:
        allowed = _PARAMS[call.action]
        for name in call.params:
            if name not in allowed:
                raise _ApiError("UnknownParameter", f"The parameter `{name[:60]}` is not recognized.")
        if "SmsSdkAppId" not in allowed:
            return call
        app_id = self._str(call, "SmsSdkAppId", required=True)
        if app_id != self.app_id:
            raise _ApiError("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                            "SmsSdkAppId verify fail: it does not belong to the account of this SecretId.")
        return call

    # --- parameter helpers ----------------------------------------------------------------------

    @staticmethod
    def _str(call: _Call, name: str, *, required: bool = False, default: str = "") -> str:
        value = call.params.get(name)
        if value is None:
            if required:
                raise _ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
            return default
        if not isinstance(value, str):
            raise _ApiError("InvalidParameter", f"The parameter `{name}` must be a String.")
        return value

    @staticmethod
    def _int(call: _Call, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = call.params.get(name)
        if value is None:
            if required:
                raise _ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
            return default
        if call.form and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _ApiError("InvalidParameter", f"The parameter `{name}` must be an Integer.")
        return value

    @staticmethod
    def _str_list(call: _Call, name: str) -> list[str] | None:
        value = call.params.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _ApiError("InvalidParameter", f"The parameter `{name}` must be an Array of String.")
        return value

    @classmethod
    def _int_list(cls, call: _Call, name: str, *, required: bool = False) -> list[int] | None:
        value = call.params.get(name)
        if value is None:
            if required:
                raise _ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
            return None
        if not isinstance(value, list):
            raise _ApiError("InvalidParameter", f"The parameter `{name}` must be an Array of Integer.")
        return [cls._int(_Call(call.action, {name: v}, call.form), name, required=True) or 0 for v in value]

    def _limit(self, call: _Call) -> int:
        limit = self._int(call, "Limit", required=True)
        assert limit is not None
        if not 1 <= limit <= MAX_PULL:
            raise _ApiError("InvalidParameter", f"Limit must be between 1 and {MAX_PULL}, got {limit}.")
        return limit

    # --- SendSms --------------------------------------------------------------------------------

    def _template_text(self, template_id: str, params: list[str]) -> str:
        if not self.templates:
            return "".join(params)
        template = self.templates.get(template_id)
        if template is None:
            raise _ApiError("FailedOperation.TemplateUnapprovedOrNotExist",
                            "template is not approved or does not exist")
        wanted = {int(n) for n in _PLACEHOLDER.findall(template)}
        if wanted != set(range(1, len(params) + 1)):
            raise _ApiError("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                            f"the template has {len(wanted)} parameters, the request {len(params)}")
        return _PLACEHOLDER.sub(lambda mm: params[int(mm.group(1)) - 1], template)

    def _send_sms(self, call: _Call) -> dict[str, Any]:
        phones = self._str_list(call, "PhoneNumberSet")
        template_id = self._str(call, "TemplateId", required=True)
        sign = self._str(call, "SignName")
        params = self._str_list(call, "TemplateParamSet") or []
        self._str(call, "ExtendCode")
        self._str(call, "SenderId")
        session_context = self._str(call, "SessionContext")
        if not phones:
            raise _ApiError("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty")
        if len(phones) > MAX_PHONES:
            raise _ApiError("LimitExceeded.PhoneNumberCountLimit",
                            f"at most {MAX_PHONES} phone numbers per request, got {len(phones)}")
        if len(session_context.encode("utf-8")) >= MAX_SESSION_CONTEXT_BYTES:
            raise _ApiError("InvalidParameter", "SessionContext must be shorter than 512 bytes")
        if any(_URL.search(p) for p in params):
            raise _ApiError("InvalidParameterValue.ProhibitedUseUrlInTemplateParameter",
                            "URLs are not allowed in template parameters")
        parsed = [_split_phone(p) for p in phones]
        kinds = {p[1] == "86" for p in parsed if p is not None}
        if len(kinds) > 1:
            raise _ApiError("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                            "a request mixes Chinese mainland and international numbers")
        domestic = kinds == {True}
        if domestic and not _SIGN_NAME.match(sign):
            raise _ApiError("FailedOperation.SignatureIncorrectOrUnapproved",
                            "SignName is required for Chinese mainland SMS and must be 2-12 characters")
        body = self._template_text(template_id, params)
        text = (f"【{sign}】" if sign else "") + body
        now = self.clock()
        statuses: list[dict[str, Any]] = []
        for raw, parts in zip(phones, parsed, strict=True):
            if parts is None:
                statuses.append({"SerialNo": "", "PhoneNumber": raw, "Fee": 0, "SessionContext": session_context,
                                 "Code": BAD_NUMBER[0], "Message": BAD_NUMBER[1], "IsoCode": "DEF"})
                self._attempts.append(_Attempt(now, False, 0))
                continue
            phone, cc, subscriber = parts
            fee = fee_for(text, domestic=cc == "86")
            if not self._charge(fee):
                statuses.append({"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": session_context,
                                 "Code": "FailedOperation.InsufficientBalanceInSmsPackage",
                                 "Message": "套餐包余量不足，请购买套餐包。", "IsoCode": _iso_code(cc)})
                self._attempts.append(_Attempt(now, False, 0))
                continue
            serial_no = self._serial_no()
            msg = _Message(next(self._seq), serial_no, phone, cc, subscriber, template_id, sign, session_context,
                           fee, now)
            self._messages[serial_no] = msg
            self.sent.append((serial_no, phone, template_id, sign))
            self._attempts.append(_Attempt(now, True, fee))
            statuses.append({"SerialNo": serial_no, "PhoneNumber": phone, "Fee": fee,
                             "SessionContext": session_context, "Code": OK_CODE, "Message": OK_MESSAGE,
                             "IsoCode": _iso_code(cc)})
        logger.debug("tencent sim SendSms: %d numbers, %d accepted", len(phones),
                     sum(1 for s in statuses if s["Code"] == OK_CODE))
        return {"SendStatusSet": statuses}

    def _serial_no(self) -> str:
        while True:
            serial_no = f"5000:{self.rng.randrange(10**27, 10**28)}"
            if serial_no not in self._messages:
                return serial_no

    # --- pulls ----------------------------------------------------------------------------------

    def _pull_send_status(self, call: _Call) -> dict[str, Any]:
        limit = self._limit(call)
        now = self.clock()
        due = sorted((m for m in self._status_queue if m.report and m.report.at <= now),
                     key=lambda m: (m.report.at, m.report.seq))[:limit]  # type: ignore[union-attr]
        self._drop(self._status_queue, due)
        return {"PullSmsSendStatusSet": [self._pull_record(m) for m in due]}

    def _pull_reply_status(self, call: _Call) -> dict[str, Any]:
        limit = self._limit(call)
        now = self.clock()
        due = sorted((r for r in self._reply_queue if r.at <= now), key=lambda r: (r.at, r.seq))[:limit]
        self._drop(self._reply_queue, due)
        return {"PullSmsReplyStatusSet": [self._reply_record(r) for r in due]}

    def _by_phone_args(self, call: _Call) -> tuple[str, int, int, int, int]:
        begin = self._int(call, "BeginTime", required=True)
        offset = self._int(call, "Offset", required=True)
        limit = self._limit(call)
        raw_phone = self._str(call, "PhoneNumber", required=True)
        now = self.clock()
        end = self._int(call, "EndTime", default=int(now))
        assert begin is not None and offset is not None and end is not None
        parts = _split_phone(raw_phone)
        if parts is None:
            raise _ApiError(*BAD_NUMBER)
        if begin < 0 or begin < now - BY_PHONE_MAX_AGE:
            raise _ApiError("InvalidParameterValue.BeginTimeVerifyFail",
                            "BeginTime can be at most 7 days before now")
        if end < begin:
            raise _ApiError("InvalidParameterValue.EndTimeVerifyFail", "EndTime must not be before BeginTime")
        if offset < 0:
            raise _ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset must not be negative")
        return parts[0], begin, end, offset, limit

    def _pull_send_status_by_phone(self, call: _Call) -> dict[str, Any]:
        phone, begin, end, offset, limit = self._by_phone_args(call)
        now = self.clock()
        found = [m for m in self._messages.values()
                 if m.phone == phone and m.report is not None and m.report.at <= now and begin <= m.sent_at <= end]
        found.sort(key=lambda m: (m.sent_at, m.seq))
        return {"PullSmsSendStatusSet": [self._pull_record(m) for m in found[offset:offset + limit]]}

    def _pull_reply_status_by_phone(self, call: _Call) -> dict[str, Any]:
        phone, begin, end, offset, limit = self._by_phone_args(call)
        now = self.clock()
        found = [r for r in self._replies if r.phone == phone and r.at <= now and begin <= r.at <= end]
        found.sort(key=lambda r: (r.at, r.seq))
        return {"PullSmsReplyStatusSet": [self._reply_record(r) for r in found[offset:offset + limit]]}

    # --- statistics -----------------------------------------------------------------------------

    # --- DescribeSmsTemplateList, DescribeSmsSignList ------------------------------------------

    def _international(self, call: _Call) -> int:
        international = self._int(call, "International", required=True)
        if international not in (0, 1):
            raise _ApiError("InvalidParameterValue.InvalidInternational", "International must be 0 or 1.")
        return international

    @staticmethod
    def _template_status(t: SimTemplate) -> dict[str, Any]:
        return {"TemplateId": int(t.code), "International": t.kind, "StatusCode": t.status, "ReviewReply": t.reason,
                "TemplateName": t.name, "CreateTime": t.created, "TemplateContent": t.content}

    def _describe_sms_template_list(self, call: _Call) -> dict[str, Any]:
        international = self._international(call)
        ids = self._int_list(call, "TemplateIdSet")
        mine = [t for t in self.template_catalogue.values() if t.kind == international]
        if ids:
            if len(ids) > MAX_PULL:
                raise _ApiError("InvalidParameter", f"TemplateIdSet holds at most {MAX_PULL} ids.")
            chosen = [t for t in mine if int(t.code) in set(ids)]
        else:
            limit, offset = self._int(call, "Limit", default=0) or 0, self._int(call, "Offset", default=0) or 0
            if not 0 <= limit <= MAX_PULL or offset < 0:
                raise _ApiError("InvalidParameter", f"Limit must be between 0 and {MAX_PULL}, Offset at least 0.")
            chosen = mine[offset:offset + limit]
        return {"DescribeTemplateStatusSet": [self._template_status(t) for t in chosen]}

    def _describe_sms_sign_list(self, call: _Call) -> dict[str, Any]:
        international = self._international(call)
        ids = self._int_list(call, "SignIdSet", required=True) or []
        if len(ids) > MAX_PULL:
            raise _ApiError("InvalidParameter", f"SignIdSet holds at most {MAX_PULL} ids.")
        found = [self.sign_catalogue[i] for i in dict.fromkeys(ids) if i in self.sign_catalogue]
        return {"DescribeSignListStatusSet": [
            {"SignId": s.sign_id, "International": international, "StatusCode": s.status, "ReviewReply": s.reason,
             "SignName": s.name, "CreateTime": s.created, "QualificationId": 0, "QualificationName": "",
             "QualificationStatusCode": 0}
            for s in found if international == 0]}

    def _hours(self, call: _Call, *, max_days: int | None) -> tuple[float, float]:
        begin, end = self._begin_end(call)
        limit = self._int(call, "Limit", required=True)
        offset = self._int(call, "Offset", required=True)
        if end < begin:
            raise _ApiError("InvalidParameterValue.EndTimeVerifyFail", "EndTime must not be before BeginTime")
        if max_days is not None and end - begin > max_days * 86400:
            raise _ApiError("InvalidParameterValue.EndTimeVerifyFail",
                            f"EndTime and BeginTime cannot be more than {max_days} days apart")
        if limit != 0:
            raise _ApiError("InvalidParameterValue.LimitVerifyFail", "Limit is fixed at 0")
        if offset != 0:
            raise _ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset is fixed at 0")
        return begin, end + 3600

    def _begin_end(self, call: _Call) -> tuple[float, float]:
        """BeginTime and EndTime (``yyyymmddhh``, China time) as the epoch seconds of their hours."""
        begin = _hour_of(self._str(call, "BeginTime", required=True), "InvalidParameterValue.BeginTimeVerifyFail",
                         "BeginTime")
        return begin, _hour_of(self._str(call, "EndTime", required=True), "InvalidParameterValue.EndTimeVerifyFail",
                               "EndTime")

    def _sms_packages_statistics(self, call: _Call) -> dict[str, Any]:
        """The packages created from BeginTime to EndTime ("EndTime 必须大于 BeginTime 且小于当前时间"),
        oldest first, Offset/Limit applied."""
        begin, end = self._begin_end(call)
        limit = self._int(call, "Limit", required=True)
        offset = self._int(call, "Offset", required=True)
        assert limit is not None and offset is not None
        if end <= begin or end > self.clock():
            raise _ApiError("InvalidParameterValue.EndTimeVerifyFail",
                            "EndTime must be after BeginTime and before the current time")
        if not 0 < limit <= MAX_PACKAGES:
            raise _ApiError("InvalidParameterValue.LimitVerifyFail", f"Limit must be 1..{MAX_PACKAGES}")
        if offset < 0:
            raise _ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset must not be negative")
        found = sorted((p for p in self.packages if begin <= p.created < end + 3600), key=lambda p: p.created)
        return {"SmsPackagesStatisticsSet": [p.record() for p in found[offset:offset + limit]]}

    def _send_status_statistics(self, call: _Call) -> dict[str, Any]:
        start, stop = self._hours(call, max_days=None)
        window = [a for a in self._attempts if start <= a.sent_at < stop]
        return {"SendStatusStatistics": {
            "FeeCount": sum(a.fee for a in window if a.ok),
            "RequestCount": len(window),
            "RequestSuccessCount": sum(1 for a in window if a.ok),
        }}

    def _callback_status_statistics(self, call: _Call) -> dict[str, Any]:
        start, stop = self._hours(call, max_days=CALLBACK_STATS_MAX_DAYS)
        now = self.clock()
        stats = dict.fromkeys(_CALLBACK_STAT_KEYS, 0)
        for msg in self._messages.values():
            if not start <= msg.sent_at < stop:
                continue
            stats["RequestSuccessCount"] += 1
            report = msg.report
            if report is None or report.at > now:
                continue
            stats["CallbackCount"] += 1
            if report.delivered:
                stats["CallbackSuccessCount"] += 1
                continue
            stats["CallbackFailCount"] += 1
            category = callback_stat_key(report.errmsg, report.description)
            if category is not None:
                stats[category] += 1
        return {"CallbackStatusStatistics": stats}
