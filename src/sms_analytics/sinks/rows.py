"""Deliveries and replies as warehouse rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from sms_analytics.model.events import (
    STATUS_RANK,
    ConversionEvent,
    Delivery,
    ProviderBalance,
    ProviderStats,
    ReplyEvent,
    SignInfo,
    TemplateInfo,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MESSAGE_COLUMNS = (
    "provider", "message_id", "phone_hash", "phone_masked", "phone_raw", "carrier", "country_code",
    "template", "sign", "segments", "receipt_segments", "out_id", "sent_at", "receipt_sent_at", "outcome", "receipt_ids",
    "first_seen_at", "updated_at", "province", "city",
)
REPLY_COLUMNS = (
    "provider", "reply_id", "phone_hash", "phone_masked", "carrier", "country_code", "content", "sign",
    "dest_code", "replied_at", "received_at",
)


CONVERSION_COLUMNS = (
    "provider", "message_id", "phone_hash", "conversion_id", "phone_masked", "carrier", "country_code", "template",
    "sent_from", "sent_to", "converted_at", "received_at",
)
BALANCE_COLUMNS = ("provider", "account", "balance", "at")
STATS_COLUMNS = (
    "provider", "app_id", "hour", "request_count", "request_success_count", "fee_count", "callback_count",
    "callback_success_count", "callback_fail_count", "internal_error_count", "invalid_number_count",
    "shutdown_error_count", "blacklist_count", "frequency_limit_count", "pulled_at", "period_hours",
)
TEMPLATE_COLUMNS = ("provider", "template_code", "name", "content", "type", "raw_type", "status", "raw_status", "reason",
                    "pulled_at")
SIGN_COLUMNS = ("provider", "sign_name", "sign_id", "status", "raw_status", "reason", "pulled_at")


ALERT_COLUMNS = ("rule", "key", "state", "value", "threshold", "window_seconds", "started_at", "at", "summary",
                 "source", "baseline", "causes")
CAUSE_FIELDS = ("dimension", "value", "share", "excess", "failures", "volume", "rate", "baseline_rate", "meaning")


def alert_row(raw: bytes) -> list[Any]:
    """A row of sms.alerts from a record of sms.alerts.v1 (streams/alerts.py `Alert`; a record written before
    issue 17 has no source, baseline or causes)."""
    a = msgspec.json.decode(raw)
    causes = [tuple(c.get(f, "" if f in ("dimension", "value", "meaning") else 0.0) for f in CAUSE_FIELDS)
              for c in a.get("causes") or []]
    return [a["rule"], a["key"], a["state"], float(a["value"]), float(a["threshold"]), int(a["window_seconds"]),
            _dt(a["started_at_ms"]), _dt(a["at_ms"]), a["summary"], a.get("source", "stream"), a.get("baseline", ""),
            causes]


def balance_row(b: ProviderBalance) -> list[Any]:
    return [b.provider, b.account, b.balance, _dt(b.at_ms)]


def stats_row(s: ProviderStats) -> list[Any]:
    return [
        s.provider, s.app_id, _dt(s.hour_ms), s.request_count, s.request_success_count, s.fee_count,
        s.callback_count, s.callback_success_count, s.callback_fail_count, s.internal_error_count,
        s.invalid_number_count, s.shutdown_error_count, s.blacklist_count, s.frequency_limit_count,
        _dt(s.pulled_at_ms), s.period_hours,
    ]


def template_row(t: TemplateInfo) -> list[Any]:
    return [t.provider, t.template_code, t.name, t.content, t.template_type, t.raw_type, t.status, t.raw_status, t.reason,
            _dt(t.pulled_at_ms)]


def sign_row(s: SignInfo) -> list[Any]:
    return [s.provider, s.sign_name, s.sign_id, s.status, s.raw_status, s.reason, _dt(s.pulled_at_ms)]


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def message_row(d: Delivery, *, store_raw_phone: bool) -> list[Any]:
    """One part of a message. Times are DateTime64(3) ticks (ms) as ints: clickhouse-connect writes
    them as they are, where a datetime object costs a conversion per value (most of the sink's time)."""
    send = d.has_send  # send fields stay NULL in a receipt-only part, so they never erase a send's
    outcome = (
        d.outcome_at_ms if d.status != "pending" else 0,
        STATUS_RANK[d.status], d.stage, d.error_code, d.error_message, d.failure_category,
    )
    return [
        d.provider, d.message_id, d.phone_hash, d.phone_masked, d.phone if store_raw_phone else None,
        d.carrier, d.country_code,
        d.template if send else None, d.sign if send else None,
        d.segments if send else None, d.receipt_segments, d.out_id if send else None,
        d.sent_at_ms, d.receipt_sent_at_ms, outcome, d.receipt_ids,
        d.updated_at_ms, d.updated_at_ms, d.province, d.city,
    ]


def conversion_row(c: ConversionEvent) -> list[Any]:
    return [
        c.provider, c.message_id, c.phone_hash, c.conversion_id, c.phone_masked, c.carrier, c.country_code,
        c.template, _dt(c.sent_from_ms), _dt(c.sent_to_ms), _dt(c.converted_at_ms), _dt(c.received_at_ms),
    ]


def reply_row(r: ReplyEvent) -> list[Any]:
    return [
        r.provider, r.reply_id, r.phone_hash, r.phone_masked, r.carrier, r.country_code, r.content,
        r.sign, r.dest_code, _dt(r.replied_at_ms), _dt(r.received_at_ms),
    ]
