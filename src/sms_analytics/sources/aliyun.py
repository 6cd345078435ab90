"""Alibaba Cloud SMS (seed 000): SendSms / SendBatchSms, SmsReport and SmsUp HTTP batch push."""

from __future__ import annotations

from typing import Any

import orjson

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.times import parse_china_datetime
from sms_analytics.sources.base import (
    BadBody, BadRecord, Event, Parsed, as_list, collect, obj, opt_str, req_bool, req_str,
)
from sms_analytics.sources.provider import Provider, Reply, json_reply


def _json_list(value: Any, name: str) -> list[Any]:
    """SendBatchSms takes its lists as JSON-encoded strings; accept real arrays too."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadBody(f"request.{name} is not a JSON array") from None
    if not isinstance(value, list):
        raise BadBody(f"request.{name} must be a JSON array")
    return value


def _segments(value: Any) -> int | None:
    """sms_size: one message of N billed parts (never N messages); unusable values are ignored."""
    try:
        size = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return size if 1 <= size <= 255 else None


class Aliyun(Provider):
    name = "aliyun"

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
        code = str(response.get("Code", ""))
        if not code:
            raise BadBody("response.Code is missing")
        ok = code == "OK"
        biz_id = str(response.get("BizId") or "")
        if ok and not biz_id:
            raise BadBody("response.Code is OK but BizId is missing")
        message_id = biz_id or f"submit-failed:{response.get('RequestId') or sent_at_ms}"
        template = str(request.get("TemplateCode") or "")
        default_sign = str(request.get("SignName") or "")
        out_id = str(request.get("OutId") or "")

        def convert(index_phone: tuple[int, Any]) -> list[Event]:
            index, raw_phone = index_phone
            phone = self.ids.phone(raw_phone)
            sign = signs[index] if index < len(signs) and isinstance(signs[index], str) else default_sign
            return [SendEvent(
                **self.ids.identity(self.name, message_id, phone),
                sent_at_ms=sent_at_ms, received_at_ms=now_ms, template=template, sign=sign,
                out_id=out_id, submit_ok=ok, submit_code="" if ok else code,
                submit_message="" if ok else str(response.get("Message") or ""),
            )]

        return collect(list(enumerate(phones)), convert)

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
            sent_at_ms=parse_china_datetime(send_time) if send_time else None,
            segments=_segments(rec.get("sms_size")),
            received_at_ms=now_ms,
            out_id=opt_str(rec, "out_id"),
        )

    def replies(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "SmsUp push"), lambda r: [self._reply(obj(r, "reply"), now_ms)])

    def _reply(self, rec: dict[str, Any], now_ms: int) -> ReplyEvent:
        phone = self.ids.phone(req_str(rec, "phone_number"))
        sequence_id = req_str(rec, "sequence_id")
        content = rec.get("content")
        if not isinstance(content, str):
            raise BadRecord("field 'content' must be a string")
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
            status = str(rec.get("SendStatus", "")).strip()
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
