"""TencentClient (the official SDK, real TC3-HMAC-SHA256 signing) against TencentSimulator over
real HTTP on 127.0.0.1 (Tencent Cloud SMS API 3.0, seed 002).

The SDK stamps X-TC-Timestamp with ``time.time()`` of ``tencentcloud.common.abstract_client``;
the fixture points that at the same test clock as the simulator, so the tests can run at a fixed
China-time hour and move time on."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from tencentcloud.common import abstract_client

from sms_analytics.simulate.tencent import (
    TencentSimulator,
    canonical_request,
    credential_scope,
    sha256_hex,
    string_to_sign,
)
from sms_analytics.sources.tencent.client import TencentApiError, TencentClient
from tests.conftest import serve

SECRET_ID = "AKIDsimulatorTESTsecretid0000000000"
SECRET_KEY = "simulator-test-secret-key-000000"
APP_ID = "1400006666"
CHINA = timezone(timedelta(hours=8))
START = datetime(2024, 5, 1, 13, 10, tzinfo=CHINA).timestamp()  # 2024050113, China time
A = "+8618501234444"
B = "+8618501234445"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _SdkTime:
    """Stands in for the ``time`` module inside the SDK's abstract_client (it only calls time())."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.skew = 0.0

    def time(self) -> float:
        return self.clock() + self.skew


@dataclass
class Tc:
    sim: TencentSimulator
    client: TencentClient
    host: str
    url: str
    clock: Clock
    sdk_time: _SdkTime
    session: aiohttp.ClientSession

    def client_with(self, **kw: Any) -> TencentClient:
        args: dict[str, Any] = dict(secret_id=SECRET_ID, secret_key=SECRET_KEY, endpoint=self.host, scheme="http")
        args.update(kw)
        return TencentClient(**args)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """The simulator's host:port, as the SDK's endpoint takes it."""
    runner, url = await serve(app)
    return runner, url.removeprefix("http://")


@pytest_asyncio.fixture
async def tc(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Tc]:
    clock = Clock(START)
    sdk_time = _SdkTime(clock)
    monkeypatch.setattr(abstract_client, "time", sdk_time)
    sim = TencentSimulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, app_id=APP_ID, rng_seed=5, clock=clock)
    runner, host = await _serve(sim.app())
    session = aiohttp.ClientSession()
    client = TencentClient(secret_id=SECRET_ID, secret_key=SECRET_KEY, endpoint=host, scheme="http")
    try:
        yield Tc(sim, client, host, f"http://{host}/", clock, sdk_time, session)
    finally:
        await session.close()
        await runner.cleanup()


async def _api_error(coro: Any) -> TencentApiError:
    with pytest.raises(TencentApiError) as info:
        await coro
    assert info.value.request_id  # the simulator answered (not a network error)
    return info.value


# --- signature method v3 ---------------------------------------------------------------------------


def test_canonical_request_matches_the_documented_example() -> None:
    """签名方法 v3: the document's DescribeInstances example, hashes as printed there."""
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    payload_hash = sha256_hex(payload)
    assert payload_hash == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    headers = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com",
               "x-tc-action": "DescribeInstances"}
    canonical = canonical_request("POST", "/", "", headers, ["content-type", "host", "x-tc-action"], payload_hash)
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n"
        "x-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n" + payload_hash)
    assert sha256_hex(canonical) == "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
    assert string_to_sign(1551113065, credential_scope("2019-02-25", "cvm"), canonical) == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84")


def _doc_sign(secret_key: str, date: str, service: str, to_sign: str) -> str:
    """The derived-key chain written out again from the document (not the simulator's code)."""
    k = hmac.new(("TC3" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()


def _raw_headers(host: str, action: str, body: bytes, ts: int, *, secret_id: str = SECRET_ID,
                 secret_key: str = SECRET_KEY, date: str | None = None, service: str = "sms",
                 content_type: str = "application/json", method: str = "POST", query: str = "",
                 sign_action: bool = False, version: str = "2021-01-11") -> dict[str, str]:
    """A hand-made v3 request, following 签名方法 v3 step by step."""
    date = date or datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
    signed = "content-type;host;x-tc-action" if sign_action else "content-type;host"
    canonical_headers = f"content-type:{content_type}\nhost:{host}\n"
    if sign_action:
        canonical_headers += f"x-tc-action:{action.lower()}\n"
    canonical = "\n".join([method, "/", query, canonical_headers, signed,
                           hashlib.sha256(b"" if method == "GET" else body).hexdigest()])
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{ts}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = _doc_sign(secret_key, date, service, to_sign)
    return {
        "Authorization": f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed}, "
                         f"Signature={signature}",
        "Content-Type": content_type, "Host": host, "X-TC-Action": action, "X-TC-Timestamp": str(ts),
        "X-TC-Version": version, "X-TC-Region": "ap-guangzhou",
    }


async def _raw(tc: Tc, action: str, body: bytes, headers: dict[str, str], *, method: str = "POST",
               query: str = "") -> dict[str, Any]:
    url = tc.url + (f"?{query}" if query else "")
    async with tc.session.request(method, url, data=body if method == "POST" else None, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"  # exactly: the SDK checks errors only then
        doc = await resp.json()
    assert set(doc) == {"Response"}
    assert re.fullmatch(r"[0-9a-f-]{36}", doc["Response"]["RequestId"])
    return doc["Response"]


def _code(doc: dict[str, Any]) -> str | None:
    return doc.get("Error", {}).get("Code")


@pytest.mark.asyncio
async def test_hand_signed_requests_and_tampering(tc: Tc) -> None:
    ts = int(tc.clock())
    body = json.dumps({"SmsSdkAppId": APP_ID, "Limit": 10}).encode()
    ok = await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(tc.host, "PullSmsReplyStatus", body, ts))
    assert ok == {"PullSmsReplyStatusSet": [], "RequestId": ok["RequestId"]}
    # An extra signed header (the document's example signs x-tc-action, value lower-cased).
    extra = await _raw(tc, "PullSmsReplyStatus", body,
                       _raw_headers(tc.host, "PullSmsReplyStatus", body, ts, sign_action=True))
    assert "Error" not in extra
    # GET: the query string is the CanonicalQueryString, the payload is empty.
    query = f"Limit=5&SmsSdkAppId={APP_ID}"
    got = await _raw(tc, "PullSmsReplyStatus", b"", _raw_headers(
        tc.host, "PullSmsReplyStatus", b"", ts, method="GET", query=query,
        content_type="application/x-www-form-urlencoded"), method="GET", query=query)
    assert "Error" not in got and got["PullSmsReplyStatusSet"] == []

    headers = _raw_headers(tc.host, "PullSmsReplyStatus", body, ts)
    tampered = json.dumps({"SmsSdkAppId": APP_ID, "Limit": 11}).encode()
    bad = await _raw(tc, "PullSmsReplyStatus", tampered, headers)
    assert bad["Error"] == {
        "Code": "AuthFailure.SignatureFailure",
        "Message": "The provided credentials could not be validated. Please check your signature is correct."}
    # The Date of the credential must be the UTC date of X-TC-Timestamp (2024-05-01 05:10 UTC).
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts, date="2024-05-02"))) == "AuthFailure.SignatureFailure"
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts, service="cvm"))) == "AuthFailure.SignatureFailure"
    # Signed for another action than the one sent.
    moved = _raw_headers(tc.host, "PullSmsReplyStatus", body, ts, sign_action=True)
    moved["X-TC-Action"] = "PullSmsSendStatus"
    assert _code(await _raw(tc, "PullSmsSendStatus", body, moved)) == "AuthFailure.SignatureFailure"
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts, secret_id="AKIDunknown"))) == "AuthFailure.SecretIdNotFound"
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts - 301))) == "AuthFailure.SignatureExpire"
    assert "Error" not in await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts - 299))
    no_auth = dict(headers)
    del no_auth["Authorization"]
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, no_auth)) == "AuthFailure.InvalidAuthorization"
    # Authenticated, but wrong in other ways.
    assert _code(await _raw(tc, "DescribeInstances", body, _raw_headers(
        tc.host, "DescribeInstances", body, ts))) == "InvalidAction"
    assert _code(await _raw(tc, "PullSmsReplyStatus", body, _raw_headers(
        tc.host, "PullSmsReplyStatus", body, ts, version="2019-07-11"))) == "NoSuchVersion"
    unknown = json.dumps({"SmsSdkAppId": APP_ID, "Limit": 10, "Foo": 1}).encode()
    assert _code(await _raw(tc, "PullSmsReplyStatus", unknown, _raw_headers(
        tc.host, "PullSmsReplyStatus", unknown, ts))) == "UnknownParameter"
    wrong_type = json.dumps({"SmsSdkAppId": APP_ID, "Limit": "10"}).encode()
    assert _code(await _raw(tc, "PullSmsReplyStatus", wrong_type, _raw_headers(
        tc.host, "PullSmsReplyStatus", wrong_type, ts))) == "InvalidParameter"
    not_json = b"{not json"
    assert _code(await _raw(tc, "PullSmsReplyStatus", not_json, _raw_headers(
        tc.host, "PullSmsReplyStatus", not_json, ts))) == "FailedOperation.JsonParseFail"


# --- authentication through the SDK -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_wrong_secret_key_is_signature_failure(tc: Tc) -> None:
    bad = tc.client_with(secret_key="not-the-key")
    err = await _api_error(bad.send_sms(APP_ID, [A], "1110", "腾讯云", ["4370"]))
    assert err.code == "AuthFailure.SignatureFailure"
    assert "signature" in err.message
    assert tc.sim.sent == []
    err = await _api_error(tc.client_with(secret_id="AKIDnobody").pull_send_status(APP_ID))
    assert err.code == "AuthFailure.SecretIdNotFound"


@pytest.mark.asyncio
async def test_stale_or_future_timestamp_is_signature_expire(tc: Tc) -> None:
    tc.sdk_time.skew = -301
    assert (await _api_error(tc.client.pull_send_status(APP_ID))).code == "AuthFailure.SignatureExpire"
    tc.sdk_time.skew = 301
    assert (await _api_error(tc.client.pull_send_status(APP_ID))).code == "AuthFailure.SignatureExpire"
    tc.sdk_time.skew = -299  # within five minutes
    assert await tc.client.pull_send_status(APP_ID) == []


@pytest.mark.asyncio
async def test_region_version_and_app_id_checks(tc: Tc) -> None:
    err = await _api_error(tc.client_with(region="ap-shanghai").pull_send_status(APP_ID))
    assert err.code == "UnsupportedRegion"
    err = await _api_error(tc.client.pull_send_status("1400000000"))
    assert err.code == "UnauthorizedOperation.SmsSdkAppIdVerifyFail"
    assert await tc.client_with(region="ap-beijing").pull_send_status(APP_ID) == []


def test_endpoint_given_as_url() -> None:
    client = TencentClient(secret_id="AKIDwhoami", secret_key="topsecretkey", endpoint="http://127.0.0.1:8080")
    assert (client.endpoint, client.scheme) == ("127.0.0.1:8080", "http")
    assert "topsecretkey" not in repr(client) and "AKIDwhoami" not in repr(client)
    assert TencentClient(secret_id="a", secret_key="b").scheme == "https"
    with pytest.raises(ValueError):
        TencentClient(secret_id="a", secret_key="b", scheme="ftp")


# --- SendSms ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_sms_statuses(tc: Tc) -> None:
    doc = await tc.client.send_sms(APP_ID, [A, "8618501234446", "+86123"], "1110", "腾讯云", ["4370"],
                                   session_context="outsid_1")
    statuses = doc["SendStatusSet"]
    assert re.fullmatch(r"[0-9a-f-]{36}", doc["RequestId"])
    assert [s["Code"] for s in statuses] == ["Ok", "Ok", "InvalidParameterValue.IncorrectPhoneNumber"]
    ok = statuses[:2]
    for s, phone in zip(ok, [A, "+8618501234446"], strict=False):
        assert re.fullmatch(r"5000:\d{28}", s["SerialNo"])
        assert s == {"SerialNo": s["SerialNo"], "PhoneNumber": phone, "Fee": 1, "SessionContext": "outsid_1",
                     "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
    assert ok[0]["SerialNo"] != ok[1]["SerialNo"]
    assert statuses[2]["Fee"] == 0 and statuses[2]["SerialNo"] == ""
    assert tc.sim.sent == [(ok[0]["SerialNo"], A, "1110", "腾讯云"),
                           (ok[1]["SerialNo"], "+8618501234446", "1110", "腾讯云")]


@pytest.mark.asyncio
async def test_send_sms_fee_by_length_and_templates(tc: Tc) -> None:
    tc.sim.add_template("2001", "您的验证码为{1}，{2}分钟内有效。")
    tc.sim.add_template("2002", "通知：" + "长" * 70 + "{1}")
    short = await tc.client.send_sms(APP_ID, [A], "2001", "腾讯云", ["4370", "5"])
    assert short["SendStatusSet"][0]["Fee"] == 1
    # 【腾讯云】 (5) + 通知： (3) + 70 + "1234" = 82 characters -> 2 (more than 70, 67 each)
    long = await tc.client.send_sms(APP_ID, [A, B], "2002", "腾讯云", ["1234"])
    assert [s["Fee"] for s in long["SendStatusSet"]] == [2, 2]
    err = await _api_error(tc.client.send_sms(APP_ID, [A], "9999", "腾讯云", ["1"]))
    assert err.code == "FailedOperation.TemplateUnapprovedOrNotExist"
    err = await _api_error(tc.client.send_sms(APP_ID, [A], "2001", "腾讯云", ["4370"]))
    assert err.code == "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
    h = "2024050113"
    stats = (await tc.client.send_status_statistics(APP_ID, h, h))["SendStatusStatistics"]
    assert stats == {"FeeCount": 5, "RequestCount": 3, "RequestSuccessCount": 3}


@pytest.mark.asyncio
async def test_send_sms_request_errors(tc: Tc) -> None:
    too_many = [f"+86185{i:08d}" for i in range(201)]
    assert (await _api_error(tc.client.send_sms(APP_ID, too_many, "1110", "腾讯云"))).code == \
        "LimitExceeded.PhoneNumberCountLimit"
    assert (await _api_error(tc.client.send_sms(APP_ID, [], "1110", "腾讯云"))).code == \
        "MissingParameter.EmptyPhoneNumberSet"
    assert (await _api_error(tc.client.send_sms(APP_ID, [A, "+14155552671"], "1110", "腾讯云"))).code == \
        "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"
    assert (await _api_error(tc.client.send_sms(APP_ID, [A], "1110", ""))).code == \
        "FailedOperation.SignatureIncorrectOrUnapproved"
    assert (await _api_error(tc.client.send_sms("1400000001", [A], "1110", "腾讯云"))).code == \
        "UnauthorizedOperation.SmsSdkAppIdVerifyFail"
    assert tc.sim.sent == []
    intl = await tc.client.send_sms(APP_ID, ["+14155552671"], "1110", "", ["hello"])
    assert intl["SendStatusSet"][0]["IsoCode"] == "US" and intl["SendStatusSet"][0]["Code"] == "Ok"
    assert len((await tc.client.send_sms(APP_ID, too_many[:200], "1110", "腾讯云"))["SendStatusSet"]) == 200


# --- PullSmsSendStatus ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_report_pull_once(tc: Tc) -> None:
    statuses = (await tc.client.send_sms(APP_ID, [A, B], "1110", "腾讯云", ["4370"],
                                         session_context="outsid_9"))["SendStatusSet"]
    sa, sb = statuses[0]["SerialNo"], statuses[1]["SerialNo"]
    assert await tc.client.pull_send_status(APP_ID) == []  # nothing reported yet
    tc.sim.report(sa, at=START + 5)
    tc.sim.report(sb, delivered=False, errmsg="DB:0100", description="空号、停机或关机", at=START + 3600)
    tc.clock.advance(10)
    pulled = await tc.client.pull_send_status(APP_ID)
    assert pulled == [{"UserReceiveTime": int(START) + 5, "CountryCode": "86", "SubscriberNumber": A[3:],
                       "PhoneNumber": A, "SerialNo": sa, "ReportStatus": "SUCCESS", "Description": "DELIVRD",
                       "SessionContext": "outsid_9"}]
    assert await tc.client.pull_send_status(APP_ID) == []  # each status once
    tc.sim.clock = lambda: START + 3600  # the second report comes due (and the SDK keeps up)
    tc.sdk_time.skew = 3590
    pulled = await tc.client.pull_send_status(APP_ID)
    assert [(p["SerialNo"], p["ReportStatus"], p["Description"], p["UserReceiveTime"]) for p in pulled] == [
        (sb, "FAIL", "DB:0100", int(START) + 3600)]
    assert await tc.client.pull_send_status(APP_ID) == []
    with pytest.raises(ValueError):
        tc.sim.report(sa)
    with pytest.raises(KeyError):
        tc.sim.report("5000:0")


@pytest.mark.asyncio
async def test_pull_limit_at_most_100(tc: Tc) -> None:
    phones = [f"+86185{i:08d}" for i in range(150)]
    await tc.client.send_sms(APP_ID, phones, "1110", "腾讯云", ["1"])
    assert tc.sim.report_all() == 150
    assert tc.sim.report_all() == 0
    assert (await _api_error(tc.client.pull_send_status(APP_ID, limit=101))).code == "InvalidParameter"
    assert (await _api_error(tc.client.pull_send_status(APP_ID, limit=0))).code == "InvalidParameter"
    assert tc.sim.pending_statuses == 150  # a refused pull takes nothing
    sizes = [len(await tc.client.pull_send_status(APP_ID, limit=100)) for _ in range(3)]
    assert sizes == [100, 50, 0]
    assert (await _api_error(tc.client.pull_reply_status(APP_ID, limit=101))).code == "InvalidParameter"


@pytest.mark.asyncio
async def test_pull_send_status_by_phone_does_not_consume(tc: Tc) -> None:
    serials = []
    for _ in range(3):
        serials.append((await tc.client.send_sms(APP_ID, [A], "1110", "腾讯云", ["1"]))["SendStatusSet"][0]["SerialNo"])
        tc.clock.advance(60)
    other = (await tc.client.send_sms(APP_ID, [B], "1110", "腾讯云", ["1"]))["SendStatusSet"][0]["SerialNo"]
    for s in [*serials[:2], other]:
        tc.sim.report(s)  # serials[2] is not reported
    begin = int(START) - 10
    found = await tc.client.pull_send_status_by_phone(APP_ID, A, begin, None)
    assert [f["SerialNo"] for f in found] == serials[:2]
    assert all(f["PhoneNumber"] == A and f["ReportStatus"] == "SUCCESS" for f in found)
    assert await tc.client.pull_send_status_by_phone(APP_ID, A, begin, None) == found  # not consumed
    assert [f["SerialNo"] for f in await tc.client.pull_send_status_by_phone(APP_ID, A, begin, None, 1, 1)] == \
        [serials[1]]
    assert [f["SerialNo"] for f in await tc.client.pull_send_status_by_phone(
        APP_ID, A, int(START) + 30, int(START) + 90)] == [serials[1]]
    assert [f["SerialNo"] for f in await tc.client.pull_send_status_by_phone(APP_ID, B, begin, None)] == [other]
    # The queue still has all three.
    assert sorted(p["SerialNo"] for p in await tc.client.pull_send_status(APP_ID)) == sorted([*serials[:2], other])
    err = await _api_error(tc.client.pull_send_status_by_phone(APP_ID, A, int(START) - 8 * 86400, None))
    assert err.code == "InvalidParameterValue.BeginTimeVerifyFail"
    err = await _api_error(tc.client.pull_send_status_by_phone(APP_ID, A, begin, begin - 1))
    assert err.code == "InvalidParameterValue.EndTimeVerifyFail"
    err = await _api_error(tc.client.pull_send_status_by_phone(APP_ID, A, begin, None, 0, 101))
    assert err.code == "InvalidParameter"


# --- PullSmsReplyStatus ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pull_reply_status(tc: Tc) -> None:
    tc.sim.add_reply(A, "1", at=START - 2)
    tc.sim.add_reply(B, "退订", sign="邦邦快递", at=START - 1)
    tc.sim.add_reply(A, "later", at=START + 100)
    first = await tc.client.pull_reply_status(APP_ID, limit=1)
    assert first == [{"ExtendCode": "", "CountryCode": "86", "PhoneNumber": A, "SignName": "腾讯云",
                      "ReplyContent": "1", "ReplyTime": int(START) - 2, "SubscriberNumber": A[3:]}]
    second = await tc.client.pull_reply_status(APP_ID)
    assert [(r["PhoneNumber"], r["ReplyContent"], r["SignName"]) for r in second] == [(B, "退订", "邦邦快递")]
    assert await tc.client.pull_reply_status(APP_ID) == []
    tc.clock.advance(100)
    assert [r["ReplyContent"] for r in await tc.client.pull_reply_status(APP_ID)] == ["later"]
    assert await tc.client.pull_reply_status(APP_ID) == []


@pytest.mark.asyncio
async def test_pull_reply_status_by_phone_through_the_sdk(tc: Tc) -> None:
    """PullSmsReplyStatusByPhoneNumber (seed 002) by reply time, not consuming the queue; a wrong
    key is refused before anything is read."""
    tc.sim.add_reply(A, "1", at=START - 20)
    tc.sim.add_reply(B, "TD", at=START - 10)
    tc.sim.add_reply(A, "2", at=START - 5)
    begin = int(START) - 60
    found = await tc.client.pull_reply_status_by_phone(APP_ID, A, begin, None)
    assert [(r["PhoneNumber"], r["ReplyContent"], r["ReplyTime"]) for r in found] == \
        [(A, "1", int(START) - 20), (A, "2", int(START) - 5)]
    assert await tc.client.pull_reply_status_by_phone(APP_ID, A, begin, None) == found  # not consumed
    assert [r["ReplyContent"] for r in await tc.client.pull_reply_status_by_phone(APP_ID, A, begin, None, 1, 1)] == \
        ["2"]
    assert [r["ReplyContent"] for r in await tc.client.pull_reply_status_by_phone(
        APP_ID, A, int(START) - 15, int(START) - 6)] == []
    err = await _api_error(tc.client_with(secret_key="not-the-key").pull_reply_status_by_phone(APP_ID, A, begin, None))
    assert err.code == "AuthFailure.SignatureFailure"
    assert len(await tc.client.pull_reply_status(APP_ID)) == 3  # the queue still has all three


# --- statistics -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_statistics_from_sent_and_reported(tc: Tc) -> None:
    tc.sim.add_template("3001", "验证码{1}")
    tc.sim.add_template("3002", "通" * 70 + "{1}")
    # 13:10 China time: 3 numbers, one malformed; fee 1 each.
    first = (await tc.client.send_sms(APP_ID, [A, B, "+86999"], "3001", "腾讯云", ["1234"]))["SendStatusSet"]
    # 14:20: 2 long messages (2 fee each) and 1 short.
    tc.clock.advance(70 * 60)
    second = (await tc.client.send_sms(APP_ID, ["+8618501234446", "+8618501234447"], "3002", "腾讯云",
                                       ["1"]))["SendStatusSet"]
    third = (await tc.client.send_sms(APP_ID, ["+8618501234448"], "3001", "腾讯云", ["9"]))["SendStatusSet"]
    now = tc.clock()
    tc.sim.report(first[0]["SerialNo"], at=now)
    tc.sim.report(first[1]["SerialNo"], delivered=False, errmsg="-100", description="空号/停机/关机", at=now)
    tc.sim.report(second[0]["SerialNo"], delivered=False, errmsg="MB:1038", description="暂停服务", at=now)
    tc.sim.report(second[1]["SerialNo"], delivered=False, errmsg="UT:0026", description="免打扰名单", at=now)
    tc.sim.report(third[0]["SerialNo"], delivered=False, errmsg="DB:9010", description="运营商关键字拦截", at=now)

    async def send_stats(begin: str, end: str) -> dict[str, int]:
        doc = await tc.client.send_status_statistics(APP_ID, begin, end)
        assert re.fullmatch(r"[0-9a-f-]{36}", doc["RequestId"])
        return doc["SendStatusStatistics"]

    async def cb_stats(begin: str, end: str) -> dict[str, int]:
        return (await tc.client.callback_status_statistics(APP_ID, begin, end))["CallbackStatusStatistics"]

    assert await send_stats("2024050113", "2024050113") == {"FeeCount": 2, "RequestCount": 3,
                                                            "RequestSuccessCount": 2}
    assert await send_stats("2024050114", "2024050114") == {"FeeCount": 5, "RequestCount": 3,
                                                            "RequestSuccessCount": 3}
    assert await send_stats("2024050100", "2024050123") == {"FeeCount": 7, "RequestCount": 6,
                                                            "RequestSuccessCount": 5}
    assert await send_stats("2024050115", "2024050123") == {"FeeCount": 0, "RequestCount": 0,
                                                            "RequestSuccessCount": 0}
    zero = dict.fromkeys(["InternalErrorCount", "InvalidNumberCount", "ShutdownErrorCount", "BlackListCount",
                          "FrequencyLimitCount"], 0)
    assert await cb_stats("2024050113", "2024050113") == {
        **zero, "CallbackCount": 2, "RequestSuccessCount": 2, "CallbackFailCount": 1, "CallbackSuccessCount": 1,
        "InvalidNumberCount": 1}
    assert await cb_stats("2024050114", "2024050114") == {
        **zero, "CallbackCount": 3, "RequestSuccessCount": 3, "CallbackFailCount": 3, "CallbackSuccessCount": 0,
        "ShutdownErrorCount": 1, "BlackListCount": 1}
    assert await cb_stats("2024043000", "2024050123") == {
        **zero, "CallbackCount": 5, "RequestSuccessCount": 5, "CallbackFailCount": 4, "CallbackSuccessCount": 1,
        "InvalidNumberCount": 1, "ShutdownErrorCount": 1, "BlackListCount": 1}

    codes = {
        "InvalidParameterValue.LimitVerifyFail": tc.client.send_status_statistics(APP_ID, "2024050113",
                                                                                  "2024050113", limit=10),
        "InvalidParameterValue.OffsetVerifyFail": tc.client.callback_status_statistics(APP_ID, "2024050113",
                                                                                       "2024050113", offset=1),
        "InvalidParameterValue.EndTimeVerifyFail": tc.client.send_status_statistics(APP_ID, "2024050113",
                                                                                    "2024050112"),
        "InvalidParameterValue.BeginTimeVerifyFail": tc.client.send_status_statistics(APP_ID, "2024-05-01",
                                                                                      "2024050112"),
    }
    for code, coro in codes.items():
        assert (await _api_error(coro)).code == code
    # CallbackStatusStatistics: "相差不超过32天"; SendStatusStatistics has no such limit.
    err = await _api_error(tc.client.callback_status_statistics(APP_ID, "2024030100", "2024050113"))
    assert err.code == "InvalidParameterValue.EndTimeVerifyFail"
    assert (await send_stats("2024030100", "2024050113"))["RequestCount"] == 3


# --- callbacks ------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A callback endpoint answering from a script (status, body) and then ``{"result":0}``."""
    script: list[tuple[int, Any]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        status, body = self.script.pop(0) if self.script else (200, {"result": 0, "errmsg": "OK"})
        return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


@pytest.mark.asyncio
async def test_status_callbacks_batched_and_retried_twice(tc: Tc) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/status", receiver.handle)
    app.router.add_post("/reply", receiver.handle)
    runner, host = await _serve(app)
    try:
        tc.sim.callback_to(f"http://{host}/status", f"http://{host}/reply")
        phones = [f"+86185{i:08d}" for i in range(150)]
        await tc.client.send_sms(APP_ID, phones, "1110", "腾讯云", ["1"], session_context="ctx-1")
        tc.sim.report_all(at=START)
        receiver.script = [(500, {}), (200, {"result": 1, "errmsg": "busy"})]  # 2 failures, then OK
        out = await tc.sim.flush_callbacks(tc.session)
        assert out == {"statuses": 150, "replies": 0, "statuses_given_up": 0, "replies_given_up": 0}
        assert [len(b) for b in receiver.bodies] == [100, 100, 100, 50]
        first = receiver.bodies[-2][0]
        serial = tc.sim.sent[0][0]
        assert first == {"user_receive_time": "2024-05-01 13:10:00", "nationcode": "86", "mobile": "18500000000",
                         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功",
                         "sid": serial, "ext": "ctx-1"}
        assert (await tc.sim.flush_callbacks(tc.session))["statuses"] == 0  # sent once

        # Always failing: 1 try + 2 retries, then given up for good.
        receiver.bodies.clear()
        sn = (await tc.client.send_sms(APP_ID, [A], "1110", "腾讯云", ["1"]))["SendStatusSet"][0]["SerialNo"]
        tc.sim.report(sn, delivered=False, errmsg="DB:0100", description="空号、停机或关机")
        receiver.script = [(503, {})] * 5
        out = await tc.sim.flush_callbacks(tc.session)
        assert out["statuses"] == 0 and out["statuses_given_up"] == 1
        assert len(receiver.bodies) == 3
        assert [(a.status, a.ok) for a in tc.sim.callback_attempts[-3:]] == [(503, False)] * 3
        assert receiver.bodies[0] == [{"user_receive_time": "2024-05-01 13:10:00", "nationcode": "86",
                                       "mobile": A[3:], "report_status": "FAIL", "errmsg": "DB:0100",
                                       "description": "空号、停机或关机", "sid": sn}]
        receiver.script = []
        assert (await tc.sim.flush_callbacks(tc.session))["statuses"] == 0
        assert len(receiver.bodies) == 3
        # The pull queue is independent of the callbacks.
        assert len(await tc.client.pull_send_status(APP_ID)) == 100
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_reply_callbacks(tc: Tc) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/reply", receiver.handle)
    runner, host = await _serve(app)
    try:
        tc.sim.callback_to(None, f"http://{host}/reply")
        tc.sim.add_reply(A, "好的", at=START - 5)
        tc.sim.add_reply(B, "TD", sign="邦邦快递", at=START - 4)
        tc.sim.add_reply(A, "future", at=START + 60)
        receiver.script = [(200, {"result": 1})] * 3  # the first reply is given up
        out = await tc.sim.flush_callbacks(tc.session)
        assert out == {"statuses": 0, "replies": 1, "statuses_given_up": 0, "replies_given_up": 1}
        assert receiver.bodies[0] == {"extend": "", "mobile": A[3:], "nationcode": "86", "sign": "腾讯云",
                                      "text": "好的", "time": int(START) - 5}
        assert receiver.bodies[3] == {"extend": "", "mobile": B[3:], "nationcode": "86", "sign": "邦邦快递",
                                      "text": "TD", "time": int(START) - 4}
        assert len(receiver.bodies) == 4
        tc.clock.advance(60)
        assert (await tc.sim.flush_callbacks(tc.session))["replies"] == 1
        assert receiver.bodies[-1]["text"] == "future"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_unreachable_callback_is_given_up(tc: Tc) -> None:
    runner, host = await _serve(web.Application())
    await runner.cleanup()  # nothing listens there any more
    tc.sim.callback_to(f"http://{host}/status", None)
    sn = (await tc.client.send_sms(APP_ID, [A], "1110", "腾讯云", ["1"]))["SendStatusSet"][0]["SerialNo"]
    tc.sim.report(sn)
    out = await tc.sim.flush_callbacks(tc.session)
    assert out["statuses_given_up"] == 1
    assert [(a.kind, a.status, a.ok) for a in tc.sim.callback_attempts] == [("status", 0, False)] * 3


# --- SmsPackagesStatistics ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sms_packages_statistics_through_the_sdk(tc: Tc) -> None:
    """The seed's fields; a send's Fee is charged to the package; a nearly used-up quota (the
    quota-low scenario) refuses a send it cannot pay; a wrong key is refused."""
    hour = "2024050113"  # START's hour
    tc.clock.advance(3600)  # the package of set_quota_left is created an hour back: in hour
    [default] = await tc.client.sms_packages_statistics(APP_ID, "2024010100", "2024050113")
    assert set(default) == {"PackageCreateTime", "PackageEffectiveTime", "PackageExpiredTime", "PackageType",
                            "CurrentUsage", "PackageId", "PackageAmount"}
    assert (default["PackageAmount"], default["CurrentUsage"]) == (10_000_000, 0)
    tc.sim.set_quota_left(2)
    [low] = await tc.client.sms_packages_statistics(APP_ID, hour, "2024050114")
    assert low["PackageAmount"] - low["CurrentUsage"] == 2
    sent = await tc.client.send_sms(APP_ID, [A, B, A], "1110", "腾讯云", ["1"])
    assert [s["Code"] for s in sent["SendStatusSet"]] == ["Ok", "Ok", "FailedOperation.InsufficientBalanceInSmsPackage"]
    [used] = await tc.client.sms_packages_statistics(APP_ID, hour, "2024050114")
    assert used["CurrentUsage"] == used["PackageAmount"]
    assert await tc.client.sms_packages_statistics(APP_ID, hour, "2024050114", offset=1) == []
    for begin, end, limit in ((hour, "2024050112", 500), (hour, "2099010100", 500), (hour, "2024050114", 501)):
        err = await _api_error(tc.client.sms_packages_statistics(APP_ID, begin, end, limit))
        assert err.code.startswith("InvalidParameterValue.")
    err = await _api_error(tc.client_with(secret_key="not-the-key").sms_packages_statistics(APP_ID, hour, "2024050114"))
    assert err.code == "AuthFailure.SignatureFailure"
