"""The Grafana relay (dashboards/relay.py) through the session pipeline: a regional outage's Grafana alert,
posted exactly as Grafana's webhook contact point posts it, becomes a row of sms.alerts with source 'grafana'
and its causes (the province, the outage's code and its meaning), reaches the webhooks (generic JSON with the
causes, DingTalk and Slack text with the cause lines), resolves, and a malformed body is refused and
dead-lettered. Grafana itself cannot run here."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from sms_analytics.dashboards import relay
from sms_analytics.runtime import Parts, Runtime
from sms_analytics.settings import Webhook
from sms_analytics.simulate.payloads.aliyun import aliyun_report
from tests.conftest import TOKEN, eventually, pipeline_settings, rows, serve
from tests.integration.test_pipeline import dead_letters

pytestmark = pytest.mark.pipeline

HOUR = 3600
# Mobile segments (phonenumbers' geocoding): 广东 广州, 北京, 浙江 杭州.
SEGMENTS = {"广东": "1350000", "北京": "1380010", "浙江": "1360571"}
PER_PROVINCE = 80
OUTAGE_CODE, OUTAGE_MESSAGE = "IC:0055", "用户欠费停机"
NORMAL_CODE, NORMAL_MESSAGE = "MB:1031", "内存满"
CAUSE_FIELDS = ("dimension", "value", "share", "excess", "failures", "volume", "rate", "baseline_rate", "meaning")


def iso(seconds: float) -> str:
    """A time as Grafana writes it (Go's RFC 3339 with nanoseconds)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1e9):09d}Z"


def grafana_payload(status: str, starts: float, ends: float | None, **labels: str) -> dict[str, Any]:
    """The body of Grafana's webhook notifier for one alert of the floor rule (docs: "Webhook JSON payload")."""
    alert = {
        "status": status,
        "labels": {"alertname": "SMS delivery rate below floor", "grafana_folder": "SMS", "severity": "critical",
                   "team": "sms", **labels},
        "annotations": {"summary": f"{labels['provider']}: delivery rate 41% in the last hour",
                        "description": "delivered / (delivered + failed + expired) ..."},
        "startsAt": iso(starts), "endsAt": iso(ends) if ends else "0001-01-01T00:00:00Z",
        "generatorURL": "http://grafana:3000/alerting/grafana/sms-rate-floor/view?orgId=1",
        "fingerprint": "9e2ad1c46cf0b4c8", "silenceURL": "http://grafana:3000/alerting/silence/new?alertmanager=grafana",
        "dashboardURL": "", "panelURL": "", "values": {"B": 0.41, "C": 1},
    }
    return {"receiver": "sms-relay", "status": status, "orgId": 1, "alerts": [alert],
            "groupLabels": {"alertname": alert["labels"]["alertname"], "grafana_folder": "SMS"},
            "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
            "externalURL": "http://grafana:3000/", "version": "1",
            "groupKey": '{}/{grafana_folder="SMS"}:{alertname="SMS delivery rate below floor"}',
            "truncatedAlerts": 0, "title": f"[{status.upper()}:1] SMS delivery rate below floor",
            "state": "alerting" if status == "firing" else "ok", "message": "..."}


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> None:
    async with http.post(f"{path}?token={TOKEN}", data=orjson.dumps(body)) as resp:
        assert resp.status in (200, 202), await resp.text()


async def regional_outage(pipeline: Runtime, http: aiohttp.ClientSession, run: str, end: float) -> None:
    """Two quiet hours of aliyun × mobile traffic before `end` (hours ago, so no other test's traffic is in
    them): the first normal, the second with 广东 failing (70%) with OUTAGE_CODE."""
    sends, receipts = [], []
    for hour, start in (("b", end - 2 * HOUR), ("c", end - HOUR)):
        for province, segment in SEGMENTS.items():
            for i in range(PER_PROVINCE):
                mid, phone, at = f"{run}-{hour}-{segment}-{i}", f"{segment}{i:04d}", start + 60 + i * 40
                outage = hour == "c" and province == "广东" and i % 10 < 7
                code, message = ((OUTAGE_CODE, OUTAGE_MESSAGE) if outage else (NORMAL_CODE, NORMAL_MESSAGE)
                                 if i % 40 == 0 else ("DELIVERED", "用户接收成功"))
                sends.append({"provider": "aliyun", "message_id": mid, "phone": phone, "sent_at": at,
                              "template": "SMS_1", "sign": "阿里云"})
                receipts.append(aliyun_report(phone, mid, send_time=at, report_time=at + 5, err_code=code,
                                              err_msg=message))
    await post(http, "/v1/sends", sends)
    await post(http, "/callbacks/aliyun/sms-report", receipts)

    async def decided() -> bool:
        got = await rows(pipeline, f"SELECT count() AS n FROM sms.messages WHERE provider = 'aliyun' AND "
                                   f"message_id LIKE '{run}-%' AND status IN ('delivered', 'failed')")
        return got[0]["n"] == len(sends)

    await eventually(decided, timeout=60, interval=0.5)


async def recording_webhook() -> tuple[web.AppRunner, str, list[tuple[str, Any]]]:
    got: list[tuple[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.match_info["fmt"], await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{fmt}", hook)
    runner, url = await serve(app)
    return runner, url, got


async def relay_post(pipeline: Runtime, body: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            pipeline.query_url + relay.PATH, data=body, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def test_a_grafana_drop_alert_is_relayed_with_its_causes_to_the_warehouse_and_the_webhooks(
        pipeline: Runtime, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    run = f"relay{time.time_ns() % 10**9}"
    starts = time.time() - 6 * HOUR - random.uniform(0, HOUR)  # the alert fires at the end of the outage's hour
    await regional_outage(pipeline, http, run, starts)
    runner, url, hooks = await recording_webhook()
    rules = pipeline.settings.sms_alert_rules
    monkeypatch.setattr(pipeline.settings, "sms_alert_rules", rules.model_copy(update={"webhooks": tuple(
        Webhook(url=f"{url}/{fmt}", format=fmt) for fmt in ("generic", "dingtalk", "slack"))}))
    try:
        firing = orjson.dumps(grafana_payload("firing", starts, None, provider="aliyun", carrier="mobile"))
        for _ in range(2):  # Grafana repeats a firing alert (repeat_interval): the same row
            status, answer = await relay_post(pipeline, firing)
            assert status == 200, answer
        assert answer["relayed"][0]["key"] == "aliyun/mobile" and answer["relayed"][0]["causes"] > 0, answer
        started_ms = int(starts * 1000)
        where = (f"rule = 'sms-rate-floor' AND key = 'aliyun/mobile' AND started_at = "
                 f"fromUnixTimestamp64Milli(toInt64({started_ms}), 'UTC')")

        async def firing_rows() -> list[dict[str, Any]]:
            return await rows(pipeline, f"SELECT state, source, baseline, value, threshold, window_seconds, causes, "
                                        f"toUnixTimestamp64Milli(at) AS at_ms FROM sms.alerts FINAL WHERE {where}")

        [row] = await eventually(firing_rows, timeout=30)
        assert (row["state"], row["source"], row["baseline"], row["at_ms"]) == ("firing", "grafana", "previous",
                                                                                started_ms)
        assert (row["value"], row["threshold"], row["window_seconds"]) == (0.41, 0.8, 3600)
        causes = [c if isinstance(c, dict) else dict(zip(CAUSE_FIELDS, c, strict=True)) for c in row["causes"]]
        assert (causes[0]["dimension"], causes[0]["value"]) in {("province", "广东"), ("error_code", OUTAGE_CODE)}, causes
        assert ("province", "广东") in [(c["dimension"], c["value"]) for c in causes], causes
        code = next(c for c in causes if c["dimension"] == "error_code")
        assert code["value"] == OUTAGE_CODE and code["meaning"], causes
        assert not [c for c in causes if c["dimension"] == "carrier"], causes  # fixed by the scope

        def posted() -> dict[str, Any] | None:
            bodies = dict(hooks)
            return bodies if len(bodies) == 3 else None

        bodies = await eventually(posted, timeout=15)
        generic = bodies["generic"]
        assert (generic["source"], generic["rule"], generic["key"], generic["state"]) == (
            "grafana", "sms-rate-floor", "aliyun/mobile", "firing")
        assert generic["causes"][0]["value"] in ("广东", OUTAGE_CODE) and generic["baseline"] == "previous"
        text = bodies["dingtalk"]["text"]["content"]
        assert text.startswith("[FIRING] sms-rate-floor aliyun/mobile") and "why (against the time just before)" in text
        assert f"error_code={OUTAGE_CODE}" in text and "province=广东" in text and code["meaning"] in text
        assert bodies["slack"]["text"] == text

        hooks.clear()
        ends = starts + 600
        status, answer = await relay_post(
            pipeline, orjson.dumps(grafana_payload("resolved", starts, ends, provider="aliyun", carrier="mobile")))
        assert status == 200 and answer["relayed"][0]["state"] == "resolved", answer

        async def resolved() -> list[dict[str, Any]]:
            return [r for r in await firing_rows() if r["state"] == "resolved"]

        [row] = await eventually(resolved, timeout=30)
        assert row["at_ms"] == int(ends * 1000) and row["causes"] == [] and row["source"] == "grafana"
        assert len(await firing_rows()) == 2  # one firing row for both repeats, one resolved
        assert (await eventually(lambda: hooks, timeout=15))[0][1]["state"] == "resolved"
    finally:
        await runner.cleanup()


async def test_a_malformed_notification_is_refused_and_dead_lettered(pipeline: Runtime) -> None:
    raw = orjson.dumps({"receiver": f"sms-relay-{time.time_ns()}", "status": "firing", "alerts": [
        {"status": "pending", "labels": {"alertname": "SMS delivery rate below floor"}, "startsAt": iso(time.time())}]})
    status, answer = await relay_post(pipeline, raw)
    assert status == 400 and "alerts[0].status must be firing or resolved" in answer["error"], answer

    async def found() -> list[Any]:
        return [r for r in await dead_letters(pipeline) if r.value == raw]

    record = (await eventually(found))[0]
    headers = dict(record.headers)
    assert headers["endpoint"] == relay.PATH.encode() and b"must be firing or resolved" in headers["reason"]


async def test_a_worker_process_relays_through_a_publisher_of_its_own(pipeline_dir: Path, tmp_path: Path) -> None:
    """`sms-analytics worker` (worker, sink and query endpoint, no receivers): the relay gets a publisher of
    its own, and the alert reaches the warehouse through that process's broker and sink."""
    settings = pipeline_settings(tmp_path, sms_app_id="relay-worker",
                                 clickhouse_url=pipeline_settings(pipeline_dir).warehouse_url)
    runtime = Runtime(settings, Parts(receiver=False))
    await runtime.start()
    try:
        assert runtime.publisher is None and runtime._own_publisher is not None
        account = f"acct{time.time_ns() % 10**9}"
        body = grafana_payload("firing", time.time() - 60, None, provider="kx", account=account)
        body["alerts"][0]["labels"]["alertname"] = "SMS balance or package quota running out"
        status, answer = await relay_post(runtime, orjson.dumps(body))
        assert status == 200 and answer["relayed"] == [{"rule": "sms-quota-runout", "key": f"kx/{account}",
                                                       "state": "firing", "causes": 0}], answer

        async def landed() -> list[dict[str, Any]]:
            return await rows(runtime, f"SELECT source, threshold FROM sms.alerts WHERE key = 'kx/{account}'")

        assert await eventually(landed, timeout=30) == [{"source": "grafana", "threshold": 24.0}]
    finally:
        await runtime.stop()
