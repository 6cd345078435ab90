"""Start-up errors as a user meets them: the real CLI (`up`, `worker`, `sink`, `receiver`, `sql`) run
as a process against a Kafka broker or a ClickHouse server that cannot be reached (a closed port on
127.0.0.1), or with an invalid setting. Each exits with code 2 and one plain line naming the setting,
the address without its credentials and the cause; no traceback unless SMS_LOG_LEVEL=DEBUG. With
SMS_STARTUP_WAIT_SECONDS it first waits, one structured log line per attempt; a broker that comes up
within the wait is simply used."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from sms_analytics.broker.admin import ensure_topics
from sms_analytics.broker.embedded import EmbeddedBroker, free_port
from tests.conftest import HASH_KEY, TOKEN, eventually

pytestmark = pytest.mark.timeout(120)

CLI = str(Path(sys.executable).with_name("sms-analytics"))
SECRET = "s3cret-pw"
COMMANDS = ["up", "worker", "sink", "receiver", "sql"]
KAFKA_COMMANDS = ["up", "worker", "sink", "receiver"]  # `sql` never opens the broker
WAREHOUSE_COMMANDS = ["up", "worker", "sink", "sql"]  # the receiver never opens the warehouse
SMALL_WAIT = 3.0


@dataclass(frozen=True)
class Ran:
    code: int
    out: str  # stdout and stderr, interleaved as written
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def argv(command: str) -> list[str]:
    return [CLI, "sql", "SELECT 1"] if command == "sql" else [CLI, command]


def environment(tmp: Path, **settings: str) -> dict[str, str]:
    """The process environment without any setting of the caller's, on free ports of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "KAFKA_", "CLICKHOUSE_"))}
    env.update(SMS_DATA_DIR=str(tmp / "data"), SMS_HTTP_PORT=str(free_port()), SMS_QUERY_PORT=str(free_port()),
               SMS_CALLBACK_TOKEN=TOKEN, SMS_PHONE_HASH_KEY=HASH_KEY, SMS_APP_ID=f"startup-{tmp.name}")
    env.update(settings)
    return env


def run(command: str, tmp: Path, **settings: str) -> Ran:
    started = time.monotonic()
    done = subprocess.run(argv(command), env=environment(tmp, **settings), cwd=tmp, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=90, check=False)
    return Ran(done.returncode, done.stdout, time.monotonic() - started)


def unreachable_warehouse() -> str:
    return f"http://sms:{SECRET}@127.0.0.1:{free_port()}"


def assert_one_line(ran: Ran, setting: str, address: str) -> str:
    """Exit code 2, and the whole output is one plain line: the setting, the address, no secret."""
    assert ran.code == 2, ran.out
    assert len(ran.lines) == 1, ran.out
    line = ran.lines[0]
    assert line.startswith(f"error: {setting}") and address in line, line
    assert SECRET not in ran.out and "Traceback" not in ran.out, ran.out
    return line


@pytest_asyncio.fixture(scope="module")
async def broker() -> AsyncIterator[str]:
    """A reachable broker with the topics made: the warehouse cases get past the broker quietly."""
    embedded = EmbeddedBroker()
    bootstrap = await embedded.start()
    await ensure_topics(bootstrap, 4, 1)
    yield bootstrap
    embedded.stop()


@pytest.mark.parametrize("command", KAFKA_COMMANDS)
def test_unreachable_kafka_one_line_at_once(command: str, tmp_path: Path) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    ran = run(command, tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka, CLICKHOUSE_URL=unreachable_warehouse(),
              SMS_STARTUP_WAIT_SECONDS="0")
    line = assert_one_line(ran, "KAFKA_BOOTSTRAP_SERVERS", kafka)
    assert "the Kafka broker cannot be reached: connection refused" in line, line
    print(f"\n{command}: {line}")


@pytest.mark.parametrize("command", WAREHOUSE_COMMANDS)
def test_unreachable_clickhouse_one_line_at_once(command: str, broker: str, tmp_path: Path) -> None:
    url = unreachable_warehouse()
    address = url.rpartition("@")[2]
    ran = run(command, tmp_path, KAFKA_BOOTSTRAP_SERVERS=broker, CLICKHOUSE_URL=url, SMS_STARTUP_WAIT_SECONDS="0")
    line = assert_one_line(ran, "CLICKHOUSE_URL", f"http://***@{address}")
    assert "the warehouse cannot be reached: connection refused" in line, line
    print(f"\n{command}: {line}")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_invalid_setting_fails_at_once_without_waiting(command: str, tmp_path: Path) -> None:
    if command == "sql":
        setting, value = "CLICKHOUSE_URL", f"http://sms:{SECRET}@127.0.0.1:notaport"
    else:
        setting, value = "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:notaport"
    ran = run(command, tmp_path, **{setting: value, "SMS_STARTUP_WAIT_SECONDS": "30"})
    line = assert_one_line(ran, setting, "127.0.0.1:notaport")
    assert ran.seconds < 15, ran  # never waited for
    print(f"\n{command}: {line}")


@pytest.mark.parametrize("command, setting, value, shown, says", [
    ("up", "SMS_QUERY_HOST", "0.0.0.0", "0.0.0.0", "set SMS_QUERY_TOKEN"),  # the query endpoint, open to all
    ("receiver", "SMS_PHONE_HASH_KEY", "short-secret", "", "at least 16 bytes"),  # a secret: never shown
    ("worker", "KAFKA_BOOTSTRAP_SERVERS", "", "", "must be set for a standalone worker"),
])
def test_settings_that_cannot_work_together_fail_at_once(command: str, setting: str, value: str, shown: str,
                                                         says: str, tmp_path: Path) -> None:
    ran = run(command, tmp_path, **{setting: value, "SMS_STARTUP_WAIT_SECONDS": "30"})
    line = assert_one_line(ran, setting, shown)
    assert says in line and ran.seconds < 15, ran
    assert "short-secret" not in ran.out, ran.out


@pytest.mark.parametrize("text, says", [
    ("delivery_rate: {floor: 1.5}\n", "delivery_rate.floor: Input should be less than or equal to 1"),
    ("receipt_blackout: {lag_seconds: [\n", "not YAML: "),
    ("window_second: 60\n", "window_second: Extra inputs are not permitted"),
])
def test_bad_alert_rules_are_an_invalid_setting(text: str, says: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    ran = run("worker", tmp_path, SMS_ALERT_RULES=str(rules), SMS_STARTUP_WAIT_SECONDS="30")
    line = assert_one_line(ran, "SMS_ALERT_RULES", str(rules))
    assert says in line and ran.seconds < 15, ran


def test_an_invalid_wait_is_an_invalid_setting(tmp_path: Path) -> None:
    line = assert_one_line(run("worker", tmp_path, SMS_STARTUP_WAIT_SECONDS="soon"), "SMS_STARTUP_WAIT_SECONDS", "soon")
    assert "a valid number" in line, line


def test_each_command_waits_with_backoff_then_gives_one_line(broker: str, tmp_path: Path) -> None:
    """SMS_STARTUP_WAIT_SECONDS=3: at least 3 s, a JSON log line per attempt, then the one plain line."""
    cases: list[tuple[str, dict[str, str], str, str]] = []
    for command in KAFKA_COMMANDS:
        kafka = f"127.0.0.1:{free_port()}"
        cases.append((command, {"KAFKA_BOOTSTRAP_SERVERS": kafka}, "KAFKA_BOOTSTRAP_SERVERS", kafka))
    url = unreachable_warehouse()
    cases.append(("sql", {"CLICKHOUSE_URL": url}, "CLICKHOUSE_URL", url.rpartition("@")[2]))

    def one(case: tuple[str, dict[str, str], str, str]) -> Ran:
        command, settings, _, _ = case
        (tmp_path / command).mkdir()
        return run(command, tmp_path / command, SMS_STARTUP_WAIT_SECONDS=str(SMALL_WAIT), SMS_LOG_JSON="true",
                   **settings)

    with ThreadPoolExecutor(len(cases)) as pool:  # they mostly sleep: side by side, 5 waits take one
        results = list(pool.map(one, cases))
    for (command, _, setting, address), ran in zip(cases, results, strict=True):
        assert ran.code == 2, ran.out
        *attempts, last = ran.lines
        logged = [orjson.loads(line) for line in attempts]
        assert {e["event"] for e in logged} == {"startup.waiting"}, ran.out
        assert all(e["setting"] == setting and e["address"].endswith(address) for e in logged), ran.out
        assert [e["attempt"] for e in logged] == list(range(1, len(logged) + 1)) and len(logged) >= 2, ran.out
        pauses = [e["retry_in"] for e in logged]
        assert pauses[1] > pauses[0], pauses  # exponential backoff
        assert last.startswith(f"error: {setting}=") and address in last and "attempts in" in last, last
        assert ran.seconds >= SMALL_WAIT and SECRET not in ran.out and "Traceback" not in ran.out, ran.out
        print(f"\n{command} ({ran.seconds:.1f} s, {len(logged)} attempts logged): {last}")


@pytest.mark.parametrize("command", COMMANDS)
def test_debug_shows_the_traceback(command: str, tmp_path: Path) -> None:
    ran = run(command, tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
              CLICKHOUSE_URL=unreachable_warehouse(), SMS_STARTUP_WAIT_SECONDS="0", SMS_LOG_LEVEL="DEBUG")
    assert ran.code == 2, ran.out
    assert "Traceback (most recent call last)" in ran.out, ran.out
    assert ran.lines[-1].startswith("error: ") and SECRET not in ran.out, ran.out


async def test_a_receiver_started_before_its_broker_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    env = environment(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", SMS_STARTUP_WAIT_SECONDS="30",
                      SMS_LOG_JSON="true")
    log = tmp_path / "receiver.log"
    with log.open("wb") as out:
        receiver = await asyncio.create_subprocess_exec(CLI, "receiver", env=env, cwd=tmp_path, stdout=out,
                                                        stderr=subprocess.STDOUT)
    broker = EmbeddedBroker(port=port)
    try:
        await eventually(lambda: "startup.waiting" in log.read_text(), timeout=30)
        await broker.start()

        def started() -> bool:
            assert receiver.returncode is None, log.read_text()
            return "runtime.started" in log.read_text()

        await eventually(started, timeout=30)
        receiver.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(receiver.wait(), 30) == 0, log.read_text()
        events = [orjson.loads(line)["event"] for line in log.read_text().splitlines()]
        assert events[0] == "startup.waiting" and "runtime.started" in events, events
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
        broker.stop()


HOLD = ("import sys, time; from sms_analytics.sinks.warehouse import Warehouse; held = Warehouse(sys.argv[1]).open(); "
        "print('open', flush=True); time.sleep(float(sys.argv[2]))")


def test_a_chdb_path_open_in_another_process_is_one_line_then_waited_for(tmp_path: Path) -> None:
    """chDB paths are opened by one process at a time: `sql` on embedded defaults says so in one line, or,
    given the time, waits until the other process lets it go."""
    path = tmp_path / "data" / "warehouse"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, f"chdb:///{path}", "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        line = assert_one_line(run("sql", tmp_path, SMS_STARTUP_WAIT_SECONDS="0"), "SMS_DATA_DIR", str(path))
        assert "is open in another process" in line, line
        print(f"\nsql: {line}")
        waited = run("sql", tmp_path, SMS_STARTUP_WAIT_SECONDS="30", SMS_LOG_JSON="true")
        assert waited.code == 0, waited.out
        assert "startup.waiting" in waited.lines[0] and waited.lines[-1].strip() == "1", waited.out
    finally:
        holder.kill()
        holder.wait(10)


async def test_sigterm_during_the_wait_ends_it_at_once(tmp_path: Path) -> None:
    """A supervisor stopping a service that still waits for its broker does not wait out the minute."""
    log = tmp_path / "worker.log"
    env = environment(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", SMS_STARTUP_WAIT_SECONDS="60")
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(CLI, "worker", env=env, cwd=tmp_path, stdout=out,
                                                      stderr=subprocess.STDOUT)
    try:
        await eventually(lambda: "startup.waiting" in log.read_text(), timeout=30)
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 10) == 0, log.read_text()
        assert time.monotonic() - stopped < 5 and "Traceback" not in log.read_text(), log.read_text()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


