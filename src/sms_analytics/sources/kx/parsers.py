"""KX aggregator (seed 001): MT / P2PBatch sends (taskid), Report and MO pushes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from sms_analytics.model.events import ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.providers import segments
from sms_analytics.model.times import parse_compact
from sms_analytics.sources.base.fields import (
    BadBody,
    BadRecord,
    Event,
    Parsed,
    as_list,
    collect,
    obj,
    opt_str,
    req_str,
    req_text,
    scalar,
)
from sms_analytics.sources.base.provider import CallbackKind, Provider, Reply

_SIGN = re.compile(r"^\s*【([^】]{1,40})】|【([^】]{1,40})】\s*$")


def sign_of(content: str) -> str:
    match = _SIGN.search(content)
    return (match.group(1) or match.group(2)) if match else ""


def _code(value: Any, name: str) -> str:
    """A code, id or message of a KX response: a string or a number (BadBody otherwise)."""
    return scalar(value, name)


def _number_key(value: Any) -> str:
    return str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


def _record_code(result: dict[str, Any], name: str) -> str:
    """A per-number result's code or msg (a bad one rejects that number only; msg kept as sent)."""
    try:
        return scalar(result.get(name), f"result.{name}", strip=name != "msg")
    except BadBody as exc:
        raise BadRecord(str(exc)) from None


class Kx(Provider):
    name = "kx"
    callbacks: ClassVar[Mapping[str, CallbackKind]] = {"report": "receipts", "mo": "replies"}
    feeds = "sms_analytics.sources.kx.feeds"

    def ok(self) -> Reply:
        return Reply(b"SUCCESS", "text/plain")

    def error(self, reason: str) -> Reply:
        return Reply(f"FAIL {reason}".encode(), "text/plain")

    def sends(self, request: dict[str, Any], response: dict[str, Any], sent_at_ms: int, now_ms: int) -> Parsed:
        code = _code(response.get("code"), "response.code")
        if not code:
            raise BadBody("response.code is missing")
        data = response.get("data")
        if not isinstance(data, dict):
            data = {}
        taskid = _code(data.get("taskid"), "response.data.taskid")
        if code == "0" and not taskid:
            raise BadBody("response.code is 0 but data.taskid is missing")
        message_id = taskid or f"submit-failed:{_code(request.get('ts'), 'request.ts') or sent_at_ms}"
        results = data.get("result") or []
        if not isinstance(results, list):
            raise BadBody("response.data.result must be an array")
        self.check_count(results)
        per_number = {_number_key(r.get("mobile")): r for r in results if isinstance(r, dict)}
        if isinstance(request.get("list"), list):  # P2PBatch
            items = request["list"]
        elif isinstance(request.get("mobile"), str):  # MT
            content = _code(request.get("msgcontent"), "request.msgcontent")
            items = [{"mobile": m, "msgcontent": content} for m in request["mobile"].split(",") if m.strip()]
        else:
            raise BadBody("request needs mobile (MT) or list (P2PBatch)")
        self.check_count(items)
        out_id = _code(request.get("messageid"), "request.messageid")
        response_msg = scalar(response.get("msg"), "response.msg", strip=False)

        def convert(item: Any) -> list[Event]:
            rec = {k.strip(): v for k, v in obj(item, "list entry").items()}  # the doc's sample has "mobile "
            mobile = req_str(rec, "mobile")
            phone = self.ids.phone(mobile)
            content = opt_str(rec, "msgcontent")
            result = per_number.get(mobile)
            number_code = _record_code(result, "code") if result is not None else code
            ok = code == "0" and number_code == "0"
            failure = number_code if number_code != "0" else code
            message = "" if ok else (_record_code(result, "msg") if result is not None else response_msg)
            return [SendEvent(
                **self.ids.identity(self.name, message_id, phone),
                sent_at_ms=sent_at_ms, received_at_ms=now_ms, sign=sign_of(content),
                segments=segments(content), out_id=out_id,
                submit_ok=ok, submit_code="" if ok else failure, submit_message=message,
            )]

        return collect(items, convert)

    def receipts(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "Report push"), lambda r: [self._report(obj(r, "report"), now_ms)])

    def _report(self, rec: dict[str, Any], now_ms: int) -> ReceiptEvent:
        phone = self.ids.phone(req_str(rec, "mobile"))
        code = req_str(rec, "code")
        return ReceiptEvent(
            **self.ids.identity(self.name, req_str(rec, "taskid"), phone),
            delivered=code == "DELIVRD",
            error_code=code,
            error_message=opt_str(rec, "msg"),
            reported_at_ms=parse_compact(rec.get("time")),
            received_at_ms=now_ms,
            out_id=opt_str(rec, "messageid"),
        )

    def replies(self, doc: Any, now_ms: int) -> Parsed:
        return collect(as_list(doc, "MO push"), lambda r: [self._reply(obj(r, "mo"), now_ms)])

    def _reply(self, rec: dict[str, Any], now_ms: int) -> ReplyEvent:
        phone = self.ids.phone(req_str(rec, "mobile"))
        content = req_text(rec, "msgcontent")
        return ReplyEvent(
            provider=self.name, reply_id=f"kx:{req_str(rec, 'id')}", **self.ids.fields(phone),
            content=content, dest_code=opt_str(rec, "srcid"),
            replied_at_ms=parse_compact(rec.get("time")), received_at_ms=now_ms,
        )
