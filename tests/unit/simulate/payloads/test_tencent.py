"""simulate/payloads/tencent.py: the documented payloads the simulator posts (from tests/test_simulate.py)."""

from __future__ import annotations

from sms_analytics.simulate.payloads.tencent import tencent_reply, tencent_send, tencent_status
from sms_analytics.simulate.plan import TENCENT_SUBMIT_ERRORS
from tests.unit.simulate.test_driver import TS


def test_tencent_send_status_and_reply() -> None:
    body = tencent_send(["18501234444", "18501234445"], sdk_app_id="1400006666", template_id="1110",
                        sign_name="腾讯云", session_context="ctx", serial_nos=["5000:1", ""],
                        request_id="rid", sent_at=TS,
                        results=[("Ok", "send success"), TENCENT_SUBMIT_ERRORS[0]])
    assert body["request"] == {"PhoneNumberSet": ["+8618501234444", "+8618501234445"],
                               "SmsSdkAppId": "1400006666", "TemplateId": "1110", "SignName": "腾讯云",
                               "SessionContext": "ctx"}
    ok, failed = body["response"]["Response"]["SendStatusSet"]
    assert ok == {"SerialNo": "5000:1", "PhoneNumber": "+8618501234444", "Fee": 1, "SessionContext": "ctx",
                  "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
    assert failed["Code"] == "LimitExceeded.PhoneNumberDailyLimit" and failed["Fee"] == 0
    assert body["response"]["Response"]["RequestId"] == "rid"
    status = tencent_status("18501234444", "5000:1", receive_time=TS, errmsg="DELIVRD",
                            description="用户短信送达成功")
    assert status == {"user_receive_time": "2023-11-15 06:13:20", "nationcode": "86",
                      "mobile": "18501234444", "report_status": "SUCCESS", "errmsg": "DELIVRD",
                      "description": "用户短信送达成功", "sid": "5000:1"}
    assert tencent_status("18501234444", "x", receive_time=TS, errmsg="DB:0107",
                          description="关机")["report_status"] == "FAIL"
    reply = tencent_reply("18501234444", time_s=1457336869, text="TD", sign="腾讯云")
    assert reply == {"extend": "", "mobile": "18501234444", "nationcode": "86", "sign": "腾讯云",
                     "text": "TD", "time": 1457336869}
