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


def test_keys_alone_compensation_only():
    fs: Any = feeds.build(settings(**KEYS), PROVIDER, publish)
    assert fs.feeds == []
    assert callable(fs.compensation)


def test_mns_consumers_per_configured_queue():
    s = settings(**KEYS, sms_aliyun_mns_endpoint="http://127.0.0.1:1/", sms_aliyun_mns_report_queue="reports")
    fs: Any = feeds.build(s, PROVIDER, publish)
    assert [(f.name, f.queue_name, f.endpoint) for f in fs.feeds] == [("aliyun.mns.SmsReport", "reports",
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
