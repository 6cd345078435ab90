"""Events on the topics (msgspec structs, JSON on the wire).

Every event carries the message identity (provider, message_id, phone) and the derived,
non-personal phone fields, so downstream stages never need to re-derive them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from sms_analytics.model.providers import PROVIDERS, Provider  # noqa: F401 - re-exported: the event types' providers

STATUS_RANK = {"pending": 0, "failed": 1, "delivered": 2}  # a delivery's status, least final first


class Identity(msgspec.Struct, kw_only=True, gc=False):
    """gc=False (here and on Delivery): these structs hold only strings, numbers and lists of
    strings, so they can never be part of a reference cycle; untracked, a million of them in the
    join's state cost the garbage collector nothing."""

    provider: str
    message_id: str
    phone: str  # E.164; Kafka only (it is in the key anyway), never the warehouse by default
    phone_hash: str
    phone_masked: str
    carrier: str
    country_code: str
    # Province and city of the number's segment (model/region.py), "" if unknown or not mainland;
    # defaults so that records written before they existed still decode.
    province: str = ""
    city: str = ""


class SendEvent(Identity, kw_only=True, tag="send"):
    sent_at_ms: int
    received_at_ms: int
    template: str = ""
    sign: str = ""
    segments: int | None = None  # billed parts, where the send response says (Tencent Fee, KX length)
    out_id: str = ""
    submit_ok: bool = True
    submit_code: str = ""
    submit_message: str = ""


class ReceiptEvent(Identity, kw_only=True, tag="receipt"):
    delivered: bool
    error_code: str
    error_message: str
    reported_at_ms: int
    received_at_ms: int
    sent_at_ms: int | None = None  # the provider's own send time, where the receipt has one
    segments: int | None = None  # parts as the receipt reports them (Alibaba sms_size)
    out_id: str = ""
    source: str = "push"

    @property
    def receipt_id(self) -> str:
        """Same message, code and report time: the same receipt (retries, push + poll)."""
        raw = f"{self.provider}|{self.message_id}|{self.phone}|{self.error_code}|{self.reported_at_ms}"
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


class ReplyEvent(msgspec.Struct, kw_only=True, tag="reply"):
    provider: str
    reply_id: str
    phone: str
    phone_hash: str
    phone_masked: str
    carrier: str
    country_code: str
    province: str = ""  # as on Identity; not in sms.replies (yet)
    city: str = ""
    content: str
    sign: str = ""
    dest_code: str = ""
    replied_at_ms: int
    received_at_ms: int


class ConversionEvent(msgspec.Struct, kw_only=True, tag="conversion"):
    """A conversion (the user entered the code, followed the link) reported by the business through
    `POST /v1/conversions`, topic sms.conversions.v1. It names its message either by provider +
    message_id (phone_hash optional: with it, the warehouse folds it into the message at once), or by
    the number, the template and a window the send fell in (resolved in the warehouse: the latest
    send in the window). Never carries the raw number: its hash and mask only."""

    provider: str
    conversion_id: str  # a hash of what identifies the record: a repeated report is the same row
    message_id: str = ""
    phone_hash: str = ""
    phone_masked: str = ""
    carrier: str = ""
    country_code: str = ""
    template: str = ""
    sent_from_ms: int | None = None  # the window form: the send happened within [from, to]
    sent_to_ms: int | None = None
    converted_at_ms: int
    received_at_ms: int


def conversion_id(provider: str, message_id: str, phone_hash: str, template: str, sent_from_ms: int | None,
                  sent_to_ms: int | None, converted_at_ms: int) -> str:
    raw = f"{provider}|{message_id}|{phone_hash}|{template}|{sent_from_ms}|{sent_to_ms}|{converted_at_ms}"
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


Event = SendEvent | ReceiptEvent | ReplyEvent

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SendEvent | ReceiptEvent)
_reply_decoder = msgspec.json.Decoder(ReplyEvent)


def encode(event: msgspec.Struct) -> bytes:
    return _encoder.encode(event)


def decode_message_event(raw: bytes) -> SendEvent | ReceiptEvent:
    return _decoder.decode(raw)


_batch_decoder = msgspec.json.Decoder(list[SendEvent | ReceiptEvent])


def encode_batch(events: list[SendEvent] | list[ReceiptEvent] | list[SendEvent | ReceiptEvent]) -> bytes:
    """A record of sms.sends.v1 / sms.receipts.v1 carrying several events of one partition (a JSON
    array of tagged events): one Kafka record per partition and push instead of one per event."""
    return _encoder.encode(events)


def decode_message_events(raw: bytes) -> list[SendEvent | ReceiptEvent]:
    """The events of one record: a batch (JSON array) or a single event (JSON object)."""
    if raw[:1] == b"[":
        return _batch_decoder.decode(raw)
    return [_decoder.decode(raw)]


def decode_reply(raw: bytes) -> ReplyEvent:
    return _reply_decoder.decode(raw)


_conversion_decoder = msgspec.json.Decoder(ConversionEvent)


def decode_conversion(raw: bytes) -> ConversionEvent:
    return _conversion_decoder.decode(raw)


class Delivery(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The joined state of one message, as the stream last saw it (topic sms.deliveries.v1).

    A delivery may be partial (a receipt whose send the stream never saw): the warehouse merges
    every delivery of a message, so a partial one never erases what an earlier one said.
    """

    provider: str
    message_id: str
    phone: str
    phone_hash: str
    phone_masked: str
    carrier: str
    country_code: str
    province: str = ""  # from the events (model/region.py); "" if unknown
    city: str = ""
    has_send: bool = False
    template: str | None = None
    sign: str | None = None
    segments: int | None = None
    receipt_segments: int | None = None
    out_id: str | None = None
    sent_at_ms: int | None = None
    receipt_sent_at_ms: int | None = None
    status: str = "pending"  # pending | delivered | failed
    stage: str = ""  # "" | submit | receipt
    outcome_at_ms: int = 0  # the time the outcome refers to (report time, or send time at submit)
    error_code: str = ""
    error_message: str = ""
    failure_category: str = ""
    receipt_ids: list[str] = msgspec.field(default_factory=list)
    updated_at_ms: int = 0
    compensation_asked_ms: int | None = None  # when the stream last asked a poller about it

    @property
    def reported_at_ms(self) -> int | None:
        return self.outcome_at_ms if self.stage == "receipt" else None

    @property
    def latency_ms(self) -> int | None:
        sent = self.sent_at_ms if self.sent_at_ms is not None else self.receipt_sent_at_ms
        reported = self.reported_at_ms
        if sent is None or reported is None:
            return None
        return max(0, reported - sent)


_delivery_encoder = msgspec.json.Encoder()
_delivery_decoder = msgspec.json.Decoder(Delivery)


def encode_delivery(delivery: Delivery) -> bytes:
    return _delivery_encoder.encode(delivery)


def decode_delivery(raw: bytes) -> Delivery:
    return _delivery_decoder.decode(raw)


_deliveries_decoder = msgspec.json.Decoder(list[Delivery])


def encode_deliveries(deliveries: list[Delivery]) -> bytes:
    """A record of sms.deliveries.v1 with the deliveries of one batch and partition (a JSON array)."""
    return _delivery_encoder.encode(deliveries)


# Headers of a deliveries record, written by the stream so the sink need not scan the JSON: the
# number of deliveries, and the minutes (epoch ms // 60,000) of their send times (sent_at_ms and
# receipt_sent_at_ms), which are the rollup minutes the record changes.
ROWS_HEADER, MINUTES_HEADER = "rows", "minutes"


def delivery_headers(deliveries: list[Delivery]) -> list[tuple[str, bytes]]:
    minutes = {d.sent_at_ms // 60_000 for d in deliveries if d.sent_at_ms is not None}
    minutes.update(d.receipt_sent_at_ms // 60_000 for d in deliveries if d.receipt_sent_at_ms is not None)
    return [(ROWS_HEADER, str(len(deliveries)).encode()), (MINUTES_HEADER, ",".join(map(str, minutes)).encode())]


def read_delivery_headers(headers: Any) -> tuple[int, list[int]] | None:
    """(deliveries, minutes) from a record's headers; None when it has none (an older writer)."""
    found = dict(headers or ())
    rows, minutes = found.get(ROWS_HEADER), found.get(MINUTES_HEADER)
    if rows is None or minutes is None:
        return None
    return int(rows), [int(m) for m in minutes.split(b",") if m]


def decode_deliveries(raw: bytes) -> list[Delivery]:
    """The deliveries of one record: a batch (JSON array) or a single delivery (JSON object)."""
    if raw[:1] == b"[":
        return _deliveries_decoder.decode(raw)
    return [_delivery_decoder.decode(raw)]


class ProviderBalance(msgspec.Struct, kw_only=True, tag="balance"):
    """A provider account's remaining messages (KX Balance), topic sms.provider_stats.v1."""

    provider: str
    account: str
    balance: int
    at_ms: int


class ProviderStats(msgspec.Struct, kw_only=True, tag="stats"):
    """A period of a provider's own statistics: an hour of Tencent Send/CallbackStatusStatistics, or a
    China-time day of Alibaba QuerySendStatistics (`period_hours` 24, `hour_ms` the day's start)."""

    provider: str
    app_id: str
    hour_ms: int  # start of the period, UTC
    request_count: int = 0
    request_success_count: int = 0
    fee_count: int = 0
    callback_count: int = 0
    callback_success_count: int = 0
    callback_fail_count: int = 0
    internal_error_count: int = 0
    invalid_number_count: int = 0
    shutdown_error_count: int = 0
    blacklist_count: int = 0
    frequency_limit_count: int = 0
    pulled_at_ms: int
    period_hours: int = 1  # hours from hour_ms the counts cover


# The normalized template types (sms.templates.type); each provider's own codes map onto them in its feeds.
TEMPLATE_TYPES = ("verification", "notification", "marketing", "international", "other")


class TemplateInfo(msgspec.Struct, kw_only=True, tag="template"):
    """A provider template as its metadata API describes it (Alibaba QuerySmsTemplate, Tencent
    DescribeSmsTemplateList), topic sms.provider_stats.v1, table sms.templates."""

    provider: str
    template_code: str
    name: str
    content: str
    template_type: str  # one of TEMPLATE_TYPES (column `type`; the JSON tag field is `type`)
    raw_type: str  # the provider's own code, as text
    status: str  # approved, reviewing, approved_not_effective, rejected, unknown
    raw_status: str
    reason: str = ""
    pulled_at_ms: int


class SignInfo(msgspec.Struct, kw_only=True, tag="sign"):
    """A provider sign (Alibaba QuerySmsSign, Tencent DescribeSmsSignList), table sms.signs."""

    provider: str
    sign_name: str
    sign_id: str = ""  # Tencent's SignId; Alibaba names signs only
    status: str
    raw_status: str
    reason: str = ""
    pulled_at_ms: int


class CompensationRequest(msgspec.Struct, kw_only=True):
    """Ask the provider about a message still pending (topic sms.compensation.v1). Carries the
    raw number, because the provider's query API is by number."""

    provider: str
    message_id: str
    phone: str
    sent_at_ms: int
    asked_at_ms: int


_compensation_decoder = msgspec.json.Decoder(CompensationRequest)


def decode_compensation(raw: bytes) -> CompensationRequest:
    return _compensation_decoder.decode(raw)


ProviderMetric = ProviderBalance | ProviderStats | TemplateInfo | SignInfo  # what sms.provider_stats.v1 carries
_provider_metric_decoder = msgspec.json.Decoder(ProviderMetric)


def decode_provider_metric(raw: bytes) -> ProviderMetric:
    return _provider_metric_decoder.decode(raw)
