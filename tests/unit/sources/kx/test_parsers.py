"""sources/kx/parsers.py on the provider's documented samples (split from test_parsers.py)."""

from __future__ import annotations

import contextlib

import orjson
import pytest

from sms_analytics.sources.base.fields import BadBody, Parsed
from sms_analytics.sources.kx.parsers import sign_of
from tests.unit.sources.base.test_provider import (
    KX,
    KX_MO,
    KX_MT_OK,
    KX_MT_REQUEST,
    KX_REPORT,
    NOW,
    envelope,
    only,
    utc_ms,
)

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
    with contextlib.suppress(BadBody):
        KX.send_envelope(envelope(KX_P2P_REQUEST, response), NOW)
