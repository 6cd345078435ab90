"""sources.kx.client: the md5 signature, and KxClient's requests and reply checks against a
scripted server on loopback."""

from __future__ import annotations

import hashlib
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sms_analytics.sources.kx import client as kx
from sms_analytics.sources.kx.client import KxClient, KxError, kx_sign


def test_sign_is_md5_of_user_ts_key():
    assert kx_sign("100001", 1_700_000_000_000, "key") == hashlib.md5(b"1000011700000000000key").hexdigest()
    assert kx_sign("u", "1", "k") == kx_sign("u", 1, "k")
    assert len(kx_sign("u", 1, "k")) == 32


def test_error_and_code():
    err = KxError("-1", "bad sign", response={"code": "-1"})
    assert str(err) == "KX error -1: bad sign"
    assert (err.code, err.msg, err.response) == ("-1", "bad sign", {"code": "-1"})
    assert kx._code({"code": " 0"}) == "0"
    assert kx._code({}) == ""


class Scripted:
    def __init__(self, answers):
        self.answers = answers  # path -> (status, body text)
        self.requests = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request):
        body = await request.read()
        form = dict(await request.post()) if request.content_type == "application/x-www-form-urlencoded" else None
        self.requests.append((request.method, request.path, dict(request.query), form,
                              json.loads(body) if request.content_type == "application/json" else None))
        status, text = self.answers[request.path]
        return web.Response(status=status, text=text)


async def call(answers, fn):
    server = Scripted(answers)
    async with TestServer(server.app, host="127.0.0.1") as ts, \
            KxClient(str(ts.make_url("")), "100001", "key", clock=lambda: 1_700_000_000.0) as client:
        result = await fn(client)
    return result, server.requests


SIGNED = {"userid": "100001", "ts": "1700000000000", "sign": kx_sign("100001", "1700000000000", "key")}


async def test_send_posts_a_signed_form():
    doc, requests = await call({kx.SEND_PATH: (200, '{"code": " 0", "data": {"taskid": "t1"}}')},
                               lambda c: c.send(["138", "139"], "hi", extnum="9"))
    assert doc["data"]["taskid"] == "t1"
    [(method, path, query, form, _)] = requests
    assert (method, path, query) == ("POST", kx.SEND_PATH, {})
    assert form == {**SIGNED, "mobile": "138,139", "msgcontent": "hi", "extnum": "9"}


async def test_p2p_send_posts_json():
    _, requests = await call({kx.P2P_PATH: (200, '{"code": "0", "data": {"result": []}}')},
                             lambda c: c.p2p_send([("138", "a"), ("139", "b")], messageid="m"))
    [(_, _, _, _, body)] = requests
    assert body == {**SIGNED, "list": [{"mobile": "138", "msgcontent": "a"}, {"mobile": "139", "msgcontent": "b"}],
                    "messageid": "m"}


async def test_queries():
    records, requests = await call({kx.MT_QUERY_PATH: (200, '{"code": "0", "data": [{"taskid": "1"}, "junk"]}')},
                                   lambda c: c.mt_query())
    assert records == [{"taskid": "1"}]
    assert requests[0][:3] == ("GET", kx.MT_QUERY_PATH, SIGNED)
    none, _ = await call({kx.MO_QUERY_PATH: (200, '{"code": "0"}')}, lambda c: c.mo_query())
    assert none == []


async def test_balance():
    balance, requests = await call({kx.BALANCE_PATH: (200, '{"code": "0", "data": {"balance": " 42 "}}')},
                                   lambda c: c.balance())
    assert balance == 42
    assert requests[0][:3] == ("GET", kx.BALANCE_PATH, SIGNED)


@pytest.mark.parametrize("path, status, text, code", [
    (kx.BALANCE_PATH, 200, '{"code": "-3", "msg": " no money "}', "-3"),
    (kx.BALANCE_PATH, 200, '{"code": "0", "data": {}}', "bad-reply"),
    (kx.BALANCE_PATH, 500, "oops", "http-500"),
    (kx.BALANCE_PATH, 200, "not json", "bad-reply"),
    (kx.BALANCE_PATH, 200, "[1]", "bad-reply"),
    (kx.MT_QUERY_PATH, 200, '{"code": "0", "data": {"a": 1}}', "bad-reply"),
])
async def test_refusals(path, status, text, code):
    fn = (lambda c: c.balance()) if path == kx.BALANCE_PATH else (lambda c: c.mt_query())
    with pytest.raises(KxError) as caught:
        await call({path: (status, text)}, fn)
    assert caught.value.code == code
    if code == "-3":
        assert caught.value.msg == "no money"


async def test_closed_given_session_is_refused():
    import aiohttp

    session = aiohttp.ClientSession()
    await session.close()
    client = KxClient("http://127.0.0.1:1", "u", "k", session=session)
    with pytest.raises(RuntimeError, match="is closed"):
        await client.balance()
    assert repr(client) == "KxClient(base_url='http://127.0.0.1:1', userid='u')"
