"""simulate/payloads/common.py: China time formats (from tests/test_simulate.py)."""

from __future__ import annotations

from sms_analytics.simulate.payloads.common import china_time, iso_time
from sms_analytics.simulate.payloads.kx import kx_time
from tests.unit.simulate.test_driver import TS


def test_china_time_formats() -> None:
    assert china_time(TS) == "2023-11-15 06:13:20"
    assert kx_time(TS) == "20231115061320"
    assert iso_time(TS) == "2023-11-15T06:13:20.000+08:00"
