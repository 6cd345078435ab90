"""dashboards/report.py without a warehouse: escaping, --since, intervals, layout, templates (from tests/test_report.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.dashboards import build, charts, report
from tests.integration.test_report import APOSTROPHE, GENERATED, sections


def test_hostile_values_are_escaped() -> None:
    evil = "<script>alert('x')</script>"

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "AS time" in sql:
            return ["time", "provider", "sent"], [(datetime(2030, 1, 1, tzinfo=UTC), evil, 1)]
        return ["provider", "sent"], [(evil, 1)]

    text = report.build_report(query, report.time_range(GENERATED - timedelta(hours=1), GENERATED))
    assert "<script" not in text and re.search(f"&lt;script&gt;alert\\({APOSTROPHE}x{APOSTROPHE}\\)&lt;/script&gt;", text)


def test_one_interval_of_data_is_labelled() -> None:
    """A range whose data falls in one interval (a short `make run`): dots with their values, kept apart."""
    at = GENERATED - timedelta(minutes=30)

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "AS time" in sql:
            return ["time", "provider", "pending"], [(at, p, 5) for p in ("a", "b", "c")] + [(at, "d", 9)]
        return [], []

    text = report.build_report(query, report.time_range(GENERATED - timedelta(hours=1), GENERATED))
    body = sections(text)["Pending backlog"][1]
    assert "Only one 60 s interval has data" in body
    labels = re.findall(r'<text class="plab" x="[\d.]+" y="([\d.]+)" fill="([^"]+)"[^>]*>([^<]*)</text>', body)
    assert sorted(t for _, _, t in labels) == ["5", "9"]  # three equal values at one place: one label
    assert len({y for y, _, _ in labels}) == 2 and ("#5b616b" in {c for _, c, _ in labels})


@pytest.mark.parametrize("text,seconds", [("24h", 86400), ("90m", 5400), ("7d", 604800), ("30s", 30), (" 2w", 1209600)])
def test_parse_since(text: str, seconds: int) -> None:
    assert report.parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1h", "1.5h", "3y"])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        report.parse_since(text)


def test_interval_and_axes() -> None:
    assert report.interval_for(3600) == 60 and report.interval_for(86400) == 900 and report.interval_for(30 * 86400) == 21600 and report.interval_for(400 * 86400) == 86400
    lo, hi, ticks = charts.y_axis([0.88, 0.94], "percentunit")
    assert 0 <= lo <= 0.88 and 0.94 <= hi <= 1 and ticks[0] == lo and ticks[-1] == pytest.approx(hi)
    assert charts.y_axis([0.999, 1.0], "percentunit")[1] == 1.0
    assert charts.y_axis([3, 7], "short")[2] == [0, 2, 4, 6, 8]
    for values, labels in (([700, 2600], ["0 s", "1 s", "2 s", "3 s"]), ([0, 10_909_260], ["0 h", "1 h", "2 h", "3 h", "4 h"])):
        assert [charts.axis_label(v, "ms", max(values)) for v in charts.y_axis(values, "ms")[2]] == labels
    rng = report.time_range(GENERATED - timedelta(hours=24), GENERATED)
    ticks_24h = charts.time_ticks(rng.start, rng.end, 600)
    assert 2 <= len(ticks_24h) <= 600 // 58 and all(rng.start <= t <= rng.end for t, _ in ticks_24h)


def test_layout_fills_every_line() -> None:
    panels = sorted(build.overview()["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    spans = report.layout_spans(panels)
    line = 0
    for panel, span in zip(panels, spans, strict=False):
        assert 1 <= span <= 24 and (panel["type"] != "table" or span >= 12)
        line = (line + span) % 24
    assert line == 0


def test_templates_ship_with_the_package() -> None:
    """The page is rendered from the package's own templates (the wheel holds every file under
    src/sms_analytics), every value autoescaped."""
    folder = Path(report.__file__).with_name("templates")
    assert {"report.html.j2", "panels.html.j2", "charts.svg.j2", "report.css"} <= {p.name for p in folder.iterdir()}
    env = report.templates()
    assert env.autoescape is True
    assert Path(env.get_template("report.html.j2").filename or "").parent == folder
