"""Each limit of the receiver, on every ingest endpoint, and the answer it gives: the body size cap
(413), the records per push (400), the timestamp window and number validation (the record is
rejected), the per-provider IP allowlist (403) and the token (401). Every refused body or record is
dead-lettered with its reason; allowlist and token refusals are not stored at all."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import random
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from sms_analytics.settings import Settings
from sms_analytics.sources import receiver as receiver_module
from sms_analytics.sources.base.fields import TimeWindow
from sms_analytics.sources.receiver import (
    CALLBACKS,
    INGEST_ENDPOINTS,
    OVERSIZE_SAMPLE_BYTES,
    Guards,
    Receiver,
    parse_networks,
)
from tests.conftest import TOKEN
from tests.unit.sources.test_receiver_fuzz import (
    DAY_MS,
    IDS,
    TIME_FORMATS,
    Draw,
    RecordingPublisher,
    build_body,
    make_record,
    now_ms,
    shape_of,
    valid_record,
)

ERROR = {
    "aliyun": lambda b: orjson.loads(b)["msg"] if orjson.loads(b)["code"] == 1 else None,
    "tencent": lambda b: orjson.loads(b)["errmsg"] if orjson.loads(b)["result"] == 1 else None,
    "kx": lambda b: b.decode()[5:] if b.startswith(b"FAIL ") else None,
    "v1": lambda b: orjson.loads(b)["error"],
}


def error_of(endpoint: str, answer: bytes) -> str:
    """The error text of an answer in the endpoint's own error shape (fails on any other shape)."""
    message = ERROR[shape_of(endpoint)](answer)
    assert message, answer[:300]
    return message


Factory = Callable[..., Any]


@pytest.fixture
async def receiver() -> AsyncIterator[Factory]:
    """Start a Receiver with the given limits (recording publisher); returns (client, publisher)."""
    clients: list[TestClient] = []

    async def start(*, max_body: int = 5 * 1024 * 1024, max_records: int = 10_000, token: str | None = TOKEN,
                    guards: Guards | None = None) -> tuple[TestClient, RecordingPublisher]:
        publisher = RecordingPublisher()
        app = Receiver(publisher, IDS, token=token, max_body=max_body, max_records=max_records, readiness=dict,
                       guards=guards or Guards(window=TimeWindow(30 * DAY_MS, DAY_MS))).app()
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, publisher

    yield start
    for client in clients:
        await client.close()


async def post(client: TestClient, endpoint: str, body: Any, *, token: str | None = TOKEN,
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    url = endpoint + (f"?token={token}" if token is not None else "")
    async with client.post(url, data=body, headers=headers or {}) as resp:
        return resp.status, await resp.read()


def valid_body(endpoint: str, n: int = 1, tag: str = "lim-") -> bytes:
    d = Draw(rng=random.Random(n))
    now = now_ms()
    recs = [make_record(endpoint, i, "valid", d, now, tag) for i in range(n)]
    return build_body(endpoint, recs, d, now, tag)[0]


def test_defaults_and_environment() -> None:
    s = Settings(_env_file=None)
    assert (s.sms_max_body_bytes, s.sms_max_records_per_push) == (5 * 1024 * 1024, 10_000)
    assert (s.sms_timestamp_past, s.sms_timestamp_future) == (timedelta(days=30), timedelta(days=1))
    assert [getattr(s, f"sms_allow_ips_{lane}") for lane in receiver_module.LANES] == ["", "", "", ""]
    assert s.sms_trusted_proxies == ""
    guards = Guards.from_settings(Settings(_env_file=None, sms_timestamp_past="PT1H", sms_timestamp_future=60,
                                           sms_allow_ips_kx="10.0.0.0/8, 192.0.2.7", sms_trusted_proxies="127.0.0.1"))
    assert guards.window == TimeWindow(past_ms=3_600_000, future_ms=60_000)
    assert guards.allow["kx"] == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert guards.allow["aliyun"] == () and guards.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),)


def test_a_bad_allowlist_fails_at_start_with_the_variable_named() -> None:
    with pytest.raises(ValueError, match=re.escape("SMS_ALLOW_IPS_TENCENT: '10.0.0.300/8' is not an IP address or CIDR")):
        Guards.from_settings(Settings(_env_file=None, sms_allow_ips_tencent="10.0.0.0/8,10.0.0.300/8"))
    assert parse_networks(" , ::1 ,2001:db8::/32", "X") == (ipaddress.ip_network("::1/128"),
                                                           ipaddress.ip_network("2001:db8::/32"))


# --- body size ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", INGEST_ENDPOINTS)
async def test_a_body_over_the_cap_is_413_and_its_head_dead_lettered(receiver: Factory, endpoint: str) -> None:
    client, publisher = await receiver(max_body=1000)
    at_cap = valid_body(endpoint).ljust(1000)  # JSON allows trailing whitespace
    assert len(at_cap) == 1000
    status, _ = await post(client, endpoint, at_cap)
    assert status in (200, 202)
    publisher.take()
    big = b"[" + b" " * 200_000 + b"]"
    for body in (big, _chunks(big)):  # with a Content-Length, and chunked (no length announced)
        status, answer = await post(client, endpoint, body)
        assert status == 413
        assert "body larger than 1000 bytes (SMS_MAX_BODY_BYTES)" in error_of(endpoint, answer)
        events, letters = publisher.take()
        assert events == [] and len(letters) == 1
        assert letters[0].index == -1 and letters[0].endpoint == endpoint
        assert letters[0].raw == big[:OVERSIZE_SAMPLE_BYTES]  # a truncated copy: its first 64 KiB
        assert "the dead letter holds its first 65536 bytes" in letters[0].reason


async def _chunks(body: bytes) -> Any:
    for i in range(0, len(body), 10_000):
        yield body[i:i + 10_000]


async def test_a_content_encoding_is_not_decoded(receiver: Factory) -> None:
    """Bodies are taken as sent: a gzip bomb (10 MiB of spaces in ~10 KiB) is 10 KiB of bytes that
    are not JSON, and an encoding aiohttp cannot decode is no different."""
    client, publisher = await receiver()
    bomb = gzip.compress(b"[" + b" " * (10 * 1024 * 1024) + b"]")
    assert len(bomb) < 20_000
    for encoding in ("gzip", "br", "zstd", "x-unknown"):
        status, answer = await post(client, "/callbacks/kx/report", bomb, headers={"Content-Encoding": encoding})
        assert status == 400 and answer.startswith(b"FAIL body is not valid JSON"), (encoding, answer)
        assert [(x.index, x.raw) for x in publisher.take()[1]] == [(-1, bomb)]


# --- records per push -------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", INGEST_ENDPOINTS)
async def test_too_many_records_is_400_with_the_count(receiver: Factory, endpoint: str) -> None:
    client, publisher = await receiver(max_records=5)
    status, _ = await post(client, endpoint, valid_body(endpoint, 5))
    assert status in (200, 202)
    assert len(publisher.take()[0]) == 5
    body = valid_body(endpoint, 6)
    status, answer = await post(client, endpoint, body)
    assert status == 400
    assert error_of(endpoint, answer) == "too many records in one push: 6 > 5 (SMS_MAX_RECORDS_PER_PUSH)"
    events, letters = publisher.take()
    assert events == [] and [(x.index, x.raw) for x in letters] == [(-1, body)]


# --- timestamps and numbers --------------------------------------------------------------------------------

RECORD_ENDPOINTS = [e for e in INGEST_ENDPOINTS if e not in ("/v1/sends/aliyun", "/v1/sends/tencent", "/v1/sends/kx")]
TIME_FIELD = {"/v1/sends": ("sent_at", "iso"), "/v1/conversions": ("converted_at", "iso"),
              "/callbacks/aliyun/sms-report": ("report_time", "china"),
              "/callbacks/aliyun/sms-up": ("send_time", "china"), "/callbacks/tencent/status": ("user_receive_time", "china"),
              "/callbacks/tencent/reply": ("time", "epoch"), "/callbacks/kx/report": ("time", "compact"),
              "/callbacks/kx/mo": ("time", "compact")}


@pytest.mark.parametrize("endpoint", RECORD_ENDPOINTS)
async def test_a_record_outside_the_time_window_is_rejected(receiver: Factory, endpoint: str) -> None:
    client, publisher = await receiver(guards=Guards.from_settings(Settings(_env_file=None)))
    name, fmt = TIME_FIELD[endpoint]
    now = now_ms()
    offsets = {-31 * DAY_MS: False, -29 * DAY_MS: True, 2 * DAY_MS: False, 23 * 3600_000: True, -5000: True}
    d = Draw(rng=random.Random(1))
    records = []
    for i, offset in enumerate(offsets):
        rec, _ = valid_record(endpoint, i, d, now, "win-")
        rec[name] = TIME_FORMATS[fmt](now + offset)
        if endpoint == "/callbacks/aliyun/sms-report":
            rec["send_time"] = rec[name]
        records.append(rec)
    status, answer = await post(client, endpoint, orjson.dumps(records))
    assert status in (200, 202), answer
    events, letters = publisher.take()
    assert len(events) == 3
    assert [x.index for x in letters] == [0, 2]
    assert letters[0].reason.startswith("timestamp out of window: ") and "before receipt" in letters[0].reason
    assert "at most 30.0 days, SMS_TIMESTAMP_PAST" in letters[0].reason
    # 2 days ahead is already refused when the time is parsed (model/times.py: never past now + 1 day)
    assert letters[1].reason.startswith("timestamp out of window: ")
    assert orjson.loads(letters[0].raw) == records[0]


@pytest.mark.parametrize("endpoint", ["/v1/sends/aliyun", "/v1/sends/tencent", "/v1/sends/kx"])
async def test_a_send_envelope_outside_the_time_window_is_refused_whole(receiver: Factory, endpoint: str) -> None:
    client, publisher = await receiver(guards=Guards(window=TimeWindow(past_ms=3_600_000, future_ms=60_000)))
    doc = orjson.loads(valid_body(endpoint, 2))
    for sent_at, ok in ((now_ms() // 1000 - 1800, True), (now_ms() // 1000 - 7200, False), (now_ms() // 1000 + 600, False)):
        doc["sent_at"] = sent_at
        status, answer = await post(client, endpoint, orjson.dumps(doc))
        events, letters = publisher.take()
        if ok:
            assert (status, len(events), letters) == (202, 2, [])
        else:
            assert status == 400 and error_of(endpoint, answer).startswith("timestamp out of window: sent_at is")
            assert events == [] and [x.index for x in letters] == [-1]


@pytest.mark.parametrize("endpoint", INGEST_ENDPOINTS)
async def test_a_bad_number_is_rejected_with_its_reason(receiver: Factory, endpoint: str) -> None:
    client, publisher = await receiver()
    d = Draw(rng=random.Random(2))
    now = now_ms()
    bad = ["13800l38000", "12345", "+8602512345678", "-13800138000", "+999123", "1" * 21]
    recs = [make_record(endpoint, 0, "valid", d, now, "num-")]
    for i, number in enumerate(bad, start=1):
        rec = make_record(endpoint, i, "valid", d, now, "num-")
        if isinstance(rec.value, dict):
            rec.value["PhoneNumber" if "PhoneNumber" in rec.value else "mobile" if "mobile" in rec.value
                      else "mobile " if "mobile " in rec.value else "phone_number" if "phone_number" in rec.value
                      else "phone"] = number
        else:
            rec.value = number
        recs.append(rec)
    body = build_body(endpoint, recs, d, now, "num-")[0]
    status, answer = await post(client, endpoint, body)
    assert status in (200, 202), answer
    events, letters = publisher.take()
    assert len(events) == 1 and [x.index for x in letters] == list(range(1, len(bad) + 1))
    assert all("phone" in x.reason for x in letters), [x.reason for x in letters]
    assert "not a China mobile number" in letters[2].reason and "negative" in letters[3].reason


# --- allowlist ---------------------------------------------------------------------------------------------

LANE_ENDPOINTS = {lane: [e for e in INGEST_ENDPOINTS if receiver_module.Receiver._lane(e) == lane]
                  for lane in receiver_module.LANES}


def test_every_endpoint_has_a_lane() -> None:
    assert LANE_ENDPOINTS == {
        "aliyun": ["/callbacks/aliyun/sms-report", "/callbacks/aliyun/sms-up"],
        "tencent": ["/callbacks/tencent/status", "/callbacks/tencent/reply"],
        "kx": ["/callbacks/kx/report", "/callbacks/kx/mo"],
        "sends": ["/v1/sends", "/v1/conversions", "/v1/sends/aliyun", "/v1/sends/tencent", "/v1/sends/kx"],
    }
    assert set(CALLBACKS) | {"/v1/sends", "/v1/conversions", "/v1/sends/aliyun", "/v1/sends/tencent", "/v1/sends/kx"} == set(INGEST_ENDPOINTS)


@pytest.mark.parametrize("lane", receiver_module.LANES)
async def test_an_address_outside_the_lanes_allowlist_gets_403_and_nothing_is_stored(receiver: Factory,
                                                                                    lane: str) -> None:
    allow = {name: parse_networks("10.0.0.0/8" if name == lane else "", name) for name in receiver_module.LANES}
    client, publisher = await receiver(guards=Guards(allow=allow))
    for endpoint in INGEST_ENDPOINTS:
        status, answer = await post(client, endpoint, valid_body(endpoint))
        if endpoint in LANE_ENDPOINTS[lane]:
            assert status == 403, (endpoint, answer)
            assert error_of(endpoint, answer) == "client address 127.0.0.1 is not allowed to post here"
            # X-Forwarded-For is not believed unless the peer is a trusted proxy
            status, _ = await post(client, endpoint, valid_body(endpoint), headers={"X-Forwarded-For": "10.1.2.3"})
            assert status == 403
        else:
            assert status in (200, 202), (endpoint, answer)
    events, letters = publisher.take()
    assert letters == [] and len(events) == len(INGEST_ENDPOINTS) - len(LANE_ENDPOINTS[lane])


async def test_allowed_addresses_and_a_trusted_proxy(receiver: Factory) -> None:
    allow = {"kx": parse_networks("127.0.0.0/8", "kx"), "sends": parse_networks("10.0.0.0/8", "sends")}
    client, _ = await receiver(guards=Guards(allow=allow, trusted_proxies=parse_networks("127.0.0.1", "p")))
    assert (await post(client, "/callbacks/kx/mo", valid_body("/callbacks/kx/mo")))[0] == 200  # 127.0.0.1 allowed
    cases = [("10.1.2.3", 202), ("203.0.113.9, 10.1.2.3", 202), ("10.1.2.3, 203.0.113.9", 403),
             ("10.1.2.3, 127.0.0.1", 202), ("not-an-address", 403), ("", 403)]
    for forwarded, expected in cases:  # the nearest address that is not a trusted proxy is the client
        status, answer = await post(client, "/v1/sends", valid_body("/v1/sends"), headers={"X-Forwarded-For": forwarded})
        assert status == expected, (forwarded, answer)


async def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(receiver: Factory) -> None:
    allow = {"sends": parse_networks("10.0.0.0/8", "sends")}
    client, _ = await receiver(guards=Guards(allow=allow, trusted_proxies=parse_networks("192.0.2.0/24", "p")))
    status, _ = await post(client, "/v1/sends", valid_body("/v1/sends"), headers={"X-Forwarded-For": "10.1.2.3"})
    assert status == 403


def test_ipv4_mapped_addresses_match_ipv4_networks() -> None:
    networks = parse_networks("192.0.2.0/24", "x")
    assert receiver_module._within(receiver_module._address("::ffff:192.0.2.7"), networks)
    assert not receiver_module._within(receiver_module._address("2001:db8::1"), networks)
    assert not receiver_module._within(None, networks)


# --- token --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", INGEST_ENDPOINTS)
async def test_a_missing_or_wrong_token_is_401_on_every_ingest_endpoint(receiver: Factory, endpoint: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = receiver_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(receiver_module.hmac, "compare_digest", spy)
    client, publisher = await receiver()
    for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()):
        status, answer = await post(client, endpoint, valid_body(endpoint), token=token)
        assert status == 401, (token, answer)
        assert error_of(endpoint, answer) == "invalid or missing token"
    assert publisher.take() == ([], [])  # refusals are not stored
    assert len(compared) == 6  # every check went through hmac.compare_digest (constant time)
    status, _ = await post(client, endpoint, valid_body(endpoint))
    assert status in (200, 202)


async def test_health_and_metrics_need_no_token(receiver: Factory) -> None:
    client, _ = await receiver()
    for path in ("/healthz", "/metrics"):
        async with client.get(path) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("tail", [b"zz\r\n\r\n", b""], ids=["broken-chunk", "disconnect"])
async def test_a_broken_or_abandoned_body_is_never_acknowledged(receiver: Factory, tail: bytes) -> None:
    """Malformed HTTP: a chunk size that is not hex after the handler started reading, or a client
    gone mid-body. No 2xx, no 5xx, nothing published (the provider retries); malformed HTTP that
    arrives before the handler runs gets aiohttp's own plain-text 400."""
    client, publisher = await receiver()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /callbacks/aliyun/sms-report?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n[{}, \r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    if tail:
        writer.write(tail)
        await writer.drain()
    try:
        head = await asyncio.wait_for(reader.read(4096), 1.0)
    except TimeoutError:
        head = b""
    writer.close()
    await asyncio.sleep(0.2)
    if head:
        status = int(head.split(b" ", 2)[1])
        assert 400 <= status < 500, head
    assert publisher.take()[0] == []
