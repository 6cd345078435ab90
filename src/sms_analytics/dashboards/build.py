"""The Grafana dashboards, built as plain dicts: `python -m sms_analytics.dashboards.build` rewrites
dashboards/json/overview.json and drilldown.json (provisioned by dashboards/provisioning/dashboards), and
health.json, the pipeline's own metrics from Prometheus (dashboards/pipeline_health.py).

Panel SQL uses the plugin 4.20 macros and template variables only (dashboards/macros.py expands
them the same way for the tests). Metrics as defined in README "Metrics": delivery rate =
delivered / (delivered + failed + expired) over messages sent in the window, latency percentiles
over delivered messages from the rollups' quantilesDD sketch.

The model stays plain dicts; grafana-foundation-sdk (Grafana's dashboards-as-code library) was measured
for it and not adopted (2026-12, builds 1769699379!11.6.0, 1769699241 and 0.0.21; unpinned, pip picks
1769699998!10.1.0, the Grafana 10.1 schema, because the epoch is the build time):
- no build has a ClickHouse query type or builder: a raw-SQL target needs a Dataquery subclass of ours
  whose to_json writes refId, datasource, editorType, queryType, format, rawSql and pluginVersion, i.e.
  `_target` below again. With it the target came out identical to `_target`'s, and reading
  overview.json back (Dashboard.from_json) kept every target field (as an UnknownDataquery).
- the builders' defaults change the panels: a legend built with VizLegendOptions gets showLegend=false
  (hidden) unless set, tooltips get sort "asc", every panel transparent/repeatDirection; 0.0.21 also
  moves the dashboard links into the controls menu (placement "inControlsMenu"). Reading our JSON back
  drops the variables' `definition` and adds five fields to each variable.
So the SDK would carry the ClickHouse shape only through code we would still write, and its defaults
would have to be overridden one by one; worth another look if it ships a ClickHouse query type.
"""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec

from sms_analytics.dashboards import alerting, pipeline_health
from sms_analytics.model.rootcause import UNKNOWN_LABEL
from sms_analytics.sinks.rollups import MATURATION_SECONDS

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": alerting.DATASOURCE_UID}
PLUGIN_VERSION = "4.20.0"
JSON_DIR = alerting.ARTEFACTS_DIR / "json"  # the top-level dashboards/json/ (see alerting.ARTEFACTS_DIR)
FORMAT_TIMESERIES, FORMAT_TABLE = 0, 1

# A template's normalized type (verification, notification, marketing, international, other) from the
# metadata feeds (sms.templates, behind sms.template_info_dict); a template no feed described is 'other'.
# Usable in any panel's or alert's SQL over a source with provider and template columns.
TEMPLATE_TYPE = alerting.TEMPLATE_TYPE  # one expression for panels, variables and alert rules

# Template variables: (name, label, column of sms.rollup_minute, or an expression over its columns).
VARIABLES = (
    ("provider", "Provider", "provider"),
    ("carrier", "Carrier", "carrier"),
    ("template", "Template", "template"),
    ("sign", "Sign", "sign"),
    ("country", "Country", "country_code"),
    ("template_type", "Template type", TEMPLATE_TYPE),
    ("region", "Region", "province"),
)
# The region variable's value for messages the data cannot place (not a mainland mobile number, a segment
# phonenumbers does not know): '' as stored, shown as this text (a second column of the variable's query), so
# it stays selectable and filters with `province IN ('')` like any province.
UNKNOWN_REGION = UNKNOWN_LABEL

# quantilesDD(relative_accuracy, levels...): 0.005 is the accuracy, so q = [p50, p90, p95, p99].
# Filters on the template variables, by the columns a source has.
# Sources whose rows all fall in the range the variable queries ran on (the rollups' hours overlapping
# the range, VARIABLE_HOURS): a variable set to All selects every value there is, so it filters nothing
# and is left out ($__conditionalAll: `1=1`), which spares the IN lists over millions of rows.
ROLLUP_FILTER = ("$__conditionalAll(provider IN (${provider:singlequote}), $provider) "
                 "AND $__conditionalAll(carrier IN (${carrier:singlequote}), $carrier) "
                 "AND $__conditionalAll(template IN (${template:singlequote}), $template) "
                 "AND $__conditionalAll(sign IN (${sign:singlequote}), $sign) "
                 "AND $__conditionalAll(country_code IN (${country:singlequote}), $country) "
                 f"AND $__conditionalAll({TEMPLATE_TYPE} IN (${{template_type:singlequote}}), $template_type) "
                 "AND $__conditionalAll(province IN (${region:singlequote}), $region)")
# Sources with rows outside those minutes (messages by sent_at, provider tables): every value listed.
MESSAGE_FILTER = ("provider IN (${provider:singlequote}) AND carrier IN (${carrier:singlequote}) "
                  "AND template IN (${template:singlequote}) AND sign IN (${sign:singlequote}) "
                  "AND $__conditionalAll(country_code IN (${country:singlequote}), $country) "
                  f"AND $__conditionalAll({TEMPLATE_TYPE} IN (${{template_type:singlequote}}), $template_type) "
                  "AND $__conditionalAll(province IN (${region:singlequote}), $region)")
PROVIDER_CARRIER_FILTER = "provider IN (${provider:singlequote}) AND carrier IN (${carrier:singlequote})"
PROVIDER_FILTER = "provider IN (${provider:singlequote})"

RATE = "if(delivered + failed + expired = 0, NULL, delivered / (delivered + failed + expired))"
# Trend buckets of the sparkline columns: the range in about TREND_BUCKETS equal steps, at least a minute.
TREND_BUCKETS = 24
TREND_SECONDS = f"greatest(60, intDiv(toUInt32($__toTime) - toUInt32($__fromTime), {TREND_BUCKETS}))"
TREND_BUCKET = f"toStartOfInterval(t, toIntervalSecond({TREND_SECONDS}))"
# Hourly sources: an hour that overlaps the range counts (a range starting at 10:45 shows the 10:00 row).
HOUR_FILTER = "hour >= toStartOfHour($__fromTime) AND hour <= $__toTime"
MEANING = "dictGet('sms.error_code_dict', ('description', 'action'), (provider, carrier, error_code, outcome_stage))"

# --- the rollups over a range, at the coarsest level that gives the same result --------------------
# sms.rollup_level (sinks/rollups.py) holds sms.rollup_minute's measures summed over coarser buckets:
# grain 'full' (every dimension) per 10 minutes, hour, 6 hours and day; grains 'provider_carrier' and
# 'carrier' (template, sign, country, province and, for 'carrier', provider summed) and
# 'provider_carrier_province' (template, sign and country summed) per 1, 5 and 10 minutes, hour, 6 hours
# and day. A panel that groups by buckets of W seconds (the interval, the trend step, or
# nothing finer than the range) reads each minute of the range once: as part of the coarsest bucket
# whose level divides W and which lies wholly in the range, else as a minute row. Sums, and latency
# sketches merged, equal those of the minute rows (a sketch's bin counts add up).
WHOLE_RANGE = None  # a panel that sums over the whole range
INTERVAL = "$__interval_s"  # a time series per query interval
VARIABLE_COLUMNS = {name: column for name, _, column in VARIABLES}
# (grain, the dimension columns it has, the variables that must be All, its levels in sms.rollup_level);
# of the grains a panel reads, the finest that has its columns and whose other variables are All is
# read. Counts are cheap to sum, so only panels that merge latency sketches read the finer grains
# (another grain is another branch to plan).
# (grain, the variables it has, those that must be All, its rollup levels in seconds)
GRAINS: tuple[tuple[str, set[str], tuple[str, ...], tuple[int, ...]], ...] = (
    ("carrier", {"carrier"}, ("provider", "template", "sign", "country", "template_type", "region"),
     (60, 300, 600, 3600, 21600, 86400)),
    ("provider_carrier", {"provider", "carrier"}, ("template", "sign", "country", "template_type", "region"),
     (60, 300, 600, 3600, 21600, 86400)),
    ("provider_carrier_province", {"provider", "carrier", "province"}, ("template", "sign", "country", "template_type"),
     (60, 300, 600, 3600, 21600, 86400)),
    ("all_provinces", set(VARIABLE_COLUMNS.values()) - {"province"}, ("region",), (60, 600, 3600, 21600, 86400)),
    ("full", set(VARIABLE_COLUMNS.values()), (), (600, 3600, 21600, 86400)),
)


# With the province a dimension the full grain's rows are ~3x as many: panels read grain 'all_provinces' (every
# other dimension, the former full grain) while the region is All, the full grain otherwise. Not every grain
# that has a panel's columns: each grain read is a branch with its own generation filter to plan and run
# (measured: the drill-down's "Delivery rate" over five grains took 120 ms, over these two 50 ms).
TEMPLATE_GRAINS = ("all_provinces", "full")
COUNT_GRAINS = TEMPLATE_GRAINS


def all_selected(variables: tuple[str, ...]) -> str:
    """`1=1` when every one of these variables is All, else false (`1=0`)."""
    return "(" + " AND ".join(f"$__conditionalAll(1=0, ${v})" for v in variables) + ")" if variables else "1"


def _whole_buckets(column: str, level: int | str) -> str:
    """`column` (a bucket or minute start) lies in a bucket of `level` seconds wholly in the range."""
    return (f"({column} >= toDateTime(intDiv(toUInt32($__fromTime) + {level} - 1, {level}) * {level}) "
            f"AND {column} < toDateTime(intDiv(toUInt32($__toTime) + 60, {level}) * {level}))")


def _read_at(column: str, level: int, coarser: int | None) -> str:
    """A row of this level is read when the level divides the width `w` (so do all finer ones) and its
    bucket is wholly in the range, unless the next coarser level's bucket around it is too (every
    minute of the range is read once). Plain ranges of the primary key, so only those rows are read."""
    usable = "" if level == 60 else f"w % {level} = 0 AND "
    row = f"{usable}{_whole_buckets(column, level)}"
    return row if coarser is None else f"{row} AND NOT (w % {coarser} = 0 AND {_whole_buckets(column, coarser)})"


def rollup_source(columns: str, width: str | None, *, where: str = "", grains: tuple[str, ...] = ("full",),
                  carrier_points: bool = False) -> str:
    """The rollups' rows of the range as `t` (the row's minute or bucket start) and `columns`, filtered
    on every variable, for a panel grouping by buckets of `width` seconds (an SQL expression) or by
    nothing finer than the range (WHOLE_RANGE), from these grains. No failure_category.
    carrier_points: without the rows carrier_points() reads."""
    wanted = {c.strip() for c in columns.split(",")} & set(VARIABLE_COLUMNS.values())
    w = f"{86400 * 364}" if width is WHOLE_RANGE else width  # WHOLE_RANGE: divisible by every level
    extra = f" AND {where}" if where else ""
    parts: list[str] = []
    earlier: list[str] = []
    for grain, has, must_be_all, levels in GRAINS:
        if grain not in grains or not wanted <= has:
            continue
        applies = " AND ".join([all_selected(must_be_all)] + [f"NOT {e}" for e in earlier])
        earlier.append(all_selected(must_be_all))
        coarser = dict(pairwise(levels))
        if grain == "full":  # its minutes are sms.rollup_minute's rows
            parts.append(f"""WITH {w} AS w
        SELECT minute AS t, {columns} FROM sms.rollup_minute
        WHERE {applies} AND {_read_at("minute", 60, levels[0] if levels else None)}
          AND {ROLLUP_FILTER}{extra}""")
            if not levels:
                break
        read = " OR ".join(f"(level = {lv} AND {_read_at('bucket', lv, coarser.get(lv))})" for lv in levels)
        if carrier_points and grain == "carrier":
            read = f"({read}) AND level != w"
        parts.append(f"""WITH {w} AS w
        SELECT bucket AS t, {columns} FROM sms.rollup_level
        WHERE {applies} AND grain = '{grain}'
          AND ({read})
          AND {ROLLUP_FILTER}{extra}""")
        if not must_be_all:
            break
    return "\n        UNION ALL\n        ".join(parts)


def carrier_points(columns: str, *, where: str = "") -> str:
    """A time series per carrier and interval whose points are each one row of grain 'carrier' (provider,
    template, sign and country All, the interval one of its levels): those rows' `columns` as they are,
    with `time` and `carrier`; rollup_source(..., carrier_points=True) has the other points' rows."""
    grain, _, must_be_all, _ = GRAINS[0]
    extra = f" AND {where}" if where else ""
    return f"""WITH {INTERVAL} AS w
    SELECT bucket AS time, carrier, {columns} FROM sms.rollup_level
    WHERE {all_selected(must_be_all)} AND grain = '{grain}' AND level = w AND {_whole_buckets("bucket", "w")}
      AND {ROLLUP_FILTER}{extra}"""


# Cohort maturation: the provisional rates at these ages (sms.cohort_maturation pairs age_seconds[i] with
# provisional_rate[i]), one column each rather than two arrays a table would print as text.
MATURATION_AGES = (("rate_1m", 60), ("rate_5m", 300), ("rate_30m", 1800), ("rate_1h", 3600), ("rate_6h", 21600),
                   ("rate_1d", 86400), ("rate_3d", 259200))
if not {age for _, age in MATURATION_AGES} <= set(MATURATION_SECONDS):
    raise ValueError("MATURATION_AGES: ages of sms.cohort_maturation only (sinks/rollups.MATURATION_SECONDS)")
MATURATION_COLUMNS = ", ".join(f"provisional_rate[indexOf(age_seconds, {age})] AS {name}" for name, age in MATURATION_AGES)

# Minutes sent entirely inside the range (every sent_at of the minute passes $__timeFilter(sent_at)),
# and the minutes at its ends that it only partly covers.
WHOLE_MINUTES = "(minute >= $__fromTime AND minute + 60 <= $__toTime)"
EDGE_MINUTES = f"(minute >= toStartOfMinute($__fromTime) AND minute <= $__toTime AND NOT {WHOLE_MINUTES})"
# A template's business name (sms.template_name_dict): the SMS_TEMPLATE_NAMES row for its sign, else the
# one for any sign, else the name its provider's metadata API gives it (sms.templates), else the raw id.
TEMPLATE_NAME = ("dictGetOrDefault('sms.template_name_dict', 'name', (provider, template, sign), "
                 "dictGetOrDefault('sms.template_name_dict', 'name', (provider, template, ''), template))")
# A template id's name over its rows, whatever their sign (a provider's ids are its own: any of its rows' provider).
TEMPLATE_ID_NAME = "dictGetOrDefault('sms.template_name_dict', 'name', (any(some_provider), template, ''), template)"


# --- panels ---------------------------------------------------------------------------------------

def _target(sql: str, fmt: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": dict(DATASOURCE),
        "editorType": "sql",
        "queryType": "timeseries" if fmt == FORMAT_TIMESERIES else "table",
        "format": fmt,
        "rawSql": sql.strip(),
        "pluginVersion": PLUGIN_VERSION,
    }


def _panel(kind: str, title: str, sql: str, fmt: int, grid: tuple[int, int, int, int],
           description: str, field_config: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None, overrides: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(sql, fmt)],
        "fieldConfig": {"defaults": field_config or {}, "overrides": overrides or []},
        "options": options or {},
    }


def timeseries(title: str, sql: str, grid: tuple[int, int, int, int], description: str = "",
               unit: str = "short") -> dict[str, Any]:
    return _panel("timeseries", title, sql, FORMAT_TIMESERIES, grid, description, {"unit": unit},
                  {"legend": {"displayMode": "table", "placement": "bottom"}, "tooltip": {"mode": "multi"}})


def table(title: str, sql: str, grid: tuple[int, int, int, int], description: str = "",
          overrides: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return _panel("table", title, sql, FORMAT_TABLE, grid, description, {},
                  {"showHeader": True, "cellHeight": "sm"}, overrides)


def unit_override(column: str, unit: str) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "unit", "value": unit}]}


def sparkline_override(column: str) -> dict[str, Any]:
    """Grafana 11 table cell "sparkline": the column holds an array of numbers per row (here rates in [0, 1])."""
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": "custom.cellOptions", "value": {"type": "sparkline", "hideValue": True}},
                           {"id": "unit", "value": "percentunit"}]}


def sparkline_columns(panel: dict[str, Any]) -> list[str]:
    """The columns a panel shows as sparklines (field overrides with cellOptions type sparkline)."""
    return [o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["id"] == "byName" and any(
                p["id"] == "custom.cellOptions" and p["value"].get("type") == "sparkline" for p in o["properties"])]


def percent(*columns: str) -> list[dict[str, Any]]:
    """Overrides giving ratio columns (values in [0, 1]) the unit percentunit: 0.97 reads 97%."""
    return [unit_override(column, "percentunit") for column in columns]


def stat(title: str, sql: str, grid: tuple[int, int, int, int], description: str = "",
         unit: str = "short", overrides: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return _panel("stat", title, sql, FORMAT_TABLE, grid, description, {"unit": unit},
                  {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                   "colorMode": "value", "graphMode": "none", "textMode": "auto"}, overrides)


def bar(title: str, sql: str, grid: tuple[int, int, int, int], description: str = "") -> dict[str, Any]:
    return _panel("barchart", title, sql, FORMAT_TABLE, grid, description, {"unit": "short"},
                  {"orientation": "horizontal", "showValue": "auto", "stacking": "none",
                   "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}})


# --- variables ------------------------------------------------------------------------------------

def variable_sql(name: str, column: str, where: str) -> str:
    """A variable's options: the column's values in the range. The template variable's values are the
    template ids and its texts their names (the plugin takes a second column as the text:
    `sms.template_name_dict`, the SMS_TEMPLATE_NAMES mapping over the metadata feeds' names)."""
    if name == "template":
        return (f"SELECT template, any(if(name = template, template, concat(name, ' (', template, ')'))) AS text "
                f"FROM (SELECT DISTINCT provider, template, "
                f"dictGetOrDefault('sms.template_name_dict', 'name', (provider, template, ''), template) AS name "
                f"FROM sms.rollup_level WHERE {where}) GROUP BY template ORDER BY template")
    if name == "region":
        return (f"SELECT DISTINCT province, if(province = '', '{UNKNOWN_REGION}', province) AS text "
                f"FROM sms.rollup_level WHERE {where} ORDER BY province")
    return f"SELECT DISTINCT {column} FROM sms.rollup_level WHERE {where} ORDER BY {column}"


# A variable's options come from the hourly rows of the coarsest grain that has its column (the hours
# overlapping the range: a superset of the range's values, so All still filters nothing): with the province
# a dimension, the minute rows are nearly one per message.
VARIABLE_GRAINS = {"provider": "provider_carrier", "carrier": "provider_carrier", "region": "provider_carrier_province"}
VARIABLE_HOURS = "level = 3600 AND bucket >= toStartOfHour($__fromTime) AND bucket <= $__toTime"


def query_variable(name: str, label: str, column: str) -> dict[str, Any]:
    where = f"grain = '{VARIABLE_GRAINS.get(name, 'all_provinces')}' AND {VARIABLE_HOURS}"
    where += "" if name == "provider" else " AND provider IN (${provider:singlequote})"
    sql = variable_sql(name, column, where)
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": dict(DATASOURCE),
        "query": sql,
        "definition": sql,
        "refresh": 2,  # on time range change
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
    }


def textbox_variable(name: str, label: str) -> dict[str, Any]:
    return {"type": "textbox", "name": name, "label": label, "query": "", "hide": 0,
            "current": {"text": "", "value": ""}, "options": []}


def variable_query(variable: dict[str, Any]) -> str:
    return variable["query"]


# --- dashboards -----------------------------------------------------------------------------------

def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    for n, p in enumerate(panels, start=1):
        p["id"] = n
    return {
        "uid": uid,
        "title": title,
        "tags": ["sms"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"title": "SMS dashboards", "type": "dashboards", "tags": ["sms"], "asDropdown": False,
                   "keepTime": True, "includeVars": True}],
        "panels": panels,
    }


def _dimension_variables() -> list[dict[str, Any]]:
    return [query_variable(*v) for v in VARIABLES]


def rate_table(column: str, label: str, grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """Delivery rate per value of a dimension, with its trend over the range as a sparkline; per template
    also its business name (TEMPLATE_ID_NAME)."""
    named = column == "template"
    name = f", {TEMPLATE_ID_NAME} AS template_name" if named else ""
    some_provider = ", any(provider) AS some_provider" if named else ""
    return table(f"Delivery rate by {label}", f"""
SELECT {column}{name}, sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
       sum(expired) AS expired, sum(pending) AS pending, {RATE} AS delivery_rate,
       arrayMap(t -> round(assumeNotNull(t.2), 4),
                arraySort(groupArrayIf((bucket, bucket_rate), bucket_rate IS NOT NULL))) AS rate_trend
FROM
(
    SELECT {column}, {TREND_BUCKET} AS bucket{some_provider},
           sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed, sum(expired) AS expired,
           sum(pending) AS pending, {RATE} AS bucket_rate
    FROM
    (
        {rollup_source(f"{column}, {'provider, ' if named else ''}sent, delivered, failed, expired, pending",
                       TREND_SECONDS, grains=COUNT_GRAINS)}
    )
    GROUP BY {column}, bucket
)
GROUP BY {column}
ORDER BY sent DESC""", grid,
                 f"Delivery rate per {label} over the time range; rate_trend: the rate in {TREND_BUCKETS} steps of the "
                 "range (oldest first, steps with no final outcome left out)."
                 + (" template_name: the template's business name (SMS_TEMPLATE_NAMES, else its provider's name for "
                    "it, else its id)." if named else ""),
                 [*percent("delivery_rate"), sparkline_override("rate_trend")])


# --- conversions (issue 16): over the templates whose conversions are reported --------------------------
# A template is tracked when it has conversions in the range or the day before it (conversions are reported
# for verification codes), read from the hours of grain 'all_provinces' overlapping them (a tenth of the minutes).
# HOOK(sms.templates): with the template metadata (migration 0011), `OR template IN
# (SELECT template FROM sms.templates WHERE type = 'verification')` joins this condition.
CONVERSION_TRACKED = ("template IN (SELECT template FROM sms.rollup_level WHERE grain = 'all_provinces' AND level = 3600 "
                      "AND bucket >= toStartOfHour($__fromTime) - INTERVAL 1 DAY AND bucket <= $__toTime AND converted > 0)")
CONVERSION_RATE = "if(sent = 0, NULL, converted / sent)"
TIME_TO_CONVERT = "if(converted = 0, NULL, conversion_ms_sum / converted)"
UNCONVERTED_SHARE = "if(delivered = 0, NULL, delivered_unconverted / delivered)"
# "Delivered but never converted" counts the send minutes this long past only: a conversion may still come.
CONVERSION_GRACE_SECONDS = 900


def conversion_table(column: str, label: str, grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """Conversion rate and mean time to convert per value of a dimension, over the tracked templates."""
    return table(f"Conversions by {label}", f"""
SELECT {column}, sum(sent) AS sent, sum(delivered) AS delivered, sum(converted) AS converted,
       sum(conversion_ms_sum) AS conversion_ms_sum, {CONVERSION_RATE} AS conversion_rate,
       {TIME_TO_CONVERT} AS time_to_convert_ms
FROM
(
        {rollup_source(f"{column}, sent, delivered, converted, conversion_ms_sum", WHOLE_RANGE, where=CONVERSION_TRACKED,
                       grains=TEMPLATE_GRAINS)}
)
GROUP BY {column}
ORDER BY sent DESC""", grid,
                 f"Per {label}, over the templates whose conversions are reported (POST /v1/conversions): conversion_rate = "
                 "converted / sent, time_to_convert_ms = mean of converted_at - sent_at.",
                 [*percent("conversion_rate"), unit_override("time_to_convert_ms", "ms")])


def unconverted_table(grid: tuple[int, int, int, int]) -> dict[str, Any]:
    return table("Delivered but never converted", f"""
SELECT provider, carrier, sum(delivered) AS delivered, sum(delivered_unconverted) AS delivered_unconverted,
       {UNCONVERTED_SHARE} AS unconverted_share
FROM
(
        {rollup_source("provider, carrier, delivered, delivered_unconverted", WHOLE_RANGE, where=CONVERSION_TRACKED,
                       grains=TEMPLATE_GRAINS)}
)
WHERE t <= now() - toIntervalSecond({CONVERSION_GRACE_SECONDS})
GROUP BY provider, carrier
ORDER BY unconverted_share DESC""", grid,
                 "Messages whose receipt says delivered and which never converted, of the templates whose conversions are "
                 f"reported, sent at least {CONVERSION_GRACE_SECONDS // 60} minutes ago: a high share says the receipts "
                 "of that provider and carrier claim more than reached people.", percent("unconverted_share"))


def conversion_panels(y: int) -> list[dict[str, Any]]:
    return [
        timeseries("Conversion rate per provider", f"""
SELECT time, provider, conversion_rate
FROM
(
    SELECT $__timeInterval(t) AS time, provider, sum(sent) AS sent, sum(converted) AS converted,
           {CONVERSION_RATE} AS conversion_rate
    FROM
    (
        {rollup_source("provider, sent, converted", INTERVAL, where=CONVERSION_TRACKED, grains=TEMPLATE_GRAINS)}
    )
    GROUP BY time, provider
)
ORDER BY time, provider""", (0, y, 12, 8),
                   "converted / sent of the messages sent in each interval, over the templates whose conversions are "
                   "reported (verification codes).", unit="percentunit"),
        unconverted_table((12, y, 12, 8)),
        *[conversion_table(column, label, (8 * n, y + 8, 8, 8))
          for n, (column, label) in enumerate((("provider", "provider"), ("carrier", "carrier"), ("template", "template")))],
    ]


def providers_side_by_side(grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """One row per provider of every (carrier, template name) that two or more providers served in the range.

    Each provider registers its own template ids, so templates are matched by their business name
    (`sms.template_name_dict`: SMS_TEMPLATE_NAMES over the names the metadata feeds pull; else its own id). The
    rollups are summed per (carrier, provider, template, sign) first, so the names are looked up for
    those few rows only. Whole days and hours of the range come from sms.rollup_level, so few latency
    sketches are merged."""
    return table("Providers side by side for the same carrier and template", f"""
SELECT carrier, template_name, provider, templates, sent, delivered, failed, expired, pending, delivery_rate,
       delivery_rate - max(delivery_rate) OVER pair AS rate_vs_best, p95_latency_ms
FROM
(
    SELECT carrier, template_name, provider, arrayStringConcat(arraySort(groupUniqArray(own_template)), ', ') AS templates,
           sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
           sum(expired) AS expired, sum(pending) AS pending, {RATE} AS delivery_rate,
           if(delivered = 0, NULL, round(quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency)[3])) AS p95_latency_ms,
           count() OVER (PARTITION BY carrier, template_name) AS providers
    FROM
    (
        SELECT carrier, provider, {TEMPLATE_NAME} AS template_name,
               if(template != '', template, if(sign != '', concat('【', sign, '】'), '')) AS own_template,
               sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed, sum(expired) AS expired,
               sum(pending) AS pending, quantilesDDMergeState(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state) AS latency
        FROM
        (
        {rollup_source("carrier, provider, template, sign, sent, delivered, failed, expired, pending, latency_state",
                       WHOLE_RANGE, grains=TEMPLATE_GRAINS)}
        )
        GROUP BY carrier, provider, template, sign
    )
    GROUP BY carrier, template_name, provider
)
WHERE providers >= 2
WINDOW pair AS (PARTITION BY carrier, template_name)
ORDER BY min(delivery_rate) OVER pair - max(delivery_rate) OVER pair, carrier, template_name, delivery_rate DESC, provider""",
                 grid,
                 "The same carrier and template through different providers. Providers register their own template "
                 "ids, so templates are matched by business name (template_name: the SMS_TEMPLATE_NAMES mapping, else the name "
                 "the provider's template API gives it; "
                 "an unmapped template keeps its id); templates: each provider's own template ids (【sign】 for a "
                 "provider without ids, as KX). Sent, delivery rate, the gap to the best provider of the pair (0 = best) "
                 "and p95 latency (ms); pairs with the largest gap first, pairs served by one provider left out.",
                 [*percent("delivery_rate", "rate_vs_best"), unit_override("p95_latency_ms", "ms")])


def overview() -> dict[str, Any]:
    panels = [
        timeseries("Messages by status per provider", f"""
SELECT $__timeInterval(t) AS time, provider,
       sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
       sum(pending) AS pending, sum(expired) AS expired
FROM
(
        {rollup_source("provider, sent, delivered, failed, pending, expired", INTERVAL, grains=COUNT_GRAINS)}
)
GROUP BY time, provider
ORDER BY time, provider""", (0, 0, 12, 8), "Messages sent per interval (send cohort) and their current status."),
        timeseries("Delivery rate per provider", f"""
SELECT time, provider, delivery_rate
FROM
(
    SELECT $__timeInterval(t) AS time, provider,
           sum(delivered) AS delivered, sum(failed) AS failed, sum(expired) AS expired, {RATE} AS delivery_rate
    FROM
    (
        {rollup_source("provider, delivered, failed, expired", INTERVAL, grains=COUNT_GRAINS)}
    )
    GROUP BY time, provider
)
ORDER BY time, provider""", (12, 0, 12, 8),
                   "delivered / (delivered + failed + expired) of the messages sent in each interval; pending excluded. "
                   "One series per provider: the rate alone (the counts are in \"Messages by status per provider\").",
                   unit="percentunit"),
        *[rate_table(column, label, (8 * n, 8, 8, 8))
          for n, (column, label) in enumerate((("carrier", "carrier"), ("template", "template"), ("sign", "sign")))],
        providers_side_by_side((0, 16, 24, 9)),
        timeseries("Latency p50 / p90 / p99 by carrier", f"""
SELECT time, carrier, q[1] AS p50, q[2] AS p90, q[4] AS p99
FROM
(
    {carrier_points("latency_quantiles AS q", where="delivered > 0")}
    UNION ALL
    SELECT $__timeInterval(t) AS time, carrier,
           quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state) AS q
    FROM
    (
        {rollup_source("carrier, delivered, latency_state", INTERVAL, where="delivered > 0",
                       grains=("carrier", "provider_carrier", "provider_carrier_province", "full"),
                       carrier_points=True)}
    )
    GROUP BY time, carrier
    HAVING sum(delivered) > 0
)
ORDER BY time, carrier""", (0, 25, 12, 8),
                   "Send-to-report latency of delivered messages (ms).", unit="ms"),
        bar("Failures by category", f"""
SELECT failure_category, sum(r.failed) AS failed, sum(r.expired) AS expired, sum(r.failed) + sum(r.expired) AS failures
FROM sms.rollup_minute AS r
WHERE $__timeFilter(minute) AND {ROLLUP_FILTER}
GROUP BY failure_category
HAVING failures > 0
ORDER BY failures DESC""", (12, 25, 12, 8), "Failed and expired messages sent in the range, by failure category."),
        table("Top error codes", f"""
SELECT provider, carrier, error_code, outcome_stage, failure_category, sum(n) AS count,
       tupleElement({MEANING}, 1) AS description,
       tupleElement({MEANING}, 2) AS action
FROM
(
    SELECT provider, carrier, error_code, outcome_stage, failure_category, messages AS n
    FROM sms.rollup_error_minute
    WHERE {WHOLE_MINUTES} AND {ROLLUP_FILTER}
    UNION ALL
    SELECT provider, carrier, error_code, outcome_stage, failure_category, 1 AS n
    FROM sms.undelivered_messages
    WHERE {EDGE_MINUTES} AND $__timeFilter(sent_at) AND status = 'failed' AND {MESSAGE_FILTER}
)
GROUP BY provider, carrier, error_code, outcome_stage, failure_category
ORDER BY count DESC
LIMIT 50""", (0, 33, 24, 9), "Failure codes of messages sent in the range, with the knowledge base's description and "
                             "suggested action (the error-code rollups for the range's whole minutes, the failed "
                             "messages themselves for the minutes at its ends)."),
        table("Receipt completeness (1 / 5 / 30 min)", f"""
SELECT hour, provider, carrier, sent, within_1m, within_5m, within_30m
FROM sms.receipt_completeness
WHERE {HOUR_FILTER} AND {PROVIDER_CARRIER_FILTER}
ORDER BY hour DESC, provider, carrier""", (0, 42, 12, 8),
              "Share of each hour's sends with a final receipt within 1, 5 and 30 minutes.",
              percent("within_1m", "within_5m", "within_30m")),
        table("Cohort maturation", f"""
SELECT hour, provider, sent, {MATURATION_COLUMNS}, delivery_rate, pending
FROM sms.cohort_maturation
WHERE {HOUR_FILTER} AND {PROVIDER_FILTER}
ORDER BY hour DESC, provider""", (12, 42, 12, 8),
              "rate_<age>: delivered within that age of the send / the hour's sends (provisional); delivery_rate: "
              "delivered / final outcomes now.",
              percent(*(name for name, _ in MATURATION_AGES), "delivery_rate")),
        stat("Receipt lag per provider", f"""
SELECT provider, max(reported_at) AS newest_receipt_at,
       dateDiff('second', max(reported_at), $__toTime) AS lag_seconds
FROM
(
    SELECT provider, outcome.at AS reported_at
    FROM sms.message_parts
    WHERE outcome.stage = 'receipt' AND outcome.at <= $__toTime AND {PROVIDER_FILTER}
)
GROUP BY provider
ORDER BY provider""", (0, 50, 8, 6),
             "Range end minus the newest receipt's report time, over every receipt received (the parts, as "
             "sms.receipt_lag: at range end = now it is sms.receipt_lag).", unit="s"),
        timeseries("Pending backlog", f"""
SELECT $__timeInterval(t) AS time, provider, sum(pending) AS pending, sum(expired) AS expired
FROM
(
        {rollup_source("provider, pending, expired", INTERVAL, grains=COUNT_GRAINS)}
)
GROUP BY time, provider
ORDER BY time, provider""", (8, 50, 8, 6), "Messages still without a final outcome (pending) and expired, by send minute."),
        timeseries("Provider balance", f"""
SELECT $__timeInterval(at) AS time, provider, account, argMax(balance, at) AS balance
FROM sms.provider_balance
WHERE $__timeFilter(at) AND {PROVIDER_FILTER}
GROUP BY time, provider, account
ORDER BY time, provider, account""", (16, 50, 8, 6), "Messages left: KX Balance readings and the Tencent package "
                   "quota (SmsPackagesStatistics: PackageAmount - CurrentUsage over the packages in effect, per "
                   "SmsSdkAppId). Alert sms-quota-runout: either would run out within SMS_QUOTA_ALERT_HOURS at "
                   "the last hour's send rate."),
        table("Reconciliation with provider statistics", f"""
SELECT hour, provider, our_sent, their_sent, sent_diff, our_delivered, their_delivered, delivered_diff,
       our_failed, their_failed, failed_diff
FROM sms.reconciliation
WHERE {HOUR_FILTER} AND {PROVIDER_FILTER}
ORDER BY hour DESC, provider""", (0, 56, 24, 8), "Our counts against the provider's own hourly statistics (ours minus theirs)."),
        table("Unmapped error codes", f"""
SELECT provider, carrier, code, stage, first_seen, last_seen, count, example_message
FROM
(
    SELECT provider, carrier, error_code AS code, outcome_stage AS stage, min(first) AS first_seen,
           max(last) AS last_seen, sum(n) AS count, any(example) AS example_message
    FROM
    (
        SELECT provider, carrier, error_code, outcome_stage, first_seen AS first, last_seen AS last, messages AS n,
               example_message AS example
        FROM sms.rollup_error_minute
        WHERE failure_category = 'unknown' AND {PROVIDER_CARRIER_FILTER}
        UNION ALL
        SELECT provider, carrier, error_code, outcome_stage, seen, seen, 1, error_message
        FROM
        (
            SELECT provider, carrier, error_code, outcome_stage, error_message,
                   coalesce(reported_at, sent_at, first_seen_at) AS seen
            FROM sms.messages
            WHERE (provider, message_id, phone_hash) IN (
                      SELECT provider, message_id, phone_hash FROM sms.message_parts
                      WHERE sent_at IS NULL AND receipt_sent_at IS NULL AND outcome.rank = 1)
              AND sent_at IS NULL AND status = 'failed' AND failure_category = 'unknown' AND {PROVIDER_CARRIER_FILTER}
        )
    )
    GROUP BY provider, carrier, code, stage
)
WHERE last_seen >= $__fromTime AND first_seen <= $__toTime
ORDER BY count DESC""", (0, 64, 24, 8),
              "Failure codes the knowledge base does not explain (sms.unmapped_codes): new codes for ops to look at. "
              "Counted from the error-code rollups, plus the messages without a send time (in no minute)."),
        *conversion_panels(72),
    ]
    return _dashboard("sms-overview", "SMS delivery: overview", panels, _dimension_variables())


# --- where and why (issue 17) -------------------------------------------------------------------------
PROVINCE_NAME = f"if(province = '', '{UNKNOWN_REGION}', province)"
LATENCY_QUANTILES = "quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)"


def province_carrier_table(grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """Delivery rate and latency per province × carrier, from grain 'provider_carrier_province' when template,
    sign and country are All (few rows a bucket), else from grain 'full'."""
    return table("Delivery rate and latency by province × carrier", f"""
SELECT {PROVINCE_NAME} AS province, carrier, sent, delivered, failed, expired, pending, delivery_rate,
       delivery_rate - carrier_rate AS rate_vs_carrier, p50_latency_ms, p95_latency_ms
FROM
(
    SELECT province, carrier, sent, delivered, failed, expired, pending, delivery_rate, p50_latency_ms, p95_latency_ms,
           sum(delivered) OVER by_carrier / nullIf(sum(delivered + failed + expired) OVER by_carrier, 0) AS carrier_rate
    FROM
    (
        SELECT province, carrier, sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
               sum(expired) AS expired, sum(pending) AS pending, {RATE} AS delivery_rate,
               {LATENCY_QUANTILES}(latency_state) AS q,
               if(delivered = 0, NULL, round(q[1])) AS p50_latency_ms, if(delivered = 0, NULL, round(q[3])) AS p95_latency_ms
        FROM
        (
        {rollup_source("provider, carrier, province, sent, delivered, failed, expired, pending, latency_state",
                       WHOLE_RANGE, grains=("provider_carrier_province", "full"))}
        )
        GROUP BY province, carrier
    )
    WINDOW by_carrier AS (PARTITION BY carrier)
)
ORDER BY sent DESC, province, carrier""", grid,
                 "Per province and carrier over the range: messages, delivery_rate = delivered / (delivered + failed + "
                 "expired) (pending excluded), rate_vs_carrier = the province's rate minus its carrier's over every "
                 "province (a regional outage reads negative), and p50 / p95 latency of delivered messages (ms). "
                 f"{UNKNOWN_REGION}: numbers the data cannot place (foreign, landline, a segment phonenumbers does "
                 "not know).",
                 [*percent("delivery_rate", "rate_vs_carrier"), unit_override("p50_latency_ms", "ms"),
                  unit_override("p95_latency_ms", "ms")])


# The range just before the dashboard's, of the same length: the Why panel's baseline. It ends a second before
# the range starts, so the minute holding $__fromTime is read by one of the two only (rollup_source reads a
# minute when it starts at or after the range's start, or holds its end).
BASELINE_FROM = "toDateTime(2 * toUInt32($__fromTime) - toUInt32($__toTime), 'UTC')"
BASELINE_TO = "toDateTime(toUInt32($__fromTime) - 1, 'UTC')"
WHY_TOP = 10
WHY_DIMENSIONS = ("carrier", "province", "template", "sign", "error_code")  # model/rootcause.DIMENSIONS' order


def _baseline_range(sql: str) -> str:
    """The same SQL over the baseline range (BASELINE_FROM to BASELINE_TO)."""
    return sql.replace("$__fromTime", "\0from\0").replace("$__toTime", BASELINE_TO).replace("\0from\0", BASELINE_FROM)


def _why_slices() -> str:
    """Per window ('now': the range, 'then': the baseline) the failures and decided messages of every slice:
    dimension '' the whole window, error codes their failures (volume: the window's) with the provider,
    carrier and stage that failed most with them, for their meaning."""
    messages = rollup_source("provider, carrier, province, template, sign, failed, delivered", WHOLE_RANGE)
    errors = (f"SELECT provider, carrier, error_code, outcome_stage, messages FROM sms.rollup_error_minute "
              f"WHERE {_whole_buckets('minute', 60)} AND {ROLLUP_FILTER}")
    return "\n    UNION ALL\n    ".join(
        [f"""SELECT '{w}' AS win, tupleElement(slice, 1) AS dimension, tupleElement(slice, 2) AS value,
           sum(failed) AS failures, sum(failed + delivered) AS total, ('', '', '') AS example
    FROM ({sql})
    ARRAY JOIN [('', ''), ('carrier', carrier), ('province', province), ('template', template), ('sign', sign)] AS slice
    GROUP BY win, dimension, value""" for w, sql in (("now", messages), ("then", _baseline_range(messages)))]
        + [f"""SELECT '{w}' AS win, 'error_code' AS dimension, error_code AS value, sum(messages) AS failures,
           0 AS total, argMax((provider, carrier, outcome_stage), messages) AS example
    FROM ({sql})
    GROUP BY win, value""" for w, sql in (("now", errors), ("then", _baseline_range(errors)))])


def why_table(grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """The slices with the largest share of the excess failures of the range against the range before it
    (model/rootcause.explain's definitions, without its noise and lift filters)."""
    order = ", ".join(f"'{d}'" for d in WHY_DIMENSIONS)
    return table("Why: where the excess failures are", f"""
SELECT dimension, if(dimension = 'province', {PROVINCE_NAME.replace("province", "value")}, value) AS value,
       share, excess, failures, volume, failures / volume AS failure_rate, baseline_rate,
       if(dimension = 'error_code', dictGet('sms.error_code_dict', 'description',
          (tupleElement(example, 1), tupleElement(example, 2), value, tupleElement(example, 3))), '') AS description
FROM
(
    SELECT dimension, value, failures, volume, baseline_rate, excess, example,
           least(1, excess / greatest(window_excess, sum(greatest(excess, 0)) OVER (PARTITION BY dimension))) AS share
    FROM
    (
        SELECT dimension, value, failures, volume, baseline_rate, failures - baseline_rate * volume AS excess,
               window_excess, example
        FROM
        (
            SELECT dimension, value, f AS failures, example,
                   if(dimension = 'error_code', window_n, n) AS volume,
                   if(dimension = 'error_code', if(window_bn > 0, bf / window_bn, 0),
                      if(bn > 0, least(1, bf / bn), base_rate)) AS baseline_rate,
                   window_f - base_rate * window_n AS window_excess
            FROM
            (
                SELECT dimension, value, f, n, bf, bn, example,
                       max(if(dimension = '', f, 0)) OVER () AS window_f, max(if(dimension = '', n, 0)) OVER () AS window_n,
                       max(if(dimension = '', bf, 0)) OVER () AS window_bf, max(if(dimension = '', bn, 0)) OVER () AS window_bn,
                       if(window_bn > 0, least(1, window_bf / window_bn), 0) AS base_rate
                FROM
                (
                    SELECT dimension, value, sumIf(failures, win = 'now') AS f, sumIf(total, win = 'now') AS n,
                           sumIf(failures, win = 'then') AS bf, sumIf(total, win = 'then') AS bn,
                           argMaxIf(example, failures, win = 'now') AS example
                    FROM
                    (
    {_why_slices()}
                    )
                    GROUP BY dimension, value
                )
            )
        )
    )
    WHERE dimension != '' AND failures > 0 AND window_excess > 0
)
WHERE excess > 0
ORDER BY share DESC, excess DESC, indexOf([{order}], dimension), value
LIMIT {WHY_TOP}""", grid,
                 "The slices (carrier, province, template, sign, error code) holding the largest share of the excess "
                 "failures of the selection over the range against the range just before it, of the same length "
                 "(model/rootcause.py): excess = failures - baseline_rate × volume (the slice's baseline failure rate, "
                 "or the whole baseline's for a slice new in the range; an error code's volume is every decided "
                 "message), share = excess / the dimension's positive excess (at least the whole range's); when the "
                 "range has excess failures at all, its slices with positive excess, largest share first, top 10. Pick a provider (and a carrier or region) first. "
                 "`sms-analytics why` applies the noise (3 standard deviations) and lift (share ≥ 1.2 × traffic share) filters too, "
                 "so it names only the slices that stand out; this table lists every slice with an excess.",
                 percent("share", "failure_rate", "baseline_rate"))


def drilldown() -> dict[str, Any]:
    panels = [
        stat("Delivery rate", f"""
SELECT sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed, sum(expired) AS expired,
       sum(pending) AS pending, {RATE} AS delivery_rate
FROM
(
        {rollup_source("sent, delivered, failed, expired, pending", WHOLE_RANGE, grains=COUNT_GRAINS)}
)""", (0, 0, 24, 5), "The selection's totals over the range; delivery_rate = delivered / (delivered + failed + "
                     "expired).", overrides=percent("delivery_rate")),
        province_carrier_table((0, 5, 12, 10)),
        why_table((12, 5, 12, 10)),
        table("Message lookup", f"""
SELECT message_id, provider, phone_masked, carrier, country_code, template, sign, sent_at, reported_at,
       status, error_code, error_message, failure_category, latency_ms, receipt_count,
       tupleElement({MEANING}, 1) AS description
FROM sms.messages
WHERE phone_hash IN (
          SELECT phone_hash FROM sms.message_parts WHERE phone_masked = ${{lookup:singlequote}}
          UNION ALL
          SELECT phone_hash FROM sms.message_parts WHERE message_id = ${{lookup:singlequote}})
  AND $__timeFilter(sent_at) AND (phone_masked = ${{lookup:singlequote}} OR message_id = ${{lookup:singlequote}})
ORDER BY sent_at DESC
LIMIT 100
SETTINGS optimize_move_to_prewhere_if_final = 1""", (0, 15, 24, 6),
              "Type a masked phone (138****1234) or a message id in the lookup box. The numbers are found first (the "
              "parts' key, the masked-number index), then only their parts are read (the phone_hash index) and merged."),
        table("Failed numbers with reasons", f"""
SELECT phone_masked, provider, carrier, template, sign, message_id, sent_at, status, error_code,
       failure_category, tupleElement({MEANING}, 1) AS description, tupleElement({MEANING}, 2) AS action
FROM sms.undelivered_messages
WHERE minute >= toStartOfMinute($__fromTime) AND minute <= $__toTime AND $__timeFilter(sent_at) AND {MESSAGE_FILTER}
  AND status IN ('failed', 'expired')
ORDER BY minute DESC, sent_at DESC
LIMIT 1000""", (0, 21, 24, 12), "Failed and expired messages of the selection (phones masked), newest first, from the "
                                "undelivered messages the rollups keep per send minute (sms.undelivered_messages)."),
        stat("Conversions", f"""
SELECT sum(sent) AS sent, sum(converted) AS converted, sum(conversion_ms_sum) AS conversion_ms_sum,
       sum(delivered) AS delivered, sum(delivered_unconverted) AS delivered_unconverted,
       {CONVERSION_RATE} AS conversion_rate, {TIME_TO_CONVERT} AS time_to_convert_ms,
       {UNCONVERTED_SHARE} AS unconverted_share
FROM
(
        {rollup_source("sent, converted, conversion_ms_sum, delivered, delivered_unconverted", WHOLE_RANGE,
                       where=CONVERSION_TRACKED, grains=TEMPLATE_GRAINS)}
)""", (0, 33, 24, 5), "The selection's conversions over the templates whose conversions are reported: conversion_rate = "
                      "converted / sent, mean time to convert, and the share of delivered messages never converted "
                      "(the recent minutes included: see the overview for the share past the grace period).",
             overrides=[*percent("conversion_rate", "unconverted_share"), unit_override("time_to_convert_ms", "ms")]),
        *[conversion_table(column, label, (8 * n, 38, 8, 8))
          for n, (column, label) in enumerate((("provider", "provider"), ("carrier", "carrier"), ("template", "template")))],
    ]
    variables = [*_dimension_variables(), textbox_variable("lookup", "Masked phone or message id")]
    return _dashboard("sms-drilldown", "SMS delivery: drill-down", panels, variables)


DASHBOARDS = {"overview.json": overview, "drilldown.json": drilldown}  # ClickHouse panels (report, bench, push)
# Prometheus panels: the pipeline's own metrics (dashboards/pipeline_health.py)
PROMETHEUS_DASHBOARDS = {pipeline_health.FILE_NAME: pipeline_health.dashboard}


def render(dashboard: dict[str, Any]) -> str:
    return msgspec.json.format(msgspec.json.encode(dashboard), indent=2).decode() + "\n"


def write(folder: Path = JSON_DIR) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in {**DASHBOARDS, **PROMETHEUS_DASHBOARDS}.items():
        path = folder / name
        path.write_text(render(build()), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in write(Path(args[0]) if args else JSON_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
