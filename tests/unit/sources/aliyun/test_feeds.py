"""sources.aliyun.feeds: which feeds build() makes for given settings (nothing started), and the
QuerySendDetails compensation query against a fake client."""

from __future__ import annotations

from typing import Any

from sms_analytics.model.events import CompensationRequest
from sms_analytics.model.phone import PhoneHasher
from sms_analytics.settings import Settings
from sms_analytics.sources.aliyun import feeds
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.fields import Identities

PROVIDER = Aliyun(Identities(PhoneHasher(b"k" * 32)))
KEYS: dict[str, Any] = {"sms_aliyun_access_key_id": "id", "sms_aliyun_access_key_secret": "secret"}


async def publish(events, rejected, origin):
    raise AssertionError("build publishes nothing")


def settings(**values):
    return Settings(_env_file=None, **values)


def test_nothing_without_keys():
    fs: Any = feeds.build(settings(sms_aliyun_access_key_id="id"), PROVIDER, publish)
    assert (fs.feeds, fs.closers, fs.compensation) == ([], [], None)


def test_keys_alone_compensation_and_statistics():
    fs: Any = feeds.build(settings(**KEYS), PROVIDER, publish)
    assert [(f.name, f.interval) for f in fs.feeds] == [("aliyun.statistics", 60.0)]
    assert callable(fs.compensation)


def test_mns_consumers_per_configured_queue():
    s = settings(**KEYS, sms_aliyun_mns_endpoint="http://127.0.0.1:1/", sms_aliyun_mns_report_queue="reports")
    fs: Any = feeds.build(s, PROVIDER, publish)
    assert [(f.name, f.queue_name, f.endpoint) for f in fs.feeds[:-1]] == [("aliyun.mns.SmsReport", "reports",
                                                                            "http://127.0.0.1:1")]
    both: list[Any] = feeds.mns_consumers(settings(**KEYS, sms_aliyun_mns_endpoint="http://h", sms_aliyun_mns_report_queue="r",
                                        sms_aliyun_mns_up_queue="u"), PROVIDER, publish)
    assert [(f.kind, f.queue_name) for f in both] == [("SmsReport", "r"), ("SmsUp", "u")]
    assert feeds.mns_consumers(settings(sms_aliyun_mns_endpoint="http://h", sms_aliyun_mns_up_queue="u"),
                               PROVIDER, publish) == []


class _FakeClient:
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    async def query_send_details(self, phone, send_date, *, biz_id, page_size):
        self.calls.append((phone, send_date, biz_id, page_size))
        return self.answer


REQUEST = CompensationRequest(provider="aliyun", message_id="biz-1", phone="+8613800138000",
                              sent_at_ms=1_767_283_200_000 - 3_600_000,  # 2025-12-31 23:00 UTC = 2026-01-01 07:00 China
                              asked_at_ms=1_767_283_200_000)


async def test_query_send_details_asks_by_china_date_and_national_number():
    client = FakeClient({"SmsSendDetailDTOs": {"SmsSendDetailDTO": [
        {"PhoneNum": "13800138000", "SendStatus": 3, "ErrCode": "DELIVERED", "ReceiveDate": "2026-01-01 07:00:05",
         "SendDate": "2026-01-01 07:00:00"}]}})
    parsed: Any = await feeds.query_send_details(client, PROVIDER)(REQUEST)
    assert client.calls == [("13800138000", "20260101", "biz-1", 50)]
    assert [(e.message_id, e.delivered, e.error_code) for e in parsed.events] == [("biz-1", True, "DELIVERED")]
    assert parsed.rejected == []


async def test_query_send_details_waiting_and_list_form():
    client = FakeClient({"SmsSendDetailDTOs": [{"PhoneNum": "13800138000", "SendStatus": 1}]})
    parsed: Any = await feeds.query_send_details(client, PROVIDER)(REQUEST)
    assert parsed.events == []
    assert parsed.rejected == []
    empty = await feeds.query_send_details(FakeClient({}), PROVIDER)(REQUEST)
    assert (empty.events, empty.rejected) == ([], [])


def FakeClient(*args: Any) -> Any:  # a fake client, typed as the real one
    return _FakeClient(*args)


class _StatsClient:
    """QuerySendStatistics answers by IsGlobe and page, as the SDK's to_map() gives them."""

    def __init__(self, pages):
        self.pages = pages
        self.calls = []

    async def query_send_statistics(self, is_globe, start, end, *, page_index):
        self.calls.append((is_globe, start, end, page_index))
        return {"Code": "OK", "Data": self.pages.get((is_globe, page_index), {})}


async def test_statistics_pull_yesterday_and_today_as_china_days(monkeypatch):
    now = 1_767_283_200_000  # 2026-01-01 16:00 UTC = 2026-01-02 00:00 China
    monkeypatch.setattr(feeds, "now_ms", lambda: now)
    full = [{"SendDate": "20260101", "TotalCount": 1}] * 50
    client = _StatsClient({
        (1, 1): {"TotalSize": 51, "TargetList": full},
        (1, 2): {"TotalSize": 51, "TargetList": [{"SendDate": "20260102", "TotalCount": "7",
                                                 "RespondedSuccessCount": 5, "RespondedFailCount": 1,
                                                 "NoRespondedCount": 1}]},
        (2, 1): {"TotalSize": 0, "TargetList": None}})
    published: list[Any] = []

    async def collect(events, rejected, origin):
        published.extend(events)

    assert await feeds.AliyunStatistics(client, "LTAIkey", collect).poll() == 0
    assert client.calls == [(1, "20260101", "20260102", 1), (1, "20260101", "20260102", 2),
                            (2, "20260101", "20260102", 1)]
    last = published[-1]
    assert len(published) == 51
    assert (last.provider, last.app_id, last.hour_ms, last.period_hours) == ("aliyun", "LTAIkey/domestic", now, 24)
    assert (last.request_success_count, last.callback_count, last.callback_success_count,
            last.callback_fail_count) == (7, 6, 5, 1)
    assert published[0].hour_ms == now - 86_400_000
