"""Tencent pull feeds (seed 002): PullSmsSendStatus and PullSmsReplyStatus (Limit ≤ 100 per
SmsSdkAppId, each record returned once), and the hourly CallbackStatusStatistics and
SendStatusStatistics into sms.provider_stats, the package quota SmsPackagesStatistics into
sms.provider_balance, and the compensation queries
PullSmsSendStatusByPhoneNumber and PullSmsReplyStatusByPhoneNumber (`by_phone`), and the template and sign metadata
(DescribeSmsTemplateList, listed whole; DescribeSmsSignList for SMS_TENCENT_SIGN_IDS). Calls go through the official SDK
(`sources.tencent.client.TencentClient`, blocking calls off the event loop)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sms_analytics.model.events import CompensationRequest, ProviderBalance, ProviderStats, SignInfo, TemplateInfo
from sms_analytics.model.times import CHINA, now_ms
from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import Ask, Checkpoint, Feed, FeedSet, Publish, Runnable, SpooledPull, feed_options
from sms_analytics.sources.base.fields import Parsed
from sms_analytics.sources.base.metadata import MetadataPull, code_of, items, metadata_options
from sms_analytics.sources.tencent.parsers import Tencent

if TYPE_CHECKING:  # the SDK loads only when a feed is configured (`build`)
    from sms_analytics.sources.tencent.client import TencentClient

HOUR_MS = 3_600_000


def build(settings: Settings, provider: Tencent, publish: Publish) -> FeedSet:
    """Per SmsSdkAppId the two pulls and the statistics, and the compensation query, when
    SMS_TENCENT_SECRET_ID, SMS_TENCENT_SECRET_KEY and SMS_TENCENT_APP_IDS are set."""
    s = settings
    app_ids = [a.strip() for a in s.sms_tencent_app_ids.split(",") if a.strip()]
    if not (s.sms_tencent_secret_id and s.sms_tencent_secret_key and app_ids):
        return FeedSet()
    from sms_analytics.sources.tencent.client import TencentClient

    client = TencentClient(secret_id=s.sms_tencent_secret_id, secret_key=s.sms_tencent_secret_key.get_secret_value(),
                           endpoint=s.sms_tencent_endpoint, scheme=s.sms_tencent_scheme)
    common = feed_options(s)
    feeds: list[Runnable] = []
    for app_id in app_ids:
        feeds += [tencent_statuses(client, app_id, provider, publish, s.sms_data_dir, **common),
                  tencent_replies(client, app_id, provider, publish, s.sms_data_dir, **common),
                  TencentStatistics(client, app_id, publish, s.sms_data_dir, rate=s.sms_feed_rate),
                  TencentQuota(client, app_id, publish, interval=s.sms_provider_stats_interval.total_seconds(),
                               rate=s.sms_feed_rate)]
    return FeedSet(feeds=feeds + metadata_feeds(settings, client, publish),
                   compensation=by_phone(client, app_ids, provider))


# StatusCode of DescribeTemplateListStatus / DescribeSignListStatus: 0 审核通过且已生效, 1 审核中,
# 2 审核通过待生效, -1 审核未通过或审核失败.
REVIEW_STATUSES = {0: "approved", 1: "reviewing", 2: "approved_not_effective", -1: "rejected"}
# The template list has no SmsType (1 营销, 2 通知, 3 验证码 are AddSmsTemplate's, not returned by
# DescribeSmsTemplateList): only International tells a type, 1 国际/港澳台 (0 国内, 3 both: other).
INTERNATIONAL_TYPES = {1: "international"}
PAGE = 100  # DescribeSmsTemplateList Limit: "最大上限，最多100"


def metadata_feeds(settings: Settings, client: TencentClient, publish: Publish) -> list[Runnable]:
    """Every template (domestic and international, listed page by page) and the signs of
    SMS_TENCENT_SIGN_IDS (DescribeSmsSignList requires their ids), every SMS_METADATA_INTERVAL."""
    options = metadata_options(settings)
    feeds: list[Runnable] = [MetadataPull("tencent.templates", lambda at: describe_templates(client, at), publish,
                                          **options)]
    if sign_ids := [int(i) for i in items(settings.sms_tencent_sign_ids)]:
        feeds.append(MetadataPull("tencent.signs", lambda at: describe_signs(client, sign_ids, at), publish,
                                  **options))
    return feeds


async def describe_templates(client: TencentClient, pulled_at_ms: int) -> list[TemplateInfo]:
    """DescribeSmsTemplateList without TemplateIdSet, Offset by Offset until a short page, for
    International 0 and 1."""
    out: list[TemplateInfo] = []
    for international in (0, 1):
        offset = 0
        while True:
            page = await client.describe_sms_template_list(international, limit=PAGE, offset=offset)
            out += [template_info(t, pulled_at_ms) for t in page]
            if len(page) < PAGE:
                break
            offset += PAGE
    return out


async def describe_signs(client: TencentClient, sign_ids: Sequence[int], pulled_at_ms: int) -> list[SignInfo]:
    """DescribeSmsSignList (International 0) for the ids, 100 per call."""
    out: list[SignInfo] = []
    for start in range(0, len(sign_ids), PAGE):
        found = await client.describe_sms_sign_list(0, sign_ids[start:start + PAGE])
        out += [sign_info(s, pulled_at_ms) for s in found]
    return out


def template_info(status: dict[str, Any], pulled_at_ms: int) -> TemplateInfo:
    international, raw_status = status.get("International"), status.get("StatusCode")
    return TemplateInfo(provider="tencent", template_code=str(status.get("TemplateId") or ""),
                        name=str(status.get("TemplateName") or ""), content=str(status.get("TemplateContent") or ""),
                        template_type=code_of(INTERNATIONAL_TYPES, international, "other"),
                        raw_type="" if international is None else f"International={international}",
                        status=code_of(REVIEW_STATUSES, raw_status, "unknown"),
                        raw_status="" if raw_status is None else str(raw_status),
                        reason=str(status.get("ReviewReply") or ""), pulled_at_ms=pulled_at_ms)


def sign_info(status: dict[str, Any], pulled_at_ms: int) -> SignInfo:
    raw_status = status.get("StatusCode")
    return SignInfo(provider="tencent", sign_name=str(status.get("SignName") or ""),
                    sign_id=str(status.get("SignId") or ""), status=code_of(REVIEW_STATUSES, raw_status, "unknown"),
                    raw_status="" if raw_status is None else str(raw_status),
                    reason=str(status.get("ReviewReply") or ""), pulled_at_ms=pulled_at_ms)


def by_phone(client: TencentClient, app_ids: Sequence[str], provider: Tencent) -> Ask:
    """Compensation: PullSmsSendStatusByPhoneNumber from a minute before the send, in every app,
    keeping the statuses of the message asked about; and its reply counterpart
    PullSmsReplyStatusByPhoneNumber over the same window, so replies of that number that the
    pushes and PullSmsReplyStatus missed are filled in. A reply's id is derived from its number,
    time and text (`Tencent._pulled_reply`), the same for a pushed, pulled or compensated copy, so
    sms.replies (ReplacingMergeTree by provider, reply_id) keeps one row of each. The number goes
    only to the SDK, never to a log."""
    async def ask(request: CompensationRequest) -> Parsed:
        begin, now = request.sent_at_ms // 1000 - 60, now_ms()
        statuses: list[Any] = []
        replies: list[Any] = []
        for app_id in app_ids:
            found: list[Any] = await client.pull_send_status_by_phone(  # the API's JSON: each item checked below
                app_id, request.phone, begin, None, 0, 100)
            statuses += [s for s in found if isinstance(s, dict) and s.get("SerialNo") == request.message_id]
            replies += await client.pull_reply_status_by_phone(app_id, request.phone, begin, None, 0, 100)
        return merge(provider.pulled_statuses(statuses, now), provider.pulled_replies(replies, now))

    return ask


def merge(*parts: Parsed) -> Parsed:
    """One answer from several parsed pulls (origins are per pull, so they are not carried)."""
    return Parsed(events=[e for p in parts for e in p.events], rejected=[r for p in parts for r in p.rejected])


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


PACKAGE_LOOKBACK_DAYS = 800  # packages are asked by creation time: this far back covers any still effective
PACKAGE_PAGE = 500  # SmsPackagesStatistics Limit: "默认最大值为500"


class TencentQuota(Feed):
    """The package quota (套餐包) of an SmsSdkAppId as a gauge row of sms.provider_balance, beside KX's
    Balance: provider "tencent", account the SmsSdkAppId, balance the messages left.

    SmsPackagesStatistics lists packages by creation time with PackageAmount (套餐包条数) and
    CurrentUsage (当前使用套餐包条数); what can still be sent is the sum of PackageAmount -
    CurrentUsage (at least 0) over the packages in effect now (PackageEffectiveTime <= now <
    PackageExpiredTime): a package not yet effective or expired sends nothing, so it is not counted.
    The packages are asked from PACKAGE_LOOKBACK_DAYS back to the current hour, page by page."""

    name = "tencent.quota"

    def __init__(self, client: TencentClient, app_id: str, publish: Publish, **kw: Any) -> None:
        kw.setdefault("interval", 60.0)
        super().__init__(publish, **kw)
        self.client, self.app_id = client, app_id
        self.name = f"tencent.quota.{app_id}"

    async def poll(self) -> int:
        now = now_ms()
        begin = china_hour(now - PACKAGE_LOOKBACK_DAYS * 86_400_000)
        end = china_hour(now)  # "EndTime 必须 ... 小于当前时间": the current hour's start is
        packages: list[dict[str, Any]] = []
        while True:
            page = await self.client.sms_packages_statistics(self.app_id, begin, end, PACKAGE_PAGE, len(packages))
            packages += page
            if len(page) < PACKAGE_PAGE:
                break
        left = quota_left(packages, now // 1000)
        await self.publish([ProviderBalance(provider="tencent", account=self.app_id, balance=left, at_ms=now)], [],
                           f"feed:{self.name}")
        self.stats.records += 1
        return 0  # a gauge: wait the interval


def quota_left(packages: Sequence[dict[str, Any]], now_s: int) -> int:
    """Messages left in the packages in effect at `now_s` (see TencentQuota)."""
    return sum(max(0, _n(p, "PackageAmount") - _n(p, "CurrentUsage")) for p in packages
               if _n(p, "PackageEffectiveTime") <= now_s < _n(p, "PackageExpiredTime"))


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
