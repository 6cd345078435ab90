"""streams/compensation.py without a broker: which pending messages are asked about, which states are
forgotten, and a scan over a store (requests sent once per interval, changes written per partition)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
import pytest
from yarl import URL

from sms_analytics.model.events import Delivery
from sms_analytics.settings import CompensationPolicy
from sms_analytics.streams import compensation
from sms_analytics.streams.compensation import due_for_compensation, scan, should_forget
from sms_analytics.streams.state import MessageStateStore, decode_changes, encode_state

MIN, HOUR = 60_000, 3_600_000
NOW = 1_700_000_000_000
POLICY = CompensationPolicy(after_ms=10 * MIN, interval_ms=30 * MIN, scan_seconds=1.0, forget_after_ms=72 * HOUR)


def pending(message_id: str = "m", *, provider: str = "aliyun", age_ms: int = 20 * MIN, **kw: Any) -> Delivery:
    fields: dict[str, Any] = {"has_send": True, **kw}
    return Delivery(provider=provider, message_id=message_id, phone="13800138000", phone_hash="h",
                    phone_masked="138****8000", carrier="mobile", country_code="86", sent_at_ms=NOW - age_ms, **fields)


@pytest.mark.parametrize("d, due", [
    (pending(), True),
    (pending(age_ms=5 * MIN), False),  # not yet SMS_COMPENSATE_AFTER
    (pending(age_ms=31 * 24 * HOUR), False),  # beyond what the providers' query looks back
    (pending(provider="kx"), False),  # KX has no per-message query
    (pending(status="delivered"), False),
    (pending(has_send=False), False),
    (pending(compensation_asked_ms=NOW - 10 * MIN), False),  # asked within the interval
    (pending(compensation_asked_ms=NOW - 30 * MIN), True),
])
def test_due_for_compensation(d: Delivery, due: bool) -> None:
    assert due_for_compensation(d, NOW, POLICY) is due


def test_should_forget_after_expiry_by_send_or_by_last_update() -> None:
    assert not should_forget(pending(age_ms=72 * HOUR), NOW, POLICY)
    assert should_forget(pending(age_ms=72 * HOUR + 1), NOW, POLICY)
    receipt_only = Delivery(provider="aliyun", message_id="r", phone="", phone_hash="h", phone_masked="",
                            carrier="", country_code="86", updated_at_ms=NOW - 73 * HOUR)
    assert should_forget(receipt_only, NOW, POLICY)


class _Sent:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return None


async def _done() -> None:
    return None


class _Changelog(_Sent):
    async def send(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return _done()


async def test_a_scan_asks_once_forgets_the_expired_and_writes_the_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compensation, "now_ms", lambda: NOW)
    app = faust.App("compensation-unit-test", broker="memory://", store="memory://")
    store = MessageStateStore(URL("memory://"), app, None, table_name="message_state")  # type: ignore[arg-type]
    store.put_encoded("due", encode_state(pending("due")), 1)
    store.put_encoded("young", encode_state(pending("young", age_ms=MIN)), 1)
    store.put_encoded("old", encode_state(pending("old", age_ms=80 * HOUR)), 2)
    streams = SimpleNamespace(store=store, stats=SimpleNamespace(forgotten=0, compensation_requests=0),
                              requests=_Sent(), table=SimpleNamespace(changelog_topic=_Changelog()))
    await scan(streams, POLICY)  # type: ignore[arg-type]
    assert [r["key"] for r in streams.requests.sent] == [b"due"]
    assert streams.stats.compensation_requests == 1 and streams.stats.forgotten == 1
    asked = store.get_state("due")
    assert asked is not None and asked.compensation_asked_ms == NOW
    assert store.get_state("old") is None and store.get_state("young") is not None
    written = {r["partition"]: decode_changes(r["value"]) for r in streams.table.changelog_topic.sent}
    assert written[1].keys == ["due"] and written[2].keys == ["old"] and written[2].states == [None]
    await scan(streams, POLICY)  # type: ignore[arg-type]
    assert len(streams.requests.sent) == 1  # asked within the interval: not again
