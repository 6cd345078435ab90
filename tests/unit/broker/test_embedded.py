"""broker.embedded: free_port, resident_bytes and end_process on a `sleep` child (no broker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from sms_analytics.broker.embedded import EmbeddedBroker, end_process, free_port, resident_bytes


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_resident_bytes_of_self_and_of_nothing():
    assert resident_bytes(os.getpid()) > 1024 * 1024
    assert resident_bytes(2**22 + 12345) == 0  # above pid_max's default: no such process


def test_end_process_none_and_finished():
    assert end_process(None, 1.0) is False
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert end_process(proc, 1.0) is False


def test_end_process_terminates_a_running_child():
    proc = subprocess.Popen(["sleep", "30"])
    assert end_process(proc, 5.0) is True
    assert proc.returncode == -signal.SIGTERM


def test_end_process_kill():
    proc = subprocess.Popen(["sleep", "30"])
    assert end_process(proc, 5.0, kill=True) is True
    assert proc.returncode == -signal.SIGKILL


def test_end_process_kills_a_child_ignoring_sigterm():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; sleep 30 & wait"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    assert end_process(proc, 0.5) is True
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()


def test_broker_without_process():
    broker = EmbeddedBroker(port=1234)
    assert broker.bootstrap == "127.0.0.1:1234"
    assert broker.alive is False
    assert broker.resident_bytes == 0
    broker.stop()  # nothing to end
    assert broker.process is None


def test_broker_process_alive_then_stopped():
    broker = EmbeddedBroker(port=1234, process=subprocess.Popen(["sleep", "30"]))
    try:
        assert broker.alive is True
        assert broker.resident_bytes > 0
    finally:
        broker.stop(timeout=5.0)
    assert broker.process is None
    assert broker.alive is False
