"""Loading template names into the session pipeline's warehouse (from tests/test_template_names.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sms_analytics.dashboards import build
from sms_analytics.runtime import Runtime
from sms_analytics.sinks.template_names import TemplateNamesError, load
from tests.unit.sinks.test_template_names import GOOD


def names_of(pipeline: Runtime, keys: list[tuple[str, str, str]]) -> list[str]:
    assert pipeline.warehouse is not None
    tuples = ", ".join("(" + ", ".join(f"'{v}'" for v in key) + ")" for key in keys)
    sql = f"SELECT {build.TEMPLATE_NAME} AS name FROM (SELECT arrayJoin([{tuples}]) AS k, k.1 AS provider, k.2 AS template, k.3 AS sign)"
    return [r[0] for r in pipeline.warehouse.query(sql)[1]]


async def test_load_replaces_the_mapping_and_the_dictionary_follows(pipeline: Runtime, tmp_path: Path) -> None:
    wh = pipeline.warehouse
    assert wh is not None
    first, second, bad = tmp_path / "first.csv", tmp_path / "second.csv", tmp_path / "bad.csv"
    first.write_text(GOOD, encoding="utf-8")
    second.write_text("provider,template,name\naliyun,SMS_153055065,verification code\n", encoding="utf-8")
    bad.write_text("provider,template,name\naliyun,SMS_9,x\naliyun,SMS_9,y\n", encoding="utf-8")
    keys = [("aliyun", "SMS_153055065", "阿里云"), ("kx", "", "鲜果园"), ("tencent", "1110", "乐享出行"),
            ("tencent", "1110", "腾讯云"), ("tencent", "449739", "腾讯云")]
    try:
        assert await asyncio.to_thread(load, wh, first) == 5
        assert wh.query("SELECT count(), uniqExact(source) FROM sms.template_names")[1] == [(5, 1)]
        assert names_of(pipeline, keys) == ["login code", "login code", "trip reminder", "1110", "login code"]
        assert await asyncio.to_thread(load, wh, second) == 1  # replaced, not added to
        assert names_of(pipeline, keys) == ["verification code", "", "1110", "1110", "449739"]
        with pytest.raises(TemplateNamesError, match=r"bad\.csv, line 3: duplicate of line 2"):
            await asyncio.to_thread(load, wh, bad)
        assert wh.query("SELECT name FROM sms.template_names")[1] == [("verification code",)]  # checked first
    finally:
        assert await asyncio.to_thread(load, wh, None) == 0  # the session's setting: no mapping
    assert wh.query("SELECT count() FROM sms.template_names")[1] == [(0,)]
    assert names_of(pipeline, keys) == ["SMS_153055065", "", "1110", "1110", "449739"]
