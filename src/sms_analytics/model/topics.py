"""Kafka topic names (public contract) and the message key every stage agrees on."""

from __future__ import annotations

SENDS = "sms.sends.v1"
RECEIPTS = "sms.receipts.v1"
REPLIES = "sms.replies.v1"
DELIVERIES = "sms.deliveries.v1"
ALERTS = "sms.alerts.v1"
DEADLETTER = "sms.deadletter.v1"
PROVIDER_STATS = "sms.provider_stats.v1"  # provider-side balance and statistics from the pull feeds
COMPENSATION = "sms.compensation.v1"  # pending messages the pollers should ask the provider about
CONVERSIONS = "sms.conversions.v1"  # conversions reported by the business (POST /v1/conversions)

ALL = (SENDS, RECEIPTS, REPLIES, DELIVERIES, ALERTS, DEADLETTER, PROVIDER_STATS, COMPENSATION, CONVERSIONS)


def message_key(provider: str, message_id: str, phone_e164: str) -> bytes:
    """provider + message_id + E.164 phone: a message's send and receipts share a partition."""
    return message_key_text(provider, message_id, phone_e164).encode()


def message_key_text(provider: str, message_id: str, phone_e164: str) -> str:
    """The message key as text (the join's table key is the same identity)."""
    return f"{provider}|{message_id}|{phone_e164}"
