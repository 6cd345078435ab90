"""What every provider module shares: field readers, the identity builder, parse results.

A provider module turns one HTTP body into a `Parsed`: the events to publish and the records
rejected with their reasons. A body that is not of the expected shape at all raises `BadBody`.

Input is hostile until proven otherwise: every value read from a body goes through a reader here
(`req_str`, `opt_str`, `scalar`, …) that accepts only the JSON types it expects and caps its
length, a reason never quotes more than `MAX_REASON_CHARS` of the input, and a record that cannot
be serialized back (nested deeper than the encoder writes) is still dead-lettered (`raw_of`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import msgspec
import structlog

from sms_analytics.model.events import (
    ConversionEvent,
    Identity,
    ProviderBalance,
    ProviderStats,
    ReceiptEvent,
    ReplyEvent,
    SendEvent,
    SignInfo,
    TemplateInfo,
)
from sms_analytics.model.phone import BadPhone, Phone, PhoneHasher, normalize
from sms_analytics.model.region import region_of
from sms_analytics.model.times import BadTime

log = structlog.get_logger(__name__)
Event = SendEvent | ReceiptEvent | ReplyEvent | ProviderBalance | ProviderStats | TemplateInfo | SignInfo | ConversionEvent
MAX_FIELD_CHARS = 4096
MAX_REASON_CHARS = 500
MAX_DEPTH = 1024  # the nesting a JSON body may have; deeper is not JSON we read
INTERNAL_ERROR = "internal error while parsing"  # a parser bug; the fuzz tests fail on it


class BadBody(ValueError):
    """The whole body is unusable (not JSON, wrong top-level shape)."""


class BadRecord(ValueError):
    """One record is unusable; its neighbours are still processed."""


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    reason: str
    raw: bytes


@dataclass(slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # For each event, the index and the record it came from (filled by `collect`), so a check made
    # after parsing (the receiver's timestamp window) can reject the record it belongs to.
    origins: list[tuple[int, Any]] = field(default_factory=list)


def reason_of(exc: BaseException | str) -> str:
    """A rejection reason: at most MAX_REASON_CHARS characters, always encodable as UTF-8."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS - 1] + "…"
    return text


def decode_json(data: bytes | str) -> Any:
    """`msgspec.json.decode`, nested at most MAX_DEPTH levels whatever the caller's stack depth
    (msgspec counts each level against Python's recursion limit, so the limit is set to this frame's
    depth + MAX_DEPTH for the call). Deeper: `msgspec.DecodeError`, like any other invalid JSON."""
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + MAX_DEPTH)
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        raise msgspec.DecodeError(f"depth limit exceeded ({MAX_DEPTH} levels)") from None
    finally:
        sys.setrecursionlimit(limit)


def loads(body: bytes) -> Any:
    """JSON (RFC 8259) in UTF-8; a leading byte order mark is ignored, as the RFC allows."""
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        return decode_json(body)
    except msgspec.DecodeError as exc:
        raise BadBody(f"body is not valid JSON (UTF-8): {exc}") from None


def as_list(doc: Any, what: str) -> list[Any]:
    if not isinstance(doc, list):
        raise BadBody(f"{what}: expected a JSON array, got {type(doc).__name__}")
    return doc


def as_records(doc: Any) -> list[Any]:
    """One object or an array of objects."""
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        return doc
    raise BadBody(f"expected a JSON object or array, got {type(doc).__name__}")


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRecord(f"{what}: expected an object, got {type(value).__name__}")
    return value


def req_str(rec: dict[str, Any], name: str, *, allow_number: bool = True) -> str:
    value = rec.get(name)
    if value is None or value == "":
        raise BadRecord(f"missing field {name!r}")
    return _as_str(value, name, allow_number)


def opt_str(rec: dict[str, Any], name: str, default: str = "") -> str:
    value = rec.get(name)
    if value is None:
        return default
    return _as_str(value, name, True)


def scalar(value: Any, name: str, default: str = "", *, strip: bool = True) -> str:
    """A string, number or null from a provider's request/response, as text (null: default).
    Anything else (object, array, boolean) is not what any document allows there: BadBody."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadBody(f"{name} must be a string or a number, got {type(value).__name__}")
    return _as_str(value, name, True, BadBody, strip=strip)


def _as_str(value: Any, name: str, allow_number: bool, error: type[ValueError] = BadRecord, *,
            strip: bool = True) -> str:
    if isinstance(value, str):
        text = value.strip() if strip else value
    elif allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise error(f"field {name!r} must be a string, got {type(value).__name__}")
    if len(text) > MAX_FIELD_CHARS:
        raise error(f"field {name!r} is longer than {MAX_FIELD_CHARS} characters")
    return text


def req_text(rec: dict[str, Any], name: str) -> str:
    """Message text (uplink content): a string, kept as sent (not stripped), at most MAX_FIELD_CHARS."""
    value = rec.get(name)
    if not isinstance(value, str):
        raise BadRecord(f"field {name!r} must be a string")
    if len(value) > MAX_FIELD_CHARS:
        raise BadRecord(f"field {name!r} is longer than {MAX_FIELD_CHARS} characters")
    return value


def req_bool(rec: dict[str, Any], name: str) -> bool:
    value = rec.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRecord(f"field {name!r} must be a boolean")


def raw_of(record: Any) -> bytes:
    """The record as JSON again, for the dead-letter topic. The encoder stops at Python's recursion
    limit (a body may nest MAX_DEPTH levels), so those are written by a loop that has no depth limit."""
    try:
        return msgspec.json.encode(record)
    except (TypeError, RecursionError):
        return _dumps_deep(record)


def _dumps_deep(value: Any) -> bytes:
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):  # a literal piece queued below
            out.append(item)
        elif isinstance(item, list):
            out.append(b"[")
            stack.append(b"]")
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(b",")
        elif isinstance(item, dict):
            out.append(b"{")
            stack.append(b"}")
            pairs = list(item.items())
            for i in range(len(pairs) - 1, -1, -1):
                key, val = pairs[i]
                stack.append(val)
                stack.append(msgspec.json.encode(str(key)) + b":")
                if i:
                    stack.append(b",")
        else:
            try:
                out.append(msgspec.json.encode(item))
            except TypeError:
                out.append(msgspec.json.encode(repr(item)))
    return b"".join(out)


def collect(records: list[Any], convert: Callable[..., list[Event]], parsed: Parsed | None = None, *,
            with_index: bool = False) -> Parsed:
    """Convert each record (`convert(record)`, or `convert(index, record)` with `with_index`); a
    bad one is rejected with its reason, its neighbours go on.

    An unexpected exception in one record (a parser bug) rejects that record with the reason
    `internal error while parsing …` and is logged: its neighbours still go on."""
    out = parsed or Parsed()
    for index, record in enumerate(records):
        try:
            events = convert(index, record) if with_index else convert(record)
        except (BadRecord, BadPhone, BadTime) as exc:
            out.rejected.append(Rejected(index, _record_reason(exc), raw_of(record)))
            continue
        except (BadBody, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must cost one record, never the push
            log.error("parse.internal_error", index=index, error=type(exc).__name__)
            out.rejected.append(Rejected(index, f"{INTERNAL_ERROR} ({type(exc).__name__})", raw_of(record)))
            continue
        out.events.extend(events)
        out.origins.extend((index, record) for _ in events)
    return out


def _record_reason(exc: Exception) -> str:
    text = reason_of(exc)
    if isinstance(exc, BadTime) and "outside the accepted window" in text:
        text = reason_of(f"{TIMESTAMP_OUT_OF_WINDOW}: {text}")
    return text


TIMESTAMP_OUT_OF_WINDOW = "timestamp out of window"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The sanity window of event times, relative to the time a push is received: a record with a
    time more than `past_ms` before or `future_ms` after it is rejected (`timestamp out of window`)."""

    past_ms: int
    future_ms: int

    def check(self, name: str, value: int, now_ms: int) -> str | None:
        """The reason `value` (epoch ms) is outside the window, or None."""
        if value < now_ms - self.past_ms:
            return (f"{TIMESTAMP_OUT_OF_WINDOW}: {name} is {_fmt_age(now_ms - value)} before receipt "
                    f"(at most {_fmt_age(self.past_ms)}, SMS_TIMESTAMP_PAST)")
        if value > now_ms + self.future_ms:
            return (f"{TIMESTAMP_OUT_OF_WINDOW}: {name} is {_fmt_age(value - now_ms)} after receipt "
                    f"(at most {_fmt_age(self.future_ms)}, SMS_TIMESTAMP_FUTURE)")
        return None

    def violation(self, event: Event, now_ms: int) -> str | None:
        for name, value in _times(event):
            reason = None if value is None else self.check(name, value, now_ms)
            if reason:
                return reason
        return None

    def apply(self, parsed: Parsed, now_ms: int) -> Parsed:
        """Move every record with an event outside the window from events to rejected."""
        if len(parsed.origins) != len(parsed.events):  # not built by collect: nothing to map back
            return parsed
        bad: dict[int, tuple[str, Any]] = {}
        for event, (index, record) in zip(parsed.events, parsed.origins, strict=True):
            if index not in bad:
                reason = self.violation(event, now_ms)
                if reason:
                    bad[index] = (reason, record)
        if not bad:
            return parsed
        kept = [(e, o) for e, o in zip(parsed.events, parsed.origins, strict=True) if o[0] not in bad]
        rejected = parsed.rejected + [Rejected(i, reason, raw_of(record)) for i, (reason, record) in bad.items()]
        rejected.sort(key=lambda r: r.index)
        return Parsed(events=[e for e, _ in kept], rejected=rejected, origins=[o for _, o in kept])


def _times(event: Event) -> list[tuple[str, int | None]]:
    if isinstance(event, SendEvent):
        return [("sent_at", event.sent_at_ms)]
    if isinstance(event, ReceiptEvent):
        return [("reported_at", event.reported_at_ms), ("sent_at", event.sent_at_ms)]
    if isinstance(event, ReplyEvent):
        return [("replied_at", event.replied_at_ms)]
    if isinstance(event, ConversionEvent):
        return [("converted_at", event.converted_at_ms)]
    return []


def _fmt_age(ms: int) -> str:
    seconds = ms / 1000
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} s"


def _region_fields(phone: Phone) -> dict[str, str]:
    """Province and city of the number's segment, where the raw number is still known."""
    found = region_of(phone)
    return {"province": found.province, "city": found.city}


class Identities:
    """Builds the identity fields of an event from a raw number: E.164, hash, mask, carrier, region."""

    def __init__(self, hasher: PhoneHasher) -> None:
        self._hash = hasher

    def phone(self, raw: object, nationcode: str | None = None) -> Phone:
        """A number as a provider sent it, normalized (BadPhone with the reason otherwise). Besides
        `normalize`'s checks: no negative JSON numbers, and a +86 number must be a mobile number
        (11 digits starting with 1), since SMS reaches nothing else in China."""
        if (isinstance(raw, int) and not isinstance(raw, bool) and raw < 0) or (
                isinstance(raw, str) and raw.strip().startswith("-")):
            raise BadPhone("phone must not be a negative number")
        phone = normalize(raw, nationcode)
        if phone.country_code == "86" and not (len(phone.national) == 11 and phone.national.startswith("1")):
            raise BadPhone("phone is not a China mobile number (11 digits starting with 1)")
        return phone

    def fields(self, phone: Phone) -> dict[str, Any]:
        return {
            "phone": phone.e164,
            "phone_hash": self._hash(phone.e164),
            "phone_masked": phone.masked,
            "carrier": phone.carrier,
            "country_code": phone.country_code,
            **_region_fields(phone),
        }

    def identity(self, provider: str, message_id: str, phone: Phone) -> dict[str, Any]:
        if not message_id:
            raise BadRecord("missing message id")
        if len(message_id) > 128:
            raise BadRecord("message id is longer than 128 characters")
        return {"provider": provider, "message_id": message_id, **self.fields(phone)}


__all__ = [
    "INTERNAL_ERROR",
    "BadBody",
    "BadRecord",
    "Event",
    "Identities",
    "Identity",
    "Parsed",
    "Rejected",
    "TimeWindow",
    "as_list",
    "as_records",
    "collect",
    "loads",
    "obj",
    "opt_str",
    "raw_of",
    "reason_of",
    "req_bool",
    "req_str",
    "req_text",
    "scalar",
]
