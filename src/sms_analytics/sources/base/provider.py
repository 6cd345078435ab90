"""The extension point for a provider: how its sends, receipts and uplink bodies become events,
how it expects to be answered, which callback endpoints it has and which pull feeds it runs.

A provider is a package beside `base/` (parsers, client, feeds) registered by one line in
`sources/providers.py`; the receiver's routes and the running feeds follow from that list. Where
this ends: the HTTP handling is the receiver's (`sources/receiver.py`), the feed loop `base/feed.py`'s."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol

import msgspec

from sms_analytics.model.times import parse_instant
from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import FeedSet, Publish
from sms_analytics.sources.base.fields import TIMESTAMP_OUT_OF_WINDOW, BadBody, Identities, Parsed, TimeWindow, loads

CallbackKind = Literal["receipts", "replies"]
BuildFeeds = Callable[[Settings, "Provider", Publish], FeedSet]


class Reply:
    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type


def json_reply(doc: Any) -> Reply:
    return Reply(msgspec.json.encode(doc), "application/json")


class Answers(Protocol):
    def ok(self) -> Reply: ...

    def error(self, reason: str) -> Reply: ...


class Provider(ABC):
    name: ClassVar[str]
    # The push endpoints, `POST /callbacks/<name>/<path>` -> the method that parses its body.
    # `POST /v1/sends/<name>` (the send envelope) every provider has.
    callbacks: ClassVar[Mapping[str, CallbackKind]]

    def __init__(self, ids: Identities, *, max_records: int | None = None, window: TimeWindow | None = None) -> None:
        self.ids = ids
        self.max_records = max_records  # the receiver sets SMS_MAX_RECORDS_PER_PUSH; None: no cap
        self.window = window  # the receiver's timestamp window, for a send envelope's sent_at

    def check_count(self, records: list[Any]) -> list[Any]:
        """The per-push record cap, for the lists inside a send envelope (numbers, status sets)."""
        if self.max_records is not None and len(records) > self.max_records:
            raise BadBody(too_many_records(len(records), self.max_records))
        return records

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

    # The module of its pull feeds: `build(settings, provider, publish) -> FeedSet` there returns
    # the feeds its settings switch on. None: it has no pull feeds.
    feeds: ClassVar[str | None] = None

    @classmethod
    def build_feeds(cls, settings: Settings, ids: Identities, publish: Publish) -> FeedSet:
        """The pull feeds this provider's settings switch on. Its feeds module is imported only here,
        so a provider's SDK is loaded only by a process that runs feeds."""
        if cls.feeds is None:
            return FeedSet()
        build: BuildFeeds = importlib.import_module(cls.feeds).build
        return build(settings, cls(ids), publish)

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
            reason = f"sent_at: {exc}"
            if "outside the accepted window" in reason:
                reason = f"{TIMESTAMP_OUT_OF_WINDOW}: {reason}"
            raise BadBody(reason) from None
        # sent_at is every number's send time: outside the window, the whole envelope is refused.
        outside = self.window.check("sent_at", sent_at_ms, now_ms) if self.window and sent_at is not None else None
        if outside:
            raise BadBody(outside)
        return self.sends(request, response, sent_at_ms, now_ms)


def too_many_records(count: int, limit: int) -> str:
    return f"too many records in one push: {count} > {limit} (SMS_MAX_RECORDS_PER_PUSH)"
