"""sinks/warehouse.py without chDB: the read-only check (from tests/test_warehouse.py)."""

from __future__ import annotations

import pytest

from sms_analytics.sinks.warehouse import NotReadOnly, check_read_only


@pytest.mark.parametrize("sql", ["INSERT INTO sms.replies VALUES (1)", "DROP TABLE sms.message_parts",
                                 "SELECT 1; DROP TABLE sms.message_parts", "ALTER TABLE sms.x DELETE WHERE 1",
                                 "", "OPTIMIZE TABLE sms.message_parts"])
def test_read_only_refuses_writes(sql: str) -> None:
    with pytest.raises(NotReadOnly):
        check_read_only(sql)
