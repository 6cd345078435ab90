"""Compensation: the stream asks (topic sms.compensation.v1) about messages still pending after
SMS_COMPENSATE_AFTER; this feed hands each question to its provider's query (an `Ask`, from the
provider's `FeedSet`: Alibaba QuerySendDetails in `aliyun/feeds.py`, Tencent
PullSmsSendStatusByPhoneNumber with PullSmsReplyStatusByPhoneNumber in `tencent/feeds.py`) and
publishes what it answers: receipts, and for Tencent the replies of the number too.
Offsets are committed after the answers are published; the feed's rate limit keeps within the
providers' API limits. A question about a provider without a query is skipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer

from sms_analytics.model import topics
from sms_analytics.model.events import CompensationRequest, decode_compensation
from sms_analytics.sources.base.feed import Ask, Feed, Publish
from sms_analytics.sources.base.fields import Parsed


class Compensator(Feed):
    name = "compensation"

    def __init__(self, bootstrap: str, group: str, publish: Publish, *, askers: Mapping[str, Ask], **kw: Any) -> None:
        super().__init__(publish, **kw)
        self.askers = dict(askers)  # provider name -> its query
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
        ask = self.askers.get(request.provider)
        return await ask(request) if ask is not None else Parsed()

    async def close(self) -> None:
        if self._started:
            await self.consumer.stop()

    async def run(self, stop: Any) -> None:
        try:
            await super().run(stop)
        finally:
            await self.close()
