"""Tencent Cloud SMS (seed 002): SendSms (SerialNo per number), status and reply callbacks."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.times import parse_china_datetime, parse_epoch_seconds
from sms_analytics.sources.base.fields import (
    BadBody,
    BadRecord,
    Event,
    Parsed,
    as_list,
    as_records,
    collect,
    obj,
    opt_str,
    req_str,
    req_text,
    scalar,
)
from sms_analytics.sources.base.provider import CallbackKind, Provider, Reply, json_reply


class Tencent(Provider):
    name = "tencent"
    callbacks: ClassVar[Mapping[str, CallbackKind]] = {"status": "receipts", "reply": "replies"}
    feeds = "sms_analytics.sources.tencent.feeds"

    def ok(self) -> Reply:
        return json_reply({"result": 0, "errmsg": "OK"})

    def error(self, reason: str) -> Reply:
        return json_reply({"result": 1, "errmsg": reason})

    def sends(self, request: dict[str, Any], response: dict[str, Any], sent_at_ms: int, now_ms: int) -> Parsed:
        inner = response.get("Response")
        if not isinstance(inner, dict):
            raise BadBody("response.Response must be an object")
        statuses = inner.get("SendStatusSet")
        if not isinstance(statuses, list):
            error = inner.get("Error")
            code = error.get("Code") if isinstance(error, dict) else None
            reason = f" ({code[:100]})" if isinstance(code, str) else ""
            raise BadBody(f"response.Response.SendStatusSet must be an array{reason}")
        self.check_count(statuses)
        request_id = scalar(inner.get("RequestId"), "response.Response.RequestId") or str(sent_at_ms)
        template = scalar(request.get("TemplateId"), "request.TemplateId")
        sign = scalar(request.get("SignName"), "request.SignName")
        context = scalar(request.get("SessionContext"), "request.SessionContext")

        def convert(entry: Any) -> list[Event]:
            rec = obj(entry, "SendStatusSet entry")
            phone = self.ids.phone(req_str(rec, "PhoneNumber"))
            code = req_str(rec, "Code")
            ok = code == "Ok"
            serial = opt_str(rec, "SerialNo")
            if ok and not serial:
                raise BadRecord("Code is Ok but SerialNo is missing")
            fee = rec.get("Fee")
            return [SendEvent(
                **self.ids.identity(self.name, serial or f"submit-failed:{request_id}", phone),
                sent_at_ms=sent_at_ms, received_at_ms=now_ms, template=template, sign=sign,
                segments=fee if isinstance(fee, int) and not isinstance(fee, bool) and 0 < fee < 256 else None,
                out_id=opt_str(rec, "SessionContext", context), submit_ok=ok,
                submit_code="" if ok else code, submit_message="" if ok else opt_str(rec, "Message"),
            )]

        return collect(statuses, convert)

    def receipts(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "status callback"), lambda r: [self._status(obj(r, "status"), now_ms)])

    def _status(self, rec: dict[str, Any], now_ms: int) -> ReceiptEvent:
        phone = self.ids.phone(req_str(rec, "mobile"), opt_str(rec, "nationcode") or None)
        report_status = req_str(rec, "report_status").upper()
        if report_status not in ("SUCCESS", "FAIL"):
            raise BadRecord(f"report_status must be SUCCESS or FAIL, got {report_status[:20]!r}")
        delivered = report_status == "SUCCESS"
        return ReceiptEvent(
            **self.ids.identity(self.name, req_str(rec, "sid"), phone),
            delivered=delivered,
            error_code=opt_str(rec, "errmsg", "DELIVRD" if delivered else ""),
            error_message=opt_str(rec, "description"),
            reported_at_ms=parse_china_datetime(rec.get("user_receive_time")),
            received_at_ms=now_ms,
            out_id=opt_str(rec, "ext"),
        )

    def replies(self, doc: Any, now_ms: int) -> Parsed:
        # The document shows one object per callback; arrays are accepted as well.
        return collect(as_records(doc), lambda r: [self._reply(obj(r, "reply"), now_ms)])

    def _reply(self, rec: dict[str, Any], now_ms: int) -> ReplyEvent:
        phone = self.ids.phone(req_str(rec, "mobile"), opt_str(rec, "nationcode") or None)
        text = req_text(rec, "text")
        replied_at_ms = parse_epoch_seconds(rec.get("time"))
        return ReplyEvent(
            provider=self.name, reply_id=_reply_id(phone.e164, replied_at_ms, text), **self.ids.fields(phone), content=text,
            sign=opt_str(rec, "sign"), dest_code=opt_str(rec, "extend"),
            replied_at_ms=replied_at_ms, received_at_ms=now_ms,
        )

    # --- pulled (PullSmsSendStatus / PullSmsReplyStatus): same events as the callbacks ----------------
    def pulled_statuses(self, records: list[Any], now_ms: int) -> Parsed:
        """PullSmsSendStatusSet entries. `Description` carries the code (DELIVRD …) that the status
        callback calls `errmsg`, and UserReceiveTime is epoch seconds, so a receipt pushed and
        pulled gets the same receipt id and counts once."""
        return collect(records, lambda r: [self._pulled_status(obj(r, "PullSmsSendStatus"), now_ms)])

    def _pulled_status(self, rec: dict[str, Any], now_ms: int) -> ReceiptEvent:
        phone = self.ids.phone(req_str(rec, "PhoneNumber"))
        report_status = req_str(rec, "ReportStatus").upper()
        if report_status not in ("SUCCESS", "FAIL"):
            raise BadRecord(f"ReportStatus must be SUCCESS or FAIL, got {report_status[:20]!r}")
        delivered = report_status == "SUCCESS"
        return ReceiptEvent(
            **self.ids.identity(self.name, req_str(rec, "SerialNo"), phone),
            delivered=delivered,
            error_code=opt_str(rec, "Description", "DELIVRD" if delivered else ""),
            error_message="",
            reported_at_ms=parse_epoch_seconds(rec.get("UserReceiveTime")),
            received_at_ms=now_ms,
            out_id=opt_str(rec, "SessionContext"),
            source="poll",
        )

    def pulled_replies(self, records: list[Any], now_ms: int) -> Parsed:
        return collect(records, lambda r: [self._pulled_reply(obj(r, "PullSmsReplyStatus"), now_ms)])

    def _pulled_reply(self, rec: dict[str, Any], now_ms: int) -> ReplyEvent:
        phone = self.ids.phone(req_str(rec, "PhoneNumber"))
        text = req_text(rec, "ReplyContent")
        replied_at_ms = parse_epoch_seconds(rec.get("ReplyTime"))
        return ReplyEvent(
            provider=self.name, reply_id=_reply_id(phone.e164, replied_at_ms, text), **self.ids.fields(phone),
            content=text, sign=opt_str(rec, "SignName"), dest_code=opt_str(rec, "ExtendCode"),
            replied_at_ms=replied_at_ms, received_at_ms=now_ms,
        )


def _reply_id(e164: str, replied_at_ms: int, text: str) -> str:
    """A reply pushed and pulled has the same id (same number, time and text)."""
    return "tencent:" + hashlib.blake2b(f"{e164}|{replied_at_ms}|{text}".encode(), digest_size=10).hexdigest()
