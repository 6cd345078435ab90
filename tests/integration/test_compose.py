"""The Grafana ClickHouse user parsed by ClickHouse's own parser in chDB (from tests/test_compose.py)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.unit.test_compose import CLICKHOUSE_ACCESS_FILE, GRAFANA_CH_USER_FILE


def test_the_grafana_user_is_read_only_and_reads_sms_only():
    root = ET.parse(GRAFANA_CH_USER_FILE).getroot()
    (user,) = list(root.find("users"))
    profile = root.find(f"profiles/{user.findtext('profile')}")
    assert profile.findtext("readonly") == "1"
    # the plugin sets max_execution_time on every query; nothing else may change under readonly = 1
    changeable = [c.tag for c in profile.find("constraints") if c.find("changeable_in_readonly") is not None]
    assert changeable == ["max_execution_time"]
    assert user.find("password").text is None and user.find("password").get("from_env")  # no stored secret
    assert user.find("access_management") is None
    grants = [q.text for q in user.find("grants")]
    assert grants == ["GRANT SELECT ON sms.*", "GRANT dictGet ON sms.*"]
    # ClickHouse's own parser takes each (as a server would, with the user named); in a process of its
    # own, since a test session may hold a chDB path already
    script = "import sys, chdb\nfor q in sys.argv[1:]: print(chdb.query(f\"SELECT formatQuery('{q}')\", 'TSVRaw').data().strip())"
    out = subprocess.run([sys.executable, "-c", script, *(f"{g} TO sms_grafana" for g in grants)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split("\n")[:2] == [f"{g} TO sms_grafana" for g in grants], out
    # changeable_in_readonly is honoured only with settings_constraints_replace_previous
    access = ET.parse(CLICKHOUSE_ACCESS_FILE).getroot()
    assert access.findtext("access_control_improvements/settings_constraints_replace_previous") == "true"
