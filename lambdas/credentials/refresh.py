"""The TEA credentials cache, the refresh lease, and the coalesced refresh logic.

Design
------
- The cache is one Secrets Manager secret. Each ``PutSecretValue`` creates a version that becomes
  ``AWSCURRENT``; the state machine and the workers only ever carry a ``CredentialsRef``
  (``{"version", "expiration"}``), never the credentials themselves. Workers read the version they
  were given with ``GetSecretValue(VersionId=...)``; superseded versions stay readable (Secrets Manager
  keeps them until it prunes deprecated versions beyond its quota, and then ``get`` answers
  CredentialsExpired, which routes the worker to a refresh).
- Refreshes are coalesced: thousands of map children can hit ExpiredToken within the same second,
  and TEA has no rate limiting or caching (every call is an ``sts:AssumeRole``). A caller presents the
  version it used (``used_version``); if the cache already holds a *different* version with enough
  time left, it is returned without calling TEA. Otherwise one caller wins a DynamoDB lease, re-checks
  the cache, calls TEA once and stores the result; the others poll the cache until the new version
  appears (bounded), then raise RefreshInProgress (retried by Step Functions).

Clock skew
----------
``margin_seconds`` (TEACOPY_SAFETY_MARGIN_SECONDS, default 300 s) absorbs clock skew between the
workers, TEA/STS and S3, plus the length of one unit of work: credentials are considered unusable
when they have ``margin_seconds`` or less left by *our* clock. The clock is never the final word:
S3's ``ExpiredToken`` answer is the authoritative signal — the copy worker raises CredentialsExpired
on it regardless of what its clock says, and the refresh then treats ``used_version`` as unusable even
if it still looks fresh. If TEA hands out credentials that are already within the margin (a skewed
clock on either side), we raise CredentialsUnusable instead of refreshing again: that would loop.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import (
    ConfigurationError,
    CredentialsUnusable,
    EdlTokenRejected,
    EulaNotAccepted,
    InvalidInput,
    RefreshInProgress,
    TeaBadResponse,
    TeaForbidden,
    TeaUnavailable,
)
from lambdas.contracts.events import CredentialsRequest
from lambdas.contracts.models import (
    DEFAULT_ENDPOINT,
    CredentialsRef,
    TeaCredentials,
    format_time,
)
from lambdas.contracts.settings import CredentialSettings
from lambdas.contracts.staging import record_event
from lambdas.credentials.cache import Clock, CredentialCache, utc_now
from lambdas.credentials.lease import DEFAULT_LEASE_TTL_SECONDS, RefreshLease
from lambdas.earthdata.tea import RequestCallback, TeaAuth, TeaClient, renewal_hint
from lambdas.observability.metrics import MetricsSink, record_refresh, record_tea_request
from lambdas.s3.codes import error_code

logger = logging.getLogger(__name__)


def _usable(
    found: tuple[CredentialsRef, TeaCredentials] | None, used_version: str | None, margin_seconds: int, now: datetime
) -> CredentialsRef | None:
    if found is None:
        return None
    ref, creds = found
    if used_version is not None and ref.version == used_version:
        return None
    if creds.seconds_left(now) <= margin_seconds:
        return None
    return ref


def ensure_fresh(
    *,
    cache: CredentialCache,
    lease: RefreshLease,
    tea: TeaClient,
    auth_loader: Callable[[], TeaAuth],
    used_version: str | None,
    margin_seconds: int,
    clock: Clock,
    sleep: Callable[[float], None],
    wait_seconds: float = 30,
    poll_seconds: float = 0.5,
    on_tea_request: RequestCallback | None = None,
    lease_ttl_seconds: int = DEFAULT_LEASE_TTL_SECONDS,
) -> tuple[CredentialsRef, bool]:
    """Return usable credentials, calling TEA only when needed and at most once across callers.

    ``used_version`` is the version the caller found expired (None for the initial fetch). Returns
    ``(ref, fetched)`` where ``fetched`` says whether *this* call obtained the credentials from TEA.
    Raises CredentialsUnusable (TEA's credentials are within the margin: never retried, never looped),
    RefreshInProgress (another caller holds the lease past ``wait_seconds``), or TEA's errors.

    ``margin_seconds`` absorbs clock skew between this worker and TEA/S3; it is a heuristic only. The
    authoritative expiry signal is S3's ``ExpiredToken``: the copy worker raises CredentialsExpired on
    it regardless of its clock and passes the version it used, which is then never handed back.
    """
    ref = _usable(cache.current(), used_version, margin_seconds, clock())
    if ref is not None:
        return ref, False

    owner = uuid.uuid4().hex
    deadline = clock().timestamp() + wait_seconds
    while True:
        if lease.acquire(owner, lease_ttl_seconds, clock().timestamp()):
            return _refresh_as_holder(
                cache=cache,
                lease=lease,
                owner=owner,
                tea=tea,
                auth_loader=auth_loader,
                used_version=used_version,
                margin_seconds=margin_seconds,
                clock=clock,
                on_tea_request=on_tea_request,
            )
        holder_expires_at = lease.holder_expires_at
        # Someone else is refreshing: wait for their version to appear in the cache.
        while True:
            now = clock().timestamp()
            if now >= deadline:
                raise RefreshInProgress(
                    f"another caller is refreshing the TEA credentials and did not finish within {wait_seconds:g} s"
                )
            sleep(min(poll_seconds, max(deadline - now, 0.0)))
            ref = _usable(cache.current(), used_version, margin_seconds, clock())
            if ref is not None:
                return ref, False
            if holder_expires_at is None or clock().timestamp() > holder_expires_at:
                break  # the holder's lease may have expired (it died): try to take it over


def _refresh_as_holder(
    *,
    cache: CredentialCache,
    lease: RefreshLease,
    owner: str,
    tea: TeaClient,
    auth_loader: Callable[[], TeaAuth],
    used_version: str | None,
    margin_seconds: int,
    clock: Clock,
    on_tea_request: RequestCallback | None,
) -> tuple[CredentialsRef, bool]:
    try:
        # Double-checked: a previous holder may have stored fresh credentials since our first look.
        ref = _usable(cache.current(), used_version, margin_seconds, clock())
        if ref is not None:
            return ref, False
        creds = tea.fetch(auth_loader(), on_request=on_tea_request)
        now = clock()
        left = creds.seconds_left(now)
        if left <= margin_seconds:
            raise CredentialsUnusable(
                f"TEA issued credentials expiring at {format_time(creds.expiration)}, within the safety margin of "
                f"{margin_seconds} s ({left:.0f} s left by this worker's clock, now {format_time(now)}); "
                "check clocks (ours and TEA's) or lower TEACOPY_SAFETY_MARGIN_SECONDS. Not retried: it would loop."
            )
        ref = cache.put(creds)
        logger.info("stored new TEA credentials", extra={"version": ref.version, "expiration": ref.expiration})
        return ref, True
    finally:
        lease.release(owner)


# -- the RefreshCredentials Lambda's logic ---------------------------------------------------------


def lease_ttl_for(tea: TeaClient) -> int:
    """A lease outlives the holder's worst case: every attempt timing out plus the backoff sleeps."""
    worst = tea.timeout_seconds * tea.max_attempts + tea.backoff_max_seconds * (tea.max_attempts - 1) + 10
    return max(DEFAULT_LEASE_TTL_SECONDS, math.ceil(worst))


def load_token(secrets_client: Any, secret_id: str) -> TeaAuth:
    """Read the EDL token secret (only when TEA is actually called) and parse it."""
    try:
        response = secrets_client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            raise EdlTokenRejected(f"secret {secret_id} holds no EDL token. {renewal_hint(secret_id)}") from None
        if code in ("AccessDeniedException", "DecryptionFailure"):
            raise ConfigurationError(f"cannot read the EDL token secret {secret_id} ({code})") from None
        raise
    return TeaAuth.from_secret_string(response.get("SecretString") or "", secret_name=secret_id)


@dataclass
class CredentialDeps:
    """Everything ``handle_credentials_request`` needs, injected (tests build it with moto clients)."""

    settings: CredentialSettings
    secrets: Any
    dynamodb: Any
    s3: Any
    tea: TeaClient | None = None  # the "default" endpoint's client (tests inject one)
    clock: Clock = utc_now
    sleep: Callable[[float], None] = time.sleep
    wait_seconds: float = 30
    poll_seconds: float = 0.5
    teas: dict[str, TeaClient] = field(default_factory=dict)  # the other endpoints' clients (built lazily)
    _caches: dict[str, CredentialCache] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.tea is None:
            self.tea = self._client_for(self.settings.tea_endpoint)
        self.teas[DEFAULT_ENDPOINT] = self.tea
        self._caches[DEFAULT_ENDPOINT] = CredentialCache(self.secrets, self.settings.credentials_secret_id)

    def _client_for(self, url: str) -> TeaClient:
        return TeaClient(
            url,
            self.settings.app_name,
            self.settings.tea_timeout_seconds,
            token_secret_name=self.settings.token_secret_id,
        )

    def for_endpoint(self, name: str) -> tuple[TeaClient, CredentialCache, RefreshLease]:
        """The TEA client, cache and refresh lease of one configured endpoint (each coalesced on its own)."""
        try:
            endpoint = self.settings.endpoint(name)
        except KeyError:
            known = ", ".join(self.settings.endpoint_names)
            raise InvalidInput("endpoint", f"{name!r} is not a configured TEA endpoint (configured: {known})") from None
        if name not in self.teas:
            self.teas[name] = self._client_for(endpoint.url)
        if name not in self._caches:
            self._caches[name] = CredentialCache(self.secrets, endpoint.cache_secret_id)
        lease = RefreshLease(self.dynamodb, self.settings.lock_table, f"tea-refresh#{endpoint.cache_secret_id}")
        return self.teas[name], self._caches[name], lease


# Errors whose message tells the operator what to do; recorded in the run's staging events too.
OPERATOR_ERRORS = (CredentialsUnusable, EdlTokenRejected, EulaNotAccepted, TeaForbidden, TeaBadResponse, TeaUnavailable)


def handle_credentials_request(
    event: Any, deps: CredentialDeps, wait_seconds: float | None = None, metrics: MetricsSink | None = None
) -> dict[str, Any]:
    """Serve one fetch/refresh call; return only references ``{"version", "expiration"}`` (never secrets).

    The shape of the answer follows the request (see CredentialsRequest). ``metrics`` (optional)
    records each TEA request (count, latency, errors) and each refresh.
    """
    request = CredentialsRequest.from_event(event)
    try:
        names = request.endpoints if request.endpoints is not None else (request.endpoint,)
        used = None if request.endpoints is not None else request.used_version
        refs = {name: _serve(request, name, used, deps, wait_seconds, metrics) for name in names}
    except OPERATOR_ERRORS as exc:
        # What the operator must read (renew the token, accept a EULA, ...): kept for Summarize's report,
        # since a failed map child's own error does not reach the execution's cause.
        _record_error(deps, request, exc)
        raise
    return request.answer(refs)


def _record_error(deps: CredentialDeps, request: CredentialsRequest, error: Exception) -> None:
    detail = {"error": type(error).__name__, "message": str(error)[:1000], "endpoint": request.endpoint}
    try:
        record_event(deps.s3, deps.settings.staging_bucket, request.run_id, "errors", detail)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not record a credentials error in the run's events", extra={"error": type(exc).__name__})


def _serve(
    request: CredentialsRequest,
    endpoint: str,
    used_version: str | None,
    deps: CredentialDeps,
    wait_seconds: float | None,
    metrics: MetricsSink | None,
) -> CredentialsRef:
    """Fresh credentials of one endpoint: from its cache, or one coalesced TEA call."""
    settings = deps.settings
    tea, cache, lease = deps.for_endpoint(endpoint)

    def record(kind: str, detail: dict[str, Any]) -> None:
        try:
            record_event(deps.s3, settings.staging_bucket, request.run_id, kind, detail)
        except (ClientError, BotoCoreError) as exc:
            # The event log is telemetry: losing one entry must not fail the credentials call.
            logger.warning(
                "could not record an event in the run's events", extra={"event": kind, "error": type(exc).__name__}
            )

    def on_tea_request(detail: dict[str, Any]) -> None:
        if metrics is not None:
            record_tea_request(metrics, detail)
        record(
            "tea",
            {
                "status": detail.get("status"),
                "outcome": detail.get("outcome"),
                "seconds": detail.get("seconds"),
                "action": request.action,
                "endpoint": endpoint,
            },
        )

    ref, fetched = ensure_fresh(
        cache=cache,
        lease=lease,
        tea=tea,
        auth_loader=lambda: load_token(deps.secrets, settings.token_secret_id),
        used_version=used_version,
        margin_seconds=settings.safety_margin_seconds,
        clock=deps.clock,
        sleep=deps.sleep,
        wait_seconds=deps.wait_seconds if wait_seconds is None else wait_seconds,
        poll_seconds=deps.poll_seconds,
        on_tea_request=on_tea_request,
        lease_ttl_seconds=lease_ttl_for(tea),
    )
    logger.info(
        "credentials served",
        extra={
            "endpoint": endpoint,  # one of possibly several in this call
            "used_version": used_version,
            "version": ref.version,
            "expiration": ref.expiration,
            "fetched": fetched,
        },
    )
    if request.action == "refresh":
        if metrics is not None:
            record_refresh(metrics, fetched)
        record(
            "refresh",
            {"fetched": fetched, "used_version": used_version, "new_version": ref.version, "endpoint": endpoint},
        )
    return ref
