"""cli: typer's CliRunner on what needs no running component: each command's --help, `explain` of
known and unknown codes, and the refusals of `sql`, `report` and `explain` (before any warehouse is
opened)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import typer.main
from typer.testing import CliRunner

from sms_analytics.cli import _param, cli

COMMANDS = ["dashboards", "explain", "lookup", "migrate", "receiver", "report", "run", "simulate", "sink", "sql",
            "up", "why", "worker"]
RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("SMS_QUERY_PORT", "1")  # nothing answers there
    yield
    structlog.reset_defaults()


def invoke(*args):
    return RUNNER.invoke(cli, list(args))


def test_the_commands():
    group: Any = typer.main.get_command(cli)
    assert sorted(group.commands) == COMMANDS
    assert sorted(group.commands["dashboards"].commands) == ["push"]


@pytest.mark.parametrize("args", [[c] for c in COMMANDS if c != "dashboards"] + [["dashboards", "push"], []])
def test_help(args):
    result = invoke(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "--help" in result.output


def test_no_arguments_shows_help():
    result = invoke()
    assert result.exit_code in (0, 2)
    assert "SMS delivery analytics pipeline." in result.output


def test_explain_known_code():
    result = invoke("explain", "MK:0001")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines
    assert all("invalid_number" in line and "permanent" in line for line in lines)
    assert lines[0].split()[:3] == ["aliyun", "电信", "receipt"]


def test_explain_case_insensitive():
    assert invoke("explain", "mk:0001").output == invoke("explain", "MK:0001").output


def test_explain_with_provider_per_stage():
    result = invoke("explain", "DELIVRD", "--provider", "kx")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("kx any carrier at receipt: delivered (permanent)")
    assert lines[1] == "kx any carrier at submit: not in the tables (unknown)"


def test_explain_unknown_code():
    result = invoke("explain", "NOPE-XYZ")
    assert result.exit_code == 1
    assert result.output == "NOPE-XYZ: not in the tables (unknown)\n"


def test_explain_bad_provider():
    result = invoke("explain", "X", "--provider", "bogus")
    assert result.exit_code == 2
    assert "--provider must be aliyun, tencent or kx" in result.output


@pytest.mark.parametrize("statement", ["DELETE FROM sms.messages", "INSERT INTO t VALUES (1)", "DROP TABLE sms.x"])
def test_sql_refuses_writes(statement):
    result = invoke("sql", statement)
    assert result.exit_code == 2
    assert result.output.startswith("refused: only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN")


def test_sql_refuses_a_write_from_a_file(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("TRUNCATE TABLE sms.message_parts", encoding="utf-8")
    result = invoke("sql", "--file", str(path))
    assert result.exit_code == 2
    assert result.output.startswith("refused:")


@pytest.mark.parametrize("args, message", [
    ([], "give a statement or --file, not both"),
    (["SELECT 1", "--file", "x.sql"], "give a statement or --file, not both"),
    (["--param", "1x=2", "SELECT 1"], "--param takes name=value, got '1x=2'"),
    (["--param", "novalue", "SELECT 1"], "--param takes name=value, got 'novalue'"),
    (["--format", "xml", "SELECT 1"], "--format must be one of json, csv, table"),
])
def test_sql_bad_parameters(args, message):
    result = invoke("sql", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_param():
    assert _param(" day =2026-01-01") == ("day", "2026-01-01")
    assert _param("a=b=c") == ("a", "b=c")
    assert _param("empty=") == ("empty", "")


def test_report_bad_since():
    result = invoke("report", "--since", "soon")
    assert result.exit_code == 2
    assert "--since takes a positive number and a unit" in result.output


def test_lookup_bad_phone():
    result = invoke("lookup", "not-a-number")
    assert result.exit_code == 2
    assert "Invalid value" in result.output


def test_quota_scenario_belongs_to_run() -> None:
    """quota:tencent:<left> needs the Tencent simulator of `run`; `run` takes no outage or blackout."""
    simulated = RUNNER.invoke(cli, ["simulate", "--scenario", "quota:tencent:5"])
    assert simulated.exit_code == 2 and "sms-analytics run" in simulated.output
    run = RUNNER.invoke(cli, ["run", "--scenario", "blackout:tencent:5:20"])
    assert run.exit_code == 2 and "simulate" in run.output
    bad = RUNNER.invoke(cli, ["run", "--scenario", "quota:kx:5"])
    assert bad.exit_code == 2 and "package quota" in bad.output
