"""startup.py and urls.py: addresses shown without credentials (from tests/test_startup.py)."""

from __future__ import annotations

import pytest

from sms_analytics.startup import scrub
from sms_analytics.urls import redact, secrets_of

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("url, shown, hidden", [
    ("http://sms:s3cret@ch:8123", "http://***@ch:8123", "s3cret"),
    ("http://sms:ab#cd@ch:8123", "http://***@ch:8123", "ab#cd"),  # unencoded: urlsplit alone would leak "cd"
    ("https://ch:8443/?access_token=t0k&database=sms", "https://ch:8443/?access_token=***&database=sms", "t0k"),
    ("chdb:///var/lib/sms/warehouse", "chdb:///var/lib/sms/warehouse", None),
])
def test_addresses_are_shown_without_credentials(url: str, shown: str, hidden: str | None) -> None:
    assert redact(url) == shown
    if hidden is not None:
        assert hidden in secrets_of(url) and scrub(f"failed: {url}", secrets_of(url)).count(hidden) == 0
