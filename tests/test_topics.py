"""Topic creation on both brokers (fresh ones per test): the pipeline's topics get explicit configs,
and a topic that exists with another partition count than KAFKA_PARTITIONS stops the start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sms_analytics.broker.admin import (
    PartitionMismatch,
    ensure_topics,
    topic_config,
    topic_configs,
)
from sms_analytics.model import topics
from sms_analytics.runtime import Parts, Runtime
from sms_analytics.streams.state import changelog_topic
from tests.conftest import pipeline_settings, start_broker

pytestmark = pytest.mark.both_brokers
DAY_MS = 86_400_000


@pytest_asyncio.fixture
async def bootstrap(broker_kind: str) -> AsyncIterator[str]:
    broker = await start_broker(broker_kind)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def test_topics_are_created_with_their_retention(bootstrap: str) -> None:
    created = await ensure_topics(bootstrap, 4, 1, topic_configs(timedelta(days=3), timedelta(days=5)))
    assert sorted(created) == sorted(topics.ALL)
    for topic, days in ((topics.SENDS, 3), (topics.RECEIPTS, 3), (topics.DEADLETTER, 3), (topics.DELIVERIES, 5)):
        config = await topic_config(bootstrap, topic)
        assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", str(days * DAY_MS)), topic
    assert await ensure_topics(bootstrap, 4, 1) == []  # all there, with the same partition count: nothing to do


async def test_an_existing_topic_with_another_partition_count_is_refused(bootstrap: str) -> None:
    await create(bootstrap, topics.RECEIPTS, 2)
    with pytest.raises(PartitionMismatch, match=r"KAFKA_PARTITIONS=4 but sms\.receipts\.v1 has 2 partitions"):
        await ensure_topics(bootstrap, 4, 1)
    assert await ensure_topics(bootstrap, 2, 1)  # the others are created with the topics' count


async def test_the_pipeline_refuses_to_start_on_a_changelog_with_another_partition_count(
        bootstrap: str, tmp_path: Path) -> None:
    """The join's changelog partitions are the source partitions: a changelog left with 8 partitions
    by an earlier KAFKA_PARTITIONS would recover the wrong states into each partition."""
    settings = pipeline_settings(tmp_path, kafka_bootstrap_servers=bootstrap, sms_app_id="mismatch")
    await create(bootstrap, changelog_topic("mismatch"), 8)
    runtime = Runtime(settings, Parts(receiver=False, sink=False, query=False))
    try:
        with pytest.raises(PartitionMismatch, match="message_state-changelog has 8 partitions"):
            await runtime.start()
    finally:
        await runtime.stop()
