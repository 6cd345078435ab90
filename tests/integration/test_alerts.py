"""Outage and blackout alerts end to end through `sms-analytics up` on an embedded broker (from tests/test_alerts.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Up:
    bootstrap: str  # its embedded broker
    http: str  # the receivers
    query: str  # the read-only query endpoint


@asynccontextmanager
async def up_with_rules(tmp_path: Path, rules: str, app_id: str) -> AsyncIterator[Up]:
    """`sms-analytics up` on an embedded broker of the test's, with these alert rules (SMS_ALERT_RULES),
    healthy; stopped (SIGTERM) and its broker with it afterwards."""
    import asyncio
    import os
    import sys

    from sms_analytics.broker.embedded import EmbeddedBroker, free_port
    from tests.conftest import wait_healthy

    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    broker = EmbeddedBroker()
    bootstrap = await broker.start()
    http_port, query_port = free_port(), free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SMS_DATA_DIR": str(tmp_path), "SMS_APP_ID": app_id,
           "SMS_HTTP_PORT": str(http_port), "SMS_QUERY_PORT": str(query_port), "SMS_ALERT_RULES": str(path),
           "SMS_PHONE_HASH_KEY": f"{app_id}-key-0123456789"}
    env.pop("SMS_CALLBACK_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).with_name("sms-analytics")), "up", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_healthy(f"http://127.0.0.1:{http_port}")
        yield Up(bootstrap, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{query_port}")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        broker.stop()


async def test_outage_and_blackout_raise_and_resolve_alerts_end_to_end(tmp_path: Path) -> None:
    """`sms-analytics up` with tight rules, driven by the simulator's outage (移动 delivers nothing)
    and Tencent blackout (pushes stop); the alerts reach sms.alerts.v1 and the warehouse."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    from sms_analytics.model import topics
    from sms_analytics.simulate.driver import drive
    from sms_analytics.simulate.scenarios import Blackout, Outage
    from tests.conftest import eventually

    rules = ("evaluate_every_seconds: 1\nwindow_seconds: 6\n"
             "delivery_rate: {floor: 0.6, min_volume: 8, by: [provider, carrier]}\n"
             "receipt_blackout: {lag_seconds: 4, min_sends: 5}\nlatency_p95: {slo_ms: 600000, min_volume: 5}\n")
    async with up_with_rules(tmp_path, rules, "alerts-test") as up:
        await drive(up.http, duration=24, rate=40, seed=3,
                    outage=Outage(carrier="移动", delivery_rate=0.0, start=2, duration=10),
                    blackout=Blackout(provider="tencent", start=2, duration=10))
        consumer = AIOKafkaConsumer(topics.ALERTS, bootstrap_servers=up.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        seen: list[dict] = []

        async def both_resolved() -> bool:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(orjson.loads(r.value) for r in recs)
            states = {(a["rule"], a["key"]): a["state"] for a in seen}
            return (states.get(("receipt_blackout", "tencent")) == "resolved"
                    and any(k[0] == "delivery_rate" and k[1].endswith("/mobile") and v == "resolved"
                            for k, v in states.items()))

        try:
            await eventually(both_resolved, timeout=40)
        finally:
            await consumer.stop()
        blackout = [a["state"] for a in seen if (a["rule"], a["key"]) == ("receipt_blackout", "tencent")]
        assert blackout == ["firing", "resolved"]  # deduplicated: one firing, one resolve
        unicom = [a for a in seen if a["key"].endswith("/unicom") and a["rule"] == "delivery_rate"]
        assert unicom == []  # only the carrier in the outage


async def test_a_regional_outage_raises_the_province_alert_with_its_cause_everywhere(tmp_path: Path) -> None:
    """Issue 17 end to end: `sms-analytics up` with rules by carrier × province, two webhooks (generic
    JSON and DingTalk, on a local HTTP server), driven by the simulator's regional outage (广东移动
    delivers nothing). The province alert fires with the outage's code first (and its meaning from the
    knowledge base) on sms.alerts.v1, in sms.alerts and in both webhooks; no other province fires."""
    import asyncio

    import orjson
    from aiohttp import web

    from sms_analytics.simulate.driver import drive
    from sms_analytics.simulate.scenarios import Outage
    from sms_analytics.sinks.query_api import post_query
    from tests.conftest import eventually, serve

    posts: list[tuple[str, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append((request.match_info["fmt"], await request.json()))
        return web.Response(text="ok")

    hooks = web.Application()
    hooks.router.add_post("/{fmt}", hook)
    runner, hook_url = await serve(hooks)

    rules = ("evaluate_every_seconds: 1\nwindow_seconds: 10\n"
             "delivery_rate: {floor: 0.5, min_volume: 10, region_min_volume: 8, by: [provider, carrier, province]}\n"
             "receipt_blackout: {lag_seconds: 600, min_sends: 5}\nlatency_p95: {slo_ms: 600000, min_volume: 5}\n"
             f"webhooks: [{{url: '{hook_url}/generic', format: generic}}, {{url: '{hook_url}/dingtalk', format: dingtalk}}]\n")
    try:
        async with up_with_rules(tmp_path, rules, "region-alerts") as up:
            await drive(up.http, duration=36, rate=120, seed=5,
                        outage=Outage(carrier="移动", province="广东", delivery_rate=0.0, start=14, duration=20))

            def stored() -> list[dict] | None:
                body = post_query(up.query,
                                  "SELECT rule, key, state, source, baseline, causes, summary FROM sms.alerts FINAL "
                                  "WHERE rule = 'delivery_rate' AND state = 'firing' ORDER BY key")
                found = [orjson.loads(line) for line in body.splitlines() if line.strip()]
                return found if any(r["key"].endswith("/mobile/广东") for r in found) else None

            found = await eventually(lambda: asyncio.to_thread(stored), timeout=40)
            guangdong = [r for r in found if r["key"].endswith("/mobile/广东")]
            assert {r["key"].count("/") for r in found if "/" in r["key"]} <= {1, 2}
            assert all(r["key"].endswith(("/mobile", "/mobile/广东")) for r in found if "/" in r["key"]), found
            for row in guangdong:
                assert (row["source"], row["baseline"]) == ("stream", "previous"), row
                first = row["causes"][0]  # a named tuple: an object in the endpoint's JSON
                assert first["dimension"] == "error_code" and first["share"] > 0.5 and first["meaning"], row  # explained
                assert not any(c["dimension"] in ("carrier", "province") for c in row["causes"])  # fixed by the scope

            async def hooked() -> bool:
                return {fmt for fmt, body in posts} == {"generic", "dingtalk"}

            await eventually(hooked, timeout=20)
            generic = [b for fmt, b in posts if fmt == "generic" and b["key"].endswith("/mobile/广东") and b["state"] == "firing"]
            assert generic and generic[0]["causes"][0]["dimension"] == "error_code" and generic[0]["causes"][0]["meaning"]
            code = generic[0]["causes"][0]["value"]
            texts = [b["text"]["content"] for fmt, b in posts if fmt == "dingtalk" and "/mobile/广东" in b["text"]["content"]]
            assert any(f"1. error_code={code}: " in t and "why (against the time just before)" in t for t in texts), texts
    finally:
        await runner.cleanup()
