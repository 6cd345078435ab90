"""Split from test_observability.py (its tests that need no running component)."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
import pytest
import yaml
from sms_analytics.dashboards import build, pipeline_health
from sms_analytics.observability.deadletters import endpoint_label, reason_class
from sms_analytics.observability.metrics import FAMILIES
from tests.integration.test_observability import metric_names


def test_metric_names_are_parsed_from_promql() -> None:
    assert metric_names('sum by (le) (rate(a_bucket{x="1"}[$__rate_interval])) / on() group_left b + '
                        'max_over_time(c[5m:1m]) > 3 and absent({__name__="d"})') == {"a_bucket", "b", "c", "d"}


def test_metric_names_follow_the_conventions() -> None:
    for name in FAMILIES:
        assert name.startswith("sms_"), name
    for name in ("sms_join_busy_seconds_total", "sms_sink_batch_seconds", "sms_sink_rollup_round_seconds",
                 "sms_sink_oldest_unwritten_age_seconds", "sms_embedded_broker_resident_bytes"):
        assert name in FAMILIES


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


@pytest.mark.parametrize("reason, expected", [
    ("body is not valid JSON (UTF-8): unexpected character: line 1 column 1 (char 0)", "unreadable_body"),
    ("body larger than 5242880 bytes (SMS_MAX_BODY_BYTES): at least 6000000 bytes", "body_too_large"),
    ("too many records in one push: 10001 > 10000 (SMS_MAX_RECORDS_PER_PUSH)", "too_many_records"),
    ("phone is not a possible number for its country", "bad_phone"),
    ("phone is not a China mobile number (11 digits starting with 1)", "bad_phone"),
    ("missing field 'phone'", "missing_field"),
    ("time '2026-11-20 04:00:00' has no UTC offset", "bad_time"),
    ("timestamp out of window: time 1 is outside the accepted window", "timestamp_out_of_window"),
    ("provider must be one of aliyun, tencent, kx", "bad_shape"),
    ("request needs PhoneNumbers (SendSms) or PhoneNumberJson (SendBatchSms)", "bad_shape"),
    ("internal error while parsing (KeyError)", "internal_error"),
    ("MNS SmsReport message 13912345678: something else entirely", "other"),
])
def test_reason_classes(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_endpoint_labels_are_bounded() -> None:
    assert endpoint_label("/callbacks/aliyun/sms-report") == "/callbacks/aliyun/sms-report"
    assert endpoint_label("/v1/sends/kx") == "/v1/sends/kx"
    assert endpoint_label("feed:aliyun-mns:SmsReport") == "feed:aliyun-mns:SmsReport"
    assert endpoint_label("/v1/sends/13912345678") == "other"
    assert endpoint_label("/anything?phone=13912345678") == "other"
