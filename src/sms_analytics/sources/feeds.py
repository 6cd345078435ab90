"""Which pull feeds run: each one whose credentials and endpoint are configured."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from sms_analytics.settings import Settings
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.base.feed import Publish


class Runnable(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


def build_feeds(settings: Settings, ids: Identities, publish: Publish, bootstrap: str) -> tuple[list[Any], list[Any]]:
    """The feeds to run, and the clients to close when they stop."""
    s = settings
    data_dir = s.sms_data_dir
    common = {"interval": s.sms_feed_interval_seconds, "rate": s.sms_feed_rate}
    feeds: list[Any] = []
    closers: list[Any] = []
    if s.sms_kx_base_url and s.sms_kx_userid and s.sms_kx_apikey:
        from sms_analytics.sources.kx.feeds import KxBalance, kx_reports, kx_uplink
        from sms_analytics.sources.kx.parsers import Kx
        from sms_analytics.sources.kx.client import KxClient

        client = KxClient(s.sms_kx_base_url, s.sms_kx_userid, s.sms_kx_apikey.get_secret_value())
        closers.append(client)
        kx = Kx(ids)
        feeds += [kx_reports(client, kx, publish, data_dir, **common), kx_uplink(client, kx, publish, data_dir, **common),
                  KxBalance(client, s.sms_kx_userid, publish, rate=s.sms_feed_rate)]
    app_ids = [a.strip() for a in s.sms_tencent_app_ids.split(",") if a.strip()]
    compensate: dict[str, Any] = {}
    if s.sms_tencent_secret_id and s.sms_tencent_secret_key and app_ids:
        from sms_analytics.sources.tencent.feeds import TencentStatistics, tencent_replies, tencent_statuses
        from sms_analytics.sources.tencent.parsers import Tencent
        from sms_analytics.sources.tencent.client import TencentClient

        client = TencentClient(secret_id=s.sms_tencent_secret_id, secret_key=s.sms_tencent_secret_key.get_secret_value(),
                               endpoint=s.sms_tencent_endpoint, scheme=s.sms_tencent_scheme)
        tencent = Tencent(ids)
        compensate["tencent"] = (client, app_ids, tencent)
        for app_id in app_ids:
            feeds += [tencent_statuses(client, app_id, tencent, publish, data_dir, **common),
                      tencent_replies(client, app_id, tencent, publish, data_dir, **common),
                      TencentStatistics(client, app_id, publish, data_dir, rate=s.sms_feed_rate)]
    if s.sms_aliyun_access_key_id and s.sms_aliyun_access_key_secret:
        from sms_analytics.sources.aliyun.parsers import Aliyun
        from sms_analytics.sources.aliyun.client import AliyunClient

        compensate["aliyun"] = (AliyunClient(access_key_id=s.sms_aliyun_access_key_id,
                                             access_key_secret=s.sms_aliyun_access_key_secret.get_secret_value(),
                                             endpoint=s.sms_aliyun_endpoint, protocol=s.sms_aliyun_protocol),
                                Aliyun(ids))
    if compensate:
        from sms_analytics.sources.compensation import Compensator

        feeds.append(Compensator(bootstrap, f"{s.sms_app_id}-compensation", publish, **compensate, **common))
    if s.sms_aliyun_mns_endpoint and s.sms_aliyun_access_key_id and s.sms_aliyun_access_key_secret:
        from sms_analytics.sources.aliyun.parsers import Aliyun
        from sms_analytics.sources.aliyun.mns import MnsConsumer

        aliyun = Aliyun(ids)
        for queue, kind, parse in ((s.sms_aliyun_mns_report_queue, "SmsReport", aliyun.receipts),
                                   (s.sms_aliyun_mns_up_queue, "SmsUp", aliyun.replies)):
            if queue:
                feeds.append(MnsConsumer(endpoint=s.sms_aliyun_mns_endpoint, access_id=s.sms_aliyun_access_key_id,
                                         access_key=s.sms_aliyun_access_key_secret.get_secret_value(), queue=queue,
                                         kind=kind, publish=publish, parse=parse))
    return feeds, closers
