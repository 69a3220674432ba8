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

Only the stdlib is used (the Lambda runtime has no ``requests``). Every exception message is safe to
show to the operator: it never contains the EDL token, the cookie or any credential.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
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

logger = logging.getLogger(__name__)

USER_AGENT = "teacopy/0.1 (+python-urllib)"
EDL_HOST = "urs.earthdata.nasa.gov"
EDL_PROFILE_URL = "https://urs.earthdata.nasa.gov/profile"
UNNAMED_TOKEN_SECRET = "<EDL token secret>"  # noqa: S105 - a label for messages, not a secret
CREDENTIALS_PATH = "/s3credentials"
APP_NAME_MAX = 64
MAX_BODY_BYTES = 256 * 1024  # a credentials document is ~1.5 KB; never buffer more than this
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_APP_NAME_DISALLOWED = re.compile(r"[^\w+=,.@-]", re.ASCII)
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9+/=_-]{12,}")
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

RequestCallback = Callable[[dict[str, Any]], None]


def sanitize_app_name(app_name: str) -> str:
    """Restrict the ``app-name`` header to ``[\\w+=,.@-]`` (TEA puts it in an STS session name), <= 64."""
    return _APP_NAME_DISALLOWED.sub("", app_name)[:APP_NAME_MAX]


def _printable(text: str, limit: int) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text[:limit])


def safe_snippet(text: str, limit: int = 40) -> str:
    """A short printable excerpt with every credential-looking run (>= 12 token chars) redacted."""
    excerpt = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    excerpt = _CREDENTIAL_LIKE.sub("<redacted>", excerpt)
    return excerpt[:limit] + ("..." if len(excerpt) > limit else "")


def printable(text: str, limit: int = 60) -> str:
    """A header value (e.g. Content-Type) for a message: printable characters only, no redaction."""
    excerpt = "".join(ch if ch.isprintable() else " " for ch in text[:limit])
    return excerpt + ("..." if len(text) > limit else "")


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: TEA's 302 to Earthdata Login means the token was rejected.

    Returning None makes urllib raise HTTPError with the 3xx status.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def build_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect())


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
    429, 5xx, timeouts and connection errors; afterwards TeaUnavailable. Not retried: every other
    answer (3xx/401/400 → EdlTokenRejected, 403 → EulaNotAccepted/TeaForbidden, bad 2xx body →
    TeaBadResponse). Every HTTP attempt is reported to ``on_request`` callbacks with
    ``{"status": int | None, "outcome": str, "seconds": float, "attempt": int}``.
    """

    def __init__(
        self,
        endpoint: str,
        app_name: str,
        timeout_seconds: float,
        opener: urllib.request.OpenerDirector | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        *,
        token_secret_name: str = UNNAMED_TOKEN_SECRET,
        on_request: RequestCallback | None = None,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        parsed = urllib.parse.urlsplit(endpoint.strip())
        host = parsed.hostname or ""
        if parsed.scheme not in ("https", "http") or not host:
            raise ConfigurationError(f"TEA endpoint must be an https:// URL, got {safe_snippet(endpoint, 80)!r}")
        if parsed.scheme == "http" and host not in _LOOPBACK_HOSTS:
            raise ConfigurationError(f"TEA endpoint {host} must use https:// (the EDL token is sent to it)")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.endpoint = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.host = host
        self.url = self.endpoint + CREDENTIALS_PATH
        self.app_name = sanitize_app_name(app_name)
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.token_secret_name = token_secret_name
        self._opener = opener or build_opener()
        self._sleep = sleep
        self._on_request = on_request
        self._backoff_base = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._jitter = jitter

    def __repr__(self) -> str:
        return f"TeaClient(url={self.url!r}, app_name={self.app_name!r}, max_attempts={self.max_attempts})"

    # -- public -----------------------------------------------------------------------------------

    def fetch(self, auth: TeaAuth, on_request: RequestCallback | None = None) -> TeaCredentials:
        """GET /s3credentials and return the parsed credentials, or raise a named TeacopyError."""
        callbacks = [cb for cb in (self._on_request, on_request) if cb is not None]
        last_reason = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(auth, attempt, callbacks)
            except _Retryable as retry:
                last_reason = retry.reason
                if attempt >= self.max_attempts:
                    break
                delay = self._backoff(attempt, retry.retry_after)
                logger.warning(
                    "TEA attempt %d/%d failed (%s); retrying in %.2f s",
                    attempt,
                    self.max_attempts,
                    retry.reason,
                    delay,
                )
                self._sleep(delay)
        raise TeaUnavailable(
            f"TEA at {self.host} is unavailable after {self.max_attempts} attempt(s): {last_reason}. "
            "This is usually transient (TEA or Earthdata Login outage); the job retries it."
        )

    # -- internals --------------------------------------------------------------------------------

    def _headers(self, auth: TeaAuth) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.app_name:
            headers["app-name"] = self.app_name
        headers.update(auth.headers())
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_max_seconds, self._backoff_base * (2 ** (attempt - 1)))
        delay = ceiling / 2 + self._jitter() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_seconds))
        return delay

    def _attempt(self, auth: TeaAuth, attempt: int, callbacks: list[RequestCallback]) -> TeaCredentials:
        request = urllib.request.Request(self.url, headers=self._headers(auth), method="GET")  # noqa: S310
        started = time.monotonic()
        status: int | None = None
        outcome = "error"
        try:
            try:
                with self._opener.open(request, timeout=self.timeout_seconds) as response:
                    status = int(response.status)
                    body = response.read(MAX_BODY_BYTES)
                    headers: Message = response.headers
            except urllib.error.HTTPError as err:
                status = int(err.code)
                headers = err.headers
                try:
                    body = err.read(MAX_BODY_BYTES) if err.fp is not None else b""
                except (TimeoutError, http.client.HTTPException, OSError):
                    body = b""
                finally:
                    err.close()
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as exc:
                outcome = "timeout" if _is_timeout(exc) else "connection_error"
                raise _Retryable(_describe_network_error(exc, self.timeout_seconds)) from None
            except ValueError as exc:  # e.g. an invalid URL or header value
                outcome = "client_error"
                raise ConfigurationError(
                    f"cannot build the TEA request for {self.host}: {type(exc).__name__}"
                ) from None
            credentials, outcome = self._classify(status, headers, body)
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
            logger.info("TEA request %s: status=%s outcome=%s seconds=%.3f", attempt, status, outcome, seconds)
            for callback in callbacks:
                callback(detail)

    def _classify(self, status: int, headers: Message, body: bytes) -> tuple[TeaCredentials, str]:
        """Map one HTTP answer to credentials or a named error. Sets ``outcome`` on raised errors."""
        content_type = headers.get("Content-Type", "") if headers is not None else ""
        if 200 <= status < 300:
            return self._parse_success(status, content_type, body), "ok"
        if status in _REDIRECT_CODES:
            location = headers.get("Location", "") if headers is not None else ""
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
            raise _Retryable("TEA answered 429 Too Many Requests", _retry_after(headers), "throttled")
        if status >= 500:
            raise _Retryable(f"TEA answered HTTP {status}", _retry_after(headers), "server_error")
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
        text = body.decode("utf-8", errors="replace").strip()
        if not text:
            raise _tag(TeaBadResponse(f"TEA at {self.host} answered HTTP {status} with an empty body"), "bad_response")
        if text.startswith("<"):
            raise _tag(
                TeaBadResponse(
                    f"TEA at {self.host} answered HTTP {status} with HTML instead of a credentials document "
                    f"(content-type {printable(content_type)!r}); is the endpoint a TEA/Cumulus "
                    "distribution API?"
                ),
                "bad_response",
            )
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise _tag(
                TeaBadResponse(
                    f"TEA at {self.host} answered HTTP {status} with a body that is not JSON "
                    f"({len(body)} bytes, starting {safe_snippet(text)!r})"
                ),
                "bad_response",
            ) from None
        try:
            return TeaCredentials.from_tea_json(document)
        except ValueError as exc:
            raise _tag(
                TeaBadResponse(
                    f"TEA at {self.host} answered HTTP {status} but not with a usable credentials document: "
                    f"{_printable(str(exc), 200)}"
                ),
                "bad_response",
            ) from None


def _tag(exc: Exception, outcome: str) -> Exception:
    exc.outcome = outcome  # type: ignore[attr-defined]
    return exc


def _try_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", errors="replace").strip() or "null")
    except json.JSONDecodeError:
        return None


def _retry_after(headers: Mapping[str, str] | Message | None) -> float | None:
    if headers is None:
        return None
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    reason = getattr(exc, "reason", None)
    return isinstance(reason, TimeoutError) or "timed out" in str(reason or exc).lower()


def _describe_network_error(exc: BaseException, timeout_seconds: float) -> str:
    if _is_timeout(exc):
        return f"timed out after {timeout_seconds:g} s"
    reason = getattr(exc, "reason", exc)
    return f"connection failed ({type(reason).__name__})"
