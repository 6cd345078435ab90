"""`make run`'s job, shortened: the whole pipeline on embedded defaults, driven by the simulator,
prints a summary that matches the simulator's ground truth; the data stays queryable after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

CLI = str(Path(sys.executable).with_name("sms-analytics"))


def test_run_prints_a_summary_matching_ground_truth(tmp_path: Path) -> None:
    env = {**os.environ, "SMS_DATA_DIR": str(tmp_path), "SMS_HTTP_PORT": "0", "SMS_QUERY_PORT": "0"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    done = subprocess.run([CLI, "run", "--duration", "8", "--rate", "25"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "ground truth (matches the warehouse)" in out
    for provider in ("aliyun", "tencent", "kx"):
        assert any(line.startswith(provider) for line in out.splitlines()), out
    assert "top failure reasons:" in out and "join:" in out
    conversions = next(line for line in out.splitlines() if line.startswith("conversions: "))
    assert conversions.endswith("(matches the warehouse)") and " 0 posted" not in conversions, conversions
    polled = dict(item.rsplit(" ", 1) for item in out.split("pull feeds (records): ", 1)[1].splitlines()[0].split(", "))
    assert int(polled["kx.mtquery"]) > 0 and int(polled["tencent.pull_send_status.1400006666"]) > 0
    truth = orjson.loads(out.split("ground truth (matches the warehouse): ", 1)[1].splitlines()[0])
    sent = sum(p["sends"] for p in truth.values())
    assert sent > 100

    query = subprocess.run([CLI, "sql", "--format", "json", "SELECT count() AS n FROM sms.messages"],
                           env={**env, "SMS_QUERY_PORT": "1"}, capture_output=True, text=True, timeout=60)
    assert query.returncode == 0, query.stderr
    assert orjson.loads(query.stdout) == {"n": sent}
    # The hash key was generated once and kept in the data dir, never printed.
    key = (tmp_path / "phone_hash.key").read_text().strip()
    assert len(key) == 64 and key not in out and key not in done.stderr
