"""The dictionaries load in chDB (a subprocess) as the named user and hide its password (from tests/test_dictionaries.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys
    from sms_analytics.sinks.warehouse import Warehouse

    w = Warehouse("chdb://" + sys.argv[1]).open()
    w.migrate()
    w.command("INSERT INTO sms.template_names (provider, template, sign, name) VALUES ('aliyun', 'SMS_1', '', 'Login code')")
    probe = "SELECT dictGet('sms.template_name_dict', 'name', ('aliyun', 'SMS_1', ''))"

    def attempt(url):
        w.apply_dictionaries(url)
        try:
            return str(w.query(probe)[1][0][0])
        except Exception as exc:
            return 'error: ' + str(exc).splitlines()[0]

    print('none|' + attempt(None))
    print('missing-user|' + attempt('http://sms:s3cret-pw@clickhouse:8123'))
    print('wrong-password|' + attempt('http://default:s3cret-pw@clickhouse:8123'))
    print('right|' + attempt('http://default:@clickhouse:8123'))
    w.apply_dictionaries('http://default:s3cret-pw@clickhouse:8123')
    shown = w.query("SHOW CREATE DICTIONARY sms.template_name_dict")[1][0][0]
    listed = w.query("SELECT create_table_query FROM system.tables WHERE name = 'template_name_dict'")[1][0][0]
    print('show|' + shown.replace(chr(10), ' '))
    print('tables|' + listed)
""")


def test_the_dictionaries_load_as_the_named_user_and_hide_its_password(tmp_path: Path) -> None:
    # Its own process: a chDB path is opened by one process at a time, and this test session's is open.
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "warehouse")], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    results = dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    assert results["none"] == "Login code"  # chDB's default: as before
    assert results["right"] == "Login code"  # the credentials in the DDL sign in
    for case in ("missing-user", "wrong-password"):  # ... and they are the ones used: a server's failure
        assert "AUTHENTICATION_FAILED" in results[case] or "Authentication failed" in results[case], results
    for where in ("show", "tables"):
        assert "USER 'default'" in results[where] and "[HIDDEN]" in results[where], results[where]
        assert "s3cret-pw" not in results[where]
