"""broker/admin.py without a broker: the topics' retention configs and the partition-count check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sms_analytics.broker.admin import (
    INPUTS,
    OUTPUTS,
    PartitionMismatch,
    new_topic,
    refuse_mismatch,
    retention_configs,
    topic_configs,
)
from sms_analytics.model import topics


def test_retention_configs_expire_by_time() -> None:
    assert retention_configs(timedelta(days=3)) == {"cleanup.policy": "delete", "retention.ms": str(3 * 86_400_000)}


def test_topic_configs_cover_every_pipeline_topic() -> None:
    configs = topic_configs(timedelta(hours=1), timedelta(hours=2))
    assert set(configs) == {*INPUTS, *OUTPUTS}
    assert set(INPUTS).isdisjoint(OUTPUTS)
    assert configs[topics.SENDS]["retention.ms"] == "3600000"
    assert configs[topics.DELIVERIES]["retention.ms"] == "7200000"


def test_new_topic_takes_its_configs() -> None:
    topic = new_topic(topics.SENDS, 4, 1, {topics.SENDS: {"retention.ms": "1"}})
    assert (topic.name, topic.num_partitions, topic.replication_factor) == (topics.SENDS, 4, 1)
    assert topic.topic_configs == {"retention.ms": "1"}
    assert new_topic("other", 2, 1, None).topic_configs == {}


def test_refuse_mismatch_names_every_wrong_topic() -> None:
    refuse_mismatch({topics.SENDS: 4, topics.RECEIPTS: 4}, 4)
    with pytest.raises(PartitionMismatch) as refused:
        refuse_mismatch({"b": 2, "a": 8, "c": 4}, 4)
    assert "KAFKA_PARTITIONS=4 but a has 8, b has 2 partitions" in str(refused.value)
