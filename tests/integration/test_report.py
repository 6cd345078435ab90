"""The static HTML report (`sms-analytics report`): the overview panels' own SQL on the scenario data of
tests/test_dashboards.py, in the session pipeline's warehouse (a chDB path is opened by one process
once, so nothing here opens it again), drawn as one self-contained file; and the command line on a
warehouse of its own and through a running process."""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.dashboards import build, charts, formats, report
from sms_analytics.runtime import Runtime
from sms_analytics.sinks.warehouse import Warehouse
from tests.integration.test_dashboards import load_scenario

CLI = str(Path(sys.executable).with_name("sms-analytics"))
GENERATED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SECTION = re.compile(r'<section class="panel (\w+)"[^>]*><h2>(.*?)</h2>(.*?)</section>', re.S)
APOSTROPHE = "&#(?:x27|39);"  # ' escaped (html.escape writes &#x27;, Jinja2's markupsafe &#39;)
CARD = re.compile(r'<div class="card (\w+)"><div class="label">[^<]*</div><div class="big">([^<]*)</div>')


@pytest.fixture(scope="module")
def scenario(pipeline: Runtime) -> dict[str, Any]:
    assert pipeline.warehouse is not None
    return load_scenario(pipeline.warehouse)


@pytest.fixture(scope="module")
def page(scenario: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = report.time_range(scenario["start"], scenario["end"])
    path = report.write_report(scenario["warehouse"].query, tmp_path_factory.mktemp("report") / "report.html", rng,
                               generated_at=GENERATED)
    return path.read_text(encoding="utf-8")


def sections(text: str) -> dict[str, tuple[str, str]]:
    """title -> (panel type, content)."""
    return {html.unescape(title): (kind, body) for kind, title, body in SECTION.findall(text)}


def cards(text: str) -> dict[str, str]:
    return dict(CARD.findall(text))


def message_totals(wh: Warehouse, start: datetime, end: datetime) -> dict[str, int]:
    cols, rows = wh.query(f"""
        SELECT count() AS sent, countIf(status = 'delivered') AS delivered, countIf(status = 'failed') AS failed,
               countIf(status = 'pending') AS pending, countIf(status = 'expired') AS expired
        FROM sms.messages
        WHERE sent_at >= toDateTime({int(start.timestamp())}) AND sent_at <= toDateTime({int(end.timestamp())})""")
    return dict(zip(cols, rows[0]))


# --- the page -------------------------------------------------------------------------------------

def test_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page, re.I)
    assert "@import" not in page and "url(" not in page and "http://" not in page and "https://" not in page


def test_every_overview_panel_is_there_in_layout_order(page: str) -> None:
    panels = build.overview()["panels"]
    found = sections(page)
    assert len(SECTION.findall(page)) == len(panels)
    for p in panels:
        assert p["title"] in found and found[p["title"]][0] == p["type"], p["title"]
    ordered = sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert [html.unescape(t) for _, t, _ in SECTION.findall(page)] == [p["title"] for p in ordered]


def test_each_panel_drawn_by_its_type(page: str) -> None:
    found = sections(page)
    for p in build.overview()["panels"]:
        kind, body = found[p["title"]]
        assert "no data" not in body and "query failed" not in body, (p["title"], body[:500])
        if kind == "timeseries":
            assert body.count('<svg class="chart"') >= 1 and "<polyline" in body, p["title"]
            assert '<text class="xlab"' in body and '<text class="ylab"' in body and 'class="legend"' in body
        elif kind == "table":
            assert "<table class=\"data\">" in body and "<tbody><tr>" in body, p["title"]
        elif kind == "barchart":
            assert '<svg class="chart"' in body and "<rect" in body
        elif kind == "stat":
            assert body.count('<div class="stat">') >= 3  # one per dashtest provider at least
    for title in ("Delivery rate by carrier", "Delivery rate by template", "Delivery rate by sign"):
        body = found[title][1]
        assert body.count('<svg class="sparkline"') == body.count("<tr>") - 1  # every row but the header
    side = found["Providers side by side for the same carrier and template"][1]
    assert all(provider in side for provider in ("dashtest_a", "dashtest_b", "dashtest_c"))


def test_one_chart_per_metric_when_many_series(page: str) -> None:
    body = sections(page)["Messages by status per provider"][1]
    # 3 providers x 5 statuses: one small chart per status, each with a line per provider
    assert body.count('<svg class="chart"') == 5 and body.count("<polyline") == 15


def test_totals_match_messages(page: str, scenario: dict[str, Any]) -> None:
    want = message_totals(scenario["warehouse"], scenario["start"], scenario["end"])
    got = cards(page)
    assert want["sent"] == 90
    for key in ("sent", "delivered", "failed", "pending", "expired"):
        assert int(got[key].replace(",", "")) == want[key], key
    final = want["delivered"] + want["failed"] + want["expired"]
    assert got["rate"] == f"{want['delivered'] / final * 100:.2f}%"
    start, end = (formats.when(t) for t in (scenario["start"], scenario["end"]))
    assert f"<b>{start}</b>" in page and f"<b>{end}</b>" in page and formats.when(GENERATED) in page


def test_text_is_escaped(page: str) -> None:
    assert re.search(f"Dash{APOSTROPHE}Q", page) and "Dash'Q" not in page  # a sign of the scenario


def test_hostile_values_are_escaped() -> None:
    evil = "<script>alert('x')</script>"

    def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "AS time" in sql:
            return ["time", "provider", "sent"], [(datetime(2030, 1, 1, tzinfo=timezone.utc), evil, 1)]
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


def test_empty_range_says_no_data(scenario: dict[str, Any]) -> None:
    start = datetime(2001, 1, 1, tzinfo=timezone.utc)
    text = report.build_report(scenario["warehouse"].query, report.time_range(start, start + timedelta(hours=1)))
    found = sections(text)
    assert len(found) == len(build.overview()["panels"])
    assert all("no data" in body and "query failed" not in body for _, body in found.values())
    got = cards(text)
    assert all(got[k] == "0" for k in ("sent", "delivered", "failed", "pending", "expired")) and got["rate"] == "n/a"


async def test_through_the_query_endpoint_is_the_same_page(pipeline: Runtime, scenario: dict[str, Any]) -> None:
    rng = report.time_range(scenario["start"], scenario["end"])
    direct = await asyncio.to_thread(report.build_report, scenario["warehouse"].query, rng, generated_at=GENERATED)
    remote = await asyncio.to_thread(report.build_report, report.http_query(pipeline.query_url), rng,
                                     generated_at=GENERATED)
    assert remote == direct


# --- parts ----------------------------------------------------------------------------------------

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
    panels = [p for p in sorted(build.overview()["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))]
    spans = report.layout_spans(panels)
    line = 0
    for panel, span in zip(panels, spans):
        assert 1 <= span <= 24 and (panel["type"] != "table" or span >= 12)
        line = (line + span) % 24
    assert line == 0


def test_sparkline_geometry() -> None:
    assert charts.sparkline([None, float("nan")]) is None  # drawn as a dash titled "no values"
    one = charts.sparkline([0.5])
    assert one is not None and one.points == "" and one.last_x == 48  # a dot in the middle, no line
    line = charts.sparkline([0.9, 0.8, 0.95])
    assert line is not None and len(line.points.split()) == 3 and line.label == "90.00%, 80.00%, 95.00%"


def test_templates_ship_with_the_package() -> None:
    """The page is rendered from the package's own templates (the wheel holds every file under
    src/sms_analytics), every value autoescaped."""
    folder = Path(report.__file__).with_name("templates")
    assert {"report.html.j2", "panels.html.j2", "charts.svg.j2", "report.css"} <= {p.name for p in folder.iterdir()}
    env = report.templates()
    assert env.autoescape is True
    assert Path(env.get_template("report.html.j2").filename or "").parent == folder

# --- the command line -----------------------------------------------------------------------------

def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SMS_DATA_DIR": str(data_dir), "SMS_QUERY_PORT": "1", **extra}
    env.pop("CLICKHOUSE_URL", None)
    return env


def test_cli_report_on_a_warehouse_url(tmp_path: Path) -> None:
    """A fresh chDB warehouse of this subprocess's own: migrated, empty, every panel says no data."""
    env = cli_env(tmp_path)
    migrated = subprocess.run([CLI, "migrate"], env=env, capture_output=True, text=True, timeout=240)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    out = tmp_path / "out" / "report.html"
    done = subprocess.run([CLI, "report", "--since", "90m", "--out", str(out), "--url", f"chdb:///{tmp_path / 'warehouse'}"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip() == f"report: {out.resolve()}"
    text = out.read_text(encoding="utf-8")
    found = sections(text)
    assert set(found) == {p["title"] for p in build.overview()["panels"]}
    assert all("no data" in body and "query failed" not in body for _, body in found.values())
    assert cards(text)["sent"] == "0" and "(90 min, interval 60 s)" in text

    default = subprocess.run([CLI, "report", "--since", "7d", "--out", str(tmp_path / "default.html")], env=env,
                             capture_output=True, text=True, timeout=240)  # CLICKHOUSE_URL / SMS_DATA_DIR
    assert default.returncode == 0, default.stderr[-2000:]
    assert "(7 d, interval" in (tmp_path / "default.html").read_text(encoding="utf-8")


def test_cli_report_refuses_a_bad_since(tmp_path: Path) -> None:
    done = subprocess.run([CLI, "report", "--since", "yesterday", "--out", str(tmp_path / "r.html")],
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--since" in done.stderr and not (tmp_path / "r.html").exists()


async def test_cli_report_through_the_running_process(pipeline: Runtime, tmp_path: Path) -> None:
    """While a process holds the warehouse, the command asks its query endpoint (as `sql` does)."""
    host, port = pipeline.query_url.removeprefix("http://").rsplit(":", 1)
    env = cli_env(tmp_path / "data", SMS_QUERY_HOST=host, SMS_QUERY_PORT=port)
    out = tmp_path / "report.html"
    done = await asyncio.to_thread(subprocess.run, [CLI, "report", "--since", "24h", "--out", str(out)], env=env,
                                   capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (tmp_path / "data" / "warehouse").exists()  # never opened directly
    found = sections(out.read_text(encoding="utf-8"))
    assert set(found) == {p["title"] for p in build.overview()["panels"]}
    assert not any("query failed" in body for _, body in found.values())
