"""sources/producer.py: the partitioner's murmur hash (from tests/test_model.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st


@given(st.binary(max_size=200))
def test_partitioner_matches_kafkas_murmur2(key: bytes) -> None:
    """The receivers' murmur2 gives the partitions of Kafka's default partitioner (aiokafka's copy)."""
    from aiokafka.partitioner import murmur2

    from sms_analytics.sources.producer import murmur2_fast, partition_of

    assert murmur2_fast(key) & 0x7FFFFFFF == murmur2(key) & 0x7FFFFFFF
    assert partition_of(key, 12) == (murmur2(key) & 0x7FFFFFFF) % 12
