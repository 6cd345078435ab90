"""faust's recovery of the join's batch changelog on both brokers: a worker that starts on a
changelog of 20,000 states (ChangeBatch records of 500, streams/state.py) holds every one of them
before it joins anything. Apache Kafka reports the true log end; the embedded Tansu reports the
last batch's first offset + 1, which `seed_changelog`'s trailing record per partition makes up for."""

from __future__ import annotations

from pathlib import Path

import pytest

from sms_analytics.model.events import Delivery
from sms_analytics.model.times import now_ms
from sms_analytics.runtime import Parts, Runtime
from sms_analytics.sources.producer import partition_of
from sms_analytics.streams.state import (
    changelog_retention,
    changelog_topic,
    encode_state,
    seed_changelog,
)
from tests.conftest import pipeline_settings

pytestmark = pytest.mark.both_brokers
STATES = 20_000


def pending_states(count: int, partitions: int) -> dict[int, list[tuple[str, bytes]]]:
    """Sends without a receipt yet, by the partition of their message key."""
    now = now_ms()
    out: dict[int, list[tuple[str, bytes]]] = {p: [] for p in range(partitions)}
    for i in range(count):
        phone = f"+86139{i:08d}"
        key = f"aliyun|rec-{i}|{phone}"
        state = Delivery(provider="aliyun", message_id=f"rec-{i}", phone=phone, phone_hash=f"h{i}",
                         phone_masked="139****0000", carrier="", country_code="86", has_send=True,
                         sent_at_ms=now, outcome_at_ms=now, updated_at_ms=now)
        out[partition_of(key.encode(), partitions)].append((key, encode_state(state)))
    return out


async def test_a_worker_recovers_every_state_of_the_batch_changelog(broker: str, tmp_path: Path) -> None:
    settings = pipeline_settings(tmp_path, kafka_bootstrap_servers=broker, sms_app_id="recovery")
    states = pending_states(STATES, settings.kafka_partitions)
    await seed_changelog(broker, changelog_topic("recovery"), settings.kafka_partitions, 1, states,
                         changelog_retention(settings.sms_expire_after))
    runtime = Runtime(settings, Parts(receiver=False, sink=False, query=False))
    try:
        await runtime.start()
        await runtime.wait_ready(timeout=60)
        recovered = {key: partition for key, partition, _ in runtime._state_rows()}
    finally:
        await runtime.stop()
    assert len(recovered) == STATES
    assert all(recovered[key] == p for p, rows in states.items() for key, _ in rows)  # each in its own partition
