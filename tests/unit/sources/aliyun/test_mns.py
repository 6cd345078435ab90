"""sources.aliyun.mns' pure parts: credentials, body decoding, error codes and the consumer's
argument checks (the consumer against the MNS simulator is in tests/unit/simulate/test_mns.py)."""

from __future__ import annotations

import base64
import re

import pytest
from mns.mns_exception import MNSServerException

from sms_analytics.sources.aliyun.mns import (
    MnsConsumer,
    RefreshingCredentials,
    StaticCredentials,
    decode_body,
    error_code,
)


def test_static_credentials_hide_the_key():
    creds = StaticCredentials("id", "secret-key", "tok")
    assert creds.get() == ("id", "secret-key", "tok")
    assert "secret-key" not in repr(creds)
    assert "tok" not in repr(creds)
    assert StaticCredentials("id", "k").get() == ("id", "k", None)


def test_refreshing_credentials_refetch_before_expiry():
    now = [1000.0]
    fetched = []

    def fetch():
        fetched.append(now[0])
        return (f"id{len(fetched)}", "k", "t", now[0] + 600)

    creds = RefreshingCredentials(fetch, refresh_before=120, clock=lambda: now[0])
    assert creds.get() == ("id1", "k", "t")
    now[0] = 1479.0  # 121 s before the expiry at 1600
    assert creds.get()[0] == "id1"
    now[0] = 1480.0
    assert creds.get()[0] == "id2"
    assert fetched == [1000.0, 1480.0]
    assert repr(creds) == "RefreshingCredentials(expires_at=2080.0)"


def test_decode_body():
    assert decode_body(b' {"a": [1]} ') == {"a": [1]}
    assert decode_body(base64.b64encode('{"中": 1}'.encode()).decode()) == {"中": 1}


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe", "message body is not UTF-8"),
    ("   ", "message body is empty"),
    ("not json!", "message body is neither JSON nor base64-encoded JSON"),
    (base64.b64encode(b"plain text").decode(), "message body is base64 but not of JSON (UTF-8)"),
])
def test_decode_body_refusals(body, reason):
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        decode_body(body)


def test_error_code():
    assert error_code(MNSServerException("QueueNotExist", "no queue", "req", "host")) == "QueueNotExist"
    assert error_code(TimeoutError("x")) == "TimeoutError"


async def _publish(events, rejected, origin):
    return None


def consumer(**kw):
    args = dict(endpoint="http://127.0.0.1:1/", access_id="id", access_key="k", queue="q", kind="SmsReport",
                publish=_publish, parse=lambda doc, now: None)
    return MnsConsumer(**{**args, **kw})


def test_consumer_fields():
    c = consumer(kind="SmsUp")
    assert (c.endpoint, c.name, c.source, c.queue_name) == ("http://127.0.0.1:1", "aliyun.mns.SmsUp",
                                                            "feed:aliyun-mns:SmsUp", "q")
    assert c.credentials.get() == ("id", "k", None)


@pytest.mark.parametrize("kw, message", [
    ({"kind": "SmsOther"}, "kind must be SmsReport or SmsUp"),
    ({"batch": 0}, "batch must be 1.."),
    ({"wait_seconds": -1}, "wait_seconds must be 0.."),
    ({"endpoint": "ftp://x"}, "endpoint must be an http:// or https:// URL"),
])
def test_consumer_refuses(kw, message):
    with pytest.raises(ValueError, match=message):
        consumer(**kw)
