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

The options (`GrafanaPush`: the Grafana, its credentials, ClickHouse as Grafana reaches it) are
settings (settings.py; the CLI's options over the environment's). Secrets (the Grafana token or
password, the ClickHouse password) are never printed: only titles, uids and versions are. Where
this ends: the HTTP calls to Grafana; what the dashboards and rules are is build.py's and alerting.py's.
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

from sms_analytics.dashboards import alerting, build
from sms_analytics.model.times import parse_duration
from sms_analytics.settings import GrafanaClickHouse, GrafanaCredentials
from sms_analytics.urls import redact

FOLDER_UID = "sms-analytics"
FOLDER_TITLE = "SMS analytics"
DATASOURCE_UID = build.DATASOURCE["uid"]  # "sms-clickhouse", what every panel and rule refers to
DATASOURCE_TYPE = build.DATASOURCE["type"]
DATASOURCE_NAME = "ClickHouse (sms)"
TIMEOUT_S = 15.0



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
    kind: str     # folder, datasource, dashboard, alert rule, rule group
    uid: str
    title: str
    action: str   # created, updated, unchanged
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


# --- the whole push ---------------------------------------------------------------------------------

def connect(url: str, credentials: GrafanaCredentials, timeout: float = TIMEOUT_S) -> GrafanaApi:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"--grafana-url must be an http(s) URL, got {redact(url)!r}")
    if parsed.username or parsed.password:
        raise PushError("put no credentials in --grafana-url: use --token or --user/--password")
    # grafana-client appends "api" to the path as given: a sub-path needs its trailing slash.
    path = parsed.path if parsed.path in ("", "/") or parsed.path.endswith("/") else parsed.path + "/"
    return GrafanaApi.from_url(urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, "")),
                               credential=auth(credentials), timeout=timeout)


def push(api: GrafanaApi, ch: GrafanaClickHouse, folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE,
         report: Callable[[Outcome], None] = lambda outcome: None, where: str = "Grafana") -> list[Outcome]:
    """Folder, then datasource, then dashboards, then alert rules and their group intervals (rules
    need the folder; panels and rules name the datasource by uid). `report` sees each outcome as it
    happens. Raises PushError with an operator-facing message."""
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
                     "datasource provisioned from a file is read-only; a rule provisioned from a file, or by the "
                     "API without X-Disable-Provenance, can only be changed the same way)",
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
        timeout: float = TIMEOUT_S) -> list[Outcome]:
    """Connect and push; what the CLI calls."""
    api = connect(url, credentials, timeout=timeout)
    try:
        return push(api, ch, folder_uid, folder_title, report, where=f"Grafana at {redact(url)}")
    finally:
        api.client.s.close()


def summary(outcomes: Iterable[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.action] = counts.get(o.action, 0) + 1
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing pushed"
