"""A stand-in Grafana for `dashboards push`: an aiohttp app with exactly the HTTP API endpoints push
calls, the status codes and bodies Grafana gives for them, auth checking, and state in memory.

Shapes and codes from Grafana's HTTP API docs (docs/sources/developers/http_api/{folder,dashboard,
data_source}.md, docs/sources/shared/alerts/alerting_provisioning.md) and its handlers
(pkg/api/folder.go + apierrors.ToFolderErrorResponse, pkg/api/dashboard.go + ToDashboardErrorResponse,
pkg/api/datasources.go, pkg/services/ngalert/api/api_provisioning.go, ngalert/models AlertRule
validation). Where Grafana's exact error text could not be confirmed the message is marked `~`
in a comment; the status code is always the documented one.

  folders      GET  /api/folders/{uid}          200 folder | 404 {"message":"folder not found","status":"not-found"}
               POST /api/folders                200 folder | 400 empty title | 409 same uid
               PUT  /api/folders/{uid}          200 folder | 404 | 412 version-mismatch (unless overwrite)
  datasources  GET  /api/datasources/uid/{uid}  200 dto | 404 {"message":"Data source not found"}
               POST /api/datasources            200 {datasource,id,message:"Datasource added",name} | 400 | 409
               PUT  /api/datasources/uid/{uid}  200 {…"Datasource updated"…} | 400 | 403 read-only | 404 | 409
  dashboards   POST /api/dashboards/db          200 {id,uid,url,status:"success",version,slug,folderUid}
                                                | 400 no title / folder not found | 412 name-exists / version-mismatch
  alerting     GET  /api/v1/provisioning/alert-rules/{uid}   200 rule | 404 (empty body)
               POST /api/v1/provisioning/alert-rules         201 rule | 400 validation
               PUT  /api/v1/provisioning/alert-rules/{uid}   200 rule | 400 | 404 (empty body)
               GET  /api/v1/provisioning/folder/{f}/rule-groups/{g}  200 {title,folderUid,interval,rules} | 404
               PUT  /api/v1/provisioning/folder/{f}/rule-groups/{g}  200 body echoed | 400 (rules in the
                                                body replace the group's rules, as in Grafana)
               GET  /api/v1/provisioning/contact-points[?name=]  200 [EmbeddedContactPoint] (uid, name, type,
                                                settings, disableResolveMessage, provenance when set); secure
                                                settings read "[REDACTED]"
               POST /api/v1/provisioning/contact-points       202 the contact point | 400 validation
               PUT  /api/v1/provisioning/contact-points/{uid} 202 {"message":"contactpoint updated"} | 400 |
                                                404; a "[REDACTED]" secure setting keeps the stored value
               GET  /api/v1/provisioning/policies  200 the policy tree (Route: receiver, group_by, routes,
                                                object_matchers, group_wait, ...; provenance when set)
               PUT  /api/v1/provisioning/policies  202 {"message":"policies updated"} | 400 (the body
                                                replaces the whole tree; every receiver must exist)
               A new org has Grafana's defaults: the email contact point grafana-default-email and the tree
               {"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]}.
  auth         Authorization: Bearer <token> or Basic; 401 JSON otherwise (no credentials:
               "Unauthorized"/auth.unauthorized, bad token: "Invalid API key"/api-key.invalid, bad
               password: "Invalid username or password"/password-auth.failed).

Alerting writes record provenance "api" unless the request has an X-Disable-Provenance header
(any value, as Grafana's determineProvenance checks only its presence); then "" (none, editable).
Changing a stored provenance other than none is refused (403), as AlertRuleService does.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_DATA_STATES = ("Alerting", "NoData", "OK", "KeepLast")
EXEC_ERR_STATES = ("Alerting", "Error", "OK", "KeepLast")
RULE_REQUIRED = ("title", "condition", "data", "folderUID", "ruleGroup", "for", "noDataState", "execErrState")
QUERY_REQUIRED = ("refId", "datasourceUid", "model")
RULE_FIELDS = (*RULE_REQUIRED, "labels", "annotations", "isPaused")
PROM_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$|^0$")
CONTACT_POINT_TYPES = ("alertmanager", "dingding", "discord", "email", "googlechat", "kafka", "line", "opsgenie",
                       "pagerduty", "pushover", "sensugo", "slack", "teams", "telegram", "threema", "victorops",
                       "webhook", "wecom")
SECURE_SETTINGS = {"webhook": ("password", "authorization_credentials"), "slack": ("token", "url")}  # of those used
REDACTED = "[REDACTED]"
DEFAULT_RECEIVER = "grafana-default-email"
ROUTE_FIELDS = ("receiver", "group_by", "continue", "object_matchers", "matchers", "match", "match_re",
                "mute_time_intervals", "active_time_intervals", "routes", "group_wait", "group_interval",
                "repeat_interval")
MATCH_TYPES = ("=", "!=", "=~", "!~")
BASE_INTERVAL_S = 10       # [unified_alerting] base interval: group intervals must be multiples of it
DEFAULT_INTERVAL_S = 60    # [unified_alerting] default evaluation interval of a new group


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slugify(title: str) -> str:
    """Grafana's slugify for URLs: lower case, ASCII, runs of other characters to one dash."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _message(http_status: int, message: str, **extra: Any) -> web.Response:
    return _json(http_status, {"message": message, **extra})


@dataclass
class State:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    secure: dict[str, dict[str, str]] = field(default_factory=dict)      # datasource uid -> secureJsonData
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, folderUid, version, id}
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)       # uid -> ProvisionedAlertRule
    intervals: dict[tuple[str, str], int] = field(default_factory=dict)  # (folderUid, group) -> seconds
    contact_points: dict[str, dict[str, Any]] = field(default_factory=lambda: {  # uid -> EmbeddedContactPoint
        "default-email": {"uid": "default-email", "name": DEFAULT_RECEIVER, "type": "email",
                          "settings": {"addresses": "<example@email.com>"}, "disableResolveMessage": False,
                          "provenance": ""}})
    policies: dict[str, Any] = field(default_factory=lambda: {"receiver": DEFAULT_RECEIVER,
                                                              "group_by": ["grafana_folder", "alertname"]})
    policies_provenance: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)         # method, path, headers (no Authorization)
    next_id: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def group_rules(self, folder_uid: str, group: str) -> list[dict[str, Any]]:
        return [r for r in self.rules.values() if r["folderUID"] == folder_uid and r["ruleGroup"] == group]


class GrafanaStandin:
    def __init__(self, token: str | None = None, user: str | None = None, password: str | None = None) -> None:
        self.token, self.user, self.password = token, user, password
        self.state = State()

    # --- app and auth -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/api/folders/{uid}", self.get_folder)
        r.add_post("/api/folders", self.create_folder)
        r.add_put("/api/folders/{uid}", self.update_folder)
        r.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        r.add_post("/api/datasources", self.create_datasource)
        r.add_put("/api/datasources/uid/{uid}", self.update_datasource)
        r.add_post("/api/dashboards/db", self.save_dashboard)
        r.add_get("/api/v1/provisioning/alert-rules/{uid}", self.get_rule)
        r.add_post("/api/v1/provisioning/alert-rules", self.create_rule)
        r.add_put("/api/v1/provisioning/alert-rules/{uid}", self.update_rule)
        r.add_get("/api/v1/provisioning/folder/{folder}/rule-groups/{group}", self.get_group)
        r.add_put("/api/v1/provisioning/folder/{folder}/rule-groups/{group}", self.put_group)
        r.add_get("/api/v1/provisioning/contact-points", self.get_contact_points)
        r.add_post("/api/v1/provisioning/contact-points", self.create_contact_point)
        r.add_put("/api/v1/provisioning/contact-points/{uid}", self.update_contact_point)
        r.add_get("/api/v1/provisioning/policies", self.get_policies)
        r.add_put("/api/v1/provisioning/policies", self.put_policies)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.state.requests.append({"method": request.method, "path": request.path, "headers": headers,
                                    "body": await request.text()})
        denied = self._check(request.headers.get("Authorization", ""))
        if denied is not None:
            return denied
        return await handler(request)

    def _check(self, authorization: str) -> web.Response | None:
        scheme, _, value = authorization.partition(" ")
        if scheme == "Bearer" and value:
            if self.token is not None and value == self.token:
                return None
            return _message(401, "Invalid API key", messageId="api-key.invalid", statusCode=401)
        if scheme == "Basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if self.user is not None and (user, password) == (self.user, self.password):
                return None
            return _message(401, "Invalid username or password", messageId="password-auth.failed", statusCode=401)
        return _json(401, {"extra": None, "message": "Unauthorized", "messageId": "auth.unauthorized",
                           "statusCode": 401, "traceID": ""})

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _message(400, "bad request data")
        return body if isinstance(body, dict) else _message(400, "bad request data")

    async def _checked(self, request: web.Request,
                       validate: Callable[[dict[str, Any]], str | None]) -> dict[str, Any] | web.Response:
        """The JSON body, or the 400 Grafana answers when it does not decode or validate."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        problem = validate(body)
        return _message(400, problem) if problem else body

    async def _update_of(self, request: web.Request, validate: Callable[[dict[str, Any]], str | None],
                         store: dict[str, dict[str, Any]],
                         not_found: web.Response) -> tuple[dict[str, Any], dict[str, Any]] | web.Response:
        """A provisioning PUT's valid body and the stored object of the path's uid; else the 400, the
        `not_found` answer, or the 403 of a provenance that may not change."""
        body = await self._checked(request, validate)
        if isinstance(body, web.Response):
            return body
        existing = store.get(request.match_info["uid"])
        if existing is None:
            return not_found
        denied = self._provenance_denied(existing, self._provenance(request))
        return denied if denied is not None else (body, existing)

    # --- folders ------------------------------------------------------------------------------------

    def _folder_dto(self, folder: dict[str, Any]) -> dict[str, Any]:
        return {**folder, "url": f"/dashboards/f/{folder['uid']}/{slugify(folder['title'])}", "hasAcl": False,
                "canSave": True, "canEdit": True, "canAdmin": True, "canDelete": True}

    async def get_folder(self, request: web.Request) -> web.Response:
        folder = self.state.folders.get(request.match_info["uid"])
        if folder is None:
            return _message(404, "folder not found", status="not-found")
        return _json(200, self._folder_dto(folder))

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        title = str(body.get("title") or "").strip()
        if not title:
            return _message(400, "folder title cannot be empty")
        uid = str(body.get("uid") or f"f{self.state.next_id + 1:09d}")
        if len(uid) > 40:
            return _message(400, "uid too long, max 40 characters")
        if uid in self.state.folders:
            return _message(409, "a folder with the same uid already exists")  # ~ text
        now = _now()
        folder = {"id": self.state.new_id(), "uid": uid, "title": title, "createdBy": "admin", "created": now,
                  "updatedBy": "admin", "updated": now, "version": 1}
        self.state.folders[uid] = folder
        return _json(200, self._folder_dto(folder))

    async def update_folder(self, request: web.Request) -> web.Response:
        folder = self.state.folders.get(request.match_info["uid"])
        if folder is None:
            return _message(404, "folder not found", status="not-found")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return _message(412, "the folder has been changed by someone else", status="version-mismatch")
        if "title" in body:
            if not str(body["title"]).strip():
                return _message(400, "folder title cannot be empty")
            folder["title"] = str(body["title"]).strip()
        folder.update(version=folder["version"] + 1, updated=_now(), updatedBy="admin")
        return _json(200, self._folder_dto(folder))

    # --- datasources --------------------------------------------------------------------------------

    def _ds_dto(self, ds: dict[str, Any]) -> dict[str, Any]:
        secure = self.state.secure.get(ds["uid"], {})
        return {**ds, "typeLogoUrl": "public/plugins/grafana-clickhouse-datasource/img/logo.svg",
                "secureJsonFields": {k: True for k, v in secure.items() if v}}

    async def get_datasource(self, request: web.Request) -> web.Response:
        ds = self.state.datasources.get(request.match_info["uid"])
        if ds is None:
            return _message(404, "Data source not found")
        return _json(200, self._ds_dto(ds))

    def _ds_fields(self, body: dict[str, Any]) -> dict[str, Any] | None:
        # AddDataSourceCommand / UpdateDataSourceCommand: name, type, access binding:"Required"
        if not all(isinstance(body.get(k), str) and body.get(k) for k in ("name", "type", "access")):
            return None
        if body.get("jsonData") is not None and not isinstance(body.get("jsonData"), dict):
            return None
        return {"name": body["name"], "type": body["type"], "access": body["access"], "url": body.get("url", ""),
                "user": body.get("user", ""), "database": body.get("database", ""),
                "basicAuth": bool(body.get("basicAuth", False)), "basicAuthUser": body.get("basicAuthUser", ""),
                "withCredentials": bool(body.get("withCredentials", False)),
                "isDefault": bool(body.get("isDefault", False)), "jsonData": body.get("jsonData") or {}}

    def _name_taken(self, name: str, uid: str) -> bool:
        return any(d["name"] == name and d["uid"] != uid for d in self.state.datasources.values())

    async def create_datasource(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        fields = self._ds_fields(body)
        if fields is None:
            return _message(400, "bad request data")
        uid = str(body.get("uid") or f"d{self.state.next_id + 1:09d}")
        if self._name_taken(fields["name"], uid):
            return _message(409, "data source with the same name already exists")
        if uid in self.state.datasources:
            return _message(409, "data source with the same uid already exists")
        ds = {"id": self.state.new_id(), "uid": uid, "orgId": 1, **fields, "version": 1, "readOnly": False}
        self.state.datasources[uid] = ds
        self.state.secure[uid] = dict(body.get("secureJsonData") or {})
        return _json(200, {"datasource": self._ds_dto(ds), "id": ds["id"], "message": "Datasource added",
                           "name": ds["name"]})

    async def update_datasource(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        fields = self._ds_fields(body)
        if fields is None:
            return _message(400, "bad request data")
        ds = self.state.datasources.get(request.match_info["uid"])
        if ds is None:
            return _message(404, "Data source not found")
        if ds["readOnly"]:
            return _message(403, "Cannot update read-only data source")
        if self._name_taken(fields["name"], ds["uid"]):
            return _message(409, "Failed to update datasource: data source with the same name already exists")
        if body.get("version") not in (None, 0, ds["version"]):
            return _message(409, "Datasource has already been updated by someone else. Please reload and try again")
        ds.update(fields, version=ds["version"] + 1)
        # secureJsonData: given keys replace the stored ones, the others are kept
        self.state.secure.setdefault(ds["uid"], {}).update(body.get("secureJsonData") or {})
        return _json(200, {"datasource": self._ds_dto(ds), "id": ds["id"], "message": "Datasource updated",
                           "name": ds["name"]})

    # --- dashboards ---------------------------------------------------------------------------------

    async def save_dashboard(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        dash = body.get("dashboard")
        if not isinstance(dash, dict) or not str(dash.get("title") or "").strip():
            return _message(400, "Dashboard title cannot be empty", status="empty-name")
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.state.folders:
            return _message(400, "folder not found")
        uid = str(dash.get("uid") or f"a{self.state.next_id + 1:09d}")
        if len(uid) > 40:
            return _message(400, "uid too long, max 40 characters", status="uid-too-long")
        overwrite = bool(body.get("overwrite"))
        existing = self.state.dashboards.get(uid)
        if existing is not None and not overwrite:
            if not dash.get("id"):
                return _message(412, "A dashboard with the same uid already exists", status="name-exists")
            if dash.get("version") != existing["version"]:
                return _message(412, "The dashboard has been changed by someone else", status="version-mismatch")
        title = dash["title"].strip()
        for other_uid, other in self.state.dashboards.items():
            if other_uid != uid and other["folderUid"] == folder_uid and other["dashboard"]["title"] == title \
                    and not overwrite:
                return _message(412, "A dashboard with the same name in the folder already exists",
                                status="name-exists")
        version = existing["version"] + 1 if existing else 1
        ident = existing["id"] if existing else self.state.new_id()
        stored = {**dash, "id": ident, "uid": uid, "version": version}
        self.state.dashboards[uid] = {"dashboard": stored, "folderUid": folder_uid, "version": version, "id": ident,
                                      "message": body.get("message", "")}
        slug = slugify(title)
        return _json(200, {"id": ident, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                           "version": version, "slug": slug, "folderUid": folder_uid})

    # --- alerting provisioning ----------------------------------------------------------------------

    @staticmethod
    def _provenance(request: web.Request) -> str:
        return "" if "X-Disable-Provenance" in request.headers else "api"

    def _validate_rule(self, rule: Any) -> str | None:
        """ProvisionedAlertRule's required fields and AlertRule validation; None when valid."""
        if not isinstance(rule, dict):
            return "bad request data"
        for name in RULE_REQUIRED:
            if rule.get(name) in (None, "", []):
                if name == "title":
                    return "invalid alert rule: title is empty"
                if name == "data":
                    return "invalid alert rule: no queries or expressions are found"
                return f"invalid alert rule: {name} is required"  # ~ text
        data = rule["data"]
        if not isinstance(data, list):
            return "bad request data"
        for n, query in enumerate(data):
            if not isinstance(query, dict):
                return "bad request data"
            for name in QUERY_REQUIRED:
                if query.get(name) in (None, ""):
                    return f"invalid alert rule: query {n} has no {name}"  # ~ text
            if not isinstance(query["model"], dict):
                return f"invalid alert query {query['refId']}: model is not a JSON object"  # ~ text
        refs = [q["refId"] for q in data]
        if rule["condition"] not in refs:
            return f"invalid alert rule: condition {rule['condition']} does not exist, must be one of {refs}"  # ~
        if not isinstance(rule["for"], str) or not PROM_DURATION.match(rule["for"]):
            return "bad request data"  # model.Duration fails to unmarshal
        if rule["noDataState"] not in NO_DATA_STATES:
            return f"invalid alert rule: unknown NoData state option {rule['noDataState']}"
        if rule["execErrState"] not in EXEC_ERR_STATES:
            return f"invalid alert rule: unknown Error state option {rule['execErrState']}"
        if rule["folderUID"] not in self.state.folders:
            return "invalid alert rule: folder does not exist"  # ~ text
        for name in ("labels", "annotations"):
            if rule.get(name) is not None and not (isinstance(rule[name], dict)
                                                   and all(isinstance(v, str) for v in rule[name].values())):
                return "bad request data"
        return None

    def _store_rule(self, rule: dict[str, Any], uid: str, provenance: str,
                    existing: dict[str, Any] | None) -> dict[str, Any]:
        stored = {key: rule.get(key) for key in ("uid", "title", "condition", "data", "folderUID", "ruleGroup", "for",
                                                 "noDataState", "execErrState")}
        stored.update(uid=uid, orgID=1, id=existing["id"] if existing else self.state.new_id(),
                      labels=rule.get("labels") or {}, annotations=rule.get("annotations") or {},
                      isPaused=bool(rule.get("isPaused", False)), updated=_now(),
                      version=(existing["version"] + 1) if existing else 1, provenance=provenance)
        self.state.rules[uid] = stored
        self.state.intervals.setdefault((stored["folderUID"], stored["ruleGroup"]), DEFAULT_INTERVAL_S)
        return stored

    @staticmethod
    def _provenance_denied(existing: dict[str, Any] | None, provenance: str) -> web.Response | None:
        """AlertRuleService: a stored provenance other than none may not change (file -> api,
        api -> none, ...): validation.MakeErrProvenanceChangeNotAllowed, errutil.Forbidden. (The
        newest Grafana lets a user with provisioning-write permission move api -> none; this keeps
        the stricter rule of the releases before it.)"""
        if existing is None or existing["provenance"] in ("", provenance):
            return None
        source, target = existing["provenance"], provenance or "none"
        return _message(403, f"Resource with provenance status '{source}' cannot be changed to '{target}'. "
                             "You must use appropriate API and permissions to manage this resource",
                        messageId="alerting.notifications.invalidProvenance", statusCode=403)

    @staticmethod
    def _rule_out(rule: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in rule.items() if k != "version"}
        if not out["provenance"]:
            del out["provenance"]  # json:"provenance,omitempty"
        return out

    async def get_rule(self, request: web.Request) -> web.Response:
        rule = self.state.rules.get(request.match_info["uid"])
        if rule is None:
            return web.Response(status=404)  # response.Empty(404)
        return _json(200, self._rule_out(rule))

    async def create_rule(self, request: web.Request) -> web.Response:
        body = await self._checked(request, self._validate_rule)
        if isinstance(body, web.Response):
            return body
        uid = str(body.get("uid") or f"r{self.state.next_id + 1:09d}")
        if uid in self.state.rules:
            # ~ text
            return _message(400, "failed to save alert rule: rule UID under the same organisation should be unique")
        return _json(201, self._rule_out(self._store_rule(body, uid, self._provenance(request), None)))

    async def update_rule(self, request: web.Request) -> web.Response:
        found = await self._update_of(request, self._validate_rule, self.state.rules, web.Response(status=404))
        if isinstance(found, web.Response):
            return found
        body, existing = found
        return _json(200, self._rule_out(self._store_rule(body, existing["uid"], self._provenance(request), existing)))

    async def get_group(self, request: web.Request) -> web.Response:
        folder, group = request.match_info["folder"], request.match_info["group"]
        rules = self.state.group_rules(folder, group)
        if not rules:
            return _message(404, "rule group not found", messageId="alerting.alert-rule.notFound", statusCode=404)
        return _json(200, {"title": group, "folderUid": folder, "interval": self.state.intervals[(folder, group)],
                           "rules": [self._rule_out(r) for r in rules]})

    async def put_group(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        folder, group = request.match_info["folder"], request.match_info["group"]
        body.update(folderUid=folder, title=group)  # the path wins, as in RoutePutAlertRuleGroup
        interval = body.get("interval")
        if not isinstance(interval, int) or interval <= 0 or interval % BASE_INTERVAL_S:
            return _message(400, f"invalid alert rule: interval ({interval}s) should be non-zero and divided "
                                 f"exactly by scheduler interval: {BASE_INTERVAL_S}")
        if folder not in self.state.folders:
            return _message(400, "invalid alert rule: folder does not exist")  # ~ text
        rules = body.get("rules") or []
        if not isinstance(rules, list):
            return _message(400, "bad request data")
        for rule in rules:
            if isinstance(rule, dict):
                rule.update(folderUID=folder, ruleGroup=group)
            problem = self._validate_rule(rule)
            if problem:
                return _message(400, problem)
        provenance = self._provenance(request)
        keep = {r.get("uid") for r in rules}
        for existing in self.state.group_rules(folder, group):
            denied = self._provenance_denied(existing, provenance)
            if denied is not None:
                return denied
        for old in self.state.group_rules(folder, group):
            if old["uid"] not in keep:
                del self.state.rules[old["uid"]]
        interval_changed = self.state.intervals.get((folder, group)) != interval
        for rule in rules:
            uid = str(rule.get("uid") or f"r{self.state.next_id + 1:09d}")
            existing = self.state.rules.get(uid)
            # like Grafana's CalculateChanges: only new or changed rules are written (the group
            # interval is a field of every rule, so a new interval changes them all)
            if existing is None or interval_changed or existing["provenance"] != provenance or any(
                    existing.get(k) != rule.get(k, existing.get(k)) for k in RULE_FIELDS):
                self._store_rule(rule, uid, provenance, existing)
        self.state.intervals[(folder, group)] = interval
        return _json(200, body)

    # --- contact points and the notification policy tree ----------------------------------------------

    @staticmethod
    def _contact_point_out(point: dict[str, Any]) -> dict[str, Any]:
        """As GET gives it: secure settings redacted, provenance omitted when none (omitempty)."""
        secure = SECURE_SETTINGS.get(point["type"], ())
        settings = {k: REDACTED if k in secure and v else v for k, v in point["settings"].items()}
        out = {**point, "settings": settings}
        if not out["provenance"]:
            del out["provenance"]
        return out

    def _validate_contact_point(self, point: dict[str, Any]) -> str | None:
        """EmbeddedContactPoint.Valid and the integration's own settings check; None when valid."""
        if not str(point.get("name") or "").strip():
            return "invalid object specification: name should not be empty"  # ~ text
        kind = point.get("type")
        if kind not in CONTACT_POINT_TYPES:
            return f"invalid object specification: unknown type {kind!r}"  # ~ text
        settings = point.get("settings")
        if not isinstance(settings, dict):
            return "invalid object specification: settings should not be empty"  # ~ text
        if kind == "webhook" and not settings.get("url"):
            return "invalid object specification: could not find url property in settings"  # ~ text
        if kind == "webhook" and settings.get("authorization_credentials") and (
                settings.get("username") or settings.get("password")):
            return "invalid object specification: both HTTP Basic Authentication and Authorization Header are set"
        return None

    async def get_contact_points(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        points = [p for p in self.state.contact_points.values() if not name or p["name"] == name]
        return _json(200, [self._contact_point_out(p) for p in sorted(points, key=lambda p: p["name"])])

    async def create_contact_point(self, request: web.Request) -> web.Response:
        body = await self._checked(request, self._validate_contact_point)
        if isinstance(body, web.Response):
            return body
        uid = str(body.get("uid") or f"c{self.state.next_id + 1:09d}")
        self.state.new_id()
        if uid in self.state.contact_points:
            return _message(400, f"invalid object specification: contact point with uid {uid} already exists")  # ~
        point = {"uid": uid, "name": body["name"], "type": body["type"], "settings": dict(body["settings"]),
                 "disableResolveMessage": bool(body.get("disableResolveMessage", False)),
                 "provenance": self._provenance(request)}
        self.state.contact_points[uid] = point
        out = {k: v for k, v in point.items() if k != "provenance" or v}
        return _json(202, out)  # the contact point as created, as RoutePostContactPoint answers

    async def update_contact_point(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        found = await self._update_of(request, self._validate_contact_point, self.state.contact_points,
                                      _message(404, f"contact point with uid {uid} not found"))  # ~ text
        if isinstance(found, web.Response):
            return found
        body, existing = found
        provenance = self._provenance(request)
        secure = SECURE_SETTINGS.get(body["type"], ())
        settings = {k: existing["settings"].get(k, "") if k in secure and v == REDACTED else v
                    for k, v in body["settings"].items()}  # a redacted secret keeps the stored one
        existing.update(name=body["name"], type=body["type"], settings=settings, provenance=provenance,
                        disableResolveMessage=bool(body.get("disableResolveMessage", False)))
        return _json(202, {"message": "contactpoint updated"})

    async def get_policies(self, request: web.Request) -> web.Response:
        tree = dict(self.state.policies)
        if self.state.policies_provenance:
            tree["provenance"] = self.state.policies_provenance
        return _json(200, tree)

    def _validate_route(self, route: Any, root: bool, receivers: set[str]) -> str | None:
        """definitions.Route validation (ValidateChild / Validate) and ValidateReceivers."""
        if not isinstance(route, dict):
            return "bad request data"
        receiver = route.get("receiver")
        if root and not receiver:
            return "invalid object specification: root route must specify a default receiver"
        if root and any(route.get(k) for k in ("object_matchers", "matchers", "match", "match_re")):
            return "invalid object specification: root route must not have any matchers"
        if receiver and receiver not in receivers:
            return f"invalid object specification: receiver '{receiver}' does not exist"  # ~ text
        if not isinstance(route.get("group_by") or [], list):
            return "bad request data"
        for matcher in route.get("object_matchers") or []:
            if not (isinstance(matcher, list) and len(matcher) == 3 and matcher[1] in MATCH_TYPES
                    and all(isinstance(m, str) for m in matcher)):
                return "bad request data"  # ObjectMatchers fails to unmarshal
        for name in ("group_wait", "group_interval", "repeat_interval"):
            value = route.get(name)
            if value is not None and not (isinstance(value, str) and PROM_DURATION.match(value)):
                return "bad request data"  # model.Duration fails to unmarshal
        children = route.get("routes") or []
        if not isinstance(children, list):
            return "bad request data"
        for child in children:
            problem = self._validate_route(child, False, receivers)
            if problem:
                return problem
        return None

    @staticmethod
    def _route_in(route: dict[str, Any]) -> dict[str, Any]:
        """The fields Grafana's Route keeps (others are dropped on decode), children likewise."""
        kept = {k: route[k] for k in ROUTE_FIELDS if route.get(k) not in (None, [], "")}
        if kept.get("routes"):
            kept["routes"] = [GrafanaStandin._route_in(child) for child in kept["routes"]]
        return kept

    async def put_policies(self, request: web.Request) -> web.Response:
        receivers = {p["name"] for p in self.state.contact_points.values()}
        body = await self._checked(request, lambda tree: self._validate_route(tree, True, receivers))
        if isinstance(body, web.Response):
            return body
        provenance = self._provenance(request)
        denied = self._provenance_denied({"provenance": self.state.policies_provenance}, provenance)
        if denied is not None:
            return denied
        self.state.policies = self._route_in(body)
        self.state.policies_provenance = provenance
        return _json(202, {"message": "policies updated"})
