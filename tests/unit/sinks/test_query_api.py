"""The one client of the query endpoint (sinks/query_api.post_query), used by `sql`, `lookup` and
`report`: the request it sends, the endpoint's own error text, and nothing answering."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sms_analytics.dashboards.report import http_query
from sms_analytics.sinks.query_api import QueryRefused, post_query

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
