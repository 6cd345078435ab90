"""Provider parsing without HTTP: the documents' own sample payloads (seeds 000, 001, 002) in,
events and rejections out; arbitrary JSON never raises anything but BadBody."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sms_analytics.model.events import ReceiptEvent, ReplyEvent
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.model.providers import segments as segments_for
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.fields import BadBody, Identities, Parsed
from sms_analytics.sources.base.provider import Provider
from sms_analytics.sources.kx.parsers import Kx
from sms_analytics.sources.tencent.parsers import Tencent

KEY = b"k" * 32
IDS = Identities(PhoneHasher(KEY))
NOW = 1_700_000_000_000
ALIYUN, TENCENT, KX = Aliyun(IDS), Tencent(IDS), Kx(IDS)


def phash(e164: str) -> str:
    return hmac.new(KEY, e164.encode(), hashlib.sha256).hexdigest()


def envelope(request: dict[str, Any], response: dict[str, Any], sent_at: Any = None) -> bytes:
    doc: dict[str, Any] = {"request": request, "response": response}
    if sent_at is not None:
        doc["sent_at"] = sent_at
    return orjson.dumps(doc)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def only(parsed: Parsed) -> Any:
    assert parsed.rejected == []
    assert len(parsed.events) == 1
    return parsed.events[0]


# --- seed samples -----------------------------------------------------------------------------------

# 000 §11.3.2 SmsReport (HTTP batch push), verbatim.
ALIYUN_REPORT = [{
    "phone_number": "13900000001", "send_time": "2017-01-01 00:00:00", "report_time": "2017-01-01 00:00:00",
    "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345",
    "out_id": "67890",
}]
# 000 §11.3.1 SmsUp, verbatim.
ALIYUN_UP = [{
    "phone_number": "18612345678", "send_time": "2017-09-01 00:00:00", "content": "内容", "sign_name": "签名",
    "dest_code": "1234", "sequence_id": 1234567890,
}]
# 000 §7.1 SendSms JSON response, verbatim.
ALIYUN_SEND_OK = {"Message": "OK", "RequestId": "2184201F-BFB3-446B-B1F2-C746B7BF0657", "BizId": "197703245997295588^0", "Code": "OK"}
# 002 status callback, with 13xxxxxxxxx replaced by a real number.
TENCENT_STATUS = [{
    "user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13800138000", "report_status": "SUCCESS",
    "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "xxxxxxx",
}]
# 002 reply callback (one object), with 13xxxxxxxxx replaced by a real number.
TENCENT_REPLY = {"extend": "扩展码", "mobile": "13800138000", "nationcode": "86", "sign": "短信签名", "text": "用户回复的内容", "time": 1457336869}
# 002 SendSms example 1.
TENCENT_SEND_REQUEST = {
    "PhoneNumberSet": ["+8618501234444", "+8618501234445"], "SmsSdkAppId": "1400006666", "SignName": "腾讯云",
    "TemplateId": "1110", "TemplateParamSet": ["4370"], "SessionContext": "outsid_1729495320_1011",
}
# 001 §5 Report push, verbatim.
KX_REPORT = [
    {"time": "20161012150400", "taskid": "1222015900000109761866", "code": "DELIVRD", "msg": "成功", "mobile": "13505718888"},
    {"time": "20161012150500", "taskid": "1222015900000109761867", "code": "DELIVRD", "msg": "成功", "mobile": "13505718889"},
]
# 001 §6 MO push, verbatim.
KX_MO = [{"id": "9d9d0f4d1b864c129e299cc400c26306", "time": "20161011115655", "msgcontent": "测试上行短信",
          "srcid": "1069018889001", "mobile": "15996480329"}]
# 001 §4 MT (the URL example's parameters) and its success response (the sample's spaces inside values kept).
KX_MT_REQUEST = {"userid": "100001", "ts": "1476235100217", "sign": "54449bb492c2ea2592ea3ecef3d0b47",
                 "mobile": "13800000000,135000000", "msgcontent": "hello", "time": "20110115105822", "extnum": "1001"}
KX_MT_OK = {"code": " 0", "msg": " 成功", "data": {"taskid": " 1222015900000109761867"}}


# --- Alibaba ----------------------------------------------------------------------------------------


# --- Tencent ----------------------------------------------------------------------------------------


# --- KX ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, segments", [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (1000, 15)])
def test_segments_by_length(length: int, segments: int) -> None:
    assert segments_for("x" * length) == segments


# --- envelopes and top-level shapes -----------------------------------------------------------------

@pytest.mark.parametrize("provider", [ALIYUN, TENCENT, KX], ids=lambda p: p.name)
@pytest.mark.parametrize("body, match", [
    (b"not json", "JSON"), (b"[]", "object"), (b'{"request": [], "response": {}}', "objects"),
    (b'{"request": {}}', "objects"), (b'{"request": {}, "response": {}, "sent_at": "2017-01-01T00:00:00"}', "sent_at"),
    (b'{"request": {}, "response": {}, "sent_at": true}', "sent_at"), (b'\xff\xfe', "JSON"),
])
def test_bad_envelopes(provider: Provider, body: bytes, match: str) -> None:
    with pytest.raises(BadBody, match=match):
        provider.send_envelope(body, NOW)


@pytest.mark.parametrize("provider, request_, response", [
    (ALIYUN, {"SignName": "阿里云"}, ALIYUN_SEND_OK),  # no PhoneNumbers / PhoneNumberJson
    (ALIYUN, {"PhoneNumbers": "15900000000"}, {"Message": "OK"}),  # no Code
    (ALIYUN, {"PhoneNumbers": "15900000000"}, {"Code": "OK"}),  # OK without BizId
    (ALIYUN, {"PhoneNumberJson": "[not json"}, ALIYUN_SEND_OK),
    (TENCENT, TENCENT_SEND_REQUEST, {"SendStatusSet": []}),  # not wrapped in Response
    (KX, {"list": "x"}, KX_MT_OK),  # neither mobile nor list
    (KX, KX_MT_REQUEST, {"msg": "成功"}),  # no code
])
def test_sends_of_the_wrong_shape_are_bad_body(provider: Provider, request_: dict[str, Any], response: dict[str, Any]) -> None:
    with pytest.raises(BadBody):
        provider.send_envelope(envelope(request_, response), NOW)


@pytest.mark.parametrize("provider, kind, doc", [
    (ALIYUN, "receipts", ALIYUN_REPORT[0]), (ALIYUN, "replies", ALIYUN_UP[0]), (ALIYUN, "receipts", "x"),
    (TENCENT, "receipts", TENCENT_STATUS[0]), (TENCENT, "replies", "x"), (TENCENT, "replies", 42), (TENCENT, "replies", None),
    (KX, "receipts", {"taskid": "1"}), (KX, "replies", KX_MO[0]), (KX, "receipts", None), (KX, "replies", 1.5),
])
def test_wrong_top_level_type_is_bad_body(provider: Provider, kind: str, doc: Any) -> None:
    with pytest.raises(BadBody, match="expected a JSON"):
        getattr(provider, kind)(doc, NOW)


def test_empty_arrays_parse_to_nothing() -> None:
    for provider in (ALIYUN, TENCENT, KX):
        for kind in ("receipts", "replies"):
            parsed = getattr(provider, kind)([], NOW)
            assert (parsed.events, parsed.rejected) == ([], [])


# --- normalized sends -------------------------------------------------------------------------------


# --- arbitrary JSON never raises anything but BadBody ----------------------------------------------

# What orjson can hand over: 64-bit integers, finite floats, text without lone surrogates.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
junk = json_values | st.sampled_from([
    "", " ", "13xxxxxxxxx", "0", "1" * 25, "x" * 5000, "2017/01/01 00:00:00", "2099-01-01 00:00:00", "19991231235959",
    "20161312150400", 2**63, -1e308, 0, True, "null", "+", "００８６１３８１２３４１２３４",
])
PHONES = st.sampled_from(["13812341234", "+8613812341234", "8613812341234", "008613812341234", "85291234567",
                          13812341234, "17041234567", "19212345678", " 138 1234 1234 "])
CHINA_TIMES = st.sampled_from(["2017-01-01 00:00:00", "2024-02-29 12:00:00", "2015-10-17 08:03:04"])
COMPACT_TIMES = st.sampled_from(["20161012150400", "20240229120000"])
TEXT = st.text(max_size=12)
IDS_ = st.sampled_from(["12345", "1222015900000109761866", 1234567890, "5000:1045710669157053657849499619", "m" * 129]) | TEXT
# Per endpoint: every field of the document, usually with a valid value, sometimes junk or missing.
VALID: dict[tuple[str, str], dict[str, st.SearchStrategy[Any]]] = {
    ("aliyun", "receipts"): {"phone_number": PHONES, "send_time": CHINA_TIMES, "report_time": CHINA_TIMES,
                             "success": st.sampled_from([True, False, "true", "FALSE"]), "err_code": TEXT, "err_msg": TEXT,
                             "sms_size": st.sampled_from(["1", 1]), "biz_id": IDS_, "out_id": TEXT},
    ("aliyun", "replies"): {"phone_number": PHONES, "send_time": CHINA_TIMES, "content": TEXT, "sign_name": TEXT,
                            "dest_code": TEXT, "sequence_id": IDS_},
    ("tencent", "receipts"): {"user_receive_time": CHINA_TIMES, "nationcode": st.sampled_from(["86", "852", "", 86]),
                              "mobile": PHONES, "report_status": st.sampled_from(["SUCCESS", "FAIL", "fail"]),
                              "errmsg": TEXT, "description": TEXT, "sid": IDS_, "ext": TEXT},
    ("tencent", "replies"): {"extend": TEXT, "mobile": PHONES, "nationcode": st.sampled_from(["86", "852", ""]),
                             "sign": TEXT, "text": TEXT,
                             "time": st.sampled_from([1457336869, 1457336869.5]) | st.floats(allow_nan=False, allow_infinity=False)},
    ("kx", "receipts"): {"time": COMPACT_TIMES, "taskid": IDS_, "code": st.sampled_from(["DELIVRD", "UNDELIV"]) | TEXT,
                         "msg": TEXT, "mobile": PHONES, "messageid": TEXT},
    ("kx", "replies"): {"id": IDS_, "time": COMPACT_TIMES, "msgcontent": TEXT, "srcid": TEXT, "mobile": PHONES},
}
EVENT_TYPES = {"receipts": ReceiptEvent, "replies": ReplyEvent}
PROVIDERS = {"aliyun": ALIYUN, "tencent": TENCENT, "kx": KX}


def documents(name: str, kind: str) -> st.SearchStrategy[Any]:
    fields = VALID[(name, kind)]
    value = {f: st.integers(0, 7).flatmap(lambda i, v=v: v if i else junk) for f, v in fields.items()}
    record = st.builds(
        lambda rec, drop: {k: v for k, v in rec.items() if k not in drop},
        st.fixed_dictionaries(value), st.sets(st.sampled_from(sorted(fields)), max_size=2),
    )
    item = st.integers(0, 4).flatmap(lambda i: record if i else json_values)
    return st.integers(0, 4).flatmap(lambda i: st.lists(item, max_size=5) if i else item)


def check_only_bad_body(name: str, kind: str, doc: Any) -> None:
    accepts_object = (name, kind) == ("tencent", "replies")
    try:
        parsed = getattr(PROVIDERS[name], kind)(doc, NOW)
    except BadBody:
        assert not isinstance(doc, list) and not (accepts_object and isinstance(doc, dict))
        return
    assert isinstance(doc, list) or (accepts_object and isinstance(doc, dict))
    items = doc if isinstance(doc, list) else [doc]
    assert len(parsed.events) + len(parsed.rejected) == len(items)  # every record: one event or one rejection
    indexes = [r.index for r in parsed.rejected]
    assert indexes == sorted(set(indexes)) and all(0 <= i < len(items) for i in indexes)
    for r in parsed.rejected:
        assert r.reason and isinstance(r.raw, bytes)
    for event in parsed.events:
        assert isinstance(event, EVENT_TYPES[kind])
        assert event.provider == name and event.phone.startswith("+") and event.phone[1:].isdigit()
        assert event.phone_hash == phash(event.phone)
        assert event.received_at_ms == NOW


HUGE_TIME = [{"extend": "", "mobile": "13812341234", "nationcode": "86", "sign": "", "text": "t", "time": 1e308}]


def fuzz(name: str, kind: str) -> Any:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(doc=documents(name, kind))
    @example(doc=HUGE_TIME)
    @example(doc=ALIYUN_REPORT + TENCENT_STATUS + KX_REPORT + ALIYUN_UP + KX_MO + [TENCENT_REPLY])
    def test(doc: Any) -> None:
        check_only_bad_body(name, kind, doc)

    return test


test_arbitrary_json_aliyun_receipts = fuzz("aliyun", "receipts")
test_arbitrary_json_aliyun_replies = fuzz("aliyun", "replies")
test_arbitrary_json_tencent_receipts = fuzz("tencent", "receipts")
test_arbitrary_json_tencent_replies = fuzz("tencent", "replies")
test_arbitrary_json_kx_receipts = fuzz("kx", "receipts")
test_arbitrary_json_kx_replies = fuzz("kx", "replies")
