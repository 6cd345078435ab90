"""sources/tencent/parsers.py on the provider's documented samples (split from test_parsers.py)."""

from __future__ import annotations

import pytest

from sms_analytics.sources.base.fields import BadBody
from tests.unit.sources.base.test_provider import (
    NOW,
    TENCENT,
    TENCENT_REPLY,
    TENCENT_SEND_REQUEST,
    TENCENT_STATUS,
    envelope,
    only,
    phash,
    utc_ms,
)

TENCENT_SEND_RESPONSE = {"Response": {"SendStatusSet": [
    {"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": "+8618501234444", "Fee": 1,
     "SessionContext": "outsid_1729495320_1011", "Code": "Ok", "Message": "send success", "IsoCode": "CN"},
    {"SerialNo": "5000:1045710669157053657849499718", "PhoneNumber": "+8618501234445", "Fee": 1,
     "SessionContext": "outsid_1729495320_1011", "Code": "Ok", "Message": "send success", "IsoCode": "CN"},
], "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}}


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
    with pytest.raises(BadBody, match=r"AuthFailure\.SignatureFailure"):
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
