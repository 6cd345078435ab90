"""Fuzzed batches through the real pipeline: dead letters and events match the rejections (from tests/test_fuzz.py)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from sms_analytics.model import topics
from sms_analytics.model.events import decode_conversion, decode_message_events, decode_reply
from sms_analytics.runtime import Runtime
from sms_analytics.sources.base.fields import INTERNAL_ERROR
from sms_analytics.sources.receiver import INGEST_ENDPOINTS, Guards, Receiver
from tests.conftest import TOKEN, eventually, rows
from tests.unit.sources.test_receiver_fuzz import (
    ENVELOPES,
    IDS,
    MAX_BODY,
    RECORD_CLASSES,
    WINDOW,
    Case,
    Draw,
    Key,
    body_case,
    build_body,
    envelope_case,
    event_key,
    make_record,
    mark,
    now_ms,
    post,
    read_range,
    record_case,
)

EVENT_TOPICS = (topics.SENDS, topics.RECEIPTS, topics.REPLIES, topics.CONVERSIONS)


def decode_events(records: list[Any]) -> list[Any]:
    events: list[Any] = []
    for r in records:
        if r.topic == topics.REPLIES:
            events.append(decode_reply(r.value))
        elif r.topic == topics.CONVERSIONS:
            events.append(decode_conversion(r.value))
        elif r.topic in (topics.SENDS, topics.RECEIPTS):
            events.extend(decode_message_events(r.value))
    return events


def sample_cases(seed: int, per_endpoint: int = 12) -> list[Case]:
    """Cases with known outcomes from the same builders, drawn from a seeded Random."""
    d = Draw(rng=random.Random(seed))
    now = now_ms()
    cases = []
    for endpoint in INGEST_ENDPOINTS:
        for k in range(per_endpoint):
            if k % 4 == 3:
                cases.append(body_case(d, endpoint, d.choice(["invalid_utf8", "deep_nesting", "truncated",
                                                              "wrong_top_level"]), now))
            elif k % 4 == 2 and endpoint in ENVELOPES:
                cases.append(envelope_case(d, endpoint, now))
            else:
                cases.append(record_case(d, endpoint, ["valid", "valid", *RECORD_CLASSES], now, max_records=8))
    return cases


async def test_real_broker_dead_letters_and_events_match_the_rejections(pipeline: Runtime) -> None:
    """The real Publisher: one dead letter per rejected record or body, each with its reason, index,
    endpoint and receipt time headers; exactly the valid records on the event topics."""
    assert pipeline.publisher is not None
    receiver = Receiver(pipeline.publisher, IDS, token=TOKEN, max_body=MAX_BODY, max_records=10_000,
                        readiness=dict, guards=Guards(window=WINDOW))
    cases = sample_cases(seed=20240229)
    start = await mark(pipeline.bootstrap, [topics.DEADLETTER, *EVENT_TOPICS])
    want_letters: Counter[tuple[str, int]] = Counter()
    want_events: Counter[Key] = Counter()
    bodies: dict[str, set[bytes]] = defaultdict(set)
    async with TestClient(TestServer(receiver.app())) as client:
        for case in cases:
            status, answer = await post(client, case.endpoint, case.body)
            assert status == (400 if case.bad_body else 202 if case.endpoint.startswith("/v1/") else 200), (
                case, answer[:300])
            if case.bad_body:
                want_letters[(case.endpoint, -1)] += 1
                bodies[case.endpoint].add(case.body)
                continue
            assert case.records is not None
            for i, r in enumerate(case.records):
                if r.key is None:
                    want_letters[(case.endpoint, i)] += 1
                else:
                    want_events[r.key] += 1
    n_letters, n_events = sum(want_letters.values()), sum(want_events.values())
    records = await read_range(pipeline.bootstrap, start, lambda rs: (
        sum(r.topic == topics.DEADLETTER for r in rs) >= n_letters and len(decode_events(rs)) >= n_events))
    letters = [r for r in records if r.topic == topics.DEADLETTER]
    got_letters: Counter[tuple[str, int]] = Counter()
    for r in letters:
        headers = {k: v.decode() for k, v in r.headers}
        assert headers["reason"] and INTERNAL_ERROR not in headers["reason"], headers
        assert int(headers["received_at_ms"]) > 0
        got_letters[(headers["endpoint"], int(headers["index"]))] += 1
        if headers["index"] == "-1":
            assert r.value in bodies[headers["endpoint"]]
    assert sum(want_letters.values()) > 100 and sum(want_events.values()) > 100
    assert got_letters == want_letters
    assert Counter(event_key(e) for e in decode_events(records)) == want_events


async def test_real_pipeline_keeps_exactly_the_valid_records_of_a_mixed_batch(pipeline: Runtime) -> None:
    """Mixed batches through the running receiver, join and sink: `sms.messages` ends with exactly
    the valid records (an invalid record that still carries its fresh message id must never appear)."""
    run = f"fzp{uuid.uuid4().hex[:10]}-"
    d = Draw(rng=random.Random(7))
    now = now_ms()
    valid: set[str] = set()
    invalid: set[str] = set()
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        for endpoint in ("/v1/sends", "/callbacks/aliyun/sms-report", "/callbacks/tencent/status",
                         "/callbacks/kx/report"):
            for batch in range(3):
                tag = f"{run}{batch}-"
                recs = []
                for i in range(12):
                    cls = "valid" if i % 2 == 0 else RECORD_CLASSES[(i // 2 + batch) % 7]  # no unknown codes here
                    recs.append(make_record(endpoint, i, cls, d, now, tag))
                body, _ = build_body(endpoint, recs, d, now, tag)
                async with http.post(f"{endpoint}?token={TOKEN}", data=body) as resp:
                    assert resp.status in (200, 202), await resp.text()
                for r in recs:
                    ident = r.key[1] if r.key else next(
                        (r.value[n] for n in ("message_id", "biz_id", "sid", "taskid")
                         if isinstance(r.value, dict) and isinstance(r.value.get(n), str)), None)
                    if ident:
                        (valid if r.key else invalid).add(ident)
    assert len(valid) == 72 and len(invalid) > 30

    async def landed() -> set[str] | None:
        found = {r["message_id"] for r in await rows(
            pipeline, f"SELECT DISTINCT message_id FROM sms.messages WHERE startsWith(message_id, '{run}')")}
        return found if found >= valid else None

    await eventually(landed, timeout=30)
    await asyncio.sleep(2.0)  # anything wrongly accepted would have landed by now too
    found = await landed()
    assert found == valid, (sorted(found - valid)[:10] if found else None)
    assert not (found & invalid)
