"""model/events.py: deliveries records and their headers, as the sink reads them (from tests/test_model.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

_times = st.one_of(st.none(), st.integers(min_value=0, max_value=4_102_444_800_000))


@given(st.lists(st.tuples(_times, _times), min_size=1, max_size=30))
def test_delivery_headers_say_what_a_scan_of_the_json_finds(times: list[tuple[int | None, int | None]]) -> None:
    """The sink takes a deliveries record's row count and rollup minutes from its headers instead
    of scanning the JSON: the headers must say exactly what the scan (its fallback) finds."""
    from sms_analytics.model.events import Delivery, delivery_headers, encode_deliveries, read_delivery_headers
    from sms_analytics.sinks.writer import _MINUTE_FIELDS, _ROW_KEY

    deliveries = [Delivery(provider="aliyun", message_id=f"m{i}", phone="", phone_hash=f"h{i}", phone_masked="138****0000",
                           carrier="mobile", country_code="86", sent_at_ms=sent, receipt_sent_at_ms=receipt)
                  for i, (sent, receipt) in enumerate(times)]
    raw = encode_deliveries(deliveries)
    rows, minutes = read_delivery_headers(delivery_headers(deliveries))
    assert rows == raw.count(_ROW_KEY) == len(deliveries)
    assert set(minutes) == {int(ms) // 60_000 for ms in _MINUTE_FIELDS.findall(raw)}
    assert read_delivery_headers([]) is None
