"""model/addresses.py: loopback addresses (from tests/test_model.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("host, local", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False), ("", False),
])
def test_is_loopback(host: str, local: bool) -> None:
    from sms_analytics.model.addresses import is_loopback

    assert is_loopback(host) is local
