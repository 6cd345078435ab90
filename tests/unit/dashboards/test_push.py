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

from sms_analytics.dashboards import alerting, build, push, relay
from sms_analytics.settings import GrafanaClickHouse, GrafanaCredentials, GrafanaRelay, Settings
from tests import grafana_provisioning
from tests.conftest import serve
from tests.grafana_standin import DEFAULT_RECEIVER, REDACTED, RULE_REQUIRED, GrafanaStandin

TOKEN = "glsa_standin_token_0123456789"
CH_PASSWORD = "ch-secret-9f8e7d6c5b4a"
RELAY_TOKEN = "sms-query-token-7c6b5a4f3e"  # SMS_QUERY_TOKEN: the relay's bearer token
ALERTING_WRITES = ("/api/v1/provisioning/alert-rules", "/api/v1/provisioning/folder/",
                   "/api/v1/provisioning/contact-points", "/api/v1/provisioning/policies")
RELAY_PATHS = ("/api/v1/provisioning/contact-points", "/api/v1/provisioning/policies")


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


async def run_push(url: str, credentials: GrafanaCredentials | None = None, target: GrafanaRelay | None = None,
                   **ch: Any) -> list[push.Outcome]:
    return await asyncio.to_thread(push.run, url, credentials or GrafanaCredentials(token=TOKEN), clickhouse(**ch),
                                   target=target or GrafanaRelay(token=RELAY_TOKEN))


def counts(standin: GrafanaStandin) -> tuple[int, int, int, int, int, int]:
    """Folders, datasources, dashboards, rules, contact points (Grafana's default email one included) and
    routes of the policy tree."""
    s = standin.state
    return (len(s.folders), len(s.datasources), len(s.dashboards), len(s.rules), len(s.contact_points),
            len(s.policies.get("routes") or []))


def relay_point(standin: GrafanaStandin) -> dict[str, Any]:
    [point] = [p for p in standin.state.contact_points.values() if p["name"] == relay.CONTACT_POINT]
    return point


def outcome(outcomes: list[push.Outcome], kind: str) -> push.Outcome:
    [found] = [o for o in outcomes if o.kind == kind]
    return found


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

    # the relay's contact point (relay.contact_point(), the token itself) and the route to it
    point = relay_point(standin)
    assert point == {"uid": relay.CONTACT_POINT, "name": relay.CONTACT_POINT, "type": "webhook",
                     "disableResolveMessage": False, "provenance": "",
                     "settings": {"url": relay.RELAY_URL, "httpMethod": "POST", "authorization_scheme": "Bearer",
                                  "authorization_credentials": RELAY_TOKEN}}
    assert state.policies == {"receiver": DEFAULT_RECEIVER, "group_by": ["grafana_folder", "alertname"],
                              "routes": [relay.route(push.FOLDER_TITLE)]}
    assert state.policies["routes"][0]["object_matchers"] == [["grafana_folder", "=", "SMS analytics"]]
    assert state.policies_provenance == ""
    assert (outcome(outcomes, "contact point").action, outcome(outcomes, "notification policy").action) == (
        "created", "created")

    writes = [r for r in state.requests if r["method"] != "GET" and r["path"].startswith(ALERTING_WRITES)]
    assert {r["path"] for r in writes} >= set(RELAY_PATHS)
    assert writes and all(r["headers"].get("X-Disable-Provenance") == "true" for r in writes)


async def test_second_push_updates_instead_of_duplicating(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    first = counts(standin)
    ids = {uid: r["id"] for uid, r in standin.state.rules.items()}
    policies_before = standin.state.policies
    puts = len([r for r in standin.state.requests if r["path"] == "/api/v1/provisioning/policies"])
    outcomes = await run_push(url, password=None)  # no password: the stored one is kept
    assert counts(standin) == first == (1, 1, 2, 9, 2, 1)
    assert {o.action for o in outcomes} == {"updated", "unchanged"}
    # the token cannot be read back to compare: the contact point is put again; the route is not
    assert outcome(outcomes, "contact point").action == "updated"
    assert outcome(outcomes, "notification policy").action == "unchanged"
    policy_calls = [r for r in standin.state.requests if r["path"] == "/api/v1/provisioning/policies"][puts:]
    assert [r["method"] for r in policy_calls] == ["GET"] and standin.state.policies is policies_before
    assert relay_point(standin)["settings"]["authorization_credentials"] == RELAY_TOKEN
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
    assert outcome(outcomes, "rule group").detail == "interval 60s (was 300s)"


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


# --- the relay's contact point and notification policy ------------------------------------------------

async def test_the_route_joins_the_users_policy_tree(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    pager = {"uid": "team-pager", "name": "team-pager", "type": "webhook",
             "settings": {"url": "http://pager.example/hook"}}
    user_route = {"receiver": DEFAULT_RECEIVER, "object_matchers": [["team", "=", "db"]], "continue": True}
    user_tree = {"receiver": "team-pager", "group_by": ["alertname"], "repeat_interval": "12h", "routes": [user_route]}
    ui = {"Authorization": f"Bearer {TOKEN}", "X-Disable-Provenance": "true"}  # made in the UI: no provenance
    async with aiohttp.ClientSession(url, headers=ui) as http:
        async with http.post("/api/v1/provisioning/contact-points", json=pager) as resp:
            assert resp.status == 202
        async with http.put("/api/v1/provisioning/policies", json=user_tree) as resp:
            assert resp.status == 202
    outcomes = await run_push(url)
    assert standin.state.policies == {**user_tree, "routes": [user_route, relay.route(push.FOLDER_TITLE)]}
    policy = outcome(outcomes, "notification policy")
    assert (policy.action, policy.detail) == ("created", "root receiver team-pager, 1 other route kept")
    assert {p["name"] for p in standin.state.contact_points.values()} == {DEFAULT_RECEIVER, "team-pager", "sms-relay"}

    outcomes = await run_push(url)  # nothing differs: the tree is not put back
    assert outcome(outcomes, "notification policy").action == "unchanged"
    assert standin.state.policies == {**user_tree, "routes": [user_route, relay.route(push.FOLDER_TITLE)]}


async def test_a_changed_route_is_updated_in_place(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    nested = {"receiver": DEFAULT_RECEIVER, "object_matchers": [["severity", "=", "page"]]}
    user_route = {"receiver": DEFAULT_RECEIVER, "object_matchers": [["team", "=", "db"]]}
    ours = {**relay.route(push.FOLDER_TITLE), "group_wait": "1m", "routes": [nested]}  # edited in the UI
    standin.state.policies["routes"] = [ours, user_route]
    outcomes = await run_push(url)
    assert outcome(outcomes, "notification policy").action == "updated"
    assert standin.state.policies["routes"] == [{**relay.route(push.FOLDER_TITLE), "routes": [nested]}, user_route]
    assert standin.state.policies["receiver"] == DEFAULT_RECEIVER


async def test_a_changed_relay_url_updates_the_contact_point(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    moved = "https://query.internal:8443/v1/grafana/alerts"
    outcomes = await run_push(url, target=GrafanaRelay(url=moved, token=RELAY_TOKEN))
    point = outcome(outcomes, "contact point")
    assert (point.action, point.detail) == ("updated", f"webhook {moved} (was {relay.RELAY_URL}), bearer token set")
    assert relay_point(standin)["settings"] == {**relay.contact_point(moved, RELAY_TOKEN)["settings"]}
    assert counts(standin)[4] == 2  # updated, not added
    assert outcome(outcomes, "notification policy").action == "unchanged"
    with pytest.raises(push.PushError, match="--relay-url must be an http"):
        await run_push(url, target=GrafanaRelay(url="worker:8081", token=RELAY_TOKEN))


async def test_no_query_token_skips_the_relay_with_the_reason(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    outcomes = await run_push(url, target=GrafanaRelay(url="http://worker:8081/v1/grafana/alerts"))
    skipped = [o for o in outcomes if o.action == "skipped"]
    assert [o.kind for o in skipped] == ["contact point", "notification policy"]
    assert all(o.detail == push.NO_RELAY_TOKEN and "SMS_QUERY_TOKEN" in o.line() for o in skipped)
    assert push.summary(outcomes) == "13 created, 2 skipped, 1 unchanged"
    assert counts(standin) == (1, 1, 2, 9, 1, 0)  # Grafana's defaults untouched
    assert not [r for r in standin.state.requests if r["path"].startswith(RELAY_PATHS)]


async def test_a_file_provisioned_contact_point_is_a_clear_error(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    await run_push(url)
    relay_point(standin)["provenance"] = "file"  # as in a Grafana provisioned from sms-relay.yaml
    with pytest.raises(push.PushError, match=r"refused contact point sms-relay: 403 .*contact point or policy tree"):
        await run_push(url)


# --- auth and errors --------------------------------------------------------------------------------

async def test_basic_auth_push_and_wrong_password(grafana: tuple[GrafanaStandin, str]) -> None:
    standin, url = grafana
    with pytest.raises(push.PushError, match=r"rejected the credentials \(401 Invalid username or password\)"):
        await run_push(url, GrafanaCredentials(user="admin", password="wrong"))
    assert counts(standin) == (0, 0, 0, 0, 1, 0)
    await run_push(url, GrafanaCredentials(user="admin", password="admin-pass"))
    assert counts(standin) == (1, 1, 2, 9, 2, 1)
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
        # contact points and policies: secrets redacted, a redacted one kept, receivers must exist
        point = {**relay.contact_point(relay.RELAY_URL, RELAY_TOKEN), "name": relay.CONTACT_POINT}
        for broken in ({**point, "settings": {}}, {**point, "type": "carrier-pigeon"}, {**point, "name": ""}):
            async with http.post("/api/v1/provisioning/contact-points", json=broken) as resp:
                assert resp.status == 400
        async with http.post("/api/v1/provisioning/contact-points", json=point) as resp:
            assert resp.status == 202
        async with http.post("/api/v1/provisioning/contact-points", json=point) as resp:
            assert resp.status == 400  # the uid is taken
        async with http.get("/api/v1/provisioning/contact-points", params={"name": relay.CONTACT_POINT}) as resp:
            [listed] = await resp.json()
            assert listed["settings"]["authorization_credentials"] == REDACTED and "provenance" in listed
        async with http.put("/api/v1/provisioning/contact-points/" + listed["uid"], json=listed) as resp:
            assert resp.status == 202 and await resp.json() == {"message": "contactpoint updated"}
        async with http.put("/api/v1/provisioning/contact-points/nope", json=listed) as resp:
            assert resp.status == 404
        async with http.get("/api/v1/provisioning/policies") as resp:
            assert await resp.json() == {"receiver": DEFAULT_RECEIVER, "group_by": ["grafana_folder", "alertname"]}
        for tree in ({"group_by": ["alertname"]}, {"receiver": "nobody"},
                     {"receiver": DEFAULT_RECEIVER, "routes": [{"receiver": "nobody"}]},
                     {"receiver": DEFAULT_RECEIVER, "object_matchers": [["a", "=", "b"]]},
                     {"receiver": DEFAULT_RECEIVER, "routes": [{"object_matchers": [["a", "==", "b"]]}]},
                     {"receiver": DEFAULT_RECEIVER, "group_wait": "soon"}):
            async with http.put("/api/v1/provisioning/policies", json=tree) as resp:
                assert resp.status == 400, tree
        async with http.put("/api/v1/provisioning/policies", json={"receiver": relay.CONTACT_POINT}) as resp:
            assert resp.status == 202 and await resp.json() == {"message": "policies updated"}
        async with http.get("/api/v1/provisioning/policies") as resp:
            assert await resp.json() == {"receiver": relay.CONTACT_POINT, "provenance": "api"}
