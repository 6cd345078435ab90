"""Tencent Cloud (seed 002) payloads: the codes copied from the seed document (回执状态错误码 per
carrier, the SendSms error codes), the app ids, signs and templates the simulator sends, and the exact
JSON bodies of SendSms send records, status callbacks and reply callbacks. Pure functions of their
arguments: no randomness (simulate/plan.py draws), no I/O (simulate/driver.py posts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sms_analytics.simulate.payloads.common import (
    Carrier,
    Json,
    SentAt,
    china_time,
    send_envelope,
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

TENCENT_SDK_APP_IDS: tuple[str, ...] = ("1400006666", "1400787878")
TENCENT_SIGNS: tuple[str, ...] = ("腾讯云", "乐享出行", "微鲸健康")
TENCENT_TEMPLATES: tuple[tuple[str, int], ...] = (  # (TemplateId, Fee): long ones bill N > 1
    ("1110", 1), ("449739", 1), ("1528346", 2), ("1733921", 3),
)


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


def tencent_reply(phone: str, *, time_s: int, text: str, sign: str, extend: str = "") -> Json:
    """The reply-callback body (002 短信回复), a single JSON object.

    ``tencent_reply(phone, *, time_s, text, sign, extend="") -> dict``; ``time`` is UNIX seconds.
    """
    return {"extend": extend, "mobile": phone, "nationcode": "86", "sign": sign, "text": text,
            "time": time_s}
