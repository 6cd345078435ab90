"""sources.feeds.build_feeds: which feeds run for given settings (built, never started: no network,
no broker)."""

from __future__ import annotations

from typing import Any

from sms_analytics.model.phone import PhoneHasher
from sms_analytics.settings import Settings
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.compensation import Compensator
from sms_analytics.sources.feeds import build_feeds
from sms_analytics.sources.kx.client import KxClient

IDS = Identities(PhoneHasher(b"k" * 32))
KX = {"sms_kx_base_url": "http://127.0.0.1:1", "sms_kx_userid": "u1", "sms_kx_apikey": "key"}
TENCENT = {"sms_tencent_secret_id": "id", "sms_tencent_secret_key": "key", "sms_tencent_app_ids": "1400"}
ALIYUN = {"sms_aliyun_access_key_id": "id", "sms_aliyun_access_key_secret": "secret"}


async def publish(events, rejected, origin):
    raise AssertionError("building publishes nothing")


def settings(tmp_path, **values):
    return Settings(_env_file=None, sms_data_dir=tmp_path, **values)


async def close(feeds, closers):
    for client in closers:
        await client.close()
    for feed in feeds:
        if isinstance(feed, Compensator):
            await feed.close()


async def test_nothing_configured(tmp_path):
    assert build_feeds(settings(tmp_path), IDS, publish, "127.0.0.1:1") == ([], [])


async def test_kx_alone_has_no_compensation(tmp_path):
    built: Any = build_feeds(settings(tmp_path, **KX), IDS, publish, "127.0.0.1:1")
    feeds, closers = built
    assert [f.name for f in feeds] == ["kx.mtquery", "kx.moquery", "kx.balance"]
    assert [type(c) for c in closers] == [KxClient]
    await close(feeds, closers)


async def test_compensation_for_providers_that_can_be_asked(tmp_path):
    s = settings(tmp_path, **KX, **TENCENT, **ALIYUN, sms_app_id="app7", sms_feed_rate=2.0)
    built: Any = build_feeds(s, IDS, publish, "127.0.0.1:1")
    feeds, closers = built
    try:
        assert [f.name for f in feeds] == ["aliyun.statistics", "tencent.pull_send_status.1400",
                                           "tencent.pull_reply_status.1400", "tencent.statistics",
                                           "tencent.quota.1400", "tencent.templates", "kx.mtquery", "kx.moquery",
                                           "kx.balance", "compensation"]
        compensator = feeds[-1]
        assert isinstance(compensator, Compensator)
        assert sorted(compensator.askers) == ["aliyun", "tencent"]
        assert compensator.consumer._group_id == "app7-compensation"
        assert compensator.limiter.gap == 0.5
    finally:
        await close(feeds, closers)


async def test_aliyun_keys_alone_statistics_and_compensation(tmp_path):
    built: Any = build_feeds(settings(tmp_path, **ALIYUN), IDS, publish, "127.0.0.1:1")
    feeds, closers = built
    try:
        assert [f.name for f in feeds] == ["aliyun.statistics", "compensation"]
        assert list(feeds[-1].askers) == ["aliyun"]
        assert closers == []
    finally:
        await close(feeds, closers)
