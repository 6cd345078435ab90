"""The pipeline watching itself, in Grafana: the "SMS pipeline: health" dashboard (dashboards/json/health.json,
written by `python -m sms_analytics.dashboards.build` with the others) and the Grafana-managed alert
rules on sink lag, consumer lag and dead-letter rate (dashboards/provisioning/alerting/sms-pipeline-alerts.yaml,
written by `python -m sms_analytics.dashboards.pipeline_health`).

Both read the Prometheus datasource `sms-prometheus` (provisioning/datasources/prometheus.yaml), which
scrapes `/metrics` of the receiver and the worker (deploy/prometheus/prometheus.yml); the metrics are
defined in observability/metrics.py. The alert file is escaped as alerting.py's: `$` doubled where Grafana
expands environment variables (labels, titles, ...), single in the query models and annotations, which it
takes raw. The PromQL uses fixed windows (no `$__rate_interval`) and the annotations `.Labels` / `.Values`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sms_analytics.dashboards import alerting

DATASOURCE = {"type": "prometheus", "uid": "sms-prometheus"}
UID = "sms-pipeline-health"
TITLE = "SMS pipeline: health"
FILE_NAME = "health.json"
ALERTS_PATH = alerting.ARTEFACTS_DIR / "provisioning" / "alerting" / "sms-pipeline-alerts.yaml"
FOLDER = "SMS"
GROUP = "sms-pipeline"
INTERVAL = "1m"
RATE = "$__rate_interval"  # dashboards only; the alert rules use fixed windows

SINK_LAG_S = 300            # the oldest unwritten row older than this (SMS_HEALTH_MAX_SINK_LAG_SECONDS' default)
CONSUMER_LAG_RECORDS = 50_000  # records not yet read, per consumer and topic, for 10 min
DEAD_LETTERS_PER_S = 1.0    # dead letters per second, per endpoint and reason, over 5 min, for 10 min

SINK_LAG = "max by (job, instance) (sms_sink_oldest_unwritten_age_seconds)"
CONSUMER_LAG = "sum by (consumer, topic) (sms_consumer_lag_records)"
DEAD_LETTER_RATE = "sum by (endpoint, reason) (rate(sms_dead_letters_total[5m]))"
TARGETS_UP = 'up{job=~"sms-.*"}'


# --- dashboard --------------------------------------------------------------------------------------

def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": dict(DATASOURCE), "editorMode": "code", "expr": expr,
            "legendFormat": legend, "range": True, "instant": False}


def _panel(kind: str, title: str, queries: list[tuple[str, str]], grid: tuple[int, int, int, int], description: str,
           unit: str = "short", thresholds: float | None = None) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit}
    if thresholds is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                               {"color": "red", "value": thresholds}]}
    options: dict[str, Any] = {"legend": {"displayMode": "table", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    if kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def panels() -> list[dict[str, Any]]:
    return [
        _panel("timeseries", "Consumer lag per topic and partition",
               [("max by (consumer, topic, partition) (sms_consumer_lag_records)", "{{consumer}} {{topic}}[{{partition}}]")],
               (0, 0, 12, 8), "Records on the broker not yet read: the worker on its source topics, the sink on "
               "deliveries, replies, provider stats and alerts. The embedded broker reports the log end up to one "
               "batch short, so there it can read low.", thresholds=CONSUMER_LAG_RECORDS),
        _panel("stat", "Sink lag (oldest unwritten row)", [(SINK_LAG, "{{instance}}")], (12, 0, 6, 8),
               "Age of the oldest row the sink read and has not written to ClickHouse yet; /healthz answers 503 "
               "past SMS_HEALTH_MAX_SINK_LAG_SECONDS.", unit="s", thresholds=SINK_LAG_S),
        _panel("stat", "Healthy processes", [("min by (job, instance) (sms_health_ok)", "{{job}} {{instance}}")],
               (18, 0, 6, 8), "1: /healthz answers 200 (every component ready, sink lag within its bound).",
               thresholds=None),
        _panel("timeseries", "Events joined and deliveries emitted per second",
               [(f"sum(rate(sms_join_events_total[{RATE}]))", "events joined/s"),
                (f"sum(rate(sms_join_deliveries_emitted_total[{RATE}]))", "deliveries emitted/s")],
               (0, 8, 8, 8), "Send and receipt events the join processed, and the message states it wrote.",
               unit="ops"),
        _panel("timeseries", "States held by the join", [("sum by (instance) (sms_join_states)", "{{instance}}")],
               (8, 8, 8, 8), "Messages whose state a worker keeps in memory (waiting for a receipt or a send)."),
        _panel("timeseries", "Rows written per second",
               [(f"sum(rate(sms_sink_rows_written_total[{RATE}]))", "rows/s"),
                ("sum(sms_sink_unwritten_rows)", "unwritten rows")],
               (16, 8, 8, 8), "Rows the sink wrote to ClickHouse, and those read but not yet written.", unit="short"),
        _panel("timeseries", "Sink batch latency",
               [(f"histogram_quantile(0.5, sum by (le) (rate(sms_sink_batch_seconds_bucket[{RATE}])))", "p50"),
                (f"histogram_quantile(0.99, sum by (le) (rate(sms_sink_batch_seconds_bucket[{RATE}])))", "p99")],
               (0, 16, 8, 8), "From a batch's first insert to its offset commit, retries included.", unit="s"),
        _panel("timeseries", "Rollup round time",
               [((f"sum(rate(sms_sink_rollup_round_seconds_sum[{RATE}])) / "
                  f"sum(rate(sms_sink_rollup_round_seconds_count[{RATE}]))"), "mean"),
                (f"histogram_quantile(0.99, sum by (le) (rate(sms_sink_rollup_round_seconds_bucket[{RATE}])))", "p99"),
                ("sum(sms_sink_rollup_pending_minutes)", "minutes waiting")],
               (8, 16, 8, 8), "Duration of the rollup rounds (recompute of the minutes written), and the minutes "
               "waiting for the next round.", unit="s"),
        _panel("timeseries", "Errors per second",
               [(f"sum(rate(sms_sink_insert_retries_total[{RATE}]))", "insert retries/s"),
                (f"sum(rate(sms_sink_rollup_failures_total[{RATE}]))", "rollup failures/s"),
                (f"sum(rate(sms_sink_undecodable_records_total[{RATE}]))", "sink undecodable/s"),
                (f"sum(rate(sms_join_undecodable_records_total[{RATE}]))", "join undecodable/s")],
               (16, 16, 8, 8), "Failed inserts (retried), failed rollup rounds, records nobody could decode.",
               unit="ops"),
        _panel("timeseries", "Dead letters per second by reason",
               [(f"sum by (endpoint, reason) (rate(sms_dead_letters_total[{RATE}]))", "{{endpoint}} {{reason}}")],
               (0, 24, 12, 8), "Records written to sms.deadletter.v1, per endpoint and reason class.", unit="ops",
               thresholds=DEAD_LETTERS_PER_S),
        _panel("timeseries", "Journal backlog",
               [("sum by (instance) (sms_journal_unforwarded_rows)", "unforwarded {{instance}}"),
                ("sum by (instance) (sms_journal_rows)", "rows {{instance}}")],
               (12, 24, 6, 8), "Accepted input in the local journal, and the part not yet forwarded to the broker "
               "(empty when the process has no journal)."),
        _panel("timeseries", "Resident memory",
               [("max by (instance) (sms_embedded_broker_resident_bytes)", "embedded broker {{instance}}"),
                ('max by (job, instance) (process_resident_memory_bytes{job=~"sms-.*"})', "{{job}} {{instance}}")],
               (18, 24, 6, 8), "The embedded broker's process (it keeps every topic in memory) and the pipeline's "
               "processes.", unit="bytes"),
        _panel("timeseries", "Scrape targets up", [(TARGETS_UP, "{{job}} {{instance}}")], (0, 32, 24, 6),
               "1 while Prometheus scrapes the target's /metrics."),
    ]


def dashboard() -> dict[str, Any]:
    items = panels()
    for n, panel in enumerate(items, start=1):
        panel["id"] = n
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["sms", "pipeline"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"title": "SMS dashboards", "type": "dashboards", "tags": ["sms"], "asDropdown": False,
                   "keepTime": True, "includeVars": False}],
        "panels": items,
    }


def expressions(doc: dict[str, Any] | None = None) -> list[str]:
    """Every PromQL expression of the dashboard (or of another dashboard dict)."""
    return [t["expr"] for p in (doc or dashboard())["panels"] for t in p["targets"]]


# --- alert rules ------------------------------------------------------------------------------------

def _query(expr: str, seconds: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasourceUid": DATASOURCE["uid"],
        "relativeTimeRange": {"from": seconds, "to": 0},
        "model": {"refId": "A", "datasource": dict(DATASOURCE), "editorMode": "code", "expr": expr,
                  "instant": True, "range": False, "legendFormat": "", "intervalMs": 60000, "maxDataPoints": 43200},
    }


def _expression(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasourceUid": "__expr__",
        "relativeTimeRange": {"from": 0, "to": 0},
        "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model},
    }


def rule(uid: str, title: str, expr: str, op: str, threshold: float, *, for_: str, severity: str, summary: str,
         description: str, seconds: int = 600) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            _query(expr, seconds),
            _expression("B", {"type": "reduce", "expression": "A", "reducer": "last", "settings": {"mode": "dropNN"}}),
            _expression("C", {"type": "threshold", "expression": "B",
                              "conditions": [{"evaluator": {"type": op, "params": [threshold]}}]}),
        ],
        "for": for_,
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": {"severity": severity, "team": "sms"},
        "annotations": {"summary": summary, "description": description, "dashboardUId": UID},
        "isPaused": False,
    }


def rules() -> list[dict[str, Any]]:
    return [
        rule("sms-sink-lag", "SMS sink lag", SINK_LAG, "gt", SINK_LAG_S, for_="2m", severity="critical",
             summary="{{ .Labels.instance }}: the sink's oldest unwritten row is {{ humanizeDuration .Values.B.Value }} old",
             description=f"A row read from Kafka has waited more than {SINK_LAG_S} s to be written to ClickHouse "
                         "(warehouse down or inserts failing: see sms_sink_insert_retries_total); /healthz answers 503."),
        rule("sms-consumer-lag", "SMS consumer lag", CONSUMER_LAG, "gt", CONSUMER_LAG_RECORDS, for_="10m",
             severity="warning",
             summary="{{ .Labels.consumer }} is {{ humanize .Values.B.Value }} records behind on {{ .Labels.topic }}",
             description=f"More than {CONSUMER_LAG_RECORDS} records of the topic wait unread for 10 minutes: the "
                         "worker (join) or the sink does not keep up, or is stuck."),
        rule("sms-dead-letter-rate", "SMS dead-letter rate", DEAD_LETTER_RATE, "gt", DEAD_LETTERS_PER_S, for_="10m",
             severity="warning",
             summary="{{ .Labels.endpoint }}: {{ humanize .Values.B.Value }} dead letters/s ({{ .Labels.reason }})",
             description=f"More than {DEAD_LETTERS_PER_S:g} records a second rejected into sms.deadletter.v1 over "
                         "10 minutes: a provider changed its format, or a client sends bad data."),
        rule("sms-target-down", "SMS process not scraped", TARGETS_UP, "lt", 1, for_="2m", severity="critical",
             summary="{{ .Labels.job }} {{ .Labels.instance }} does not answer /metrics",
             description="Prometheus cannot scrape the process: it is down or unreachable."),
    ]


def provisioning() -> dict[str, Any]:
    return {"apiVersion": 1,
            "groups": [{"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL, "rules": rules()}]}


def rule_expressions() -> list[str]:
    return [d["model"]["expr"] for r in rules() for d in r["data"] if d["datasourceUid"] == DATASOURCE["uid"]]


def render_alerts(doc: dict[str, Any] | None = None) -> str:
    """The alert provisioning file, `$` escaped only where Grafana interpolates (alerting.escape_interpolated)."""
    header = "# Generated by `python -m sms_analytics.dashboards.pipeline_health`: do not edit by hand.\n"
    escaped = alerting.escape_interpolated(doc if doc is not None else provisioning())
    return header + yaml.safe_dump(escaped, sort_keys=False, allow_unicode=True, width=120)


def render_dashboard() -> str:
    return msgspec.json.format(msgspec.json.encode(dashboard()), indent=2).decode() + "\n"


def write_alerts(path: Path = ALERTS_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_alerts(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    print(write_alerts(Path(argv[0]) if argv else ALERTS_PATH))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
