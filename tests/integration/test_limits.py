"""Receiver limits on the session pipeline: the body cap on the real broker, the token everywhere (from tests/test_limits.py)."""

from __future__ import annotations

import aiohttp
import pytest

from sms_analytics.model import topics
from sms_analytics.runtime import Runtime
from sms_analytics.sources.receiver import INGEST_ENDPOINTS, OVERSIZE_SAMPLE_BYTES
from tests.conftest import TOKEN
from tests.unit.sources.test_receiver import error_of
from tests.unit.sources.test_receiver_fuzz import mark, read_range


@pytest.mark.pipeline
async def test_body_cap_on_the_real_broker(pipeline: Runtime) -> None:
    """The default 5 MiB cap through the running receiver: one byte over is 413 and its head is on
    sms.deadletter.v1; an unparseable body of exactly 5 MiB is dead-lettered whole."""
    start = await mark(pipeline.bootstrap, [topics.DEADLETTER])
    cap = pipeline.settings.sms_max_body_bytes
    over = b"{" + b"x" * cap
    at_cap = b"{" + b"y" * (cap - 1)
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as session:
        async with session.post(f"/v1/sends?token={TOKEN}", data=over) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"].startswith(f"body larger than {cap} bytes")
        async with session.post(f"/callbacks/tencent/status?token={TOKEN}", data=at_cap) as resp:
            assert resp.status == 400 and (await resp.json())["result"] == 1
    records = await read_range(pipeline.bootstrap, start, lambda rs: len(rs) >= 2)
    assert len(records) == 2, [(dict(r.headers), len(r.value)) for r in records]
    letters = {dict(r.headers)["endpoint"].decode(): r for r in records}
    assert letters["/v1/sends"].value == over[:OVERSIZE_SAMPLE_BYTES]
    assert dict(letters["/v1/sends"].headers)["reason"].startswith(f"body larger than {cap} bytes".encode())
    assert letters["/callbacks/tencent/status"].value == at_cap
    assert dict(letters["/callbacks/tencent/status"].headers)["reason"].startswith(b"body is not valid JSON")


@pytest.mark.pipeline
async def test_the_running_receiver_refuses_a_wrong_token_everywhere(pipeline: Runtime) -> None:
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as session:
        for endpoint in INGEST_ENDPOINTS:
            for query in ("", "?token=wrong"):
                async with session.post(endpoint + query, data=b"[]") as resp:
                    assert resp.status == 401, endpoint
                    assert error_of(endpoint, await resp.read()) == "invalid or missing token"
