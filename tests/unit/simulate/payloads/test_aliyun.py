"""simulate/payloads/aliyun.py: the documented payloads the simulator posts (from tests/test_simulate.py)."""

from __future__ import annotations

from sms_analytics.simulate.payloads.aliyun import aliyun_report, aliyun_send, aliyun_sms_up
from tests.unit.simulate.test_driver import TS


def test_aliyun_send_sendsms_and_batch() -> None:
    body = aliyun_send(["13800000000", "18600000001"], sign_name="阿里云", template_code="SMS_153055065",
                       request_id="R", sent_at=TS, biz_id="197703245997295588^0", out_id="abc")
    assert body == {
        "request": {"PhoneNumbers": "13800000000,18600000001", "SignName": "阿里云",
                    "TemplateCode": "SMS_153055065", "OutId": "abc"},
        "response": {"Code": "OK", "Message": "OK", "RequestId": "R", "BizId": "197703245997295588^0"},
        "sent_at": TS,
    }
    batch = aliyun_send(["15900000000", "13500000000"], sign_name="阿里云", template_code="SMS_152550005",
                        request_id="R", sent_at="2023-11-15T06:13:20+08:00", biz_id="1^0", batch=True)
    assert batch["request"] == {"PhoneNumberJson": '["15900000000","13500000000"]',
                                "SignNameJson": '["阿里云","阿里云"]', "TemplateCode": "SMS_152550005"}
    failed = aliyun_send(["13800000000"], sign_name="阿里云", template_code="SMS_153055065", request_id="R",
                         sent_at=TS, biz_id=None, error=("isv.BUSINESS_LIMIT_CONTROL", "业务限流"))
    assert failed["response"] == {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "业务限流", "RequestId": "R"}


def test_aliyun_report_and_sms_up() -> None:
    ok = aliyun_report("13900000001", "12345^0", send_time=TS, report_time=TS + 5,
                       err_code="DELIVERED", err_msg="用户接收成功", out_id="67890")
    assert ok == {"phone_number": "13900000001", "send_time": "2023-11-15 06:13:20",
                  "report_time": "2023-11-15 06:13:25", "success": True, "err_code": "DELIVERED",
                  "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345^0", "out_id": "67890"}
    bad = aliyun_report("13300000001", "12345^0", send_time=TS, report_time=TS, err_code="MK:0001",
                        err_msg="空号")
    assert bad["success"] is False
    up = aliyun_sms_up("18612345678", send_time=TS, content="TD", sign_name="签名", dest_code="1234",
                       sequence_id=1234567890)
    assert set(up) == {"phone_number", "send_time", "content", "sign_name", "dest_code", "sequence_id"}
    assert up["send_time"] == "2023-11-15 06:13:20" and up["sequence_id"] == 1234567890
