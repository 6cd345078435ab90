"""Security with real components (from tests/test_security.py): credentials and raw numbers never reach the logs of `sms-analytics up`, raw numbers are not stored in the session pipeline's warehouse."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import pytest_asyncio

from sms_analytics.broker.embedded import free_port
from sms_analytics.runtime import Runtime
from sms_analytics.simulate import lane as lane_module
from sms_analytics.simulate.lane import ProviderLane
from sms_analytics.sources.receiver import INGEST_ENDPOINTS
from tests.conftest import HASH_KEY, TOKEN, eventually, rows, wait_healthy
from tests.unit.sources.test_receiver_fuzz import ENVELOPES, SPECS, Draw, Rec, build_body, now_ms, valid_record

CLI = str(Path(sys.executable).with_name("sms-analytics"))


def distinctive_number() -> str:
    return f"1990{random.SystemRandom().randrange(10**7):07d}"  # a telecom segment, random tail


def number_bodies(national: str, tag: str) -> dict[str, list[bytes]]:
    """For every ingest endpoint, a valid push carrying the number, and one where it sits in fields
    that are rejected (a time, an id that is too long), so it also travels through the error paths."""
    d = Draw(rng=random.Random(11))
    now = now_ms()
    out: dict[str, list[bytes]] = {}
    for endpoint in INGEST_ENDPOINTS:
        spec = SPECS[endpoint]
        bodies = []
        for broken in (False, True):
            if endpoint == "/v1/sends/aliyun":
                recs = [Rec(national, ("send", "", ""), "valid")]
            else:
                rec, key = valid_record(endpoint, 0, d, now, tag)
                rec[spec.phone] = national if endpoint != "/v1/sends/tencent" else "+86" + national
                if broken:
                    time_field = next(iter(spec.times), spec.phone)
                    rec[time_field] = int(national)
                recs = [Rec(rec, key, "valid")]
            sent_at = int(national) if broken and endpoint in ENVELOPES else None
            bodies.append(build_body(endpoint, recs, d, now, tag, sent_at=sent_at)[0])
        out[endpoint] = bodies
    return out


@pytest_asyncio.fixture
async def lane() -> AsyncIterator[ProviderLane]:
    provider_lane = ProviderLane()
    await provider_lane.start()
    try:
        yield provider_lane
    finally:
        await provider_lane.stop()


async def test_credentials_and_raw_numbers_never_reach_the_logs(lane: ProviderLane, tmp_path: Path) -> None:
    """`sms-analytics up` at DEBUG with every pull feed on (KX, Tencent, Alibaba API and MNS against
    the simulators), traffic through the provider lane, then the simulators' keys rotated so every
    client also goes through its refusal paths; the test number pushed through every endpoint, valid
    and broken. The log holds neither a credential nor the number."""
    http_port, query_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "KAFKA_", "CLICKHOUSE_"))}
    env.update({k.upper(): f"PT{v}S" if k == "sms_compensate_after" else str(v) for k, v in lane.settings().items()})
    env.update({"SMS_DATA_DIR": str(tmp_path / "data"), "SMS_HTTP_PORT": str(http_port), "SMS_QUERY_PORT": str(query_port),
                "SMS_CALLBACK_TOKEN": TOKEN, "SMS_PHONE_HASH_KEY": HASH_KEY, "SMS_APP_ID": "security-test",
                "SMS_LOG_LEVEL": "DEBUG", "SMS_LOG_JSON": "true", "SMS_SINK_FLUSH_SECONDS": "0.2",
                "SMS_FEED_INTERVAL_SECONDS": "0.3"})
    secrets = {"kx apikey": lane_module.KX_KEY, "tencent secret key": lane_module.TC_KEY,
               "aliyun access key secret": lane_module.ALI_KEY, "callback token": TOKEN, "phone hash key": HASH_KEY}
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([CLI, "up"], env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
    receiver = f"http://127.0.0.1:{http_port}"
    national = distinctive_number()
    try:
        await wait_healthy(receiver, lambda: None if proc.poll() is None else f"up: {log_path.read_text()[-3000:]}")
        await lane.drive(receiver, duration=4, rate=6, token=TOKEN, seed=5)
        async with aiohttp.ClientSession(base_url=receiver) as http:
            for endpoint, bodies in number_bodies(national, f"sec{uuid.uuid4().hex[:8]}-").items():
                for body in bodies:
                    async with http.post(f"{endpoint}?token={TOKEN}", data=body) as resp:
                        assert resp.status in (200, 202, 400), (endpoint, await resp.text())
        # rotate every key at the providers: from now on each client's calls are refused
        lane.kx._apikey = "rotated-" + uuid.uuid4().hex
        lane.tencent._secret_key = "rotated-" + uuid.uuid4().hex
        lane.aliyun._secret = "rotated-" + uuid.uuid4().hex
        lane.mns.set_credentials(lane_module.ALI_ID, "rotated-" + uuid.uuid4().hex)
        await asyncio.sleep(4)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    text = log_path.read_text(errors="replace")
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    names = {e.get("event") for e in events}
    assert len(events) > 50 and any(e.get("level") == "debug" for e in events)
    assert {"kx call ok", "aliyun_call_ok"} & names, sorted(n for n in names if n)[:50]  # the clients logged
    assert names & {"feed.poll_failed", "kx call refused", "tencent.api_error", "aliyun_call_refused", "mns.error"}
    assert "ingest.bad_body" in names  # the broken pushes were logged too
    assert [what for what, secret in secrets.items() if secret in text] == []
    assert national not in text, [line[:300] for line in text.splitlines() if national in line][:5]


@pytest.mark.pipeline
async def test_raw_numbers_are_not_stored_in_clickhouse(pipeline: Runtime) -> None:
    """A number through every ingest endpoint of the running pipeline: sends, receipts and replies land,
    and no column of any table holds the number in any form (E.164, national, with 86 or 0086)."""
    assert pipeline.settings.sms_store_raw_phone is False
    national = distinctive_number()
    tag = f"sec{uuid.uuid4().hex[:8]}-"
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        for endpoint, bodies in number_bodies(national, tag).items():
            for body in bodies:
                async with http.post(f"{endpoint}?token={TOKEN}", data=body) as resp:
                    assert resp.status in (200, 202, 400), (endpoint, await resp.text())

    async def landed() -> bool:
        messages = await rows(pipeline, f"SELECT count() AS n FROM sms.messages WHERE startsWith(message_id, '{tag}') "
                                        f"OR message_id IN ('{tag}biz^0', '{tag}task')")
        replies = await rows(pipeline, f"SELECT count() AS n FROM sms.replies WHERE position(content, '{tag}') > 0")
        return messages[0]["n"] >= 6 and replies[0]["n"] >= 3

    await eventually(landed, timeout=30)
    masked = await rows(pipeline, f"SELECT DISTINCT phone_masked FROM sms.messages WHERE startsWith(message_id, '{tag}')")
    assert {r["phone_masked"] for r in masked} == {national[:3] + "****" + national[-4:]}
    tables = await rows(pipeline, "SELECT name FROM system.tables WHERE database = 'sms' "
                                  "AND engine NOT IN ('View', 'MaterializedView', 'Dictionary')")
    assert len(tables) >= 8
    scanned, control = 0, set()
    for table in (t["name"] for t in tables):
        columns = await rows(pipeline, f"SELECT name FROM system.columns WHERE database = 'sms' AND table = '{table}'")
        for column in (c["name"] for c in columns):
            hits = await rows(pipeline, f"SELECT countIf(position(toString(`{column}`), '{national}') > 0) AS n, "
                                        f"countIf(position(toString(`{column}`), '{tag}') > 0) AS tag "
                                        f"FROM sms.`{table}`")
            assert hits[0]["n"] == 0, f"sms.{table}.{column} holds the raw number"
            if hits[0]["tag"]:
                control.add(f"{table}.{column}")
            scanned += 1
    assert scanned > 50
    assert {"message_parts.message_id", "replies.content"} <= control  # the scan does find what is there
