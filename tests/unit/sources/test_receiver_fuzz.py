"""Fuzzing every ingest HTTP endpoint with generated malformed bodies (hypothesis), over real HTTP.

The rules, checked for every body:
- never a 5xx, and the handler never raises (a parser bug would show as a 500, or as a rejection
  whose reason is `internal error while parsing`, which fails the test too);
- a body that cannot be used at all is answered 400 in the provider's error shape and its bytes
  are dead-lettered once (index -1);
- otherwise every record is either published or dead-lettered with its reason (never both, never
  neither): for the generated cases we know which records are valid, and exactly those are
  published; each dead letter holds the record as it was sent.

The bulk (well over 10,000 bodies, counted and printed by `test_zz_fuzz_summary`) runs the real
`Receiver` app in-process behind aiohttp's TestServer with a recording subclass of `Publisher`
that routes and encodes each event exactly as the real one does and keeps what it would send.
`test_real_broker_*` drive a sample of the same cases through the real `Publisher` on the embedded
broker and read `sms.deadletter.v1` and the event topics back with aiokafka; the last one sends
mixed batches through the running pipeline and checks `sms.messages` holds exactly the valid ones.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sms_analytics import logs
from sms_analytics.model.events import PROVIDERS, ConversionEvent, ReceiptEvent, ReplyEvent, SendEvent, encode
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.sources.base.fields import INTERNAL_ERROR, Identities, TimeWindow
from sms_analytics.sources.producer import Publisher, route
from sms_analytics.sources.receiver import INGEST_ENDPOINTS, Guards, Receiver
from tests.conftest import TOKEN

CHINA = timezone(timedelta(hours=8))
DAY_MS = 86_400_000
MAX_BODY = 5 * 1024 * 1024
IDS = Identities(PhoneHasher(b"fuzz-key-0123456789abcdef"))
WINDOW = TimeWindow(past_ms=30 * DAY_MS, future_ms=DAY_MS)
ENVELOPES = ("/v1/sends/aliyun", "/v1/sends/tencent", "/v1/sends/kx")


def fuzz(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# --- what the receiver would have sent ---------------------------------------------------------------

@dataclass
class Letter:
    raw: bytes
    reason: str
    endpoint: str
    index: int


class RecordingPublisher(Publisher):
    """The real Publisher's routing and encoding, without the broker: keeps what it would send."""

    def __init__(self) -> None:  # no producer
        self.ready = True
        self.events: list[Any] = []
        self.letters: list[Letter] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, events: Sequence[Any], rejected: Sequence[Any], endpoint: str) -> None:
        for event in events:
            route(event)
            encode(event)
        self.events.extend(events)
        for r in rejected:
            await self.dead_letter(r.raw, r.reason, endpoint, r.index)

    async def dead_letter(self, raw: bytes, reason: str, endpoint: str, index: int = -1) -> None:
        reason.encode()  # the header must encode (strict UTF-8)
        self.letters.append(Letter(raw, reason, endpoint, index))

    def take(self) -> tuple[list[Any], list[Letter]]:
        out = self.events, self.letters
        self.events, self.letters = [], []
        return out


# --- JSON without a depth limit (orjson writes 255 levels; the bodies nest up to 10,000) -------------

def dumps(value: Any) -> bytes:
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, list):
            out.append(b"[")
            stack.append(b"]")
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(b",")
        elif isinstance(item, dict):
            out.append(b"{")
            stack.append(b"}")
            pairs = list(item.items())
            for i in range(len(pairs) - 1, -1, -1):
                stack.append(pairs[i][1])
                stack.append(orjson.dumps(pairs[i][0]) + b":")
                if i:
                    stack.append(b",")
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item).encode())  # beyond 64 bits too (orjson reads those as floats)
        else:
            out.append(orjson.dumps(item))
    return b"".join(out)


def nested(depth: int, leaf: Any = 1, as_dict: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


# --- choices: from hypothesis (shrinkable) or from a seeded Random (the real-broker tests) ------------

class Draw:
    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any] | None = None, rng: random.Random | None = None):
        self._draw, self._rng = draw, rng

    def choice(self, seq: Sequence[Any]) -> Any:
        return self._draw(st.sampled_from(seq)) if self._draw else self._rng.choice(seq)  # type: ignore[union-attr]

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi)) if self._draw else self._rng.randint(lo, hi)  # type: ignore[union-attr]

    def text(self, max_size: int = 8) -> str:
        if self._draw:
            return self._draw(st.text(max_size=max_size))
        pool = "abcXYZ019 短信签名【】😀\u202e\t\"\\/"
        return "".join(self._rng.choice(pool) for _ in range(self._rng.randint(0, max_size)))  # type: ignore[union-attr]

    def token(self) -> str:
        return f"{self.integer(0, 2**40):x}"


# --- the endpoints' records ----------------------------------------------------------------------------

def china(ms: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(ms / 1000, CHINA).strftime(fmt)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CHINA).isoformat()


TIME_FORMATS: dict[str, Callable[[int], Any]] = {
    "china": china, "compact": lambda ms: china(ms, "%Y%m%d%H%M%S"), "epoch": lambda ms: ms // 1000, "iso": iso,
}


def bad_times(fmt: str, now: int) -> list[Any]:
    """Unparseable, impossible, or outside the window (30 days back, 1 day ahead) in each format."""
    old, ahead = TIME_FORMATS[fmt](now - 40 * DAY_MS), TIME_FORMATS[fmt](now + 3 * DAY_MS)
    return {
        "china": ["2017-02-30 10:00:00", "2024-13-01 00:00:00", "0000-00-00 00:00:00", "9999-12-31 23:59:59",
                  "2024-01-01T00:00:00", "", "yesterday", "1999-12-31 23:59:59", "2024-01-01 24:00:00", old, ahead],
        "compact": ["20240230100000", "99991231235959", "00000000000000", "2024010100000", "2024O101000000",
                    "19991231235959", old, ahead],
        "epoch": [1e308, -1, 0, 2**63, -(2**63), 1e10, 946684799, "1457336869", old, ahead],
        "iso": ["2024-02-30T00:00:00+08:00", "2024-01-01T00:00:00", "9999-12-31T23:59:59+14:00", 1e308, -1,
                "0001-01-01T00:00:00Z", "2024-01-01T00:00:00+25:00", "now", old, ahead],
    }[fmt]


BAD_NUMBERS = ["abc", "138001380000000000000", "12345", "+", "1380013800a", "+999123", "00", "８６abc", "13 8",
               "+86-1", "1" * 21, "0", "86", "++8613800138000", "138.0013.8000", "(138)00138000", "13800138000;",
               "+86138001380000000", "null", "-", "1e10", 0, -13800138000, 99999999999999999999, 1.38e10,
               "+8612345", "02512345678", "+8602512345678"]
WRONG_TYPES: list[Any] = [[], {}, [1, "a"], {"k": [None]}, True, False]
HUGE_SIZES = [4097, 5000, 20_000, 300_000]
DEPTHS = [2, 64, 254, 255, 256, 512, 1000]
UNKNOWN_CODES = ["ZZ:9999", "isv.NEVER_SEEN", "未知错误码", "E" * 64, "-0", "DELIVRD ", "0x1F", "💥", "NULL"]


@dataclass(frozen=True)
class Spec:
    event: str  # send | receipt | reply
    phone: str  # the field holding the number ("" for the Alibaba envelope: the record is the number)
    required: tuple[str, ...]  # missing -> rejected
    checked: tuple[str, ...]  # always read and validated: a wrong type or a huge string -> rejected
    times: dict[str, str] = field(default_factory=dict)  # field -> format
    single_object: bool = False  # one object is accepted as one record


SPECS: dict[str, Spec] = {
    "/v1/sends": Spec("send", "phone", ("provider", "message_id", "phone"),
                      ("provider", "message_id", "phone", "sent_at", "template", "sign", "out_id", "segments"),
                      {"sent_at": "iso"}, single_object=True),
    "/v1/conversions": Spec("conversion", "phone", ("provider", "phone", "template", "converted_at"),
                            ("provider", "phone", "template", "converted_at", "sent_from", "sent_to"),
                            {"converted_at": "iso"}, single_object=True),
    "/callbacks/aliyun/sms-report": Spec(
        "receipt", "phone_number", ("phone_number", "biz_id", "success", "report_time"),
        ("phone_number", "send_time", "report_time", "success", "err_code", "err_msg", "biz_id", "out_id"),
        {"report_time": "china", "send_time": "china"}),
    "/callbacks/aliyun/sms-up": Spec(
        "reply", "phone_number", ("phone_number", "sequence_id", "content", "send_time"),
        ("phone_number", "send_time", "content", "sign_name", "dest_code", "sequence_id"), {"send_time": "china"}),
    "/callbacks/tencent/status": Spec(
        "receipt", "mobile", ("mobile", "report_status", "sid", "user_receive_time"),
        ("user_receive_time", "nationcode", "mobile", "report_status", "errmsg", "description", "sid", "ext"),
        {"user_receive_time": "china"}),
    "/callbacks/tencent/reply": Spec(
        "reply", "mobile", ("mobile", "text", "time"), ("extend", "mobile", "nationcode", "sign", "text", "time"),
        {"time": "epoch"}, single_object=True),
    "/callbacks/kx/report": Spec("receipt", "mobile", ("mobile", "code", "taskid", "time"),
                                 ("time", "taskid", "code", "msg", "mobile", "messageid"), {"time": "compact"}),
    "/callbacks/kx/mo": Spec("reply", "mobile", ("mobile", "msgcontent", "id", "time"),
                             ("id", "time", "msgcontent", "srcid", "mobile"), {"time": "compact"}),
    "/v1/sends/aliyun": Spec("send", "", (), ()),
    "/v1/sends/tencent": Spec("send", "PhoneNumber", ("PhoneNumber", "Code", "SerialNo"),
                              ("PhoneNumber", "Code", "SerialNo", "SessionContext")),
    "/v1/sends/kx": Spec("send", "mobile", ("mobile",), ("mobile", "msgcontent")),
}
assert set(SPECS) == set(INGEST_ENDPOINTS)

Key = tuple[str, ...]


def national(i: int) -> str:
    return f"138{i:08d}"


def phone_as(d: Draw, i: int, *, nationcode: bool = False) -> Any:
    n = national(i)
    forms: list[Any] = [n, "+86" + n, "+86 " + n[:3] + " " + n[3:]]
    if not nationcode:
        forms += ["86" + n, "0086" + n, int(n), "１３８" + n[3:]]
    return d.choice(forms)


def recent(d: Draw, now: int) -> int:
    return now - d.integer(1, 6 * 3600) * 1000


@dataclass
class Rec:
    """One generated record: its JSON value, and the event key it must produce (None: must be rejected)."""
    value: Any
    key: Key | None
    cls: str  # valid | unknown_codes | missing_fields | wrong_types | ...


def valid_record(endpoint: str, i: int, d: Draw, now: int, tag: str) -> tuple[dict[str, Any], Key]:
    e164 = "+86" + national(i)
    if endpoint == "/v1/sends":
        mid = f"{tag}s{i}"
        rec = {"provider": d.choice(PROVIDERS), "message_id": mid, "phone": phone_as(d, i),
               "sent_at": d.choice([iso(recent(d, now)), recent(d, now) // 1000]), "template": "SMS_" + d.text(),
               "sign": d.text(), "out_id": d.text(), "segments": d.integer(1, 3)}
        return rec, ("send", mid, e164)
    if endpoint == "/v1/conversions":  # the window form (no message_id): the template names the record
        template = f"{tag}c{i}"
        converted = recent(d, now)
        rec = {"provider": d.choice(PROVIDERS), "phone": phone_as(d, i), "template": template,
               "converted_at": d.choice([iso(converted), converted // 1000]), "sent_from": iso(converted - 600_000),
               "sent_to": converted // 1000}
        return rec, ("conversion", template)
    if endpoint == "/callbacks/aliyun/sms-report":
        biz = f"{tag}a{i}^0"
        sent = recent(d, now)
        ok = d.choice([True, False, "true", "FALSE"])
        rec = {"phone_number": phone_as(d, i), "send_time": china(sent), "report_time": china(sent + 5000),
               "success": ok, "err_code": d.choice(["DELIVERED", "MK:0001", "IB:0064"]), "err_msg": d.text(),
               "sms_size": d.choice(["1", 2, "x"]), "biz_id": biz, "out_id": d.text()}
        return rec, ("receipt", biz, e164)
    if endpoint == "/callbacks/aliyun/sms-up":
        content = f"{tag}up{i} {d.text()}"
        rec = {"phone_number": phone_as(d, i), "send_time": china(recent(d, now)), "content": content,
               "sign_name": d.text(), "dest_code": "1234", "sequence_id": d.choice([i, str(i)])}
        return rec, ("reply", content)
    if endpoint == "/callbacks/tencent/status":
        sid = f"{tag}t{i}"
        rec = {"user_receive_time": china(recent(d, now)), "nationcode": d.choice(["86", 86, "+86"]),
               "mobile": phone_as(d, i, nationcode=True), "report_status": d.choice(["SUCCESS", "FAIL", "fail"]),
               "errmsg": d.choice(["DELIVRD", "DB:0107"]), "description": d.text(), "sid": sid, "ext": d.text()}
        return rec, ("receipt", sid, e164)
    if endpoint == "/callbacks/tencent/reply":
        text = f"{tag}tr{i} {d.text()}"
        rec = {"extend": d.text(), "mobile": phone_as(d, i, nationcode=True), "nationcode": "86", "sign": d.text(),
               "text": text, "time": d.choice([recent(d, now) // 1000, recent(d, now) / 1000])}
        return rec, ("reply", text)
    if endpoint == "/callbacks/kx/report":
        task = f"{tag}k{i}"
        rec = {"time": china(recent(d, now), "%Y%m%d%H%M%S"), "taskid": task,
               "code": d.choice(["DELIVRD", "UNDELIV", "EXPIRED"]), "msg": d.text(), "mobile": phone_as(d, i),
               "messageid": d.text()}
        return rec, ("receipt", task, e164)
    if endpoint == "/callbacks/kx/mo":
        content = f"{tag}mo{i} {d.text()}"
        rec = {"id": f"{tag}{i}", "time": china(recent(d, now), "%Y%m%d%H%M%S"), "msgcontent": content,
               "srcid": "1069018889001", "mobile": phone_as(d, i)}
        return rec, ("reply", content)
    if endpoint == "/v1/sends/tencent":
        serial = f"5000:{tag}{i}"
        rec = {"SerialNo": serial, "PhoneNumber": "+86" + national(i), "Fee": 1, "SessionContext": "ctx",
               "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
        return rec, ("send", serial, e164)
    if endpoint == "/v1/sends/kx":
        return {d.choice(["mobile", "mobile "]): phone_as(d, i), "msgcontent": "【邦邦快递】" + d.text()}, ("send", "", e164)
    raise AssertionError(endpoint)


RECORD_CLASSES = ["wrong_types", "missing_fields", "huge_strings", "impossible_timestamps", "bad_numbers",
                  "deep_nesting", "not_objects", "unknown_codes"]


def make_record(endpoint: str, i: int, cls: str, d: Draw, now: int, tag: str, *, huge: Sequence[int] = HUGE_SIZES,
                big: bool = False) -> Rec:
    """A record of class `cls`: `valid`/`unknown_codes` must be published, every other class rejected."""
    spec = SPECS[endpoint]
    if endpoint == "/v1/sends/aliyun":  # the record is the number itself (PhoneNumberJson)
        key: Key = ("send", "", "+86" + national(i))
        if cls in ("valid", "unknown_codes"):
            return Rec(phone_as(d, i), key, cls)
        value = {
            "wrong_types": lambda: d.choice([[], {}, True, None, [national(i)]]),
            "huge_strings": lambda: d.choice(["1", "x"]) * d.choice(list(huge)),
            "deep_nesting": lambda: nested(d.choice(DEPTHS), national(i), d.choice([False, True])),
            "not_objects": lambda: d.choice([None, {"phone": national(i)}, [national(i)]]),
        }.get(cls, lambda: d.choice(BAD_NUMBERS))()
        return Rec(value, None, cls)
    rec, key = valid_record(endpoint, i, d, now, tag)
    if cls == "valid":
        return Rec(rec, key, cls)
    if cls == "unknown_codes":  # unknown codes are valid records: categorized `unknown` downstream
        code = d.choice(UNKNOWN_CODES)
        if endpoint == "/callbacks/aliyun/sms-report":
            rec.update(success=False, err_code=code)
        elif endpoint == "/callbacks/tencent/status":
            rec.update(report_status="FAIL", errmsg=code)
        elif endpoint == "/callbacks/kx/report":
            rec["code"] = code
        elif endpoint == "/v1/sends/tencent":
            rec["Code"] = code  # a failed submit; no SerialNo, so message id submit-failed:<RequestId>
            del rec["SerialNo"]
            key = ("send", "submit-failed", key[2])
        elif endpoint == "/v1/sends/kx":
            rec["_result_code"] = code  # goes into response.data.result for this number
        elif endpoint == "/v1/conversions":
            rec["note"] = code  # a field the endpoint does not read
        else:
            text_field = {"/v1/sends": "template", "/callbacks/aliyun/sms-up": "sign_name",
                          "/callbacks/tencent/reply": "sign", "/callbacks/kx/mo": "srcid"}[endpoint]
            rec[text_field] = code
        return Rec(rec, key, cls)
    def present(name: str) -> str:  # KX list entries may spell it "mobile " (the document's sample does)
        return name if name in rec else name + " "

    if cls == "missing_fields":
        del rec[present(d.choice(spec.required))]
    elif cls == "wrong_types":
        name = d.choice(spec.checked)
        rec[present(name)] = d.choice(WRONG_TYPES[:4] if name == "success" else WRONG_TYPES)
    elif cls == "huge_strings":
        rec[present(d.choice(spec.checked))] = d.choice(["x", "1"] if big else ["x", "1", "短"]) * d.choice(list(huge))
    elif cls == "impossible_timestamps" and spec.times:
        name = d.choice(sorted(spec.times))
        rec[name] = d.choice(bad_times(spec.times[name], now))
    elif cls in ("bad_numbers", "impossible_timestamps"):
        rec[present(spec.phone)] = d.choice(BAD_NUMBERS)
    elif cls == "deep_nesting":
        if d.choice([True, False]):
            return Rec(nested(d.choice(DEPTHS), rec, d.choice([False, True])), None, cls)
        rec[present(d.choice(spec.checked))] = nested(d.choice(DEPTHS), "x", d.choice([False, True]))
    elif cls == "not_objects":
        return Rec(d.choice([None, 0, 13800138000, "record", [], [rec], True, 1.5]), None, cls)
    else:
        raise AssertionError(cls)
    return Rec(rec, None, cls)


# --- bodies ---------------------------------------------------------------------------------------------

@dataclass(repr=False)
class Case:
    endpoint: str
    body: bytes
    cls: str
    bad_body: bool | None  # True: 400 expected; False: records expected; None: unknown (check invariants)
    records: list[Rec] | None = None
    doc: Any = None  # the records' container as sent (for raw comparisons)

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 2000 else self.body[:2000] + b"...(%d bytes)" % len(self.body)
        return f"Case({self.endpoint!r}, cls={self.cls!r}, bad_body={self.bad_body}, body={body!r})"


def build_body(endpoint: str, recs: list[Rec], d: Draw, now: int, tag: str, *, single: bool = False,
               sent_at: Any = None) -> tuple[bytes, list[Any]]:
    """The body of `recs` for `endpoint`; returns the body and the list the receiver indexes."""
    values = [r.value for r in recs]
    if endpoint not in ENVELOPES:
        doc: Any = values[0] if single else values
        return dumps(doc), values
    sent = sent_at if sent_at is not None else d.choice([iso(recent(d, now)), recent(d, now) // 1000, None])
    rid = f"{tag}-req"
    if endpoint == "/v1/sends/aliyun":
        biz = f"{tag}biz^0"
        response: dict[str, Any] = {"Code": "OK", "BizId": biz, "RequestId": rid, "Message": "OK"}
        if any(r.cls == "unknown_codes" for r in recs):
            response = {"Code": d.choice(UNKNOWN_CODES), "RequestId": rid, "Message": "触发流控"}
        message_id = biz if response["Code"] == "OK" else f"submit-failed:{rid}"
        for r in recs:
            if r.key is not None:
                r.key = ("send", message_id, r.key[2])
        as_string = all(isinstance(v, str) for v in values) and d.choice([True, False])
        request = {"PhoneNumberJson": dumps(values).decode() if as_string else values,
                   "SignName": "阿里云", "TemplateCode": "SMS_153055065"}
    elif endpoint == "/v1/sends/tencent":
        for r in recs:
            if r.key is not None and r.key[1] == "submit-failed":
                r.key = ("send", f"submit-failed:{rid}", r.key[2])
        request = {"PhoneNumberSet": [], "SmsSdkAppId": "1400006666", "TemplateId": "1110", "SignName": "腾讯云",
                   "SessionContext": "ctx"}
        response = {"Response": {"SendStatusSet": values, "RequestId": rid}}
    else:
        task = f"{tag}task"
        results = []
        for r in recs:
            if isinstance(r.value, dict) and "_result_code" in r.value:
                code = r.value.pop("_result_code")
                mobile = r.value.get("mobile", r.value.get("mobile "))
                results.append({"mobile": str(mobile).strip(), "code": code, "msg": "号码异常"})
            if r.key is not None:
                r.key = ("send", task, r.key[2])
        request = {"userid": "100001", "ts": "1476235100217", "sign": "x" * 32, "list": values}
        response = {"code": "0", "msg": "成功", "data": {"taskid": task, "result": results}}
    doc = {"request": request, "response": response}
    if sent is not None:
        doc["sent_at"] = sent
    return dumps(doc), values


def record_case(d: Draw, endpoint: str, classes: Sequence[str], now: int, *, max_records: int = 6,
                huge: Sequence[int] = HUGE_SIZES, big: bool = False) -> Case:
    tag = f"fz{d.token()}-"
    n = d.integer(1, max_records)
    recs = [make_record(endpoint, i, d.choice(classes), d, now, tag, huge=huge, big=big) for i in range(n)]
    single = SPECS[endpoint].single_object and n == 1 and isinstance(recs[0].value, dict) and d.choice([True, False])
    body, values = build_body(endpoint, recs, d, now, tag, single=single)
    cls = recs[0].cls if len({r.cls for r in recs}) == 1 else "mixed_batches"
    return Case(endpoint, body, cls, False, recs, values)


def envelope_case(d: Draw, endpoint: str, now: int) -> Case:
    """Envelope-level damage of /v1/sends/<provider> (its send time, request, response, shape): the
    whole body is refused (400) and dead-lettered once."""
    tag = f"fz{d.token()}-"
    recs = [make_record(endpoint, i, "valid", d, now, tag) for i in range(d.integer(1, 3))]
    how = d.choice(["sent_at_unparseable", "sent_at_out_of_window", "request_type", "response_type", "no_code",
                    "not_an_object", "missing_request"])
    if how in ("sent_at_out_of_window", "sent_at_unparseable"):  # every number's send time: refused whole
        body, _ = build_body(endpoint, recs, d, now, tag, sent_at=d.choice(
            [iso(now - 40 * DAY_MS), (now + 3 * DAY_MS) // 1000, iso(now - 31 * DAY_MS), *bad_times("iso", now)]))
        return Case(endpoint, body, "impossible_timestamps", True)
    body, _ = build_body(endpoint, recs, d, now, tag)
    doc = orjson.loads(body)
    not_objects = [[], [1, "a"], True, False, "x", 1, None]
    if how == "request_type":
        doc["request"] = d.choice(not_objects)
    elif how == "response_type":
        doc["response"] = d.choice(not_objects)
    elif how == "no_code":
        inner = doc["response"].get("Response", doc["response"])
        for name in ("Code", "code", "SendStatusSet"):
            inner.pop(name, None)
    elif how == "missing_request":
        del doc["request"]
    else:
        doc = d.choice([[doc], "x", 1, None, True])
    return Case(endpoint, dumps(doc), "wrong_types" if how != "no_code" else "missing_fields", True)


def body_case(d: Draw, endpoint: str, cls: str, now: int) -> Case:
    """Whole-body damage: always a 400 in the provider's shape, the body dead-lettered once."""
    tag = f"fz{d.token()}-"
    recs = [make_record(endpoint, i, "valid", d, now, tag) for i in range(d.integer(1, 3))]
    body, _ = build_body(endpoint, recs, d, now, tag)
    if cls == "invalid_utf8":
        bad = d.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xc0\xaf",
                        b"\\ud800", b"\\udc00x", b"\x00", b"\xfe\xff"])
        quote = [i for i, c in enumerate(body) if c == ord('"')]
        at = quote[d.integer(0, len(quote) - 1)] + 1 if quote else 0
        return Case(endpoint, body[:at] + bad + body[at:], cls, True)
    if cls == "deep_nesting":
        depth = d.choice([1025, 2000, 10_000, 100_000])
        kind = d.choice(["lists", "dicts", "unbalanced", "inside"])
        if kind == "lists":
            deep = b"[" * depth + b"]" * depth
        elif kind == "dicts":
            deep = b'{"a":' * depth + b"1" + b"}" * depth
        elif kind == "unbalanced":
            deep = b"[" * depth
        else:  # a valid body with one field nested too deep
            deep = body.replace(b"[", b"[" + b"[" * depth + b"1" + b"]" * depth + b",", 1) if body.startswith(b"[") \
                else body[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
        return Case(endpoint, deep, cls, True)
    if cls == "truncated":
        return Case(endpoint, body[:d.integer(0, len(body) - 1)], "wrong_types", True)
    if cls == "wrong_top_level":
        options: list[Any] = ["x", 1, 1.5, None, True, "[]"]
        if endpoint in ENVELOPES:
            options += [[], [{"request": {}, "response": {}}]]
        elif not SPECS[endpoint].single_object:
            options += [{"records": []}, recs[0].value if isinstance(recs[0].value, dict) else {}]
        return Case(endpoint, dumps(d.choice(options)), "wrong_types", True)
    raise AssertionError(cls)


# --- driving the receiver and checking one answer -------------------------------------------------------

STATS: dict[str, Counter[str]] = defaultdict(Counter)
ENDPOINT_BODIES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()
DONE: set[str] = set()
FUZZ_TESTS = {"mixed", "record_classes", "envelopes", "body_level", "arbitrary_json", "random_bytes"}


def event_key(event: Any) -> Key:
    if isinstance(event, ReplyEvent):
        return ("reply", event.content)
    if isinstance(event, ConversionEvent):
        return ("conversion", event.template)
    kind = "send" if isinstance(event, SendEvent) else "receipt"
    assert isinstance(event, (SendEvent, ReceiptEvent))
    return (kind, event.message_id, event.phone)


def same_json(raw: bytes, value: Any) -> bool:
    """A record's dead letter is the record re-serialized as the receiver parsed it (numbers past
    64 bits are floats there), so compare parsed forms."""
    return dumps(orjson.loads(raw)) == dumps(orjson.loads(dumps(value)))


ERROR_SHAPES = {
    "aliyun": lambda b: orjson.loads(b)["code"] == 1 and orjson.loads(b)["msg"],
    "tencent": lambda b: orjson.loads(b)["result"] == 1 and orjson.loads(b)["errmsg"],
    "kx": lambda b: b.startswith(b"FAIL ") and len(b) > 5,
    "v1": lambda b: bool(orjson.loads(b)["error"]),
}
OK_BODIES = {"aliyun": {"code": 0, "msg": "接收成功"}, "tencent": {"result": 0, "errmsg": "OK"}}


def shape_of(endpoint: str) -> str:
    return endpoint.split("/")[2] if endpoint.startswith("/callbacks/") else "v1"


def check(case: Case, status: int, answer: bytes, events: list[Any], letters: list[Letter]) -> None:
    stats = STATS[case.cls]
    stats["bodies"] += 1
    ENDPOINT_BODIES[case.endpoint] += 1
    STATUSES[status] += 1
    shape = shape_of(case.endpoint)
    if status >= 500:
        stats["http_5xx"] += 1
    assert status < 500, (status, answer[:300])
    for letter in letters:
        assert letter.reason and INTERNAL_ERROR not in letter.reason, letter.reason
        assert letter.endpoint == case.endpoint
    if status == 400:
        assert ERROR_SHAPES[shape](answer), answer[:300]
        assert case.bad_body is not False, (case.cls, answer[:300])
        assert events == [] and len(letters) == 1, (len(events), len(letters))
        assert letters[0].index == -1 and letters[0].raw == case.body
        stats["rejected_bodies"] += 1
        return
    assert status == (202 if shape == "v1" else 200), (status, answer[:300])
    assert case.bad_body is not True, (case.cls, case.body[:300])
    if shape == "v1":
        reply = orjson.loads(answer)
        assert reply["accepted"] == len(events)
        assert [(r["index"], r["reason"]) for r in reply["rejected"]] == [(x.index, x.reason) for x in letters]
    elif shape == "kx":
        assert answer == b"SUCCESS"
    else:
        assert orjson.loads(answer) == OK_BODIES[shape]
    indexes = [x.index for x in letters]
    assert len(set(indexes)) == len(indexes)
    for event in events:
        if isinstance(event, ConversionEvent):  # never the raw number: its hash and mask
            assert not hasattr(event, "phone") and len(event.phone_hash) > 16 and "*" in event.phone_masked
        else:
            assert event.phone.startswith("+") and event.phone[1:].isdigit()
    if case.records is None:  # arbitrary input: every record accounted for, once
        if case.doc is not None:
            assert len(events) + len(letters) == len(case.doc)
            assert all(0 <= i < len(case.doc) and same_json(x.raw, case.doc[i]) for i, x in zip(indexes, letters, strict=True))
        stats["records"] += len(events) + len(letters)
        stats["rejected"] += len(letters)
        stats["published"] += len(events)
        return
    expected_rejected = {i for i, r in enumerate(case.records) if r.key is None}
    published = Counter(event_key(e) for e in events)
    wanted = Counter(r.key for r in case.records if r.key is not None)
    for i, r in enumerate(case.records):
        per = STATS[r.cls] if r.cls != case.cls else stats
        per["records"] += 1
        if r.key is None:
            per["rejected"] += i in indexes
            per["lost"] += i not in indexes
        else:
            per["published"] += published[r.key] > 0
            per["lost"] += published[r.key] == 0
    assert set(indexes) == expected_rejected, (sorted(indexes), sorted(expected_rejected),
                                               [(x.index, x.reason) for x in letters])
    assert published == wanted, (published, wanted)
    for letter in letters:
        assert same_json(letter.raw, case.doc[letter.index])


@pytest_asyncio.fixture(scope="module")
async def fuzz_client() -> AsyncIterator[tuple[TestClient, RecordingPublisher]]:
    logs.configure("WARNING")
    publisher = RecordingPublisher()
    receiver = Receiver(publisher, IDS, token=TOKEN, max_body=MAX_BODY, max_records=10_000, readiness=dict,
                        guards=Guards(window=WINDOW))
    async with TestClient(TestServer(receiver.app())) as client:
        yield client, publisher


async def post(client: TestClient, endpoint: str, body: bytes) -> tuple[int, bytes]:
    async with client.post(f"{endpoint}?token={TOKEN}", data=body,
                           headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


async def run_case(fuzz_client: tuple[TestClient, RecordingPublisher], case: Case) -> None:
    client, publisher = fuzz_client
    publisher.take()
    status, answer = await post(client, case.endpoint, case.body)
    events, letters = publisher.take()
    check(case, status, answer, events, letters)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The hypothesis strategies build times around one fixed instant, so that replaying a case draws
# the same values (a body's length depends on its times); the window is 30 days wide.
T0 = now_ms()


ENDPOINT = st.sampled_from(INGEST_ENDPOINTS)


@st.composite
def mixed_cases(draw: Any) -> Case:
    d = Draw(draw)
    return record_case(d, d.choice(INGEST_ENDPOINTS), ["valid", "valid", *RECORD_CLASSES], T0, max_records=8)


@st.composite
def class_cases(draw: Any, cls: str) -> Case:
    d = Draw(draw)
    endpoint = d.choice(INGEST_ENDPOINTS)
    if cls == "huge_strings" and d.integer(0, 19) == 0:  # now and then one record of 1 or 4 MB
        return record_case(d, endpoint, [cls], T0, max_records=1, huge=[1_000_000, 4_000_000], big=True)
    return record_case(d, endpoint, [cls], T0, max_records=4)


@st.composite
def envelope_cases(draw: Any) -> Case:
    d = Draw(draw)
    return envelope_case(d, d.choice(ENVELOPES), T0)


@st.composite
def body_cases(draw: Any) -> Case:
    d = Draw(draw)
    return body_case(d, d.choice(INGEST_ENDPOINTS), d.choice(["invalid_utf8", "deep_nesting", "truncated",
                                                             "wrong_top_level"]), T0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["13800138000", "+8613800138000", "2024-01-01 00:00:00", "20240101000000", "OK", "Ok", "0",
                       "SUCCESS", "DELIVRD", "true"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["request", "response", "Response", "SendStatusSet", "PhoneNumbers", "PhoneNumberJson",
                         "list", "mobile", "code", "data", "taskid", "Code", "BizId", "phone", "provider",
                         "message_id", "phone_number", "biz_id", "success", "report_time", "sid", "time", "text",
                         "report_status", "user_receive_time", "PhoneNumber", "SerialNo", "msgcontent", "id"])
        | st.text(max_size=6), children, max_size=5),
    max_leaves=16,
)


@st.composite
def arbitrary_json_cases(draw: Any) -> Case:
    endpoint = draw(ENDPOINT)
    doc = draw(json_values)
    spec = SPECS[endpoint]
    container = doc if isinstance(doc, list) and endpoint not in ENVELOPES else (
        [doc] if isinstance(doc, dict) and spec.single_object else None)
    return Case(endpoint, dumps(doc), "wrong_types", None, None, container)


# --- the bulk: >10,000 bodies ---------------------------------------------------------------------------

@fuzz(3000)
@given(case=mixed_cases())
async def test_mixed_batches_publish_every_valid_record_and_dead_letter_every_other(fuzz_client: Any, case: Case) -> None:
    await run_case(fuzz_client, case)
    DONE.add("mixed")


@pytest.mark.parametrize("cls", RECORD_CLASSES)
@fuzz(650)
@given(data=st.data())
async def test_record_classes(fuzz_client: Any, cls: str, data: st.DataObject) -> None:
    """One malformed class at a time, on every endpoint (unknown codes: every record published)."""
    await run_case(fuzz_client, data.draw(class_cases(cls)))
    DONE.add(f"record_classes:{cls}")


@fuzz(500)
@given(case=envelope_cases())
async def test_damaged_send_envelopes(fuzz_client: Any, case: Case) -> None:
    await run_case(fuzz_client, case)
    DONE.add("envelopes")


@fuzz(1300)
@given(case=body_cases())
async def test_unusable_bodies_are_400_and_dead_lettered_once(fuzz_client: Any, case: Case) -> None:
    """Invalid UTF-8, nesting past orjson's 1024 levels (up to 100,000 nested lists), truncated JSON,
    the wrong top-level type."""
    await run_case(fuzz_client, case)
    DONE.add("body_level")


@fuzz(1000)
@given(case=arbitrary_json_cases())
async def test_arbitrary_json(fuzz_client: Any, case: Case) -> None:
    await run_case(fuzz_client, case)
    DONE.add("arbitrary_json")


@fuzz(500)
@given(endpoint=ENDPOINT, body=st.binary(max_size=300) | st.builds(lambda n, b: b * n, st.integers(0, 200_000),
                                                                    st.sampled_from([b"[", b"{", b"\xff", b" ", b'"'])))
async def test_random_bytes(fuzz_client: Any, endpoint: str, body: bytes) -> None:
    await run_case(fuzz_client, Case(endpoint, body, "random_bytes", None))
    DONE.add("random_bytes")


FUZZ_TESTS = {"mixed", "envelopes", "body_level", "arbitrary_json", "random_bytes",
              *(f"record_classes:{c}" for c in RECORD_CLASSES)}


def test_zz_fuzz_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """At least 10,000 generated bodies per run, spread over every endpoint, nothing lost."""
    if not FUZZ_TESTS <= DONE:
        pytest.skip(f"only part of the fuzz tests ran: {sorted(DONE)}")
    total = sum(s["bodies"] for s in STATS.values())
    columns = ("bodies", "records", "published", "rejected", "rejected_bodies", "lost", "http_5xx")
    lines = ["bodies and rejected_bodies count by the body's class (mixed_batches: records of several classes);",
             "records, published, rejected and lost by each record's own class.",
             f"{'class':<22}" + "".join(f"{c:>16}" for c in columns)]
    for cls in sorted(STATS):
        lines.append(f"{cls:<22}" + "".join(f"{STATS[cls][c]:>16}" for c in columns))
    lines.append(f"{'total':<22}" + "".join(f"{sum(s[c] for s in STATS.values()):>16}" for c in columns))
    lines.append("per endpoint: " + ", ".join(f"{e} {n}" for e, n in sorted(ENDPOINT_BODIES.items())))
    lines.append("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(STATUSES.items())))
    with capsys.disabled():
        print("\nfuzz summary\n" + "\n".join(lines))
    assert total >= 10_000, total
    assert sum(s["lost"] for s in STATS.values()) == 0
    assert sum(s["http_5xx"] for s in STATS.values()) == 0
    assert set(ENDPOINT_BODIES) == set(INGEST_ENDPOINTS) and min(ENDPOINT_BODIES.values()) >= 500
    for cls in [*RECORD_CLASSES, "mixed_batches", "invalid_utf8", "deep_nesting", "random_bytes", "wrong_types"]:
        assert STATS[cls]["bodies"] + STATS[cls]["records"] > 0, cls


# --- the same cases through the real Publisher and the embedded broker ---------------------------------

@dataclass
class Mark:
    """Where to start reading: the partitions' end offsets and the time they were taken. Tansu
    reports end offsets late (an acknowledged write can stay out of them for seconds), so they may
    be too low; records written before the mark are then dropped by their timestamp."""
    offsets: dict[TopicPartition, int]
    at_ms: int


async def mark(bootstrap: str, names: Sequence[str]) -> Mark:
    at_ms = now_ms()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        return Mark(await consumer.end_offsets(tps), at_ms)
    finally:
        await consumer.stop()


async def read_range(bootstrap: str, start: Mark, enough: Callable[[list[Any]], bool],
                     timeout: float = 20.0, quiet: float = 1.0) -> list[Any]:
    """Every record written since `start`: read until `enough(records)` holds and nothing new came
    for `quiet` seconds (end offsets are not relied on)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        consumer.assign(list(start.offsets))
        for tp, off in start.offsets.items():
            consumer.seek(tp, off)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            new = [r for records in batch.values() for r in records if r.timestamp >= start.at_ms]
            out += new
            if new:
                last_new = time.monotonic()
            elif enough(out) and time.monotonic() - last_new >= quiet:
                return out
        raise AssertionError(f"not enough records within {timeout}s: {len(out)} read")
    finally:
        await consumer.stop()


