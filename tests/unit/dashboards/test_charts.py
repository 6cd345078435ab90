"""dashboards/charts.py: the sparkline geometry (split from test_report.py)."""

from __future__ import annotations

from sms_analytics.dashboards import charts


def test_sparkline_geometry() -> None:
    assert charts.sparkline([None, float("nan")]) is None  # drawn as a dash titled "no values"
    one = charts.sparkline([0.5])
    assert one is not None and one.points == "" and one.last_x == 48  # a dot in the middle, no line
    line = charts.sparkline([0.9, 0.8, 0.95])
    assert line is not None and len(line.points.split()) == 3 and line.label == "90.00%, 80.00%, 95.00%"
