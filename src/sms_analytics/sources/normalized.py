"""`POST /v1/sends`: normalized send records from any provider, one object or an array."""

from __future__ import annotations

from typing import Any

from sms_analytics.model.events import SendEvent
from sms_analytics.model.providers import PROVIDERS
from sms_analytics.model.times import parse_instant
from sms_analytics.sources.base.fields import (
    BadRecord,
    Event,
    Identities,
    Parsed,
    as_records,
    collect,
    obj,
    opt_str,
    req_str,
)


def parse_sends(doc: Any, ids: Identities, now_ms: int) -> Parsed:
    def convert(record: Any) -> list[Event]:
        rec = obj(record, "send")
        provider = req_str(rec, "provider", allow_number=False)
        if provider not in PROVIDERS:
            raise BadRecord(f"provider must be one of {', '.join(PROVIDERS)}")
        phone = ids.phone(req_str(rec, "phone"))
        sent_at = rec.get("sent_at")
        segments = rec.get("segments")
        if segments is not None and (isinstance(segments, bool) or not isinstance(segments, int)
                                     or not 1 <= segments <= 255):
            raise BadRecord("segments must be an integer from 1 to 255")
        return [SendEvent(
            **ids.identity(provider, req_str(rec, "message_id"), phone),
            sent_at_ms=now_ms if sent_at is None else parse_instant(sent_at),
            received_at_ms=now_ms, template=opt_str(rec, "template"), sign=opt_str(rec, "sign"),
            segments=segments, out_id=opt_str(rec, "out_id"),
        )]

    return collect(as_records(doc), convert)
