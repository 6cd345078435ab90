"""Alibaba Cloud SMS (seed 000): SendSms / SendBatchSms, SmsReport and SmsUp HTTP batch push."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.times import parse_china_datetime
from sms_analytics.sources.base.fields import (
    MAX_FIELD_CHARS,
    BadBody,
    BadRecord,
    Event,
    Parsed,
    as_list,
    collect,
    decode_json,
    obj,
    opt_str,
    req_bool,
    req_str,
    req_text,
    scalar,
)
from sms_analytics.sources.base.provider import CallbackKind, Provider, Reply, json_reply


def _json_list(value: Any, name: str) -> list[Any]:
    """SendBatchSms takes its lists as JSON-encoded strings; accept real arrays too."""
    if isinstance(value, str):
        try:
            value = decode_json(value)
        except msgspec.DecodeError:
            raise BadBody(f"request.{name} is not a JSON array") from None
    if not isinstance(value, list):
        raise BadBody(f"request.{name} must be a JSON array")
    return value


def _segments(value: Any) -> int | None:
    """sms_size: one message of N billed parts (never N messages); unusable values are ignored."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip() if isinstance(value, int) else value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        return None
    size = int(text)
    return size if 1 <= size <= 255 else None


class Aliyun(Provider):
    name = "aliyun"
    callbacks: ClassVar[Mapping[str, CallbackKind]] = {"sms-report": "receipts", "sms-up": "replies"}
    feeds = "sms_analytics.sources.aliyun.feeds"

    def ok(self) -> Reply:
        return json_reply({"code": 0, "msg": "接收成功"})

    def error(self, reason: str) -> Reply:
        return json_reply({"code": 1, "msg": reason})

    def sends(self, request: dict[str, Any], response: dict[str, Any], sent_at_ms: int, now_ms: int) -> Parsed:
        if "PhoneNumberJson" in request:
            phones = _json_list(request["PhoneNumberJson"], "PhoneNumberJson")
            signs = _json_list(request.get("SignNameJson", "[]"), "SignNameJson")
        elif isinstance(request.get("PhoneNumbers"), str):
            phones = [p for p in request["PhoneNumbers"].split(",") if p.strip()]
            signs = []
        else:
            raise BadBody("request needs PhoneNumbers (SendSms) or PhoneNumberJson (SendBatchSms)")
        self.check_count(phones)
        code = scalar(response.get("Code"), "response.Code")
        if not code:
            raise BadBody("response.Code is missing")
        ok = code == "OK"
        biz_id = scalar(response.get("BizId"), "response.BizId")
        if ok and not biz_id:
            raise BadBody("response.Code is OK but BizId is missing")
        message_id = biz_id or f"submit-failed:{scalar(response.get('RequestId'), 'response.RequestId') or sent_at_ms}"
        template = scalar(request.get("TemplateCode"), "request.TemplateCode")
        default_sign = scalar(request.get("SignName"), "request.SignName")
        out_id = scalar(request.get("OutId"), "request.OutId")
        message = "" if ok else scalar(response.get("Message"), "response.Message", strip=False)

        def convert(index: int, raw_phone: Any) -> list[Event]:
            phone = self.ids.phone(raw_phone)
            sign = default_sign
            if index < len(signs) and isinstance(signs[index], str) and len(signs[index]) <= MAX_FIELD_CHARS:
                sign = signs[index]
            return [SendEvent(
                **self.ids.identity(self.name, message_id, phone),
                sent_at_ms=sent_at_ms, received_at_ms=now_ms, template=template, sign=sign,
                out_id=out_id, submit_ok=ok, submit_code="" if ok else code, submit_message=message,
            )]

        return collect(phones, convert, with_index=True)

    def receipts(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "SmsReport push"), lambda r: [self._report(obj(r, "report"), now_ms)])

    def _report(self, rec: dict[str, Any], now_ms: int) -> ReceiptEvent:
        phone = self.ids.phone(req_str(rec, "phone_number"))
        delivered = req_bool(rec, "success")
        send_time = rec.get("send_time")
        return ReceiptEvent(
            **self.ids.identity(self.name, req_str(rec, "biz_id"), phone),
            delivered=delivered,
            error_code=opt_str(rec, "err_code", "DELIVERED" if delivered else ""),
            error_message=opt_str(rec, "err_msg"),
            reported_at_ms=parse_china_datetime(rec.get("report_time")),
            sent_at_ms=None if send_time is None else parse_china_datetime(send_time),
            segments=_segments(rec.get("sms_size")),
            received_at_ms=now_ms,
            out_id=opt_str(rec, "out_id"),
        )

    def replies(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "SmsUp push"), lambda r: [self._reply(obj(r, "reply"), now_ms)])

    def _reply(self, rec: dict[str, Any], now_ms: int) -> ReplyEvent:
        phone = self.ids.phone(req_str(rec, "phone_number"))
        sequence_id = req_str(rec, "sequence_id")
        content = req_text(rec, "content")
        return ReplyEvent(
            provider=self.name, reply_id=f"aliyun:{sequence_id}", **self.ids.fields(phone),
            content=content, sign=opt_str(rec, "sign_name"), dest_code=opt_str(rec, "dest_code"),
            replied_at_ms=parse_china_datetime(rec.get("send_time")), received_at_ms=now_ms,
        )

    # --- QuerySendDetails (compensation, seed 000 §8.1) ----------------------------------------------
    def queried(self, details: list[Any], biz_id: str, now_ms: int) -> Parsed:
        """SmsSendDetailDTOs as receipts: SendStatus 3 delivered, 2 failed, 1 still waiting (no
        receipt). ErrCode and ReceiveDate are what the push calls err_code and report_time, so a
        receipt pushed and queried gets the same id and counts once."""
        def convert(record: Any) -> list[Event]:
            rec = obj(record, "SmsSendDetailDTO")
            status = opt_str(rec, "SendStatus")
            if status == "1":
                return []
            if status not in ("2", "3"):
                raise BadRecord(f"SendStatus must be 1, 2 or 3, got {status[:10]!r}")
            delivered = status == "3"
            send_date = rec.get("SendDate")
            return [ReceiptEvent(
                **self.ids.identity(self.name, biz_id, self.ids.phone(req_str(rec, "PhoneNum"))),
                delivered=delivered,
                error_code=opt_str(rec, "ErrCode", "DELIVERED" if delivered else ""),
                error_message="",
                reported_at_ms=parse_china_datetime(rec.get("ReceiveDate")),
                sent_at_ms=parse_china_datetime(send_date) if send_date else None,
                received_at_ms=now_ms,
                out_id=opt_str(rec, "OutId"),
                source="poll",
            )]

        return collect(details, convert)
