"""sources.kx.feeds: which feeds build() makes for given settings (nothing started), the MTQuery
feed's source and the balance feed against a fake client. KX has no compensation query."""

from __future__ import annotations

from typing import Any

import pytest

from sms_analytics.model.phone import PhoneHasher
from sms_analytics.settings import Settings
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.kx import feeds
from sms_analytics.sources.kx.client import KxClient
from sms_analytics.sources.kx.parsers import Kx

PROVIDER = Kx(Identities(PhoneHasher(b"k" * 32)))
KEYS: dict[str, Any] = {"sms_kx_base_url": "http://127.0.0.1:1", "sms_kx_userid": "u1", "sms_kx_apikey": "key"}


async def publish(events, rejected, origin):
    raise AssertionError("build publishes nothing")


@pytest.mark.parametrize("missing", sorted(KEYS))
def test_nothing_without_every_setting(tmp_path, missing):
    values = {k: v for k, v in KEYS.items() if k != missing}
    fs: Any = feeds.build(Settings(_env_file=None, sms_data_dir=tmp_path, **values), PROVIDER, publish)
    assert (fs.feeds, fs.closers, fs.compensation) == ([], [], None)


async def test_three_feeds_and_the_client_to_close(tmp_path):
    fs: Any = feeds.build(Settings(_env_file=None, sms_data_dir=tmp_path, **KEYS), PROVIDER, publish)
    assert [f.name for f in fs.feeds] == ["kx.mtquery", "kx.moquery", "kx.balance"]
    assert fs.compensation is None
    [client] = fs.closers
    assert isinstance(client, KxClient)
    assert client.base_url == "http://127.0.0.1:1"
    assert fs.feeds[0].spool.path == tmp_path / "feeds" / "kx.mtquery.json"
    assert fs.feeds[2].account == "u1"
    assert fs.feeds[2].interval == 60.0
    await client.close()


class _FakeClient:
    def __init__(self):
        self.records = [[{"mobile": "13800138000", "taskid": "t-1", "code": "DELIVRD", "time": "20260101080005"},
                         {"mobile": "13800138000", "code": "DELIVRD", "time": "20260101080005"}], []]

    async def mt_query(self):
        return self.records.pop(0)

    async def balance(self):
        return 4321


async def test_reports_are_marked_poll(tmp_path):
    published = []

    async def record(events, rejected, origin):
        published.append((list(events), list(rejected), origin))

    feed = feeds.kx_reports(FakeClient(), PROVIDER, record, tmp_path, rate=0)
    handled = await feed.poll()
    [(events, rejected, origin)] = published
    assert origin == "feed:kx.mtquery"
    assert handled == 2
    assert len(rejected) == 1  # no taskid
    assert [(e.message_id, e.source) for e in events] == [("t-1", "poll")]


async def test_balance_is_a_gauge(tmp_path):
    published = []

    async def record(events, rejected, origin):
        published.append((events, rejected, origin))

    feed = feeds.KxBalance(FakeClient(), "u1", record)
    assert await feed.poll() == 0
    [([row], rejected, origin)] = published
    assert (row.provider, row.account, row.balance) == ("kx", "u1", 4321)
    assert (rejected, origin) == ([], "feed:kx.balance")


def FakeClient(*args: Any) -> Any:  # a fake client, typed as the real one
    return _FakeClient(*args)
