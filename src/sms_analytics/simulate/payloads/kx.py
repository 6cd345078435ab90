"""KX aggregator (seed 001) payloads: the codes copied from the seed document (§12.1 submit, §12.2
receipts, §5.2 the success receipt), the md5 sign (§4.2), its time format and billing parts, the
contents the simulator sends, and the exact JSON bodies of MT/P2PBatch send records, Report and MO
pushes. Pure functions of their arguments: no randomness (simulate/plan.py draws), no I/O
(simulate/driver.py posts)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sms_analytics.simulate.payloads.common import CHINA_TZ, Json, SentAt, send_envelope

# 001 §5.2 sample and §12.2 rows "<code>\t<description>\t<action>".
KX_DELIVERED: tuple[str, str] = ("DELIVRD", "成功")
KX_RECEIPT_FAILURES: tuple[tuple[str, str, int], ...] = (
    ("UNDELIV", "短信接收失败", 8),
    ("EXPIRED", "短信接收失败", 4),
    ("REJECTD", "客户接收失败", 3),
    ("F11300", "系统频控超过日限额", 2),
    ("F1120", "一级黑名单", 1),
    ("F1110", "号段错误,号段不存在", 1),
)
# 001 §12.1 rows, used as P2PBatch per-number results (§10.3).
KX_SUBMIT_ERRORS: tuple[tuple[str, str], ...] = (("11", "短信内容过长"), ("1", "失败"))
KX_SUBMIT_OK: tuple[str, str] = ("0", "提交成功")
KX_OK: tuple[str, str] = ("0", "成功")

KX_USERID = "100001"
KX_APIKEY = "simulator-apikey"  # not a credential: the simulator signs with a fixed fake key
KX_CONTENTS: tuple[str, ...] = (
    "【邦邦快递】您的快递已到，取件号：{n}",
    "【鲜果园】您的验证码为{n}，5分钟内有效，请勿泄露。",
    "【安心保险】尊敬的客户，您的保单{n}已生效，详情请登录APP查看。退订回T",
    "【城市燃气】您本月燃气费账单已出，户号{n}，请及时缴费。",
    # Long messages (> 70 characters: billed 67 characters a part): 2 and 3 parts.
    ("【安心保险】尊敬的客户，您的保单{n}已完成续保，保障期间为一年。电子保单已发送至您预留的邮箱，"
     "如需纸质保单请在APP内申请邮寄，如有疑问请致电客服热线。退订回T"),
    ("【城市燃气】尊敬的用户，您的户号{n}本月燃气费账单已出。为保障用气安全，我司将于近期开展入户安检，"
     "请您提前预约上门时间并保持家中有人。安检人员均佩戴工作证并出示安检工单，安检过程不收取任何费用，"
     "请勿向任何人员支付现金，谨防上当受骗。如需改约请拨打客服热线或在公众号内办理。退订回T"),
)


def kx_time(ts: float) -> str:
    """Epoch seconds -> ``yyyyMMddHHmmss`` in China time (UTC+8)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y%m%d%H%M%S")


def kx_sign(userid: str, ts: str, apikey: str) -> str:
    """KX signature: lower-case 32-char md5(userid + ts + apikey) (001 §4.2)."""
    return hashlib.md5(f"{userid}{ts}{apikey}".encode()).hexdigest()


def kx_send(
    phones: Sequence[str],
    *,
    contents: str | Sequence[str],
    taskid: str,
    ts_ms: int,
    sent_at: SentAt,
    userid: str = KX_USERID,
    apikey: str = KX_APIKEY,
    extnum: str | None = None,
    p2p: bool = False,
    results: Sequence[tuple[str, str]] | None = None,
) -> Json:
    """Body for ``POST /v1/sends/kx``.

    ``kx_send(phones, *, contents, taskid, ts_ms, sent_at, userid=KX_USERID, apikey=KX_APIKEY,
    extnum=None, p2p=False, results=None) -> dict``

    ``p2p=False``: MT params (userid, ts, sign, mobile comma-separated, msgcontent, extnum?) and
    the MT response ``{"code":"0","msg":"成功","data":{"taskid":...}}``; ``contents`` is one text.
    ``p2p=True``: P2PBatch body with ``list:[{mobile, msgcontent}]`` (``contents`` is one text or
    one per phone) and ``data.result`` per mobile; ``results[i] = (code, msg)`` (default
    ``("0", "提交成功")``). When every number fails, the top-level code is the first failure's and
    ``taskid`` is ``""`` (001 §10.3).
    """
    ts = str(ts_ms)
    base: Json = {"userid": userid, "ts": ts, "sign": kx_sign(userid, ts, apikey)}
    if not p2p:
        if results is not None and any(code != KX_SUBMIT_OK[0] for code, _ in results):
            raise ValueError("MT has no per-number results; use p2p=True for per-number failures")
        if not isinstance(contents, str):
            raise ValueError("MT sends one msgcontent to all numbers")
        request = {**base, "mobile": ",".join(phones), "msgcontent": contents}
        if extnum is not None:
            request["extnum"] = extnum
        response = {"code": KX_OK[0], "msg": KX_OK[1], "data": {"taskid": taskid}}
        return send_envelope(request, response, sent_at)
    texts = [contents] * len(phones) if isinstance(contents, str) else list(contents)
    codes = list(results) if results is not None else [KX_SUBMIT_OK] * len(phones)
    request = dict(base)
    if extnum is not None:
        request["extnum"] = extnum
    request["list"] = [{"mobile": p, "msgcontent": t} for p, t in zip(phones, texts, strict=True)]
    result = [{"mobile": p, "code": c, "msg": m} for p, (c, m) in zip(phones, codes, strict=True)]
    failures = [(c, m) for c, m in codes if c != KX_SUBMIT_OK[0]]
    top = failures[0] if len(failures) == len(codes) else KX_OK
    response = {"code": top[0], "msg": top[1],
                "data": {"taskid": "" if top != KX_OK else taskid, "result": result}}
    return send_envelope(request, response, sent_at)


def kx_report(phone: str, taskid: str, *, report_time: float, code: str, msg: str) -> Json:
    """One Report-push record (001 §5.2); the POST body is a JSON array.

    ``kx_report(phone, taskid, *, report_time, code, msg) -> dict``; ``time`` is yyyyMMddHHmmss
    China time.
    """
    return {"time": kx_time(report_time), "taskid": taskid, "code": code, "msg": msg, "mobile": phone}


def kx_mo(phone: str, *, mo_id: str, time_s: float, content: str, srcid: str) -> Json:
    """One MO-push record (001 §6.2); the POST body is a JSON array.

    ``kx_mo(phone, *, mo_id, time_s, content, srcid) -> dict``.
    """
    return {"id": mo_id, "time": kx_time(time_s), "msgcontent": content, "srcid": srcid, "mobile": phone}
