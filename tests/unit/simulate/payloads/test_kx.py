"""simulate/payloads/kx.py: the documented payloads the simulator posts (from tests/test_simulate.py)."""

from __future__ import annotations

import hashlib

import pytest

from sms_analytics.simulate.payloads.kx import kx_mo, kx_report, kx_send
from tests.unit.simulate.test_driver import TS


def test_kx_mt_p2p_report_mo() -> None:
    mt = kx_send(["13800000000", "13500000000"], contents="【邦邦快递】hello", taskid="T1", ts_ms=1476235100217,
                 sent_at=TS, userid="100001", apikey="k", extnum="1001")
    sign = hashlib.md5(b"1000011476235100217k").hexdigest()
    assert mt["request"] == {"userid": "100001", "ts": "1476235100217", "sign": sign,
                             "mobile": "13800000000,13500000000", "msgcontent": "【邦邦快递】hello",
                             "extnum": "1001"}
    assert mt["response"] == {"code": "0", "msg": "成功", "data": {"taskid": "T1"}}
    p2p = kx_send(["18600000001", "18600000002"], contents=["a", "b"], taskid="T2", ts_ms=1, sent_at=TS,
                  p2p=True, results=[("0", "提交成功"), ("11", "短信内容过长")])
    assert p2p["request"]["list"] == [{"mobile": "18600000001", "msgcontent": "a"},
                                      {"mobile": "18600000002", "msgcontent": "b"}]
    assert p2p["response"] == {"code": "0", "msg": "成功", "data": {"taskid": "T2", "result": [
        {"mobile": "18600000001", "code": "0", "msg": "提交成功"},
        {"mobile": "18600000002", "code": "11", "msg": "短信内容过长"}]}}
    all_failed = kx_send(["18600000001"], contents="a", taskid="T3", ts_ms=1, sent_at=TS, p2p=True,
                         results=[("1", "失败")])
    assert all_failed["response"]["code"] == "1" and all_failed["response"]["data"]["taskid"] == ""
    with pytest.raises(ValueError):
        kx_send(["18600000001"], contents="a", taskid="T", ts_ms=1, sent_at=TS, results=[("1", "失败")])
    report = kx_report("13505718888", "T1", report_time=TS, code="DELIVRD", msg="成功")
    assert report == {"time": "20231115061320", "taskid": "T1", "code": "DELIVRD", "msg": "成功",
                      "mobile": "13505718888"}
    mo = kx_mo("15996480329", mo_id="9d9d0f4d1b864c129e299cc400c26306", time_s=TS, content="TD",
               srcid="1069018889001")
    assert list(mo) == ["id", "time", "msgcontent", "srcid", "mobile"] and mo["time"] == "20231115061320"
