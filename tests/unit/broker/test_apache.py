"""broker.apache: the node's properties, the cluster id, the pom's version and missing_tools with
stand-in java binaries (no JVM started)."""

from __future__ import annotations

import base64
import re
import stat

import pytest

from sms_analytics.broker import apache


def test_node_properties(tmp_path):
    props = apache.node_properties("127.0.0.1", 9092, 9093, tmp_path / "data")
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert set(apache.NODE_SETTINGS) < set(props)


def test_write_properties(tmp_path):
    path = apache.write_properties(tmp_path / "server.properties", {"a": "1", "b.c": "x=y"})
    assert path == tmp_path / "server.properties"
    assert path.read_text() == "a=1\nb.c=x=y\n"


def test_new_cluster_id_shape():
    ids = {apache.new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_kafka_version_from_pom(tmp_path):
    assert re.fullmatch(r"\d+\.\d+\.\d+", apache.kafka_version())
    assert apache.kafka_version().split(".")[0] >= "4"
    pom = tmp_path / "pom.xml"
    pom.write_text("<project><properties><kafka.version> 3.9.0 </kafka.version></properties></project>")
    assert apache.kafka_version(pom) == "3.9.0"
    pom.write_text("<project/>")
    with pytest.raises(ValueError, match=r"no <kafka\.version>"):
        apache.kafka_version(pom)


def test_libs_dir_and_cache(tmp_path, monkeypatch):
    assert apache.libs_dir("4.0.0", tmp_path) == tmp_path / "4.0.0" / "libs"
    monkeypatch.setenv("SMS_KAFKA_CACHE", str(tmp_path / "c"))
    assert apache.default_cache() == tmp_path / "c"
    monkeypatch.delenv("SMS_KAFKA_CACHE")
    assert apache.default_cache().parts[-2:] == (".cache", "apache-kafka")


def fake_java(folder, version_line):
    folder.mkdir(parents=True, exist_ok=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


@pytest.mark.parametrize("line, major", [('openjdk version "17.0.15" 2025-04-15', 17),
                                              ('java version "1.8.0_402"', 8),
                                              ('openjdk version "21" 2023-09-19', 21),
                                              ("no version here", 0)])
def test_java_major(tmp_path, line, major):
    assert apache.java_major(str(fake_java(tmp_path, line))) == major


def test_missing_tools_without_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert apache.java_binary() is None
    assert apache.missing_tools() == "no java on PATH (nor $JAVA_HOME)"


def test_missing_tools_old_java(monkeypatch, tmp_path):
    home = tmp_path / "jdk8"
    java = fake_java(home / "bin", 'java version "1.8.0_402"')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert apache.java_binary() == str(java)
    assert apache.missing_tools() == f"{java} is Java 8; Kafka {apache.kafka_version()} needs 17 or newer"


def test_missing_tools_no_mvn_then_cached_jars(monkeypatch, tmp_path):
    java = fake_java(tmp_path / "bin", 'openjdk version "17.0.15"')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("SMS_KAFKA_CACHE", str(tmp_path / "cache"))
    assert apache.java_binary() == str(java)
    assert apache.missing_tools() == "no mvn on PATH to fetch the Kafka jars"
    libs = apache.libs_dir()
    libs.mkdir(parents=True)
    (libs / ".complete").write_text(apache.kafka_version())
    assert apache.missing_tools() is None
    assert apache.fetch_libs() == libs


def test_fetch_libs_without_mvn(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(apache.KafkaUnavailable, match="no mvn"):
        apache.fetch_libs("4.1.1", tmp_path)


def test_broker_without_process():
    broker = apache.ApacheKafkaBroker(port=1, controller_port=2)
    assert broker.bootstrap == "127.0.0.1:1"
    assert broker.log_file is None
    assert broker.version == apache.kafka_version()
    broker.stop()
    assert broker.alive is False
