"""`sms-analytics dashboards push` against a stand-in Grafana (tests/grafana_standin.py) served on a
free loopback port in the test's loop: push runs in a thread (grafana-client is synchronous) or as
the real console script in a subprocess. No pipeline needed."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from sms_analytics.dashboards import alerting, build, push
from sms_analytics.settings import GrafanaClickHouse, GrafanaCredentials, Settings
from tests import grafana_provisioning
from tests.conftest import serve
from tests.grafana_standin import RULE_REQUIRED, GrafanaStandin

TOKEN = "glsa_standin_token_0123456789"
CH_PASSWORD = "ch-secret-9f8e7d6c5b4a"
ALERTING_WRITES = ("/api/v1/provisioning/alert-rules", "/api/v1/provisioning/folder/")


@pytest_asyncio.fixture
async def grafana() -> AsyncIterator[tuple[GrafanaStandin, str]]:
    standin = GrafanaStandin(token=TOKEN, user="admin", password="admin-pass")
    runner, url = await serve(standin.app())
    try:
        yield standin, url
    finally:
        await runner.cleanup()


def file_groups() -> list[dict[str, Any]]:
    """The alert provisioning file as Grafana reads it, field by field (tests/grafana_provisioning.py):
    `$$` is a literal `$` where Grafana interpolates, and the query models and annotations are as written."""
    doc = yaml.safe_load(alerting.PATH.read_text(encoding="utf-8"))
    return grafana_provisioning.grafana_reads(doc, grafana_provisioning.schema_of(alerting.PATH), lambda _name: "")["groups"]


def clickhouse(**given: Any) -> GrafanaClickHouse:
    """ClickHouse as Grafana reaches it: the settings' defaults, the password and what is given."""
    defaults = Settings(_env_file=None).grafana_push.clickhouse.model_dump()
    return GrafanaClickHouse.model_validate({**defaults, "password": CH_PASSWORD, **given})


async def run_push(url: str, credentials: GrafanaCredentials | None = None, **ch: Any) -> list[push.Outcome]:
    return await asyncio.to_thread(push.run, url, credentials or GrafanaCredentials(token=TOKEN), clickhouse(**ch))


def counts(standin: GrafanaStandin) -> tuple[int, int, int, int]:
    s = standin.state
    return len(s.folders), len(s.datasources), len(s.dashboards), len(s.rules)


# --- a push into an empty Grafana -------------------------------------------------------------------

async def test_push_into_empty_grafana_creates_everything(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    outcomes = await run_push(url, host="ch.internal", port=9000, protocol="native")
    state = standin.state
    assert {o.action for o in outcomes} == {"created", "unchanged"}
    assert [o.kind for o in outcomes if o.action == "unchanged"] == ["rule group"]  # new groups get 1m already

    folder = state.folders[push.FOLDER_UID]
    assert folder["title"] == "SMS analytics" and folder["version"] == 1

    ds = state.datasources["sms-clickhouse"]
    assert (ds["type"], ds["access"], ds["name"]) == ("grafana-clickhouse-datasource", "proxy", "ClickHouse (sms)")
    assert ds["jsonData"] == {"host": "ch.internal", "port": 9000, "protocol": "native", "secure": False,
                              "username": "sms", "defaultDatabase": "sms"}
    assert state.secure["sms-clickhouse"] == {"password": CH_PASSWORD}  # secureJsonData, not jsonData

    assert set(state.dashboards) == {"sms-overview", "sms-drilldown"}
    for make in build.DASHBOARDS.values():
        expected = make()
        saved = state.dashboards[expected["uid"]]
        assert saved["folderUid"] == push.FOLDER_UID and saved["version"] == 1
        assert saved["dashboard"]["panels"] == expected["panels"]
        assert saved["dashboard"]["templating"] == expected["templating"]
        targets = [t for p in saved["dashboard"]["panels"] for t in p["targets"]]
        assert targets and all(t["datasource"]["uid"] == "sms-clickhouse" for t in targets)

    (group,) = file_groups()
    assert set(state.rules) == {r["uid"] for r in group["rules"]}
    for file_rule in group["rules"]:
        pushed = state.rules[file_rule["uid"]]
        assert pushed["folderUID"] == push.FOLDER_UID and pushed["ruleGroup"] == group["name"]
        assert pushed["data"][0]["model"]["rawSql"] == file_rule["data"][0]["model"]["rawSql"]
        assert "$__" in pushed["data"][0]["model"]["rawSql"] and "$$" not in pushed["data"][0]["model"]["rawSql"]
        for key in ("title", "condition", "data", "for", "noDataState", "execErrState", "labels", "annotations"):
            assert pushed[key] == file_rule[key], key
        assert pushed["provenance"] == ""  # X-Disable-Provenance: editable in the UI
    assert state.intervals == {(push.FOLDER_UID, group["name"]): push.interval_seconds(group["interval"])}

    writes = [r for r in state.requests if r["method"] != "GET" and r["path"].startswith(ALERTING_WRITES)]
    assert writes and all(r["headers"].get("X-Disable-Provenance") == "true" for r in writes)


async def test_second_push_updates_instead_of_duplicating(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    first = counts(standin)
    ids = {uid: r["id"] for uid, r in standin.state.rules.items()}
    outcomes = await run_push(url, password=None)  # no password: the stored one is kept
    assert counts(standin) == first == (1, 1, 2, 9)
    assert {o.action for o in outcomes} == {"updated", "unchanged"}
    s = standin.state
    assert s.folders[push.FOLDER_UID]["version"] == 2
    assert s.datasources["sms-clickhouse"]["version"] == 2 and s.secure["sms-clickhouse"] == {"password": CH_PASSWORD}
    assert {d["version"] for d in s.dashboards.values()} == {2}
    assert {r["version"] for r in s.rules.values()} == {2}
    assert {uid: r["id"] for uid, r in s.rules.items()} == ids


async def test_rule_group_interval_is_set_and_ui_rules_in_the_group_are_kept(
        grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    ui_rule = {**alerting.rules()[0], "uid": "added-in-ui", "title": "added in the UI",
               "folderUID": push.FOLDER_UID, "ruleGroup": alerting.GROUP}
    ui = {"Authorization": f"Bearer {TOKEN}", "X-Disable-Provenance": "true"}  # a rule made in the UI has none
    async with aiohttp.ClientSession(url, headers=ui) as http:
        async with http.post("/api/v1/provisioning/alert-rules", json=ui_rule) as resp:
            assert resp.status == 201
        group_path = f"/api/v1/provisioning/folder/{push.FOLDER_UID}/rule-groups/{alerting.GROUP}"
        async with http.get(group_path) as resp:
            group = await resp.json()
        async with http.put(group_path, json={**group, "interval": 300}) as resp:
            assert resp.status == 200
    outcomes = await run_push(url)
    assert "added-in-ui" in standin.state.rules  # a group PUT replaces the group's rules: push sends them back
    assert standin.state.intervals[(push.FOLDER_UID, alerting.GROUP)] == 60
    assert outcomes[-1].detail == "interval 60s (was 300s)"


async def test_rule_owned_by_the_api_is_a_clear_error(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    standin.state.rules["sms-rate-floor"]["provenance"] = "file"  # as in a Grafana provisioned from sms-alerts.yaml
    with pytest.raises(push.PushError, match=r"refused alert rule sms-rate-floor: 403 Resource with provenance "
                                             r"status 'file' cannot be changed to 'none'.*provisioned from a file"):
        await run_push(url)


def test_api_rules_are_the_provisioning_file_rules() -> None:
    (group,) = file_groups()
    (built,) = push.rule_groups()
    converted = [push.api_rule(r, built, "f-uid") for r in built["rules"]]
    assert [r["uid"] for r in converted] == [r["uid"] for r in group["rules"]]
    for api, file_rule in zip(converted, group["rules"], strict=False):
        assert {k: v for k, v in api.items() if k not in ("folderUID", "ruleGroup", "orgID")} == file_rule
        assert (api["folderUID"], api["ruleGroup"], api["orgID"]) == ("f-uid", group["name"], group["orgId"])
    assert push.interval_seconds("1m") == 60 and push.interval_seconds("1h30m") == 5400
    with pytest.raises(push.PushError):
        push.interval_seconds("1 minute")


# --- auth and errors --------------------------------------------------------------------------------

async def test_basic_auth_push_and_wrong_password(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    with pytest.raises(push.PushError, match=r"rejected the credentials \(401 Invalid username or password\)"):
        await run_push(url, GrafanaCredentials(user="admin", password="wrong"))
    assert counts(standin) == (0, 0, 0, 0)
    await run_push(url, GrafanaCredentials(user="admin", password="admin-pass"))
    assert counts(standin) == (1, 1, 2, 9)
    basic = "Basic " + base64.b64encode(b"admin:admin-pass").decode()
    assert basic not in str(standin.state.requests)  # the stand-in's log keeps no Authorization header


async def test_read_only_datasource_is_a_clear_error(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    standin.state.datasources["sms-clickhouse"]["readOnly"] = True  # as a file-provisioned one is
    with pytest.raises(push.PushError,
                       match="refused datasource sms-clickhouse: 403 Cannot update read-only data source"):
        await run_push(url)


def test_credentials_are_required_and_never_in_the_url() -> None:
    with pytest.raises(push.PushError, match="no Grafana credentials"):
        push.connect("http://127.0.0.1:3000", GrafanaCredentials())
    with pytest.raises(push.PushError, match="not both"):
        push.connect("http://127.0.0.1:3000", GrafanaCredentials(token="t", user="u", password="p"))
    with pytest.raises(push.PushError, match="no credentials in --grafana-url") as caught:
        push.connect("http://admin:s3cret@127.0.0.1:3000", GrafanaCredentials(token="t"))
    assert "s3cret" not in str(caught.value)
    assert push.redact("http://admin:s3cret@host:3000/g") == "http://***@host:3000/g"
    assert "s3cret" not in repr(GrafanaCredentials(token="s3cret")) + repr(clickhouse(password="s3cret"))
    api = push.connect("http://grafana.example:3000/sub", GrafanaCredentials(token="t"))
    assert api.client._make_url("/folders/x") == "http://grafana.example:3000/sub/api/folders/x"


# --- the console script -----------------------------------------------------------------------------


# --- the stand-in enforces what Grafana enforces ----------------------------------------------------

async def test_standin_rejects_what_grafana_rejects(grafana: tuple[GrafanaStandin, str]) -> None:
    _, url = grafana
    rule = push.api_rule(alerting.rules()[0], push.rule_groups()[0], "nowhere")
    async with aiohttp.ClientSession(url) as anon, anon.get("/api/folders/x") as resp:
        assert resp.status == 401 and (await resp.json())["message"] == "Unauthorized"
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.get("/api/folders/sms-analytics") as resp:
            assert resp.status == 404 and await resp.json() == {"message": "folder not found", "status": "not-found"}
        async with http.get("/api/datasources/uid/sms-clickhouse") as resp:
            assert resp.status == 404 and await resp.json() == {"message": "Data source not found"}
        async with http.get("/api/v1/provisioning/alert-rules/sms-rate-floor") as resp:
            assert resp.status == 404 and await resp.read() == b""
        async with http.post("/api/dashboards/db", json={"folderUid": "x"}) as resp:
            assert resp.status == 400
        missing_folder = {"dashboard": build.overview(), "folderUid": "missing"}
        async with http.post("/api/dashboards/db", json=missing_folder) as resp:
            assert resp.status == 400 and (await resp.json())["message"] == "folder not found"
        async with http.post("/api/v1/provisioning/alert-rules", json=rule) as resp:
            assert resp.status == 400 and (await resp.json())["message"] == "invalid alert rule: folder does not exist"
        async with http.post("/api/folders", json={"uid": "f1", "title": "F"}) as resp:
            assert resp.status == 200
        async with http.post("/api/v1/provisioning/alert-rules", json={**rule, "folderUID": "f1"}) as resp:
            assert resp.status == 201 and (await resp.json())["provenance"] == "api"  # no X-Disable-Provenance
        for name in RULE_REQUIRED:
            async with http.post("/api/v1/provisioning/alert-rules",
                                 json={k: v for k, v in {**rule, "folderUID": "f1"}.items() if k != name}) as resp:
                assert resp.status == 400, name
        for name in ("refId", "datasourceUid", "model"):
            data = [{k: v for k, v in q.items() if k != name} for q in rule["data"]]
            async with http.put("/api/v1/provisioning/alert-rules/" + rule["uid"],
                                json={**rule, "folderUID": "f1", "data": data}) as resp:
                assert resp.status == 400, name
        async with http.put("/api/v1/provisioning/alert-rules/unknown", json={**rule, "folderUID": "f1"}) as resp:
            assert resp.status == 404
        async with http.post("/api/dashboards/db", json={"dashboard": build.overview(), "folderUid": "f1"}) as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "success"
        async with http.post("/api/dashboards/db", json={"dashboard": build.overview(), "folderUid": "f1"}) as resp:
            assert resp.status == 412 and (await resp.json())["status"] == "name-exists"  # no overwrite
