"""The metadata pull: a provider's templates and signs as its metadata APIs describe them, published
every SMS_METADATA_INTERVAL as `TemplateInfo` / `SignInfo` records on sms.provider_stats.v1 (the
sink writes them to sms.templates and sms.signs). Each pull describes everything again and a later
row replaces an earlier one (ReplacingMergeTree by pulled time), so there is no checkpoint. Where
this ends: which calls describe what, and how a provider's codes map onto the normalized type and
status, is each provider package's `feeds.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sms_analytics.model.events import SignInfo, TemplateInfo
from sms_analytics.model.times import now_ms
from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import RECORDS, Feed, Publish

Metadata = TemplateInfo | SignInfo
Describe = Callable[[int], Awaitable[Sequence[Metadata]]]  # pulled_at_ms -> the records of one pull


def items(text: str) -> list[str]:
    """A comma-separated setting's values, trimmed, empty ones left out."""
    return [part.strip() for part in text.split(",") if part.strip()]


def metadata_options(settings: Settings) -> dict[str, float]:
    """SMS_METADATA_INTERVAL between pulls, and the feeds' rate limit."""
    return {"interval": settings.sms_metadata_interval.total_seconds(), "rate": settings.sms_feed_rate}


def code_of(codes: dict[int, str], raw: Any, default: str) -> str:
    """A provider's integer code (as JSON gives it) looked up in `codes`; `default` when unknown."""
    try:
        return codes.get(int(raw), default)
    except (TypeError, ValueError):
        return default


class MetadataPull(Feed):
    """One provider's templates or signs: `describe` makes the records of one pull, which are published
    together; the next pull comes an interval later (a full pull is not followed by another at once)."""

    def __init__(self, name: str, describe: Describe, publish: Publish, **kw: Any) -> None:
        self.name = name
        super().__init__(publish, **kw)
        self.describe = describe

    async def poll(self) -> int:
        records = list(await self.describe(now_ms()))
        if records:
            await self.publish(records, [], f"feed:{self.name}")
            RECORDS.labels(self.name).inc(len(records))
            self.stats.records += len(records)
        return 0
