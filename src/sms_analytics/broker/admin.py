"""Topic creation: every pipeline topic with the same partition count (and so the same
partitioner input), so a message's send, receipts and delivery share a partition number."""

from __future__ import annotations

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from sms_analytics.model import topics

log = structlog.get_logger(__name__)


async def ensure_topics(bootstrap: str, partitions: int, replication: int) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics.ALL if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
            except TopicAlreadyExistsError:
                pass
            log.info("topics.created", topics=missing, partitions=partitions)
        return missing
    finally:
        await admin.close()
