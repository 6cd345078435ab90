"""The extension point for a provider: how its sends, receipts and uplink bodies become events,
and how it expects to be answered."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Protocol

import orjson

from sms_analytics.model.times import parse_instant
from sms_analytics.sources.base import BadBody, Identities, Parsed, loads


class Reply:
    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type


def json_reply(doc: Any) -> Reply:
    return Reply(orjson.dumps(doc), "application/json")


class Answers(Protocol):
    def ok(self) -> Reply: ...

    def error(self, reason: str) -> Reply: ...


class Provider(ABC):
    name: str

    def __init__(self, ids: Identities) -> None:
        self.ids = ids

    # --- replies, exactly as each provider's document specifies ---------------------------------
    @abstractmethod
    def ok(self) -> Reply: ...

    @abstractmethod
    def error(self, reason: str) -> Reply: ...

    # --- bodies -> events -------------------------------------------------------------------------
    @abstractmethod
    def sends(self, request: dict[str, Any], response: dict[str, Any], sent_at_ms: int, now_ms: int) -> Parsed: ...

    @abstractmethod
    def receipts(self, doc: Any, now_ms: int) -> Parsed: ...

    @abstractmethod
    def replies(self, doc: Any, now_ms: int) -> Parsed: ...

    def send_envelope(self, body: bytes, now_ms: int) -> Parsed:
        """`{"request": …, "response": …, "sent_at"?: …}` as posted to /v1/sends/<provider>."""
        doc = loads(body)
        if not isinstance(doc, dict):
            raise BadBody("expected an object with 'request' and 'response'")
        request, response = doc.get("request"), doc.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise BadBody("'request' and 'response' must both be objects")
        sent_at = doc.get("sent_at")
        try:
            sent_at_ms = now_ms if sent_at is None else parse_instant(sent_at)
        except ValueError as exc:
            raise BadBody(f"sent_at: {exc}") from None
        return self.sends(request, response, sent_at_ms, now_ms)


def segments_for(text: str) -> int:
    """Billing segments: up to 70 characters is 1, longer messages are 67 characters a part."""
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)
