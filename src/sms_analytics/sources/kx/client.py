"""Async client for the KX aggregator API (seed 001). KX ships no SDK: every call carries
``userid``, ``ts`` (epoch ms, valid 5 minutes) and ``sign = md5(userid + ts + apikey)``.

* ``send``      MT (§4), POST form to ``/api/sms/send``
* ``p2p_send``  P2PBatch (§10), POST JSON to ``/api/sms/p2psend``
* ``balance``   Balance (§7), ``/api/sms/balance``
* ``mt_query``  MTQuery (§8), GET ``/api/v2/sms/query`` (≤200 reports a call, each once)
* ``mo_query``  MOQuery (§9), GET ``/api/v2/sms/moquery``

A reply whose ``code`` is not ``"0"`` raises :class:`KxError` (codes of §12.1). Phone numbers,
message contents, the apikey and the sign are never logged.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import msgspec
import structlog

log = structlog.get_logger(__name__)

SEND_PATH = "/api/sms/send"
P2P_PATH = "/api/sms/p2psend"
BALANCE_PATH = "/api/sms/balance"
MT_QUERY_PATH = "/api/v2/sms/query"
MO_QUERY_PATH = "/api/v2/sms/moquery"


def kx_sign(userid: str, ts_ms: int | str, apikey: str) -> str:
    """``md5(userid + ts + apikey)`` as 32 lower-case hex characters (§4.2)."""
    return hashlib.md5(f"{userid}{ts_ms}{apikey}".encode()).hexdigest()


class KxError(Exception):
    """A KX reply with ``code != "0"`` (or an unusable reply: code ``http-<status>`` / ``bad-reply``).
    ``response`` is the parsed reply when there is one (P2PBatch keeps its per-number results)."""

    def __init__(self, code: str, msg: str, *, response: dict[str, Any] | None = None) -> None:
        super().__init__(f"KX error {code}: {msg}")
        self.code = code
        self.msg = msg
        self.response = response


def _code(doc: dict[str, Any]) -> str:
    return str(doc.get("code", "")).strip()  # the §4.3 samples write " 0"


class KxClient:
    def __init__(
        self,
        base_url: str,
        userid: str,
        apikey: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.userid = userid
        self._apikey = apikey
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock

    def __repr__(self) -> str:
        return f"KxClient(base_url={self.base_url!r}, userid={self.userid!r})"

    async def __aenter__(self) -> KxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._own_session:
            self._session = None

    # --- API ------------------------------------------------------------------------------------

    async def send(self, mobiles: Sequence[str], content: str, *, extnum: str | None = None,
                   messageid: str | None = None) -> dict[str, Any]:
        """MT: one content to up to 1000 numbers. Returns the raw reply (``data.taskid``)."""
        if isinstance(mobiles, str):
            mobiles = [mobiles]
        form = {**self._signed(), "mobile": ",".join(mobiles), "msgcontent": content}
        if extnum is not None:
            form["extnum"] = extnum
        if messageid is not None:
            form["messageid"] = messageid
        doc = await self._call("POST", SEND_PATH, data=form)
        self._check(doc, "send", numbers=len(mobiles))
        return doc

    async def p2p_send(self, items: Sequence[tuple[str, str]], *, extnum: str | None = None,
                       messageid: str | None = None) -> dict[str, Any]:
        """P2PBatch: (mobile, content) pairs. Returns the raw reply; ``data.result`` holds one
        ``{mobile, code, msg}`` per number (code ``"0"`` = accepted). Raises :class:`KxError` when
        the whole batch failed (``err.response`` still has the per-number results)."""
        body: dict[str, Any] = {**self._signed(),
                                "list": [{"mobile": m, "msgcontent": c} for m, c in items]}
        if extnum is not None:
            body["extnum"] = extnum
        if messageid is not None:
            body["messageid"] = messageid
        doc = await self._call("POST", P2P_PATH, body=msgspec.json.encode(body))
        self._check(doc, "p2p_send", numbers=len(items))
        return doc

    async def mt_query(self) -> list[dict[str, Any]]:
        """MTQuery: the pending status reports (≤200; each is returned once). ``[]`` when none."""
        return await self._query(MT_QUERY_PATH, "mt_query")

    async def mo_query(self) -> list[dict[str, Any]]:
        """MOQuery: the pending uplink messages (≤200; each is returned once). ``[]`` when none."""
        return await self._query(MO_QUERY_PATH, "mo_query")

    async def balance(self) -> int:
        """Balance: remaining message segments (条)."""
        doc = await self._call("GET", BALANCE_PATH, params=self._signed())
        self._check(doc, "balance")
        data = doc.get("data")
        try:
            return int(str(data["balance"]).strip())  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            raise KxError("bad-reply", "balance reply has no integer data.balance", response=doc) from None

    # --- internals ------------------------------------------------------------------------------

    def _signed(self) -> dict[str, str]:
        ts = str(int(self._clock() * 1000))
        return {"userid": self.userid, "ts": ts, "sign": kx_sign(self.userid, ts, self._apikey)}

    async def _query(self, path: str, op: str) -> list[dict[str, Any]]:
        doc = await self._call("GET", path, params=self._signed())
        self._check(doc, op)
        data = doc.get("data")
        if data is None:
            return []
        if not isinstance(data, list):
            raise KxError("bad-reply", f"{op} reply data is not an array", response=doc)
        log.debug("kx call", op=op, records=len(data))
        return [r for r in data if isinstance(r, dict)]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise RuntimeError("the ClientSession given to KxClient is closed")
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    data: dict[str, str] | None = None, body: bytes | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json;charset=utf-8"} if body is not None else None
        async with self._http().request(method, self.base_url + path, params=params,
                                        data=body if body is not None else data,
                                        headers=headers, timeout=self._timeout) as resp:
            raw = await resp.read()
            status = resp.status
        if status != 200:
            raise KxError(f"http-{status}", f"HTTP {status} from {path}")
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            raise KxError("bad-reply", f"non-JSON reply from {path}") from None
        if not isinstance(doc, dict):
            raise KxError("bad-reply", f"reply from {path} is not an object")
        return doc

    @staticmethod
    def _check(doc: dict[str, Any], op: str, **fields: Any) -> None:
        code = _code(doc)
        if code != "0":
            msg = str(doc.get("msg", "")).strip()
            log.info("kx call refused", op=op, code=code, kx_msg=msg, **fields)
            raise KxError(code, msg, response=doc)
        log.debug("kx call ok", op=op, **fields)
