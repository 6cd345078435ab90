"""Topic creation: every pipeline topic with the same partition count (and so the same
partitioner input), so a message's send, receipts and delivery share a partition number.

Topics are created with explicit configs (time retention, cleanup.policy=delete), not the broker's
defaults; a topic that already exists with another partition count stops the start
(`PartitionMismatch`): its messages would hash to other partitions than their receipts' or their
state's, and the join would silently miss them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import timedelta

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from sms_analytics.model import topics

log = structlog.get_logger(__name__)

# A producer batch, as the broker receives it, must stay within the topic's max.message.bytes:
# Apache Kafka's default is 1,048,588 bytes and it refuses a larger batch whole
# (MessageSizeTooLargeError; the embedded Tansu does not check). Every producer of the pipeline
# keeps its batches below it; a record itself stays far below (RECORD_ITEMS, MAX_BATCH_EVENTS).
MAX_BATCH_BYTES = 1_000_000

INPUTS = (topics.SENDS, topics.RECEIPTS, topics.REPLIES, topics.PROVIDER_STATS, topics.DEADLETTER)
OUTPUTS = (topics.DELIVERIES, topics.ALERTS, topics.COMPENSATION)
TopicConfigs = Mapping[str, Mapping[str, str]]


class PartitionMismatch(RuntimeError):
    """A pipeline topic exists with another partition count than KAFKA_PARTITIONS."""


def retention_configs(retention: timedelta) -> dict[str, str]:
    """A topic that expires by time (never compacted)."""
    return {"cleanup.policy": "delete", "retention.ms": str(int(retention.total_seconds() * 1000))}


def topic_configs(input_retention: timedelta, output_retention: timedelta) -> dict[str, dict[str, str]]:
    """The configs of every pipeline topic: what the receivers write, and what the worker writes."""
    return {**{t: retention_configs(input_retention) for t in INPUTS},
            **{t: retention_configs(output_retention) for t in OUTPUTS}}


async def ensure_topics(bootstrap: str, partitions: int, replication: int, configs: TopicConfigs | None = None,
                        check: Iterable[str] = ()) -> list[str]:
    """Create the missing pipeline topics (with `configs` per topic); raise PartitionMismatch when
    an existing one, or one of `check` (e.g. the join's changelog), has another partition count.
    Returns the topics created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [t for t in (*topics.ALL, *check) if t in existing]
        if present:
            refuse_mismatch(await partition_counts(admin, present), partitions)
        missing = [t for t in topics.ALL if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([new_topic(t, partitions, replication, configs) for t in missing])
            log.info("topics.created", topics=missing, partitions=partitions)
        return missing
    finally:
        await admin.close()


def new_topic(name: str, partitions: int, replication: int, configs: TopicConfigs | None) -> NewTopic:
    return NewTopic(name, partitions, replication, topic_configs=dict((configs or {}).get(name, {})))


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names) if not t["error_code"]}


def refuse_mismatch(counts: Mapping[str, int], partitions: int) -> None:
    wrong = {t: n for t, n in counts.items() if n != partitions}
    if wrong:
        found = ", ".join(f"{t} has {n}" for t, n in sorted(wrong.items()))
        raise PartitionMismatch(
            f"KAFKA_PARTITIONS={partitions} but {found} partitions: a message's send, receipts and state must "
            "share a partition number, so the pipeline does not start. Set KAFKA_PARTITIONS to the topics' "
            "count, or recreate the topics (after the sink has written what they hold).")


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """A topic's configuration as the broker reports it (name -> value)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    return {entry[0]: entry[1] for response in responses for resource in response.resources
            for entry in resource[4]}
