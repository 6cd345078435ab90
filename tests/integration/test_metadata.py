"""The template and sign metadata feeds through the real broker, sink and warehouse: Alibaba
QuerySmsTemplate / QuerySmsSign and Tencent DescribeSmsTemplateList / DescribeSmsSignList against
their simulators fill sms.templates and sms.signs; the dictionaries pick the synced names and types up
after each pull; an SMS_TEMPLATE_NAMES row wins over a synced name (and its type over the provider's); and the template_type dashboard
variable filters a panel's query, whose template_name shows the names."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sms_analytics.dashboards import build
from sms_analytics.dashboards.macros import expand
from sms_analytics.runtime import Runtime
from sms_analytics.simulate.aliyun import AliyunSimulator
from sms_analytics.simulate.payloads.metadata import SimSign, SimTemplate
from sms_analytics.simulate.tencent import TencentSimulator
from sms_analytics.sinks import template_names
from sms_analytics.sources.aliyun import feeds as aliyun_feeds
from sms_analytics.sources.aliyun.client import AliyunClient
from sms_analytics.sources.base.metadata import MetadataPull
from sms_analytics.sources.tencent import feeds as tencent_feeds
from sms_analytics.sources.tencent.client import TencentClient
from tests.conftest import TOKEN, eventually, rolled_up_within, rows, serve

pytestmark = pytest.mark.pipeline


async def _pull_all(pipeline: Runtime, feeds: list[MetadataPull]) -> None:
    """One pull of each feed (each publishes, then waits its interval)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(f.run(stop)) for f in feeds]
    try:
        await eventually(lambda: all(f.stats.polls for f in feeds), timeout=15)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert all(f.stats.errors == 0 for f in feeds)


async def _send(pipeline: Runtime, sends: list[tuple[str, str]], at: datetime) -> None:
    async with aiohttp.ClientSession(base_url=pipeline.receiver_url) as http:
        for n, (template, sign) in enumerate(sends):
            body = {"provider": "aliyun", "message_id": f"meta-{template}-{n}", "phone": f"+861390000{n:04d}",
                    "sent_at": at.isoformat(), "template": template, "sign": sign}
            async with http.post(f"/v1/sends?token={TOKEN}", data=orjson.dumps(body)) as resp:
                assert resp.status == 202


async def test_metadata_fills_the_tables_names_and_types(pipeline: Runtime, tmp_path: Path) -> None:
    assert pipeline.warehouse is not None
    tag = f"{random.randrange(10**8):08d}"  # the tests share one warehouse
    verification, marketing = f"SMS_MV{tag}", f"SMS_MM{tag}"
    sign = f"元数据{tag}"
    tencent_id, tencent_sign = 30_000_000 + int(tag) % 10**7, 40_000_000 + int(tag) % 10**7
    aliyun = AliyunSimulator(access_key_id="LTAImeta", access_key_secret="meta-secret", template_catalogue=[
        SimTemplate(verification, "登录验证码", "验证码${code}", 0, 1),
        SimTemplate(marketing, "会员促销", "会员日8折", 2, 1)], sign_catalogue=[SimSign(sign, 1)])
    tencent = TencentSimulator(secret_id="AKIDmeta", secret_key="meta-key",
                               template_catalogue=[SimTemplate(str(tencent_id), "验证码", "验证码{1}", 0, 0)],
                               sign_catalogue=[SimSign(f"腾讯{tag}", 0, tencent_sign)])
    (ali_runner, ali_url), (tc_runner, tc_url) = await serve(aliyun.app()), await serve(tencent.app())
    try:
        ali = AliyunClient(access_key_id="LTAImeta", access_key_secret="meta-secret",
                           endpoint=ali_url.removeprefix("http://"), protocol="http")
        tc = TencentClient(secret_id="AKIDmeta", secret_key="meta-key", endpoint=tc_url.removeprefix("http://"),
                           scheme="http")
        publish, every = pipeline.publisher.publish, {"interval": 60.0, "rate": 0}
        await _pull_all(pipeline, [
            MetadataPull("aliyun.templates", lambda at: aliyun_feeds.describe_templates(ali, [verification, marketing], at),
                         publish, **every),
            MetadataPull("aliyun.signs", lambda at: aliyun_feeds.describe_signs(ali, [sign], at), publish, **every),
            MetadataPull("tencent.templates", lambda at: tencent_feeds.describe_templates(tc, at), publish, **every),
            MetadataPull("tencent.signs", lambda at: tencent_feeds.describe_signs(tc, [tencent_sign], at), publish,
                         **every)])
    finally:
        await ali_runner.cleanup()
        await tc_runner.cleanup()

    mine = f"template_code IN ('{verification}', '{marketing}', '{tencent_id}')"
    templates = await eventually(lambda: _when(3, rows(pipeline, f"SELECT provider, template_code, name, type, raw_type, "
                                                                 f"status FROM sms.templates FINAL WHERE {mine} "
                                                                 "ORDER BY provider, template_code")))
    assert [tuple(t.values()) for t in templates] == [
        ("aliyun", marketing, "会员促销", "marketing", "2", "approved"),
        ("aliyun", verification, "登录验证码", "verification", "0", "approved"),
        ("tencent", str(tencent_id), "验证码", "other", "International=0", "approved")]
    signs = await eventually(lambda: _when(2, rows(pipeline, f"SELECT provider, sign_name, sign_id, status FROM sms.signs "
                                                             f"FINAL WHERE sign_name IN ('{sign}', '腾讯{tag}') "
                                                             "ORDER BY provider")))
    assert [tuple(s.values()) for s in signs] == [("aliyun", sign, "", "approved"),
                                                  ("tencent", f"腾讯{tag}", str(tencent_sign), "approved")]

    # The sink reloads the dictionaries once it wrote a pull.
    def looked_up(expr: str) -> Any:
        return pipeline.warehouse.query(f"SELECT {expr}")[1][0][0]  # type: ignore[union-attr]

    type_of = f"dictGetOrDefault('sms.template_info_dict', 'type', ('aliyun', '{marketing}'), 'other')"
    assert await eventually(lambda: looked_up(type_of) == "marketing", timeout=20)
    name_of = "dictGetOrDefault('sms.template_name_dict', 'name', ('aliyun', '{}', ''), '{}')"
    assert await eventually(lambda: looked_up(name_of.format(verification, "-")) == "登录验证码", timeout=20)

    # An SMS_TEMPLATE_NAMES row wins over the synced name; the others keep theirs.
    mapping = tmp_path / "names.csv"
    mapping.write_text(f"provider,template,sign,name,type\naliyun,{verification},,login code,\n"
                       f"tencent,{tencent_id},,login code,verification\n", encoding="utf-8")
    tencent_type = f"dictGetOrDefault('sms.template_info_dict', 'type', ('tencent', '{tencent_id}'), '-')"
    assert looked_up(tencent_type) == "other"  # Tencent's template list has no type
    try:
        assert await asyncio.to_thread(template_names.load, pipeline.warehouse, mapping) == 2
        assert looked_up(name_of.format(verification, "-")) == "login code"
        assert looked_up(name_of.format(marketing, "-")) == "会员促销"
        assert looked_up(tencent_type) == "verification"  # the mapping's type wins over the provider's
        await _type_reaches_a_panel(pipeline, verification, marketing, sign)
    finally:
        await asyncio.to_thread(template_names.load, pipeline.warehouse, None)


async def _type_reaches_a_panel(pipeline: Runtime, verification: str, marketing: str, sign: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await _send(pipeline, [(verification, sign)] * 2 + [(marketing, sign)] * 3, now - timedelta(minutes=1))
    where = f"template IN ('{verification}', '{marketing}')"
    await rolled_up_within(pipeline, lambda: _when(2, rows(pipeline, f"SELECT DISTINCT template FROM sms.rollup_minute "
                                                           f"WHERE {where}")))
    start, end = now - timedelta(minutes=10), now + timedelta(minutes=1)
    dashboard = build.overview()
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "template"]
    variable_sql = expand(build.variable_query(variable), start=start, end=end, interval_s=60,
                          variables={"provider": "All"}, all_values={"provider": ["aliyun"]})
    # the variable reads the hourly rows, which the same recompute writes just after the minutes
    options = await rolled_up_within(pipeline, lambda: _when(2, rows(pipeline, f"SELECT * FROM ({variable_sql}) "
                                                                       f"WHERE {where}")))
    texts = {o["template"]: o["text"] for o in options}
    assert texts[verification] == f"login code ({verification})" and texts[marketing] == f"会员促销 ({marketing})"

    (panel,) = [p for p in dashboard["panels"] if p["title"] == "Delivery rate by template"]
    everything = dict.fromkeys(("provider", "carrier", "template", "sign", "country", "region"), "All")

    async def templates_shown(template_type: list[str] | str) -> dict[str, str]:
        sql = expand(panel["targets"][0]["rawSql"], start=start, end=end, interval_s=60,
                     variables={**everything, "template_type": template_type}, all_values={})
        return {r["template"]: r["template_name"] for r in await rows(pipeline, sql)
                if r["template"] in (verification, marketing)}

    assert await templates_shown("All") == {verification: "login code", marketing: "会员促销"}
    assert await templates_shown(["marketing"]) == {marketing: "会员促销"}
    assert await templates_shown(["verification", "notification"]) == {verification: "login code"}


async def _when(count: int, found: Any) -> Any:
    got = await found
    return got if len(got) == count else None
