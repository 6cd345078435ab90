"""sources.tencent.client: the requests TencentClient builds and how it maps the SDK's answers and
exceptions, with the SDK's methods replaced by fakes (no network; the client against the simulator
over HTTP is in tests/unit/simulate/test_tencent.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from sms_analytics.sources.tencent.client import TencentApiError, TencentClient


def make(**kw):
    return TencentClient(secret_id="AKID", secret_key="secret", **{"endpoint": "127.0.0.1:1", "scheme": "http", **kw})


class Answer:
    def __init__(self, doc):
        self.doc = doc

    def to_json_string(self):
        return json.dumps(self.doc)


def answering(doc, seen):
    def method(req):
        seen.append(req)
        return Answer(doc)
    return method


def test_endpoint_forms_and_repr():
    c = make(endpoint="https://sms.example:8443")
    assert (c.endpoint, c.scheme) == ("sms.example:8443", "https")
    assert repr(c) == "TencentClient(endpoint='sms.example:8443', region='ap-guangzhou', scheme='https')"
    assert "secret" not in repr(make())
    assert make(scheme="HTTP").scheme == "http"
    with pytest.raises(ValueError, match="scheme must be http or https"):
        make(scheme="ftp")


async def test_send_sms_request():
    c, seen = make(), list[Any]()
    c._sdk.SendSms = answering({"SendStatusSet": [{"Code": "Ok", "SerialNo": "s1"}], "RequestId": "r"}, seen)
    doc = await c.send_sms("1400", "+8613800138000", 1110, "sign", params=[1, "2"], session_context="ctx")
    assert doc["SendStatusSet"][0]["SerialNo"] == "s1"
    [req] = seen
    assert (req.SmsSdkAppId, req.PhoneNumberSet, req.TemplateId, req.SignName, req.TemplateParamSet,
            req.SessionContext) == ("1400", ["+8613800138000"], "1110", "sign", ["1", "2"], "ctx")


async def test_pulls_keep_records():
    c, seen = make(), list[Any]()
    c._sdk.PullSmsSendStatus = answering({"PullSmsSendStatusSet": [{"SerialNo": "a"}, "junk"]}, seen)
    c._sdk.PullSmsReplyStatus = answering({"PullSmsReplyStatusSet": None}, seen)
    assert await c.pull_send_status("1400", limit=7) == [{"SerialNo": "a"}]
    assert await c.pull_reply_status("1400") == []
    assert [(r.SmsSdkAppId, r.Limit) for r in seen] == [("1400", 7), ("1400", 100)]


async def test_pull_by_phone_request():
    c, seen = make(), list[Any]()
    c._sdk.PullSmsSendStatusByPhoneNumber = answering({"PullSmsSendStatusSet": []}, seen)
    await c.pull_send_status_by_phone("1400", "+86138", 100.9, None, 5, 50)
    await c.pull_send_status_by_phone("1400", "+86138", 100, 200)
    first, second = seen
    assert (first.PhoneNumber, first.BeginTime, first.EndTime, first.Offset, first.Limit) == ("+86138", 100, None, 5, 50)
    assert second.EndTime == 200


async def test_pull_reply_by_phone_request():
    c, seen = make(), list[Any]()
    c._sdk.PullSmsReplyStatusByPhoneNumber = answering({"PullSmsReplyStatusSet": [{"ReplyContent": "TD"}, 3]}, seen)
    assert await c.pull_reply_status_by_phone("1400", "+86138", 100.9, 300, 2, 10) == [{"ReplyContent": "TD"}]
    (req,) = seen
    assert type(req).__name__ == "PullSmsReplyStatusByPhoneNumberRequest"
    assert (req.SmsSdkAppId, req.PhoneNumber, req.BeginTime, req.EndTime, req.Offset, req.Limit) == \
        ("1400", "+86138", 100, 300, 2, 10)


async def test_statistics_requests():
    c, seen = make(), list[Any]()
    c._sdk.CallbackStatusStatistics = answering({"CallbackStatusStatistics": {"CallbackCount": 1}}, seen)
    c._sdk.SendStatusStatistics = answering({"SendStatusStatistics": {"FeeCount": 2}}, seen)
    assert await c.callback_status_statistics("1400", 2026010108, "2026010109") == {
        "CallbackStatusStatistics": {"CallbackCount": 1}}
    await c.send_status_statistics("1400", "2026010108", "2026010108", limit=3, offset=4)
    assert [(r.SmsSdkAppId, r.BeginTime, r.EndTime, r.Limit, r.Offset) for r in seen] == [
        ("1400", "2026010108", "2026010109", 0, 0), ("1400", "2026010108", "2026010108", 3, 4)]


async def test_sdk_error_becomes_api_error():
    c = make()

    def fail(req):
        raise TencentCloudSDKException("AuthFailure.SignatureFailure", "bad signature", "req-9")

    c._sdk.PullSmsSendStatus = fail
    with pytest.raises(TencentApiError) as caught:
        await c.pull_send_status("1400")
    err = caught.value
    assert (err.code, err.message, err.request_id) == ("AuthFailure.SignatureFailure", "bad signature", "req-9")
    assert str(err) == "Tencent API error AuthFailure.SignatureFailure: bad signature (RequestId req-9)"


async def test_unexpected_response():
    c, seen = make(), list[Any]()
    c._sdk.PullSmsReplyStatus = answering([1, 2], seen)
    with pytest.raises(TencentApiError, match="PullSmsReplyStatus: unexpected SDK response"):
        await c.pull_reply_status("1400")

    class Unreadable:
        def to_json_string(self):
            return "{not json"

    c._sdk.PullSmsSendStatus = lambda req: Unreadable()
    with pytest.raises(TencentApiError) as caught:
        await c.pull_send_status("1400")
    assert caught.value.code == "ClientError"
    assert str(caught.value) == "Tencent API error ClientError: PullSmsSendStatus: unreadable SDK response"
