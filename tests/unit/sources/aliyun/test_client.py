"""sources.aliyun.client: the requests AliyunClient builds and how it maps the SDK's answers and
exceptions, with the SDK's async methods replaced by fakes (no network; the client against the
simulator over HTTP is in tests/unit/simulate/test_aliyun.py)."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from Tea.exceptions import TeaException

from sms_analytics.sources.aliyun import client as aliyun
from sms_analytics.sources.aliyun.client import AliyunApiError, AliyunClient


def make():
    return AliyunClient(access_key_id="LTAIid", access_key_secret="secret", endpoint="127.0.0.1:1", protocol="http")


class Body:
    def __init__(self, doc):
        self.doc = doc

    def to_map(self):
        return dict(self.doc)


def answering(doc, status=200, seen=None):
    async def method(request):
        if seen is not None:
            seen.append(request)
        return SimpleNamespace(body=Body(doc) if doc is not None else None, status_code=status)
    return method


def raising(exc):
    async def method(request):
        raise exc
    return method


OK = {"Code": "OK", "Message": "OK", "RequestId": "r1", "BizId": "b1"}


def test_repr_has_no_secret():
    text = repr(make())
    assert text == ("AliyunClient(endpoint='127.0.0.1:1', protocol='http', access_key_id='LTAIid', "
                    "signature_algorithm='v2')")
    assert "secret" not in text


def test_clean_and_json():
    assert aliyun._clean("Signature mismatch. server string to sign is: GET&%2F&...") == "Signature mismatch."
    assert aliyun._clean(None) == ""
    assert aliyun._json({"code": "中"}) == '{"code":"中"}'


async def test_send_sms_request_and_answer():
    c, seen = make(), list[Any]()
    c._sdk.send_sms_async = answering(OK, seen=seen)
    assert await c.send_sms(["138", "139"], "阿里云", "SMS_1", params={"code": "12"}, out_id="o") == OK
    [req] = seen
    assert (req.phone_numbers, req.sign_name, req.template_code, req.out_id) == ("138,139", "阿里云", "SMS_1", "o")
    assert json.loads(req.template_param) == {"code": "12"}


async def test_send_batch_sms_repeats_one_mapping():
    c, seen = make(), list[Any]()
    c._sdk.send_batch_sms_async = answering(OK, seen=seen)
    await c.send_batch_sms(["138", "139"], ["A", "B"], "SMS_1", params={"x": 1})
    [req] = seen
    assert json.loads(req.phone_number_json) == ["138", "139"]
    assert json.loads(req.sign_name_json) == ["A", "B"]
    assert json.loads(req.template_param_json) == [{"x": 1}, {"x": 1}]


async def test_query_send_details_formats_the_date():
    c, seen = make(), list[Any]()
    c._sdk.query_send_details_async = answering({**OK, "TotalCount": 0}, seen=seen)
    await c.query_send_details("138", date(2026, 1, 2), biz_id="b1")
    [req] = seen
    assert (req.phone_number, req.send_date, req.biz_id, req.page_size, req.current_page) == ("138", "20260102", "b1", 50, 1)


async def test_refused_answer():
    c = make()
    c._sdk.send_sms_async = answering({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "limit", "RequestId": "r2"})
    with pytest.raises(AliyunApiError) as caught:
        await c.send_sms(["138"], "s", "t")
    err = caught.value
    assert (err.code, err.message, err.request_id, err.status) == ("isv.BUSINESS_LIMIT_CONTROL", "limit", "r2", 200)
    assert str(err) == "Aliyun SMS error isv.BUSINESS_LIMIT_CONTROL: limit (RequestId r2)"


async def test_empty_body_is_unknown():
    c = make()
    c._sdk.send_sms_async = answering(None)
    with pytest.raises(AliyunApiError) as caught:
        await c.send_sms(["138"], "s", "t")
    assert caught.value.code == "Unknown"
    assert caught.value.body == {}


async def test_api_exception():
    c = make()
    exc = AlibabaCloudException(status_code=403, code="SignatureDoesNotMatch", request_id="None",
                                message="bad. server string to sign is: X",
                                data={"Code": "SignatureDoesNotMatch"})
    c._sdk.send_sms_async = raising(exc)
    with pytest.raises(AliyunApiError) as caught:
        await c.send_sms(["138"], "s", "t")
    err = caught.value
    assert (err.code, err.message, err.request_id, err.status) == ("SignatureDoesNotMatch", "bad.", "", 403)
    assert err.body is exc.data
    assert err.body["Code"] == "SignatureDoesNotMatch"


async def test_sdk_exception():
    c = make()
    c._sdk.query_send_details_async = raising(TeaException({"code": "x", "message": "y"}))
    with pytest.raises(AliyunApiError) as caught:
        await c.query_send_details("138", "20260101")
    assert caught.value.code == "SDK.TeaException"
    assert caught.value.message == "QuerySendDetails failed: TeaException"


async def test_context_manager():
    async with make() as c:
        assert isinstance(c, AliyunClient)
