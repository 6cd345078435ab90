"""Grafana unified-alerting rules as code: `python -m sms_analytics.dashboards.alerting` rewrites
dashboards/provisioning/alerting/sms-alerts.yaml at the repository's top level (file provisioning, apiVersion 1).

Every rule is A = a ClickHouse query (plugin 4.20, table format, one row per provider with string
label columns and exactly ONE numeric column, so each row becomes one alert instance), B = reduce
(last) of A, C = threshold on B (the condition). The SQL uses plugin macros only, no template
variables; windows are anchored at `$__toTime` (the end of the rule's relativeTimeRange, i.e. now).
Delivery rate = delivered / (delivered + failed + expired), as in README "Metrics".
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from sms_analytics.settings import AlertRules, Settings

DATASOURCE_UID = "sms-clickhouse"  # the ClickHouse datasource every panel and rule refers to (build.DATASOURCE)
PLUGIN_VERSION = "4.20.0"
FOLDER = "SMS"
GROUP = "sms-delivery"
INTERVAL = "1m"
# The Grafana artefacts live at the repository's top level, dashboards/ (json/, provisioning/), which
# docker-compose.yml mounts; the generators write there from a source checkout. Nothing the installed
# package runs reads them: report, bench and `dashboards push` build the same objects in memory.
ARTEFACTS_DIR = Path(__file__).resolve().parents[3] / "dashboards"
PATH = ARTEFACTS_DIR / "provisioning" / "alerting" / "sms-alerts.yaml"

# Thresholds the in-stream rules (streams/alerts.py) also have are taken from them: the packaged
# rules (streams/alert_rules.yaml, `AlertRules`), so an operator finds one value per threshold. The
# Grafana rules look at the warehouse, which lags the stream only by the sink's flush
# (SMS_SINK_FLUSH_SECONDS, under a second), and at longer windows (an hour, 15 min) than the
# stream's sliding window (window_seconds, 5 min): the thresholds are the same, the windows are
# what differs. An SMS_ALERT_RULES file changes the stream's rules only; these are built once, into
# sms-alerts.yaml and `dashboards push`.
STREAM_RULES = AlertRules.packaged()

RATE_FLOOR = STREAM_RULES.delivery_rate.floor           # (a) delivery rate below this over the last hour ...
MIN_FINAL = STREAM_RULES.delivery_rate.min_volume       # ... with at least this many final outcomes (also (b))
# (h) the same floor per provider × carrier × province (issue 17), once the province has this many final
# outcomes in the hour: the stream's region_min_volume, so that a small province does not flap.
REGION_MIN_FINAL = STREAM_RULES.delivery_rate.region_min_volume
# The label `baseline` of its instances: what an explanation of the drop compares the hour with (the relay runs
# `sms-analytics why --baseline` with it): `previous`, the hour before, as the stream's causes do. The rule
# itself fires on the floor, not on a change, so a province that stays down keeps firing.
REGION_BASELINE = "previous"
DROP = 0.25                # (b) relative drop against the same hour over the previous 7 days
# (c) newest receipt older than this: the stream's lag_seconds (180 s). The rule measures from the
# provider's report time of the newest receipt in the warehouse, the stream from the receipt's
# arrival; the two differ by the provider's push or poll delay and the sink's flush, seconds, not
# minutes, so the threshold is the same (it was 600 s here, with no reason recorded). Grafana's own
# cadence comes on top: evaluated every INTERVAL and firing after `for: 2m`, it is the slower backstop
# of the stream's alert, not a different threshold.
BLACKOUT_LAG_S = STREAM_RULES.receipt_blackout.lag_seconds
# ... while at least this many sends in the last 15 min: a count over another window than the
# stream's min_sends (20 in window_seconds), so not the same number.
BLACKOUT_MIN_SENDS = 10
BACKLOG_GROWTH = 1.5       # (d) pending now / pending 30 min ago above this ...
BACKLOG_MIN_PENDING = 100  # ... with at least this many pending now
BACKLOG_WINDOW_S = 7200    # pending among messages sent in the 2 h before each instant
LATENCY_SLO_S = STREAM_RULES.latency_p95.slo_ms // 1000       # (e) p95 delivered latency (seconds) above this ...
LATENCY_MIN_DELIVERED = STREAM_RULES.latency_p95.min_volume   # ... with at least this many delivered

# (f) conversion-rate drop of a verification-code template (issue 16): conversions / sent of the messages sent
# in the CONVERSION_WINDOW_S before the last CONVERSION_SETTLE_S (a conversion follows its send by seconds to
# minutes), against the pooled rate of the days before, per provider and template. The drop and the volumes are
# the stream's (conversion_rate in alert_rules.yaml): the stream compares per delivered message over 5 min against
# the hour before; this rule is its slower backstop on the warehouse.
CONVERSION_RULE = STREAM_RULES.conversion_rate
assert CONVERSION_RULE is not None  # the packaged rules have it
CONVERSION_DROP = CONVERSION_RULE.drop
CONVERSION_MIN_SENT = CONVERSION_RULE.min_volume                   # sent in the window
CONVERSION_MIN_BASELINE = CONVERSION_RULE.min_baseline_conversions  # conversions in the baseline: tracked
CONVERSION_SETTLE_S = 300
CONVERSION_WINDOW_S = 3600
CONVERSION_BASELINE_DAYS = 7
# (g) a balance or package quota left that would run out within this many hours at the last hour's
# send rate: SMS_QUOTA_ALERT_HOURS. The rules are built once (sms-alerts.yaml, `dashboards push`), like
# the thresholds above, so they take the setting's default; provisioning(quota_hours) builds them with
# another value.
QUOTA_HOURS = float(Settings.model_fields["sms_quota_alert_hours"].default)

HOUR = 3600

# A template's normalized type (verification, notification, marketing, international, other) over any source with
# provider and template columns: the metadata feeds' and the mapping's (sinks/dictionaries.sql); build.py's panels
# and variable use the same expression.
TEMPLATE_TYPE = "dictGetOrDefault('sms.template_info_dict', 'type', (provider, template), 'other')"

RATE_FLOOR_SQL = f"""
SELECT provider, n_delivered / n_final AS delivery_rate
FROM
(
    SELECT provider, sum(delivered) AS n_delivered, sum(delivered + failed + expired) AS n_final
    FROM sms.rollup_minute
    WHERE $__timeFilter(minute)
    GROUP BY provider
    HAVING n_final >= {MIN_FINAL}
)
ORDER BY provider"""

# One row per provider × carrier × province with a known province (a number the data cannot place is in the
# provider × carrier alerts only; Grafana would drop an empty label): the hour's rows of grain
# 'provider_carrier_province' at level 60 (sinks/rollups.py), few rows whatever the templates and signs.
REGION_RATE_SQL = f"""
SELECT provider, carrier, province, n_delivered / n_final AS delivery_rate
FROM
(
    SELECT provider, carrier, province, sum(delivered) AS n_delivered, sum(delivered + failed + expired) AS n_final
    FROM sms.rollup_level
    WHERE grain = 'provider_carrier_province' AND level = 60 AND $__timeFilter(bucket) AND province != ''
    GROUP BY provider, carrier, province
    HAVING n_final >= {REGION_MIN_FINAL}
)
ORDER BY provider, carrier, province"""

# Same 60-minute slot of each of the previous 7 days: age = seconds before $__toTime; current
# window age < 1 h, baseline 1 day <= age < 8 days with age mod 1 day < 1 h. Rates are pooled.
RATE_DROP_SQL = f"""
SELECT provider, 1 - (cur_delivered / cur_final) / (base_delivered / base_final) AS rate_drop
FROM
(
    SELECT provider,
           sumIf(delivered, age < {HOUR}) AS cur_delivered,
           sumIf(delivered + failed + expired, age < {HOUR}) AS cur_final,
           sumIf(delivered, age >= 86400 AND age % 86400 < {HOUR}) AS base_delivered,
           sumIf(delivered + failed + expired, age >= 86400 AND age % 86400 < {HOUR}) AS base_final
    FROM
    (
        SELECT provider, delivered, failed, expired, dateDiff('second', minute, $__toTime) AS age
        FROM sms.rollup_minute
        WHERE minute > $__toTime - INTERVAL 8 DAY AND minute <= $__toTime
    )
    GROUP BY provider
    HAVING cur_final >= {MIN_FINAL} AND base_final >= {MIN_FINAL} AND base_delivered > 0
)
ORDER BY provider"""

# A provider that never had a receipt has no row in sms.receipt_lag: its lag is then counted from
# the epoch (always above the threshold).
BLACKOUT_SQL = f"""
SELECT s.provider AS provider,
       toFloat64(dateDiff('second', ifNull(l.newest_receipt_at, toDateTime64(0, 3, 'UTC')), $__toTime)) AS receipt_lag_seconds
FROM
(
    SELECT provider, sum(sent) AS sends
    FROM sms.rollup_minute
    WHERE minute > $__toTime - INTERVAL 15 MINUTE AND minute <= $__toTime
    GROUP BY provider
    HAVING sends >= {BLACKOUT_MIN_SENDS}
) AS s
LEFT JOIN (SELECT provider, toNullable(newest_receipt_at) AS newest_receipt_at FROM sms.receipt_lag) AS l
    ON s.provider = l.provider
ORDER BY provider"""

# Pending at an instant T: sent in (T - window, T] and without a final outcome at T. Now: status
# pending. 30 min ago: still pending now, or expired, or its receipt reported after T - 30 min
# (submit-stage failures were final at send).
BACKLOG_SQL = f"""
SELECT provider, pending_now / greatest(pending_before, 1) AS pending_growth
FROM
(
    SELECT provider,
           countIf(sent_at > $__toTime - INTERVAL {BACKLOG_WINDOW_S} SECOND AND status = 'pending') AS pending_now,
           countIf(sent_at <= $__toTime - INTERVAL 30 MINUTE
                   AND sent_at > $__toTime - INTERVAL {BACKLOG_WINDOW_S + 1800} SECOND
                   AND (status IN ('pending', 'expired') OR reported_at > $__toTime - INTERVAL 30 MINUTE))
               AS pending_before
    FROM sms.messages
    WHERE sent_at > $__toTime - INTERVAL {BACKLOG_WINDOW_S + 1800} SECOND AND sent_at <= $__toTime
    GROUP BY provider
    HAVING pending_now >= {BACKLOG_MIN_PENDING}
)
ORDER BY provider"""

# quantilesDDMerge(relative_accuracy, levels...): q = [p50, p90, p95, p99], so q[3] is p95 (ms).
LATENCY_SQL = f"""
SELECT provider, q[3] / 1000 AS p95_seconds
FROM
(
    SELECT provider, quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state) AS q
    FROM sms.rollup_minute
    WHERE $__timeFilter(minute)
    GROUP BY provider
    HAVING sum(delivered) >= {LATENCY_MIN_DELIVERED}
)
ORDER BY provider"""

# The verification codes: templates with conversions in the baseline (conversions are reported for OTPs) whose
# type, from the metadata feeds or the SMS_TEMPLATE_NAMES mapping (sms.template_info_dict, migration 0011), is
# 'verification', or unknown ('other': Tencent's template list gives no type, and a template no feed describes);
# a marketing or notification template with conversions (a link followed) is left out.
CONVERSION_DROP_SQL = f"""
SELECT provider, template, 1 - (cur_converted / cur_sent) / (base_converted / base_sent) AS conversion_drop
FROM
(
    SELECT provider, template,
           sumIf(converted, age >= {CONVERSION_SETTLE_S} AND age < {CONVERSION_SETTLE_S + CONVERSION_WINDOW_S}) AS cur_converted,
           sumIf(sent, age >= {CONVERSION_SETTLE_S} AND age < {CONVERSION_SETTLE_S + CONVERSION_WINDOW_S}) AS cur_sent,
           sumIf(converted, age >= {CONVERSION_SETTLE_S + CONVERSION_WINDOW_S}) AS base_converted,
           sumIf(sent, age >= {CONVERSION_SETTLE_S + CONVERSION_WINDOW_S}) AS base_sent
    FROM
    (
        SELECT provider, template, sent, converted, dateDiff('second', minute, $__toTime) AS age
        FROM sms.rollup_minute
        WHERE minute > $__toTime - INTERVAL {CONVERSION_BASELINE_DAYS + 1} DAY AND minute <= $__toTime
    )
    GROUP BY provider, template
    HAVING base_converted >= {CONVERSION_MIN_BASELINE} AND cur_sent >= {CONVERSION_MIN_SENT}
       AND {TEMPLATE_TYPE} IN ('verification', 'other')
)
ORDER BY provider, template"""
# The newest reading of each account in the last day (KX Balance, Tencent's package quota: rows of
# sms.provider_balance) over the provider's sends of the last hour, i.e. the hours it lasts at the
# current rate. A provider that sent nothing in the hour has no row: nothing runs out. Sends count
# messages; the quota counts billed parts (Fee), so a long-message mix runs out somewhat sooner.
QUOTA_SQL = """
SELECT b.provider AS provider, b.account AS account, b.left_now / s.sends AS hours_left
FROM
(
    SELECT provider, account, toFloat64(argMax(balance, at)) AS left_now
    FROM sms.provider_balance
    WHERE at > $__toTime - INTERVAL 1 DAY AND at <= $__toTime
    GROUP BY provider, account
) AS b
INNER JOIN
(
    SELECT provider, toFloat64(sum(sent)) AS sends
    FROM sms.rollup_minute
    WHERE minute > $__toTime - INTERVAL 1 HOUR AND minute <= $__toTime
    GROUP BY provider
    HAVING sends > 0
) AS s ON b.provider = s.provider
ORDER BY provider, account"""

UNMAPPED_SQL = """
SELECT provider, toFloat64(count()) AS new_codes
FROM sms.unmapped_codes
WHERE $__timeFilter(first_seen)
GROUP BY provider
ORDER BY provider"""


def _query(sql: str, seconds: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "queryType": "table",
        "datasourceUid": DATASOURCE_UID,
        "relativeTimeRange": {"from": seconds, "to": 0},
        "model": {
            "refId": "A",
            "datasource": {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID},
            "editorType": "sql",
            "queryType": "table",
            "format": 1,
            "rawSql": sql.strip(),
            "pluginVersion": PLUGIN_VERSION,
            "intervalMs": 60000,
            "maxDataPoints": 43200,
        },
    }


def _expression(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasourceUid": "__expr__",
        "relativeTimeRange": {"from": 0, "to": 0},
        "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model},
    }


def rule(uid: str, title: str, sql: str, op: str, threshold: float, *, seconds: int = HOUR, for_: str = "5m",
         severity: str = "warning", summary: str, description: str,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            _query(sql, seconds),
            _expression("B", {"type": "reduce", "expression": "A", "reducer": "last", "settings": {"mode": "dropNN"}}),
            _expression("C", {"type": "threshold", "expression": "B",
                              "conditions": [{"evaluator": {"type": op, "params": [threshold]}}]}),
        ],
        "for": for_,
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": {"severity": severity, "team": "sms", **(labels or {})},
        "annotations": {"summary": summary, "description": description},
        "isPaused": False,
    }


def rules(quota_hours: float = QUOTA_HOURS) -> list[dict[str, Any]]:
    return [
        rule("sms-rate-floor", "SMS delivery rate below floor", RATE_FLOOR_SQL, "lt", RATE_FLOOR, severity="critical",
             summary="{{ $labels.provider }}: delivery rate {{ humanizePercentage $values.B.Value }} in the last hour",
             description=f"delivered / (delivered + failed + expired) of messages sent in the last 60 min is below "
                         f"{RATE_FLOOR:.0%} (at least {MIN_FINAL} final outcomes)."),
        rule("sms-region-rate-floor", "SMS delivery rate below floor in a province", REGION_RATE_SQL, "lt", RATE_FLOOR,
             severity="critical", labels={"baseline": REGION_BASELINE},
             summary="{{ $labels.provider }} {{ $labels.carrier }} {{ $labels.province }}: delivery rate "
                     "{{ humanizePercentage $values.B.Value }} in the last hour",
             description=f"delivered / (delivered + failed + expired) of messages sent in the last 60 min to one "
                         f"carrier's numbers of one province is below {RATE_FLOOR:.0%} (at least {REGION_MIN_FINAL} "
                         f"final outcomes: region_min_volume). The drill-down's \"Why\" panel, or `sms-analytics why "
                         f"--provider P --carrier C --baseline {REGION_BASELINE}`, says where the failures are."),
        rule("sms-rate-drop", "SMS delivery rate drop vs same hour last 7 days", RATE_DROP_SQL, "gt", DROP,
             seconds=8 * 86400 + HOUR, severity="warning",
             summary="{{ $labels.provider }}: delivery rate {{ humanizePercentage $values.B.Value }} below its usual level",
             description=f"Delivery rate of the last 60 min is more than {DROP:.0%} below the pooled rate of the same "
                         f"60 min on each of the previous 7 days (at least {MIN_FINAL} final outcomes in each)."),
        rule("sms-receipt-blackout", "SMS receipt blackout", BLACKOUT_SQL, "gt", BLACKOUT_LAG_S,
             seconds=15 * 60, for_="2m", severity="critical",
             summary="{{ $labels.provider }}: no receipt for {{ $values.B.Value }} s while sends continue",
             description=f"Newest receipt older than {BLACKOUT_LAG_S} s while the provider sent at least "
                         f"{BLACKOUT_MIN_SENDS} messages in the last 15 min."),
        rule("sms-pending-backlog", "SMS pending backlog growing", BACKLOG_SQL, "gt", BACKLOG_GROWTH,
             seconds=BACKLOG_WINDOW_S + 1800, severity="warning",
             summary="{{ $labels.provider }}: pending backlog x{{ $values.B.Value }} in 30 min",
             description=f"Messages without a final outcome (sent in the last 2 h) grew more than {BACKLOG_GROWTH}x "
                         f"against 30 min ago, with at least {BACKLOG_MIN_PENDING} pending now."),
        rule("sms-latency-p95", "SMS p95 delivery latency above SLO", LATENCY_SQL, "gt", LATENCY_SLO_S,
             severity="warning",
             summary="{{ $labels.provider }}: p95 delivery latency {{ $values.B.Value }} s",
             description=f"p95 send-to-report latency of delivered messages sent in the last 60 min is above "
                         f"{LATENCY_SLO_S} s (at least {LATENCY_MIN_DELIVERED} delivered)."),
        rule("sms-conversion-drop", "SMS conversion rate drop of a verification-code template", CONVERSION_DROP_SQL,
             "gt", CONVERSION_DROP, seconds=(CONVERSION_BASELINE_DAYS + 1) * 86400, severity="warning",
             summary="{{ $labels.provider }} {{ $labels.template }}: conversion rate "
                     "{{ humanizePercentage $values.B.Value }} below its baseline",
             description=f"conversions / sent of the template's messages sent in the hour before the last "
                         f"{CONVERSION_SETTLE_S // 60} min is more than {CONVERSION_DROP:.0%} below its rate over the "
                         f"{CONVERSION_BASELINE_DAYS} days before (templates with at least {CONVERSION_MIN_BASELINE} "
                         f"conversions there: verification codes; at least {CONVERSION_MIN_SENT} sent)."),
        rule("sms-unmapped-codes", "SMS new unmapped error codes", UNMAPPED_SQL, "gt", 0, for_="0s", severity="info",
             summary="{{ $labels.provider }}: {{ $values.B.Value }} new unmapped error code(s)",
             description="Failure codes the knowledge base does not explain, first seen in the last hour "
                         "(sms.unmapped_codes): add them to the error-code documents."),
        rule("sms-quota-runout", "SMS balance or package quota running out", QUOTA_SQL, "lt", quota_hours,
             seconds=86400, for_="1m", severity="critical",
             summary="{{ $labels.provider }} {{ $labels.account }}: balance left for {{ $values.B.Value }} h of sends",
             description=f"The newest balance (KX Balance) or package quota left (Tencent SmsPackagesStatistics) "
                         f"would run out within {quota_hours:g} h (SMS_QUOTA_ALERT_HOURS) at the last hour's send "
                         f"rate."),
    ]


def provisioning(quota_hours: float = QUOTA_HOURS) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [{"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL, "rules": rules(quota_hours)}],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


# Grafana's alert-rule file provisioning (pkg/services/provisioning/alerting/rules_types.go) reads the
# fields as values.StringValue / StringMapValue / JSONValue, which expand $VAR and ${VAR} from the
# environment, `$$` being a literal `$` (pkg/services/provisioning/values/values.go, interpolateValue).
# It takes two of them raw: a query's `model` (QueryV1.mapToModel marshals Model.Raw, so that the
# plugin's $__timeFilter survives) and the `annotations` (Annotations.Raw, grafana/grafana#54975).
RAW_RULE_FIELDS = frozenset({"annotations"})
RAW_QUERY_FIELDS = frozenset({"model"})


def _escape(value: Any) -> Any:
    """Every string in `value` with `$` doubled (a literal `$` for Grafana's interpolation)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _escape_query(query: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k in RAW_QUERY_FIELDS else _escape(v) for k, v in query.items()}


def _escape_rule(rule: dict[str, Any]) -> dict[str, Any]:
    check_raw_annotations(rule)
    return {k: v if k in RAW_RULE_FIELDS else [_escape_query(q) for q in v] if k == "data" else _escape(v)
            for k, v in rule.items()}


def check_raw_annotations(rule: dict[str, Any]) -> None:
    """Annotations reach the rule as written today; grafana/grafana#127214 (open) would expand `${VAR}`
    in them. Neither `${` nor `$$` keeps them the same either way."""
    for key, text in (rule.get("annotations") or {}).items():
        if "${" in text or "$$" in text:
            raise ValueError(f"annotation {key!r} of {rule.get('uid')}: no `${{` or `$$` (Grafana may expand it)")


def escape_interpolated(doc: dict[str, Any]) -> dict[str, Any]:
    """The alert-rule provisioning document as the file must hold it: `$` doubled in every field Grafana
    interpolates (labels, titles, uids, ...), kept single in the query models and the annotations."""
    return {k: [{gk: [_escape_rule(r) for r in gv] if gk == "rules" else _escape(gv) for gk, gv in g.items()}
                for g in v] if k == "groups" else _escape(v)
            for k, v in doc.items()}


def render(doc: dict[str, Any] | None = None) -> str:
    """The provisioning file: the rules with `$` escaped only where Grafana interpolates (see above)."""
    header = "# Generated by `python -m sms_analytics.dashboards.alerting`: do not edit by hand.\n"
    body = yaml.dump(escape_interpolated(doc if doc is not None else provisioning()), Dumper=_Dumper,
                     sort_keys=False, allow_unicode=True, width=120)
    return header + body


def write(path: Path = PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    print(write(Path(argv[0]) if argv else PATH))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
