"""Apache Kafka as a single KRaft node (broker and controller in one JVM) on loopback: the tests'
real broker beside the embedded Tansu one.

The jars come from Maven Central through `apache-kafka.pom.xml` beside this file (one dependency,
`org.apache.kafka:kafka_2.13`), copied once into a git-ignored cache folder keyed by the version
(`.cache/apache-kafka/<version>/libs` of the source tree, or $SMS_KAFKA_CACHE). Each start formats
fresh storage in a temporary folder with Kafka's StorageTool, then runs `kafka.Kafka` with a small
heap; `ApacheKafkaBroker.start()` returns once the broker answers a metadata request, as the
embedded broker's does, and `stop()` ends it and removes its storage.

Like the embedded broker, the JVM dies with the process that started it (PR_SET_PDEATHSIG).
The settings that are not addresses (`NODE_SETTINGS`) are docker-compose.yml's kafka service's
too (tests/test_compose.py checks that they agree, and the image's version).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import structlog

from sms_analytics.broker.embedded import (
    BrokerProcess,
    _die_with_parent,
    end_process,
    free_port,
    wait_for_broker,
)

log = structlog.get_logger(__name__)

POM = Path(__file__).with_name("apache-kafka.pom.xml")
HEAP = ("-Xms256m", "-Xmx512m")
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
MIN_JAVA = 17  # Kafka 4 brokers need Java 17 or newer

# The node's settings besides its addresses and storage: the same in docker-compose.yml.
NODE_SETTINGS: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",  # every topic is created with its configs (broker/admin.py, faust)
}


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or the jars cannot be fetched: Apache Kafka cannot run here."""


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version the pom fetches (its `kafka.version` property)."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:
        raise ValueError(f"no <kafka.version> in {pom}")
    return match.group(1)


def default_cache() -> Path:
    """$SMS_KAFKA_CACHE, else `.cache/apache-kafka` at the top of the source tree."""
    configured = os.environ.get("SMS_KAFKA_CACHE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / ".cache" / "apache-kafka"


def java_binary() -> str | None:
    """$JAVA_HOME/bin/java if set, else `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_major(java: str) -> int:
    """The major version of a Java runtime (`java -version` prints e.g. `openjdk version "17.0.15"`)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def missing_tools() -> str | None:
    """Why Apache Kafka cannot run here (no java, too old a java, no mvn and no cached jars), or None."""
    java = java_binary()
    if java is None:
        return "no java on PATH (nor $JAVA_HOME)"
    major = java_major(java)
    if major < MIN_JAVA:
        return f"{java} is Java {major}; Kafka {kafka_version()} needs {MIN_JAVA} or newer"
    if not _complete(libs_dir()) and shutil.which("mvn") is None:
        return "no mvn on PATH to fetch the Kafka jars"
    return None


def libs_dir(version: str | None = None, cache: Path | None = None) -> Path:
    return (cache or default_cache()) / (version or kafka_version()) / "libs"


def _complete(libs: Path) -> bool:
    return (libs / ".complete").exists()


def fetch_libs(version: str | None = None, cache: Path | None = None, timeout: float = 600.0) -> Path:
    """The folder of Kafka's runtime jars, fetched with Maven on first use. The copy goes to a
    temporary folder renamed into place, so concurrent or interrupted fetches never leave half a
    classpath behind."""
    version = version or kafka_version()
    libs = libs_dir(version, cache)
    if _complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("no mvn on PATH to fetch the Kafka jars")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    started = time.monotonic()
    try:
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}", "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise KafkaUnavailable(f"mvn could not fetch Kafka {version}: {(done.stdout + done.stderr)[-2000:]}")
        (staging / ".complete").write_text(version)
        try:
            staging.rename(libs)
        except OSError:  # another process finished first
            if not _complete(libs):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("apache_kafka.fetched", version=version, seconds=round(time.monotonic() - started, 1))
    return libs


def node_properties(host: str, port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """server.properties of a one-node KRaft cluster: clients on `port`, the controller on `controller_port`."""
    return {
        **NODE_SETTINGS,
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "log.dirs": str(log_dir),
    }


def write_properties(path: Path, properties: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    return path


def new_cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` prints it (a random UUID, URL-safe base64 without
    padding), made here: one JVM start less per node."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def format_storage(java: str, libs: Path, properties: Path, timeout: float = 120.0) -> str:
    """Format the node's storage with a new cluster id (Kafka's StorageTool); returns the id."""
    cluster_id = new_cluster_id()
    subprocess.run([java, "-Xmx128m", *JVM_OPTIONS, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
                    f"--cluster-id={cluster_id}", "-c", str(properties)], capture_output=True, text=True, timeout=timeout,
                   check=True)
    return cluster_id


def spawn_node(java: str, libs: Path, properties: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """Start `kafka.Kafka`, its output in log_file; it gets SIGKILL when this thread dies."""
    with log_file.open("wb") as out:
        return subprocess.Popen(
            [java, *HEAP, *JVM_OPTIONS, "-cp", f"{libs}/*", "kafka.Kafka", str(properties)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=properties.parent,
            start_new_session=True,  # a Ctrl-C of the terminal goes to the tests, which stop it in order
            preexec_fn=partial(_die_with_parent, os.getpid()),  # prctl only, as embedded.py
        )


@dataclass
class ApacheKafkaBroker(BrokerProcess):
    """One Apache Kafka KRaft node on free loopback ports, with fresh storage (removed on stop)."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    version: str = field(default_factory=kafka_version)
    cache: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    started_seconds: float = 0.0  # from the storage format to the first metadata answer

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path | None:
        return self.workdir / "kafka.log" if self.workdir else None

    async def start(self, timeout: float = 90.0) -> str:
        reason = missing_tools()
        if reason is not None:
            raise KafkaUnavailable(reason)
        java = java_binary()
        assert java is not None
        libs = fetch_libs(self.version, self.cache)
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        properties = write_properties(self.workdir / "server.properties",
                                      node_properties(self.host, self.port, self.controller_port, self.workdir / "data"))
        format_storage(java, libs, properties)
        self.process = spawn_node(java, libs, properties, self.workdir / "kafka.log")
        log.info("apache_kafka.starting", bootstrap=self.bootstrap, pid=self.process.pid, version=self.version)
        try:
            await wait_for_broker(self.bootstrap, timeout)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began
        log.info("apache_kafka.ready", bootstrap=self.bootstrap, seconds=round(self.started_seconds, 2))
        return self.bootstrap

    def stop(self, timeout: float = 20.0, *, kill: bool = False) -> None:
        """End the node (SIGTERM: a controlled shutdown) and remove its storage."""
        proc, self.process = self.process, None
        if end_process(proc, timeout, kill=kill):
            log.info("apache_kafka.stopped", bootstrap=self.bootstrap)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
