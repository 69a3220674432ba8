"""Client for the Thin Egress App (TEA) ``/s3credentials`` endpoint.

TEA (asfadmin/thin-egress-app) answers ``GET /s3credentials`` with a fresh ``sts:AssumeRole`` of one
hour for the Earthdata Login (EDL) user behind the request. Its behaviours this client relies on:

- Auth: the ``asf-urs`` JWT cookie first, then ``Authorization: Bearer <EDL token>``.
- A missing/invalid token is answered by a 302 to Earthdata Login (urs.earthdata.nasa.gov); a client
  following it ends at 401. We never follow redirects: any 3xx or 401 means "token rejected".
- A malformed Authorization header is answered by 400 (JSON).
- EULA not accepted: 403 JSON with ``error_description`` and ``resolution_url``.
- No permitted bucket for this user: 403 HTML.
- A User-Agent starting with "Mozilla" gets HTML, so ours never does.
- Success: ``accessKeyId``/``secretAccessKey``/``sessionToken``/``expiration`` with ``expiration`` in
  ``str(datetime)`` form (``2021-01-27 00:50:09+00:00``); parsed as JSON whatever the Content-Type.
- A 2xx whose body is not a credentials document (empty, truncated, not JSON, HTML, fields missing) is not a
  definitive answer: it is retried like a 5xx. Only the definitive answers fail at once: the redirect to
  Earthdata Login, 401 and 400 (the token), the EULA 403 and the no-permission 403, 404 (the endpoint).

The HTTP basics (one GET without redirects, a bounded body, backoff, ``Retry-After``) are
``lambdas.earthdata.http``'s. Every exception message is safe to show to the operator: it never contains
the EDL token, the cookie or any credential.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from lambdas.contracts.errors import (
    ConfigurationError,
    EdlTokenRejected,
    EulaNotAccepted,
    TeaBadResponse,
    TeacopyError,
    TeaForbidden,
    TeaUnavailable,
)
from lambdas.contracts.models import TeaCredentials
from lambdas.earthdata.http import (
    USER_AGENT,
    HttpResponse,
    HttpSession,
    HttpTransportError,
    UrllibSession,
    backoff_delay,
    base_url,
    printable,
    retry_after_seconds,
    safe_snippet,
)

logger = logging.getLogger(__name__)

EDL_HOST = "urs.earthdata.nasa.gov"
EDL_PROFILE_URL = "https://urs.earthdata.nasa.gov/profile"
UNNAMED_TOKEN_SECRET = "<EDL token secret>"  # noqa: S105 - a label for messages, not a secret
CREDENTIALS_PATH = "/s3credentials"
APP_NAME_MAX = 64
MAX_BODY_BYTES = 256 * 1024  # a credentials document is ~1.5 KB; never buffer more than this
_APP_NAME_DISALLOWED = re.compile(r"[^\w+=,.@-]", re.ASCII)
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
BAD_RESPONSE = "bad_response"  # the outcome of a 2xx without a credentials document (retried)

RequestCallback = Callable[[dict[str, Any]], None]


def sanitize_app_name(app_name: str) -> str:
    """Restrict the ``app-name`` header to ``[\\w+=,.@-]`` (TEA puts it in an STS session name), <= 64."""
    return _APP_NAME_DISALLOWED.sub("", app_name)[:APP_NAME_MAX]


def renewal_hint(token_secret_name: str) -> str:
    return (
        f"The EDL token in secret {token_secret_name} is invalid or expired (EDL tokens last 60 days). "
        f'Generate a new token at {EDL_PROFILE_URL} -> "Generate Token", then run: '
        f"aws secretsmanager put-secret-value --secret-id {token_secret_name} --secret-string <token>"
    )


class TeaAuth:
    """How to authenticate to TEA: an EDL bearer token or an ``asf-urs`` JWT cookie.

    The value is kept private; ``repr``/``str`` never show it.
    """

    __slots__ = ("_kind", "_value")

    BEARER = "bearer"
    COOKIE = "asf-urs"

    def __init__(self, *, bearer_token: str | None = None, asf_urs: str | None = None) -> None:
        if (bearer_token is None) == (asf_urs is None):
            raise ValueError("TeaAuth needs exactly one of bearer_token or asf_urs")
        kind, value = (self.BEARER, bearer_token) if bearer_token is not None else (self.COOKIE, asf_urs)
        assert value is not None
        value = value.strip()
        if not value or any(ch.isspace() or not ch.isprintable() or ch in ";," for ch in value):
            # Also guards against header injection (CR/LF) and cookie-attribute smuggling.
            raise ValueError(f"the {kind} value is empty or contains whitespace/control characters")
        self._kind = kind
        self._value = value

    @property
    def kind(self) -> str:
        return self._kind

    def headers(self) -> dict[str, str]:
        if self._kind == self.BEARER:
            return {"Authorization": f"Bearer {self._value}"}
        return {"Cookie": f"asf-urs={self._value}"}

    def __repr__(self) -> str:
        return f"TeaAuth(kind={self._kind!r}, value=<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_secret_string(cls, secret: str, secret_name: str = UNNAMED_TOKEN_SECRET) -> TeaAuth:
        """Parse the EDL token secret.

        Accepted forms: the raw token (a leading ``Bearer `` is tolerated); JSON ``{"bearer_token": ...}``,
        ``{"access_token": ...}`` (what EDL's token API returns) or ``{"asf_urs": ...}`` (a TEA cookie).
        Raises EdlTokenRejected (with the renewal hint) when the secret holds none of these.
        """
        text = (secret or "").strip()
        try:
            if text.startswith("{"):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError("the secret starts with '{' but is not valid JSON") from exc
                if not isinstance(data, dict):
                    raise ValueError("the secret's JSON is not an object")
                for key in ("bearer_token", "access_token", "token"):
                    if isinstance(data.get(key), str):
                        return cls(bearer_token=_strip_bearer(data[key]))
                if isinstance(data.get("asf_urs"), str):
                    return cls(asf_urs=data["asf_urs"])
                raise ValueError("the secret's JSON has no 'bearer_token', 'access_token' or 'asf_urs' string")
            return cls(bearer_token=_strip_bearer(text))
        except ValueError as exc:
            raise EdlTokenRejected(
                f"secret {secret_name} does not hold a usable EDL token ({exc}). {renewal_hint(secret_name)}"
            ) from None


def _strip_bearer(value: str) -> str:
    value = value.strip()
    return value[7:] if value[:7].lower() == "bearer " else value


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None, outcome: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.outcome = outcome


class TeaClient:
    """Fetches S3 credentials from one TEA endpoint, with bounded retries for transient failures.

    Retried (``max_attempts`` in total, exponential backoff with jitter through the injected ``sleep``):
    429, 5xx, timeouts and connection errors, and a 2xx whose body is not a credentials document (truncated,
    not JSON, HTML, fields missing); afterwards TeaUnavailable (which Step Functions retries too). Not retried:
    the definitive answers (3xx/401/400 → EdlTokenRejected, 403 → EulaNotAccepted/TeaForbidden, 404 →
    ConfigurationError, another status → TeaBadResponse). Every HTTP attempt is reported to ``on_request``
    callbacks with ``{"status": int | None, "outcome": str, "seconds": float, "attempt": int}``.
    """

    def __init__(
        self,
        endpoint: str,
        app_name: str,
        timeout_seconds: float,
        session: HttpSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        *,
        token_secret_name: str = UNNAMED_TOKEN_SECRET,
        on_request: RequestCallback | None = None,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        jitter: Callable[[], float] = random.random,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.endpoint, self.host = base_url(endpoint, "TEA endpoint", "the EDL token is sent to it")
        self.url = self.endpoint + CREDENTIALS_PATH
        self.app_name = sanitize_app_name(app_name)
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.token_secret_name = token_secret_name
        self._session: HttpSession = session or UrllibSession(MAX_BODY_BYTES)
        self._sleep = sleep
        self._on_request = on_request
        self._backoff_base = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._jitter = jitter
        self._wall_clock = wall_clock

    def __repr__(self) -> str:
        return f"TeaClient(url={self.url!r}, app_name={self.app_name!r}, max_attempts={self.max_attempts})"

    # -- public -----------------------------------------------------------------------------------

    def fetch(self, auth: TeaAuth, on_request: RequestCallback | None = None) -> TeaCredentials:
        """GET /s3credentials and return the parsed credentials, or raise a named TeacopyError."""
        callbacks = [cb for cb in (self._on_request, on_request) if cb is not None]
        last_reason, last_outcome = "no attempt made", None
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(auth, attempt, callbacks)
            except _Retryable as retry:
                last_reason, last_outcome = retry.reason, retry.outcome
                if attempt >= self.max_attempts:
                    break
                delay = self._backoff(attempt, retry.retry_after)
                logger.warning(
                    "TEA attempt failed, retrying",
                    extra={
                        "tea_host": self.host,
                        "attempt": attempt,
                        "max_attempts": self.max_attempts,
                        "reason": retry.reason,
                        "retry_in_seconds": round(delay, 3),
                    },
                )
                self._sleep(delay)
        hint = (
            " If it persists, check that the endpoint is a TEA/Cumulus distribution API (cdk.json tea_endpoint)."
            if last_outcome == BAD_RESPONSE
            else ""
        )
        raise TeaUnavailable(
            f"TEA at {self.host} is unavailable after {self.max_attempts} attempt(s): {last_reason}. "
            "This is usually transient (TEA or Earthdata Login outage); the job retries it." + hint
        )

    # -- internals --------------------------------------------------------------------------------

    def _headers(self, auth: TeaAuth) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.app_name:
            headers["app-name"] = self.app_name
        headers.update(auth.headers())
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = backoff_delay(attempt, self._backoff_base, self.backoff_max_seconds, self._jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_seconds))
        return delay

    def _attempt(self, auth: TeaAuth, attempt: int, callbacks: list[RequestCallback]) -> TeaCredentials:
        started = time.monotonic()
        status: int | None = None
        outcome = "error"
        try:
            try:
                response = self._session.get(self.url, self._headers(auth), self.timeout_seconds)
            except HttpTransportError as exc:
                outcome = "timeout" if exc.timed_out else "connection_error"
                raise _Retryable(str(exc)) from None
            except ValueError as exc:  # e.g. an invalid URL or header value
                outcome = "client_error"
                raise ConfigurationError(
                    f"cannot build the TEA request for {self.host}: {type(exc).__name__}"
                ) from None
            status = response.status
            credentials, outcome = self._classify(response)
            return credentials
        except TeacopyError as exc:
            outcome = getattr(exc, "outcome", outcome)
            raise
        except _Retryable as retry:
            outcome = retry.outcome or outcome
            raise
        finally:
            seconds = round(time.monotonic() - started, 3)
            detail = {"status": status, "outcome": outcome, "seconds": seconds, "attempt": attempt}
            logger.info("TEA request", extra={"tea_host": self.host, **detail})
            for callback in callbacks:
                callback(detail)

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        return retry_after_seconds(headers, self._wall_clock)

    def _classify(self, response: HttpResponse) -> tuple[TeaCredentials, str]:
        """Map one HTTP answer to credentials or a named error. Sets ``outcome`` on raised errors."""
        status, headers, body = response.status, response.headers, response.body
        content_type = headers.get("content-type", "")
        if 200 <= status < 300:
            return self._parse_success(status, content_type, body), "ok"
        if status in _REDIRECT_CODES:
            location = headers.get("location", "")
            target = urllib.parse.urlsplit(location).hostname or "an unknown location"
            what = "Earthdata Login" if target == EDL_HOST else target
            raise _tag(
                EdlTokenRejected(
                    f"TEA at {self.host} redirected to {what} (HTTP {status}) instead of issuing credentials. "
                    + renewal_hint(self.token_secret_name)
                ),
                "redirect",
            )
        if status == 401:
            raise _tag(
                EdlTokenRejected(
                    f"TEA at {self.host} answered 401 Unauthorized. " + renewal_hint(self.token_secret_name)
                ),
                "unauthorized",
            )
        if status == 400:
            raise _tag(
                EdlTokenRejected(
                    f"TEA at {self.host} rejected the Authorization header as malformed (HTTP 400). "
                    + renewal_hint(self.token_secret_name)
                ),
                "bad_request",
            )
        if status == 403:
            document = _try_json(body)
            if isinstance(document, dict) and isinstance(document.get("resolution_url"), str):
                description = safe_snippet(str(document.get("error_description") or "EULA not accepted"), 200)
                url = document["resolution_url"].strip()
                raise _tag(
                    EulaNotAccepted(
                        f"TEA at {self.host} refused credentials: {description}. The EDL user that owns the token "
                        f"must accept the EULA at {url} (log in to Earthdata Login first), then rerun the job."
                    ),
                    "eula",
                )
            raise _tag(
                TeaForbidden(
                    f"TEA at {self.host} answered 403 Forbidden: the EDL user has no access to this DAAC's buckets. "
                    "Check the user's application authorizations/group memberships in Earthdata Login, or that the "
                    "endpoint matches the collection's S3CredentialsAPIEndpoint."
                ),
                "forbidden",
            )
        if status == 429:
            raise _Retryable("TEA answered 429 Too Many Requests", self._retry_after(headers), "throttled")
        if status >= 500:
            raise _Retryable(f"TEA answered HTTP {status}", self._retry_after(headers), "server_error")
        if status == 404:
            raise _tag(
                ConfigurationError(
                    f"{self.url} does not exist (HTTP 404): check the TEA endpoint (TEACOPY_TEA_ENDPOINT); "
                    "it must be the collection's S3CredentialsAPIEndpoint without /s3credentials."
                ),
                "not_found",
            )
        raise _tag(TeaBadResponse(f"TEA at {self.host} answered unexpected HTTP {status}"), "unexpected_status")

    def _parse_success(self, status: int, content_type: str, body: bytes) -> TeaCredentials:
        """The credentials of a 2xx answer; ``_Retryable`` (outcome BAD_RESPONSE) when the body is not a credentials
        document: a truncated or garbled answer is no verdict on the token, so it is asked again."""
        if len(body) > MAX_BODY_BYTES:
            raise _Retryable(
                f"TEA at {self.host} answered HTTP {status} with more than {MAX_BODY_BYTES // 1024} KiB: "
                "not a credentials document",
                None,
                BAD_RESPONSE,
            )
        text = body.decode("utf-8", errors="replace").strip()
        if not text:
            raise _Retryable(f"TEA at {self.host} answered HTTP {status} with an empty body", None, BAD_RESPONSE)
        if text.startswith("<"):
            raise _Retryable(
                f"TEA at {self.host} answered HTTP {status} with HTML instead of a credentials document "
                f"(content-type {printable(content_type)!r}); is the endpoint a TEA/Cumulus "
                "distribution API?",
                None,
                BAD_RESPONSE,
            )
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise _Retryable(
                f"TEA at {self.host} answered HTTP {status} with a body that is not JSON "
                f"({len(body)} bytes, starting {safe_snippet(text)!r})",
                None,
                BAD_RESPONSE,
            ) from None
        try:
            return TeaCredentials.from_tea_json(document)
        except ValueError as exc:
            raise _Retryable(
                f"TEA at {self.host} answered HTTP {status} but not with a usable credentials document: "
                f"{printable(str(exc), 200)}",
                None,
                BAD_RESPONSE,
            ) from None


def _tag(exc: Exception, outcome: str) -> Exception:
    exc.outcome = outcome  # type: ignore[attr-defined]
    return exc


def _try_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", errors="replace").strip() or "null")
    except json.JSONDecodeError:
        return None
