"""sources/normalized.py: the normalized send format (split from test_parsers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sms_analytics.sources.base.fields import BadBody, Rejected
from sms_analytics.sources.normalized import parse_sends
from tests.unit.sources.base.test_provider import (
    IDS,
    KX,
    KX_MT_OK,
    KX_MT_REQUEST,
    NOW,
    TENCENT,
    TENCENT_REPLY,
    envelope,
    only,
    phash,
    utc_ms,
)


def test_normalized_sends() -> None:
    doc = [
        {"provider": "kx", "message_id": "1222015900000109761867", "phone": "13800000000", "sent_at": "2016-10-12T15:00:00+08:00",
         "template": "T1", "sign": "邦邦快递", "segments": 2, "out_id": "o-1"},
        {"provider": "tencent", "message_id": "5000:1", "phone": "+85291234567", "sent_at": 1457336869},
        {"provider": "aliyun", "message_id": "197703245997295588^0", "phone": "0086 139 0000 0001"},
    ]
    parsed = parse_sends(doc, IDS, NOW)
    assert parsed.rejected == []
    first, second, third = parsed.events
    assert (first.provider, first.message_id, first.phone, first.sent_at_ms) == (
        "kx", "1222015900000109761867", "+8613800000000", utc_ms(2016, 10, 12, 7, 0, 0))
    assert (first.template, first.sign, first.segments, first.out_id, first.submit_ok) == ("T1", "邦邦快递", 2, "o-1", True)
    assert (second.phone, second.carrier, second.sent_at_ms, second.segments) == ("+85291234567", "unknown", 1_457_336_869_000, None)
    assert (third.phone, third.sent_at_ms, third.received_at_ms) == ("+8613900000001", NOW, NOW)
    assert third.phone_hash == phash("+8613900000001")


def test_normalized_send_as_one_object() -> None:
    event = only(parse_sends({"provider": "kx", "message_id": "t", "phone": "13800000000"}, IDS, NOW))
    assert (event.provider, event.message_id, event.sent_at_ms) == ("kx", "t", NOW)


def test_normalized_sends_reject_bad_records_with_reasons() -> None:
    good = {"provider": "kx", "message_id": "t1", "phone": "13800000000", "sent_at": "2016-10-12T15:00:00+08:00"}
    doc = [
        {**good, "provider": "unknown"},
        good,
        {**good, "sent_at": "2016-10-12T15:00:00"},
        {**good, "segments": 0},
        {**good, "segments": True},
        {**good, "segments": 256},
        {**good, "phone": "abc"},
        {k: v for k, v in good.items() if k != "message_id"},
        {**good, "message_id": "m" * 129},
        {**good, "provider": 1},
        [good],
    ]
    parsed = parse_sends(doc, IDS, NOW)
    assert [e.message_id for e in parsed.events] == ["t1"]
    assert all(isinstance(r, Rejected) for r in parsed.rejected)
    reasons = {r.index: r.reason for r in parsed.rejected}
    assert sorted(reasons) == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "provider" in reasons[0]
    assert "no UTC offset" in reasons[2]
    assert all("segments" in reasons[i] for i in (3, 4, 5))
    assert "phone" in reasons[6]
    assert "'message_id'" in reasons[7]
    assert "message id" in reasons[8]
    assert "'provider'" in reasons[9]
    assert "object" in reasons[10]


@pytest.mark.parametrize("doc", ["x", 42, None, True])
def test_normalized_sends_wrong_top_level_is_bad_body(doc: Any) -> None:
    with pytest.raises(BadBody):
        parse_sends(doc, IDS, NOW)


@pytest.mark.parametrize("where", ["tencent reply", "normalized send", "envelope"])
def test_huge_epoch_is_rejected_not_raised(where: str) -> None:
    if where == "tencent reply":
        parsed = TENCENT.replies([{**TENCENT_REPLY, "time": 1e308}, TENCENT_REPLY], NOW)
        assert len(parsed.events) == 1 and parsed.rejected[0].index == 0
    elif where == "normalized send":
        parsed = parse_sends([{"provider": "kx", "message_id": "t", "phone": "13800000000", "sent_at": 1e308}], IDS, NOW)
        assert parsed.events == [] and parsed.rejected[0].index == 0
    else:
        with pytest.raises(BadBody, match="sent_at"):
            KX.send_envelope(envelope(KX_MT_REQUEST, KX_MT_OK, 1e308), NOW)


# --- POST /v1/conversions ------------------------------------------------------------------------------

def test_conversions_in_both_forms_keep_no_raw_number() -> None:
    from sms_analytics.model.events import ConversionEvent, encode
    from sms_analytics.sources.normalized import DEFAULT_CONVERSION_WINDOW_MS, parse_conversions

    doc = [
        {"provider": "tencent", "message_id": "5000:1", "converted_at": "2024-01-01T00:00:30Z"},
        {"provider": "aliyun", "message_id": "b^0", "phone": "13800000000", "converted_at": 1704067230},
        {"provider": "kx", "phone": "+8613800000001", "template": "OTP", "converted_at": "2024-01-01T00:00:30Z"},
        {"provider": "kx", "phone": "13800000001", "template": "OTP", "converted_at": 1704067230,
         "sent_from": "2024-01-01T00:00:00Z", "sent_to": "2024-01-01T00:00:20Z"},
    ]
    parsed = parse_conversions(doc, IDS, NOW)
    assert parsed.rejected == []
    events = [e for e in parsed.events if isinstance(e, ConversionEvent)]
    assert len(events) == 4
    at = utc_ms(2024, 1, 1, 0, 0, 30)
    assert {e.converted_at_ms for e in events} == {at}
    assert events[0].phone_hash == "" and events[0].sent_from_ms is None
    assert events[1].phone_hash == phash("+8613800000000") and events[1].carrier
    assert (events[2].sent_from_ms, events[2].sent_to_ms) == (at - DEFAULT_CONVERSION_WINDOW_MS, at)
    assert (events[3].sent_from_ms, events[3].sent_to_ms) == (utc_ms(2024, 1, 1), utc_ms(2024, 1, 1, 0, 0, 20))
    assert all(b"13800000001" not in encode(e) and b"13800000000" not in encode(e) for e in events)
    # the same report twice is the same conversion
    assert parse_conversions(doc[2], IDS, NOW + 5).events[0].conversion_id == events[2].conversion_id  # type: ignore[union-attr]


@pytest.mark.parametrize("record, reason", [
    ({"provider": "kx", "converted_at": 1704067230}, "needs message_id, or phone and template"),
    ({"provider": "kx", "phone": "13800000000", "converted_at": 1704067230}, "needs message_id, or phone and template"),
    ({"provider": "sms", "message_id": "m", "converted_at": 1704067230}, "provider must be one of"),
    ({"provider": "kx", "message_id": "m"}, "missing field 'converted_at'"),
    ({"provider": "kx", "message_id": "m", "converted_at": "yesterday"}, "not ISO-8601"),
    ({"provider": "kx", "phone": "12345", "template": "T", "converted_at": 1704067230}, ""),
    ({"provider": "kx", "phone": "13800000000", "template": "T", "converted_at": 1704067230,
      "sent_from": "2024-01-01T00:00:20Z", "sent_to": "2024-01-01T00:00:00Z"}, "sent_from is after sent_to"),
    ({"provider": "kx", "phone": "13800000000", "template": "T", "converted_at": 1704067230,
      "sent_from": "2023-12-01T00:00:00Z"}, "spans more than a day"),
])
def test_a_malformed_conversion_is_rejected_and_its_neighbour_kept(record: dict[str, Any], reason: str) -> None:
    from sms_analytics.sources.normalized import parse_conversions

    good = {"provider": "kx", "message_id": "m1", "converted_at": 1704067230}
    parsed = parse_conversions([good, record], IDS, NOW)
    assert len(parsed.events) == 1 and [r.index for r in parsed.rejected] == [1]
    assert reason in parsed.rejected[0].reason
