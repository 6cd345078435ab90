"""The aiohttp receiver: provider pushes and our normalized send API in, Kafka records out.

Every endpoint answers in the shape its provider documents. A body that cannot be parsed gets a
400 in that shape and its raw bytes go to the dead-letter topic; in a batch, valid records are
published and invalid ones dead-lettered with their reasons. Nothing is acknowledged before the
broker has it: if the broker is unreachable the answer is 503, so the provider retries.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sms_analytics.model.times import now_ms
from sms_analytics.sources.aliyun import Aliyun
from sms_analytics.sources.base import BadBody, Identities, Parsed, loads
from sms_analytics.sources.kx import Kx
from sms_analytics.sources.normalized import parse_sends
from sms_analytics.sources.provider import Answers, Provider, Reply, json_reply
from sms_analytics.sources.publisher import BrokerUnavailable, Publisher
from sms_analytics.sources.tencent import Tencent

log = structlog.get_logger(__name__)
Readiness = Callable[[], dict[str, bool]]
ParseFn = Callable[[bytes, int], Parsed]


class _ApiAnswers:
    """Our own `/v1/*` error shape (provider endpoints answer in their provider's shape)."""

    def ok(self) -> Reply:
        return json_reply({"accepted": 0, "rejected": []})

    def error(self, reason: str) -> Reply:
        return json_reply({"error": reason, "accepted": 0, "rejected": []})


class Receiver:
    def __init__(self, publisher: Publisher, ids: Identities, *, token: str | None, max_body: int,
                 max_records: int, readiness: Readiness) -> None:
        self.publisher = publisher
        self.ids = ids
        self.token = token
        self.max_body = max_body
        self.max_records = max_records
        self.readiness = readiness
        self.providers: dict[str, Provider] = {p.name: p for p in (Aliyun(ids), Tencent(ids), Kx(ids))}
        self.api = _ApiAnswers()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", metrics)
        app.router.add_post("/v1/sends", self._v1(lambda body, now: parse_sends(self._records(body), self.ids, now)))
        for name, provider in self.providers.items():
            app.router.add_post(f"/v1/sends/{name}", self._v1(provider.send_envelope))
        routes = {
            "/callbacks/aliyun/sms-report": ("aliyun", "receipts"),
            "/callbacks/aliyun/sms-up": ("aliyun", "replies"),
            "/callbacks/tencent/status": ("tencent", "receipts"),
            "/callbacks/tencent/reply": ("tencent", "replies"),
            "/callbacks/kx/report": ("kx", "receipts"),
            "/callbacks/kx/mo": ("kx", "replies"),
        }
        for path, (name, kind) in routes.items():
            provider = self.providers[name]
            parse = getattr(provider, kind)
            app.router.add_post(path, self._callback(provider, lambda body, now, parse=parse: parse(self._records(body), now)))
        return app

    # --- cross-cutting ----------------------------------------------------------------------------
    def _provider_for(self, path: str) -> Answers:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "callbacks" and parts[1] in self.providers:
            return self.providers[parts[1]]
        return self.api

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token and request.path.startswith(("/v1/", "/callbacks/")):
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _respond(self._provider_for(request.path).error("invalid or missing token"), 401)
        return await handler(request)

    def _records(self, body: bytes) -> Any:
        doc = loads(body)
        if isinstance(doc, list) and len(doc) > self.max_records:
            raise BadBody(f"too many records in one push: {len(doc)} > {self.max_records}")
        return doc

    async def _read(self, request: web.Request, provider: Answers) -> bytes | web.Response:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _respond(provider.error(f"body larger than {self.max_body} bytes"), 413)

    async def _ingest(self, request: web.Request, provider: Answers, parse: ParseFn) -> Parsed | web.Response:
        body = await self._read(request, provider)
        if isinstance(body, web.Response):
            return body
        try:
            parsed = parse(body, now_ms())
        except BadBody as exc:
            reason = str(exc)
            log.info("ingest.bad_body", path=request.path, reason=reason[:200], size=len(body))
            try:
                await self.publisher.dead_letter(body, reason, request.path)
            except BrokerUnavailable:
                return _respond(provider.error("broker unavailable, retry later"), 503)
            return _respond(provider.error(reason), 400)
        try:
            await self.publisher.publish(parsed.events, parsed.rejected, request.path)
        except BrokerUnavailable:
            return _respond(provider.error("broker unavailable, retry later"), 503)
        if parsed.rejected:
            log.info("ingest.rejected", path=request.path, rejected=len(parsed.rejected), accepted=len(parsed.events))
        return parsed

    # --- handlers ---------------------------------------------------------------------------------
    def _v1(self, parse: ParseFn) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            result = await self._ingest(request, self.api, parse)
            if isinstance(result, web.Response):
                return result
            return web.Response(
                status=202, content_type="application/json",
                body=orjson.dumps({
                    "accepted": len(result.events),
                    "rejected": [{"index": r.index, "reason": r.reason} for r in result.rejected],
                }),
            )
        return handler

    def _callback(self, provider: Provider, parse: ParseFn) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            result = await self._ingest(request, provider, parse)
            return result if isinstance(result, web.Response) else _respond(provider.ok(), 200)
        return handler

    async def healthz(self, request: web.Request) -> web.Response:
        components = {"broker": self.publisher.ready, **self.readiness()}
        ok = all(components.values())
        return web.Response(status=200 if ok else 503, content_type="application/json",
                            body=orjson.dumps({"status": "ok" if ok else "starting", "components": components}))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process (feeds' polls, records, last success)."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _respond(reply: Reply, status: int) -> web.Response:
    content_type, _, charset = reply.content_type.partition(";")
    return web.Response(status=status, body=reply.body, content_type=content_type, charset="utf-8")
