"""KX pull feeds (seed 001): MTQuery receipts, MOQuery uplink (≤ 200 per call, each record
returned once) and Balance. KX has no SDK; `sources.kx.client.KxClient` is its md5-signed client.
KX has no per-message query, so no compensation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sms_analytics.model.events import ProviderBalance, ReceiptEvent
from sms_analytics.model.times import now_ms
from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import Feed, FeedSet, Publish, SpooledPull, feed_options
from sms_analytics.sources.base.fields import Parsed
from sms_analytics.sources.kx.client import KxClient
from sms_analytics.sources.kx.parsers import Kx


def build(settings: Settings, provider: Kx, publish: Publish) -> FeedSet:
    """MTQuery, MOQuery and Balance, when SMS_KX_BASE_URL, SMS_KX_USERID and SMS_KX_APIKEY are set."""
    s = settings
    if not (s.sms_kx_base_url and s.sms_kx_userid and s.sms_kx_apikey):
        return FeedSet()
    client = KxClient(s.sms_kx_base_url, s.sms_kx_userid, s.sms_kx_apikey.get_secret_value())
    common = feed_options(s)
    return FeedSet(feeds=[kx_reports(client, provider, publish, s.sms_data_dir, **common),
                          kx_uplink(client, provider, publish, s.sms_data_dir, **common),
                          KxBalance(client, s.sms_kx_userid, publish, rate=s.sms_feed_rate)],
                   closers=[client])


def kx_reports(client: KxClient, provider: Kx, publish: Publish, data_dir: Path, **kw: Any) -> SpooledPull:
    def parse(records: list[Any], now: int) -> Parsed:
        parsed = provider.receipts(records, now)
        for event in parsed.events:
            if isinstance(event, ReceiptEvent):  # receipts() yields nothing else
                event.source = "poll"
        return parsed

    return SpooledPull("kx.mtquery", client.mt_query, parse, publish, data_dir, **kw)


def kx_uplink(client: KxClient, provider: Kx, publish: Publish, data_dir: Path, **kw: Any) -> SpooledPull:
    return SpooledPull("kx.moquery", client.mo_query, provider.replies, publish, data_dir, **kw)


class KxBalance(Feed):
    """The account's remaining messages, as a gauge row in sms.provider_balance."""

    name = "kx.balance"

    def __init__(self, client: KxClient, account: str, publish: Publish, **kw: Any) -> None:
        kw.setdefault("interval", 60.0)
        super().__init__(publish, **kw)
        self.client, self.account = client, account

    async def poll(self) -> int:
        balance = await self.client.balance()
        await self.publish([ProviderBalance(provider="kx", account=self.account, balance=balance, at_ms=now_ms())],
                           [], f"feed:{self.name}")
        return 0  # a gauge: wait the interval
