"""Tencent pull feeds (seed 002): PullSmsSendStatus and PullSmsReplyStatus (Limit ≤ 100 per
SmsSdkAppId, each record returned once), and the hourly CallbackStatusStatistics and
SendStatusStatistics into sms.provider_stats. Calls go through the official SDK
(`sources.tencent.client.TencentClient`, blocking calls off the event loop)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sms_analytics.model.events import ProviderStats
from sms_analytics.model.times import CHINA, now_ms
from sms_analytics.sources.base.feed import Checkpoint, Feed, Publish, SpooledPull
from sms_analytics.sources.tencent.parsers import Tencent
from sms_analytics.sources.tencent.client import TencentClient

HOUR_MS = 3_600_000


def tencent_statuses(client: TencentClient, app_id: str, provider: Tencent, publish: Publish, data_dir: Path,
                     **kw: Any) -> SpooledPull:
    return SpooledPull(f"tencent.pull_send_status.{app_id}", lambda: client.pull_send_status(app_id, limit=100),
                       provider.pulled_statuses, publish, data_dir, **kw)


def tencent_replies(client: TencentClient, app_id: str, provider: Tencent, publish: Publish, data_dir: Path,
                    **kw: Any) -> SpooledPull:
    return SpooledPull(f"tencent.pull_reply_status.{app_id}", lambda: client.pull_reply_status(app_id, limit=100),
                       provider.pulled_replies, publish, data_dir, **kw)


def china_hour(hour_ms: int) -> str:
    """The statistics APIs take hours as YYYYMMDDHH in China time."""
    return datetime.fromtimestamp(hour_ms / 1000, tz=CHINA).strftime("%Y%m%d%H")


class TencentStatistics(Feed):
    """Pulls each completed hour once (after `settle` so late callbacks are in), oldest first,
    starting `backfill_hours` back; the checkpoint keeps the next hour to pull."""

    name = "tencent.statistics"

    def __init__(self, client: TencentClient, app_id: str, publish: Publish, data_dir: Path, *,
                 backfill_hours: int = 24, settle: timedelta = timedelta(minutes=10), **kw: Any) -> None:
        kw.setdefault("interval", 60.0)
        super().__init__(publish, checkpoint=Checkpoint(data_dir / "feeds" / f"{self.name}.{app_id}.json"), **kw)
        self.client, self.app_id = client, app_id
        self.backfill_hours, self.settle_ms = backfill_hours, int(settle.total_seconds() * 1000)

    def next_hour(self) -> int:
        assert self.checkpoint is not None
        saved = self.checkpoint.load().get("next_hour_ms")
        return int(saved) if saved is not None else (now_ms() // HOUR_MS - self.backfill_hours) * HOUR_MS

    async def poll(self) -> int:
        assert self.checkpoint is not None
        hour = self.next_hour()
        if hour + HOUR_MS + self.settle_ms > now_ms():
            return 0
        label = china_hour(hour)
        callbacks = _inner(await self.client.callback_status_statistics(self.app_id, label, label), "CallbackStatusStatistics")
        sends = _inner(await self.client.send_status_statistics(self.app_id, label, label), "SendStatusStatistics")
        stats = ProviderStats(
            provider="tencent", app_id=self.app_id, hour_ms=hour, pulled_at_ms=now_ms(),
            request_count=_n(sends, "RequestCount"), request_success_count=_n(sends, "RequestSuccessCount"),
            fee_count=_n(sends, "FeeCount"), callback_count=_n(callbacks, "CallbackCount"),
            callback_success_count=_n(callbacks, "CallbackSuccessCount"),
            callback_fail_count=_n(callbacks, "CallbackFailCount"),
            internal_error_count=_n(callbacks, "InternalErrorCount"),
            invalid_number_count=_n(callbacks, "InvalidNumberCount"),
            shutdown_error_count=_n(callbacks, "ShutdownErrorCount"),
            blacklist_count=_n(callbacks, "BlackListCount"),
            frequency_limit_count=_n(callbacks, "FrequencyLimitCount"),
        )
        await self.publish([stats], [], f"feed:{self.name}")
        self.checkpoint.save({"next_hour_ms": hour + HOUR_MS})
        return 1


def _inner(response: dict[str, Any], key: str) -> dict[str, Any]:
    inner = response.get("Response", response)
    inner = inner.get(key, inner)
    return inner if isinstance(inner, dict) else {}


def _n(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key, 0)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
