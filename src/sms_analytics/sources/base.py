"""What every provider module shares: field readers, the identity builder, parse results.

A provider module turns one HTTP body into a `Parsed`: the events to publish and the records
rejected with their reasons. A body that is not of the expected shape at all raises `BadBody`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from sms_analytics.model.events import Identity, ProviderBalance, ProviderStats, ReceiptEvent, ReplyEvent, SendEvent
from sms_analytics.model.phone import BadPhone, Phone, PhoneHasher, normalize
from sms_analytics.model.times import BadTime

Event = SendEvent | ReceiptEvent | ReplyEvent | ProviderBalance | ProviderStats
MAX_FIELD_CHARS = 4096


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


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
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


def _as_str(value: Any, name: str, allow_number: bool) -> str:
    if isinstance(value, str):
        text = value.strip()
    elif allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise BadRecord(f"field {name!r} must be a string, got {type(value).__name__}")
    if len(text) > MAX_FIELD_CHARS:
        raise BadRecord(f"field {name!r} is longer than {MAX_FIELD_CHARS} characters")
    return text


def req_bool(rec: dict[str, Any], name: str) -> bool:
    value = rec.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRecord(f"field {name!r} must be a boolean")


def raw_of(record: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:
        return repr(record).encode()


def collect(records: list[Any], convert: Callable[[Any], list[Event]], parsed: Parsed | None = None) -> Parsed:
    """Convert each record; a bad one is rejected with its reason, its neighbours go on."""
    out = parsed or Parsed()
    for index, record in enumerate(records):
        try:
            out.events.extend(convert(record))
        except (BadRecord, BadPhone, BadTime) as exc:
            out.rejected.append(Rejected(index, str(exc), raw_of(record)))
    return out


class Identities:
    """Builds the identity fields of an event from a raw number: E.164, hash, mask, carrier."""

    def __init__(self, hasher: PhoneHasher) -> None:
        self._hash = hasher

    def phone(self, raw: object, nationcode: str | None = None) -> Phone:
        return normalize(raw, nationcode)

    def fields(self, phone: Phone) -> dict[str, str]:
        return {
            "phone": phone.e164,
            "phone_hash": self._hash(phone.e164),
            "phone_masked": phone.masked,
            "carrier": phone.carrier,
            "country_code": phone.country_code,
        }

    def identity(self, provider: str, message_id: str, phone: Phone) -> dict[str, str]:
        if not message_id:
            raise BadRecord("missing message id")
        if len(message_id) > 128:
            raise BadRecord("message id is longer than 128 characters")
        return {"provider": provider, "message_id": message_id, **self.fields(phone)}


__all__ = [
    "BadBody", "BadRecord", "Event", "Identities", "Identity", "Parsed", "Rejected", "as_list",
    "as_records", "collect", "loads", "obj", "opt_str", "raw_of", "req_bool", "req_str",
]
