"""Alibaba Cloud SMS pull feeds (seed 000): SmsReport / SmsUp from their MNS queues (`mns.py`), the
compensation query QuerySendDetails (§8.1), the daily statistics QuerySendStatistics (in the SDK,
not in the seed) into sms.provider_stats, and the template and sign metadata (QuerySmsTemplate §10.2,
QuerySmsSign §9.3, one code or name per call) through the official SDK (`client.py`). Where this
ends: the MNS loop is `mns.py`'s, the compensation loop `sources/compensation.py`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from sms_analytics.model.events import CompensationRequest, ProviderStats, SignInfo, TemplateInfo
from sms_analytics.model.times import CHINA, now_ms
from sms_analytics.settings import Settings
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.feed import Ask, Feed, FeedSet, Publish, Runnable
from sms_analytics.sources.base.fields import Parsed
from sms_analytics.sources.base.metadata import MetadataPull, code_of, items, metadata_options

log = structlog.get_logger(__name__)

if TYPE_CHECKING:  # the SDKs load only when a feed is configured (`build`)
    from sms_analytics.sources.aliyun.client import AliyunClient
    from sms_analytics.sources.aliyun.mns import Kind


def build(settings: Settings, provider: Aliyun, publish: Publish) -> FeedSet:
    """With SMS_ALIYUN_ACCESS_KEY_ID and SMS_ALIYUN_ACCESS_KEY_SECRET: the compensation query, the
    statistics, and
    with SMS_ALIYUN_MNS_ENDPOINT too, one consumer per configured queue."""
    s = settings
    if not (s.sms_aliyun_access_key_id and s.sms_aliyun_access_key_secret):
        return FeedSet()
    from sms_analytics.sources.aliyun.client import AliyunClient

    client = AliyunClient(access_key_id=s.sms_aliyun_access_key_id,
                          access_key_secret=s.sms_aliyun_access_key_secret.get_secret_value(),
                          endpoint=s.sms_aliyun_endpoint, protocol=s.sms_aliyun_protocol)
    return FeedSet(feeds=[*mns_consumers(settings, provider, publish), *metadata_feeds(settings, client, publish),
                          AliyunStatistics(client, s.sms_aliyun_access_key_id, publish,
                                           interval=s.sms_provider_stats_interval.total_seconds(),
                                           rate=s.sms_feed_rate)],
                   compensation=query_send_details(client, provider))


# QuerySmsTemplate's TemplateType (§10.2): 0 验证码, 1 短信通知, 2 推广短信, 3 国际/港澳台消息.
TEMPLATE_TYPES = {0: "verification", 1: "notification", 2: "marketing", 3: "international"}
# TemplateStatus / SignStatus (§10.2, §9.3): 0 审核中, 1 审核通过, 2 审核失败.
REVIEW_STATUSES = {0: "reviewing", 1: "approved", 2: "rejected"}


def metadata_feeds(settings: Settings, client: AliyunClient, publish: Publish) -> list[Runnable]:
    """QuerySmsTemplate for SMS_ALIYUN_TEMPLATE_CODES and QuerySmsSign for SMS_ALIYUN_SIGN_NAMES, each
    when set, every SMS_METADATA_INTERVAL."""
    codes, signs = items(settings.sms_aliyun_template_codes), items(settings.sms_aliyun_sign_names)
    options = metadata_options(settings)
    feeds: list[Runnable] = []
    if codes:
        feeds.append(MetadataPull("aliyun.templates", lambda at: describe_templates(client, codes, at), publish,
                                  **options))
    if signs:
        feeds.append(MetadataPull("aliyun.signs", lambda at: describe_signs(client, signs, at), publish, **options))
    return feeds


async def describe_templates(client: AliyunClient, codes: Sequence[str], pulled_at_ms: int) -> list[TemplateInfo]:
    """One QuerySmsTemplate per code; a code the service refuses (e.g. unknown) is skipped."""
    out = []
    for code in codes:
        if (answer := await _described(client.query_sms_template, code)) is not None:
            out.append(template_info(answer, code, pulled_at_ms))
    return out


async def describe_signs(client: AliyunClient, names: Sequence[str], pulled_at_ms: int) -> list[SignInfo]:
    """One QuerySmsSign per sign name; a name the service refuses is skipped."""
    out = []
    for name in names:
        if (answer := await _described(client.query_sms_sign, name)) is not None:
            out.append(sign_info(answer, name, pulled_at_ms))
    return out


async def _described(call: Callable[[str], Any], key: str) -> dict[str, Any] | None:
    """The call's answer; None when the service answered with a business error (HTTP 200, Code not OK).
    A gateway error (a bad signature, an unknown key) or a transport failure raises: the feed backs off."""
    from sms_analytics.sources.aliyun.client import AliyunApiError

    try:
        answer: dict[str, Any] = await call(key)
    except AliyunApiError as exc:
        if exc.status != 200:
            raise
        log.warning("aliyun.metadata_refused", code=exc.code, request_id=exc.request_id)
        return None
    return answer


def template_info(answer: dict[str, Any], code: str, pulled_at_ms: int) -> TemplateInfo:
    raw_type, raw_status = answer.get("TemplateType"), answer.get("TemplateStatus")
    return TemplateInfo(provider="aliyun", template_code=str(answer.get("TemplateCode") or code),
                        name=str(answer.get("TemplateName") or ""), content=str(answer.get("TemplateContent") or ""),
                        template_type=code_of(TEMPLATE_TYPES, raw_type, "other"), raw_type=_text(raw_type),
                        status=code_of(REVIEW_STATUSES, raw_status, "unknown"), raw_status=_text(raw_status),
                        reason=str(answer.get("Reason") or ""), pulled_at_ms=pulled_at_ms)


def sign_info(answer: dict[str, Any], name: str, pulled_at_ms: int) -> SignInfo:
    raw_status = answer.get("SignStatus")
    return SignInfo(provider="aliyun", sign_name=str(answer.get("SignName") or name),
                    status=code_of(REVIEW_STATUSES, raw_status, "unknown"), raw_status=_text(raw_status),
                    reason=str(answer.get("Reason") or ""), pulled_at_ms=pulled_at_ms)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


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


# QuerySendStatistics IsGlobe: 1 国内 (domestic), 2 国际/港澳台 (international), in the row's app_id.
GLOBES = {1: "domestic", 2: "international"}
DAY_MS = 86_400_000


class AliyunStatistics(Feed):
    """QuerySendStatistics for yesterday and today (China time), both scopes, every interval: one
    ProviderStats row per scope and send date with `period_hours` 24 and `hour_ms` the day's start.
    A day's counts grow while its receipts come in, so it is pulled again until it is over (a later
    pull replaces the earlier row: ReplacingMergeTree by pulled_at). TotalCount is the request and
    success count (Alibaba counts only accepted sends), RespondedSuccessCount / RespondedFailCount the
    callbacks' successes and failures, their sum the callbacks; NoRespondedCount is what is left.
    Alibaba has no application id: a row's app_id is "<AccessKeyId>/domestic" or
    "<AccessKeyId>/international", so two accounts' rows do not replace each other."""

    name = "aliyun.statistics"

    def __init__(self, client: AliyunClient, access_key_id: str, publish: Publish, **kw: Any) -> None:
        kw.setdefault("interval", 60.0)
        super().__init__(publish, **kw)
        self.client, self.access_key_id = client, access_key_id

    async def poll(self) -> int:
        pulled_at = now_ms()
        today = datetime.fromtimestamp(pulled_at / 1000, tz=CHINA).date()
        start, end = (today - timedelta(days=1)).strftime("%Y%m%d"), today.strftime("%Y%m%d")
        rows: list[ProviderStats] = []
        for globe, scope in GLOBES.items():
            rows += [daily_stats(target, f"{self.access_key_id}/{scope}", pulled_at)
                     for target in await self.targets(globe, start, end)]
        if rows:
            await self.publish(rows, [], f"feed:{self.name}")
            self.stats.records += len(rows)
        return 0  # the same days again after the interval

    async def targets(self, globe: int, start: str, end: str) -> list[dict[str, Any]]:
        """Every TargetList entry, page by page (PageSize 50)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            data = (await self.client.query_send_statistics(globe, start, end, page_index=page)).get("Data") or {}
            found = [t for t in data.get("TargetList") or [] if isinstance(t, dict)]
            out += found
            if len(found) < 50 or len(out) >= int(data.get("TotalSize") or 0):
                return out
            page += 1


def daily_stats(target: dict[str, Any], app_id: str, pulled_at_ms: int) -> ProviderStats:
    """One TargetList entry (SendDate yyyyMMdd, China time) as a day of sms.provider_stats."""
    day = datetime.strptime(str(target.get("SendDate")), "%Y%m%d").replace(tzinfo=CHINA)
    total, success, fail = (_count(target, key) for key in ("TotalCount", "RespondedSuccessCount",
                                                            "RespondedFailCount"))
    return ProviderStats(provider="aliyun", app_id=app_id, hour_ms=int(day.timestamp() * 1000), period_hours=24,
                         request_count=total, request_success_count=total, fee_count=total,
                         callback_count=success + fail, callback_success_count=success, callback_fail_count=fail,
                         pulled_at_ms=pulled_at_ms)


def _count(doc: dict[str, Any], key: str) -> int:
    try:
        return max(0, int(doc.get(key) or 0))
    except (TypeError, ValueError):
        return 0
