"""`sms-analytics dashboards push` as a console-script subprocess against the stand-in Grafana (from tests/test_push.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from sms_analytics.dashboards import alerting
from tests.grafana_standin import GrafanaStandin
from tests.unit.dashboards.test_push import CH_PASSWORD, TOKEN, counts, grafana  # noqa: F401 - grafana: the fixture the tests take

CLI = Path(sys.executable).with_name("sms-analytics")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "CLICKHOUSE_"))}
    proc = await asyncio.create_subprocess_exec(str(CLI), "dashboards", "push", *args, env={**clean, **(env or {})},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_cli_push(grafana: tuple[GrafanaStandin, str]) -> None:  # noqa: F811 - the imported fixture
    standin, url = grafana
    rc, out, err = await run_cli("--grafana-url", url, "--token", TOKEN, env={"CLICKHOUSE_PASSWORD": CH_PASSWORD})
    assert rc == 0, err
    assert "folder sms-analytics (SMS analytics): created" in out
    assert ("datasource sms-clickhouse (ClickHouse (sms)): created, http sms@clickhouse:8123 database sms, "
            "password set") in out
    assert "dashboard sms-overview (SMS delivery: overview): created, version 1" in out
    assert all(f"alert rule {r['uid']} ({r['title']}): created" in out for r in alerting.rules())
    assert out.strip().endswith("13 created, 1 unchanged")
    assert CH_PASSWORD not in out + err and TOKEN not in out + err
    assert counts(standin) == (1, 1, 2, 9) and standin.state.secure["sms-clickhouse"] == {"password": CH_PASSWORD}

    rc, out, err = await run_cli("--grafana-url", url, env={"GRAFANA_TOKEN": TOKEN})
    assert rc == 0, err
    assert out.strip().endswith("1 unchanged, 13 updated") and counts(standin) == (1, 1, 2, 9)


async def test_cli_wrong_token_exits_1_and_creates_nothing(grafana: tuple[GrafanaStandin, str]) -> None:  # noqa: F811
    standin, url = grafana
    wrong = "glsa_wrong_token_zzz"
    rc, out, err = await run_cli("--grafana-url", url, env={"GRAFANA_TOKEN": wrong})
    assert rc == 1
    assert f"error: Grafana at {url} rejected the credentials (401 Invalid API key)" in err
    assert "GRAFANA_TOKEN" in err and wrong not in out + err and "Traceback" not in err
    assert counts(standin) == (0, 0, 0, 0)


async def test_cli_unreachable_and_missing_credentials_exit_1() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    rc, out, err = await run_cli("--grafana-url", url, "--token", TOKEN)
    assert rc == 1 and f"error: cannot reach Grafana at {url}" in err and "Traceback" not in err
    assert TOKEN not in out + err
    rc, out, err = await run_cli("--grafana-url", url)
    assert rc == 1 and "no Grafana credentials" in err
