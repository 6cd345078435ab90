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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sms_analytics.dashboards import build, formats, report
from sms_analytics.runtime import Runtime
from sms_analytics.sinks.warehouse import Warehouse
from tests.integration.test_dashboards import load_scenario

CLI = str(Path(sys.executable).with_name("sms-analytics"))
GENERATED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
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
    return dict(zip(cols, rows[0], strict=False))


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


def test_empty_range_says_no_data(scenario: dict[str, Any]) -> None:
    start = datetime(2001, 1, 1, tzinfo=UTC)
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
