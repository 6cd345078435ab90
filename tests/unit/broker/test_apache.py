"""Split from test_topics.py (its tests that need no running component)."""

from __future__ import annotations

from pathlib import Path
import pytest

pytestmark = pytest.mark.both_brokers


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
