"""sources/aliyun/parsers.py on the provider's documented samples (split from test_parsers.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from tests.unit.sources.base.test_provider import (
    ALIYUN,
    ALIYUN_REPORT,
    ALIYUN_SEND_OK,
    ALIYUN_UP,
    NOW,
    envelope,
    only,
    phash,
    utc_ms,
)


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
