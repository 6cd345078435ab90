"""`POST /v1/sends` and `POST /v1/conversions`: normalized records from any provider, one object or an array."""

from __future__ import annotations

from typing import Any

from sms_analytics.model.events import ConversionEvent, SendEvent, conversion_id
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

# The window form of a conversion: sent_to defaults to converted_at, sent_from to sent_to minus this;
# a window may span at most MAX_CONVERSION_WINDOW_MS.
DEFAULT_CONVERSION_WINDOW_MS = 30 * 60_000
MAX_CONVERSION_WINDOW_MS = 86_400_000
CONVERSION_IDENTITY = ("phone_hash", "phone_masked", "carrier", "country_code")


def _provider(rec: dict[str, Any]) -> str:
    provider = req_str(rec, "provider", allow_number=False)
    if provider not in PROVIDERS:
        raise BadRecord(f"provider must be one of {', '.join(PROVIDERS)}")
    return provider


def parse_sends(doc: Any, ids: Identities, now_ms: int) -> Parsed:
    def convert(record: Any) -> list[Event]:
        rec = obj(record, "send")
        provider = _provider(rec)
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


def parse_conversions(doc: Any, ids: Identities, now_ms: int) -> Parsed:
    """`{provider, converted_at, message_id [, phone] [, template]}` or `{provider, converted_at, phone,
    template [, sent_from] [, sent_to]}`; the number is kept as its keyed hash and mask only."""
    def convert(record: Any) -> list[Event]:
        rec = obj(record, "conversion")
        provider = _provider(rec)
        if rec.get("converted_at") is None:
            raise BadRecord("missing field 'converted_at'")
        converted_at = parse_instant(rec["converted_at"])
        message_id = opt_str(rec, "message_id")
        template = opt_str(rec, "template")
        if len(message_id) > 128:
            raise BadRecord("message id is longer than 128 characters")
        raw_phone = rec.get("phone")
        if not message_id and (raw_phone in (None, "") or not template):
            raise BadRecord("a conversion needs message_id, or phone and template (with an optional sent window)")
        known = ids.fields(ids.phone(raw_phone)) if raw_phone not in (None, "") else {}
        # Only what a conversion carries: the hash and the mask (never the number), carrier and country;
        # the message's own parts carry the rest (its region: migrations/0014).
        fields = {name: known[name] for name in CONVERSION_IDENTITY if name in known}
        window: tuple[int | None, int | None] = (None, None) if message_id else _window(rec, converted_at)
        phone_hash = fields.get("phone_hash", "")
        return [ConversionEvent(
            provider=provider, message_id=message_id, template=template, sent_from_ms=window[0], sent_to_ms=window[1],
            converted_at_ms=converted_at, received_at_ms=now_ms, **fields,
            conversion_id=conversion_id(provider, message_id, phone_hash, template, window[0], window[1], converted_at),
        )]

    return collect(as_records(doc), convert)


def _window(rec: dict[str, Any], converted_at: int) -> tuple[int, int]:
    sent_to = converted_at if rec.get("sent_to") is None else parse_instant(rec["sent_to"])
    sent_from = sent_to - DEFAULT_CONVERSION_WINDOW_MS if rec.get("sent_from") is None else parse_instant(rec["sent_from"])
    if sent_from > sent_to:
        raise BadRecord("sent_from is after sent_to")
    if sent_to - sent_from > MAX_CONVERSION_WINDOW_MS:
        raise BadRecord("the sent window spans more than a day")
    return sent_from, sent_to
