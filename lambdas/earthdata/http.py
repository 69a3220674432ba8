"""HTTP basics the TEA and CMR clients share: one GET, URL and retry rules, message hygiene.

Only the stdlib is used (the Lambda runtime has no ``requests``). What lives here, once:

- ``USER_AGENT``: a non-browser User-Agent (TEA answers a User-Agent starting with "Mozilla" with HTML);
- ``base_url``: https only, plain http only to a loopback address (the local emulators);
- ``UrllibSession``: a GET that never follows a redirect (TEA's 302 to Earthdata Login means "token
  rejected"), reads at most a bounded number of body bytes, lower-cases header names, and turns every
  network-level failure into ``HttpTransportError`` with a message that is safe to show;
- ``backoff_delay`` (exponential, capped, with jitter) and ``retry_after_seconds`` (``Retry-After`` in
  seconds or as an HTTP date).

The clients take any ``HttpSession`` (tests inject scripted ones) and decide themselves what a status means.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from lambdas.contracts.errors import ConfigurationError

USER_AGENT = "teacopy/0.1 (+python-urllib)"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far at most (enough for any JSON error document)
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9+/=_-]{12,}")


# --- message hygiene ----------------------------------------------------------------------------------


def safe_snippet(text: str, limit: int = 40) -> str:
    """A short printable excerpt with every credential-looking run (>= 12 token chars) redacted."""
    excerpt = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    excerpt = _CREDENTIAL_LIKE.sub("<redacted>", excerpt)
    return excerpt[:limit] + ("..." if len(excerpt) > limit else "")


def printable(text: str, limit: int = 60) -> str:
    """A header value (e.g. Content-Type) for a message: printable characters only, no redaction."""
    excerpt = "".join(ch if ch.isprintable() else " " for ch in text[:limit])
    return excerpt + ("..." if len(text) > limit else "")


# --- URLs -------------------------------------------------------------------------------------------------


def base_url(url: str, what: str, why_https: str) -> tuple[str, str]:
    """``(scheme://netloc/path without a trailing slash, host)``; ConfigurationError unless https (or http to
    a loopback address). ``what`` names the setting in the message, ``why_https`` says why http is refused."""
    parsed = urllib.parse.urlsplit(url.strip())
    host = parsed.hostname or ""
    if parsed.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"{what} must be an https:// URL, got {safe_snippet(url, 80)!r}")
    if parsed.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ConfigurationError(f"{what} {host} must use https:// ({why_https})")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}", host


# --- one GET ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class HttpTransportError(Exception):
    """A network-level failure (timeout, refused connection, reset): worth retrying. The message is safe to show."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class HttpSession(Protocol):
    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse: ...


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: returning None makes urllib raise HTTPError with the 3xx status."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def build_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(NoRedirect())


class UrllibSession:
    """The default session: stdlib urllib, no redirects followed, at most ``max_body_bytes`` + 1 body bytes read
    (so a caller can tell "too large" from "exactly the limit"), error bodies at most ``ERROR_BODY_BYTES``.

    A ValueError (an invalid URL or header value) is not a network error: it propagates.
    """

    def __init__(self, max_body_bytes: int, opener: urllib.request.OpenerDirector | None = None) -> None:
        self._opener = opener or build_opener()
        self.max_body_bytes = max_body_bytes

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310 - base_url checked
        try:
            try:
                with self._opener.open(request, timeout=timeout) as response:
                    body = response.read(self.max_body_bytes + 1)
                    return HttpResponse(int(response.status), lower_headers(response.headers.items()), body)
            except urllib.error.HTTPError as err:
                try:
                    body = err.read(min(ERROR_BODY_BYTES, self.max_body_bytes)) if err.fp is not None else b""
                except (TimeoutError, http.client.HTTPException, OSError):
                    body = b""
                finally:
                    err.close()
                return HttpResponse(int(err.code), lower_headers(err.headers.items() if err.headers else []), body)
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise HttpTransportError(describe_network_error(exc, timeout), timed_out=is_timeout(exc)) from None


def lower_headers(items: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    reason = getattr(exc, "reason", None)
    return isinstance(reason, TimeoutError) or "timed out" in str(reason or exc).lower()


def describe_network_error(exc: BaseException, timeout_seconds: float) -> str:
    """What went wrong, without the exception's own text (it may echo a URL or a header)."""
    if is_timeout(exc):
        return f"timed out after {timeout_seconds:g} s"
    reason = getattr(exc, "reason", exc)
    return f"connection failed ({type(reason).__name__})"


# --- retries ----------------------------------------------------------------------------------------------


def backoff_delay(attempt: int, base_seconds: float, max_seconds: float, jitter: Callable[[], float]) -> float:
    """The wait after failed ``attempt`` (1-based): exponential, capped at ``max_seconds``, jittered into
    ``[ceiling / 2, ceiling]`` (``jitter()`` in [0, 1]) so that many clients do not retry in step."""
    ceiling = min(max_seconds, base_seconds * (2 ** (attempt - 1)))
    return ceiling / 2 + jitter() * ceiling / 2


def retry_after_seconds(headers: Mapping[str, str], now: Callable[[], datetime]) -> float | None:
    """``Retry-After`` (lower-case header names) in seconds: a number, or an HTTP date measured from ``now()``.
    None when absent or unreadable; never negative."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())
