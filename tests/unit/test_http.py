"""The HTTP basics TEA and CMR share (lambdas.earthdata.http), against a loopback server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambdas.contracts.errors import ConfigurationError
from lambdas.earthdata.http import (
    ERROR_BODY_BYTES,
    HttpTransportError,
    UrllibSession,
    backoff_delay,
    base_url,
    retry_after_seconds,
    safe_snippet,
)

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "https://urs.earthdata.nasa.gov/oauth/authorize")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, body = (200, b"x" * 5000) if self.path == "/big" else (503, b"e" * (ERROR_BODY_BYTES + 10))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Mixed-Case", "yes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_redirect_is_returned_not_followed(server: str) -> None:
    response = UrllibSession(1024).get(server + "/redirect", {}, 2)
    assert response.status == 302
    assert response.headers["location"].startswith("https://urs.earthdata.nasa.gov/")


def test_bodies_are_read_to_the_limit_plus_one_and_header_names_lower_cased(server: str) -> None:
    response = UrllibSession(1000).get(server + "/big", {}, 2)
    assert response.status == 200 and len(response.body) == 1001  # the caller can tell "too large"
    assert response.headers["x-mixed-case"] == "yes"
    error = UrllibSession(10 * ERROR_BODY_BYTES).get(server + "/error", {}, 2)
    assert error.status == 503 and len(error.body) == ERROR_BODY_BYTES


def test_network_errors_are_transport_errors_with_safe_messages() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HttpTransportError, match=r"^connection failed \(ConnectionRefusedError\)$") as info:
        UrllibSession(1024).get(f"http://127.0.0.1:{port}/", {}, 1)
    assert not info.value.timed_out


def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        port = listener.getsockname()[1]
        with pytest.raises(HttpTransportError, match=r"^timed out after 0.2 s$") as info:
            UrllibSession(1024).get(f"http://127.0.0.1:{port}/", {}, 0.2)
    assert info.value.timed_out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://archive.podaac.earthdata.nasa.gov/",
            ("https://archive.podaac.earthdata.nasa.gov", "archive.podaac.earthdata.nasa.gov"),
        ),
        ("http://127.0.0.1:9/x/", ("http://127.0.0.1:9/x", "127.0.0.1")),
        ("http://localhost:1", ("http://localhost:1", "localhost")),
    ],
)
def test_base_url_normalizes(url: str, expected: tuple[str, str]) -> None:
    assert base_url(url, "the URL", "why") == expected


def test_base_url_refuses_plain_http_and_redacts_what_it_echoes() -> None:
    with pytest.raises(ConfigurationError, match=r"the URL example\.org must use https:// \(why\)"):
        base_url("http://example.org", "the URL", "why")
    with pytest.raises(ConfigurationError, match="must be an https:// URL") as info:
        base_url("ftp://host/?token=ABCDEFGHIJKLMNOPQRSTUVWXYZ", "the URL", "why")
    assert "ABCDEFGHIJKLMNOP" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Mon, 01 Jan 2024 12:00:07 GMT", 7.0),
        ("Mon, 01 Jan 2024 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(raw: str | None, seconds: float | None) -> None:
    headers = {} if raw is None else {"retry-after": raw}
    assert retry_after_seconds(headers, lambda: NOW) == seconds


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert [backoff_delay(n, 0.5, 8.0, lambda: 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [backoff_delay(n, 0.5, 8.0, lambda: 0.0) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_safe_snippet_redacts_and_bounds() -> None:
    assert safe_snippet("key ASIAABCDEFGHIJKLMNOP end") == "key <redacted> end"
    assert len(safe_snippet("x" * 1000)) <= 43
