"""Compensation: the stream asks (topic sms.compensation.v1) about messages still pending after
SMS_COMPENSATE_AFTER; this feed asks the provider and publishes what it answers as receipts.
Alibaba: QuerySendDetails by PhoneNumber + SendDate + BizId (seed 000 §8.1, PageSize ≤ 50).
Tencent: PullSmsSendStatusByPhoneNumber from the send time (seed 002). Offsets are committed
after the answers are published; the feed's rate limit keeps within the provider's API limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from aiokafka import AIOKafkaConsumer

from sms_analytics.model import topics
from sms_analytics.model.events import CompensationRequest, decode_compensation
from sms_analytics.model.times import CHINA, now_ms
from sms_analytics.sources.aliyun.parsers import Aliyun
from sms_analytics.sources.base.fields import Parsed
from sms_analytics.sources.base.feed import Feed, Publish
from sms_analytics.sources.tencent.parsers import Tencent


class Compensator(Feed):
    name = "compensation"

    def __init__(self, bootstrap: str, group: str, publish: Publish, *, aliyun: tuple[Any, Aliyun] | None = None,
                 tencent: tuple[Any, Sequence[str], Tencent] | None = None, **kw: Any) -> None:
        super().__init__(publish, **kw)
        self.aliyun, self.tencent = aliyun, tencent
        self.consumer = AIOKafkaConsumer(topics.COMPENSATION, bootstrap_servers=bootstrap, group_id=group,
                                         enable_auto_commit=False, auto_offset_reset="earliest",
                                         session_timeout_ms=6000, heartbeat_interval_ms=1000)
        self._started = False
        self.answered = 0

    async def poll(self) -> int:
        if not self._started:
            await self.consumer.start()
            self._started = True
        batches = await self.consumer.getmany(timeout_ms=200, max_records=20)
        handled = 0
        for records in batches.values():
            for record in records:
                await self.limiter.wait()
                parsed = await self.ask(decode_compensation(record.value))
                handled += 1
                if parsed.events or parsed.rejected:
                    self.answered += len(parsed.events)
                    await self.publish_parsed(parsed)
        if batches:
            await self.consumer.commit()
        return handled

    async def ask(self, request: CompensationRequest) -> Parsed:
        if request.provider == "aliyun" and self.aliyun is not None:
            client, provider = self.aliyun
            send_date = datetime.fromtimestamp(request.sent_at_ms / 1000, tz=CHINA).strftime("%Y%m%d")
            national = request.phone.removeprefix("+86")
            answer = await client.query_send_details(national, send_date, biz_id=request.message_id, page_size=50)
            dtos = answer.get("SmsSendDetailDTOs") or {}
            details = dtos.get("SmsSendDetailDTO", []) if isinstance(dtos, dict) else dtos
            return provider.queried(list(details), request.message_id, now_ms())
        if request.provider == "tencent" and self.tencent is not None:
            client, app_ids, provider = self.tencent
            statuses: list[Any] = []
            for app_id in app_ids:
                found = await client.pull_send_status_by_phone(app_id, request.phone, request.sent_at_ms // 1000 - 60,
                                                               None, 0, 100)
                statuses += [s for s in found if isinstance(s, dict) and s.get("SerialNo") == request.message_id]
            return provider.pulled_statuses(statuses, now_ms())
        return Parsed()

    async def close(self) -> None:
        if self._started:
            await self.consumer.stop()

    async def run(self, stop: Any) -> None:
        try:
            await super().run(stop)
        finally:
            await self.close()
