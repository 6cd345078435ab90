"""model/topics.py: message keys (from tests/test_model.py)."""

from __future__ import annotations


def test_message_key() -> None:
    from sms_analytics.model.topics import message_key, message_key_text

    assert message_key_text("kx", "m1", "+8613800000000") == "kx|m1|+8613800000000"
    assert message_key("kx", "m1", "+8613800000000") == b"kx|m1|+8613800000000"
