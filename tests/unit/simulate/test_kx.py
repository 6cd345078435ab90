"""KxClient against KxSimulator over real HTTP on 127.0.0.1 (KX API, seed 001)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from sms_analytics.simulate.kx import KxSimulator
from sms_analytics.sources.kx.client import KxClient, KxError, kx_sign
from tests.conftest import serve

USERID = "100001"
APIKEY = "test-apikey-not-a-secret"
SIGNED = "【邦邦快递】"


class Clock:
    """A wall clock the tests can move forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Kx:
    sim: KxSimulator
    client: KxClient
    url: str
    clock: Clock
    session: aiohttp.ClientSession

    def client_with(self, *, apikey: str = APIKEY, userid: str = USERID, skew: float = 0.0) -> KxClient:
        return KxClient(self.url, userid, apikey, session=self.session, clock=lambda: self.clock() + skew)


@pytest_asyncio.fixture
async def kx() -> AsyncIterator[Kx]:
    clock = Clock()
    sim = KxSimulator(userid=USERID, apikey=APIKEY, rng_seed=7, clock=clock)
    runner, url = await serve(sim.app())
    session = aiohttp.ClientSession()
    client = KxClient(url, USERID, APIKEY, session=session, clock=clock)
    try:
        yield Kx(sim, client, url, clock, session)
    finally:
        await client.close()
        await session.close()
        await runner.cleanup()


def test_sign_is_lowercase_md5_of_userid_ts_apikey() -> None:
    expected = hashlib.md5(b"1000011476235100217secret").hexdigest()
    assert kx_sign("100001", 1476235100217, "secret") == expected
    assert kx_sign("100001", "1476235100217", "secret") == expected
    assert re.fullmatch(r"[0-9a-f]{32}", expected)


@pytest.mark.asyncio
async def test_send_then_reports_via_mt_query(kx: Kx) -> None:
    mobiles = ["13800000001", "13500000002"]
    reply = await kx.client.send(mobiles, f"{SIGNED}您的验证码是 1234", messageid="order-42")
    assert reply["code"] == "0" and reply["msg"] == "成功"
    taskid = reply["data"]["taskid"]
    assert re.fullmatch(r"\d{1,32}", taskid)
    assert [(t, m) for t, m, _ in kx.sim.sent] == [(taskid, m) for m in mobiles]

    assert await kx.client.mt_query() == []  # reports are not due yet
    kx.clock.advance(60)
    reports = await kx.client.mt_query()
    assert sorted(r["mobile"] for r in reports) == sorted(mobiles)
    for r in reports:
        assert r["taskid"] == taskid
        assert r["messageid"] == "order-42"
        assert re.fullmatch(r"\d{14}", r["time"])
        assert r["code"] in {"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "F1122", "F11300"}
    assert await kx.client.mt_query() == []  # each report is returned once
    assert kx.sim.report_for_all() == 0  # everything has been reported


@pytest.mark.asyncio
async def test_report_for_all_replaces_pending_automatic_reports(kx: Kx) -> None:
    taskid = (await kx.client.send(["13800000011", "13800000012"], f"{SIGNED}hi"))["data"]["taskid"]
    assert kx.sim.report_for_all("UNDELIV") == 2
    reports = await kx.client.mt_query()
    assert [(r["taskid"], r["code"], r["msg"]) for r in reports] == [(taskid, "UNDELIV", "短信接收失败")] * 2
    kx.clock.advance(3600)  # the automatic reports were replaced, not added
    assert await kx.client.mt_query() == []


@pytest.mark.asyncio
async def test_mt_query_returns_at_most_200(kx: Kx) -> None:
    for i in range(450):
        kx.sim.queue_report("T1", f"138{i:08d}")
    sizes = [len(await kx.client.mt_query()) for _ in range(4)]
    assert sizes == [200, 200, 50, 0]


@pytest.mark.asyncio
async def test_query_without_data_has_no_data_node(kx: Kx) -> None:
    ts = str(int(kx.clock() * 1000))
    params = {"userid": USERID, "ts": ts, "sign": kx_sign(USERID, ts, APIKEY)}
    async with kx.session.get(f"{kx.url}/api/v2/sms/query", params=params) as resp:
        assert await resp.json() == {"code": "0", "msg": "成功"}


@pytest.mark.asyncio
async def test_mo_query(kx: Kx) -> None:
    kx.sim.queue_mo("15996480329", "测试上行短信 1")
    kx.sim.queue_mo("15996480330", "TD", srcid="10690188890011")
    kx.sim.queue_mo("15996480331", "later", at=kx.clock() + 30)
    mos = await kx.client.mo_query()
    assert [(m["mobile"], m["msgcontent"], m["srcid"]) for m in mos] == [
        ("15996480329", "测试上行短信 1", "1069018889001"), ("15996480330", "TD", "10690188890011")]
    assert all(re.fullmatch(r"[0-9a-f]{32}", m["id"]) and re.fullmatch(r"\d{14}", m["time"]) for m in mos)
    assert await kx.client.mo_query() == []
    kx.clock.advance(31)
    assert [m["msgcontent"] for m in await kx.client.mo_query()] == ["later"]
    assert await kx.client.mt_query() == []  # uplinks never show up as reports


@pytest.mark.asyncio
async def test_balance_decrements_by_segments(kx: Kx) -> None:
    start = await kx.client.balance()
    assert start == kx.sim.balance == 100_000
    await kx.client.send(["13800000001", "13800000002"], "x" * 70)  # 1 segment each
    assert await kx.client.balance() == start - 2
    await kx.client.send(["13800000003"], "x" * 71)  # 71 chars: 2 segments of 67
    assert await kx.client.balance() == start - 4
    await kx.client.p2p_send([("13800000004", "y" * 135), ("1380000", "bad")])  # 3 segments, 1 refused
    assert await kx.client.balance() == start - 7

    kx.sim.balance = 1
    with pytest.raises(KxError) as err:
        await kx.client.send(["13800000005", "13800000006"], "z")
    assert (err.value.code, err.value.msg) == ("3", "余额不足")
    assert await kx.client.balance() == 1


@pytest.mark.asyncio
async def test_bad_apikey_is_refused_with_sign_failure(kx: Kx) -> None:
    with pytest.raises(KxError) as err:
        await kx.client_with(apikey="wrong").send(["13800000001"], f"{SIGNED}hi")
    assert (err.value.code, err.value.msg) == ("6", "sign 校验失败")
    with pytest.raises(KxError) as err:
        await kx.client_with(apikey="wrong").mt_query()
    assert err.value.code == "6"
    assert kx.sim.sent == [] and kx.sim.balance == 100_000


@pytest.mark.asyncio
async def test_upper_case_sign_is_refused(kx: Kx) -> None:
    ts = str(int(kx.clock() * 1000))
    form = {"userid": USERID, "ts": ts, "sign": kx_sign(USERID, ts, APIKEY).upper(),
            "mobile": "13800000001", "msgcontent": "hi"}
    async with kx.session.post(f"{kx.url}/api/sms/send", data=form) as resp:
        assert await resp.json() == {"code": "6", "msg": "sign 校验失败"}


@pytest.mark.asyncio
async def test_unknown_user(kx: Kx) -> None:
    with pytest.raises(KxError) as err:
        await kx.client_with(userid="999999").mt_query()
    assert (err.value.code, err.value.msg) == ("4", "用户不存在")


@pytest.mark.asyncio
async def test_ts_older_than_five_minutes_is_refused(kx: Kx) -> None:
    for skew in (-301.0, +301.0):
        with pytest.raises(KxError) as err:
            await kx.client_with(skew=skew).send(["13800000001"], f"{SIGNED}hi")
        assert (err.value.code, err.value.msg) == ("14", "ts 校验有误, 要求 5 分钟内有效")
    assert kx.sim.sent == []
    assert await kx.client_with(skew=-290.0).balance() == 100_000  # still inside the window


@pytest.mark.asyncio
async def test_mt_get_and_request_checks(kx: Kx) -> None:
    def signed() -> dict[str, str]:
        ts = str(int(kx.clock() * 1000))
        return {"userid": USERID, "ts": ts, "sign": kx_sign(USERID, ts, APIKEY)}

    async def mt(**extra: str) -> dict:
        async with kx.session.get(f"{kx.url}/api/sms/send", params={**signed(), **extra}) as resp:
            return await resp.json()

    ok = await mt(mobile="13800000001,13500000002", msgcontent=f"{SIGNED}你好 & 100%", extnum="1001")
    assert ok["code"] == "0" and ok["data"]["taskid"]
    assert kx.sim.sent[-1][2] == f"{SIGNED}你好 & 100%"
    assert await mt(msgcontent="hi") == {"code": "2", "msg": "参数校验失败, 参数不能为空"}
    assert (await mt(mobile="13800000001,1380", msgcontent="hi"))["code"] == "2"
    assert await mt(mobile=",".join(["13800000001"] * 1001), msgcontent="hi") == {
        "code": "15", "msg": "号码个数超过限制"}
    assert await mt(mobile="13800000001", msgcontent="x" * 1001) == {"code": "11", "msg": "短信内容过长"}
    assert await mt(mobile="13800000001", msgcontent="买枪支") == {"code": "10", "msg": "发送内容包含敏感词[枪支]"}
    assert await mt(mobile="13800000001", msgcontent="hi", extnum="1234567") == {"code": "9", "msg": "扩展号格式错误"}
    assert await mt(mobile="13800000001", msgcontent="hi", time="2011-01-15") == {
        "code": "8", "msg": "time 时间格式错误"}
    assert (await mt(mobile="13800000001", msgcontent="hi", time="20991231000000"))["code"] == "16"
    assert len(kx.sim.sent) == 2
    assert (await mt(mobile=",".join(["13800000001"] * 1000), msgcontent="hi"))["code"] == "0"  # GET, ~12 KB URL
    assert len(kx.sim.sent) == 1002


@pytest.mark.asyncio
async def test_scheduled_send_reports_after_its_time(kx: Kx) -> None:
    ts = str(int(kx.clock() * 1000))
    later = datetime.fromtimestamp(kx.clock() + 3600, timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")
    form = {"userid": USERID, "ts": ts, "sign": kx_sign(USERID, ts, APIKEY),
            "mobile": "13800000001", "msgcontent": "hi", "time": later}
    async with kx.session.post(f"{kx.url}/api/sms/send", data=form) as resp:
        assert (await resp.json())["code"] == "0"
    kx.clock.advance(600)
    assert await kx.client.mt_query() == []
    kx.clock.advance(3600)
    assert [r["mobile"] for r in await kx.client.mt_query()] == ["13800000001"]


@pytest.mark.asyncio
async def test_p2p_per_number_failure(kx: Kx) -> None:
    reply = await kx.client.p2p_send([("18600000001", f"{SIGNED}取件号: 1234"), ("1860000000", f"{SIGNED}取件号: 2345"),
                                      ("18600000003", "x" * 1001)])
    assert reply["code"] == "0"
    taskid = reply["data"]["taskid"]
    assert taskid
    result = {r["mobile"]: (r["code"], r["msg"]) for r in reply["data"]["result"]}
    assert result == {"18600000001": ("0", "提交成功"), "1860000000": ("2", "参数校验失败"),
                      "18600000003": ("11", "短信内容过长")}
    assert kx.sim.sent == [(taskid, "18600000001", f"{SIGNED}取件号: 1234")]
    kx.sim.report_for_all()
    assert [r["mobile"] for r in await kx.client.mt_query()] == ["18600000001"]


@pytest.mark.asyncio
async def test_p2p_all_failed_raises_with_per_number_results(kx: Kx) -> None:
    with pytest.raises(KxError) as err:
        await kx.client_with(apikey="wrong").p2p_send([("18600000001", "a"), ("18600000002", "b")])
    assert err.value.code == "6"
    assert err.value.response is not None
    assert err.value.response["data"]["taskid"] == ""
    assert [r["code"] for r in err.value.response["data"]["result"]] == ["6", "6"]

    with pytest.raises(KxError) as err:
        await kx.client.p2p_send([("123", "a")])
    assert err.value.code == "2"
    assert kx.sim.sent == []


@pytest.mark.asyncio
async def test_p2p_accepts_doc_sample_with_padded_keys(kx: Kx) -> None:
    ts = str(int(kx.clock() * 1000))
    body = {"userid": USERID, "ts": ts, "sign": kx_sign(USERID, ts, APIKEY),
            "list": [{"mobile ": "18600000001 ", "msgcontent": f"{SIGNED}您的快递已到"}]}
    async with kx.session.post(f"{kx.url}/api/sms/p2psend", json=body) as resp:
        doc = await resp.json()
    assert doc["code"] == "0"
    assert doc["data"]["result"] == [{"mobile": "18600000001", "code": "0", "msg": "提交成功"}]


@pytest.mark.asyncio
async def test_push_resends_until_success(kx: Kx) -> None:
    got: dict[str, list[list[dict]]] = {"report": [], "mo": []}
    fail_next = {"report": True, "mo": True}

    def receiver(kind: str):
        async def handle(request: web.Request) -> web.Response:
            got[kind].append(await request.json())
            if fail_next[kind]:
                fail_next[kind] = False
                return web.Response(text="FAIL")
            return web.Response(text="SUCCESS")
        return handle

    app = web.Application()
    app.router.add_post("/servlet/report", receiver("report"))
    app.router.add_post("/servlet/mo", receiver("mo"))
    runner, url = await serve(app)
    try:
        kx.sim.push_to(f"{url}/servlet/report", f"{url}/servlet/mo")
        taskid = (await kx.client.send(["13505718888", "13505718889"], f"{SIGNED}hi"))["data"]["taskid"]
        kx.sim.report_for_all()
        kx.sim.queue_mo("15996480329", "测试上行短信")

        assert await kx.sim.flush_pushes(kx.session) == {"reports": 0, "mo": 0}
        assert [len(b) for b in got["report"]] == [2] and [len(b) for b in got["mo"]] == [1]
        assert kx.sim.pending_reports == 2 and kx.sim.pending_mos == 1
        assert await kx.client.mt_query() == []  # push and query are mutually exclusive (§2)

        assert await kx.sim.flush_pushes(kx.session) == {"reports": 2, "mo": 1}
        assert got["report"][1] == got["report"][0]  # the same records, re-sent
        assert {(r["taskid"], r["mobile"], r["code"]) for r in got["report"][1]} == {
            (taskid, "13505718888", "DELIVRD"), (taskid, "13505718889", "DELIVRD")}
        assert got["mo"][1][0]["msgcontent"] == "测试上行短信"

        assert await kx.sim.flush_pushes(kx.session) == {"reports": 0, "mo": 0}
        assert len(got["report"]) == 2 and len(got["mo"]) == 2  # nothing left to push
        assert kx.sim.pending_reports == 0 and kx.sim.pending_mos == 0
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_push_needs_exact_success_body(kx: Kx) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/r", handle)
    runner, url = await serve(app)
    try:
        kx.sim.push_to(f"{url}/r", None)
        kx.sim.queue_report("T9", "13800000001")
        assert await kx.sim.flush_pushes(kx.session) == {"reports": 0, "mo": 0}
        assert kx.sim.pending_reports == 1
        kx.sim.push_to(None, None)  # back to query mode: the report is still there
        assert [r["taskid"] for r in await kx.client.mt_query()] == ["T9"]
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_client_owns_its_session_when_none_given(kx: Kx) -> None:
    client = KxClient(kx.url, USERID, APIKEY, clock=kx.clock)
    try:
        assert await client.balance() == 100_000
    finally:
        await client.close()
    assert APIKEY not in repr(client)
