"""observability/deadletters.py: reason classes and bounded endpoint labels (split from test_observability.py)."""

from __future__ import annotations

import pytest

from sms_analytics.observability.deadletters import endpoint_label, reason_class


@pytest.mark.parametrize("reason, expected", [
    ("body is not valid JSON (UTF-8): unexpected character: line 1 column 1 (char 0)", "unreadable_body"),
    ("body larger than 5242880 bytes (SMS_MAX_BODY_BYTES): at least 6000000 bytes", "body_too_large"),
    ("too many records in one push: 10001 > 10000 (SMS_MAX_RECORDS_PER_PUSH)", "too_many_records"),
    ("phone is not a possible number for its country", "bad_phone"),
    ("phone is not a China mobile number (11 digits starting with 1)", "bad_phone"),
    ("missing field 'phone'", "missing_field"),
    ("time '2026-11-20 04:00:00' has no UTC offset", "bad_time"),
    ("timestamp out of window: time 1 is outside the accepted window", "timestamp_out_of_window"),
    ("provider must be one of aliyun, tencent, kx", "bad_shape"),
    ("request needs PhoneNumbers (SendSms) or PhoneNumberJson (SendBatchSms)", "bad_shape"),
    ("internal error while parsing (KeyError)", "internal_error"),
    ("MNS SmsReport message 13912345678: something else entirely", "other"),
])
def test_reason_classes(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_endpoint_labels_are_bounded() -> None:
    assert endpoint_label("/callbacks/aliyun/sms-report") == "/callbacks/aliyun/sms-report"
    assert endpoint_label("/v1/sends/kx") == "/v1/sends/kx"
    assert endpoint_label("feed:aliyun-mns:SmsReport") == "feed:aliyun-mns:SmsReport"
    assert endpoint_label("/v1/sends/13912345678") == "other"
    assert endpoint_label("/anything?phone=13912345678") == "other"
