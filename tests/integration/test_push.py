"""`sms-analytics dashboards push` as a console-script subprocess against the stand-in Grafana (from tests/test_push.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from sms_analytics.dashboards import alerting, relay
from tests.grafana_standin import GrafanaStandin
from tests.unit.dashboards.test_push import (  # noqa: F401 - grafana: the fixture the tests take
    CH_PASSWORD,
    RELAY_TOKEN,
    TOKEN,
    counts,
    grafana,
    relay_point,
)

CLI = Path(sys.executable).with_name("sms-analytics")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "CLICKHOUSE_", "SMS_QUERY_TOKEN"))}
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
    rc, out, err = await run_cli("--grafana-url", url, "--token", TOKEN,
                                 env={"CLICKHOUSE_PASSWORD": CH_PASSWORD, "SMS_QUERY_TOKEN": RELAY_TOKEN})
    assert rc == 0, err
    assert "folder sms-analytics (SMS analytics): created" in out
    assert ("datasource sms-clickhouse (ClickHouse (sms)): created, http sms@clickhouse:8123 database sms, "
            "password set") in out
    assert "dashboard sms-overview (SMS delivery: overview): created, version 1" in out
    assert all(f"alert rule {r['uid']} ({r['title']}): created" in out for r in alerting.rules())
    assert f"contact point sms-relay (sms-relay): created, webhook {relay.RELAY_URL}, bearer token set" in out
    assert ("notification policy sms-relay (grafana_folder = SMS analytics): created, root receiver "
            "grafana-default-email, 0 other routes kept") in out
    assert out.strip().endswith("15 created, 1 unchanged")
    assert CH_PASSWORD not in out + err and TOKEN not in out + err and RELAY_TOKEN not in out + err
    assert counts(standin) == (1, 1, 2, 9, 2, 1) and standin.state.secure["sms-clickhouse"] == {"password": CH_PASSWORD}
    assert relay_point(standin)["settings"]["authorization_credentials"] == RELAY_TOKEN

    moved = "http://query.internal:8081/v1/grafana/alerts"
    rc, out, err = await run_cli("--grafana-url", url, "--relay-url", moved,
                                 env={"GRAFANA_TOKEN": TOKEN, "SMS_QUERY_TOKEN": RELAY_TOKEN})
    assert rc == 0, err
    assert out.strip().endswith("2 unchanged, 14 updated") and counts(standin) == (1, 1, 2, 9, 2, 1)
    assert f"contact point sms-relay (sms-relay): updated, webhook {moved} (was {relay.RELAY_URL})" in out
    assert "notification policy sms-relay (grafana_folder = SMS analytics): unchanged" in out
    assert relay_point(standin)["settings"]["url"] == moved and RELAY_TOKEN not in out + err


async def test_cli_push_without_query_token_skips_the_relay(grafana: tuple[GrafanaStandin, str]) -> None:  # noqa: F811
    standin, url = grafana
    rc, out, err = await run_cli("--grafana-url", url, env={"GRAFANA_TOKEN": TOKEN, "GRAFANA_RELAY_URL": "http://x/"})
    assert rc == 0, err
    reason = "no SMS_QUERY_TOKEN: the relay refuses calls without its bearer token"
    assert f"contact point sms-relay (sms-relay): skipped, {reason}" in out
    assert f"notification policy sms-relay (grafana_folder = SMS analytics): skipped, {reason}" in out
    assert out.strip().endswith("13 created, 2 skipped, 1 unchanged") and counts(standin) == (1, 1, 2, 9, 1, 0)


async def test_cli_wrong_token_exits_1_and_creates_nothing(grafana: tuple[GrafanaStandin, str]) -> None:  # noqa: F811
    standin, url = grafana
    wrong = "glsa_wrong_token_zzz"
    rc, out, err = await run_cli("--grafana-url", url, env={"GRAFANA_TOKEN": wrong})
    assert rc == 1
    assert f"error: Grafana at {url} rejected the credentials (401 Invalid API key)" in err
    assert "GRAFANA_TOKEN" in err and wrong not in out + err and "Traceback" not in err
    assert counts(standin) == (0, 0, 0, 0, 1, 0)


async def test_cli_unreachable_and_missing_credentials_exit_1() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    rc, out, err = await run_cli("--grafana-url", url, "--token", TOKEN)
    assert rc == 1 and f"error: cannot reach Grafana at {url}" in err and "Traceback" not in err
    assert TOKEN not in out + err
    rc, out, err = await run_cli("--grafana-url", url)
    assert rc == 1 and "no Grafana credentials" in err
