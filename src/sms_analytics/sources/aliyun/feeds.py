"""Alibaba Cloud SMS pull feeds (seed 000): SmsReport / SmsUp from their MNS queues (`mns.py`), and
the compensation query QuerySendDetails (§8.1) through the official SDK (`client.py`). Where this
ends: the MNS loop is `mns.py`'s, the compensation loop `sources/compensation.py`'s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sms_analytics.model.events import CompensationRequest
from sms_analytics.model.times import CHINA, now_ms
from sms_analytics.settings import Settings
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.feed import Ask, FeedSet, Publish, Runnable
from sms_analytics.sources.base.fields import Parsed

if TYPE_CHECKING:  # the SDKs load only when a feed is configured (`build`)
    from sms_analytics.sources.aliyun.client import AliyunClient
    from sms_analytics.sources.aliyun.mns import Kind


def build(settings: Settings, provider: Aliyun, publish: Publish) -> FeedSet:
    """With SMS_ALIYUN_ACCESS_KEY_ID and SMS_ALIYUN_ACCESS_KEY_SECRET: the compensation query, and
    with SMS_ALIYUN_MNS_ENDPOINT too, one consumer per configured queue."""
    s = settings
    if not (s.sms_aliyun_access_key_id and s.sms_aliyun_access_key_secret):
        return FeedSet()
    from sms_analytics.sources.aliyun.client import AliyunClient

    client = AliyunClient(access_key_id=s.sms_aliyun_access_key_id,
                          access_key_secret=s.sms_aliyun_access_key_secret.get_secret_value(),
                          endpoint=s.sms_aliyun_endpoint, protocol=s.sms_aliyun_protocol)
    return FeedSet(feeds=mns_consumers(settings, provider, publish), compensation=query_send_details(client, provider))


def mns_consumers(settings: Settings, provider: Aliyun, publish: Publish) -> list[Runnable]:
    """SmsReport (SMS_ALIYUN_MNS_REPORT_QUEUE) and SmsUp (SMS_ALIYUN_MNS_UP_QUEUE), each when set."""
    s = settings
    if not (s.sms_aliyun_mns_endpoint and s.sms_aliyun_access_key_id and s.sms_aliyun_access_key_secret):
        return []
    from sms_analytics.sources.aliyun.mns import MnsConsumer

    queues: tuple[tuple[str | None, Kind, Callable[[Any, int], Parsed]], ...] = (
        (s.sms_aliyun_mns_report_queue, "SmsReport", provider.receipts),
        (s.sms_aliyun_mns_up_queue, "SmsUp", provider.replies))
    return [MnsConsumer(endpoint=s.sms_aliyun_mns_endpoint, access_id=s.sms_aliyun_access_key_id,
                        access_key=s.sms_aliyun_access_key_secret.get_secret_value(), queue=queue, kind=kind,
                        publish=publish, parse=parse)
            for queue, kind, parse in queues if queue]


def query_send_details(client: AliyunClient, provider: Aliyun) -> Ask:
    """Compensation: QuerySendDetails by PhoneNumber + SendDate (China time) + BizId, PageSize 50."""
    async def ask(request: CompensationRequest) -> Parsed:
        send_date = datetime.fromtimestamp(request.sent_at_ms / 1000, tz=CHINA).strftime("%Y%m%d")
        national = request.phone.removeprefix("+86")
        answer = await client.query_send_details(national, send_date, biz_id=request.message_id, page_size=50)
        dtos = answer.get("SmsSendDetailDTOs") or {}
        details = dtos.get("SmsSendDetailDTO", []) if isinstance(dtos, dict) else dtos
        return provider.queried(list(details), request.message_id, now_ms())

    return ask
