"""`sms-analytics dashboards push`: upsert the SMS folder, the ClickHouse datasource, the dashboards
of build.py and the alert rules of alerting.py into a running Grafana over its HTTP API, with
grafana-client (no file provisioning needed on the Grafana side).

Endpoints (Grafana HTTP API, all through grafana-client methods):
  folder      GET /api/folders/{uid} (404 = missing), POST /api/folders, PUT /api/folders/{uid}
  datasource  GET /api/datasources/uid/{uid} (404 = missing), POST /api/datasources,
              PUT /api/datasources/uid/{uid}
  dashboards  POST /api/dashboards/db with folderUid and overwrite=true
  alert rules GET /api/v1/provisioning/alert-rules/{uid} (404 = missing), then PUT it or POST
              /api/v1/provisioning/alert-rules; GET + PUT /api/v1/provisioning/folder/{folderUid}/
              rule-groups/{group} for the group's evaluation interval. Every alerting write sends
              `X-Disable-Provenance: true`, so the rules stay editable in the Grafana UI.
  relay       GET /api/v1/provisioning/contact-points?name=sms-relay, then PUT
              /api/v1/provisioning/contact-points/{uid} or POST /api/v1/provisioning/contact-points: the
              webhook to the relay (relay.py); GET + PUT /api/v1/provisioning/policies: the org's policy tree
              with our route (receiver sms-relay) added or updated in place, the root and every other route
              kept; not put back when the route is already so. Also with `X-Disable-Provenance: true`.
              Without the relay's bearer token (SMS_QUERY_TOKEN) both are skipped: the relay would refuse.

The options (`GrafanaPush`: the Grafana, its credentials, ClickHouse and the relay as Grafana reaches
them) are settings (settings.py; the CLI's options over the environment's). Secrets (the Grafana token
or password, the ClickHouse password, the relay's token) are never printed: only titles, uids, URLs
and versions are. Where this ends: the HTTP calls to Grafana; what the dashboards, rules, contact
point and route are is build.py's, alerting.py's and relay.py's.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from sms_analytics.dashboards import alerting, build, relay
from sms_analytics.model.times import parse_duration
from sms_analytics.settings import GrafanaClickHouse, GrafanaCredentials, GrafanaRelay
from sms_analytics.urls import redact

FOLDER_UID = "sms-analytics"
FOLDER_TITLE = "SMS analytics"
DATASOURCE_UID = build.DATASOURCE["uid"]  # "sms-clickhouse", what every panel and rule refers to
DATASOURCE_TYPE = build.DATASOURCE["type"]
DATASOURCE_NAME = "ClickHouse (sms)"
TIMEOUT_S = 15.0
NO_RELAY_TOKEN = "no SMS_QUERY_TOKEN: the relay refuses calls without its bearer token"


class PushError(Exception):
    """A push that could not be completed; the message is meant for the operator (no secrets)."""


def auth(credentials: GrafanaCredentials) -> str | tuple[str, str]:
    """grafana-client's credential: the token, or (user, password)."""
    if credentials.token and (credentials.user or credentials.password):
        raise PushError("give a token or a user and password, not both")
    if credentials.token:
        return credentials.token.get_secret_value()
    if credentials.user and credentials.password is not None:
        return (credentials.user, credentials.password.get_secret_value())
    raise PushError("no Grafana credentials: give --token (or GRAFANA_TOKEN), or --user and --password "
                    "(or GRAFANA_USER and GRAFANA_PASSWORD)")


@dataclass(frozen=True)
class Outcome:
    kind: str     # folder, datasource, dashboard, alert rule, rule group, contact point, notification policy
    uid: str
    title: str
    action: str   # created, updated, unchanged, skipped
    detail: str = ""

    def line(self) -> str:
        return f"{self.kind} {self.uid} ({self.title}): {self.action}" + (f", {self.detail}" if self.detail else "")


# --- the objects ------------------------------------------------------------------------------------

def datasource_body(ch: GrafanaClickHouse, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST/PUT /api/datasources body. An update keeps the existing name and default flag (which
    someone may have changed on purpose) and sends the password only when one is given, so an
    update without it keeps the stored one."""
    body: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": (existing or {}).get("name") or DATASOURCE_NAME,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": bool((existing or {}).get("isDefault", False)),
        "jsonData": {"host": ch.host, "port": ch.port, "protocol": ch.protocol, "secure": ch.secure,
                     "username": ch.username, "defaultDatabase": ch.database},
    }
    if ch.password:
        body["secureJsonData"] = {"password": ch.password.get_secret_value()}
    return body


def dashboard_bodies(folder_uid: str) -> list[dict[str, Any]]:
    """POST /api/dashboards/db bodies: the dashboards of build.py, into the folder, overwriting."""
    return [{"dashboard": make(), "folderUid": folder_uid, "overwrite": True,
             "message": "sms-analytics dashboards push"} for make in build.DASHBOARDS.values()]


def rule_groups() -> list[dict[str, Any]]:
    """The groups of the alert provisioning file (alerting.provisioning(), the same objects that are
    rendered to sms-alerts.yaml)."""
    return list(alerting.provisioning()["groups"])


def api_rule(rule: dict[str, Any], group: dict[str, Any], folder_uid: str) -> dict[str, Any]:
    """A file-provisioning rule in the provisioning API's ProvisionedAlertRule shape: the same
    fields (uid, title, condition, data, for, noDataState, execErrState, labels, annotations,
    isPaused) plus the ones the file gives per group (folderUID, ruleGroup, orgID). No `$$`
    escaping: the API does not expand environment variables."""
    return {**rule, "folderUID": folder_uid, "ruleGroup": group["name"], "orgID": group.get("orgId", 1)}


def interval_seconds(text: str) -> int:
    """A Prometheus-style duration ("1m", "1h30m") in whole seconds."""
    try:
        return int(parse_duration(text))
    except ValueError:
        raise PushError(f"bad rule group interval {text!r}") from None


def contact_point_body(target: GrafanaRelay) -> dict[str, Any]:
    """The provisioning API's EmbeddedContactPoint (uid, name, type, settings, disableResolveMessage):
    relay.contact_point() with the token itself, where the file has $SMS_QUERY_TOKEN."""
    if target.token is None:
        raise PushError(NO_RELAY_TOKEN)
    return {**relay.contact_point(relay_url(target), target.token.get_secret_value()), "name": relay.CONTACT_POINT}


def relay_url(target: GrafanaRelay) -> str:
    url = target.url or relay.RELAY_URL
    _http_url(url, "--relay-url")
    return url


def _http_url(url: str, option: str) -> urllib.parse.SplitResult:
    """`url` split, or the PushError naming `option` when it is not an http(s) URL with a host."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"{option} must be an http(s) URL, got {redact(url)!r}")
    return parsed


def with_route(tree: dict[str, Any], route: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The policy tree (GET /api/v1/provisioning/policies) with `route` among its routes: the one routing to
    the same receiver updated in place (its other fields, e.g. nested routes, kept), else appended. The
    root and every other route stay as they are. Returns the tree to put back and created, updated or
    unchanged (then nothing needs putting back)."""
    routes = list(tree.get("routes") or [])
    for n, existing in enumerate(routes):
        if existing.get("receiver") == route["receiver"]:
            if all(existing.get(k) == v for k, v in route.items()):
                return tree, "unchanged"
            routes[n] = {**existing, **route}
            action = "updated"
            break
    else:
        routes.append(route)
        action = "created"
    return {**{k: v for k, v in tree.items() if k != "provenance"}, "routes": routes}, action


# --- the steps --------------------------------------------------------------------------------------

def _missing(exc: GrafanaClientError) -> bool:
    return exc.status_code == 404


def upsert_folder(api: GrafanaApi, uid: str, title: str) -> Outcome:
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        created = api.folder.create_folder(title, uid=uid)
        return Outcome("folder", uid, title, "created", f"version {created.get('version', 1)}")
    updated = api.folder.update_folder(uid, title=title, overwrite=True)
    return Outcome("folder", uid, title, "updated", f"version {updated.get('version', '?')}")


def upsert_datasource(api: GrafanaApi, ch: GrafanaClickHouse) -> Outcome:
    try:
        existing = api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        created = api.datasource.create_datasource(datasource_body(ch))
        ds = created.get("datasource", {})
        return Outcome("datasource", DATASOURCE_UID, ds.get("name", DATASOURCE_NAME), "created",
                       f"{_target(ch)}, {'password set' if ch.password else 'no password'}")
    updated = api.datasource.update_datasource_by_uid(DATASOURCE_UID, datasource_body(ch, existing))
    ds = updated.get("datasource", {})
    return Outcome("datasource", DATASOURCE_UID, ds.get("name", existing.get("name", DATASOURCE_NAME)), "updated",
                   f"{_target(ch)}, {'password set' if ch.password else 'password kept'}, "
                   f"version {ds.get('version', '?')}")


def _target(ch: GrafanaClickHouse) -> str:
    return (f"{ch.protocol}{' (TLS)' if ch.secure else ''} {ch.username}@{ch.host}:{ch.port} "
            f"database {ch.database}")


def push_dashboard(api: GrafanaApi, body: dict[str, Any]) -> Outcome:
    saved = api.dashboard.update_dashboard(body)
    version = saved.get("version")
    dash = body["dashboard"]
    return Outcome("dashboard", saved.get("uid", dash["uid"]), dash["title"],
                   "created" if version == 1 else "updated", f"version {version}, {saved.get('url', '')}".rstrip(", "))


def upsert_rule(api: GrafanaApi, rule: dict[str, Any]) -> Outcome:
    prov = api.alertingprovisioning
    try:
        prov.get_alertrule(rule["uid"])
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        prov.create_alertrule(rule, disable_provenance=True)
        return Outcome("alert rule", rule["uid"], rule["title"], "created")
    prov.update_alertrule(rule["uid"], rule, disable_provenance=True)
    return Outcome("alert rule", rule["uid"], rule["title"], "updated")


def set_group_interval(api: GrafanaApi, folder_uid: str, group: str, seconds: int) -> Outcome:
    """PUT of a rule group replaces its rules with the ones in the body: send back the rules the
    group has now (ours, just upserted, and any added in the UI), with the interval set. A group
    already at that interval is left alone."""
    prov = api.alertingprovisioning
    current = prov.get_rule_group(folder_uid, group)
    before = current.get("interval")
    if before == seconds:
        return Outcome("rule group", group, f"folder {folder_uid}", "unchanged", f"interval {seconds}s")
    body = {"title": group, "folderUid": folder_uid, "interval": seconds, "rules": current.get("rules") or []}
    prov.update_rule_group(folder_uid, group, body, disable_provenance=True)
    return Outcome("rule group", group, f"folder {folder_uid}", "updated",
                   f"interval {seconds}s" + (f" (was {before}s)" if before is not None else ""))


def upsert_contact_point(api: GrafanaApi, target: GrafanaRelay) -> Outcome:
    """The contact point named relay.CONTACT_POINT: its integration of that uid (else the first of that
    name) replaced, or created. Grafana never gives the token back (secure settings read "[REDACTED]"),
    so an existing one is always put, with the token: a changed SMS_QUERY_TOKEN reaches Grafana too."""
    body = contact_point_body(target)
    prov = api.alertingprovisioning
    found = [p for p in prov.get_contactpoints(name=relay.CONTACT_POINT) or [] if p.get("name") == relay.CONTACT_POINT]
    url = redact(body["settings"]["url"])
    if not found:
        prov.create_contactpoint(body, disable_provenance=True)
        return Outcome("contact point", body["uid"], relay.CONTACT_POINT, "created", f"webhook {url}, bearer token set")
    existing = next((p for p in found if p.get("uid") == body["uid"]), found[0])
    before = (existing.get("settings") or {}).get("url")
    prov.update_contactpoint(existing["uid"], {**body, "uid": existing["uid"]}, disable_provenance=True)
    was = f" (was {redact(str(before))})" if before and before != body["settings"]["url"] else ""
    return Outcome("contact point", existing["uid"], relay.CONTACT_POINT, "updated",
                   f"webhook {url}{was}, bearer token set")


def policy_title(folder_title: str) -> str:
    return f"grafana_folder = {folder_title}"


def route_policy(api: GrafanaApi, folder_title: str) -> Outcome:
    """Our route (relay.route(): the folder's alerts to the relay) in the org's policy tree, which a PUT
    replaces whole: read it, add or update the route, put it back."""
    prov = api.alertingprovisioning
    route = relay.route(folder_title)
    tree, action = with_route(prov.get_notification_policy_tree(), route)
    if action != "unchanged":
        prov.set_notification_policy_tree(tree, disable_provenance=True)
    others = len(tree.get("routes") or []) - 1
    return Outcome("notification policy", relay.CONTACT_POINT, policy_title(folder_title), action,
                   f"root receiver {tree.get('receiver', '?')}, {others} other route{'s' if others != 1 else ''} kept")


# --- the whole push ---------------------------------------------------------------------------------

def connect(url: str, credentials: GrafanaCredentials, timeout: float = TIMEOUT_S) -> GrafanaApi:
    parsed = _http_url(url, "--grafana-url")
    if parsed.username or parsed.password:
        raise PushError("put no credentials in --grafana-url: use --token or --user/--password")
    # grafana-client appends "api" to the path as given: a sub-path needs its trailing slash.
    path = parsed.path if parsed.path in ("", "/") or parsed.path.endswith("/") else parsed.path + "/"
    return GrafanaApi.from_url(urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, "")),
                               credential=auth(credentials), timeout=timeout)


def push(api: GrafanaApi, ch: GrafanaClickHouse, folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE,
         report: Callable[[Outcome], None] = lambda outcome: None, where: str = "Grafana",
         target: GrafanaRelay | None = None) -> list[Outcome]:
    """Folder, then datasource, then dashboards, then alert rules and their group intervals (rules
    need the folder; panels and rules name the datasource by uid), then the relay's contact point and
    the policy route to it (the route names the contact point). `target`: the relay as Grafana reaches
    it; without its token (or None) those two are skipped. `report` sees each outcome as it happens.
    Raises PushError with an operator-facing message."""
    outcomes: list[Outcome] = []

    def step(what: str, call: Callable[[], Outcome]) -> None:
        outcome = _guarded(what, where, call)
        outcomes.append(outcome)
        report(outcome)

    step(f"folder {folder_uid}", lambda: upsert_folder(api, folder_uid, folder_title))
    step(f"datasource {DATASOURCE_UID}", lambda: upsert_datasource(api, ch))
    for body in dashboard_bodies(folder_uid):
        step(f"dashboard {body['dashboard']['uid']}", partial(push_dashboard, api, body))
    for group in rule_groups():
        for rule in group["rules"]:
            converted = api_rule(rule, group, folder_uid)
            step(f"alert rule {rule['uid']}", partial(upsert_rule, api, converted))
        seconds = interval_seconds(group["interval"])
        step(f"rule group {group['name']}", partial(set_group_interval, api, folder_uid, group["name"], seconds))
    if target is None or target.token is None:
        for kind, title in (("contact point", relay.CONTACT_POINT), ("notification policy", policy_title(folder_title))):
            step(kind, partial(Outcome, kind, relay.CONTACT_POINT, title, "skipped", NO_RELAY_TOKEN))
        return outcomes
    step(f"contact point {relay.CONTACT_POINT}", partial(upsert_contact_point, api, target))
    step("notification policy", partial(route_policy, api, folder_title))
    return outcomes


def _guarded(what: str, where: str, call: Callable[[], Outcome]) -> Outcome:
    """Run one step; turn grafana-client and transport errors into one clear PushError."""
    try:
        return call()
    except PushError:
        raise
    except GrafanaUnauthorizedError as exc:
        raise PushError(f"{where} rejected the credentials (401 {_message(exc) or 'Unauthorized'}) at {what}: "
                        "check --token / GRAFANA_TOKEN or --user / --password") from None
    except GrafanaTimeoutError:
        raise PushError(f"{where} did not answer in time at {what}") from None
    except GrafanaClientError as exc:
        hint = {403: " (the token needs the Admin role, or Editor with datasource and alerting rights; a "
                     "datasource provisioned from a file is read-only; a rule, contact point or policy tree "
                     "provisioned from a file, or by the API without X-Disable-Provenance, can only be changed "
                     "the same way)",
                409: " (a datasource or folder with the same name but another uid exists?)",
                412: " (a dashboard with the same name in that folder?)"}.get(exc.status_code, "")
        raise PushError(f"{where} refused {what}: {exc.status_code} {_message(exc) or 'no message'}{hint}") from None
    except GrafanaServerError as exc:
        raise PushError(f"{where} failed at {what}: {exc.status_code} {_message(exc) or 'server error'}") from None
    except (GrafanaException, niquests.exceptions.RequestException, OSError) as exc:
        raise PushError(f"cannot reach {where} ({type(exc).__name__}: {_short(str(exc))})") from None


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict):
        return str(response.get("message") or "")
    return _short(str(response or ""))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def run(url: str, credentials: GrafanaCredentials, ch: GrafanaClickHouse, folder_uid: str = FOLDER_UID,
        folder_title: str = FOLDER_TITLE, report: Callable[[Outcome], None] = lambda outcome: None,
        timeout: float = TIMEOUT_S, target: GrafanaRelay | None = None) -> list[Outcome]:
    """Connect and push; what the CLI calls."""
    if target is not None and target.token is not None:
        relay_url(target)  # a bad --relay-url fails before anything is pushed
    api = connect(url, credentials, timeout=timeout)
    try:
        return push(api, ch, folder_uid, folder_title, report, where=f"Grafana at {redact(url)}", target=target)
    finally:
        api.client.s.close()


def summary(outcomes: Iterable[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.action] = counts.get(o.action, 0) + 1
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing pushed"
