"""AliyunClient (official SDK, real signing) against AliyunSimulator over real HTTP on 127.0.0.1
(Alibaba Cloud SMS API, seed 000), plus hand-built §5.4 HMAC-SHA1 requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from yarl import URL

from sms_analytics.simulate.aliyun import AliyunSimulator, rpc_signature, rpc_string_to_sign
from sms_analytics.sources.aliyun.client import AliyunApiError, AliyunClient
from tests.conftest import serve

AK_ID = "LTAI-test-key-id"
AK_SECRET = "test-secret-not-a-secret"
SIGN = "阿里云短信测试专用"
TEMPLATE = "SMS_71390007"
PHONE = "15300000001"
CHINA = timezone(timedelta(hours=8))

# §5.4 worked example (Java SignDemo with a fixed nonce and timestamp), strings as printed there.
DOC_PARAMS = {
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "AccessKeyId": "testId",
    "SignatureVersion": "1.0",
    "Timestamp": "2017-07-12T02:42:19Z",
    "Format": "XML",
    "Action": "SendSms",
    "Version": "2017-05-25",
    "RegionId": "cn-hangzhou",
    "PhoneNumbers": "15300000001",
    "SignName": "阿里云短信测试专用",
    "TemplateParam": '{"customer":"test"}',
    "TemplateCode": "SMS_71390007",
    "OutId": "123",
}
DOC_SORTED_QUERY = (
    "AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001&RegionId=cn-hangzhou"
    "&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8"
    "&SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0"
    "&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D"
    "&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
)
DOC_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001"
    "%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD"
    "%25E4%25BF%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1"
    "%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007"
    "%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z"
    "%26Version%3D2017-05-25"
)
DOC_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="
DOC_URL_QUERY = (
    "Signature=zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D&AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123"
    "&PhoneNumbers=15300000001&RegionId=cn-hangzhou"
    "&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8"
    "&SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0"
    "&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D"
    "&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
)


# --- an independent §5.4 implementation (not the simulator's) ------------------------------------

def pop_encode(value: str) -> str:
    """§5.4 specialUrlEncode: RFC 3986, i.e. only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return quote(value, safe="", encoding="utf-8")


def sign_v1(params: dict[str, str], secret: str, method: str = "GET") -> tuple[str, str, str]:
    """-> (sortedQueryString, stringToSign, signature) exactly as the document's steps 2-4."""
    sorted_query = "&".join(f"{pop_encode(k)}={pop_encode(params[k])}" for k in sorted(params) if k != "Signature")
    string_to_sign = method + "&" + pop_encode("/") + "&" + pop_encode(sorted_query)
    mac = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1)
    return sorted_query, string_to_sign, base64.b64encode(mac.digest()).decode()


def common_params(access_key_id: str = AK_ID, *, at: float | None = None, fmt: str = "JSON") -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return {
        "AccessKeyId": access_key_id,
        "Format": fmt,
        "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": str(uuid.uuid4()),
        "SignatureVersion": "1.0",
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": "2017-05-25",
    }


def signed_url(base: str, params: dict[str, str], secret: str = AK_SECRET) -> URL:
    _, _, signature = sign_v1(params, secret)
    pairs = [("Signature", signature), *params.items()]
    query = "&".join(f"{pop_encode(k)}={pop_encode(v)}" for k, v in pairs)
    return URL(f"{base}/?{query}", encoded=True)


# --- fixtures ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _serve(app: web.Application) -> tuple[web.AppRunner, str, int]:
    runner, url = await serve(app)
    return runner, url, int(url.rsplit(":", 1)[1])


@dataclass
class Aliyun:
    sim: AliyunSimulator
    client: AliyunClient
    url: str
    endpoint: str
    clock: Clock
    session: aiohttp.ClientSession
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)

    def client_with(self, **kwargs: Any) -> AliyunClient:
        values: dict[str, Any] = dict(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=self.endpoint,
                                      protocol="http")
        values.update(kwargs)
        return AliyunClient(**values)

    def today(self) -> str:
        return datetime.fromtimestamp(self.clock(), CHINA).strftime("%Y%m%d")


@pytest_asyncio.fixture
async def aliyun() -> AsyncIterator[Aliyun]:
    clock = Clock()
    sim = AliyunSimulator(access_key_id=AK_ID, access_key_secret=AK_SECRET, rng_seed=5, clock=clock)
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, dict(request.query), {k.lower(): v for k, v in request.headers.items()}))
        return await handler(request)

    app = sim.app()
    app.middlewares.append(record)
    runner, url, port = await _serve(app)
    session = aiohttp.ClientSession()
    endpoint = f"127.0.0.1:{port}"
    client = AliyunClient(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=endpoint, protocol="http")
    try:
        yield Aliyun(sim, client, url, endpoint, clock, session, seen)
    finally:
        await session.close()
        await runner.cleanup()


# --- §5.4 signature, by hand ---------------------------------------------------------------------

def test_doc_worked_example_signature() -> None:
    sorted_query, string_to_sign, signature = sign_v1(DOC_PARAMS, "testSecret")
    assert sorted_query == DOC_SORTED_QUERY
    assert string_to_sign == DOC_STRING_TO_SIGN
    assert signature == DOC_SIGNATURE
    # The simulator's own implementation agrees with the document too.
    assert rpc_string_to_sign("GET", {**DOC_PARAMS, "Signature": "ignored"}) == DOC_STRING_TO_SIGN
    assert rpc_signature("testSecret", DOC_STRING_TO_SIGN) == DOC_SIGNATURE
    assert rpc_signature("testSecreT", DOC_STRING_TO_SIGN) != DOC_SIGNATURE


@pytest.mark.asyncio
async def test_doc_example_url_is_accepted_once() -> None:
    at = datetime(2017, 7, 12, 2, 42, 19, tzinfo=UTC).timestamp() + 30
    sim = AliyunSimulator(access_key_id="testId", access_key_secret="testSecret", clock=lambda: at)
    runner, url, _ = await _serve(sim.app())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(URL(f"{url}/?{DOC_URL_QUERY}", encoded=True)) as resp:
                text = await resp.text()
                assert resp.status == 200, text
                assert resp.headers["Content-Type"].startswith("text/xml")  # Format=XML
            assert text.startswith("<?xml")
            assert "<SendSmsResponse>" in text and "<Code>OK</Code>" in text
            biz_id = re.search(r"<BizId>(\d+\^0)</BizId>", text).group(1)  # type: ignore[union-attr]
            assert sim.sent == [(biz_id, "15300000001", "阿里云短信测试专用", "SMS_71390007", at)]

            # The same request again: its SignatureNonce is used up.
            async with session.get(URL(f"{url}/?{DOC_URL_QUERY}", encoded=True)) as resp:
                text = await resp.text()
                assert resp.status == 400
                assert "<Error>" in text and "<Code>SignatureNonceUsed</Code>" in text
            assert len(sim.sent) == 1
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_doc_example_url_is_expired_now() -> None:
    sim = AliyunSimulator(access_key_id="testId", access_key_secret="testSecret")
    runner, url, _ = await _serve(sim.app())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(URL(f"{url}/?{DOC_URL_QUERY}", encoded=True)) as resp:
                assert resp.status == 400
                assert "<Code>InvalidTimeStamp.Expired</Code>" in await resp.text()
        assert sim.sent == []
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_hand_signed_get_is_accepted_and_tampering_is_refused(aliyun: Aliyun) -> None:
    params = {**common_params(), "Action": "SendSms", "PhoneNumbers": "13800138000,13900139000",
              "SignName": SIGN, "TemplateCode": TEMPLATE, "TemplateParam": '{"code":"1234 5*~"}', "OutId": "o-7"}
    async with aliyun.session.get(signed_url(aliyun.url, params)) as resp:
        doc = orjson.loads(await resp.read())
        assert resp.status == 200, doc
        assert resp.content_type == "application/json"
    assert doc["Code"] == "OK" and doc["Message"] == "OK" and doc["RequestId"]
    assert re.fullmatch(r"\d+\^0", doc["BizId"])
    assert [(b, p) for b, p, *_ in aliyun.sim.sent] == [(doc["BizId"], "13800138000"), (doc["BizId"], "13900139000")]

    # Sign, then change one parameter: refused, nothing sent.
    params = {**common_params(), "Action": "SendSms", "PhoneNumbers": "13800138000", "SignName": SIGN,
              "TemplateCode": TEMPLATE}
    url = str(signed_url(aliyun.url, params)).replace("PhoneNumbers=13800138000", "PhoneNumbers=13800138001")
    assert "13800138001" in url
    async with aliyun.session.get(URL(url, encoded=True)) as resp:
        bad = orjson.loads(await resp.read())
        assert resp.status == 400
    assert bad["Code"] == "SignatureDoesNotMatch"
    assert bad["Message"] == "Specified signature is not matched with our calculation."
    assert bad["RequestId"]
    assert len(aliyun.sim.sent) == 2

    # Signed as GET but sent as POST: the method is part of the string to sign.
    params = {**common_params(), "Action": "SendSms", "PhoneNumbers": "13800138000", "SignName": SIGN,
              "TemplateCode": TEMPLATE}
    async with aliyun.session.post(signed_url(aliyun.url, params)) as resp:
        assert resp.status == 400
        assert orjson.loads(await resp.read())["Code"] == "SignatureDoesNotMatch"

    # Signed correctly with the wrong secret.
    params = {**common_params(), "Action": "SendSms", "PhoneNumbers": "13800138000", "SignName": SIGN,
              "TemplateCode": TEMPLATE}
    async with aliyun.session.get(signed_url(aliyun.url, params, secret=AK_SECRET + "x")) as resp:
        assert resp.status == 400
        assert orjson.loads(await resp.read())["Code"] == "SignatureDoesNotMatch"
    assert len(aliyun.sim.sent) == 2


@pytest.mark.asyncio
async def test_hand_signed_post_form_is_accepted(aliyun: Aliyun) -> None:
    params = {**common_params(), "Action": "SendBatchSms", "TemplateCode": TEMPLATE,
              "PhoneNumberJson": '["13800138000","13900139000"]', "SignNameJson": '["签名甲","签名乙"]'}
    _, _, signature = sign_v1(params, AK_SECRET, method="POST")
    async with aliyun.session.post(f"{aliyun.url}/", data={**params, "Signature": signature}) as resp:
        doc = orjson.loads(await resp.read())
        assert resp.status == 200, doc
    assert doc["Code"] == "OK"
    assert [(p, s) for _, p, s, _, _ in aliyun.sim.sent] == [("13800138000", "签名甲"), ("13900139000", "签名乙")]


@pytest.mark.asyncio
async def test_common_parameter_errors(aliyun: Aliyun) -> None:
    base = {"Action": "SendSms", "PhoneNumbers": PHONE, "SignName": SIGN, "TemplateCode": TEMPLATE}

    async def code_of(params: dict[str, str], secret: str = AK_SECRET) -> tuple[int, str]:
        async with aliyun.session.get(signed_url(aliyun.url, params, secret)) as resp:
            return resp.status, orjson.loads(await resp.read())["Code"]

    assert await code_of({**common_params("LTAI-nobody"), **base}) == (404, "InvalidAccessKeyId.NotFound")
    assert await code_of({**common_params(at=time.time() - 20 * 60), **base}) == (400, "InvalidTimeStamp.Expired")
    assert await code_of({**common_params(at=time.time() + 20 * 60), **base}) == (400, "InvalidTimeStamp.Expired")
    assert await code_of({**common_params(at=time.time() - 10 * 60), **base}) == (200, "OK")
    assert await code_of({**common_params(), **base, "Timestamp": "2017/07/12 02:42:19"}) == (
        400, "InvalidTimeStamp.Format")
    assert await code_of({**common_params(), **base, "Version": "2016-09-27"}) == (400, "InvalidVersion")
    assert await code_of({**common_params(), **base, "Action": "SendSmsNow"}) == (404, "InvalidAction.NotFound")
    no_nonce = {**common_params(), **base}
    del no_nonce["SignatureNonce"]
    assert await code_of(no_nonce) == (400, "MissingSignatureNonce")
    assert len(aliyun.sim.sent) == 1

    # A nonce is used up only by a correctly signed request.
    params = {**common_params(), **base}
    assert await code_of(params, secret="wrong") == (400, "SignatureDoesNotMatch")
    assert await code_of(params) == (200, "OK")
    assert await code_of(params) == (400, "SignatureNonceUsed")
    assert len(aliyun.sim.sent) == 2


# --- the official SDK through AliyunClient -------------------------------------------------------

@pytest.mark.asyncio
async def test_sdk_send_then_query_pending_then_delivered(aliyun: Aliyun) -> None:
    sent = await aliyun.client.send_sms([PHONE], SIGN, TEMPLATE, {"customer": "测试 用户"}, out_id="out-1")
    assert sent["Code"] == "OK" and sent["Message"] == "OK" and sent["RequestId"]
    biz_id = sent["BizId"]
    assert re.fullmatch(r"\d+\^0", biz_id)
    assert aliyun.sim.sent == [(biz_id, PHONE, SIGN, TEMPLATE, aliyun.clock())]

    # The SDK signed the document's way (HMAC-SHA1 in the query string), not with ACS3.
    method, query, headers = aliyun.seen[-1]
    assert method == "POST"
    assert query["SignatureMethod"] == "HMAC-SHA1" and query["SignatureVersion"] == "1.0" and query["Signature"]
    assert query["PhoneNumbers"] == PHONE and query["TemplateParam"] == '{"customer":"测试 用户"}'
    assert "authorization" not in headers

    details = await aliyun.client.query_send_details(PHONE, aliyun.today(), biz_id=biz_id, page_size=10)
    assert details["Code"] == "OK" and details["RequestId"]
    assert details["TotalCount"] == 1
    [dto] = details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert dto["PhoneNum"] == PHONE and dto["SendStatus"] == 1 and dto["TemplateCode"] == TEMPLATE
    assert dto["OutId"] == "out-1"
    assert dto["Content"].startswith(f"【{SIGN}】")
    assert dto["SendDate"] == datetime.fromtimestamp(aliyun.clock(), CHINA).strftime("%Y-%m-%d %H:%M:%S")
    assert not dto.get("ReceiveDate")

    aliyun.clock.advance(3)
    report = aliyun.sim.report(biz_id, PHONE)
    assert report["success"] is True and report["biz_id"] == biz_id and report["out_id"] == "out-1"
    details = await aliyun.client.query_send_details(PHONE, aliyun.today(), biz_id=biz_id)
    [dto] = details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert dto["SendStatus"] == 3
    assert dto["ErrCode"] == "DELIVERED"
    assert dto["ReceiveDate"] == datetime.fromtimestamp(aliyun.clock(), CHINA).strftime("%Y-%m-%d %H:%M:%S")
    assert dto["ReceiveDate"] > dto["SendDate"]


@pytest.mark.asyncio
async def test_sdk_failed_report_and_query_without_biz_id(aliyun: Aliyun) -> None:
    first = await aliyun.client.send_sms([PHONE, "13800138000"], SIGN, TEMPLATE)
    second = await aliyun.client.send_sms([PHONE], SIGN, "SMS_2")
    assert first["BizId"] != second["BizId"]
    aliyun.sim.report(first["BizId"], PHONE, delivered=False, err_code="MK:0001")
    details = await aliyun.client.query_send_details(PHONE, aliyun.today())
    assert details["TotalCount"] == 2
    statuses = {d["TemplateCode"]: (d["SendStatus"], d.get("ErrCode"))
                for d in details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]}
    assert statuses == {TEMPLATE: (2, "MK:0001"), "SMS_2": (1, None)}
    assert aliyun.sim.report_all() == 2
    details = await aliyun.client.query_send_details(PHONE, aliyun.today(), biz_id=second["BizId"])
    assert [d["SendStatus"] for d in details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]] == [3]


@pytest.mark.asyncio
async def test_sdk_send_batch_sms(aliyun: Aliyun) -> None:
    phones = ["13800138000", "13900139000", "85200000000"]
    signs = ["签名甲", "签名乙", "签名丙"]
    sent = await aliyun.client.send_batch_sms(phones, signs, TEMPLATE, [{"code": "1"}, {"code": "2"}, {"code": "3"}])
    assert sent["Code"] == "OK"
    assert [(b, p, s, t) for b, p, s, t, _ in aliyun.sim.sent] == [
        (sent["BizId"], p, s, TEMPLATE) for p, s in zip(phones, signs, strict=False)]
    details = await aliyun.client.query_send_details("13900139000", aliyun.today(), biz_id=sent["BizId"])
    [dto] = details["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert dto["Content"].startswith("【签名乙】") and "code=2" in dto["Content"]

    with pytest.raises(AliyunApiError) as err:  # one sign per number
        await aliyun.client.send_batch_sms(phones, signs[:2], TEMPLATE)
    assert err.value.code == "isv.INVALID_PARAMETERS"
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client.send_batch_sms(["13800138000"] * 101, ["签名甲"] * 101, TEMPLATE)
    assert err.value.code == "isv.MOBILE_COUNT_OVER_LIMIT"
    assert len(aliyun.sim.sent) == 3


@pytest.mark.asyncio
async def test_sdk_paging_and_page_size_limit(aliyun: Aliyun) -> None:
    for _ in range(3):
        await aliyun.client.send_sms([PHONE], SIGN, TEMPLATE)
    page = await aliyun.client.query_send_details(PHONE, aliyun.today(), page_size=2, current_page=2)
    assert page["TotalCount"] == 3
    assert len(page["SmsSendDetailDTOs"]["SmsSendDetailDTO"]) == 1
    full = await aliyun.client.query_send_details(PHONE, aliyun.today(), page_size=50)
    assert len(full["SmsSendDetailDTOs"]["SmsSendDetailDTO"]) == 3

    for bad in ({"page_size": 51}, {"page_size": 0}, {"current_page": 0}):
        with pytest.raises(AliyunApiError) as err:
            await aliyun.client.query_send_details(PHONE, aliyun.today(), **bad)
        assert err.value.code == "isv.INVALID_PARAMETERS", bad
        assert err.value.message == "参数异常" and err.value.request_id
    old = (datetime.fromtimestamp(aliyun.clock(), CHINA) - timedelta(days=30)).strftime("%Y%m%d")
    recent = (datetime.fromtimestamp(aliyun.clock(), CHINA) - timedelta(days=29)).strftime("%Y%m%d")
    for bad_date in (old, datetime.fromtimestamp(aliyun.clock(), CHINA).strftime("%Y-%m-%d")):
        with pytest.raises(AliyunApiError) as err:
            await aliyun.client.query_send_details(PHONE, bad_date)
        assert err.value.code == "isv.INVALID_PARAMETERS"
    assert (await aliyun.client.query_send_details(PHONE, recent))["TotalCount"] == 0


@pytest.mark.asyncio
async def test_sdk_business_errors(aliyun: Aliyun) -> None:
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client.send_sms([PHONE, "1530000000"], SIGN, TEMPLATE)
    assert (err.value.code, err.value.message) == ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    assert err.value.status == 200  # business errors come back as HTTP 200
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client.send_sms(["13800138000"] * 1001, SIGN, TEMPLATE)
    assert err.value.code == "isv.MOBILE_COUNT_OVER_LIMIT"
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client.send_sms([PHONE], SIGN, TEMPLATE, {"code": 1234})
    assert err.value.code == "isv.INVALID_JSON_PARAM"
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client.query_send_details("12345", aliyun.today())
    assert err.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert aliyun.sim.sent == []
    assert len((await aliyun.client.send_sms(["13800138000"] * 1000, SIGN, TEMPLATE))["BizId"]) > 2
    assert len(aliyun.sim.sent) == 1000


@pytest.mark.asyncio
async def test_sdk_wrong_secret_and_unknown_key(aliyun: Aliyun) -> None:
    bad = aliyun.client_with(access_key_secret=AK_SECRET + "-wrong")
    with pytest.raises(AliyunApiError) as err:
        await bad.send_sms([PHONE], SIGN, TEMPLATE)
    assert err.value.code == "SignatureDoesNotMatch"
    assert err.value.status == 400 and err.value.request_id
    assert PHONE not in str(err.value)
    with pytest.raises(AliyunApiError) as err:
        await bad.query_send_details(PHONE, aliyun.today())
    assert err.value.code == "SignatureDoesNotMatch"

    with pytest.raises(AliyunApiError) as err:
        await aliyun.client_with(access_key_id="LTAI-nobody").send_sms([PHONE], SIGN, TEMPLATE)
    assert err.value.code == "InvalidAccessKeyId.NotFound"
    assert aliyun.sim.sent == []


@pytest.mark.asyncio
async def test_sdk_default_acs3_signature_is_verified_too(aliyun: Aliyun) -> None:
    acs3 = aliyun.client_with(signature_algorithm=None)
    sent = await acs3.send_sms([PHONE], SIGN, TEMPLATE, {"code": "12"})
    _, query, headers = aliyun.seen[-1]
    assert headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=" + AK_ID)
    assert "Signature" not in query and headers["x-acs-action"] == "SendSms"
    batch = await acs3.send_batch_sms(["13900139000"], ["签名乙"], TEMPLATE, {"code": "34"})
    _, _, headers = aliyun.seen[-1]
    assert headers["content-type"] == "application/x-www-form-urlencoded"  # a signed, hashed form body
    details = await acs3.query_send_details(PHONE, aliyun.today(), biz_id=sent["BizId"])
    assert details["TotalCount"] == 1
    assert [b for b, *_ in aliyun.sim.sent] == [sent["BizId"], batch["BizId"]]

    with pytest.raises(AliyunApiError) as err:
        await aliyun.client_with(signature_algorithm=None, access_key_secret="wrong").send_sms([PHONE], SIGN, TEMPLATE)
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client_with(signature_algorithm=None, access_key_id="nobody").send_sms([PHONE], SIGN, TEMPLATE)
    assert err.value.code == "InvalidAccessKeyId.NotFound"
    with pytest.raises(AliyunApiError) as err:
        await acs3.query_send_details(PHONE, aliyun.today(), page_size=51)
    assert err.value.code == "isv.INVALID_PARAMETERS"
    assert len(aliyun.sim.sent) == 2


@pytest.mark.asyncio
async def test_sdk_unreachable_endpoint_is_an_api_error() -> None:
    client = AliyunClient(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint="127.0.0.1:9", protocol="http",
                          timeout=2)
    with pytest.raises(AliyunApiError) as err:
        await client.send_sms([PHONE], SIGN, TEMPLATE)
    assert err.value.code.startswith("SDK.")
    assert PHONE not in str(err.value) and AK_SECRET not in repr(client)


# --- §11.3 HTTP batch push -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_push_reports_until_acknowledged_on_the_retry_schedule(aliyun: Aliyun) -> None:
    received: list[list[dict[str, Any]]] = []
    answers = [{"code": 1, "msg": "busy"}, {"code": 0, "msg": "接收成功"}]

    async def receive(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        return web.json_response(answers.pop(0) if answers else {"code": 0, "msg": "接收成功"})

    app = web.Application()
    app.router.add_post("/report", receive)
    runner, url, _ = await _serve(app)
    try:
        sent = await aliyun.client.send_sms([PHONE, "13800138000"], SIGN, TEMPLATE, out_id="o-9")
        aliyun.sim.push_to(f"{url}/report", None, time_scale=0.5)
        assert aliyun.sim.report_all() == 2
        assert await aliyun.sim.flush_pushes(aliyun.session) == {"reports": 0, "up": 0, "dropped": 0}
        assert len(received) == 1 and aliyun.sim.pending_pushes["reports"] == 2
        [first] = received
        assert [r["phone_number"] for r in first] == [PHONE, "13800138000"]
        assert first[0] == {
            "phone_number": PHONE, "send_time": first[0]["send_time"], "report_time": first[0]["report_time"],
            "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
            "biz_id": sent["BizId"], "out_id": "o-9",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first[0]["report_time"])

        # First retry 1 minute (x0.5) later, not before.
        aliyun.clock.advance(29)
        assert (await aliyun.sim.flush_pushes(aliyun.session))["reports"] == 0
        assert len(received) == 1
        aliyun.clock.advance(1)
        assert (await aliyun.sim.flush_pushes(aliyun.session))["reports"] == 2
        assert len(received) == 2 and received[1] == first
        assert aliyun.sim.pending_pushes["reports"] == 0
        assert (await aliyun.sim.flush_pushes(aliyun.session))["reports"] == 0
        assert len(received) == 2
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_push_gives_up_after_ten_tries(aliyun: Aliyun) -> None:
    tries: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        tries.append(aliyun.clock())
        return web.Response(text="SUCCESS")  # not {"code": 0}: not an acknowledgement

    app = web.Application()
    app.router.add_post("/up", receive)
    runner, url, _ = await _serve(app)
    try:
        aliyun.sim.push_to(None, f"{url}/up", time_scale=1.0)
        body = aliyun.sim.uplink(PHONE, "TD", sign_name=SIGN, dest_code="1234")
        assert set(body) == {"phone_number", "send_time", "content", "sign_name", "dest_code", "sequence_id"}
        start = aliyun.clock()
        dropped = 0
        for _ in range(400):
            dropped += (await aliyun.sim.flush_pushes(aliyun.session))["dropped"]
            aliyun.clock.advance(60)
        assert len(tries) == 10 and dropped == 1
        gaps = [round((b - a) / 60) for a, b in zip([start, *tries], tries, strict=False)]
        assert gaps == [0, 1, 5, 10, 30, 60, 60, 60, 60, 60]
        assert aliyun.sim.pending_pushes["up"] == 0
    finally:
        await runner.cleanup()


# --- QuerySendStatistics (the SDK's request and response models) --------------------------------

@pytest.mark.asyncio
async def test_sdk_query_send_statistics_counts_the_simulated_records(aliyun: Aliyun) -> None:
    first = await aliyun.client.send_sms([PHONE, "13800138000", "13800138001"], SIGN, TEMPLATE)
    await aliyun.client.send_sms(["85200000000"], SIGN, TEMPLATE)  # international
    aliyun.sim.report(first["BizId"], PHONE)
    aliyun.sim.report(first["BizId"], "13800138000", delivered=False, err_code="MK:0001")
    day = aliyun.today()
    answer = await aliyun.client.query_send_statistics(1, day, day)
    assert answer["Code"] == "OK" and answer["RequestId"]
    assert answer["Data"] == {"TotalSize": 1, "TargetList": [
        {"SendDate": day, "TotalCount": 3, "RespondedSuccessCount": 1, "RespondedFailCount": 1,
         "NoRespondedCount": 1}]}
    international = await aliyun.client.query_send_statistics(2, day, day)
    assert [t["TotalCount"] for t in international["Data"]["TargetList"]] == [1]
    assert (await aliyun.client.query_send_statistics(1, "20000101", "20000102"))["Data"]["TargetList"] == []
    for bad in ((3, day, day, 1, 50), (1, day, "2000-01-01", 1, 50), (1, day, day, 0, 50), (1, day, day, 1, 51)):
        with pytest.raises(AliyunApiError) as err:
            await aliyun.client.query_send_statistics(bad[0], bad[1], bad[2], page_index=bad[3], page_size=bad[4])
        assert err.value.code == "isv.INVALID_PARAMETERS"
    with pytest.raises(AliyunApiError) as err:
        await aliyun.client_with(access_key_secret=AK_SECRET + "-wrong").query_send_statistics(1, day, day)
    assert err.value.code == "SignatureDoesNotMatch" and err.value.status == 400
