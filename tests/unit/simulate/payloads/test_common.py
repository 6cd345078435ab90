"""simulate/payloads/common.py: China time formats (from tests/test_simulate.py)."""

from __future__ import annotations

from sms_analytics.simulate import traffic as t
from tests.unit.simulate.test_traffic import TS


def test_china_time_formats() -> None:
    assert t.china_time(TS) == "2023-11-15 06:13:20"
    assert t.kx_time(TS) == "20231115061320"
    assert t.iso_time(TS) == "2023-11-15T06:13:20.000+08:00"
