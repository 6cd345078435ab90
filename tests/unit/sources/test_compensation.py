"""sources.compensation: the Compensator hands a request to its provider's asker (no broker:
the consumer is built but never started)."""

from __future__ import annotations

from typing import Any

from sms_analytics.model import topics
from sms_analytics.model.events import CompensationRequest
from sms_analytics.sources.base.fields import Parsed
from sms_analytics.sources.compensation import Compensator


async def _publish(events, rejected, origin):
    raise AssertionError("nothing is published by ask()")


def request(provider):
    return CompensationRequest(provider=provider, message_id="m1", phone="+8613800000000",
                               sent_at_ms=1000, asked_at_ms=2000)


async def test_ask_routes_to_provider_query():
    asked = []
    answer = Parsed()

    async def aliyun(req):
        asked.append(req)
        return answer

    feed = Compensator("127.0.0.1:1", "g", _publish, askers={"aliyun": aliyun}, rate=0)
    try:
        assert feed.name == "compensation"
        got = await feed.ask(request("aliyun"))
        assert got is answer
        assert [r.message_id for r in asked] == ["m1"]
        assert feed.answered == 0
    finally:
        await feed.close()


async def test_ask_without_query_is_empty():
    feed = Compensator("127.0.0.1:1", "g", _publish, askers={})
    try:
        got = await feed.ask(request("kx"))
        assert got.events == []
        assert got.rejected == []
    finally:
        await feed.close()
        assert feed._started is False


async def test_askers_copied_and_topic():
    askers: dict[str, Any] = {}
    feed = Compensator("127.0.0.1:1", "g", _publish, askers=askers)
    askers["late"] = None
    assert feed.askers == {}
    assert topics.COMPENSATION == "sms.compensation.v1"
