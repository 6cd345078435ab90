"""dashboards.report_panels: the view of one panel of the static report, by its type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_analytics.dashboards import report_panels as rp
from sms_analytics.dashboards.charts import DASHES, PALETTE, BarChart, Sparkline

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
START, END = T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)


def panel(kind="table", **extra):
    return {"type": kind, "title": "T", "description": "D", "fieldConfig": {"defaults": {}, "overrides": []}, **extra}


def view(p, columns, rows, error=None, width=800):
    return rp.panel_view(p, columns, rows, error, START, END, 60, 12, width)


def test_error_and_nodata():
    v = view(panel(), ["a"], [(1,)], error="bad sql")
    assert (v.state, v.error, v.content, v.title, v.description, v.span) == ("error", "bad sql", None, "T", "D", 12)
    v = view(panel(), ["a"], [])
    assert (v.state, v.error, v.content) == ("nodata", "", None)
    assert rp.panel_view({"type": "stat"}, ["a"], [], None, START, END, 60, 6, 400).description == ""


def test_to_series_splits_by_text_and_metric():
    groups, metrics, series = rp.to_series(
        ["time", "provider", "sent", "rate"],
        [(T1, "kx", 2, 0.5), (T0, "kx", 1, float("nan")), (T0, "aliyun", 3, 1.0), ("not a time", "x", 9, 9)])
    assert groups == ["kx", "aliyun"]
    assert metrics == ["sent", "rate"]
    assert [(s.group, s.metric) for s in series] == [("kx", "sent"), ("aliyun", "sent"), ("kx", "rate"),
                                                      ("aliyun", "rate")]
    assert series[0].points == [(T0, 1.0), (T1, 2.0)]
    assert series[2].points == [(T0, None), (T1, 0.5)]


def test_to_series_without_time():
    assert rp.to_series(["provider", "sent"], [("kx", 1)]) == ([], [], [])


def test_timeseries_one_group_legend():
    v = view(panel("timeseries"), ["time", "sent", "failed"], [(T0, 4, 1), (T1, 6, 0)])
    assert v.state == "timeseries"
    ts = v.content
    assert ts.one_interval is None
    assert ts.per_row is None
    assert len(ts.charts) == 1
    assert ts.legend_head == ["last", "min", "max"]
    assert [(r.name, r.color, r.dash, r.values) for r in ts.legend] == [
        ("sent", PALETTE[0], "", ["6", "4", "6"]), ("failed", PALETTE[1], "", ["0", "0", "1"])]


def test_timeseries_groups_dashed_by_metric_and_one_interval():
    v = view(panel("timeseries"), ["time", "provider", "sent", "failed"], [(T0, "kx", 1, 0), (T0, "tencent", 2, 1)])
    ts = v.content
    assert ts.one_interval == "60 s"
    assert [(r.name, r.color, r.dash) for r in ts.legend] == [
        ("kx · sent", PALETTE[0], DASHES[0]), ("tencent · sent", PALETTE[1], DASHES[0]),
        ("kx · failed", PALETTE[0], DASHES[1]), ("tencent · failed", PALETTE[1], DASHES[1])]


def test_timeseries_all_empty_is_nodata():
    v = view(panel("timeseries"), ["time", "sent"], [(T0, None)])
    assert (v.state, v.content) == ("nodata", None)


def test_small_multiples():
    rows = [(T0, f"p{i}", i, i * 10) for i in range(4)]  # 4 groups x 2 metrics = 8 series > 6
    ts = view(panel("timeseries"), ["time", "provider", "sent", "latency_ms"], rows, width=1000).content
    assert ts.per_row == 2
    assert [c.title for c in ts.charts] == ["sent", "latency_ms"]
    assert ts.charts[0].width == (1000 - 12) // 2
    assert ts.legend_head == ["sent (last)", "latency_ms (last)"]
    assert [(r.name, r.values) for r in ts.legend][:2] == [("p0", ["0", "0 ms"]), ("p1", ["1", "10 ms"])]


def test_table_cells_units_and_more(monkeypatch):
    monkeypatch.setattr(rp, "MAX_TABLE_ROWS", 2)
    p = panel()
    long = "x" * (rp.LONG_TEXT + 1)
    t = view(p, ["provider", "delivery_rate", "note"], [("kx", 0.5, ""), ("aliyun", 0.25, long), ("tencent", 1.0, "z")]).content
    assert isinstance(t, rp.Table)
    assert t.head == [("provider", "text"), ("delivery_rate", "number"), ("note", "text")]
    assert t.more == 1
    assert t.rows[0] == [rp.Cell("text", "kx"), rp.Cell("number", "50.00%"), rp.Cell("text empty", "(empty)")]
    assert t.rows[1][2] == rp.Cell("text long", long)


def test_table_sparkline_column():
    override = {"matcher": {"id": "byName", "options": "trend"},
                "properties": [{"id": "custom.cellOptions", "value": {"type": "sparkline"}}]}
    p = panel(fieldConfig={"defaults": {}, "overrides": [override]})
    t = rp.table(p, ["provider", "trend"], [("kx", [0.9, 0.95, 1.0])])
    cell = t.rows[0][1]
    assert cell.css == "spark"
    assert cell.is_spark is True
    assert isinstance(cell.spark, Sparkline)


def test_cell():
    assert rp.cell(1234, "number", "short") == rp.Cell("number", "1,234")
    assert rp.cell(1500, "number", "ms") == rp.Cell("number", "1.50 s")


def test_stat_boxes():
    p = panel("stat")
    boxes = rp.stat_boxes(p, ["provider", "sent", "p95", "at"], [("kx", 10, 250, T0)])
    assert [(b.label, b.value, b.column) for b in boxes] == [("kx", "10", "sent"), ("kx", "250 ms", "p95")]
    assert boxes[0].times == [("at", "2026-01-01 12:00:00")]
    p["fieldConfig"]["defaults"]["unit"] = "percentunit"
    assert [b.value for b in rp.stat_boxes(p, ["rate"], [(0.5,)])] == ["50.00%"]
    assert rp.stat_boxes(p, ["rate"], [(0.5,)])[0].label == "rate"


def test_stat_and_barchart_views():
    v = view(panel("stat"), ["provider"], [("kx",)])
    assert (v.state, v.content) == ("nodata", None)  # no numeric column: no box
    v = view(panel("barchart"), ["provider", "sent"], [("kx", 3)])
    assert v.state == "barchart"
    assert isinstance(v.content, BarChart)
    assert view(panel("barchart"), ["provider"], [("kx",)]).state == "nodata"


@pytest.mark.parametrize("kind", ["table", "", "piechart"])
def test_other_types_are_tables(kind):
    assert view(panel(kind), ["a"], [(1,)]).state == "table"
