"""The aiohttp receiver: provider pushes and our normalized send API in, Kafka records out.

Every endpoint answers in the shape its provider documents. A body that cannot be parsed gets a
400 in that shape and its raw bytes go to the dead-letter topic; in a batch, valid records are
published and invalid ones dead-lettered with their reasons. Nothing is acknowledged before the
broker has it: if the broker is unreachable the answer is 503, so the provider retries.

Limits (each answered in the endpoint's error shape, each refused body or record dead-lettered with
its reason): the body size (`SMS_MAX_BODY_BYTES`, 413, the dead letter holds the first
`OVERSIZE_SAMPLE_BYTES` only), the records per push (`SMS_MAX_RECORDS_PER_PUSH`, 400), the
timestamp window (`SMS_TIMESTAMP_PAST` / `SMS_TIMESTAMP_FUTURE`, the record is rejected). Refusals
before the body is read, the allowlist (403) and the token (401), are never stored.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sms_analytics.model.providers import PROVIDERS
from sms_analytics.model.times import now_ms
from sms_analytics.settings import Settings, get_settings
from sms_analytics.sources.base.fields import INTERNAL_ERROR, BadBody, Identities, Parsed, TimeWindow, loads, reason_of
from sms_analytics.sources.base.provider import Answers, CallbackKind, Provider, Reply, json_reply, too_many_records
from sms_analytics.sources.normalized import parse_conversions, parse_sends
from sms_analytics.sources.producer import BrokerUnavailable, Publishes
from sms_analytics.sources.providers import NAMES, REGISTERED

log = structlog.get_logger(__name__)
Readiness = Callable[[], dict[str, bool]]
ParseFn = Callable[[bytes, int], Parsed]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

OVERSIZE_SAMPLE_BYTES = 64 * 1024  # what the dead letter keeps of a body over the size cap
READ_CHUNK = 64 * 1024
LANES = (*PROVIDERS, "sends")  # allowlists: one per provider's callbacks, one for /v1/*
INGEST_PREFIXES = ("/v1/", "/callbacks/")
_DIGITS = re.compile(r"\d{7,}")


def parse_networks(value: str | Iterable[str] | None, what: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs (`10.0.0.0/8, 2001:db8::/32, 192.0.2.7`); empty: none."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{what}: {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class Guards:
    """The receiver's checks besides body size and record count (which come with the constructor).

    - `window`: the timestamp sanity window (None: only the absolute 2000-01-01 .. now+1d check).
    - `allow`: per lane (aliyun, tencent, kx: their callbacks; sends: every /v1/* endpoint), the
      networks allowed to post; a lane without networks allows every address.
    - `trusted_proxies`: X-Forwarded-For is believed only when the peer is one of these (default
      none: the client is `request.remote`, the TCP peer).
    """

    window: TimeWindow | None = None
    allow: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, s: Settings) -> Guards:
        return cls(
            window=TimeWindow(past_ms=int(s.sms_timestamp_past.total_seconds() * 1000),
                              future_ms=int(s.sms_timestamp_future.total_seconds() * 1000)),
            allow={lane: parse_networks(getattr(s, f"sms_allow_ips_{lane}"), f"SMS_ALLOW_IPS_{lane.upper()}")
                   for lane in LANES},
            trusted_proxies=parse_networks(s.sms_trusted_proxies, "SMS_TRUSTED_PROXIES"),
        )


class _ApiAnswers:
    """Our own `/v1/*` error shape (provider endpoints answer in their provider's shape)."""

    def ok(self) -> Reply:
        return json_reply({"accepted": 0, "rejected": []})

    def error(self, reason: str) -> Reply:
        return json_reply({"error": reason, "accepted": 0, "rejected": []})


class Receiver:
    def __init__(self, publisher: Publishes, ids: Identities, *, token: str | None, max_body: int,
                 max_records: int, readiness: Readiness, guards: Guards | None = None,
                 metrics: Callable[[], bytes] | None = None, health: Callable[[], Any] | None = None) -> None:
        """`guards` unset: read from the process settings (`get_settings()`, the environment).
        `metrics`: the exposition `/metrics` serves (default: prometheus_client's default registry);
        `health`: a verdict (observability/health.py) `/healthz` answers with instead of `readiness`."""
        self.exposition = metrics
        self.health = health
        self.publisher = publisher
        self.ids = ids
        self.token = token
        self.max_body = max_body
        self.max_records = max_records
        self.readiness = readiness
        self.guards = guards if guards is not None else Guards.from_settings(get_settings())
        limits: dict[str, Any] = {"max_records": max_records, "window": self.guards.window}
        self.providers: dict[str, Provider] = {p.name: p(ids, **limits) for p in REGISTERED}
        self.api = _ApiAnswers()

    def app(self) -> web.Application:
        # Bodies are read by `_read` (which enforces max_body itself); aiohttp's own cap is a backstop.
        # Bodies are taken as sent: no provider compresses its pushes, and decoding a Content-Encoding
        # would let ~5 KB of gzip expand to the whole cap (or fail outside our error shapes).
        app = web.Application(client_max_size=self.max_body + 1, middlewares=[self._guard],
                              handler_args={"auto_decompress": False})
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/v1/sends", self._v1(lambda body, now: parse_sends(self._records(body), self.ids, now)))
        app.router.add_post("/v1/conversions",
                             self._v1(lambda body, now: parse_conversions(self._records(body), self.ids, now)))
        for name, provider in self.providers.items():
            app.router.add_post(f"/v1/sends/{name}", self._v1(provider.send_envelope))
        for path, (name, kind) in CALLBACKS.items():
            provider = self.providers[name]
            app.router.add_post(path, self._callback(provider, self._records_then(getattr(provider, kind))))
        if not self.token:
            log.warning("receiver.no_token", hint="SMS_CALLBACK_TOKEN is unset: the ingest endpoints take anyone's pushes")
        return app

    # --- cross-cutting ----------------------------------------------------------------------------
    def _provider_for(self, path: str) -> Answers:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "callbacks" and parts[1] in self.providers:
            return self.providers[parts[1]]
        return self.api

    @staticmethod
    def _lane(path: str) -> str:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "callbacks" and parts[1] in LANES:
            return parts[1]
        return "sends"

    def client_address(self, request: web.Request) -> Address | None:
        """The TCP peer, or, when the peer is a trusted proxy, the nearest untrusted address of
        X-Forwarded-For (read right to left, skipping trusted proxies)."""
        address = _address(request.remote)
        trusted = self.guards.trusted_proxies
        if not trusted or not _within(address, trusted):
            return address
        hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
        for hop in reversed([h for h in hops if h]):
            address = _address(hop)
            if not _within(address, trusted):
                return address
        return address

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Allowlist (403), then token (401): refused before the body is read, never stored."""
        if request.path.startswith(INGEST_PREFIXES):
            lane = self._lane(request.path)
            allowed = self.guards.allow.get(lane, ())
            if allowed:
                address = self.client_address(request)
                if not _within(address, allowed):
                    log.warning("ingest.forbidden", path=request.path, lane=lane, client=str(address))
                    reason = f"client address {address} is not allowed to post here"
                    return _respond(self._provider_for(request.path).error(reason), 403)
            if self.token:
                given = request.query.get("token", "")
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    return _respond(self._provider_for(request.path).error("invalid or missing token"), 401)
        return await handler(request)

    def _records(self, body: bytes) -> Any:
        doc = loads(body)
        if isinstance(doc, list) and len(doc) > self.max_records:
            raise BadBody(too_many_records(len(doc), self.max_records))
        return doc

    def _records_then(self, parse: Callable[[Any, int], Parsed]) -> ParseFn:
        """A callback's parse: the body's records (at most max_records) handed to the provider's parser."""
        return lambda body, now: parse(self._records(body), now)

    async def _read(self, request: web.Request, provider: Answers) -> bytes | web.Response:
        """The body as sent, at most max_body bytes. A larger one is answered 413 and the first
        OVERSIZE_SAMPLE_BYTES of it are dead-lettered."""
        declared = request.content_length
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                limit = OVERSIZE_SAMPLE_BYTES if declared is not None and declared > self.max_body else READ_CHUNK
                chunk = await request.content.read(limit)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body or (declared is not None and declared > self.max_body
                                            and size >= OVERSIZE_SAMPLE_BYTES):
                    return await self._too_large(request, provider, b"".join(chunks), max(size, declared or 0))
        except HttpProcessingError as exc:  # broken chunked encoding: the body cannot be read
            reason = reason_of(f"body could not be read: {exc.message or type(exc).__name__}")
            return await self._refuse(request, provider, b"".join(chunks), reason, 400)
        return b"".join(chunks)

    async def _too_large(self, request: web.Request, provider: Answers, head: bytes, seen: int) -> web.Response:
        sample = head[:OVERSIZE_SAMPLE_BYTES]
        reason = (f"body larger than {self.max_body} bytes (SMS_MAX_BODY_BYTES): at least {seen} bytes; "
                  f"the dead letter holds its first {len(sample)} bytes")
        return await self._refuse(request, provider, sample, reason, 413)

    async def _refuse(self, request: web.Request, provider: Answers, raw: bytes, reason: str, status: int) -> web.Response:
        """Dead-letter a whole body with its reason and answer `status` (503 if the broker is down)."""
        log.info("ingest.bad_body", path=request.path, status=status, reason=_scrub(reason[:200]), size=len(raw))
        try:
            await self.publisher.dead_letter(raw, reason, request.path)
        except BrokerUnavailable:
            return _respond(provider.error("broker unavailable, retry later"), 503)
        return _respond(provider.error(reason), status)

    async def _ingest(self, request: web.Request, provider: Answers, parse: ParseFn) -> Parsed | web.Response:
        body = await self._read(request, provider)
        if isinstance(body, web.Response):
            return body
        now = now_ms()
        try:
            parsed = parse(body, now)
        except BadBody as exc:
            return await self._refuse(request, provider, body, reason_of(exc), 400)
        except Exception as exc:  # noqa: BLE001 - a parser bug: never a 500, the body is kept
            log.error("ingest.internal_error", path=request.path, error=type(exc).__name__, size=len(body))
            return await self._refuse(request, provider, body, f"{INTERNAL_ERROR} ({type(exc).__name__})", 400)
        if self.guards.window is not None:
            parsed = self.guards.window.apply(parsed, now)
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
                body=msgspec.json.encode({
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

    async def metrics(self, request: web.Request) -> web.Response:
        if self.exposition is None:
            return await metrics(request)
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        if self.health is not None:
            verdict = self.health()
            return web.Response(status=200 if verdict.ok else 503, content_type="application/json",
                                body=msgspec.json.encode(verdict.body()))
        components = {"broker": self.publisher.ready, **self.readiness()}
        ok = all(components.values())
        return web.Response(status=200 if ok else 503, content_type="application/json",
                            body=msgspec.json.encode({"status": "ok" if ok else "starting", "components": components}))


# Each provider's push endpoints, as it declares them (`Provider.callbacks`): path -> (provider, parse method).
CALLBACKS: dict[str, tuple[str, CallbackKind]] = {
    f"/callbacks/{p.name}/{path}": (p.name, kind) for p in REGISTERED for path, kind in p.callbacks.items()
}
INGEST_ENDPOINTS: tuple[str, ...] = ("/v1/sends", "/v1/conversions", *(f"/v1/sends/{name}" for name in NAMES), *CALLBACKS)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process (feeds' polls, records, last success)."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _scrub(text: str) -> str:
    """For logs: a reason may quote input, and input may hold a phone number in the wrong field."""
    return _DIGITS.sub("<digits>", text)


def _respond(reply: Reply, status: int) -> web.Response:
    content_type = reply.content_type.partition(";")[0]
    return web.Response(status=status, body=reply.body, content_type=content_type, charset="utf-8")
