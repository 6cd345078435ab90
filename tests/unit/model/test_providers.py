"""model/providers.py: GSM segments (from tests/test_model.py)."""

from __future__ import annotations


def test_segments_rule() -> None:
    from sms_analytics.model.providers import GSM_SEGMENT_CHARS, segments

    assert [segments("x" * n) for n in (0, 1, 70, 71, 134, 135)] == [1, 1, 1, 2, 2, 3]
    assert [segments("x" * n, *GSM_SEGMENT_CHARS) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]
