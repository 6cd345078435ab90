"""The CLI as a user runs it: `sms-analytics up` as a separate process against a broker that
outlives it, the read-only query endpoint through `sms-analytics sql`, a crash (SIGKILL) with
the join state recovered from the changelog, and a clean SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from sms_analytics.broker.embedded import free_port
from sms_analytics.model import topics
from sms_analytics.model.events import decode_deliveries
from tests.conftest import HASH_KEY, TOKEN, eventually, wait_healthy

CHINA = timezone(timedelta(hours=8))
CLI = str(Path(sys.executable).with_name("sms-analytics"))


class Up:
    def __init__(self, bootstrap: str, data_dir: Path) -> None:
        self.http_port, self.query_port = free_port(), free_port()
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SMS_DATA_DIR": str(data_dir),
                    "SMS_HTTP_PORT": str(self.http_port), "SMS_QUERY_PORT": str(self.query_port),
                    "SMS_CALLBACK_TOKEN": TOKEN, "SMS_PHONE_HASH_KEY": HASH_KEY, "SMS_APP_ID": "proc-test",
                    "SMS_SINK_FLUSH_SECONDS": "0.2"}
        self.log = data_dir / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen([CLI, "up"], env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

        proc = self.proc
        assert proc is not None
        await wait_healthy(f"http://127.0.0.1:{self.http_port}",
                           lambda: None if proc.poll() is None else f"up: {self.log.read_text()[-3000:]}")

    def sql(self, statement: str, fmt: str = "json") -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "sql", "--format", fmt, statement], env=self.env, capture_output=True,
                              text=True, timeout=60)

    async def post(self, path: str, body: Any) -> int:
        async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{self.http_port}{path}?token={TOKEN}", data=orjson.dumps(body)) as r:
            return r.status


def _lines(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


@pytest_asyncio.fixture
async def up(broker: str, tmp_path: Path) -> AsyncIterator[Up]:
    process = Up(broker, tmp_path)
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)


@pytest.mark.both_brokers
async def test_crash_restart_sql_and_clean_shutdown(up: Up) -> None:
    broker = up.env["KAFKA_BOOTSTRAP_SERVERS"]
    await up.start()
    serial = f"5000:{time.time_ns()}"
    sent_at = datetime.now(CHINA).replace(microsecond=0) - timedelta(minutes=5)
    send = {"request": {"PhoneNumberSet": ["+8613900004444"], "SmsSdkAppId": "1400006666", "TemplateId": "77",
                        "SignName": "腾讯云"},
            "response": {"Response": {"SendStatusSet": [{"SerialNo": serial, "PhoneNumber": "+8613900004444",
                                                         "Fee": 1, "Code": "Ok", "Message": "send success"}],
                                      "RequestId": "r"}},
            "sent_at": sent_at.isoformat()}
    assert await up.post("/v1/sends/tencent", send) == 202
    where = f"FROM sms.messages WHERE message_id = '{serial}'"

    def pending() -> bool:
        result = up.sql(f"SELECT status {where}")
        return result.returncode == 0 and _lines(result.stdout) == [{"status": "pending"}]

    await eventually(pending, timeout=30)
    refused = up.sql("DROP TABLE sms.message_parts")
    assert refused.returncode != 0 and "refused" in refused.stderr
    assert up.proc is not None
    await asyncio.sleep(1.5)  # let the changelog write of the pending state leave the producer
    up.proc.send_signal(signal.SIGKILL)  # a crash: no flush, no commit
    up.proc.wait(10)

    await up.start()  # same app id and broker: the join state comes back from the changelog
    assert await up.post("/callbacks/tencent/status", [{
        "user_receive_time": (sent_at + timedelta(seconds=6)).strftime("%Y-%m-%d %H:%M:%S"), "nationcode": "86", "mobile": "13900004444",
        "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": serial}]) == 200

    consumer = AIOKafkaConsumer(topics.DELIVERIES, bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen: list[Any] = []

    async def joined_delivery() -> Any:
        for recs in (await consumer.getmany(timeout_ms=500)).values():
            seen.extend(d for r in recs for d in decode_deliveries(r.value) if d.message_id == serial)
        return [d for d in seen if d.status == "delivered"]

    try:
        delivery = (await eventually(joined_delivery, timeout=30))[0]
    finally:
        await consumer.stop()
    # The stream itself joined the receipt with the send it saw before the crash.
    assert delivery.has_send and delivery.latency_ms == 6000 and delivery.template == "77"

    expected = [{"status": "delivered", "latency_ms": 6000, "template": "77"}]

    def delivered() -> bool:
        result = up.sql(f"SELECT status, latency_ms, template {where}")
        return result.returncode == 0 and _lines(result.stdout) == expected

    await eventually(delivered, timeout=30)

    started = time.monotonic()
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert "runtime.stopped" in up.log.read_text()
    # Nothing runs now: `sql` opens the warehouse directly and sees the same row.
    offline = up.sql(f"SELECT status, latency_ms {where}", fmt="csv")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.splitlines() == ["status,latency_ms", "delivered,6000"]
