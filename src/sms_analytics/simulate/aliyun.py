"""A faithful local Alibaba Cloud SMS service (Dysmsapi ``2017-05-25``, seed 000) on aiohttp.

One RPC endpoint, ``GET`` or ``POST`` on ``/`` (§5.1); parameters in the query string and, for a
``POST``, also in an ``application/x-www-form-urlencoded`` body:

* ``Action=SendSms``          (§7.1) ``PhoneNumbers`` (≤1000, comma separated), ``SignName``,
                              ``TemplateCode``, ``TemplateParam``?, ``OutId``?
* ``Action=SendBatchSms``     (§7.2) ``PhoneNumberJson``/``SignNameJson``/``TemplateParamJson``?
                              (JSON arrays, ≤100, one entry per number), ``TemplateCode``
* ``Action=QuerySendDetails`` (§8.1) ``PhoneNumber``, ``SendDate`` (yyyyMMdd, last 30 days),
                              ``PageSize`` (1~50), ``CurrentPage`` (≥1), ``BizId``?
* ``Action=QuerySmsTemplate`` (§10.2) ``TemplateCode``: its name, content, TemplateType, TemplateStatus
* ``Action=QuerySmsSign``     (§9.3) ``SignName``: its SignStatus
* ``Action=QuerySendStatistics`` (not in seed 000; modelled on the official SDK's
                              ``QuerySendStatisticsRequest``/``ResponseBody``) ``IsGlobe`` (1 domestic,
                              2 international), ``StartDate``/``EndDate`` (yyyyMMdd, China time),
                              ``PageIndex`` (≥1), ``PageSize`` (1~50), ``TemplateType``?, ``SignName``?:
                              ``Data.TargetList`` per send date (``TotalCount``, ``RespondedSuccessCount``,
                              ``RespondedFailCount``, ``NoRespondedCount``) counted from the simulated
                              records, one per number (the real TotalCount counts billed messages)
  (both from the account's catalogue, by default the simulated traffic's, simulate/payloads/metadata.py;
  an unknown code is ``isv.SMS_TEMPLATE_ILLEGAL``, an unknown sign ``isv.SMS_SIGNATURE_ILLEGAL``)

Authentication, whichever the caller uses:

* §5.4 RPC signature: ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))`` with
  ``StringToSign = HTTPMethod + "&" + specialUrlEncode("/") + "&" + specialUrlEncode(sorted query)``
  over every parameter but ``Signature`` (query and form body), ``SignatureMethod=HMAC-SHA1``,
  ``SignatureVersion=1.0``. The official SDK sends this when ``Config.signature_algorithm='v2'``.
* ``ACS3-HMAC-SHA256`` (the SDK's default, not in the document): an ``Authorization`` header
  ``ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<h1;h2>,Signature=<hex>`` over the canonical
  request (method, path, canonical query, signed headers, hex SHA-256 of the body); ``Action`` and
  ``Version`` then come from ``x-acs-action``/``x-acs-version``, time and nonce from
  ``x-acs-date``/``x-acs-signature-nonce``.

Check order: Version (``InvalidVersion``) -> Action (``InvalidAction.NotFound``) -> mandatory
common parameters (``Missing<Name>``) -> AccessKeyId (``InvalidAccessKeyId.NotFound``) -> method
(``IncompleteSignature``) -> Timestamp (``InvalidTimeStamp.Format``, ``InvalidTimeStamp.Expired``
outside ±15 minutes) -> signature (``SignatureDoesNotMatch``) -> nonce (``SignatureNonceUsed``,
remembered for the 15-minute window; only a correctly signed request uses a nonce up) -> the
action. Gateway errors answer HTTP 400 (404 for an unknown key or action) with
``{"RequestId", "HostId", "Code", "Message"}``; business errors (``isv.*``, §6.1 messages) answer
HTTP 200 like the real service. ``Format=XML`` (the §5.4 worked example) answers XML
(``<SendSmsResponse>…``, errors as ``<Error>…``), anything else JSON. Codes not in §6.1:
``Missing<Name>``, ``InvalidTimeStamp.Format`` and ``IncompleteSignature`` (as the real gateway).

Every accepted number is one record: ``SendStatus`` 1 (等待回执) until :meth:`report` sets 3
(发送成功) or 2 (发送失败) with ``ErrCode``/``ReceiveDate``. Each report (and :meth:`uplink`
message) is also queued for the §11.3 HTTP batch push: :meth:`push_to` + :meth:`flush_pushes` POST
due records as JSON arrays and keep them until the receiver answers ``{"code": 0, ...}``; a failed
record is retried 1, 5, 10, 30, 60, 60, 60, 60, 60 minutes later (times ``time_scale``) and dropped
after 10 tries.

Phone numbers, message contents and the secret are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus
from xml.sax.saxutils import escape

import aiohttp
import msgspec
from aiohttp import web

from sms_analytics.model.providers import segments
from sms_analytics.simulate.payloads.metadata import (
    ALIYUN_SIGN_CATALOGUE,
    ALIYUN_TEMPLATE_CATALOGUE,
    SimSign,
    SimTemplate,
)

logger = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8))
API_VERSION = "2017-05-25"
HOST_ID = "dysmsapi.aliyuncs.com"
TIMESTAMP_WINDOW_S = 15 * 60  # §6.1 InvalidTimeStamp.Expired: "不在15分钟内"
MAX_SEND_NUMBERS = 1000  # §7.1 "上限为1000个手机号码"
MAX_BATCH_NUMBERS = 100  # §7.2 "最多可以向100个手机号码分别发送短信"
MAX_PAGE_SIZE = 50  # §8.1 PageSize "取值范围为1~50"
QUERY_DAYS = 30  # §8.1 SendDate "支持查询最近30天的记录"
PUSH_RETRY_MINUTES = (1, 5, 10, 30, 60, 60, 60, 60, 60)  # §11.3 重新推送
PUSH_MAX_TRIES = 10  # §11.3 "如果推送10次后仍失败，不再重试"
PUSH_BATCH = 100  # records per push request (the document gives no limit)

SEND_PENDING, SEND_FAILED, SEND_OK = 1, 2, 3  # §8.1 SendStatus
NO_REVIEW_REMARK = "无审核备注"  # §9.3 / §10.2 Reason while approved or under review


class ApiError(Exception):
    """An error reply: ``code``/``message`` as in §6.1, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 200) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _isv(code: str, message: str) -> Callable[[], ApiError]:
    return lambda: ApiError(code, message, 200)


# §6.1 API 错误码 (business errors: HTTP 200 with Code != OK)
MOBILE_NUMBER_ILLEGAL = _isv("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
MOBILE_COUNT_OVER_LIMIT = _isv("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
INVALID_PARAMETERS = _isv("isv.INVALID_PARAMETERS", "参数异常")
INVALID_JSON_PARAM = _isv("isv.INVALID_JSON_PARAM", "JSON参数不合法, 只接受字符串值")
PARAM_LENGTH_LIMIT = _isv("isv.PARAM_LENGTH_LIMIT", "参数超出长度限制")
PARAM_NOT_SUPPORT_URL = _isv("isv.PARAM_NOT_SUPPORT_URL", "不支持URL")
TEMPLATE_MISSING_PARAMETERS = _isv("isv.TEMPLATE_MISSING_PARAMETERS", "模版缺少变量")
SMS_TEMPLATE_ILLEGAL = _isv("isv.SMS_TEMPLATE_ILLEGAL", "短信模版不合法")
SMS_SIGNATURE_ILLEGAL = _isv("isv.SMS_SIGNATURE_ILLEGAL", "短信签名不合法")


def _gateway(code: str, message: str, status: int = 400) -> ApiError:
    return ApiError(code, message, status)


def signature_does_not_match() -> ApiError:
    return _gateway("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")


def _missing(name: str) -> ApiError:
    return _gateway(f"Missing{name}", f"{name} is mandatory for this action.")


_DOMESTIC = re.compile(r"^1\d{10}$")  # §7.1 国内短信: 11位手机号码
_INTERNATIONAL = re.compile(r"^[2-9]\d{7,15}$")  # §7.1 国际/港澳台: 国际区号+号码, e.g. 85200000000
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_SEND_DATE = re.compile(r"^\d{8}$")
_URL = re.compile(r"(?i)(https?://|www\.)")
_VAR = re.compile(r"\$\{(\w+)\}")


def valid_phone(phone: str) -> bool:
    return bool(_DOMESTIC.match(phone) or _INTERNATIONAL.match(phone))


def special_url_encode(value: str) -> str:
    """§5.4 ``specialUrlEncode``: Java ``URLEncoder.encode(value, "UTF-8")`` (which keeps
    ``A-Za-z0-9 . - * _`` and turns a space into ``+``), then ``+`` -> ``%20``, ``*`` -> ``%2A``,
    ``%7E`` -> ``~``."""
    java = quote_plus(value, safe="*", encoding="utf-8").replace("~", "%7E")
    return java.replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """§5.4 step 3 over every parameter except ``Signature``, sorted by key."""
    canonical = "&".join(f"{special_url_encode(k)}={special_url_encode(v)}"
                         for k, v in sorted(params.items()) if k != "Signature")
    return f"{method.upper()}&{special_url_encode('/')}&{special_url_encode(canonical)}"


def rpc_signature(access_key_secret: str, string_to_sign: str) -> str:
    """§5.4 step 4: HmacSHA1 keyed with ``AccessKeySecret + "&"``, Base64."""
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign.encode("utf-8"),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def acs3_signature(access_key_secret: str, canonical_request: str) -> str:
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return hmac.new(access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def china_time(ts: float) -> str:
    """Epoch seconds -> ``yyyy-MM-dd HH:mm:ss`` in China time (the §8.1 / §11.3 format)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def china_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, CHINA_TZ).date()


def _statistics_date(raw: str) -> date:
    """QuerySendStatistics StartDate/EndDate: yyyyMMdd."""
    if not _SEND_DATE.match(raw.strip()):
        raise INVALID_PARAMETERS()
    try:
        return datetime.strptime(raw.strip(), "%Y%m%d").date()  # noqa: DTZ007 - only the calendar date is kept
    except ValueError:
        raise INVALID_PARAMETERS() from None


def _page(raw: str) -> int:
    """PageIndex / PageSize: a positive integer."""
    if not raw.strip().isdigit() or int(raw) < 1:
        raise INVALID_PARAMETERS()
    return int(raw)


def _statistics_row(day: date, messages: list[_Message], now: float) -> dict[str, Any]:
    """One TargetList entry: a record counts as responded once its report time has come."""
    success = sum(1 for m in messages if m.status == SEND_OK and m.report_at is not None and m.report_at <= now)
    fail = sum(1 for m in messages if m.status == SEND_FAILED and m.report_at is not None and m.report_at <= now)
    return {"SendDate": day.strftime("%Y%m%d"), "TotalCount": len(messages), "RespondedSuccessCount": success,
            "RespondedFailCount": fail, "NoRespondedCount": len(messages) - success - fail}


def _segments(content: str) -> int:
    """``sms_size``: up to 70 characters is one message, a longer one is billed per 67."""
    return segments(content)


@dataclass
class _Message:
    biz_id: str
    phone: str
    sign: str
    template: str
    sent_at: float
    out_id: str
    content: str
    status: int = SEND_PENDING
    err_code: str = ""
    err_msg: str = ""
    report_at: float | None = None


@dataclass
class _Push:
    body: dict[str, Any]
    next_at: float
    seq: int
    tries: int = 0


class AliyunSimulator:
    """An in-memory Dysmsapi account with one AccessKey pair."""

    MAX_PARAM_CHARS = 20  # §6.1 isv.PARAM_LENGTH_LIMIT "每个变量的长度限制为1~20字符"

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        rng_seed: int = 1,
        clock: Callable[[], float] = time.time,
        signs: Iterable[str] | None = None,
        templates: Mapping[str, str] | None = None,
        template_catalogue: Iterable[SimTemplate] = ALIYUN_TEMPLATE_CATALOGUE,
        sign_catalogue: Iterable[SimSign] = ALIYUN_SIGN_CATALOGUE,
    ) -> None:
        """``signs``: approved sign names (``None`` accepts any); ``templates``: approved template
        codes -> text with ``${name}`` variables (``None`` accepts any code). ``template_catalogue`` /
        ``sign_catalogue``: what QuerySmsTemplate / QuerySmsSign describe."""
        self.template_catalogue = {t.code: t for t in template_catalogue}
        self.sign_catalogue = {s.name: s for s in sign_catalogue}
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.rng = random.Random(rng_seed)
        self.clock = clock
        self.signs = None if signs is None else set(signs)
        self.templates = None if templates is None else dict(templates)
        self.report_url: str | None = None
        self.up_url: str | None = None
        self.time_scale = 1.0
        self.reports: list[dict[str, Any]] = []  # every SmsReport body made, in order
        self._messages: list[_Message] = []
        self._biz_ids: set[str] = set()
        self._nonces: dict[str, float] = {}
        self._report_queue: list[_Push] = []
        self._up_queue: list[_Push] = []
        self._seq = itertools.count(1)
        self._push_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"AliyunSimulator(access_key_id={self.access_key_id!r}, sent={len(self._messages)})"

    # --- the application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        # A GET SendSms with 1000 numbers has a ~13 KB request line: raise aiohttp's 8 KB limit.
        app = web.Application(handler_args={"max_line_size": 64 * 1024, "max_field_size": 64 * 1024})
        app.router.add_route("GET", "/", self._handle)
        app.router.add_route("POST", "/", self._handle)
        return app

    # --- test and traffic helpers ---------------------------------------------------------------

    @property
    def sent(self) -> list[tuple[str, str, str, str, float]]:
        """Every accepted number: ``(biz_id, phone, sign, template, sent_at)``."""
        return [(m.biz_id, m.phone, m.sign, m.template, m.sent_at) for m in self._messages]

    @property
    def pending_pushes(self) -> dict[str, int]:
        return {"reports": len(self._report_queue), "up": len(self._up_queue)}

    def report(self, biz_id: str, phone: str, *, delivered: bool = True, err_code: str = "DELIVERED",
               at: float | None = None, err_msg: str | None = None, push: bool = True) -> dict[str, Any]:
        """Set the final state of one sent number (the first not yet reported one of ``biz_id`` and
        ``phone``; if all are reported, the first is reported again) and queue its SmsReport (§11.3.2)
        for push (``push=False``: only QuerySendDetails will show it, as when a push is lost).
        Returns the SmsReport body. ``KeyError`` if that number was never sent."""
        matches = [m for m in self._messages if m.biz_id == biz_id and m.phone == phone]
        if not matches:
            raise KeyError("no such sent message")
        message = next((m for m in matches if m.status == SEND_PENDING), matches[0])
        return self._report(message, delivered, err_code, at, err_msg, push)

    def report_all(self, *, delivered: bool = True, err_code: str = "DELIVERED", at: float | None = None,
                   err_msg: str | None = None) -> int:
        """Report every number still waiting for its receipt. Returns how many were reported."""
        pending = [m for m in self._messages if m.status == SEND_PENDING]
        for message in pending:
            self._report(message, delivered, err_code, at, err_msg)
        return len(pending)

    def uplink(self, phone: str, content: str, *, sign_name: str = "", dest_code: str = "",
               at: float | None = None) -> dict[str, Any]:
        """Queue one SmsUp message (§11.3.1) for push. Returns its body."""
        when = self.clock() if at is None else at
        body = {"phone_number": phone, "send_time": china_time(when), "content": content,
                "sign_name": sign_name, "dest_code": dest_code,
                "sequence_id": self.rng.randrange(10**9, 10**10)}
        self._up_queue.append(_Push(body, when, next(self._seq)))
        return body

    def push_to(self, report_url: str | None, up_url: str | None, *, time_scale: float = 1.0) -> None:
        """HTTP batch push (§11.3). ``None`` turns that kind off (records stay queued)."""
        self.report_url, self.up_url, self.time_scale = report_url, up_url, time_scale

    async def flush_pushes(self, session: aiohttp.ClientSession) -> dict[str, int]:
        """POST every due record as JSON arrays (≤``PUSH_BATCH`` a request). A record leaves the
        queue when the receiver answers 2xx with a JSON object whose ``code`` is ``0``; otherwise it
        is retried on the §11.3 schedule and dropped after its 10th try. Each record is tried at
        most once a call. Returns ``{"reports": acknowledged, "up": acknowledged, "dropped": n}``."""
        if self._push_lock is None:
            self._push_lock = asyncio.Lock()
        async with self._push_lock:
            reports, dropped_reports = await self._flush(session, self.report_url, self._report_queue, "report")
            ups, dropped_ups = await self._flush(session, self.up_url, self._up_queue, "up")
        return {"reports": reports, "up": ups, "dropped": dropped_reports + dropped_ups}

    # --- internals: records and pushes ----------------------------------------------------------

    def _report(self, message: _Message, delivered: bool, err_code: str, at: float | None,
                err_msg: str | None, push: bool = True) -> dict[str, Any]:
        when = self.clock() if at is None else at
        message.status = SEND_OK if delivered else SEND_FAILED
        message.err_code = err_code
        message.err_msg = err_msg if err_msg is not None else ("用户接收成功" if delivered else err_code)
        message.report_at = when
        body = {
            "phone_number": message.phone,
            "send_time": china_time(message.sent_at),
            "report_time": china_time(when),
            "success": delivered,
            "err_code": err_code,
            "err_msg": message.err_msg,
            "sms_size": str(_segments(message.content)),
            "biz_id": message.biz_id,
            "out_id": message.out_id,
        }
        self.reports.append(body)
        if push:
            self._report_queue.append(_Push(body, when, next(self._seq)))
        return body

    async def _flush(self, session: aiohttp.ClientSession, url: str | None, queue: list[_Push],
                     kind: str) -> tuple[int, int]:
        if not url:
            return 0, 0
        delivered = dropped = 0
        tried: set[int] = set()
        while True:
            now = self.clock()
            batch = sorted((p for p in queue if p.next_at <= now and p.seq not in tried),
                           key=lambda p: (p.next_at, p.seq))[:PUSH_BATCH]
            if not batch:
                break
            tried.update(p.seq for p in batch)
            ok = False
            try:
                async with session.post(url, data=msgspec.json.encode([p.body for p in batch]),
                                        headers={"Content-Type": "application/json; charset=UTF-8"}) as resp:
                    raw = await resp.read()
                    if 200 <= resp.status < 300:
                        try:
                            answer = msgspec.json.decode(raw)
                        except msgspec.DecodeError:
                            answer = None
                        code = answer.get("code") if isinstance(answer, dict) else None
                        ok = code == 0 and not isinstance(code, bool)
            except (TimeoutError, aiohttp.ClientError) as exc:
                logger.info("aliyun sim %s push failed: %s", kind, type(exc).__name__)
            gone = {p.seq for p in batch}
            if ok:
                queue[:] = [p for p in queue if p.seq not in gone]
                delivered += len(batch)
                continue
            logger.info("aliyun sim %s push not acknowledged (%d records)", kind, len(batch))
            for p in batch:
                p.tries += 1
                if p.tries >= PUSH_MAX_TRIES:
                    dropped += 1
                else:
                    p.next_at = now + PUSH_RETRY_MINUTES[p.tries - 1] * 60 * self.time_scale
            queue[:] = [p for p in queue if p.tries < PUSH_MAX_TRIES]
        return delivered, dropped

    # --- internals: the RPC endpoint ------------------------------------------------------------

    def _request_id(self) -> str:
        r = self.rng.getrandbits
        return f"{r(32):08X}-{r(16):04X}-{r(16):04X}-{r(16):04X}-{r(48):012X}"

    def _biz_id(self) -> str:
        while True:
            biz_id = f"{self.rng.randrange(10**17, 10**18)}^0"  # §7.1 "900619746936498440^0"
            if biz_id not in self._biz_ids:
                self._biz_ids.add(biz_id)
                return biz_id

    async def _handle(self, request: web.Request) -> web.Response:
        request_id = self._request_id()
        query = dict(request.query.items())
        fmt = "JSON"
        action = ""
        try:
            body = await request.read()
            params = dict(query)
            if request.content_type == "application/x-www-form-urlencoded" and body:
                try:
                    params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
                except UnicodeDecodeError:
                    raise INVALID_PARAMETERS() from None
            fmt = (params.get("Format") or "JSON").upper()
            authorization = request.headers.get("Authorization", "")
            acs3 = authorization.startswith("ACS3-")
            action = params.get("Action", "") or (request.headers.get("x-acs-action", "") if acs3 else "")
            version = params.get("Version") or (request.headers.get("x-acs-version", "") if acs3 else "")
            if not version:
                raise _missing("Version")
            if version != API_VERSION:
                raise _gateway("InvalidVersion", "Specified parameter Version is not valid.")
            if not action:
                raise _missing("Action")
            handler = {
                "SendSms": self._send_sms,
                "SendBatchSms": self._send_batch_sms,
                "QuerySendDetails": self._query_send_details,
                "QuerySmsTemplate": self._query_sms_template,
                "QuerySmsSign": self._query_sms_sign,
                "QuerySendStatistics": self._query_send_statistics,
            }.get(action)
            if handler is None:
                raise _gateway("InvalidAction.NotFound",
                               "Specified api is not found, please check your url and method", 404)
            if acs3:
                self._verify_acs3(request, query, body, authorization)
            else:
                self._verify_rpc(request.method, params)
            doc = handler(params)
        except ApiError as err:
            if err.status != 200:
                logger.info("aliyun sim refused %s: %s", action or "?", err.code)
            return self._error(err, request_id, fmt, action)
        return self._reply(action, {"RequestId": request_id, **doc}, fmt)

    # --- authentication -------------------------------------------------------------------------

    def _check_time(self, value: str) -> None:
        if not _TIMESTAMP.match(value):
            raise _gateway("InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
        try:
            when = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _gateway("InvalidTimeStamp.Format",
                           "Specified time stamp or date value is not well formatted.") from None
        if abs(self.clock() - when) > TIMESTAMP_WINDOW_S:
            raise _gateway("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _use_nonce(self, nonce: str) -> None:
        now = self.clock()
        if len(self._nonces) > 4096:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
        expires = self._nonces.get(nonce)
        if expires is not None and expires > now:
            raise _gateway("SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[nonce] = now + 2 * TIMESTAMP_WINDOW_S

    def _check_key(self, access_key_id: str) -> None:
        if access_key_id != self.access_key_id:
            raise _gateway("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)

    def _verify_rpc(self, method: str, params: Mapping[str, str]) -> None:
        """§5.4: HMAC-SHA1 over every parameter but ``Signature``."""
        for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce",
                     "Timestamp"):
            if not params.get(name):
                raise _missing(name)
        self._check_key(params["AccessKeyId"])
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise _gateway("IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        self._check_time(params["Timestamp"])
        expected = rpc_signature(self._secret, rpc_string_to_sign(method, params))
        if not hmac.compare_digest(expected.encode("ascii"), params["Signature"].encode("utf-8")):
            raise signature_does_not_match()
        self._use_nonce(params["SignatureNonce"])

    def _verify_acs3(self, request: web.Request, query: Mapping[str, str], body: bytes,
                     authorization: str) -> None:
        """``ACS3-HMAC-SHA256`` (V3 signature), as the official SDK sends it by default."""
        incomplete = _gateway("IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        algorithm, _, rest = authorization.strip().partition(" ")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            key, sep, value = part.strip().partition("=")
            if sep:
                fields[key] = value.strip()
        if algorithm != "ACS3-HMAC-SHA256" or not all(fields.get(k) for k in
                                                      ("Credential", "SignedHeaders", "Signature")):
            raise incomplete
        signed = fields["SignedHeaders"].lower().split(";")
        present = {name.lower() for name in request.headers}
        if "host" not in signed or any(h.startswith("x-acs-") and h not in signed for h in present):
            raise incomplete
        date_value = request.headers.get("x-acs-date", "")
        nonce = request.headers.get("x-acs-signature-nonce", "")
        if not date_value:
            raise _missing("x-acs-date")
        if not nonce:
            raise _missing("x-acs-signature-nonce")
        self._check_key(fields["Credential"])
        self._check_time(date_value)
        canonical_query = "&".join(sorted(f"{special_url_encode(k)}={special_url_encode(v)}"
                                          for k, v in query.items()))
        headers = "".join(
            f"{name}:{','.join(sorted(v.strip() for v in request.headers.getall(name, [])))}\n"
            for name in sorted(signed))
        canonical = "\n".join([
            request.method.upper(),
            quote(request.path, safe="/~"),
            canonical_query,
            headers,
            ";".join(sorted(signed)),
            hashlib.sha256(body).hexdigest(),
        ])
        expected = acs3_signature(self._secret, canonical)
        if not hmac.compare_digest(expected.encode("ascii"), fields["Signature"].lower().encode("utf-8")):
            raise signature_does_not_match()
        self._use_nonce(nonce)

    # --- actions --------------------------------------------------------------------------------

    @staticmethod
    def _required(params: Mapping[str, str], name: str) -> str:
        value = params.get(name, "")
        if not value.strip():
            raise _missing(name)
        return value

    @staticmethod
    def _json_array(raw: str) -> list[Any]:
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise INVALID_JSON_PARAM() from None
        if not isinstance(value, list):
            raise INVALID_JSON_PARAM()
        return value

    def _check_sign(self, sign: Any) -> str:
        if not isinstance(sign, str) or not sign.strip():
            raise SMS_SIGNATURE_ILLEGAL()
        if self.signs is not None and sign not in self.signs:
            raise SMS_SIGNATURE_ILLEGAL()
        return sign

    def _check_template(self, template: str) -> None:
        if self.templates is not None and template not in self.templates:
            raise SMS_TEMPLATE_ILLEGAL()

    def _template_vars(self, value: Any) -> dict[str, str]:
        """TemplateParam: a JSON object of string values, each 1~20 characters, no URLs (§6.1)."""
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            try:
                value = msgspec.json.decode(value)
            except msgspec.DecodeError:
                raise INVALID_JSON_PARAM() from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise INVALID_JSON_PARAM()
        for v in value.values():
            if not 1 <= len(v) <= self.MAX_PARAM_CHARS:
                raise PARAM_LENGTH_LIMIT()
            if _URL.search(v):
                raise PARAM_NOT_SUPPORT_URL()
        return value

    def _content(self, sign: str, template: str, variables: Mapping[str, str]) -> str:
        text = self.templates.get(template) if self.templates is not None else None
        if text is None:
            tail = ",".join(f"{k}={v}" for k, v in variables.items())
            return f"【{sign}】{template}" + (f" {tail}" if tail else "")
        missing = [name for name in _VAR.findall(text) if name not in variables]
        if missing:
            raise TEMPLATE_MISSING_PARAMETERS()
        return f"【{sign}】" + _VAR.sub(lambda m: variables[m.group(1)], text)

    def _record(self, items: list[tuple[str, str, str]], template: str, out_id: str) -> str:
        biz_id = self._biz_id()
        now = self.clock()
        for phone, sign, content in items:
            self._messages.append(_Message(biz_id, phone, sign, template, now, out_id, content))
        return biz_id

    def _send_sms(self, params: Mapping[str, str]) -> dict[str, Any]:
        raw_phones = self._required(params, "PhoneNumbers")
        sign = self._required(params, "SignName")
        template = self._required(params, "TemplateCode")
        phones = [p.strip() for p in raw_phones.split(",")]
        if len(phones) > MAX_SEND_NUMBERS:
            raise MOBILE_COUNT_OVER_LIMIT()
        if not all(valid_phone(p) for p in phones):
            raise MOBILE_NUMBER_ILLEGAL()
        self._check_sign(sign)
        self._check_template(template)
        variables = self._template_vars(params.get("TemplateParam") or params.get("TemplateParameter"))
        content = self._content(sign, template, variables)
        biz_id = self._record([(p, sign, content) for p in phones], template, params.get("OutId", ""))
        logger.debug("aliyun sim SendSms accepted: %d numbers", len(phones))
        return {"Code": "OK", "Message": "OK", "BizId": biz_id}

    def _send_batch_sms(self, params: Mapping[str, str]) -> dict[str, Any]:
        phones = self._json_array(self._required(params, "PhoneNumberJson"))
        signs = self._json_array(self._required(params, "SignNameJson"))
        template = self._required(params, "TemplateCode")
        raw_vars = params.get("TemplateParamJson")
        variables = self._json_array(raw_vars) if raw_vars else None
        if not all(isinstance(p, str) for p in phones):
            raise INVALID_JSON_PARAM()
        if len(phones) > MAX_BATCH_NUMBERS:
            raise MOBILE_COUNT_OVER_LIMIT()
        if not phones or len(signs) != len(phones) or (variables is not None and len(variables) != len(phones)):
            raise INVALID_PARAMETERS()
        if not all(valid_phone(p) for p in phones):
            raise MOBILE_NUMBER_ILLEGAL()
        for sign in signs:
            self._check_sign(sign)
        self._check_template(template)
        items = []
        for index, (phone, sign) in enumerate(zip(phones, signs, strict=True)):
            values = self._template_vars(variables[index]) if variables is not None else {}
            items.append((phone, sign, self._content(sign, template, values)))
        biz_id = self._record(items, template, params.get("OutId", ""))
        logger.debug("aliyun sim SendBatchSms accepted: %d numbers", len(items))
        return {"Code": "OK", "Message": "OK", "BizId": biz_id}

    def _query_send_details(self, params: Mapping[str, str]) -> dict[str, Any]:
        phone = self._required(params, "PhoneNumber").strip()
        raw_date = self._required(params, "SendDate").strip()
        raw_size = self._required(params, "PageSize").strip()
        raw_page = self._required(params, "CurrentPage").strip()
        if not valid_phone(phone):
            raise MOBILE_NUMBER_ILLEGAL()
        if not _SEND_DATE.match(raw_date):  # §6.1: "20170101" is right, "2017-01-01" is not
            raise INVALID_PARAMETERS()
        try:
            send_date = datetime.strptime(raw_date, "%Y%m%d").date()  # noqa: DTZ007 - only the calendar date is kept
        except ValueError:
            raise INVALID_PARAMETERS() from None
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            raise INVALID_PARAMETERS()
        if not raw_page.isdigit() or int(raw_page) < 1:
            raise INVALID_PARAMETERS()
        age = (china_date(self.clock()) - send_date).days
        if not 0 <= age < QUERY_DAYS:
            raise INVALID_PARAMETERS()
        biz_id = params.get("BizId") or None
        matches = [m for m in self._messages
                   if m.phone == phone and china_date(m.sent_at) == send_date
                   and (biz_id is None or m.biz_id == biz_id)]
        size, page = int(raw_size), int(raw_page)
        return {
            "Code": "OK",
            "Message": "OK",
            "TotalCount": len(matches),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": [self._dto(m) for m in matches[(page - 1) * size:page * size]]},
        }

    def _query_sms_template(self, params: Mapping[str, str]) -> dict[str, Any]:
        template = self.template_catalogue.get(self._required(params, "TemplateCode").strip())
        if template is None:
            raise SMS_TEMPLATE_ILLEGAL()
        return {"Code": "OK", "Message": "OK", "TemplateCode": template.code, "TemplateName": template.name,
                "TemplateContent": template.content, "TemplateType": template.kind,
                "TemplateStatus": template.status, "Reason": template.reason or NO_REVIEW_REMARK,
                "CreateDate": china_time(template.created)}

    def _query_sms_sign(self, params: Mapping[str, str]) -> dict[str, Any]:
        sign = self.sign_catalogue.get(self._required(params, "SignName").strip())
        if sign is None:
            raise SMS_SIGNATURE_ILLEGAL()
        return {"Code": "OK", "Message": "OK", "SignName": sign.name, "SignStatus": sign.status,
                "Reason": sign.reason or NO_REVIEW_REMARK, "CreateDate": china_time(sign.created)}

    def _query_send_statistics(self, params: Mapping[str, str]) -> dict[str, Any]:
        is_globe = self._required(params, "IsGlobe").strip()
        start, end = (_statistics_date(self._required(params, name)) for name in ("StartDate", "EndDate"))
        size, page = _page(self._required(params, "PageSize")), _page(self._required(params, "PageIndex"))
        if is_globe not in ("1", "2") or end < start or size > MAX_PAGE_SIZE:
            raise INVALID_PARAMETERS()
        sign, kind = params.get("SignName") or None, params.get("TemplateType") or None
        now = self.clock()
        days: dict[date, list[_Message]] = {}
        for m in self._messages:
            day = china_date(m.sent_at)
            domestic = _DOMESTIC.match(m.phone) is not None
            if start <= day <= end and domestic == (is_globe == "1") and sign in (None, m.sign) \
                    and kind in (None, self._template_kind(m.template)):
                days.setdefault(day, []).append(m)
        rows = [_statistics_row(day, found, now) for day, found in sorted(days.items())]
        return {"Code": "OK", "Message": "OK",
                "Data": {"TotalSize": len(rows), "TargetList": rows[(page - 1) * size:page * size]}}

    def _template_kind(self, code: str) -> str | None:
        template = self.template_catalogue.get(code)
        return None if template is None else str(template.kind)

    @staticmethod
    def _dto(m: _Message) -> dict[str, Any]:
        dto: dict[str, Any] = {"PhoneNum": m.phone, "SendStatus": m.status, "TemplateCode": m.template,
                               "Content": m.content, "SendDate": china_time(m.sent_at)}
        if m.report_at is not None:
            dto["ErrCode"] = m.err_code
            dto["ReceiveDate"] = china_time(m.report_at)
        if m.out_id:
            dto["OutId"] = m.out_id
        return dto

    # --- replies --------------------------------------------------------------------------------

    @staticmethod
    def _xml(root: str, doc: Mapping[str, Any]) -> bytes:
        parts = ["<?xml version='1.0' encoding='UTF-8'?>", f"<{root}>"]

        def emit(key: str, value: Any) -> None:
            if isinstance(value, Mapping):
                parts.append(f"<{key}>")
                for k, v in value.items():
                    emit(k, v)
                parts.append(f"</{key}>")
            elif isinstance(value, list):
                for item in value:
                    emit(key, item)
            else:
                text = ("true" if value else "false") if isinstance(value, bool) else str(value)
                parts.append(f"<{key}>{escape(text)}</{key}>")

        for k, v in doc.items():
            emit(k, v)
        parts.append(f"</{root}>")
        return "".join(parts).encode("utf-8")

    def _reply(self, action: str, doc: dict[str, Any], fmt: str, status: int = 200) -> web.Response:
        if fmt == "XML":
            return web.Response(status=status, body=self._xml(f"{action}Response", doc),
                                headers={"Content-Type": "text/xml;charset=utf-8"})
        return web.Response(status=status, body=msgspec.json.encode(doc), content_type="application/json",
                            charset="utf-8")

    def _error(self, err: ApiError, request_id: str, fmt: str, action: str) -> web.Response:
        if err.status == 200:  # a business error answers like a success, with its own Code
            return self._reply(action, {"RequestId": request_id, "Code": err.code, "Message": err.message}, fmt)
        doc = {"RequestId": request_id, "HostId": HOST_ID, "Code": err.code, "Message": err.message}
        if fmt == "XML":
            return web.Response(status=err.status, body=self._xml("Error", doc),
                                headers={"Content-Type": "text/xml;charset=utf-8"})
        return web.Response(status=err.status, body=msgspec.json.encode(doc), content_type="application/json",
                            charset="utf-8")
