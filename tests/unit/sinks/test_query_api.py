"""sinks/query_api.py: its one client (post_query, used by `sql`, `lookup` and `report`): the request
it sends, the endpoint's own error text, and nothing answering; and the endpoint (query_app, ops_app)
over a stand-in warehouse: the token, the refusal of anything but one read statement, formats, health."""

from __future__ import annotations

import datetime as _dt
import threading
import urllib.error
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sms_analytics.dashboards.report import http_query
from sms_analytics.sinks.query_api import FORMATS, QueryRefused, ops_app, post_query, query_app, query_headers, render
from sms_analytics.sinks.warehouse import check_read_only

seen: list[tuple[str, str, bytes]] = []


class _Endpoint(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen.append((self.path, self.headers.get("Authorization", ""), body))
        if b"broken" in body:
            self._reply(400, b'{"error": "Code: 62. Syntax error"}')
        elif b"proxy" in body:
            self._reply(502, b"bad gateway")
        else:
            self._reply(200, b'{"n":1,"at":"2026-01-02T03:04:05.000+00:00"}\n{"n":2,"at":null}\n')

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_post_query_sends_format_params_and_token(endpoint: str) -> None:
    body = post_query(endpoint, "SELECT {x:UInt8}", fmt="csv", params={"x": "1"}, token="t0k")
    assert body.startswith(b'{"n":1')
    assert seen == [("/query?format=csv&param_x=1", "Bearer t0k", b"SELECT {x:UInt8}")]


def test_post_query_raises_the_endpoints_words(endpoint: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        post_query(endpoint, "SELECT broken")
    assert (refused.value.status, refused.value.text) == (400, "Code: 62. Syntax error")
    assert str(refused.value) == "HTTP 400: Code: 62. Syntax error"
    with pytest.raises(QueryRefused, match="HTTP 502: bad gateway"):
        post_query(endpoint, "SELECT proxy")


def test_nothing_answering_is_a_url_error() -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post_query("http://127.0.0.1:9", "SELECT 1", timeout=2)


def test_report_reads_through_it(endpoint: str) -> None:
    columns, rows = http_query(endpoint, token="t0k")("SELECT n, at")
    assert columns == ["n", "at"]
    assert rows[0][0] == 1 and rows[0][1].isoformat() == "2026-01-02T03:04:05+00:00" and rows[1] == (2, None)
    assert seen[-1][:2] == ("/query?format=json", "Bearer t0k")
    with pytest.raises(QueryRefused):
        http_query(endpoint)("SELECT broken")


# --- the endpoint itself (query_app), over a stand-in warehouse: no chDB in this process ----------


class _Warehouse:
    """What query_app needs of a Warehouse: `read`, which refuses (NotReadOnly) as the real one's
    first check does, and fails on SQL it cannot run."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, dict[str, Any] | None]] = []

    def read(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        check_read_only(sql)
        self.reads.append((sql, params))
        if "nonsense" in sql:
            raise RuntimeError("  Code: 62. DB::Exception: Syntax error  ")
        return ["n", "at"], [(1, _dt.datetime(2026, 1, 2, 3, 4, 5)), (2, None)]


class _Verdict:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing"}


async def _client(app: Any) -> TestClient:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_token_is_required_when_set() -> None:
    wh = _Warehouse()
    client = await _client(query_app(wh, dict, token="s3cret"))  # type: ignore[arg-type]
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = await client.post("/query", data="SELECT 1", headers=headers)
            assert response.status == 401
            assert "SMS_QUERY_TOKEN" in (await response.json())["error"]
        assert wh.reads == []  # refused before the warehouse is asked
        response = await client.post("/query", data="SELECT 1", headers=query_headers("s3cret"))
        assert response.status == 200
        response = await client.post("/query", data="SELECT 1", headers={"Authorization": "bearer  s3cret "})
        assert response.status == 200
    finally:
        await client.close()


async def test_no_token_set_needs_no_header() -> None:
    client = await _client(query_app(_Warehouse(), dict))  # type: ignore[arg-type]
    try:
        assert (await client.post("/query", data="SELECT 1")).status == 200
    finally:
        await client.close()


@pytest.mark.parametrize("sql", ["INSERT INTO sms.messages VALUES (1)", "DROP TABLE sms.messages",
                                 "SELECT 1; DROP TABLE sms.messages", "", "-- only a comment",
                                 "ALTER TABLE sms.messages DELETE WHERE 1", "SYSTEM FLUSH LOGS"])
async def test_anything_but_one_read_statement_is_403(sql: str) -> None:
    wh = _Warehouse()
    client = await _client(query_app(wh, dict))  # type: ignore[arg-type]
    try:
        response = await client.post("/query", data=sql)
        assert response.status == 403
        assert (await response.json())["error"]
        assert wh.reads == []
    finally:
        await client.close()


async def test_formats_params_and_errors() -> None:
    wh = _Warehouse()
    client = await _client(query_app(wh, dict))  # type: ignore[arg-type]
    try:
        response = await client.post("/query?format=json&param_x=7&other=1", data="SELECT {x:UInt8} AS n")
        assert response.status == 200 and response.content_type == "application/x-ndjson"
        assert await response.text() == '{"n":1,"at":"2026-01-02T03:04:05.000+00:00"}\n{"n":2,"at":null}\n'
        assert wh.reads[-1] == ("SELECT {x:UInt8} AS n", {"x": "7"})
        response = await client.post("/query?format=csv", data="SELECT 1")
        assert response.content_type == "text/plain"
        assert (await response.text()).splitlines() == ["n,at", "1,2026-01-02T03:04:05.000+00:00", "2,"]
        response = await client.post("/query?format=xml", data="SELECT 1")
        assert response.status == 400 and "json, csv, table" in (await response.json())["error"]
        response = await client.post("/query", data="SELECT nonsense")
        assert response.status == 400
        assert (await response.json())["error"] == "Code: 62. DB::Exception: Syntax error"
    finally:
        await client.close()


async def test_healthz_from_readiness_or_from_a_verdict() -> None:
    ready = {"warehouse": True, "sink": False}
    client = await _client(query_app(_Warehouse(), lambda: ready))  # type: ignore[arg-type]
    try:
        response = await client.get("/healthz")
        assert response.status == 503 and (await response.json())["status"] == "starting"
        ready["sink"] = True
        response = await client.get("/healthz")
        assert response.status == 200 and (await response.json()) == {"status": "ok", "components": ready}
        assert (await client.get("/metrics")).status == 404  # no exposition given: no route
    finally:
        await client.close()
    client = await _client(query_app(_Warehouse(), dict, health=lambda: _Verdict(False),  # type: ignore[arg-type]
                                     metrics=lambda: b"sms_up 1\n"))
    try:
        assert (await client.get("/healthz")).status == 503
        response = await client.get("/metrics")
        assert response.status == 200 and await response.read() == b"sms_up 1\n"
    finally:
        await client.close()


async def test_ops_app_serves_only_health_and_metrics() -> None:
    client = await _client(ops_app(lambda: _Verdict(True), lambda: b"m 1\n"))
    try:
        assert (await client.get("/healthz")).status == 200
        assert await (await client.get("/metrics")).read() == b"m 1\n"
        assert (await client.post("/query", data="SELECT 1")).status in (404, 405)
    finally:
        await client.close()


def test_render_plain_values_in_every_format() -> None:
    when = _dt.datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=_dt.UTC)
    row = (Decimal("1.50"), UUID(int=1), b"raw", [1, _dt.date(2026, 1, 2)], {"k": when}, None)
    columns = ["d", "u", "b", "l", "m", "z"]
    assert render(columns, [row], "json") == (
        '{"d":"1.50","u":"00000000-0000-0000-0000-000000000001","b":"raw","l":[1,"2026-01-02"],'
        '"m":{"k":"2026-01-02T03:04:05.123+00:00"},"z":null}\n')
    assert render(columns, [row], "csv").splitlines()[1] == \
        '1.50,00000000-0000-0000-0000-000000000001,raw,"[1,""2026-01-02""]","{""k"":""2026-01-02T03:04:05.123+00:00""}",'
    table = render(["name", "n"], [("a", 1), ("longer", None)], "table").splitlines()
    assert table == ["name    n", "------  ----", "a       1", "longer  NULL"]
    assert FORMATS == ("json", "csv", "table")
    with pytest.raises(ValueError, match="format must be one of"):
        render(columns, [], "xml")
