"""sinks/rows.py: the warehouse rows of a delivery part, a reply, a balance and an alert, in the
order of their columns."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from sms_analytics.model.events import Delivery, ProviderBalance, ReplyEvent
from sms_analytics.sinks.rows import (
    ALERT_COLUMNS,
    BALANCE_COLUMNS,
    MESSAGE_COLUMNS,
    REPLY_COLUMNS,
    alert_row,
    balance_row,
    message_row,
    reply_row,
)

T = 1_700_000_000_000
AT = datetime.fromtimestamp(T / 1000, tz=UTC)


def part(**kw: object) -> Delivery:
    fields: dict[str, object] = dict(provider="aliyun", message_id="m1", phone="13800138000", phone_hash="h",
                                     phone_masked="138****8000", carrier="mobile", country_code="86")
    fields.update(kw)
    return Delivery(**fields)  # type: ignore[arg-type]


def named(columns: tuple[str, ...], row: list[object]) -> dict[str, object]:
    assert len(row) == len(columns)
    return dict(zip(columns, row, strict=False))


def test_a_send_part_keeps_its_send_fields_and_hides_the_raw_number_unless_asked() -> None:
    d = part(has_send=True, template="SMS_1", sign="Shop", segments=2, out_id="o1", sent_at_ms=T,
             status="delivered", stage="receipt", outcome_at_ms=T + 5000, receipt_ids=["r1"], updated_at_ms=T + 6000)
    row = message_row(d, store_raw_phone=False)
    assert len(row) == len(MESSAGE_COLUMNS)
    assert row[:4] == ["aliyun", "m1", "h", "138****8000"] and row[4] is None
    assert message_row(d, store_raw_phone=True)[4] == "13800138000"
    assert row[7:12] == ["SMS_1", "Shop", 2, None, "o1"]
    assert row[12] == T
    assert row[14] == (T + 5000, 2, "receipt", "", "", "")  # outcome: time, rank of delivered, stage, error
    assert row[15:] == [["r1"], T + 6000, T + 6000, "", ""]  # province, city: unknown here


def test_a_receipt_only_part_leaves_the_send_fields_null_and_pending_has_no_outcome_time() -> None:
    d = part(has_send=False, template="ignored", sign="ignored", segments=9, receipt_segments=2,
             receipt_sent_at_ms=T, status="pending", outcome_at_ms=T)
    row = message_row(d, store_raw_phone=False)
    assert row[7:12] == [None, None, None, 2, None]
    assert row[13] == T
    assert row[14][:2] == (0, 0)
    failed = message_row(part(status="failed", outcome_at_ms=T, error_code="E1"), store_raw_phone=False)
    assert failed[14][:4] == (T, 1, "", "E1")


def test_reply_balance_and_alert_rows() -> None:
    reply = ReplyEvent(provider="kx", reply_id="r", phone="139", phone_hash="h", phone_masked="139****", carrier="unicom",
                       country_code="86", content="TD", sign="S", dest_code="106", replied_at_ms=T, received_at_ms=T + 1000)
    assert named(REPLY_COLUMNS, reply_row(reply)) == dict(zip(REPLY_COLUMNS, [
        "kx", "r", "h", "139****", "unicom", "86", "TD", "S", "106", AT,
        datetime.fromtimestamp((T + 1000) / 1000, tz=UTC)], strict=False))
    assert named(BALANCE_COLUMNS, balance_row(ProviderBalance(provider="kx", account="a", balance=7, at_ms=T))) == \
        {"provider": "kx", "account": "a", "balance": 7, "at": AT}
    raw = msgspec.json.encode({"rule": "outage", "key": "mobile", "state": "firing", "value": 1, "threshold": "0.5",
                               "window_seconds": "300", "started_at_ms": T, "at_ms": None, "summary": "s"})
    row = named(ALERT_COLUMNS, alert_row(raw))
    assert row["value"] == 1.0 and isinstance(row["value"], float) and row["threshold"] == 0.5
    assert row["window_seconds"] == 300 and row["started_at"] == AT and row["at"] is None
