"""Alibaba Cloud (seed 000) payloads: the codes copied from the seed document (§6.1 submit, §6.2
receipts per carrier, §11.3.2 the success receipt), the signs and templates the simulator sends, and
the exact JSON bodies of SendSms/SendBatchSms send records, SmsReport and SmsUp pushes. Pure
functions of their arguments: no randomness (simulate/plan.py draws), no I/O (simulate/driver.py posts)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from sms_analytics.simulate.payloads.common import (
    Carrier,
    Json,
    SentAt,
    china_time,
    send_envelope,
)

# 000 §11.3.2 request sample: success receipt.
ALIYUN_DELIVERED: tuple[str, str] = ("DELIVERED", "用户接收成功")
# 000 §6.2 rows "<carrier>\t<code>\t<message>\t<advice>": (code, message, weight).
ALIYUN_RECEIPT_FAILURES: dict[Carrier, tuple[tuple[str, str, int], ...]] = {
    "移动": (
        ("DB:0141", "曾多次投诉移动或者工信部的黑名单", 3),
        ("IC:0055", "用户欠费停机", 3),
        ("IB:0064", "关机", 3),
        ("MB:1031", "内存满", 1),
        ("DB:0100", "手机号码不存在", 2),
        ("EXPIRED", "短消息超过有效期", 2),
        ("IC:0001", "运营商内部错误", 1),
    ),
    "联通": (
        ("UNDELIV", "发送失败", 3),
        ("R:00242", "空号", 2),
        ("R:00182", "停机", 2),
        ("R:00068", "无法接通", 1),
        ("SGIP:98", "停机", 1),
        ("W-BLACK", "黑名单", 1),
    ),
    "电信": (
        ("MK:0001", "空号", 3),
        ("MK:0005", "关机", 3),
        ("MK:0000", "用户欠费停机", 2),
        ("MN:0001", "SMSC返回状态报告为REJECT", 1),
        ("EXPIRED", "超时", 2),
        ("UNDELIV_64", "空号", 1),
    ),
}
# 000 §6.1 rows "<Code>\t<Message>\t...": a SendSms/SendBatchSms response without BizId.
ALIYUN_SUBMIT_ERRORS: tuple[tuple[str, str], ...] = (
    ("isv.BUSINESS_LIMIT_CONTROL", "业务限流"),
    ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
    ("isv.DAY_LIMIT_CONTROL", "触发日发送限额"),
    ("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单管控"),
)

ALIYUN_SIGNS: tuple[str, ...] = ("阿里云短信测试", "云栖科技", "鲜果园", "速达物流")
ALIYUN_TEMPLATES: tuple[tuple[str, int], ...] = (  # (TemplateCode, sms_size): long ones have N > 1
    ("SMS_153055065", 1), ("SMS_152550005", 1), ("SMS_205392047", 1), ("SMS_217436583", 2),
    ("SMS_229843212", 3),
)


def aliyun_send(
    phones: Sequence[str],
    *,
    sign_name: str,
    template_code: str,
    request_id: str,
    sent_at: SentAt,
    biz_id: str | None,
    out_id: str | None = None,
    batch: bool = False,
    error: tuple[str, str] | None = None,
) -> Json:
    """Body for ``POST /v1/sends/aliyun``.

    ``aliyun_send(phones, *, sign_name, template_code, request_id, sent_at, biz_id,
    out_id=None, batch=False, error=None) -> dict``

    ``batch=False``: SendSms params (PhoneNumbers comma-separated, SignName, TemplateCode, OutId?).
    ``batch=True``: SendBatchSms params (PhoneNumberJson / SignNameJson as JSON-encoded string
    arrays, TemplateCode; SendBatchSms has no OutId). ``error=(Code, Message)`` from §6.1 gives a
    failed response without BizId; otherwise the response is Code/Message "OK" with ``biz_id``.
    """
    request: Json
    if batch:
        request = {
            "PhoneNumberJson": msgspec.json.encode(list(phones)).decode(),
            "SignNameJson": msgspec.json.encode([sign_name] * len(phones)).decode(),
            "TemplateCode": template_code,
        }
    else:
        request = {"PhoneNumbers": ",".join(phones), "SignName": sign_name, "TemplateCode": template_code}
        if out_id is not None:
            request["OutId"] = out_id
    response: Json
    if error is not None:
        response = {"Code": error[0], "Message": error[1], "RequestId": request_id}
    else:
        if biz_id is None:
            raise ValueError("a successful Alibaba response needs a BizId")
        response = {"Code": "OK", "Message": "OK", "RequestId": request_id, "BizId": biz_id}
    return send_envelope(request, response, sent_at)


def aliyun_report(
    phone: str,
    biz_id: str,
    *,
    send_time: float,
    report_time: float,
    err_code: str,
    err_msg: str,
    success: bool | None = None,
    sms_size: int = 1,
    out_id: str = "",
) -> Json:
    """One SmsReport record (000 §11.3.2); the POST body is a JSON array of these.

    ``aliyun_report(phone, biz_id, *, send_time, report_time, err_code, err_msg, success=None,
    sms_size=1, out_id="") -> dict``. Times are epoch seconds, rendered in China time;
    ``success`` defaults to ``err_code == "DELIVERED"``.
    """
    return {
        "phone_number": phone,
        "send_time": china_time(send_time),
        "report_time": china_time(report_time),
        "success": err_code == ALIYUN_DELIVERED[0] if success is None else success,
        "err_code": err_code,
        "err_msg": err_msg,
        "sms_size": str(sms_size),
        "biz_id": biz_id,
        "out_id": out_id,
    }


def aliyun_sms_up(
    phone: str, *, send_time: float, content: str, sign_name: str, dest_code: str, sequence_id: int
) -> Json:
    """One SmsUp record (000 §11.3.1); the POST body is a JSON array.

    ``aliyun_sms_up(phone, *, send_time, content, sign_name, dest_code, sequence_id) -> dict``.
    """
    return {
        "phone_number": phone,
        "send_time": china_time(send_time),
        "content": content,
        "sign_name": sign_name,
        "dest_code": dest_code,
        "sequence_id": sequence_id,
    }
