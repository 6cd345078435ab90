"""Topic creation and the receivers' producer on both brokers (fresh ones per test): the pipeline's
topics get explicit configs, a topic that exists with another partition count than KAFKA_PARTITIONS
stops the start, and the producer is idempotent where the broker allows it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sms_analytics.broker.admin import (
    PartitionMismatch,
    ensure_topics,
    topic_config,
    topic_configs,
)
from sms_analytics.model import topics
from sms_analytics.runtime import Parts, Runtime
from sms_analytics.startup import SettingInvalid
from sms_analytics.streams.state import changelog_topic
from tests.conftest import pipeline_settings

pytestmark = pytest.mark.both_brokers
DAY_MS = 86_400_000


async def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def test_topics_are_created_with_their_retention(broker: str) -> None:
    created = await ensure_topics(broker, 4, 1, topic_configs(timedelta(days=3), timedelta(days=5)))
    assert sorted(created) == sorted(topics.ALL)
    for topic, days in ((topics.SENDS, 3), (topics.RECEIPTS, 3), (topics.DEADLETTER, 3), (topics.DELIVERIES, 5)):
        config = await topic_config(broker, topic)
        assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", str(days * DAY_MS)), topic
    assert await ensure_topics(broker, 4, 1) == []  # all there, with the same partition count: nothing to do


async def test_an_existing_topic_with_another_partition_count_is_refused(broker: str) -> None:
    await create(broker, topics.RECEIPTS, 2)
    with pytest.raises(PartitionMismatch, match=r"KAFKA_PARTITIONS=4 but sms\.receipts\.v1 has 2 partitions"):
        await ensure_topics(broker, 4, 1)
    assert await ensure_topics(broker, 2, 1)  # the others are created with the topics' count


async def test_the_pipeline_refuses_to_start_on_a_changelog_with_another_partition_count(
        broker: str, tmp_path: Path) -> None:
    """The join's changelog partitions are the source partitions: a changelog left with 8 partitions
    by an earlier KAFKA_PARTITIONS would recover the wrong states into each partition."""
    settings = pipeline_settings(tmp_path, kafka_bootstrap_servers=broker, sms_app_id="mismatch")
    await create(broker, changelog_topic("mismatch"), 8)
    runtime = Runtime(settings, Parts(receiver=False, sink=False, query=False))
    try:
        with pytest.raises(SettingInvalid, match="message_state-changelog has 8 partitions") as refused:
            await runtime.start()
        assert refused.value.line().startswith("error: KAFKA_PARTITIONS=4: ")  # what the command prints, exit 2
    finally:
        await runtime.stop()


async def test_the_publisher_is_idempotent_where_the_broker_grants_a_producer_id(
        broker: str, broker_kind: str) -> None:
    """Undecided (KAFKA_IDEMPOTENT_PRODUCER unset), the receivers' producer is idempotent on Apache
    Kafka and falls back to a plain one on Tansu, which refuses InitProducerId; either way it publishes."""
    from sms_analytics.model.events import SendEvent
    from sms_analytics.sources.producer import Publisher

    await ensure_topics(broker, 4, 1)
    publisher = Publisher(broker, idempotent=None)
    await publisher.start()
    try:
        assert publisher._idempotent is (broker_kind == "apache")
        assert (publisher._connected()._txn_manager is not None) is (broker_kind == "apache")
        send = SendEvent(provider="aliyun", message_id="idem-1", phone="+8613900001111", phone_hash="h",
                         phone_masked="139****1111", carrier="", country_code="86", sent_at_ms=1_700_000_000_000,
                         received_at_ms=1_700_000_000_000)
        await publisher.publish([send], [], "test")
    finally:
        await publisher.stop()




def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A random cluster id is URL-safe base64 and starts with '-' one time in 64: Kafka's StorageTool
    must not read it as an option (it did: `format -t -qy3h…` failed a test session's node)."""
    from sms_analytics.broker import apache
    from tests.conftest import apache_missing

    if apache_missing():
        pytest.skip(f"Apache Kafka: {apache_missing()}")
    java = apache.java_binary()
    assert java is not None
    monkeypatch.setattr(apache, "new_cluster_id", lambda: "-qy3hT4aQ2KEOEi5E3JXtA")
    properties = apache.write_properties(tmp_path / "server.properties", apache.node_properties(
        "127.0.0.1", apache.free_port(), apache.free_port(), tmp_path / "data"))
    assert apache.format_storage(java, apache.fetch_libs(apache.kafka_version(), None), properties) == "-qy3hT4aQ2KEOEi5E3JXtA"
    assert "cluster.id=-qy3hT4aQ2KEOEi5E3JXtA" in (tmp_path / "data" / "meta.properties").read_text()
