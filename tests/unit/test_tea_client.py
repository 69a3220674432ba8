"""TeaClient against the local TEA emulator (127.0.0.1 only): classification, retries, hygiene."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.contracts.errors import (
    ConfigurationError,
    EdlTokenRejected,
    EulaNotAccepted,
    TeaBadResponse,
    TeaForbidden,
    TeaUnavailable,
)
from lambdas.earthdata.http import USER_AGENT, build_opener, safe_snippet
from lambdas.earthdata.tea import TeaAuth, TeaClient, sanitize_app_name
from teacopy_local.tea_emulator import DEFAULT_TOKEN, TeaEmulator

SECRET_NAME = "teacopy/edl-token"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tea() -> Iterator[TeaEmulator]:
    with TeaEmulator() as emulator:
        yield emulator


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.requests: list[dict[str, Any]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_request(self, detail: dict[str, Any]) -> None:
        self.requests.append(detail)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def client(tea: TeaEmulator, rec: Recorder, **kwargs: Any) -> TeaClient:
    options: dict[str, Any] = {
        "sleep": rec.sleep,
        "token_secret_name": SECRET_NAME,
        "on_request": rec.on_request,
        "jitter": lambda: 0.5,
    }
    options.update(kwargs)
    timeout = options.pop("timeout_seconds", 2.0)
    app_name = options.pop("app_name", "teacopy")
    return TeaClient(tea.url, app_name, timeout, **options)


GOOD = TeaAuth(bearer_token=DEFAULT_TOKEN)


def raw_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    opener = build_opener()
    request = urllib.request.Request(url + "/s3credentials", headers=headers)  # noqa: S310 - http://127.0.0.1 only
    try:
        with opener.open(request, timeout=2) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read().decode()


# -- success ---------------------------------------------------------------------------------------


def test_success_parses_tea_space_form_expiration(tea: TeaEmulator, rec: Recorder) -> None:
    status, _, body = raw_get(tea.url, {"Authorization": f"Bearer {DEFAULT_TOKEN}"})
    document = json.loads(body)
    assert status == 200
    assert set(document) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    assert " " in document["expiration"] and "T" not in document["expiration"]
    assert document["expiration"].endswith("+00:00")

    creds = client(tea, rec).fetch(GOOD)
    assert creds.access_key_id.startswith("ASIATEA")
    assert creds.expiration == tea.expiration_of(creds.access_key_id)
    assert creds.expiration.utcoffset() is not None
    assert 3590 < creds.seconds_left(datetime.now(UTC)) <= 3601
    assert tea.requests == 2
    assert rec.requests == [{"status": 200, "outcome": "ok", "seconds": rec.requests[0]["seconds"], "attempt": 1}]
    assert rec.sleeps == []


def test_json_body_labelled_text_html_is_accepted(tea: TeaEmulator, rec: Recorder) -> None:
    body = {"accessKeyId": "ASIAX", "secretAccessKey": "s", "sessionToken": "t", "expiration": "2030-01-01 00:00:00"}
    tea.script(200, "\n " + json.dumps(body) + "\n", headers={"Content-Type": "text/html"})
    creds = client(tea, rec).fetch(GOOD)
    assert creds.access_key_id == "ASIAX"
    assert creds.expiration.isoformat() == "2030-01-01T00:00:00+00:00"


def test_request_headers_sanitized_app_name_user_agent_accept(tea: TeaEmulator, rec: Recorder) -> None:
    client(tea, rec, app_name="my app/<script>;\r\nX: y" + "a" * 100).fetch(GOOD)
    headers = {k.lower(): v for k, v in tea.received_headers[-1].items()}
    assert headers["app-name"] == sanitize_app_name("my app/<script>;\r\nX: y" + "a" * 100)
    assert headers["app-name"].startswith("myappscriptXy")
    assert len(headers["app-name"]) == 64
    assert headers["user-agent"] == USER_AGENT and not USER_AGENT.startswith("Mozilla")
    assert headers["accept"] == "application/json"
    assert headers["authorization"] == "Bearer <redacted>"  # the emulator never keeps tokens


def test_sanitize_app_name_keeps_allowed_characters() -> None:
    assert sanitize_app_name("teacopy-1.0+x=y,z@host_name") == "teacopy-1.0+x=y,z@host_name"
    assert sanitize_app_name("é ü!") == ""


def test_cookie_mode(tea: TeaEmulator, rec: Recorder) -> None:
    status, headers, _ = raw_get(tea.url, {"Authorization": f"Bearer {DEFAULT_TOKEN}"})
    assert status == 200 and headers["Set-Cookie"].startswith("asf-urs=")
    cookie = headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]

    creds = client(tea, rec).fetch(TeaAuth(asf_urs=cookie))
    assert tea.is_valid(creds.access_key_id) is True
    sent = {k.lower(): v for k, v in tea.received_headers[-1].items()}
    assert sent["cookie"] == "asf-urs=<redacted>" and "authorization" not in sent

    with pytest.raises(EdlTokenRejected):
        client(tea, rec).fetch(TeaAuth(asf_urs="not-a-cookie-we-issued"))


def test_cookie_has_priority_over_bearer(tea: TeaEmulator) -> None:
    cookie = tea.new_cookie()
    status, _, _ = raw_get(tea.url, {"Cookie": f"asf-urs={cookie}", "Authorization": "Bearer wrong"})
    assert status == 200


# -- token problems: never retried, never leak the token --------------------------------------------


def test_invalid_token_redirect_is_edl_token_rejected_with_renewal_hint(tea: TeaEmulator, rec: Recorder) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-part-of-the-token"
    with pytest.raises(EdlTokenRejected) as info:
        client(tea, rec).fetch(TeaAuth(bearer_token=token))
    message = str(info.value)
    assert token not in message and "secret-part" not in message
    assert "Earthdata Login" in message and "302" in message
    assert "https://urs.earthdata.nasa.gov/profile" in message and "Generate Token" in message
    assert f"aws secretsmanager put-secret-value --secret-id {SECRET_NAME} --secret-string <token>" in message
    assert tea.requests == 1 and rec.sleeps == []
    assert rec.requests[0]["status"] == 302 and rec.requests[0]["outcome"] == "redirect"
    assert token not in json.dumps(rec.requests)


def test_emulator_redirects_missing_and_basic_auth(tea: TeaEmulator) -> None:
    status, headers, _ = raw_get(tea.url, {})
    assert status == 302 and headers["Location"].startswith("https://urs.earthdata.nasa.gov/oauth/authorize?")
    status, _, _ = raw_get(tea.url, {"Authorization": "Basic dXNlcjpwYXNz"})
    assert status == 302


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_any_redirect_is_token_rejected(tea: TeaEmulator, rec: Recorder, status: int) -> None:
    tea.script(status, "", headers={"Location": "https://elsewhere.example.org/login"})
    with pytest.raises(EdlTokenRejected, match=r"elsewhere\.example\.org"):
        client(tea, rec).fetch(GOOD)
    assert tea.requests == 1


def test_401_is_token_rejected(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(401, {"error": "unauthorized"})
    with pytest.raises(EdlTokenRejected, match="401"):
        client(tea, rec).fetch(GOOD)
    assert tea.requests == 1 and rec.sleeps == []


def test_malformed_authorization_400(tea: TeaEmulator, rec: Recorder) -> None:
    status, headers, body = raw_get(tea.url, {"Authorization": "Bearer"})
    assert status == 400 and headers["Content-Type"] == "application/json" and json.loads(body)["error"]
    status, _, _ = raw_get(tea.url, {"Authorization": "Token abc"})
    assert status == 400

    tea.script(400, {"error": "invalid_request", "error_description": "Malformed Authorization header"})
    with pytest.raises(EdlTokenRejected, match="malformed"):
        client(tea, rec).fetch(GOOD)
    assert rec.sleeps == []


def test_emulator_answers_html_to_browsers(tea: TeaEmulator) -> None:
    status, headers, body = raw_get(tea.url, {"User-Agent": "Mozilla/5.0", "Authorization": f"Bearer {DEFAULT_TOKEN}"})
    assert status == 200 and headers["Content-Type"].startswith("text/html") and body.startswith("<html>")
    status, headers, body = raw_get(tea.url, {"User-Agent": "Mozilla/5.0", "Authorization": "Bearer"})
    assert status == 400 and body.startswith("<html>")


# -- 403 --------------------------------------------------------------------------------------------


def test_403_json_with_resolution_url_is_eula(tea: TeaEmulator, rec: Recorder) -> None:
    url = "https://urs.earthdata.nasa.gov/approve_app?client_id=abc"
    tea.script(403, {"status_code": 403, "error_description": "EULA Acceptance Failure", "resolution_url": url})
    with pytest.raises(EulaNotAccepted) as info:
        client(tea, rec).fetch(GOOD)
    assert url in str(info.value) and "EULA Acceptance Failure" in str(info.value)
    assert tea.requests == 1 and rec.requests[0]["outcome"] == "eula"


def test_403_html_is_forbidden(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(403, "<html><body>No permitted bucket</body></html>")
    with pytest.raises(TeaForbidden, match="no access to this DAAC's buckets"):
        client(tea, rec).fetch(GOOD)
    assert tea.requests == 1 and rec.sleeps == []


# -- transient failures: bounded retries ----------------------------------------------------------


def test_5xx_burst_then_success(tea: TeaEmulator, rec: Recorder) -> None:
    for status in (500, 502, 503):
        tea.script(status, "<html>oops</html>")
    creds = client(tea, rec, max_attempts=4).fetch(GOOD)
    assert creds.access_key_id.startswith("ASIATEA")
    assert tea.requests == 4
    assert [r["status"] for r in rec.requests] == [500, 502, 503, 200]
    assert [r["outcome"] for r in rec.requests] == ["server_error"] * 3 + ["ok"]
    assert len(rec.sleeps) == 3 and rec.sleeps == sorted(rec.sleeps)  # exponential backoff


def test_persistent_503_is_unavailable_after_max_attempts(tea: TeaEmulator, rec: Recorder) -> None:
    for _ in range(10):
        tea.script(503, "busy")
    with pytest.raises(TeaUnavailable, match="after 3 attempt"):
        client(tea, rec).fetch(GOOD)
    assert tea.requests == 3 and len(rec.sleeps) == 2
    assert all(0 < s <= 8.0 for s in rec.sleeps)


def test_backoff_is_bounded_and_jittered(tea: TeaEmulator, rec: Recorder) -> None:
    for _ in range(8):
        tea.script(502, "bad gateway")
    with pytest.raises(TeaUnavailable):
        client(tea, rec, max_attempts=8, jitter=lambda: 1.0, backoff_max_seconds=2.0).fetch(GOOD)
    assert tea.requests == 8 and max(rec.sleeps) == 2.0


def test_429_is_retried_and_honours_retry_after(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(429, "slow down", headers={"Retry-After": "3"})
    client(tea, rec).fetch(GOOD)
    assert tea.requests == 2 and rec.requests[0]["outcome"] == "throttled"
    assert rec.sleeps == [3.0]


def test_timeout_is_unavailable_and_bounded(tea: TeaEmulator, rec: Recorder) -> None:
    for _ in range(3):
        tea.script(None, delay=2.0)
    started = time.monotonic()
    with pytest.raises(TeaUnavailable, match="timed out"):
        client(tea, rec, timeout_seconds=0.2).fetch(GOOD)
    assert time.monotonic() - started < 1.5
    assert [r["outcome"] for r in rec.requests] == ["timeout"] * 3
    assert all(r["status"] is None for r in rec.requests)


def test_slow_but_within_timeout_succeeds(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(None, delay=0.1)
    assert client(tea, rec, timeout_seconds=2.0).fetch(GOOD).access_key_id.startswith("ASIATEA")
    assert rec.sleeps == []


def test_connection_refused_is_unavailable(rec: Recorder) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tea_client = TeaClient(f"http://127.0.0.1:{port}", "teacopy", 0.5, sleep=rec.sleep, on_request=rec.on_request)
    with pytest.raises(TeaUnavailable, match="connection failed"):
        tea_client.fetch(GOOD)
    assert [r["outcome"] for r in rec.requests] == ["connection_error"] * 3


# -- bad 2xx bodies: retried like a 5xx (bounded, with backoff), never echoed -----------------------------

TRUNCATED = '{"accessKeyId": "ASIAABCDEFGHIJKLMNOP", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY'
BAD_BODIES: dict[str, tuple[str | dict[str, Any], str]] = {
    "truncated JSON": (TRUNCATED, "not JSON"),
    "empty": ("", "empty body"),
    "HTML": ("<!DOCTYPE html><html><body>Log in</body></html>", "HTML"),
    "fields missing": (
        {"accessKeyId": "ASIAABCDEFGHIJKLMNOP", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG"},
        "sessionToken",
    ),
    "unparsable expiration": (
        {"accessKeyId": "A", "secretAccessKey": "s", "sessionToken": "t", "expiration": "tomorrow"},
        "not with a usable credentials document",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_bad_2xx_body_is_retried_and_the_next_answer_is_used(tea: TeaEmulator, rec: Recorder, kind: str) -> None:
    body, _reason = BAD_BODIES[kind]
    tea.script(200, body, headers={"Content-Type": "application/json"})
    credentials = client(tea, rec).fetch(GOOD)
    assert credentials.access_key_id.startswith("ASIATEA")
    assert tea.requests == 2
    assert [r["outcome"] for r in rec.requests] == ["bad_response", "ok"]
    assert rec.sleeps == [0.375]  # backoff after attempt 1 (base 0.5 s, jitter 0.5), as after a 5xx


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_bad_2xx_bodies_are_retried_a_bounded_number_of_times_then_unavailable(
    tea: TeaEmulator, rec: Recorder, kind: str
) -> None:
    body, reason = BAD_BODIES[kind]
    for _ in range(3):
        tea.script(200, body, headers={"Content-Type": "application/json"})
    with pytest.raises(TeaUnavailable, match=f"after 3 attempt.*{reason}") as info:
        client(tea, rec).fetch(GOOD)
    message = str(info.value)
    assert "tea_endpoint" in message  # a persistent bad answer may be the wrong endpoint
    assert "ASIAABCDEFGHIJKLMNOP" not in message and "wJalrXUtnFEMI" not in message
    assert len(message) < 600
    assert tea.requests == 3 and [r["outcome"] for r in rec.requests] == ["bad_response"] * 3
    assert len(rec.sleeps) == 2


def test_an_unexpected_status_is_still_a_bad_response_at_once(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(418, "I'm a teapot")
    with pytest.raises(TeaBadResponse, match="unexpected HTTP 418"):
        client(tea, rec).fetch(GOOD)
    assert tea.requests == 1


def test_404_is_configuration_error(tea: TeaEmulator, rec: Recorder) -> None:
    tea.script(404, "not found")
    with pytest.raises(ConfigurationError, match="404"):
        client(tea, rec).fetch(GOOD)


def test_safe_snippet_redacts_credential_like_runs() -> None:
    assert "ASIAABCDEFGHIJKLMNOP" not in safe_snippet('{"accessKeyId": "ASIAABCDEFGHIJKLMNOP"}')
    assert len(safe_snippet("x" * 1000)) <= 43


# -- TeaAuth and construction -----------------------------------------------------------------------


def test_tea_auth_forms_and_redacted_repr() -> None:
    token = "eyJhbGciOi.JSUzI1NiJ9.abc"
    assert TeaAuth.from_secret_string(f"  {token}\n").headers() == {"Authorization": f"Bearer {token}"}
    assert TeaAuth.from_secret_string(f"Bearer {token}").headers() == {"Authorization": f"Bearer {token}"}
    assert TeaAuth.from_secret_string(json.dumps({"bearer_token": token})).kind == "bearer"
    assert TeaAuth.from_secret_string(json.dumps({"access_token": token, "expiration_date": "x"})).kind == "bearer"
    cookie_auth = TeaAuth.from_secret_string(json.dumps({"asf_urs": token}))
    assert cookie_auth.headers() == {"Cookie": f"asf-urs={token}"}
    for auth in (cookie_auth, TeaAuth(bearer_token=token)):
        assert token not in repr(auth) and token not in str(auth) and "redacted" in repr(auth)


@pytest.mark.parametrize(
    "secret", ["", "   ", "two words", "tok\r\nX-Injected: 1", "{not json", '{"other": 1}', '{"bearer_token": 5}']
)
def test_tea_auth_rejects_unusable_secrets(secret: str) -> None:
    with pytest.raises(EdlTokenRejected) as info:
        TeaAuth.from_secret_string(secret, secret_name=SECRET_NAME)
    assert "Generate Token" in str(info.value)
    if secret.strip() and len(secret) > 3:
        assert secret not in str(info.value)


def test_endpoint_must_be_https_unless_loopback() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        TeaClient("http://archive.podaac.earthdata.nasa.gov", "teacopy", 5)
    with pytest.raises(ConfigurationError):
        TeaClient("archive.podaac.earthdata.nasa.gov", "teacopy", 5)
    tea_client = TeaClient("https://archive.podaac.earthdata.nasa.gov/", "teacopy", 5)
    assert tea_client.url == "https://archive.podaac.earthdata.nasa.gov/s3credentials"
    assert TeaClient("http://127.0.0.1:9", "x", 1).url == "http://127.0.0.1:9/s3credentials"


def test_logs_never_contain_the_token(tea: TeaEmulator, rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tea.script(503, "busy")
    client(tea, rec).fetch(GOOD)
    with pytest.raises(EdlTokenRejected):
        client(tea, rec).fetch(TeaAuth(bearer_token="wrong-token-value"))
    assert caplog.records
    assert DEFAULT_TOKEN not in caplog.text and "wrong-token-value" not in caplog.text
