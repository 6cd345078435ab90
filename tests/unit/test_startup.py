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


def test_a_long_value_is_shown_whole_up_to_its_limit_then_by_its_ends() -> None:
    from sms_analytics.startup import _shown

    path = "/tmp/pytest-of-root/pytest-258/popen-gw0/test_bad_alert_rules_are_an_invalid_setting0/rules.yaml"
    assert _shown(path) == path  # over 80 characters, still whole
    long = "a" * 150 + "MIDDLE" + "z" * 150
    shown = _shown(long)
    assert len(shown) <= 240 and shown.startswith("a" * 119) and shown.endswith("z" * 119) and "…" in shown
