"""Provider parsing without HTTP: the documents' own sample payloads (seeds 000, 001, 002) in,
events and rejections out; arbitrary JSON never raises anything but BadBody."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.fields import BadBody, Identities, Parsed, Rejected
from sms_analytics.sources.kx.parsers import Kx, sign_of
from sms_analytics.sources.normalized import parse_sends
from sms_analytics.sources.base.provider import Provider, segments_for
from sms_analytics.sources.tencent.parsers import Tencent

KEY = b"k" * 32
IDS = Identities(PhoneHasher(KEY))
NOW = 1_700_000_000_000
ALIYUN, TENCENT, KX = Aliyun(IDS), Tencent(IDS), Kx(IDS)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def phash(e164: str) -> str:
    return hmac.new(KEY, e164.encode(), hashlib.sha256).hexdigest()


def envelope(request: dict[str, Any], response: dict[str, Any], sent_at: Any = None) -> bytes:
    doc: dict[str, Any] = {"request": request, "response": response}
    if sent_at is not None:
        doc["sent_at"] = sent_at
    return orjson.dumps(doc)


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
TENCENT_SEND_RESPONSE = {"Response": {"SendStatusSet": [
    {"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": "+8618501234444", "Fee": 1,
     "SessionContext": "outsid_1729495320_1011", "Code": "Ok", "Message": "send success", "IsoCode": "CN"},
    {"SerialNo": "5000:1045710669157053657849499718", "PhoneNumber": "+8618501234445", "Fee": 1,
     "SessionContext": "outsid_1729495320_1011", "Code": "Ok", "Message": "send success", "IsoCode": "CN"},
], "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}}
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
# 001 §10 P2PBatch request (verbatim, including the "mobile " keys) and responses (closing brace restored).
KX_P2P_REQUEST = {"userid": "100001 ", "ts": "1476235100217", "sign": "54449 bb492c2ea2592ea3ecef3d0b47", "list": [
    {"mobile ": "18600000001 ", "msgcontent": "【邦邦快递】 您的快递已到, 取件号: 1234"},
    {"mobile ": "18600000002 ", "msgcontent": "【邦邦快递】 您的快递已到, 取件号: 2345"},
]}
KX_P2P_PARTIAL = {"code": "0", "msg": "成功", "data": {"taskid": "1222015900000109761867", "result": [
    {"mobile": "18600000001", "code": "0", "msg": "提交成功"},
    {"mobile": "18600000002", "code": "11", "msg": "短信内容过长"},
]}}
KX_P2P_FAILED = {"code": "6", "msg": "sign 校验失败", "data": {"taskid": "", "result": [
    {"mobile": "18600000001", "code": "6", "msg": "sign 校验失败"},
    {"mobile": "18600000002", "code": "6", "msg": "sign 校验失败"},
]}}


# --- Alibaba ----------------------------------------------------------------------------------------

def test_aliyun_sms_report_sample() -> None:
    event = only(ALIYUN.receipts(ALIYUN_REPORT, NOW))
    assert isinstance(event, ReceiptEvent)
    assert (event.provider, event.message_id, event.phone) == ("aliyun", "12345", "+8613900000001")
    assert (event.phone_hash, event.phone_masked, event.carrier, event.country_code) == (
        phash("+8613900000001"), "139****0001", "mobile", "86")
    assert event.delivered is True
    assert (event.error_code, event.error_message) == ("DELIVERED", "用户接收成功")
    assert event.reported_at_ms == utc_ms(2016, 12, 31, 16, 0, 0)
    assert event.sent_at_ms == utc_ms(2016, 12, 31, 16, 0, 0)
    assert (event.received_at_ms, event.out_id, event.source) == (NOW, "67890", "push")
    assert event.segments == 1  # sms_size "1"


@pytest.mark.parametrize("sms_size, segments", [("3", 3), (2, 2), (" 4 ", 4), ("0", None), ("256", None), ("x", None),
                                                (None, None), (1.5, None)])
def test_aliyun_sms_size_is_the_receipt_segments(sms_size: Any, segments: int | None) -> None:
    doc = [{**ALIYUN_REPORT[0], "sms_size": sms_size}]
    assert only(ALIYUN.receipts(doc, NOW)).segments == segments


def test_aliyun_failed_report() -> None:
    doc = [{**ALIYUN_REPORT[0], "success": False, "err_code": "MK:0001", "err_msg": "空号",
            "report_time": "2017-01-01 00:00:05", "phone_number": "13312341234"}]
    event = only(ALIYUN.receipts(doc, NOW))
    assert event.delivered is False
    assert (event.error_code, event.error_message, event.carrier) == ("MK:0001", "空号", "telecom")
    assert event.reported_at_ms == utc_ms(2016, 12, 31, 16, 0, 5)


def test_aliyun_report_without_optional_fields() -> None:
    event = only(ALIYUN.receipts([{"phone_number": "85291234567", "report_time": "2017-01-01 00:00:00",
                                   "success": "true", "biz_id": 12345}], NOW))
    assert (event.phone, event.carrier, event.message_id) == ("+85291234567", "unknown", "12345")
    assert (event.delivered, event.error_code, event.sent_at_ms, event.out_id) == (True, "DELIVERED", None, "")


def test_aliyun_sms_up_sample() -> None:
    event = only(ALIYUN.replies(ALIYUN_UP, NOW))
    assert isinstance(event, ReplyEvent)
    assert (event.provider, event.reply_id, event.phone, event.carrier) == ("aliyun", "aliyun:1234567890", "+8618612345678", "unicom")
    assert (event.content, event.sign, event.dest_code) == ("内容", "签名", "1234")
    assert event.replied_at_ms == utc_ms(2017, 8, 31, 16, 0, 0)
    assert event.received_at_ms == NOW
    assert event.phone_hash == phash("+8618612345678")


def test_aliyun_send_sms_sample() -> None:
    request = {"PhoneNumbers": "15900000000", "SignName": "阿里云", "TemplateCode": "SMS_153055065", "OutId": "abcdefgh"}
    event = only(ALIYUN.send_envelope(envelope(request, ALIYUN_SEND_OK, "2017-01-01T00:00:00+08:00"), NOW))
    assert isinstance(event, SendEvent)
    assert (event.provider, event.message_id, event.phone, event.carrier) == ("aliyun", "197703245997295588^0", "+8615900000000", "mobile")
    assert (event.sign, event.template, event.out_id, event.segments) == ("阿里云", "SMS_153055065", "abcdefgh", None)
    assert (event.sent_at_ms, event.received_at_ms) == (1_483_200_000_000, NOW)
    assert (event.submit_ok, event.submit_code, event.submit_message) == (True, "", "")


def test_aliyun_send_sms_to_several_numbers_and_default_sent_at() -> None:
    request = {"PhoneNumbers": "15900000000,85291234567, 13500000000", "SignName": "阿里云", "TemplateCode": "SMS_153055065"}
    parsed = ALIYUN.send_envelope(envelope(request, ALIYUN_SEND_OK), NOW)
    assert parsed.rejected == []
    assert [e.phone for e in parsed.events] == ["+8615900000000", "+85291234567", "+8613500000000"]
    assert {e.message_id for e in parsed.events} == {"197703245997295588^0"}
    assert {e.sent_at_ms for e in parsed.events} == {NOW}


@pytest.mark.parametrize("as_strings", [True, False])
def test_aliyun_send_batch_sms_sample(as_strings: bool) -> None:
    phones, signs = ["15900000000", "13500000000"], ["阿里云", "阿里巴巴"]
    request = {"PhoneNumberJson": orjson.dumps(phones).decode() if as_strings else phones,
               "SignNameJson": orjson.dumps(signs).decode() if as_strings else signs, "TemplateCode": "SMS_152550005"}
    parsed = ALIYUN.send_envelope(envelope(request, ALIYUN_SEND_OK, 1457336869), NOW)
    assert parsed.rejected == []
    assert [(e.phone, e.sign, e.template) for e in parsed.events] == [
        ("+8615900000000", "阿里云", "SMS_152550005"), ("+8613500000000", "阿里巴巴", "SMS_152550005")]
    assert {(e.message_id, e.sent_at_ms, e.submit_ok) for e in parsed.events} == {("197703245997295588^0", 1_457_336_869_000, True)}


def test_aliyun_code_not_ok_fails_every_number() -> None:
    response = {"Message": "触发分钟级流控Permits:1", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990", "Code": "isv.BUSINESS_LIMIT_CONTROL"}
    request = {"PhoneNumbers": "15900000000,13500000000", "SignName": "阿里云", "TemplateCode": "SMS_153055065"}
    parsed = ALIYUN.send_envelope(envelope(request, response), NOW)
    assert parsed.rejected == []
    assert [e.phone for e in parsed.events] == ["+8615900000000", "+8613500000000"]
    for e in parsed.events:
        assert e.message_id == "submit-failed:F655A8D5-B967-440B-8683-DAD6FF8DE990"
        assert (e.submit_ok, e.submit_code, e.submit_message) == (False, "isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")


def test_aliyun_mixed_batch_rejects_bad_records_by_index() -> None:
    good = ALIYUN_REPORT[0]
    doc = [
        good,
        {**good, "phone_number": "1390000abcd"},
        {k: v for k, v in good.items() if k != "biz_id"},
        {**good, "success": "maybe"},
        {**good, "report_time": "2017/01/01 00:00:00"},
        42,
        {**good, "biz_id": "67891"},
    ]
    parsed = ALIYUN.receipts(doc, NOW)
    assert [e.message_id for e in parsed.events] == ["12345", "67891"]
    assert [r.index for r in parsed.rejected] == [1, 2, 3, 4, 5]
    reasons = [r.reason for r in parsed.rejected]
    assert "phone" in reasons[0]
    assert "'biz_id'" in reasons[1]
    assert "'success'" in reasons[2]
    assert "2017/01/01 00:00:00" in reasons[3]  # a time reason quotes the bad value
    assert "object" in reasons[4]
    assert orjson.loads(parsed.rejected[1].raw) == doc[2]
    assert parsed.rejected[4].raw == b"42"


# --- Tencent ----------------------------------------------------------------------------------------

def test_tencent_status_callback_sample() -> None:
    event = only(TENCENT.receipts(TENCENT_STATUS, NOW))
    assert (event.provider, event.message_id, event.phone, event.carrier) == ("tencent", "xxxxxxx", "+8613800138000", "mobile")
    assert event.delivered is True
    assert (event.error_code, event.error_message) == ("DELIVRD", "用户短信送达成功")
    assert event.reported_at_ms == utc_ms(2015, 10, 17, 0, 3, 4)
    assert (event.received_at_ms, event.out_id, event.sent_at_ms) == (NOW, "", None)
    assert event.phone_hash == phash("+8613800138000")


def test_tencent_status_fail_and_other_nationcode() -> None:
    doc = [{**TENCENT_STATUS[0], "report_status": "fail", "errmsg": "MK:0005", "description": "关机", "ext": "ctx-1",
            "mobile": "91234567", "nationcode": "852", "sid": "5000:1045710669157053657849499619"}]
    event = only(TENCENT.receipts(doc, NOW))
    assert (event.delivered, event.error_code, event.error_message, event.out_id) == (False, "MK:0005", "关机", "ctx-1")
    assert (event.phone, event.country_code, event.carrier, event.message_id) == (
        "+85291234567", "852", "unknown", "5000:1045710669157053657849499619")


def test_tencent_reply_callback_sample_as_object_and_array() -> None:
    event = only(TENCENT.replies(TENCENT_REPLY, NOW))
    assert (event.provider, event.phone, event.content, event.sign, event.dest_code) == (
        "tencent", "+8613800138000", "用户回复的内容", "短信签名", "扩展码")
    assert event.replied_at_ms == 1_457_336_869_000
    assert event.received_at_ms == NOW
    assert event.reply_id.startswith("tencent:") and len(event.reply_id) == len("tencent:") + 20
    again = only(TENCENT.replies([TENCENT_REPLY], NOW + 1))
    assert again.reply_id == event.reply_id  # a retried callback is the same reply
    other = only(TENCENT.replies({**TENCENT_REPLY, "text": "TD"}, NOW))
    assert other.reply_id != event.reply_id


def test_tencent_send_sms_sample() -> None:
    parsed = TENCENT.send_envelope(envelope(TENCENT_SEND_REQUEST, TENCENT_SEND_RESPONSE), NOW)
    assert parsed.rejected == []
    assert [(e.message_id, e.phone, e.carrier) for e in parsed.events] == [
        ("5000:1045710669157053657849499619", "+8618501234444", "unicom"),
        ("5000:1045710669157053657849499718", "+8618501234445", "unicom"),
    ]
    for e in parsed.events:
        assert (e.provider, e.template, e.sign, e.out_id, e.segments) == ("tencent", "1110", "腾讯云", "outsid_1729495320_1011", 1)
        assert (e.submit_ok, e.submit_code, e.submit_message, e.sent_at_ms) == (True, "", "", NOW)


def test_tencent_fee_is_the_segment_count() -> None:
    entries = TENCENT_SEND_RESPONSE["Response"]["SendStatusSet"]
    fees = [3, 0, 256, True, "2", None]
    response = {"Response": {"SendStatusSet": [{**entries[0], "Fee": fee} for fee in fees], "RequestId": "r"}}
    parsed = TENCENT.send_envelope(envelope(TENCENT_SEND_REQUEST, response), NOW)
    assert [e.segments for e in parsed.events] == [3, None, None, None, None, None]  # only an integer 1..255 counts


def test_tencent_entry_not_ok_fails_only_that_number() -> None:
    entries = TENCENT_SEND_RESPONSE["Response"]["SendStatusSet"]
    failed = {**entries[1], "SerialNo": "", "Fee": 0, "Code": "LimitExceeded.PhoneNumberDailyLimit",
              "Message": "单个手机号日下发短信条数超过设定的上限"}
    response = {"Response": {"SendStatusSet": [entries[0], failed], "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}}
    ok, bad = TENCENT.send_envelope(envelope(TENCENT_SEND_REQUEST, response), NOW).events
    assert (ok.message_id, ok.submit_ok) == ("5000:1045710669157053657849499619", True)
    assert bad.message_id == "submit-failed:a0aabda6-cf91-4f3e-a81f-9198114a2279"
    assert (bad.phone, bad.submit_ok, bad.submit_code, bad.submit_message, bad.segments) == (
        "+8618501234445", False, "LimitExceeded.PhoneNumberDailyLimit", "单个手机号日下发短信条数超过设定的上限", None)


def test_tencent_ok_without_serial_is_rejected() -> None:
    entries = TENCENT_SEND_RESPONSE["Response"]["SendStatusSet"]
    response = {"Response": {"SendStatusSet": [entries[0], {**entries[1], "SerialNo": ""}], "RequestId": "r"}}
    parsed = TENCENT.send_envelope(envelope(TENCENT_SEND_REQUEST, response), NOW)
    assert len(parsed.events) == 1
    assert [(r.index, r.reason) for r in parsed.rejected] == [(1, "Code is Ok but SerialNo is missing")]


def test_tencent_error_response_is_bad_body() -> None:
    response = {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "签名错误"}, "RequestId": "r"}}
    with pytest.raises(BadBody, match="AuthFailure.SignatureFailure"):
        TENCENT.send_envelope(envelope(TENCENT_SEND_REQUEST, response), NOW)


def test_tencent_mixed_status_batch() -> None:
    good = TENCENT_STATUS[0]
    doc = [good, {**good, "report_status": "MAYBE"}, {**good, "sid": ""}, {**good, "mobile": "13xxxxxxxxx"}, "x"]
    parsed = TENCENT.receipts(doc, NOW)
    assert len(parsed.events) == 1
    assert [r.index for r in parsed.rejected] == [1, 2, 3, 4]
    assert "report_status" in parsed.rejected[0].reason
    assert "'sid'" in parsed.rejected[1].reason
    assert "phone" in parsed.rejected[2].reason


# --- KX ---------------------------------------------------------------------------------------------

def test_kx_report_sample() -> None:
    parsed = KX.receipts(KX_REPORT, NOW)
    assert parsed.rejected == []
    first, second = parsed.events
    assert (first.provider, first.message_id, first.phone, first.carrier) == ("kx", "1222015900000109761866", "+8613505718888", "mobile")
    assert (first.delivered, first.error_code, first.error_message) == (True, "DELIVRD", "成功")
    assert first.reported_at_ms == utc_ms(2016, 10, 12, 7, 4, 0)
    assert second.reported_at_ms == utc_ms(2016, 10, 12, 7, 5, 0)
    assert (second.message_id, second.phone) == ("1222015900000109761867", "+8613505718889")
    assert first.received_at_ms == NOW


@pytest.mark.parametrize("code", ["UNDELIV", "EXPIRED", "REJECTD", "F1120", "delivrd"])
def test_kx_report_only_delivrd_is_delivered(code: str) -> None:
    event = only(KX.receipts([{**KX_REPORT[0], "code": code, "msg": "短信接收失败", "messageid": "m-42"}], NOW))
    assert (event.delivered, event.error_code, event.out_id) == (False, code, "m-42")


def test_kx_mo_sample() -> None:
    event = only(KX.replies(KX_MO, NOW))
    assert (event.provider, event.reply_id, event.phone, event.carrier) == (
        "kx", "kx:9d9d0f4d1b864c129e299cc400c26306", "+8615996480329", "mobile")
    assert (event.content, event.dest_code, event.sign) == ("测试上行短信", "1069018889001", "")
    assert event.replied_at_ms == utc_ms(2016, 10, 11, 3, 56, 55)


def test_kx_mt_sample_rejects_the_short_number() -> None:
    # The document's own example lists "135000000", nine digits: that number is rejected, its neighbour kept.
    parsed = KX.send_envelope(envelope(KX_MT_REQUEST, KX_MT_OK), NOW)
    event = only(Parsed(parsed.events, []))
    assert (event.message_id, event.phone, event.sign, event.segments, event.submit_ok) == (
        "1222015900000109761867", "+8613800000000", "", 1, True)
    assert [(r.index, orjson.loads(r.raw)["mobile"]) for r in parsed.rejected] == [(1, "135000000")]
    assert "phone" in parsed.rejected[0].reason


def test_kx_mt_sign_and_segments_from_content() -> None:
    content = "【五星集团】" + "测" * 65  # 71 characters: two parts of 67
    request = {**KX_MT_REQUEST, "mobile": "13800000000,13500000000", "msgcontent": content, "messageid": "m-1"}
    parsed = KX.send_envelope(envelope(request, KX_MT_OK), NOW)
    assert [(e.phone, e.sign, e.segments, e.out_id) for e in parsed.events] == [
        ("+8613800000000", "五星集团", 2, "m-1"), ("+8613500000000", "五星集团", 2, "m-1")]


@pytest.mark.parametrize("length, segments", [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (1000, 15)])
def test_segments_by_length(length: int, segments: int) -> None:
    assert segments_for("x" * length) == segments


@pytest.mark.parametrize("content, sign", [
    ("【邦邦快递】 您的快递已到", "邦邦快递"), ("您的快递已到【邦邦快递】", "邦邦快递"), ("  【A】text", "A"),
    ("no sign here", ""), ("text 【middle】 text", ""), ("【】empty", ""),
])
def test_kx_sign_from_brackets(content: str, sign: str) -> None:
    assert sign_of(content) == sign


def test_kx_mt_failure_fails_every_number() -> None:
    request = {**KX_MT_REQUEST, "mobile": "13800000000,13500000000"}
    parsed = KX.send_envelope(envelope(request, {"code": " 11", "msg": " 签名信息鉴权失败"}), NOW)
    assert parsed.rejected == []
    assert [e.phone for e in parsed.events] == ["+8613800000000", "+8613500000000"]
    for e in parsed.events:
        assert (e.message_id, e.submit_ok, e.submit_code, e.submit_message) == (
            "submit-failed:1476235100217", False, "11", " 签名信息鉴权失败")


def test_kx_p2p_batch_sample_fails_only_the_failed_number() -> None:
    parsed = KX.send_envelope(envelope(KX_P2P_REQUEST, KX_P2P_PARTIAL, "2016-10-12T15:00:00+08:00"), NOW)
    assert parsed.rejected == []
    ok, bad = parsed.events
    assert (ok.message_id, ok.phone, ok.carrier, ok.submit_ok, ok.submit_code) == (
        "1222015900000109761867", "+8618600000001", "unicom", True, "")
    assert (ok.sign, ok.segments, ok.sent_at_ms) == ("邦邦快递", 1, utc_ms(2016, 10, 12, 7, 0, 0))
    assert (bad.message_id, bad.phone, bad.submit_ok, bad.submit_code, bad.submit_message) == (
        "1222015900000109761867", "+8618600000002", False, "11", "短信内容过长")


def test_kx_p2p_batch_failure_sample() -> None:
    parsed = KX.send_envelope(envelope(KX_P2P_REQUEST, KX_P2P_FAILED), NOW)
    assert [(e.message_id, e.phone, e.submit_ok, e.submit_code, e.submit_message) for e in parsed.events] == [
        ("submit-failed:1476235100217", "+8618600000001", False, "6", "sign 校验失败"),
        ("submit-failed:1476235100217", "+8618600000002", False, "6", "sign 校验失败"),
    ]


def test_kx_code_zero_without_taskid_is_bad_body() -> None:
    with pytest.raises(BadBody, match="taskid"):
        KX.send_envelope(envelope(KX_MT_REQUEST, {"code": "0", "msg": "成功"}), NOW)


def test_kx_non_array_result_is_bad_body() -> None:
    response = {"code": "0", "msg": "成功", "data": {"taskid": "1222015900000109761867", "result": 5}}
    try:
        KX.send_envelope(envelope(KX_P2P_REQUEST, response), NOW)
    except BadBody:
        pass


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

def test_normalized_sends() -> None:
    doc = [
        {"provider": "kx", "message_id": "1222015900000109761867", "phone": "13800000000", "sent_at": "2016-10-12T15:00:00+08:00",
         "template": "T1", "sign": "邦邦快递", "segments": 2, "out_id": "o-1"},
        {"provider": "tencent", "message_id": "5000:1", "phone": "+85291234567", "sent_at": 1457336869},
        {"provider": "aliyun", "message_id": "197703245997295588^0", "phone": "0086 139 0000 0001"},
    ]
    parsed = parse_sends(doc, IDS, NOW)
    assert parsed.rejected == []
    first, second, third = parsed.events
    assert (first.provider, first.message_id, first.phone, first.sent_at_ms) == (
        "kx", "1222015900000109761867", "+8613800000000", utc_ms(2016, 10, 12, 7, 0, 0))
    assert (first.template, first.sign, first.segments, first.out_id, first.submit_ok) == ("T1", "邦邦快递", 2, "o-1", True)
    assert (second.phone, second.carrier, second.sent_at_ms, second.segments) == ("+85291234567", "unknown", 1_457_336_869_000, None)
    assert (third.phone, third.sent_at_ms, third.received_at_ms) == ("+8613900000001", NOW, NOW)
    assert third.phone_hash == phash("+8613900000001")


def test_normalized_send_as_one_object() -> None:
    event = only(parse_sends({"provider": "kx", "message_id": "t", "phone": "13800000000"}, IDS, NOW))
    assert (event.provider, event.message_id, event.sent_at_ms) == ("kx", "t", NOW)


def test_normalized_sends_reject_bad_records_with_reasons() -> None:
    good = {"provider": "kx", "message_id": "t1", "phone": "13800000000", "sent_at": "2016-10-12T15:00:00+08:00"}
    doc = [
        {**good, "provider": "unknown"},
        good,
        {**good, "sent_at": "2016-10-12T15:00:00"},
        {**good, "segments": 0},
        {**good, "segments": True},
        {**good, "segments": 256},
        {**good, "phone": "abc"},
        {k: v for k, v in good.items() if k != "message_id"},
        {**good, "message_id": "m" * 129},
        {**good, "provider": 1},
        [good],
    ]
    parsed = parse_sends(doc, IDS, NOW)
    assert [e.message_id for e in parsed.events] == ["t1"]
    assert all(isinstance(r, Rejected) for r in parsed.rejected)
    reasons = {r.index: r.reason for r in parsed.rejected}
    assert sorted(reasons) == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "provider" in reasons[0]
    assert "no UTC offset" in reasons[2]
    assert all("segments" in reasons[i] for i in (3, 4, 5))
    assert "phone" in reasons[6]
    assert "'message_id'" in reasons[7]
    assert "message id" in reasons[8]
    assert "'provider'" in reasons[9]
    assert "object" in reasons[10]


@pytest.mark.parametrize("doc", ["x", 42, None, True])
def test_normalized_sends_wrong_top_level_is_bad_body(doc: Any) -> None:
    with pytest.raises(BadBody):
        parse_sends(doc, IDS, NOW)


@pytest.mark.parametrize("where", ["tencent reply", "normalized send", "envelope"])
def test_huge_epoch_is_rejected_not_raised(where: str) -> None:
    if where == "tencent reply":
        parsed = TENCENT.replies([{**TENCENT_REPLY, "time": 1e308}, TENCENT_REPLY], NOW)
        assert len(parsed.events) == 1 and parsed.rejected[0].index == 0
    elif where == "normalized send":
        parsed = parse_sends([{"provider": "kx", "message_id": "t", "phone": "13800000000", "sent_at": 1e308}], IDS, NOW)
        assert parsed.events == [] and parsed.rejected[0].index == 0
    else:
        with pytest.raises(BadBody, match="sent_at"):
            KX.send_envelope(envelope(KX_MT_REQUEST, KX_MT_OK, 1e308), NOW)


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
