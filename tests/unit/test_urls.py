"""urls.py: a URL shown without its credentials, and the credentials to scrub from any text."""

from __future__ import annotations

import pytest

from sms_analytics.urls import redact, secrets_of


@pytest.mark.parametrize("url, shown", [
    ("http://writer:p%40ss@clickhouse:8123/?database=sms", "http://***@clickhouse:8123/?database=sms"),
    ("http://clickhouse:8123", "http://clickhouse:8123"),
    ("chdb:///var/lib/sms/warehouse", "chdb:///var/lib/sms/warehouse"),
    ("http://host/?access_token=abc&db=sms", "http://host/?access_token=***&db=sms"),
    ("http://host/?apiKey=k1", "http://host/?apiKey=***"),
    ("http://user:pa#ss@host:1/x", "http://***@host:1/x"),  # an unencoded '#' in the password
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_secrets_of_lists_the_credentials_longest_first() -> None:
    assert secrets_of("http://writer:p%40ss@clickhouse:8123/?token=t0k&db=sms") == \
        ["writer:p%40ss", "p%40ss", "p@ss", "t0k"]
    assert secrets_of("http://clickhouse:8123/?database=sms") == []
    assert secrets_of("chdb:///var/lib/sms/warehouse") == []
    assert secrets_of("http://only-user@host/") == []  # a user without a password is not a secret
