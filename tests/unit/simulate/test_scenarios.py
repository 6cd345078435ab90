"""simulate/scenarios.py: --scenario outage and blackout specs (from tests/test_simulate.py)."""

from __future__ import annotations

import math

import pytest

from sms_analytics.simulate.scenarios import Blackout, Outage, QuotaLow, parse_scenario


def test_parse_scenario() -> None:
    assert parse_scenario("outage:移动:0.3:10:30") == Outage("移动", 0.3, 10.0, 30.0)
    assert parse_scenario(" outage:unicom:0:0:5.5 ") == Outage("联通", 0.0, 0.0, 5.5)
    assert parse_scenario("blackout:tencent:5:20") == Blackout("tencent", 5.0, 20.0, catch_up=False)
    assert parse_scenario("blackout:KX:0:1:catch_up") == Blackout("kx", 0.0, 1.0, catch_up=True)
    assert parse_scenario("blackout:aliyun:1:2:drop").catch_up is False
    for bad in ("outage:移动:1.5:10:30", "outage:卫星:0.3:10:30", "outage:移动:0.3:10", "blackout:tencent:5:0",
                "blackout:wechat:5:20", "blackout:tencent:-1:20", "blackout:tencent:5:20:maybe", "storm:1:2",
                "outage:移动:x:10:30", ""):
        with pytest.raises(ValueError):
            parse_scenario(bad)
    with pytest.raises(ValueError):
        Outage("移动", 0.3, 0.0, math.inf)


def test_parse_quota_scenario() -> None:
    assert parse_scenario("quota:tencent:1000") == QuotaLow(1000)
    assert parse_scenario("quota:qcloud:0") == QuotaLow(0)
    for bad in ("quota:kx:10", "quota:tencent:-1", "quota:tencent", "quota:tencent:x"):
        with pytest.raises(ValueError, match="scenario"):
            parse_scenario(bad)


def test_an_outage_narrowed_to_a_province_or_a_template() -> None:
    regional = parse_scenario("outage:mobile@广东:0.3:60:120")
    assert regional == Outage("移动", 0.3, 60.0, 120.0, province="广东") and regional.targeted
    assert regional.covers("移动", 61.0, "广东") and not regional.covers("移动", 61.0, "北京")
    assert not regional.covers("联通", 61.0, "广东") and not regional.covers("移动", 181.0, "广东")
    template = parse_scenario("template:SMS_153055065:0:10:30")
    assert template == Outage(None, 0.0, 10.0, 30.0, template="SMS_153055065")
    assert template.covers("联通", 10.0, "", "SMS_153055065") and not template.covers("联通", 10.0, "", "1110")
    assert not parse_scenario("outage:移动:0.3:10:30").targeted
    for bad in ("outage:移动@广州:0.3:10:30", "outage:移动@:0.3:10:30", "template::0:10:30", "template:T:2:10:30"):
        with pytest.raises(ValueError):
            parse_scenario(bad)
    with pytest.raises(ValueError):
        Outage(None, 0.3, 0.0, 1.0)  # every carrier and every template: not an outage this module knows
