"""The template and sign metadata feeds (sources/base/metadata.py and each provider's feeds.py) through
the official SDKs against the provider simulators: Alibaba QuerySmsTemplate / QuerySmsSign (seed 000
§10.2 / §9.3), Tencent DescribeSmsTemplateList / DescribeSmsSignList (seed 002). Each call is signed as
the SDK signs it; a wrong secret is refused as the provider refuses it, and the feed backs off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from sms_analytics.model.events import TEMPLATE_TYPES, SignInfo, TemplateInfo
from sms_analytics.settings import Settings
from sms_analytics.simulate.aliyun import AliyunSimulator
from sms_analytics.simulate.payloads.aliyun import ALIYUN_SIGNS, ALIYUN_TEMPLATES
from sms_analytics.simulate.payloads.metadata import SimSign, SimTemplate
from sms_analytics.simulate.payloads.tencent import TENCENT_TEMPLATES
from sms_analytics.simulate.tencent import TencentSimulator
from sms_analytics.sources.aliyun import feeds as aliyun_feeds
from sms_analytics.sources.aliyun.client import AliyunApiError, AliyunClient
from sms_analytics.sources.base.metadata import MetadataPull, items
from sms_analytics.sources.tencent import feeds as tencent_feeds
from sms_analytics.sources.tencent.client import TencentApiError, TencentClient
from tests.conftest import serve

ALI_ID, ALI_SECRET = "LTAImeta", "aliyun-meta-secret"
TC_ID, TC_KEY = "AKIDmeta", "tencent-meta-key"


@pytest_asyncio.fixture
async def sims() -> AsyncIterator[tuple[AliyunSimulator, str, TencentSimulator, str]]:
    aliyun = AliyunSimulator(access_key_id=ALI_ID, access_key_secret=ALI_SECRET)
    tencent = TencentSimulator(secret_id=TC_ID, secret_key=TC_KEY)
    (ali_runner, ali_url), (tc_runner, tc_url) = await serve(aliyun.app()), await serve(tencent.app())
    yield aliyun, ali_url.removeprefix("http://"), tencent, tc_url.removeprefix("http://")
    await ali_runner.cleanup()
    await tc_runner.cleanup()


def aliyun_client(endpoint: str, secret: str = ALI_SECRET) -> AliyunClient:
    return AliyunClient(access_key_id=ALI_ID, access_key_secret=secret, endpoint=endpoint, protocol="http")


def tencent_client(endpoint: str, key: str = TC_KEY) -> TencentClient:
    return TencentClient(secret_id=TC_ID, secret_key=key, endpoint=endpoint, scheme="http")


async def test_aliyun_templates_and_signs_of_the_simulated_traffic(sims: Any) -> None:
    _, endpoint, _, _ = sims
    client = aliyun_client(endpoint)
    codes = [code for code, _ in ALIYUN_TEMPLATES]
    templates = await aliyun_feeds.describe_templates(client, [*codes, "SMS_000000000"], 7)  # unknown: skipped
    assert [t.template_code for t in templates] == codes
    by_code = {t.template_code: t for t in templates}
    login = by_code["SMS_153055065"]
    assert (login.provider, login.name, login.template_type, login.raw_type, login.status, login.raw_status) == (
        "aliyun", "登录验证码", "verification", "0", "approved", "1")
    assert "${code}" in login.content and login.pulled_at_ms == 7
    assert by_code["SMS_205392047"].template_type == "marketing"
    assert {t.template_type for t in templates} <= set(TEMPLATE_TYPES)
    signs = await aliyun_feeds.describe_signs(client, ["阿里云", *ALIYUN_SIGNS, "待审签名"], 7)
    assert [(s.sign_name, s.status, s.raw_status) for s in signs] == [
        *((name, "approved", "1") for name in ("阿里云", *ALIYUN_SIGNS)), ("待审签名", "reviewing", "0")]


async def test_aliyun_every_type_and_status_code_of_the_seed() -> None:
    for raw, expected in ((0, "verification"), (1, "notification"), (2, "marketing"), (3, "international"), (9, "other")):
        info = aliyun_feeds.template_info({"TemplateType": raw, "TemplateStatus": 2, "Reason": "r"}, "SMS_1", 1)
        assert (info.template_type, info.raw_type, info.status, info.reason) == (expected, str(raw), "rejected", "r")


async def test_aliyun_bad_signature_is_refused_and_the_feed_backs_off(sims: Any) -> None:
    _, endpoint, _, _ = sims
    bad = aliyun_client(endpoint, secret="not-the-secret")
    with pytest.raises(AliyunApiError) as refused:
        await bad.query_sms_template("SMS_153055065")
    assert (refused.value.code, refused.value.status) == ("SignatureDoesNotMatch", 400)
    with pytest.raises(AliyunApiError, match="SignatureDoesNotMatch"):  # not skipped as a business refusal
        await aliyun_feeds.describe_signs(bad, ["阿里云"], 1)
    published: list[Any] = []
    feed = MetadataPull("aliyun.templates", lambda at: aliyun_feeds.describe_templates(bad, ["SMS_153055065"], at),
                        _recorder(published), interval=60.0, rate=0)
    await _run_briefly(feed)
    assert feed.stats.errors >= 1 and "SignatureDoesNotMatch" in feed.stats.last_error and not published


async def test_tencent_templates_listed_and_signs_by_id(sims: Any) -> None:
    _, _, tencent, endpoint = sims
    client = tencent_client(endpoint)
    templates = await tencent_feeds.describe_templates(client, 3)
    domestic = [t.template_code for t in templates if t.raw_type == "International=0"]
    assert domestic == [code for code, _ in TENCENT_TEMPLATES]
    (intl,) = [t for t in templates if t.raw_type == "International=1"]
    assert (intl.template_type, intl.status, intl.raw_status) == ("international", "reviewing", "1")
    first = templates[0]
    assert (first.provider, first.name, first.content, first.template_type, first.status) == (
        "tencent", "验证码", "您的验证码是{1}", "other", "approved")
    signs = await tencent_feeds.describe_signs(client, [1110, 1112, 999], 3)  # 999: not the account's
    assert [(s.sign_id, s.sign_name, s.status) for s in signs] == [("1110", "腾讯云", "approved"),
                                                                   ("1112", "微鲸健康", "approved")]
    assert [action for action, _ in tencent.requests] == ["DescribeSmsTemplateList"] * 2 + ["DescribeSmsSignList"]


async def test_tencent_pages_through_the_template_list() -> None:
    many = [SimTemplate(str(2000 + n), f"t{n}", "c{1}", 0, 0) for n in range(130)]
    sim = TencentSimulator(secret_id=TC_ID, secret_key=TC_KEY, template_catalogue=many,
                           sign_catalogue=[SimSign("签名一", -1, 5, "资质不符")])
    runner, url = await serve(sim.app())
    try:
        client = tencent_client(url.removeprefix("http://"))
        templates = await tencent_feeds.describe_templates(client, 1)
        assert [t.template_code for t in templates] == [t.code for t in many]
        assert len([a for a, _ in sim.requests]) == 3  # domestic: 100 + 30; international: 0
        (sign,) = await tencent_feeds.describe_signs(client, [5], 1)
        assert (sign.status, sign.raw_status, sign.reason) == ("rejected", "-1", "资质不符")
    finally:
        await runner.cleanup()


async def test_tencent_bad_signature_is_refused(sims: Any) -> None:
    _, _, tencent, endpoint = sims
    bad = tencent_client(endpoint, key="not-the-key")
    for call in (bad.describe_sms_template_list(0), bad.describe_sms_sign_list(0, [1110])):
        with pytest.raises(TencentApiError) as refused:
            await call
        assert refused.value.code == "AuthFailure.SignatureFailure"
    assert [code for _, code in tencent.requests] == ["AuthFailure.SignatureFailure"] * 2


async def test_the_feeds_build_from_the_settings(tmp_path: Any) -> None:
    keys = {"sms_aliyun_access_key_id": ALI_ID, "sms_aliyun_access_key_secret": ALI_SECRET,
            "sms_aliyun_template_codes": "SMS_1, SMS_2", "sms_aliyun_sign_names": "阿里云",
            "sms_tencent_secret_id": TC_ID, "sms_tencent_secret_key": TC_KEY, "sms_tencent_app_ids": "1400",
            "sms_tencent_sign_ids": "1110,1111", "sms_metadata_interval": "PT5M"}
    s = Settings(_env_file=None, sms_data_dir=tmp_path, **keys)
    aliyun = aliyun_feeds.metadata_feeds(s, aliyun_client("127.0.0.1:9"), _recorder([]))
    tencent = tencent_feeds.metadata_feeds(s, tencent_client("127.0.0.1:9"), _recorder([]))
    assert [f.name for f in aliyun + tencent] == ["aliyun.templates", "aliyun.signs", "tencent.templates", "tencent.signs"]
    assert all(isinstance(f, MetadataPull) and f.interval == 300.0 for f in aliyun + tencent)
    assert Settings(_env_file=None).sms_metadata_interval.total_seconds() == 600
    assert items(" a, ,b ") == ["a", "b"]


async def test_a_pull_publishes_its_records_and_waits_the_interval(sims: Any) -> None:
    _, endpoint, _, _ = sims
    published: list[Any] = []
    client = aliyun_client(endpoint)
    feed = MetadataPull("aliyun.signs", lambda at: aliyun_feeds.describe_signs(client, ["阿里云", "鲜果园"], at),
                        _recorder(published), interval=60.0, rate=0)
    await _run_briefly(feed)
    assert feed.stats.polls == 1 and feed.stats.records == 2  # one pull, then the interval
    ((events, origin),) = published
    assert origin == "feed:aliyun.signs" and all(isinstance(e, SignInfo) for e in events)


def _recorder(into: list[Any]) -> Any:
    async def publish(events: Sequence[TemplateInfo | SignInfo], rejected: Sequence[Any], origin: str) -> None:
        into.append((list(events), origin))
    return publish


async def _run_briefly(feed: MetadataPull, seconds: float = 0.5) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_tencent_sign_list_requires_its_ids(sims: Any) -> None:
    from tencentcloud.sms.v20210111 import models

    _, _, tencent, endpoint = sims
    client = tencent_client(endpoint)
    request = models.DescribeSmsSignListRequest()
    request.International = 0
    with pytest.raises(TencentApiError, match="SignIdSet"):
        await client._call("DescribeSmsSignList", client._sdk.DescribeSmsSignList, request)
    assert tencent.requests == [("DescribeSmsSignList", "MissingParameter")]
