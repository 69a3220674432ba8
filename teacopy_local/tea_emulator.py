"""A local Thin Egress App (TEA) ``/s3credentials`` endpoint on 127.0.0.1, for tests and the demo.

It follows the behaviours measured from asfadmin/thin-egress-app (see docs / research notes):

- auth order: a valid ``asf-urs`` cookie first, then ``Authorization: Bearer <token>``; a successful
  bearer call sets an ``asf-urs`` cookie that is accepted afterwards;
- missing/unknown token, ``Basic`` auth → 302 to ``https://urs.earthdata.nasa.gov/oauth/authorize?...``;
- malformed Authorization header (``Bearer`` with nothing, an unknown scheme) → 400 JSON;
- a User-Agent starting with "Mozilla" → HTML instead of JSON;
- success → 200 JSON ``accessKeyId``/``secretAccessKey``/``sessionToken``/``expiration`` with
  ``expiration = str(datetime)`` (``2026-01-27 00:50:09+00:00``), a fresh credential set per call.

Fault hooks: ``script(status, body, headers, delay)`` queues canned answers consumed one per request
before the normal handling (``status=None`` only delays, then answers normally); ``script_drop()``
queues a dropped connection (closed without an answer); ``set_lifetime``; ``expire()`` makes issued
credentials expire early (the local S3 then answers ``ExpiredToken``, like AWS for a dead session).
The emulator never logs tokens; received headers are kept in memory with auth values redacted.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import string
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode, urlsplit

from .loopback import LoopbackServer

EDL_AUTHORIZE = "https://urs.earthdata.nasa.gov/oauth/authorize"
DEFAULT_TOKEN = "emulator-edl-token"  # noqa: S105 - the emulator's default test token, not a real one
_UPPER_DIGITS = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class IssuedCredentials:
    """One credential set handed out. ``repr`` hides the secret parts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime


@dataclass(frozen=True)
class ScriptedResponse:
    status: int | None
    body: bytes
    headers: dict[str, str]
    delay: float
    drop: bool = False  # close the connection without answering


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TeaEmulator:
    """A TEA ``/s3credentials`` server in a daemon thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        lifetime_seconds: float = 3600,
        valid_tokens: set[str] | frozenset[str] | None = None,
        issue: Callable[[IssuedCredentials], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._lifetime = float(lifetime_seconds)
        self.valid_tokens = set(valid_tokens if valid_tokens is not None else {DEFAULT_TOKEN})
        self._issue_callback = issue
        self._clock = clock
        self._host, self._port = host, port
        self._script: deque[ScriptedResponse] = deque()
        self._cookies: set[str] = set()
        self._credentials: dict[str, IssuedCredentials] = {}
        self._revoked: set[str] = set()
        self._expired_at: dict[str, datetime] = {}
        self._requests = 0
        self.early_expiries = 0
        self._issued: list[tuple[str, datetime]] = []
        self._received: list[dict[str, str]] = []
        self._http = LoopbackServer("TEA emulator", host, port, lambda: _make_handler(self))

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> TeaEmulator:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> TeaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._http.url

    # -- fault hooks and inspection ----------------------------------------------------------------

    def script(
        self,
        status: int | None,
        body: str | bytes | dict[str, Any] | list[Any] = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue one canned answer (consumed by the next request). ``status=None``: delay, then normal."""
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            default_type = "application/json"
        else:
            payload = body.encode() if isinstance(body, str) else body
            default_type = "text/html; charset=utf-8" if payload.lstrip().startswith(b"<") else "text/plain"
        merged = {"Content-Type": default_type, **(headers or {})}
        with self._lock:
            self._script.append(ScriptedResponse(status, payload, merged, float(delay)))

    def script_drop(self, delay: float = 0.0) -> None:
        """Queue one dropped connection: the next request is closed without any answer."""
        with self._lock:
            self._script.append(ScriptedResponse(None, b"", {}, float(delay), drop=True))

    def set_lifetime(self, seconds: float) -> None:
        with self._lock:
            self._lifetime = float(seconds)

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def issued(self) -> list[tuple[str, datetime]]:
        """(access_key_id, expiration) of every credential set issued, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def received_headers(self) -> list[dict[str, str]]:
        """Headers of every request received (Authorization/Cookie values redacted), oldest first."""
        with self._lock:
            return [dict(h) for h in self._received]

    def is_valid(self, access_key_id: str, now: datetime | None = None) -> bool | None:
        """Whether TEA-issued credentials are still valid at ``now``; None for an unknown key."""
        with self._lock:
            creds = self._credentials.get(access_key_id)
            revoked = access_key_id in self._revoked
        if creds is None:
            return None
        expiration = self.expiration_of(access_key_id)
        assert expiration is not None
        return not revoked and (now or self._clock()) < expiration

    def expiration_of(self, access_key_id: str) -> datetime | None:
        """When the credentials really expire (early if ``expire`` was called), None for an unknown key."""
        with self._lock:
            creds = self._credentials.get(access_key_id)
            early = self._expired_at.get(access_key_id)
        if creds is None:
            return None
        return creds.expiration if early is None else min(early, creds.expiration)

    def expire(self, access_key_id: str | None = None, at: datetime | None = None) -> list[str]:
        """Make issued credentials expire at ``at`` (default: now), every set issued so far if no key is given.

        The document TEA handed out still shows the original expiration: only S3 (the local engine's
        S3 hook, which asks ``expiration_of``) knows, as with a session AWS ends early. Returns the keys.
        """
        when = at or self._clock()
        with self._lock:
            keys = [access_key_id] if access_key_id is not None else [k for k, _ in self._issued]
            for key in keys:
                if key in self._credentials:
                    self._expired_at[key] = min(when, self._expired_at.get(key, when))
            self.early_expiries += len(keys)
        return keys

    def credentials_of(self, access_key_id: str) -> IssuedCredentials | None:
        with self._lock:
            return self._credentials.get(access_key_id)

    def revoke(self, access_key_id: str) -> None:
        """Make ``is_valid`` answer False for this key from now on (simulates an early ExpiredToken)."""
        with self._lock:
            self._revoked.add(access_key_id)

    def new_cookie(self) -> str:
        """A fresh ``asf-urs`` cookie value this emulator accepts (a fake, unsigned JWT)."""

        def b64(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        value = ".".join(
            (b64({"alg": "none", "typ": "JWT"}), b64({"urs-user-id": "emulator"}), secrets.token_urlsafe(16))
        )
        with self._lock:
            self._cookies.add(value)
        return value

    # -- request handling (called from handler threads) ---------------------------------------------

    def _next_script(self) -> ScriptedResponse | None:
        with self._lock:
            self._requests += 1
            return self._script.popleft() if self._script else None

    def _record_headers(self, headers: dict[str, str]) -> None:
        redacted = {}
        for name, value in headers.items():
            if name.lower() == "authorization":
                scheme = value.split(" ", 1)[0] if value.strip() else ""
                redacted[name] = f"{scheme} <redacted>".strip()
            elif name.lower() == "cookie":
                names = [part.split("=", 1)[0].strip() for part in value.split(";")]
                redacted[name] = "; ".join(f"{n}=<redacted>" for n in names if n)
            else:
                redacted[name] = value
        with self._lock:
            self._received.append(redacted)

    def _cookie_is_valid(self, cookie_header: str) -> bool:
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "asf-urs":
                with self._lock:
                    if value in self._cookies:
                        return True
        return False

    def _issue(self) -> IssuedCredentials:
        with self._lock:
            lifetime = self._lifetime
        expiration = self._clock() + timedelta(seconds=lifetime)
        if float(lifetime).is_integer():
            # Like STS: whole seconds, never earlier than now + lifetime.
            whole = math.ceil(expiration.timestamp())
            expiration = datetime.fromtimestamp(whole, tz=UTC)
        creds = IssuedCredentials(
            access_key_id="ASIATEA" + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(13)),
            secret_access_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(180),
            expiration=expiration,
        )
        with self._lock:
            self._credentials[creds.access_key_id] = creds
            self._issued.append((creds.access_key_id, expiration))
        if self._issue_callback is not None:
            self._issue_callback(creds)
        return creds

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._http.stopping.wait(seconds)


def _make_handler(emulator: TeaEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "TEA-emulator/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            """Silenced: request lines and headers must never reach a log."""

        def do_GET(self) -> None:
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                # The client gave up (e.g. its timeout fired during a scripted delay).
                self.close_connection = True

        def _handle(self) -> None:
            scripted = emulator._next_script()
            emulator._record_headers({k: v for k, v in self.headers.items()})
            if scripted is not None:
                emulator._sleep(scripted.delay)
                if scripted.drop:
                    self.close_connection = True  # nothing written: the client sees the connection closed
                    return
                if scripted.status is not None:
                    self._send(scripted.status, scripted.body, scripted.headers)
                    return
            if urlsplit(self.path).path.rstrip("/") != "/s3credentials":
                self._error(404, "not_found", "Only /s3credentials is emulated")
                return
            cookie_ok = emulator._cookie_is_valid(self.headers.get("Cookie", ""))
            set_cookie: str | None = None
            if not cookie_ok:
                authorization = self.headers.get("Authorization")
                if authorization is None:
                    self._redirect_to_edl()
                    return
                scheme, _, token = authorization.strip().partition(" ")
                token = token.strip()
                if scheme.lower() == "basic" and token:
                    self._redirect_to_edl()
                    return
                if scheme.lower() != "bearer" or not token or " " in token:
                    self._error(400, "invalid_request", "Malformed Authorization header")
                    return
                if token not in emulator.valid_tokens:
                    self._redirect_to_edl()
                    return
                set_cookie = emulator.new_cookie()
            creds = emulator._issue()
            payload = {
                "accessKeyId": creds.access_key_id,
                "secretAccessKey": creds.secret_access_key,
                "sessionToken": creds.session_token,
                "expiration": str(creds.expiration),
            }
            headers = {"Content-Type": "application/json"}
            if set_cookie is not None:
                headers["Set-Cookie"] = f"asf-urs={set_cookie}; Path=/; HttpOnly; SameSite=Lax"
            if self._browser():
                body = f"<html><body><pre>{json.dumps(payload)}</pre></body></html>".encode()
                self._send(200, body, {**headers, "Content-Type": "text/html; charset=utf-8"})
                return
            self._send(200, json.dumps(payload).encode(), headers)

        def _browser(self) -> bool:
            return self.headers.get("User-Agent", "").startswith("Mozilla")

        def _redirect_to_edl(self) -> None:
            query = urlencode(
                {
                    "client_id": "emulator-client",
                    "response_type": "code",
                    "redirect_uri": f"{emulator.url}/login",
                    "state": "/s3credentials",
                }
            )
            self._send(302, b"", {"Location": f"{EDL_AUTHORIZE}?{query}", "Content-Type": "text/plain"})

        def _error(self, status: int, error: str, description: str) -> None:
            if self._browser():
                page = f"<html><body><h1>{status}</h1><p>{description}</p></body></html>".encode()
                self._send(status, page, {"Content-Type": "text/html; charset=utf-8"})
                return
            body = json.dumps({"error": error, "error_description": description, "status_code": status})
            self._send(status, body.encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

    return Handler
