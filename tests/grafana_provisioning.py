"""Grafana's file provisioning as the tests model it: which fields of a provisioning file Grafana passes
through its environment-variable interpolation, and what that interpolation does. No Grafana runs here,
so this is read from Grafana's source (grafana/grafana, main as of 2026):

- pkg/services/provisioning/values/values.go: `interpolateValue` splits a value on `$$`, expands the
  setting expanders (`setting.ExpandVar`, `$__env{NAME}` ...) and then `$NAME` / `${NAME}`
  (`os.ExpandEnv`) in each part, and joins the parts with a single `$`. StringValue, IntValue, BoolValue,
  Int64Value, StringMapValue and JSONValue (every string of the tree) do this when unmarshalled; `.Value()`
  returns the result, `.Raw` the text as written.
- alert rules, pkg/services/provisioning/alerting/rules_types.go: AlertRuleGroupV1, AlertRuleV1 and QueryV1
  read every field with `.Value()` but two: `QueryV1.mapToModel` marshals `Model.Raw` ("Value would try to
  interpolate macros like `$__timeFilter`"), and `mapToModel` sets `alertRule.Annotations =
  rule.Annotations.Raw` (grafana/grafana#54975, "remove interpolation of annotations", since 9.1).
  The open grafana/grafana#127214 would expand braced `${NAME}` only in annotations: the files keep `${`
  and `$$` out of them so that both read the same. relativeTimeRange is models.RelativeTimeRange (numbers).
  Grafana's docs say the same (alerting file provisioning, "Template variable interpolation", added by
  grafana/grafana#84106: "Which fields are interpolated and which aren't. (ex. Labels are interpolated but
  Annotations aren't)").
- datasources, pkg/services/provisioning/datasources/types.go: every field of upsertDataSourceFromConfigV1
  is a values type read with `.Value()` (jsonData a JSONValue, secureJsonData a StringMapValue).
- dashboard providers, pkg/services/provisioning/dashboards/types.go: every field of `configs` is a values
  type read with `.Value()` (options a JSONValue).
- dashboard JSON files are not interpolated: administration/provisioning docs, "Using environment variables":
  "It is not available in the dashboard's definition files just the dashboard provisioning configuration.
  [...] If you have a literal $ in your value and want to avoid interpolation, $$ can be used."
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "env"      # read with .Value(): $NAME / ${NAME} expanded, $$ a literal $
RAW = "raw"      # read with .Raw: as written
PLAIN = "plain"  # not a values type (numbers): as written

QUERY_V1 = {"refId": ENV, "queryType": ENV, "relativeTimeRange": PLAIN, "datasourceUid": ENV, "model": RAW}
ALERT_RULE_V1 = {
    "uid": ENV, "title": ENV, "condition": ENV, "data": [QUERY_V1], "dasboardUid": ENV, "dashboardUid": ENV,
    "panelId": ENV, "noDataState": ENV, "execErrState": ENV, "for": ENV, "keepFiringFor": ENV,
    "missing_series_evals_to_resolve": ENV, "annotations": RAW, "labels": ENV, "isPaused": ENV,
    "notification_settings": ENV, "record": ENV,
}
ALERT_RULE_GROUP_V1 = {"orgId": ENV, "name": ENV, "folder": ENV, "interval": ENV, "rules": [ALERT_RULE_V1]}
# contact points, pkg/services/provisioning/alerting/contact_point_types.go: ContactPointV1 (orgId, name:
# values types) and ReceiverV1 (uid, type, settings a JSONValue, disableResolveMessage): all read with .Value().
RECEIVER_V1 = {"uid": ENV, "type": ENV, "settings": ENV, "disableResolveMessage": ENV}
CONTACT_POINT_V1 = {"orgId": ENV, "name": ENV, "receivers": [RECEIVER_V1]}
# notification policies, notification_policy_types.go: NotificiationPolicyV1 is orgId (values.Int64Value) and
# the route inline as definitions.Route, which is no values type: the tree is read as written.
POLICY_V1 = {"orgId": ENV, **dict.fromkeys(("receiver", "group_by", "routes", "group_wait", "group_interval",
                                            "repeat_interval", "object_matchers", "continue"), PLAIN)}
# One schema per directory: an alerting file may hold rules, contact points and policies.
ALERT_RULES_FILE = {"apiVersion": PLAIN, "groups": [ALERT_RULE_GROUP_V1],
                    "deleteRules": [{"uid": ENV, "orgId": ENV}], "contactPoints": [CONTACT_POINT_V1],
                    "deleteContactPoints": [{"orgId": ENV, "uid": ENV}], "policies": [POLICY_V1],
                    "resetPolicies": [ENV]}
DATASOURCE_V1 = dict.fromkeys(("orgId", "orgName", "version", "name", "type", "access", "url", "user", "database", "basicAuth", "basicAuthUser", "withCredentials", "isDefault", "correlations", "jsonData", "secureJsonData", "editable", "uid"), ENV)
DATASOURCES_FILE = {"apiVersion": PLAIN, "datasources": [DATASOURCE_V1],
                    "deleteDatasources": [{"orgId": ENV, "orgName": ENV, "name": ENV}]}
DASHBOARD_PROVIDER_V1 = dict.fromkeys(("name", "type", "orgId", "folder", "folderUid", "editable", "options", "disableDeletion", "updateIntervalSeconds", "allowUiUpdates"), ENV)
DASHBOARD_PROVIDERS_FILE = {"apiVersion": PLAIN, "providers": [DASHBOARD_PROVIDER_V1]}
# provisioning/<directory>/*.yaml -> the schema Grafana reads it with
SCHEMAS = {"alerting": ALERT_RULES_FILE, "datasources": DATASOURCES_FILE, "dashboards": DASHBOARD_PROVIDERS_FILE}

_SPECIAL = set("*#$@!?-0123456789")
_EXPANDER = re.compile(r"\$__(\w+)\{([^}]*)\}")


def _shell_name(s: str) -> tuple[str, int]:
    """Go's os.getShellName: the variable name after a `$` and how many characters it takes."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}")
        if end == 1:
            return "", 2
        return ("", 1) if end < 0 else (s[1:end], end + 1)
    if s[0] in _SPECIAL:
        return s[0], 1
    n = 0
    while n < len(s) and (s[n].isascii() and (s[n].isalnum() or s[n] == "_")):
        n += 1
    return s[:n], n


def expand_env(s: str, lookup: Callable[[str], str]) -> str:
    """Go's os.Expand (os.ExpandEnv with `lookup`)."""
    out, i, j = [], 0, 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            name, width = _shell_name(s[j + 1:])
            if name:
                out.append(lookup(name))
            elif width == 0:
                out.append("$")  # `$` not followed by a name stays
            j += width
            i = j + 1
        j += 1
    return "".join(out) + s[i:]


def interpolate(value: str, lookup: Callable[[str], str]) -> str:
    """values.interpolateValue: split on `$$`, expanders then os.ExpandEnv per part, joined with `$`."""
    def part(text: str) -> str:
        def expander(m: re.Match[str]) -> str:
            if m.group(1) != "env":
                raise ValueError(f"expander $__{m.group(1)} is not modelled")
            return lookup(m.group(2))
        return expand_env(_EXPANDER.sub(expander, text), lookup)
    return "$".join(part(p) for p in value.split("$$"))


def _interpolate_tree(value: Any, lookup: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, lookup)
    if isinstance(value, dict):
        return {k: _interpolate_tree(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate_tree(v, lookup) for v in value]
    return value


def grafana_reads(doc: Any, schema: Any, lookup: Callable[[str], str], where: str = "") -> Any:
    """What Grafana makes of a parsed provisioning file: ENV fields interpolated, RAW and PLAIN as written.
    A field missing from the schema tables fails: look it up in Grafana's source and add it."""
    if schema == ENV:
        return _interpolate_tree(doc, lookup)
    if schema in (RAW, PLAIN):
        return doc
    if isinstance(schema, list):
        return [grafana_reads(item, schema[0], lookup, f"{where}[{n}]") for n, item in enumerate(doc)]
    unknown = set(doc) - set(schema)
    assert not unknown, f"{where or 'file'}: fields {sorted(unknown)} are not in the Grafana schema tables"
    return {k: grafana_reads(v, schema[k], lookup, f"{where}.{k}") for k, v in doc.items()}


def strings(doc: Any, schema: Any, kind: str, where: str = "") -> list[tuple[str, str]]:
    """(path, text) of every string of the file that Grafana reads as `kind` (ENV, RAW or PLAIN)."""
    if isinstance(schema, str):
        if schema != kind:
            return []
        if isinstance(doc, str):
            return [(where, doc)]
        items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
        return [s for k, v in items for s in strings(v, schema, kind, f"{where}.{k}")]
    if isinstance(schema, list):
        return [s for n, item in enumerate(doc) for s in strings(item, schema[0], kind, f"{where}[{n}]")]
    return [s for k, v in doc.items() for s in strings(v, schema[k], kind, f"{where}.{k}")]


def env_references(doc: Any, schema: Any) -> set[str]:
    """The environment variables Grafana reads for this file (names in its interpolated fields)."""
    names: set[str] = set()

    def record(name: str) -> str:
        names.add(name)
        return ""
    grafana_reads(doc, schema, record)
    return names


def schema_of(path: Path) -> Any:
    """The schema of a file under grafana/provisioning/<directory>/."""
    return SCHEMAS[path.parent.name]
