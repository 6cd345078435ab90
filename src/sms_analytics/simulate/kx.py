"""A faithful local KX aggregator (seed 001) on aiohttp.

Endpoints (paths as in the document):

* ``/api/sms/send``      MT (§4), POST form or GET query
* ``/api/sms/p2psend``   P2PBatch (§10), POST JSON, one result per number
* ``/api/sms/balance``   Balance (§7), GET or POST
* ``/api/v2/sms/query``  MTQuery (§8), GET, at most 200 reports a call, each returned once
* ``/api/v2/sms/moquery`` MOQuery (§9), GET, at most 200 uplinks a call, each returned once

Every request is signed: ``sign = md5(userid + ts + apikey)`` in lower-case hex, ``ts`` epoch
milliseconds valid for 5 minutes. Errors use the §12.1 table; where the document contradicts
itself the table wins (the §4.3 sample answers a bad sign with ``11 签名信息鉴权失败``, but §12.1,
and the §10.3 sample, say ``6 sign 校验失败``; ``11`` is ``短信内容过长``).

Check order: missing parameter (2) -> unknown user (4) -> ts outside ±5 min (14) -> sign (6) ->
request fields (15, 2, 11, 10, 9, 8, 16) -> balance (3). A malformed number is ``2 参数校验失败``:
in MT (one taskid, no per-number result) it refuses the whole request, in P2PBatch only that
number. §12.1 codes 5 (HTTP not enabled), 7 (IP binding) and 17 (send window) have no trigger here.

Every accepted number gets a status report (§12.2 codes) queued ``report_delay`` seconds later
(drawn from the seeded rng; ``report_delay=None`` turns that off). ``queue_report``,
``queue_mo`` and ``report_for_all`` make reports explicit for tests. Push mode (§5/§6):
``push_to`` + ``flush_pushes`` POST the due records as JSON arrays and keep them queued until the
receiver answers exactly ``SUCCESS``; push and query are mutually exclusive (§2), so while a push
URL is set the matching query answers "no data".

Phone numbers and the apikey are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from sms_analytics.model.providers import segments

logger = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8))
TS_WINDOW_MS = 5 * 60 * 1000  # §4.2 "5 分钟内有效"
MAX_MOBILES = 1000  # §4.2 "一次性最多 1000 个号码", §10.1 "一次性提交最大支持 1000"
MAX_CONTENT_CHARS = 1000  # §3.5 / §4.2 "长短信最大支持 1000 字"
MAX_PER_QUERY = 200  # §8.3 / §9.3 "每次查询最多返回 200 条"
MAX_SCHEDULE_DAYS = 15  # §12.1 code 16 "定时发送任务限制 15 天内"
DEFAULT_SRCID = "1069018889001"  # §6.2 sample

Code = tuple[str, str]

# §12.1 提交短信过程中-接口返回常见错误代码
OK: Code = ("0", "成功")
SUBMITTED: Code = ("0", "提交成功")  # per-number success message, §10.3 sample
PARAM_EMPTY: Code = ("2", "参数校验失败, 参数不能为空")
PARAM_INVALID: Code = ("2", "参数校验失败")
NO_BALANCE: Code = ("3", "余额不足")
NO_USER: Code = ("4", "用户不存在")
BAD_SIGN: Code = ("6", "sign 校验失败")
BAD_TIME: Code = ("8", "time 时间格式错误")
BAD_EXTNUM: Code = ("9", "扩展号格式错误")
SENSITIVE_CODE = "10"  # "发送内容包含敏感词[**]"
TOO_LONG: Code = ("11", "短信内容过长")
BAD_TS: Code = ("14", "ts 校验有误, 要求 5 分钟内有效")
TOO_MANY: Code = ("15", "号码个数超过限制")
TOO_FAR: Code = ("16", "超出可定时发送时间")

# §12.2 成功提交短信后-状态回执报告错误代码 (descriptions as in the table; DELIVRD as in the §5 sample)
RECEIPT_MESSAGES: dict[str, str] = {
    "DELIVRD": "成功",
    "EXPIRED": "短信接收失败",
    "UNDELIV": "短信接收失败",
    "REJECTD": "客户接收失败",
    "F1110": "号段错误,号段不存在",
    "F1122": "营销黑名单",
    "F11300": "系统频控超过日限额",
    "F123": "短信内容错误, 包含敏感词",
}
# Outcomes of the automatic reports: (code, weight).
AUTO_OUTCOMES: tuple[tuple[str, float], ...] = (
    ("DELIVRD", 0.90), ("UNDELIV", 0.04), ("EXPIRED", 0.02), ("REJECTD", 0.02),
    ("F1122", 0.01), ("F11300", 0.01),
)

_MOBILE = re.compile(r"^1\d{10}$")
_EXTNUM = re.compile(r"^\d{0,6}$")
_TIME = re.compile(r"^\d{14}$")


def kx_time(ts: float) -> str:
    """Epoch seconds -> ``yyyyMMddHHmmss`` in China time (UTC+8)."""
    return datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y%m%d%H%M%S")


def _expected_sign(userid: str, ts: str, apikey: str) -> str:
    # Computed here on purpose, not imported from the client: the tests check one against the other.
    return hashlib.md5(f"{userid}{ts}{apikey}".encode()).hexdigest()


def _segments(text: str) -> int:
    """§3.5: up to 70 characters is 1; longer, every 67 characters is 1."""
    return segments(text)


@dataclass
class _Pending:
    at: float
    seq: int
    body: dict[str, Any]
    index: int | None = None  # index into ``sent`` for reports of a send
    auto: bool = False


class KxSimulator:
    """An in-memory KX platform for one account (``userid``/``apikey``)."""

    SENSITIVE_WORDS: tuple[str, ...] = ("枪支",)  # §4.3 sample

    def __init__(
        self,
        *,
        userid: str,
        apikey: str,
        rng_seed: int = 1,
        clock: Callable[[], float] = time.time,
        balance: int = 100_000,
        report_delay: tuple[float, float] | None = (1.0, 8.0),
    ) -> None:
        self.userid = userid
        self._apikey = apikey
        self.rng = random.Random(rng_seed)
        self.clock = clock
        self.balance = balance
        self.report_delay = report_delay
        self.sent: list[tuple[str, str, str]] = []
        self.messageids: dict[str, str] = {}  # taskid -> messageid (only when one was given)
        self.report_url: str | None = None
        self.mo_url: str | None = None
        self._reports: list[_Pending] = []
        self._mos: list[_Pending] = []
        self._auto: dict[int, _Pending] = {}
        self._explicit: set[int] = set()
        self._done: set[int] = set()
        self._seq = itertools.count(1)
        self._push_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"KxSimulator(userid={self.userid!r}, sent={len(self.sent)}, balance={self.balance})"

    # --- the application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        # A GET MT with 1000 numbers has a ~12 KB request line (§4.1 allows GET): raise aiohttp's 8 KB limit.
        app = web.Application(handler_args={"max_line_size": 64 * 1024, "max_field_size": 64 * 1024})
        app.router.add_route("GET", "/api/sms/send", self._mt)
        app.router.add_route("POST", "/api/sms/send", self._mt)
        app.router.add_route("POST", "/api/sms/p2psend", self._p2p)
        app.router.add_route("GET", "/api/sms/balance", self._balance)
        app.router.add_route("POST", "/api/sms/balance", self._balance)
        app.router.add_route("GET", "/api/v2/sms/query", self._mt_query)
        app.router.add_route("GET", "/api/v2/sms/moquery", self._mo_query)
        return app

    # --- test and traffic helpers ---------------------------------------------------------------

    @property
    def pending_reports(self) -> int:
        return len(self._reports)

    @property
    def pending_mos(self) -> int:
        return len(self._mos)

    def queue_report(self, taskid: str, mobile: str, code: str = "DELIVRD", msg: str = "成功",
                     at: float | None = None) -> dict[str, Any]:
        """Queue one status report (§5/§8 record). It replaces the automatic report of that number."""
        index = next((i for i, (t, m, _) in enumerate(self.sent)
                      if t == taskid and m == mobile and i not in self._done and i not in self._explicit), None)
        return self._queue_report(taskid, mobile, code, msg, self.clock() if at is None else at, index)

    def report_for_all(self, code: str = "DELIVRD") -> int:
        """Queue a report, due now, for every sent number that has not been reported yet.
        Automatic reports still waiting are replaced. Returns how many were queued."""
        now, count = self.clock(), 0
        for index, (taskid, mobile, _) in enumerate(self.sent):
            if index in self._done or index in self._explicit:
                continue
            self._queue_report(taskid, mobile, code, RECEIPT_MESSAGES.get(code, code), now, index)
            count += 1
        return count

    def queue_mo(self, mobile: str, content: str, srcid: str = DEFAULT_SRCID,
                 at: float | None = None) -> dict[str, Any]:
        """Queue one uplink message (§6/§9 record)."""
        when = self.clock() if at is None else at
        body = {"id": f"{self.rng.getrandbits(128):032x}", "time": kx_time(when),
                "msgcontent": content, "srcid": srcid, "mobile": mobile}
        self._mos.append(_Pending(when, next(self._seq), body))
        return body

    def push_to(self, report_url: str | None, mo_url: str | None) -> None:
        """Push mode (§5/§6). ``None`` switches that kind back to query mode."""
        self.report_url, self.mo_url = report_url, mo_url

    async def flush_pushes(self, session: aiohttp.ClientSession) -> dict[str, int]:
        """POST every due report / MO to the push URLs as JSON arrays (≤200 a request). A record
        leaves the queue only when the receiver answers 2xx with the body exactly ``SUCCESS``.
        Returns how many of each were acknowledged."""
        if self._push_lock is None:
            self._push_lock = asyncio.Lock()
        async with self._push_lock:
            reports = await self._flush(session, self.report_url, self._reports, report=True)
            mos = await self._flush(session, self.mo_url, self._mos, report=False)
        return {"reports": reports, "mo": mos}

    # --- internals: queues ----------------------------------------------------------------------

    def _queue_report(self, taskid: str, mobile: str, code: str, msg: str, at: float,
                      index: int | None) -> dict[str, Any]:
        if index is not None:
            auto = self._auto.pop(index, None)
            if auto is not None:
                self._reports.remove(auto)
            self._explicit.add(index)
        body = self._report_body(taskid, mobile, code, msg, at)
        self._reports.append(_Pending(at, next(self._seq), body, index))
        return body

    def _report_body(self, taskid: str, mobile: str, code: str, msg: str, at: float) -> dict[str, Any]:
        body: dict[str, Any] = {"time": kx_time(at), "taskid": taskid}
        if taskid in self.messageids:  # §5.2: only when the send carried one
            body["messageid"] = self.messageids[taskid]
        body.update(code=code, msg=msg, mobile=mobile)
        return body

    def _due(self, queue: list[_Pending], limit: int) -> list[_Pending]:
        now = self.clock()
        return sorted((p for p in queue if p.at <= now), key=lambda p: (p.at, p.seq))[:limit]

    def _take(self, queue: list[_Pending], items: list[_Pending]) -> None:
        gone = {id(p) for p in items}
        queue[:] = [p for p in queue if id(p) not in gone]
        for p in items:
            if p.index is not None:
                self._done.add(p.index)
                self._explicit.discard(p.index)
                self._auto.pop(p.index, None)

    async def _flush(self, session: aiohttp.ClientSession, url: str | None, queue: list[_Pending],
                     *, report: bool) -> int:
        if not url:
            return 0
        delivered = 0
        while batch := self._due(queue, MAX_PER_QUERY):
            payload = msgspec.json.encode([p.body for p in batch])
            try:
                async with session.post(url, data=payload, headers={
                        "Content-Type": "application/json; charset=UTF-8"}) as resp:
                    answer = await resp.text()
                    ok = 200 <= resp.status < 300 and answer == "SUCCESS"
            except (TimeoutError, aiohttp.ClientError) as exc:
                logger.info("kx sim push failed: %s", type(exc).__name__)
                ok = False
            if not ok:
                logger.info("kx sim push not acknowledged (%s, %d records kept)",
                            "report" if report else "mo", len(batch))
                break
            self._take(queue, batch)
            delivered += len(batch)
        return delivered

    # --- internals: requests --------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _auth(self, params: Mapping[str, Any]) -> Code | None:
        userid = str(params.get("userid") or "").strip()
        ts = str(params.get("ts") or "").strip()
        sign = str(params.get("sign") or "").strip()
        if not userid or not ts or not sign:
            return PARAM_EMPTY
        if userid != self.userid:
            return NO_USER
        if not ts.isdigit() or abs(self._now_ms() - int(ts)) > TS_WINDOW_MS:
            return BAD_TS
        if sign != _expected_sign(userid, ts, self._apikey):  # lower-case only (§4.2)
            return BAD_SIGN
        return None

    def _content_error(self, content: str) -> Code | None:
        if len(content) > MAX_CONTENT_CHARS:
            return TOO_LONG
        for word in self.SENSITIVE_WORDS:
            if word in content:
                return (SENSITIVE_CODE, f"发送内容包含敏感词[{word}]")
        return None

    def _options(self, params: Mapping[str, Any]) -> tuple[Code | None, float, str]:
        """extnum, time and messageid (§4.2 / §10.2) -> (error, send instant, messageid)."""
        extnum = str(params.get("extnum") or "").strip()
        if not _EXTNUM.match(extnum):
            return BAD_EXTNUM, 0.0, ""
        now = self.clock()
        when = now
        send_time = str(params.get("time") or "").strip()
        if send_time:
            if not _TIME.match(send_time):
                return BAD_TIME, 0.0, ""
            try:
                when = datetime.strptime(send_time, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ).timestamp()
            except ValueError:
                return BAD_TIME, 0.0, ""
            if when - now > MAX_SCHEDULE_DAYS * 86400:
                return TOO_FAR, 0.0, ""
            when = max(when, now)
        messageid = str(params.get("messageid") or "").strip()
        if len(messageid) > 32 or "\\" in messageid:
            return PARAM_INVALID, 0.0, ""
        return None, when, messageid

    def _taskid(self) -> str:
        return f"{kx_time(self.clock())[4:]}{self.rng.randrange(10**5, 10**6)}{next(self._seq) % 10**6:06d}"

    def _accept(self, taskid: str, mobile: str, content: str, when: float) -> None:
        index = len(self.sent)
        self.sent.append((taskid, mobile, content))
        self.balance -= _segments(content)
        if self.report_delay is None:
            return
        low, high = self.report_delay
        at = when + self.rng.uniform(low, high)
        codes, weights = zip(*AUTO_OUTCOMES, strict=True)
        code = self.rng.choices(codes, weights)[0]
        pending = _Pending(at, next(self._seq),
                           self._report_body(taskid, mobile, code, RECEIPT_MESSAGES[code], at), index, True)
        self._reports.append(pending)
        self._auto[index] = pending

    @staticmethod
    def _reply(code: Code, data: Any = None) -> web.Response:
        doc: dict[str, Any] = {"code": code[0], "msg": code[1]}
        if data is not None:
            doc["data"] = data
        return web.Response(body=msgspec.json.encode(doc), content_type="application/json", charset="utf-8")

    @staticmethod
    async def _form(request: web.Request) -> dict[str, str]:
        params = dict(request.query.items())
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    doc = msgspec.json.decode(await request.read())
                except msgspec.DecodeError:
                    doc = None
                if isinstance(doc, dict):
                    params.update({str(k).strip(): str(v) for k, v in doc.items() if v is not None})
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params

    async def _mt(self, request: web.Request) -> web.Response:
        params = await self._form(request)
        if err := self._auth(params):
            return self._reply(err)
        content = params.get("msgcontent") or ""
        mobiles = [m.strip() for m in (params.get("mobile") or "").split(",") if m.strip()]
        if not mobiles or not content:
            return self._reply(PARAM_EMPTY)
        if len(mobiles) > MAX_MOBILES:
            return self._reply(TOO_MANY)
        if any(not _MOBILE.match(m) for m in mobiles):
            return self._reply(PARAM_INVALID)
        if err := self._content_error(content):
            return self._reply(err)
        err, when, messageid = self._options(params)
        if err:
            return self._reply(err)
        if _segments(content) * len(mobiles) > self.balance:
            return self._reply(NO_BALANCE)
        taskid = self._taskid()
        if messageid:
            self.messageids[taskid] = messageid
        for mobile in mobiles:
            self._accept(taskid, mobile, content, when)
        logger.debug("kx sim MT accepted: %d numbers", len(mobiles))
        return self._reply(OK, {"taskid": taskid})

    async def _p2p(self, request: web.Request) -> web.Response:
        try:
            doc = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            doc = None
        if not isinstance(doc, dict):
            return self._reply(PARAM_INVALID)
        doc = {str(k).strip(): v for k, v in doc.items()}  # the §10.2 sample has "mobile " keys
        raw_items = doc.get("list")
        items: list[tuple[str, str]] = []
        if isinstance(raw_items, list):
            for raw in raw_items:
                entry = {str(k).strip(): v for k, v in raw.items()} if isinstance(raw, dict) else {}
                items.append((str(entry.get("mobile") or "").strip(), str(entry.get("msgcontent") or "")))

        def failed(code: Code) -> web.Response:
            result = [{"mobile": m, "code": code[0], "msg": code[1]} for m, _ in items]
            return self._reply(code, {"taskid": "", "result": result})

        if err := self._auth(doc):
            return failed(err)
        if not items:
            return failed(PARAM_EMPTY)
        if len(items) > MAX_MOBILES:
            return failed(TOO_MANY)
        err, when, messageid = self._options(doc)
        if err:
            return failed(err)
        taskid = self._taskid()
        budget = self.balance
        results: list[dict[str, str]] = []
        accepted: list[tuple[str, str]] = []
        for mobile, content in items:
            code: Code | None
            if not mobile or not content:
                code = PARAM_EMPTY
            elif not _MOBILE.match(mobile):
                code = PARAM_INVALID
            elif (code := self._content_error(content)) is None:
                if _segments(content) > budget:
                    code = NO_BALANCE
                else:
                    budget -= _segments(content)
            code = code or SUBMITTED
            if code[0] == "0":
                accepted.append((mobile, content))
            results.append({"mobile": mobile, "code": code[0], "msg": code[1]})
        if not accepted:
            first = next(r for r in results if r["code"] != "0")
            return self._reply((first["code"], first["msg"]), {"taskid": "", "result": results})
        if messageid:
            self.messageids[taskid] = messageid
        for mobile, content in accepted:
            self._accept(taskid, mobile, content, when)
        logger.debug("kx sim P2P: %d accepted, %d refused", len(accepted), len(items) - len(accepted))
        return self._reply(OK, {"taskid": taskid, "result": results})

    async def _balance(self, request: web.Request) -> web.Response:
        params = await self._form(request)
        if err := self._auth(params):
            return self._reply(err)
        return self._reply(OK, {"balance": str(self.balance)})

    async def _query(self, request: web.Request, queue: list[_Pending], push_url: str | None) -> web.Response:
        if err := self._auth(request.query):
            return self._reply(err)
        if push_url:  # §2: push and query are mutually exclusive
            return self._reply(OK)
        batch = self._due(queue, MAX_PER_QUERY)
        if not batch:
            return self._reply(OK)
        self._take(queue, batch)
        return self._reply(OK, [p.body for p in batch])

    async def _mt_query(self, request: web.Request) -> web.Response:
        return await self._query(request, self._reports, self.report_url)

    async def _mo_query(self, request: web.Request) -> web.Response:
        return await self._query(request, self._mos, self.mo_url)
