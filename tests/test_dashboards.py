"""Dashboards: the JSON on disk is what build.py makes, every target is a valid plugin 4.20 target,
the macros expand as the plugin does, and every panel's SQL runs on the warehouse with scenario
data and agrees with totals computed directly from sms.messages."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.dashboards import build
from sms_analytics.dashboards.macros import expand
from sms_analytics.model.events import Delivery
from sms_analytics.runtime import Runtime
from sms_analytics.sinks import template_names
from sms_analytics.sinks.rollups import Rollups
from sms_analytics.sinks.rows import BALANCE_COLUMNS, MESSAGE_COLUMNS, STATS_COLUMNS, message_row
from sms_analytics.sinks.warehouse import Warehouse

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
T1 = datetime(2024, 3, 1, 0, 59, 59, tzinfo=timezone.utc)


def x(sql: str, variables: dict[str, Any] | None = None, all_values: dict[str, list[str]] | None = None,
      interval_s: int = 60) -> str:
    return expand(sql, start=T0, end=T1, interval_s=interval_s, variables=variables or {}, all_values=all_values or {})


# --- (a), (b): the JSON files and the targets --------------------------------------------------------

def test_json_on_disk_is_what_build_makes() -> None:
    for name, make in build.DASHBOARDS.items():
        path = build.JSON_DIR / name
        assert path.exists(), f"{path} missing: run python -m sms_analytics.dashboards.build"
        assert path.read_text(encoding="utf-8") == build.render(make()), f"{name} is stale: rerun the build"
    assert {json.loads((build.JSON_DIR / n).read_text())["uid"] for n in build.DASHBOARDS} == {"sms-overview", "sms-drilldown"}


def test_write_writes_both_dashboards(tmp_path: Any) -> None:
    paths = build.write(tmp_path)
    assert sorted(p.name for p in paths) == ["drilldown.json", "overview.json"]
    assert json.loads((tmp_path / "overview.json").read_text())["title"] == "SMS delivery: overview"


def all_panels() -> list[dict[str, Any]]:
    return [p for make in build.DASHBOARDS.values() for p in make()["panels"]]


@pytest.mark.parametrize("panel", all_panels(), ids=lambda p: p["title"])
def test_panel_targets(panel: dict[str, Any]) -> None:
    expected = {"timeseries": (0, "timeseries"), "table": (1, "table"), "stat": (1, "table"), "barchart": (1, "table")}
    assert panel["type"] in expected
    assert panel["targets"], panel["title"]
    for t in panel["targets"]:
        assert t["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "sms-clickhouse"}
        assert t["pluginVersion"] == "4.20.0" and t["editorType"] == "sql"
        assert (t["format"], t["queryType"]) == expected[panel["type"]]
        assert "$__time" in t["rawSql"] or "$__fromTime" in t["rawSql"] or "$__toTime" in t["rawSql"]
        # variables are only ever used with an escaping format inside IN (...)
        assert not re.search(r"\$\{?(provider|carrier|template|sign|country)\}?(?![\w:])", t["rawSql"].replace(
            "$country)", "")), t["rawSql"]


def test_dashboards_have_the_variables() -> None:
    dd = build.drilldown()
    names = [v["name"] for v in dd["templating"]["list"]]
    assert names == ["provider", "carrier", "template", "sign", "country", "lookup"]
    for v in dd["templating"]["list"][:5]:
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and "sms.rollup_minute" in v["query"]
        assert v["datasource"]["uid"] == "sms-clickhouse"
    assert dd["templating"]["list"][5]["type"] == "textbox"


# --- (c): macro and variable expansion ------------------------------------------------------------

def test_time_macros() -> None:
    f, t = int(T0.timestamp()), int(T1.timestamp())
    assert x("$__timeFilter(minute)") == f"minute >= toDateTime({f}) AND minute <= toDateTime({t})"
    assert x("$__timeFilter_ms(at)") == (f"at >= fromUnixTimestamp64Milli({f}000) AND at <= fromUnixTimestamp64Milli({t}000)")
    assert x("$__fromTime/$__toTime/$__fromTime_ms") == f"toDateTime({f})/toDateTime({t})/fromUnixTimestamp64Milli({f}000)"
    assert x("$__timeInterval( minute )", interval_s=300) == "toStartOfInterval(toDateTime(minute), INTERVAL 300 second)"
    assert x("$__interval_s", interval_s=0) == "1"
    assert x("$__timeGroup(c, 5m)") == "toStartOfInterval(toDateTime(c), INTERVAL 300 second)"
    assert x("$__dateFilter(d)") == "d >= toDate('2024-03-01') AND d <= toDate('2024-03-01')"
    assert x("$__dt(d, t)") == (f"(d >= toDate('2024-03-01') AND d <= toDate('2024-03-01')) AND "
                                f"(t >= toDateTime({f}) AND t <= toDateTime({t}))")


def test_name_boundaries_unknown_and_nesting() -> None:
    f = int(T0.timestamp())
    assert x("$__fromTimeX $__unknown(a) $__toTime_msx") == "$__fromTimeX $__unknown(a) $__toTime_msx"
    assert x("$__timeInterval($__fromTime)", interval_s=60) == f"toStartOfInterval(toDateTime(toDateTime({f})), INTERVAL 60 second)"
    # arguments split on top-level commas only
    assert x("$__timeInterval(coalesce(a, b))", interval_s=60) == "toStartOfInterval(toDateTime(coalesce(a, b)), INTERVAL 60 second)"


def test_comments_are_blanked() -> None:
    out = x("SELECT 1 -- $__timeFilter(x)\n/* $__fromTime */ , '-- kept' AS s")
    assert "$__" not in out and "toDateTime" not in out and "'-- kept'" in out
    assert out.startswith("SELECT 1 ")


def test_variables_all_multi_single_and_quotes() -> None:
    options = {"provider": ["aliyun", "tencent", "o'brien"]}
    assert x("IN (${provider:singlequote})", {"provider": "All"}, options) == "IN ('aliyun','tencent','o\\'brien')"
    assert x("IN (${provider:singlequote})", {"provider": ["$__all"]}, options) == "IN ('aliyun','tencent','o\\'brien')"
    assert x("IN (${provider:singlequote})", {"provider": ["aliyun", "o'brien"]}, options) == "IN ('aliyun','o\\'brien')"
    assert x("${provider:csv}", {"provider": ["a", "b"]}) == "a,b"
    assert x("$provider", {"provider": ["a", "b"]}) == "'a','b'"
    assert x("$provider ${provider}x", {"provider": "a"}) == "a ax"
    assert x("$unknown ${other:csv}", {"provider": "a"}) == "$unknown ${other:csv}"


def test_conditional_all() -> None:
    sql = "WHERE $__conditionalAll(country_code IN (${country:singlequote}), $country) AND $__timeFilter(m)"
    assert x(sql, {"country": "All"}, {"country": ["86"]}).startswith("WHERE 1=1 AND m >= toDateTime(")
    assert x(sql, {"country": []}).startswith("WHERE 1=1 AND")
    assert x(sql, {"country": ["86", "852"]}).startswith("WHERE country_code IN ('86','852') AND m >=")


# --- (d): every panel on the warehouse ------------------------------------------------------------

PROVIDERS = ("dashtest_a", "dashtest_b", "dashtest_c")
CARRIERS = ("mobile", "unicom", "telecom")
TEMPLATES = ("DASH_TPL_1", "DASH_TPL_2")
SIGNS = ("Dash'Q", "DashB")
DIMS = {"provider": "provider", "carrier": "carrier", "template": "template", "sign": "sign", "country": "country_code"}


@pytest.fixture(scope="module")
def scenario(pipeline: Runtime) -> dict[str, Any]:
    assert pipeline.warehouse is not None
    return load_scenario(pipeline.warehouse)


# Business names for the scenario's templates, as an ops engineer would write them: the providers'
# own ids differ, the name is shared. dashtest_c's DASH_TPL_1 is "login code" only under the sign
# DashB (under Dash'Q it keeps its id); the other (provider, template) pairs are unmapped.
SCENARIO_TEMPLATE_NAMES = """provider,template,sign,name
# comments and blank lines are allowed

dashtest_a,DASH_TPL_1,,login code
dashtest_b,DASH_TPL_2,,login code
dashtest_c,DASH_TPL_1,DashB,login code
"""
NAMED = "login code"


@pytest.fixture(scope="module")
def template_mapping(scenario: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The scenario's mapping loaded with the loader the runtime uses; the session's (none) restored after."""
    path = tmp_path_factory.mktemp("template-names") / "names.csv"
    path.write_text(SCENARIO_TEMPLATE_NAMES, encoding="utf-8")
    wh = scenario["warehouse"]
    assert template_names.load(wh, path) == 3
    yield template_names.read(path)
    template_names.load(wh, None)


def load_scenario(warehouse: Warehouse) -> dict[str, Any]:
    """90 messages sent in the first hour of the day 10 days ago (no other test uses that window).
    Loaded once per warehouse: tests/test_report.py reports on the same data."""
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
    start, end = day, day + timedelta(seconds=3599)
    loaded = run(warehouse, "SELECT count() AS n FROM sms.provider_stats WHERE provider = 'dashtest_a'")[0]["n"]
    if not loaded:
        _insert_scenario(warehouse, start)
    return {"warehouse": warehouse, "start": start, "end": end}


def _insert_scenario(warehouse: Warehouse, start: datetime) -> None:
    start_ms = int(start.timestamp() * 1000)
    deliveries = []
    for i in range(90):
        sent = start_ms + (i % 50) * 60_000 + 1234
        base = dict(provider=PROVIDERS[i % 3], message_id=f"dash-{i}", phone=f"+86139{i:08d}",
                    phone_hash=f"dash-h{i}", phone_masked=f"139****{i:04d}", carrier=CARRIERS[(i // 3) % 3],
                    country_code="852" if i % 5 == 0 else "86", has_send=True, template=TEMPLATES[i % 2],
                    sign=SIGNS[(i // 2) % 2], segments=1 + i % 2, sent_at_ms=sent, updated_at_ms=sent + 1000)
        kind = i % 6
        if kind < 3:
            d = Delivery(**base, status="delivered", stage="receipt", outcome_at_ms=sent + 1000 + (i * 7919) % 900_000,
                         error_code="DELIVERED", failure_category="delivered", receipt_ids=[f"dr{i}"])
        elif kind == 3:
            d = Delivery(**base, status="failed", stage="receipt", outcome_at_ms=sent + 5000, error_code="MK:0001",
                         failure_category="unreachable", receipt_ids=[f"dr{i}"])
        elif kind == 4 and i % 12 == 4:
            d = Delivery(**base, status="failed", stage="receipt", outcome_at_ms=sent + 7000, error_code="DASH:9999",
                         error_message="no idea", failure_category="unknown", receipt_ids=[f"dr{i}"])
        elif kind == 4:
            d = Delivery(**base, status="failed", stage="submit", outcome_at_ms=sent,
                         error_code="isv.BUSINESS_LIMIT_CONTROL", failure_category="rate_limited")
        else:
            d = Delivery(**base)  # never a receipt: expired after 72 h
        deliveries.append(d)
    warehouse.insert("sms.message_parts", [message_row(d, store_raw_phone=False) for d in deliveries], MESSAGE_COLUMNS)
    rollups = Rollups(warehouse, 72 * 3600)
    rollups.mark(deliveries)
    rollups.recompute()
    warehouse.insert("sms.provider_balance", [["dashtest_a", "acct", 5000 - k * 100, start + timedelta(minutes=10 * k)]
                                              for k in range(4)], BALANCE_COLUMNS)
    warehouse.insert("sms.provider_stats", [["dashtest_a", "app", start, 31, 30, 30, 30, 14, 12, 3, 2, 4, 1, 2,
                                             start + timedelta(hours=1)]], STATS_COLUMNS)  # last: marks it loaded


def run(wh: Warehouse, sql: str) -> list[dict[str, Any]]:
    cols, rows = wh.query(sql)
    return [dict(zip(cols, r)) for r in rows]


def resolve_variables(wh: Warehouse, dashboard: dict[str, Any], selection: dict[str, Any], start: datetime,
                      end: datetime) -> dict[str, list[str]]:
    """Run the query variables in order, as Grafana does; returns every variable's option values."""
    options: dict[str, list[str]] = {}
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        sql = expand(v["query"], start=start, end=end, interval_s=60, variables=selection, all_values=options)
        options[v["name"]] = [r[0] for r in wh.query(sql)[1]]
    return options


def truth_where(sql_panel: str, selection: dict[str, Any], options: dict[str, list[str]], start: datetime,
                end: datetime) -> str:
    """sms.messages sent in the range (by send minute, as the rollups), on the dimensions the panel filters on."""
    where = [f"sent_at IS NOT NULL AND toStartOfMinute(sent_at) BETWEEN toDateTime({int(start.timestamp())}) "
             f"AND toDateTime({int(end.timestamp())})"]
    for var, column in DIMS.items():
        if "${" + var + ":" not in sql_panel:
            continue
        value = selection[var]
        values = options[var] if value == "All" else value
        where.append(f"{column} IN ({', '.join(quote(v) for v in values)})")
    return " AND ".join(where)


COUNTS = """count() AS sent, countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed,
            countIf(status = 'expired') AS expired, countIf(status = 'pending') AS pending"""
FINAL_RATE = "countIf(status = 'delivered') / countIf(status IN ('delivered', 'failed', 'expired'))"


def truth(wh: Warehouse, sql_panel: str, selection: dict[str, Any], options: dict[str, list[str]],
          start: datetime, end: datetime) -> dict[str, Any]:
    """The same totals straight from sms.messages, filtered on the dimensions the panel filters on."""
    rows = run(wh, f"""
        SELECT {COUNTS}, countIf(status = 'failed' AND failure_category = 'unknown') AS unknown
        FROM sms.messages WHERE {truth_where(sql_panel, selection, options, start, end)}""")
    return rows[0]


def trend_truth(wh: Warehouse, column: str, where: str, start: datetime, end: datetime) -> dict[str, list[float]]:
    """Per value of the column: the delivery rate of each trend step (the range in 24 steps, a minute at least)."""
    step = max(60, (int(end.timestamp()) - int(start.timestamp())) // build.TREND_BUCKETS)
    rows = run(wh, f"""
        SELECT key, arrayMap(t -> t.2, arraySort(groupArray((bucket, rate)))) AS trend
        FROM (SELECT {column} AS key, toStartOfInterval(toStartOfMinute(sent_at), INTERVAL {step} SECOND) AS bucket,
                     {FINAL_RATE} AS rate
              FROM sms.messages WHERE {where}
              GROUP BY key, bucket HAVING countIf(status IN ('delivered', 'failed', 'expired')) > 0)
        GROUP BY key""")
    return {r["key"]: r["trend"] for r in rows}


def side_by_side_truth(wh: Warehouse, where: str, mapping: list[template_names.TemplateName]
                       ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(carrier, template name, provider) -> counts from a direct query on sms.messages for that provider,
    carrier and the provider's templates (and signs) of that name, for the names two or more providers served."""
    keys: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
    for r in run(wh, f"SELECT DISTINCT carrier, provider, template, sign FROM sms.messages WHERE {where}"):
        name = template_names.name_of(mapping, r["provider"], r["template"], r["sign"])
        keys[(r["carrier"], name, r["provider"])].add((r["template"], r["sign"]))
    providers: dict[tuple[str, str], int] = defaultdict(int)
    for carrier, name, _ in keys:
        providers[(carrier, name)] += 1
    out = {}
    for (carrier, name, provider), own in keys.items():
        if providers[(carrier, name)] < 2:
            continue
        match = " OR ".join(f"(template = {quote(t)} AND sign = {quote(s)})" for t, s in sorted(own))
        (row,) = run(wh, f"""
            SELECT {COUNTS}, {FINAL_RATE} AS delivery_rate FROM sms.messages
            WHERE {where} AND provider = {quote(provider)} AND carrier = {quote(carrier)} AND ({match})""")
        row["templates"] = ", ".join(sorted({t or f"【{s}】" for t, s in own}))
        (p95,) = run(wh, f"""
            SELECT round(quantilesDDMerge(0.005, 0.5, 0.9, 0.95, 0.99)(latency_state)[3]) AS p95 FROM sms.rollup_minute
            WHERE {where.replace("sent_at IS NOT NULL AND toStartOfMinute(sent_at)", "minute", 1)}
              AND provider = {quote(provider)} AND carrier = {quote(carrier)} AND ({match}) HAVING sum(delivered) > 0""") or [{}]
        row["p95_latency_ms"] = p95.get("p95")
        out[(carrier, name, provider)] = row
    return out


def check_side_by_side(wh: Warehouse, rows: list[dict[str, Any]], where: str,
                       mapping: list[template_names.TemplateName]) -> None:
    """The comparison panel's rows against sms.messages: the same (carrier, name, provider) rows, each with its
    provider's own templates and the counts of a direct query, and every name of a carrier with two providers."""
    expected = side_by_side_truth(wh, where, mapping)
    assert rows and list(rows[0]) == ["carrier", "template_name", "provider", "templates", "sent", "delivered", "failed",
                                      "expired", "pending", "delivery_rate", "rate_vs_best", "p95_latency_ms"]
    assert {(r["carrier"], r["template_name"], r["provider"]) for r in rows} == set(expected)
    assert len(rows) == len(expected)
    for r in rows:
        want = expected[(r["carrier"], r["template_name"], r["provider"])]
        assert [r[c] for c in ("templates", "sent", "delivered", "failed", "expired", "pending")] == \
            [want[c] for c in ("templates", "sent", "delivered", "failed", "expired", "pending")], r
        assert r["delivery_rate"] == pytest.approx(want["delivery_rate"])
        assert r["rate_vs_best"] <= 1e-12 and (r["p95_latency_ms"] is None) == (r["delivered"] == 0), r
        assert r["p95_latency_ms"] == want["p95_latency_ms"], r  # the sketches merged in two steps as in one
    for pair in {(r["carrier"], r["template_name"]) for r in rows}:
        mine = [r for r in rows if (r["carrier"], r["template_name"]) == pair]
        assert len({r["provider"] for r in mine}) == len(mine) >= 2 and max(r["rate_vs_best"] for r in mine) == 0, mine


def test_side_by_side_without_a_mapping_compares_raw_templates(
        scenario: dict[str, Any], template_mapping: list[template_names.TemplateName], tmp_path: Path) -> None:
    """No mapping: a template is its own name (the scenario's ids are shared by the providers, so pairs remain);
    the mapping comes back after."""
    wh, start, end = scenario["warehouse"], scenario["start"], scenario["end"]
    panel = next(p for p in build.overview()["panels"] if p["title"] == SIDE_BY_SIDE)
    options = {"provider": PROVIDERS, "carrier": CARRIERS, "template": TEMPLATES, "sign": SIGNS, "country": ["86", "852"]}
    sql = expand(panel["targets"][0]["rawSql"], start=start, end=end, interval_s=300,
                 variables={v: "All" for v in DIMS}, all_values={k: list(v) for k, v in options.items()})
    where = truth_where(panel["targets"][0]["rawSql"], {v: "All" for v in DIMS},
                        {k: list(v) for k, v in options.items()}, start, end)
    path = tmp_path / "names.csv"
    path.write_text(SCENARIO_TEMPLATE_NAMES, encoding="utf-8")
    try:
        assert template_names.load(wh, None) == 0
        rows = run(wh, sql)
        assert all(r["template_name"] == r["templates"] for r in rows) and {r["template_name"] for r in rows} == set(TEMPLATES)
        check_side_by_side(wh, rows, where, [])
    finally:
        assert template_names.load(wh, path) == 3
    assert NAMED in {r["template_name"] for r in run(wh, sql)}


def quote(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


SELECTIONS = {
    "all": {"provider": "All", "carrier": "All", "template": "All", "sign": "All", "country": "All"},
    "multi": {"provider": ["dashtest_a", "dashtest_b"], "carrier": ["mobile", "unicom"], "template": "All",
              "sign": ["Dash'Q"], "country": ["86", "852"]},
}
PANELS = [(make, p["title"]) for make in build.DASHBOARDS.values() for p in make()["panels"]]
SIDE_BY_SIDE = "Providers side by side for the same carrier and template"
RATE_TABLES = ("Delivery rate by carrier", "Delivery rate by template", "Delivery rate by sign")


def test_rate_tables_have_sparklines_and_the_comparison_panel_exists() -> None:
    panels = {p["title"]: p for p in build.overview()["panels"]}
    for title in RATE_TABLES:
        assert build.sparkline_columns(panels[title]) == ["rate_trend"]
        assert "AS rate_trend" in panels[title]["targets"][0]["rawSql"]
        (spark,) = [o for o in panels[title]["fieldConfig"]["overrides"] if o["matcher"]["options"] == "rate_trend"]
        assert {"id": "custom.cellOptions", "value": {"type": "sparkline", "hideValue": True}} in spark["properties"]
    side = panels[SIDE_BY_SIDE]
    assert side["type"] == "table" and side["gridPos"]["w"] == 24
    assert not build.sparkline_columns(side)
    # no two panels overlap on the grid
    cells = [(p["title"], x, y) for p in panels.values() for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len({(x, y) for _, x, y in cells}) == len(cells)


@pytest.mark.parametrize("selection_name", list(SELECTIONS))
@pytest.mark.parametrize("make,title", PANELS, ids=[t for _, t in PANELS])
def test_panel_runs_on_scenario(scenario: dict[str, Any], template_mapping: list[template_names.TemplateName],
                                make: Any, title: str, selection_name: str) -> None:
    wh, start, end = scenario["warehouse"], scenario["start"], scenario["end"]
    dashboard = make()
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    selection = dict(SELECTIONS[selection_name])
    lookup = "dash-1" if selection_name == "multi" else "139****0002"
    selection["lookup"] = lookup
    options = resolve_variables(wh, dashboard, selection, start, end)
    assert set(PROVIDERS) <= set(options["provider"]), options
    if selection_name == "all":
        assert options["sign"] == sorted(SIGNS) and options["country"] == ["852", "86"]
    raw = panel["targets"][0]["rawSql"]
    sql = expand(raw, start=start, end=end, interval_s=300, variables=selection, all_values=options)
    assert "$" not in re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql), sql
    rows = run(wh, sql)
    assert rows, f"{title}: no rows\n{sql}"
    truth_row = truth(wh, raw, selection, options, start, end)
    assert truth_row["sent"] > 0

    if title == "Message lookup":
        assert [r["message_id"] for r in rows] == ["dash-1" if selection_name == "multi" else "dash-2"]
        return
    for r in rows:
        if "time" in r:
            assert start <= r["time"].replace(tzinfo=timezone.utc) <= end, r
        if "hour" in r:
            assert r["hour"].replace(tzinfo=timezone.utc) == start, r
        for col in ("delivery_rate", "within_1m", "within_5m", "within_30m"):
            if col in r and r[col] is not None:
                assert 0 <= r[col] <= 1, (col, r)
        if "within_1m" in r:
            assert r["within_1m"] <= r["within_5m"] <= r["within_30m"], r
        if "provisional_rate" in r:
            assert all(0 <= v <= 1 for v in r["provisional_rate"]) and r["provisional_rate"] == sorted(r["provisional_rate"])
        if "p50" in r:
            assert not any(math.isnan(r[c]) for c in ("p50", "p90", "p99")), r
            assert 0 < r["p50"] <= r["p90"] <= r["p99"] <= 901_000 * 1.01, r

    def total(col: str) -> int:
        return sum(r[col] for r in rows)

    cols = rows[0].keys()
    where = truth_where(raw, selection, options, start, end)
    if "rate_trend" in cols:  # the sparkline column: rates in [0, 1], oldest first, as sms.messages says
        expected = trend_truth(wh, next(iter(cols)), where, start, end)
        for r in rows:
            trend = r["rate_trend"]
            assert trend and all(isinstance(v, float) and 0 <= v <= 1 for v in trend), r
            assert trend == pytest.approx(expected[r[next(iter(cols))]], abs=1e-4), r
            assert len(trend) <= build.TREND_BUCKETS
    if title == SIDE_BY_SIDE:
        check_side_by_side(wh, rows, where, template_mapping)
        named = [r for r in rows if r["template_name"] == NAMED]
        if selection_name == "all":  # the mapped name pairs all three providers' own templates
            assert {r["provider"] for r in named} == set(PROVIDERS), rows
            assert {(r["provider"], r["templates"]) for r in named} == {
                ("dashtest_a", "DASH_TPL_1"), ("dashtest_b", "DASH_TPL_2"), ("dashtest_c", "DASH_TPL_1")}
        else:  # only Dash'Q: dashtest_c's DASH_TPL_1 keeps its id, a and b still pair under the name
            assert {r["provider"] for r in named} == {"dashtest_a", "dashtest_b"}, rows
        return
    for col in ("sent", "delivered", "failed", "expired", "pending"):
        if col in cols and "our_sent" not in cols:
            assert total(col) == truth_row[col], (title, col, total(col), truth_row)
    if "delivery_rate" in cols and len(rows) == 1:
        d, f, e = truth_row["delivered"], truth_row["failed"], truth_row["expired"]
        assert rows[0]["delivery_rate"] == pytest.approx(d / (d + f + e))
    if "failures" in cols:
        assert total("failures") == truth_row["failed"] + truth_row["expired"]
    if title == "Top error codes":
        assert total("count") == truth_row["failed"]
        assert all(isinstance(r["description"], str) and isinstance(r["action"], str) for r in rows)
    if title == "Failed numbers with reasons":
        assert len(rows) == truth_row["failed"] + truth_row["expired"]
        assert all(re.fullmatch(r"139\*{4}\d{4}", r["phone_masked"]) for r in rows)
    if title == "Unmapped error codes":
        assert total("count") == truth_row["unknown"] > 0 and {r["code"] for r in rows} == {"DASH:9999"}
    if title == "Reconciliation with provider statistics":
        assert total("our_sent") == truth_row["sent"]
        assert total("our_delivered") == truth_row["delivered"]
        assert total("our_failed") == truth_row["failed"] + truth_row["expired"]
        a = next(r for r in rows if r["provider"] == "dashtest_a")
        assert a["their_sent"] == 30 and a["sent_diff"] == a["our_sent"] - 30
    if title == "Receipt lag per provider":
        newest = run(wh, "SELECT provider, max(reported_at) AS m FROM sms.messages WHERE provider LIKE 'dashtest_%' "
                         "AND reported_at IS NOT NULL GROUP BY provider")
        expected = {r["provider"]: int(end.timestamp()) - math.floor(r["m"].replace(tzinfo=timezone.utc).timestamp())
                    for r in newest}  # dateDiff counts second boundaries
        got = {r["provider"]: r["lag_seconds"] for r in rows if r["provider"] in expected}
        assert got == {p: expected[p] for p in got} and got and all(v >= 0 for v in got.values())
    if title == "Provider balance":
        assert {r["provider"] for r in rows} == {"dashtest_a"} and min(r["balance"] for r in rows) == 4700
