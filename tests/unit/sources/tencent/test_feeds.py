"""sources.tencent.feeds: which feeds build() makes for given settings (nothing started), the
PullSmsSendStatusByPhoneNumber compensation query and the statistics feed against a fake client."""

from __future__ import annotations

from typing import Any

import pytest

from sms_analytics.model.events import CompensationRequest
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import SpooledPull
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.tencent import feeds
from sms_analytics.sources.tencent.parsers import Tencent

PROVIDER = Tencent(Identities(PhoneHasher(b"k" * 32)))
KEYS: dict[str, Any] = {"sms_tencent_secret_id": "id", "sms_tencent_secret_key": "key"}


async def publish(events, rejected, origin):
    raise AssertionError("build publishes nothing")


def settings(tmp_path, **values):
    return Settings(_env_file=None, sms_data_dir=tmp_path, **values)


@pytest.mark.parametrize("values", [{}, KEYS, {**KEYS, "sms_tencent_app_ids": " , "},
                                    {"sms_tencent_secret_id": "id", "sms_tencent_app_ids": "1400"}])
def test_nothing_without_keys_and_app_ids(tmp_path, values):
    fs: Any = feeds.build(settings(tmp_path, **values), PROVIDER, publish)
    assert (fs.feeds, fs.closers, fs.compensation) == ([], [], None)


def test_four_feeds_per_app_id(tmp_path):
    fs: Any = feeds.build(settings(tmp_path, **KEYS, sms_tencent_app_ids="1400, 1401", sms_feed_rate=3.0), PROVIDER, publish)
    names = [f.name for f in fs.feeds]
    assert names == ["tencent.pull_send_status.1400", "tencent.pull_reply_status.1400", "tencent.statistics",
                     "tencent.quota.1400",
                     "tencent.pull_send_status.1401", "tencent.pull_reply_status.1401", "tencent.statistics",
                     "tencent.quota.1401",
                     "tencent.templates"]  # the metadata: templates listed whole, signs only with SMS_TENCENT_SIGN_IDS
    assert isinstance(fs.feeds[0], SpooledPull)
    assert fs.feeds[0].spool.path == tmp_path / "feeds" / "tencent.pull_send_status.1400.json"
    assert fs.feeds[6].checkpoint.path == tmp_path / "feeds" / "tencent.statistics.1401.json"
    assert fs.feeds[6].interval == 60.0 and fs.feeds[7].interval == 60.0  # SMS_PROVIDER_STATS_INTERVAL
    assert fs.feeds[0].limiter.gap == pytest.approx(1 / 3)
    assert callable(fs.compensation)


class _FakeClient:
    def __init__(self, by_app=None):
        self.by_app = by_app or {}
        self.replies = {}
        self.calls = []

    async def pull_send_status_by_phone(self, app_id, phone, begin, end, offset, limit):
        self.calls.append((app_id, phone, begin, end, offset, limit))
        return self.by_app.get(app_id, [])

    async def pull_reply_status_by_phone(self, app_id, phone, begin, end, offset, limit):
        self.calls.append(("replies", app_id, phone, begin, end, offset, limit))
        return self.replies.get(app_id, [])

    async def callback_status_statistics(self, app_id, begin, end):
        self.calls.append(("callbacks", app_id, begin, end))
        return {"Response": {"CallbackStatusStatistics": {"CallbackCount": 10, "CallbackSuccessCount": 8,
                                                           "CallbackFailCount": "2", "InvalidNumberCount": None}}}

    async def send_status_statistics(self, app_id, begin, end):
        self.calls.append(("sends", app_id, begin, end))
        return {"SendStatusStatistics": {"RequestCount": 12, "RequestSuccessCount": -1, "FeeCount": "x"}}


def status(serial, phone="+8613800138000"):
    return {"SerialNo": serial, "PhoneNumber": phone, "ReportStatus": "SUCCESS", "Description": "DELIVRD",
            "UserReceiveTime": 1_767_225_605}


async def test_by_phone_asks_every_app_and_keeps_the_message():
    client = FakeClient({"a": [status("s-1"), status("other")], "b": [status("s-1"), "junk"]})
    request = CompensationRequest(provider="tencent", message_id="s-1", phone="+8613800138000",
                                  sent_at_ms=1_767_225_600_500, asked_at_ms=0)
    parsed: Any = await feeds.by_phone(client, ["a", "b"], PROVIDER)(request)
    assert [c for c in client.calls if c[0] != "replies"] == [("a", "+8613800138000", 1_767_225_540, None, 0, 100),
                                                              ("b", "+8613800138000", 1_767_225_540, None, 0, 100)]
    assert [(e.message_id, e.delivered, e.source) for e in parsed.events] == [("s-1", True, "poll")] * 2


def reply(text, at=1_767_225_700, phone="+8613800138000"):
    return {"PhoneNumber": phone, "ReplyContent": text, "ReplyTime": at, "SignName": "腾讯云", "ExtendCode": ""}


async def test_by_phone_fills_in_the_number_s_replies_with_stable_ids():
    """The reply counterpart asks every app over the send's window; the same reply asked twice (or
    pulled by PullSmsReplyStatus) has the same reply_id, so sms.replies keeps one row."""
    client = FakeClient()
    client.replies = {"a": [reply("TD")], "b": [reply("好的", at=1_767_225_800), "junk"]}
    request = CompensationRequest(provider="tencent", message_id="s-1", phone="+8613800138000",
                                  sent_at_ms=1_767_225_600_500, asked_at_ms=0)
    ask = feeds.by_phone(client, ["a", "b"], PROVIDER)
    parsed: Any = await ask(request)
    assert [c for c in client.calls if c[0] == "replies"] == [
        ("replies", app, "+8613800138000", 1_767_225_540, None, 0, 100) for app in ("a", "b")]
    assert [e.content for e in parsed.events] == ["TD", "好的"]
    assert len(parsed.rejected) == 1  # "junk"
    again: Any = await ask(request)
    pulled = PROVIDER.pulled_replies([reply("TD")], 0).events
    assert [e.reply_id for e in again.events][:1] == [e.reply_id for e in parsed.events][:1] == [pulled[0].reply_id]


def test_china_hour():
    assert feeds.china_hour(1_767_225_600_000) == "2026010108"  # 2026-01-01 00:00 UTC


async def test_statistics_pull_one_settled_hour(tmp_path, monkeypatch):
    hour = 1_767_225_600_000
    monkeypatch.setattr(feeds, "now_ms", lambda: hour + feeds.HOUR_MS + 11 * 60_000)
    published = []

    async def record(events, rejected, origin):
        published.append((events, rejected, origin))

    client = FakeClient()
    feed = feeds.TencentStatistics(client, "1400", record, tmp_path, backfill_hours=1)
    assert feed.next_hour() == hour
    assert await feed.poll() == 1
    assert client.calls == [("callbacks", "1400", "2026010108", "2026010108"), ("sends", "1400", "2026010108", "2026010108")]
    [(events, rejected, origin)] = published
    stats = events[0]
    assert (stats.provider, stats.app_id, stats.hour_ms) == ("tencent", "1400", hour)
    assert (stats.request_count, stats.request_success_count, stats.fee_count) == (12, 0, 0)
    assert (stats.callback_count, stats.callback_success_count, stats.callback_fail_count,
            stats.invalid_number_count) == (10, 8, 2, 0)
    assert (rejected, origin) == ([], "feed:tencent.statistics")
    assert feed.next_hour() == hour + feeds.HOUR_MS
    assert await feed.poll() == 0  # the next hour has not settled
    assert len(published) == 1


def FakeClient(*args: Any) -> Any:  # a fake client, typed as the real one
    return _FakeClient(*args)


def package(amount, usage, effective=100, expires=1000, **kw):
    return {"PackageAmount": amount, "CurrentUsage": usage, "PackageEffectiveTime": effective,
            "PackageExpiredTime": expires, "PackageCreateTime": effective, "PackageType": 1, **kw}


def test_quota_left_counts_the_packages_in_effect():
    packages = [package(1000, 100), package(500, 600), package(300, 0, effective=600),
                package(200, 0, expires=400), package("x", None)]
    assert feeds.quota_left(packages, 450) == 900  # the first; the second is used up, the third not yet effective,
    assert feeds.quota_left(packages, 700) == 900 + 300  # the fourth expired at 400


async def test_quota_publishes_one_balance_row(monkeypatch):
    now = 1_767_225_600_000  # 2026-01-01 08:00 China
    monkeypatch.setattr(feeds, "now_ms", lambda: now)

    class Packages:
        def __init__(self):
            self.calls = []

        async def sms_packages_statistics(self, app_id, begin, end, limit, offset):
            self.calls.append((app_id, begin, end, limit, offset))
            return [package(100, 40, effective=0, expires=2_000_000_000)] * (500 if offset == 0 else 1)

    published: list[Any] = []

    async def collect(events, rejected, origin):
        published.extend(events)

    client = Packages()
    quota = feeds.TencentQuota(client, "1400", collect)
    assert await quota.poll() == 0 and quota.stats.records == 1
    assert client.calls == [("1400", "2023102408", "2026010108", 500, 0), ("1400", "2023102408", "2026010108", 500, 500)]
    [row] = published
    assert (row.provider, row.account, row.balance, row.at_ms) == ("tencent", "1400", 60 * 501, now)
