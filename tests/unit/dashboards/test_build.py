"""dashboards/build.py: the dashboards on disk, their panels, targets and variables (from tests/test_dashboards.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from sms_analytics.dashboards import build
from sms_analytics.dashboards.macros import expand
from tests.integration.test_dashboards import SIDE_BY_SIDE

T0 = datetime(2024, 3, 1, tzinfo=UTC)


T1 = datetime(2024, 3, 1, 0, 59, 59, tzinfo=UTC)


def x(sql: str, variables: dict[str, Any] | None = None, all_values: dict[str, list[str]] | None = None,
      interval_s: int = 60) -> str:
    return expand(sql, start=T0, end=T1, interval_s=interval_s, variables=variables or {}, all_values=all_values or {})


def test_json_on_disk_is_what_build_makes() -> None:
    for name, make in build.DASHBOARDS.items():
        path = build.JSON_DIR / name
        assert path.exists(), f"{path} missing: run python -m sms_analytics.dashboards.build"
        assert path.read_text(encoding="utf-8") == build.render(make()), f"{name} is stale: rerun the build"
    assert {json.loads((build.JSON_DIR / n).read_text())["uid"] for n in build.DASHBOARDS} == {"sms-overview", "sms-drilldown"}


def test_write_writes_both_dashboards(tmp_path: Any) -> None:
    paths = build.write(tmp_path)
    assert sorted(p.name for p in paths) == ["drilldown.json", "health.json", "overview.json"]
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
        # variables are only ever used with an escaping format inside IN (...), or as the variable that
        # $__conditionalAll(cond, $var) tests for All
        bare = re.sub(r", \$(provider|carrier|template|sign|country)\)", ")", t["rawSql"])
        assert not re.search(r"\$\{?(provider|carrier|template|sign|country)\}?(?![\w:])", bare), t["rawSql"]


def test_dashboards_have_the_variables() -> None:
    dd = build.drilldown()
    names = [v["name"] for v in dd["templating"]["list"]]
    assert names == ["provider", "carrier", "template", "sign", "country", "template_type", "region", "lookup"]
    for v in dd["templating"]["list"][:7]:
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and "sms.rollup_level" in v["query"]
        assert v["datasource"]["uid"] == "sms-clickhouse"
    assert dd["templating"]["list"][7]["type"] == "textbox"


def test_the_region_filters_every_panel_the_dimensions_filter() -> None:
    """region (the province) is a variable whose '' shows as (unknown); every panel filtering on the carrier
    variable filters on it, except those over sources without a province (hourly provider × carrier views), and
    only grains that keep the province, or sum every province when it is All, are read."""
    (variable,) = [v for v in build.drilldown()["templating"]["list"] if v["name"] == "region"]
    assert "SELECT DISTINCT province, if(province = '', '(unknown)', province) AS text" in variable["query"]
    for dashboard in (build.overview(), build.drilldown()):
        for panel in dashboard["panels"]:
            sql = panel["targets"][0]["rawSql"]
            if "${carrier:singlequote}" in sql and "sms.receipt_completeness" not in sql and "failure_category = 'unknown'" not in sql:
                assert "province IN (${region:singlequote})" in sql, panel["title"]
    for grain, has, must_be_all, _ in build.GRAINS:
        assert "province" in has or "region" in must_be_all, grain


def test_the_template_type_filters_every_rollup_and_message_panel() -> None:
    """template_type (the metadata feeds' normalized type) is a variable over sms.template_info_dict, and every
    panel that filters on the template filters on it too (only grains that keep the template when it is set)."""
    (variable,) = [v for v in build.drilldown()["templating"]["list"] if v["name"] == "template_type"]
    assert "sms.template_info_dict" in variable["query"]
    for dashboard in (build.overview(), build.drilldown()):
        for panel in dashboard["panels"]:
            sql = panel["targets"][0]["rawSql"]
            if "${template:singlequote}" in sql:
                assert "${template_type:singlequote}" in sql, panel["title"]
    for grain, _, must_be_all, _ in build.GRAINS:
        assert grain in build.TEMPLATE_GRAINS or "template_type" in must_be_all


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
