"""KX pull feeds (seed 001): MTQuery receipts, MOQuery uplink (≤ 200 per call, each record
returned once) and Balance. KX has no SDK; `sources.kx_client.KxClient` is its md5-signed client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sms_analytics.model.events import ProviderBalance
from sms_analytics.model.times import now_ms
from sms_analytics.sources.base import Parsed
from sms_analytics.sources.feeds.base import Checkpoint, Feed, Publish, SpooledPull
from sms_analytics.sources.kx import Kx
from sms_analytics.sources.kx_client import KxClient


class KxReports(SpooledPull):
    name = "kx.mtquery"

    def __init__(self, client: KxClient, provider: Kx, publish: Publish, data_dir: Path, **kw: Any) -> None:
        super().__init__(publish, checkpoint=Checkpoint(data_dir / "feeds" / f"{self.name}.json"), **kw)
        self.client, self.provider = client, provider

    async def fetch(self) -> list[Any]:
        return await self.client.mt_query()

    def parse(self, records: list[Any], now: int) -> Parsed:
        parsed = self.provider.receipts(records, now)
        for event in parsed.events:
            event.source = "poll"
        return parsed


class KxUplink(SpooledPull):
    name = "kx.moquery"

    def __init__(self, client: KxClient, provider: Kx, publish: Publish, data_dir: Path, **kw: Any) -> None:
        super().__init__(publish, checkpoint=Checkpoint(data_dir / "feeds" / f"{self.name}.json"), **kw)
        self.client, self.provider = client, provider

    async def fetch(self) -> list[Any]:
        return await self.client.mo_query()

    def parse(self, records: list[Any], now: int) -> Parsed:
        return self.provider.replies(records, now)


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
