"""dashboards/pipeline_health.py: the health dashboard and pipeline alert rules on disk are what it makes (split from test_observability.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sms_analytics.dashboards import build, pipeline_health


def test_health_dashboard_on_disk_is_what_build_makes(tmp_path: Path) -> None:
    path = build.JSON_DIR / pipeline_health.FILE_NAME
    assert path.read_text(encoding="utf-8") == build.render(pipeline_health.dashboard()), "rerun the build"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert (doc["uid"], doc["title"]) == ("sms-pipeline-health", "SMS pipeline: health")
    for panel in doc["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "sms-prometheus"}
        assert panel["targets"] and all(t["datasource"] == panel["datasource"] and t["expr"] for t in panel["targets"])
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    assert pipeline_health.FILE_NAME in {p.name for p in build.write(tmp_path)}


def test_pipeline_alert_rules_on_disk_are_what_the_module_makes() -> None:
    text = pipeline_health.ALERTS_PATH.read_text(encoding="utf-8")
    assert text == pipeline_health.render_alerts(), "rerun python -m sms_analytics.dashboards.pipeline_health"
    assert "$" not in text  # no macros, no template variables: nothing for Grafana to expand or escape
    doc = yaml.safe_load(text)
    assert doc == pipeline_health.provisioning()
    [group] = doc["groups"]
    assert (group["folder"], group["interval"]) == ("SMS", "1m")
    by_uid = {r["uid"]: r for r in group["rules"]}
    assert {"sms-sink-lag", "sms-consumer-lag", "sms-dead-letter-rate"} <= set(by_uid)
    for rule in group["rules"]:
        query, reduce, threshold = rule["data"]
        assert query["datasourceUid"] == "sms-prometheus" and query["model"]["expr"]
        assert query["model"]["datasource"] == {"type": "prometheus", "uid": "sms-prometheus"}
        assert (reduce["model"]["type"], reduce["model"]["expression"]) == ("reduce", "A")
        assert (threshold["model"]["type"], threshold["model"]["expression"]) == ("threshold", "B")
        assert rule["condition"] == "C" and rule["labels"]["severity"]
    assert "sms_sink_oldest_unwritten_age_seconds" in by_uid["sms-sink-lag"]["data"][0]["model"]["expr"]
    assert "sms_consumer_lag_records" in by_uid["sms-consumer-lag"]["data"][0]["model"]["expr"]
    assert "rate(sms_dead_letters_total" in by_uid["sms-dead-letter-rate"]["data"][0]["model"]["expr"]


def test_render_escapes_a_dollar_only_where_grafana_interpolates() -> None:
    """Annotations are taken raw (kept single), labels interpolated (doubled); `${` refused in annotations
    (tests/test_grafana_alerts.py checks every field against Grafana's rule)."""
    doc = pipeline_health.provisioning()
    rule = doc["groups"][0]["rules"][0]
    rule["annotations"]["summary"] = "{{ $labels.instance }}"
    rule["labels"]["route"] = "{{ $labels.job }}"
    text = pipeline_health.render_alerts(doc)
    assert "summary: '{{ $labels.instance }}'" in text and "route: '{{ $$labels.job }}'" in text
    rule["annotations"]["summary"] = "${RUNBOOK}"
    with pytest.raises(ValueError):
        pipeline_health.render_alerts(doc)
