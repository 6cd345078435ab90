"""Grafana alert rules: the YAML on disk is what alerting.py builds, escaped as Grafana's file provisioning
reads it (tests/grafana_provisioning.py: field by field, from Grafana's source); the dashboard and
datasource provisioning files follow the same rule; every rule is a well-formed A (ClickHouse) -> B (reduce
last) -> C (threshold) chain, and every rule's SQL, expanded as the plugin does for a range ending now,
runs on the warehouse; with scenario data the rules fire for a bad provider and not for a healthy one."""

from __future__ import annotations

import copy
import json
import operator
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from sms_analytics.dashboards import alerting, build, pipeline_health
from tests.grafana_provisioning import (
    ALERT_RULES_FILE,
    ENV,
    RAW,
    env_references,
    grafana_reads,
    interpolate,
    schema_of,
    strings,
)

RULES = alerting.rules()
BY_UID = {r["uid"]: r for r in RULES}
OPS = {"gt": operator.gt, "lt": operator.lt}
PROVISIONING = alerting.PATH.parents[1]
ALERT_MODULES = {"sms-alerts.yaml": alerting, "sms-pipeline-alerts.yaml": pipeline_health}
INTENDED_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*\}")  # ${GRAFANA_CLICKHOUSE_USER}: meant to be expanded


def no_env(name: str) -> str:
    return ""  # Grafana's environment as far as the rules go: they must read none of it


def provisioning_files() -> list[Path]:
    return sorted(PROVISIONING.rglob("*.y*ml"))


# --- (a): the files on disk, as Grafana reads them ---------------------------------------------------

def test_grafana_interpolation_model() -> None:
    """values.interpolateValue as modelled (Go's os.ExpandEnv per part between `$$`)."""
    env = {"USER": "u", "X": "x"}.get
    assert interpolate("${USER}:$X $$X a$$$$b $__timeFilter(m) {{ $labels.p }} cost $", lambda n: env(n, "")) == \
        "u:x $X a$$b (m) {{ .p }} cost $"
    assert interpolate("$__env{USER}/${}/$1", lambda n: env(n, "")) == "u//"


@pytest.mark.parametrize("name", ALERT_MODULES)
def test_alert_files_are_what_grafana_needs(name: str, tmp_path: Path) -> None:
    """Read as Grafana reads it, the file gives the rules the module builds: queries keep the plugin's
    macros, annotations their template variables, and nothing reads the environment."""
    module: ModuleType = ALERT_MODULES[name]
    path = PROVISIONING / "alerting" / name
    text = path.read_text(encoding="utf-8")
    assert text == (alerting.render() if module is alerting else pipeline_health.render_alerts()), f"{name}: rerun"
    assert grafana_reads(yaml.safe_load(text), ALERT_RULES_FILE, no_env) == module.provisioning()
    assert env_references(yaml.safe_load(text), ALERT_RULES_FILE) == set()
    for where, raw in strings(yaml.safe_load(text), ALERT_RULES_FILE, RAW):
        assert "$$" not in raw and "${" not in raw, (where, raw)  # same text under #127214 (braced ${VAR})
    if module is alerting:
        written = alerting.write(tmp_path / "a.yaml")
        assert written.read_text(encoding="utf-8") == alerting.render()


@pytest.mark.parametrize("render", [alerting.render, pipeline_health.render_alerts], ids=["alerting", "pipeline"])
def test_a_dollar_is_escaped_exactly_where_grafana_interpolates(render: Any) -> None:
    """A `$` in every kind of field: Grafana must read back each as written."""
    doc = copy.deepcopy(alerting.provisioning() if render is alerting.render else pipeline_health.provisioning())
    group = doc["groups"][0]
    group["name"] += " $GROUP"
    rule = group["rules"][0]
    rule["title"] += " ($ per message)"
    rule["labels"]["route"] = "{{ $labels.team }}-$TEAM"
    rule["annotations"]["summary"] = "{{ $labels.x }} costs $5 ({{ $values.B.Value }})"
    rule["data"][0]["model"]["comment"] = "$__interval $HOME $$"
    text = render(doc)
    assert grafana_reads(yaml.safe_load(text), ALERT_RULES_FILE, no_env) == doc
    for where, raw in strings(yaml.safe_load(text), ALERT_RULES_FILE, ENV):
        assert re.sub(r"\$\$", "", raw).count("$") == 0, (where, raw)
    rule["annotations"]["runbook"] = "${RUNBOOK_URL}"
    with pytest.raises(ValueError):
        render(doc)


def test_every_dollar_of_a_rule_query_reaches_the_plugin_single() -> None:
    """The query models are taken raw: `$$__timeFilter` would reach the plugin as written (issue 13)."""
    loaded = yaml.safe_load(alerting.PATH.read_text(encoding="utf-8"))
    models = [q["model"]["rawSql"] for g in loaded["groups"] for r in g["rules"] for q in r["data"] if "rawSql" in q["model"]]
    assert len(models) == len(RULES) and all("$$" not in m for m in models)
    assert all("$__timeFilter(" in m or "$__toTime" in m for m in models)


@pytest.mark.parametrize("path", [p for p in provisioning_files() if p.parent.name != "alerting"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_datasource_and_dashboard_provisioning_dollars(path: Path) -> None:
    """Datasource and dashboard-provider files are interpolated in every field: a `$` there is either an
    intended `${NAME}` environment reference (the datasource credentials) or escaped as `$$`."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    schema = schema_of(path)
    for where, text in strings(doc, schema, ENV):
        assert "$" not in INTENDED_REFERENCE.sub("", text.replace("$$", "")), (where, text)
    expanded = grafana_reads(doc, schema, lambda name: f"<{name}>")
    for where, text in strings(expanded, schema, ENV):
        assert "${" not in text, (where, text)
    assert env_references(doc, schema) <= {m[2:-1] for m in INTENDED_REFERENCE.findall(path.read_text("utf-8"))}


def test_dashboards_and_rules_share_one_folder_by_title() -> None:
    """One "SMS" folder. Alert-rule groups name theirs by title: the alerting provisioner's
    getOrCreateFolderByTitle (pkg/services/provisioning/alerting/rules_provisioner.go) gets a root folder by
    Title, else creates one with a random uid; a rule file cannot give a uid (grafana/grafana#125079). A
    dashboard provider with a folderUid gets and creates the folder by that uid instead, so a second "SMS"
    would appear; without one, FileReader.getOrCreateFolder (pkg/services/provisioning/dashboards/
    file_reader.go) gets it by Title and creates it under that title: both meet whichever runs first."""
    titles = set()
    for path in sorted((PROVISIONING / "dashboards").glob("*.y*ml")):
        doc = grafana_reads(yaml.safe_load(path.read_text(encoding="utf-8")), schema_of(path), no_env)
        for provider in doc["providers"]:
            assert "folderUid" not in provider, path
            assert provider["options"].get("foldersFromFilesStructure") is False, path
            titles.add(provider["folder"])
    for path in sorted((PROVISIONING / "alerting").glob("*.y*ml")):
        doc = grafana_reads(yaml.safe_load(path.read_text(encoding="utf-8")), ALERT_RULES_FILE, no_env)
        titles |= {group["folder"] for group in doc.get("groups", [])}
    assert titles == {alerting.FOLDER} == {pipeline_health.FOLDER} == {"SMS"}  # one title, no path ("a/b")


def test_dashboard_json_is_not_interpolated() -> None:
    """Grafana does not interpolate dashboard JSON files: a `$` there is the panel's own, never `$$`."""
    for name in [*build.DASHBOARDS, *build.PROMETHEUS_DASHBOARDS]:
        text = (build.JSON_DIR / name).read_text(encoding="utf-8")
        assert "$$" not in text, name
        assert "$__" in text and json.loads(text)["panels"], name


# --- (b): structure --------------------------------------------------------------------------------

def test_group() -> None:
    doc = alerting.provisioning()
    assert doc["apiVersion"] == 1 and len(doc["groups"]) == 1
    group = doc["groups"][0]
    assert (group["folder"], group["interval"], group["orgId"]) == ("SMS", "1m", 1)
    uids = [r["uid"] for r in group["rules"]]
    assert len(uids) == len(set(uids)) == 9
    assert set(uids) == {"sms-rate-floor", "sms-rate-drop", "sms-receipt-blackout", "sms-pending-backlog",
                         "sms-latency-p95", "sms-unmapped-codes", "sms-conversion-drop", "sms-quota-runout",
                         "sms-region-rate-floor"}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["uid"])
def test_rule_structure(rule: dict[str, Any]) -> None:
    for key in ("uid", "title", "condition", "for", "noDataState", "execErrState", "labels", "annotations", "data"):
        assert rule[key], key
    assert rule["condition"] == "C" and rule["noDataState"] == "OK" and rule["execErrState"] == "Error"
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    a, b, c = rule["data"]
    assert [d["refId"] for d in rule["data"]] == ["A", "B", "C"]
    assert a["datasourceUid"] == "sms-clickhouse" and a["relativeTimeRange"]["to"] == 0
    assert a["relativeTimeRange"]["from"] > 0
    m = a["model"]
    assert m["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "sms-clickhouse"}
    assert (m["format"], m["editorType"], m["queryType"], m["pluginVersion"]) == (1, "sql", "table", "4.20.0")
    assert m["intervalMs"] > 0 and m["maxDataPoints"] > 0 and m["refId"] == "A"
    for d in (b, c):
        assert d["datasourceUid"] == "__expr__" and d["model"]["datasource"]["uid"] == "__expr__"
    assert (b["model"]["type"], b["model"]["expression"], b["model"]["reducer"]) == ("reduce", "A", "last")
    assert (c["model"]["type"], c["model"]["expression"]) == ("threshold", "B")
    (cond,) = c["model"]["conditions"]
    assert cond["evaluator"]["type"] in OPS and len(cond["evaluator"]["params"]) == 1
    # no template variables: every `$` starts a plugin macro
    sql = m["rawSql"]
    assert all(sql.startswith("$__", i) for i in (k for k, ch in enumerate(sql) if ch == "$")), sql
    assert "$__timeFilter" in sql or "$__toTime" in sql


def test_p95_is_the_third_level() -> None:
    sql = BY_UID["sms-latency-p95"]["data"][0]["model"]["rawSql"]
    assert "quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state)" in sql and "q[3]" in sql


# --- (c): on the warehouse -------------------------------------------------------------------------




def test_quota_rule_takes_the_setting() -> None:
    """SMS_QUOTA_ALERT_HOURS (default 24) is the quota rule's threshold; provisioning() takes another."""
    assert alerting.QUOTA_HOURS == 24.0
    threshold = BY_UID["sms-quota-runout"]["data"][2]["model"]["conditions"][0]["evaluator"]
    assert threshold == {"type": "lt", "params": [24.0]}
    [group] = alerting.provisioning(6.0)["groups"]
    [quota] = [r for r in group["rules"] if r["uid"] == "sms-quota-runout"]
    assert quota["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [6.0]
    assert "6 h (SMS_QUOTA_ALERT_HOURS)" in quota["annotations"]["description"]
