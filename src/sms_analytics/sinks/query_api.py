"""The read-only query endpoint of a running process (loopback by default).

`POST /query?format=json|csv|table[&param_<name>=<value>…]` with the SQL as the body; the params
fill ClickHouse query parameters ({name:Type}). Only read statements, run with
readonly=2; anything else is answered 403. chDB opens a warehouse in one process at a time, so
`sms-analytics sql` goes through this endpoint while `up` runs.

`post_query` is its one client (`sms-analytics sql` and `lookup`, and `report` through
dashboards/report.http_query).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hmac
import io
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from sms_analytics.sinks.warehouse import NotReadOnly, Warehouse

FORMATS = ("json", "csv", "table")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, (dt.date, Decimal, UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def render(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    plain = [[_plain(v) for v in row] for row in rows]
    if fmt == "json":
        return "".join(_json(dict(zip(columns, row, strict=True))) + "\n" for row in plain)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows([[_json(v) if isinstance(v, (list, dict)) else v for v in r] for r in plain])
        return buf.getvalue()
    if fmt == "table":
        cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in r] for r in plain]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines) + "\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def query_app(warehouse: Warehouse, readiness: Callable[[], dict[str, bool]], *,
              metrics: Callable[[], bytes] | None = None, health: Callable[[], Any] | None = None,
              token: str | None = None) -> web.Application:
    """`metrics`: the exposition served on /metrics (none: no such route); `health`: a verdict
    (observability/health.py) /healthz answers with instead of `readiness`; `token`: what POST
    /query requires as `Authorization: Bearer <token>` (SMS_QUERY_TOKEN; compared in constant time)."""
    async def query(request: web.Request) -> web.Response:
        if token is not None and not bearer_authorized(request, token):
            return web.json_response({"error": "invalid or missing token (Authorization: Bearer, SMS_QUERY_TOKEN)"},
                                     status=401)
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            return web.json_response({"error": f"format must be one of {', '.join(FORMATS)}"}, status=400)
        sql = (await request.read()).decode("utf-8", "replace")
        try:
            params = {k.removeprefix("param_"): v for k, v in request.query.items() if k.startswith("param_")}
            columns, rows = await asyncio.to_thread(warehouse.read, sql, params)
        except NotReadOnly as exc:
            return web.json_response({"error": str(exc)}, status=403)
        except Exception as exc:  # noqa: BLE001  (the statement's error goes back to the caller)
            return web.json_response({"error": str(exc).strip()[:2000]}, status=400)
        return web.Response(text=render(columns, rows, fmt), content_type="text/plain" if fmt != "json" else "application/x-ndjson")

    async def healthz(request: web.Request) -> web.Response:
        if health is not None:
            verdict = health()
            return web.json_response(verdict.body(), status=200 if verdict.ok else 503)
        components = readiness()
        ok = all(components.values())
        return web.json_response({"status": "ok" if ok else "starting", "components": components}, status=200 if ok else 503)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/query", query)
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", _metrics(metrics))
    return app


def bearer_authorized(request: web.Request, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (compared in constant time): POST /query
    and the Grafana relay (dashboards/relay.py), both SMS_QUERY_TOKEN."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def query_headers(token: str | None) -> dict[str, str]:
    """The headers a client of POST /query sends (`sql`, `report`)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class QueryRefused(RuntimeError):
    """The query endpoint answered with an error: its HTTP `status` and its own words (`text`)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status, self.text = status, text


def post_query(base_url: str, sql: str, *, fmt: str = "json", params: dict[str, str] | None = None,
               token: str | None = None, timeout: float = 60.0) -> bytes:
    """The body of `POST {base_url}/query?format=…` with `sql` (the one client of this endpoint).
    QueryRefused when the endpoint answers an error; urllib.error.URLError or ConnectionError when
    nothing answers (the callers then open the warehouse directly)."""
    query = urllib.parse.urlencode({"format": fmt, **{f"param_{k}": v for k, v in (params or {}).items()}})
    request = urllib.request.Request(f"{base_url.rstrip('/')}/query?{query}", data=sql.encode(), method="POST",
                                     headers=query_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:  # the endpoint's reason, not only its status
        raise QueryRefused(exc.code, _error_text(exc.read())) from None


def _error_text(body: bytes) -> str:
    try:
        return str(msgspec.json.decode(body)["error"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return body.decode("utf-8", "replace")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _metrics(exposition: Callable[[], bytes]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return handler


def ops_app(health: Callable[[], Any], metrics: Callable[[], bytes]) -> web.Application:
    """/healthz and /metrics alone: for a process with neither the receiver nor a warehouse (a
    worker started with --no-sink), on the query endpoint's address."""

    async def healthz(request: web.Request) -> web.Response:
        verdict = health()
        return web.json_response(verdict.body(), status=200 if verdict.ok else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", _metrics(metrics))
    return app
