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

import json
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from .errors import (
    ConfigurationError,
    CredentialsExpired,
    CredentialsUnusable,
    EdlTokenRejected,
    EulaNotAccepted,
    InvalidInput,
    RefreshInProgress,
    TeaBadResponse,
    TeaForbidden,
    TeaUnavailable,
)
from .metrics import MetricsSink, record_refresh, record_tea_request
from .models import DEFAULT_ENDPOINT, ENDPOINT_NAME_RE, CredentialsRef, TeaCredentials, credentials_for, format_time
from .settings import CredentialSettings
from .staging import record_event
from .tea import RequestCallback, TeaAuth, TeaClient, renewal_hint

logger = logging.getLogger(__name__)

# The stack initialises the cache secret with a placeholder (``{"placeholder": true, "nonce": ...}``).
# Any value that is not a credentials document means "no credentials yet", so its form is not load-bearing.
# DynamoDB lease table: partition key (string) and the expiry attribute (epoch seconds, usable as TTL).
LEASE_KEY_ATTRIBUTE = "lease_id"
LEASE_EXPIRY_ATTRIBUTE = "expires_at"
DEFAULT_LEASE_TTL_SECONDS = 60
ACTIONS = ("fetch", "refresh")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class CredentialCache:
    """TEA credentials kept in a Secrets Manager secret; one version per credential set.

    Parsed versions are memoised per instance (i.e. per warm Lambda container when the instance is
    module-level): a version's content never changes, so a hit needs no API call.
    """

    MEMO_SIZE = 16

    def __init__(self, secrets_client: Any, secret_id: str) -> None:
        self._client = secrets_client
        self.secret_id = secret_id
        self._memo: OrderedDict[str, TeaCredentials] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CredentialCache(secret_id={self.secret_id!r})"

    def current(self) -> tuple[CredentialsRef, TeaCredentials] | None:
        """The AWSCURRENT credentials, or None while the secret holds the placeholder/anything unparsable."""
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                # The secret exists (the stack creates it) but has no AWSCURRENT value yet, or is missing.
                logger.warning("credentials cache %s has no current value (%s)", self.secret_id, code)
                return None
            if code in ("AccessDeniedException", "DecryptionFailure"):
                raise ConfigurationError(
                    f"cannot read the credentials cache secret {self.secret_id} ({code}): check the role/KMS policy"
                ) from None
            raise
        version = response["VersionId"]
        creds = self._parse(version, response.get("SecretString"))
        if creds is None:
            return None
        return CredentialsRef(version=version, expiration=format_time(creds.expiration)), creds

    def get(self, version: str) -> TeaCredentials:
        """The credentials stored as ``version``. CredentialsExpired if it is gone or unparsable."""
        with self._lock:
            hit = self._memo.get(version)
            if hit is not None:
                self._memo.move_to_end(version)
                return hit
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id, VersionId=version)
        except ParamValidationError:
            raise CredentialsExpired(f"credentials version {version!r} is not a valid cache version") from None
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("ResourceNotFoundException", "InvalidParameterException", "ValidationException"):
                raise CredentialsExpired(
                    f"credentials version {version} is no longer in the cache {self.secret_id}; refresh"
                ) from None
            if code in ("AccessDeniedException", "DecryptionFailure"):
                raise ConfigurationError(
                    f"cannot read the credentials cache secret {self.secret_id} ({code}): check the role/KMS policy"
                ) from None
            raise
        creds = self._parse(version, response.get("SecretString"))
        if creds is None:
            raise CredentialsExpired(f"credentials version {version} does not hold credentials; refresh")
        return creds

    def put(self, creds: TeaCredentials) -> CredentialsRef:
        """Store a new version; it becomes AWSCURRENT. Returns its reference."""
        try:
            response = self._client.put_secret_value(
                SecretId=self.secret_id, SecretString=json.dumps(creds.to_secret_payload())
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("ResourceNotFoundException", "AccessDeniedException"):
                raise ConfigurationError(
                    f"cannot write the credentials cache secret {self.secret_id} ({code}): check the stack"
                ) from None
            raise
        version = response["VersionId"]
        self._remember(version, creds)
        return CredentialsRef(version=version, expiration=format_time(creds.expiration))

    def _parse(self, version: str, secret_string: str | None) -> TeaCredentials | None:
        with self._lock:
            hit = self._memo.get(version)
        if hit is not None:
            return hit
        if not secret_string:
            return None
        try:
            creds = TeaCredentials.from_tea_json(json.loads(secret_string))
        except (json.JSONDecodeError, ValueError):
            logger.info("credentials cache %s version %s holds no credentials (placeholder?)", self.secret_id, version)
            return None
        self._remember(version, creds)
        return creds

    def _remember(self, version: str, creds: TeaCredentials) -> None:
        with self._lock:
            self._memo[version] = creds
            self._memo.move_to_end(version)
            while len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)


class RefreshLease:
    """A DynamoDB lease: at most one refresher calls TEA at a time; an abandoned lease expires.

    Item: ``{lease_id: S, owner: S, expires_at: N (epoch seconds)}``. After a failed ``acquire``,
    ``holder_expires_at`` tells when the current holder's lease runs out (None if unknown).
    """

    def __init__(self, dynamodb_client: Any, table_name: str, lease_id: str) -> None:
        self._client = dynamodb_client
        self.table_name = table_name
        self.lease_id = lease_id
        self.holder_expires_at: float | None = None

    def __repr__(self) -> str:
        return f"RefreshLease(table_name={self.table_name!r}, lease_id={self.lease_id!r})"

    def acquire(self, owner: str, ttl_seconds: int, now: float) -> bool:
        expires_at = now + ttl_seconds
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    LEASE_KEY_ATTRIBUTE: {"S": self.lease_id},
                    "owner": {"S": owner},
                    LEASE_EXPIRY_ATTRIBUTE: {"N": f"{expires_at:.3f}"},
                },
                ConditionExpression="attribute_not_exists(#key) OR #exp < :now",
                ExpressionAttributeNames={"#key": LEASE_KEY_ATTRIBUTE, "#exp": LEASE_EXPIRY_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            held = exc.response.get("Item", {}).get(LEASE_EXPIRY_ATTRIBUTE, {}).get("N")
            try:
                self.holder_expires_at = float(held) if held is not None else None
            except ValueError:
                self.holder_expires_at = None
            return False
        self.holder_expires_at = None
        return True

    def release(self, owner: str) -> None:
        """Delete the lease if ``owner`` still holds it (it may have expired and been taken over)."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={LEASE_KEY_ATTRIBUTE: {"S": self.lease_id}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                logger.warning("refresh lease %s was no longer held by this caller when released", self.lease_id)
            else:
                # Never mask the caller's own outcome (release runs in a finally); the lease expires anyway.
                logger.warning("could not release refresh lease %s (%s)", self.lease_id, _error_code(exc))
        except BotoCoreError as exc:
            logger.warning("could not release refresh lease %s (%s)", self.lease_id, type(exc).__name__)


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
        logger.info("stored new TEA credentials version=%s expiration=%s", ref.version, ref.expiration)
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
        code = _error_code(exc)
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


@dataclass(frozen=True)
class CredentialsRequest:
    """``{"action": "fetch"|"refresh", "run_id"?, ...}`` in one of three shapes:

    - ``{"action": "fetch", "endpoints": [names]}`` → ``{name: ref}`` (the workflow's FetchCredentials);
    - ``{"action": "refresh", "endpoint": name, "credentials": {name: ref}}`` → the same map with that
      endpoint's reference renewed (the map child's RefreshCredentials);
    - ``{"action": ..., "endpoint"?: name, "used_version"?: version}`` → one ref (Plan's prefix listings).
    """

    action: str
    run_id: str | None
    used_version: str | None
    endpoint: str = DEFAULT_ENDPOINT
    endpoints: tuple[str, ...] | None = None
    credentials: dict[str, Any] | None = None

    @classmethod
    def from_event(cls, event: Any) -> CredentialsRequest:
        if not isinstance(event, dict):
            raise InvalidInput("event", "must be an object with 'action'")
        action = event.get("action")
        if action not in ACTIONS:
            raise InvalidInput("action", f"must be one of {', '.join(ACTIONS)}")
        run_id = event.get("run_id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise InvalidInput("run_id", "must be a non-empty string when present")
        used_version = event.get("used_version")
        if used_version is not None:
            if not isinstance(used_version, str) or not used_version:
                raise InvalidInput("used_version", "must be a non-empty string when present")
            if action != "refresh":
                raise InvalidInput("used_version", "is only allowed with action 'refresh'")
        endpoint = event.get("endpoint", DEFAULT_ENDPOINT)
        if not isinstance(endpoint, str) or not ENDPOINT_NAME_RE.match(endpoint):
            raise InvalidInput("endpoint", "must be the name of a configured TEA endpoint")
        endpoints = event.get("endpoints")
        if endpoints is not None:
            if action != "fetch" or not isinstance(endpoints, list) or not endpoints:
                raise InvalidInput("endpoints", "is a non-empty list, only with action 'fetch'")
            if not all(isinstance(e, str) and ENDPOINT_NAME_RE.match(e) for e in endpoints):
                raise InvalidInput("endpoints", "must list names of configured TEA endpoints")
        credentials = event.get("credentials")
        if credentials is not None:
            if action != "refresh" or not isinstance(credentials, dict) or used_version is not None:
                raise InvalidInput("credentials", "is the state's {endpoint: ref} map, only with action 'refresh'")
            used_version = credentials_for(credentials, endpoint).version
        return cls(
            action=action,
            run_id=run_id,
            used_version=used_version,
            endpoint=endpoint,
            endpoints=None if endpoints is None else tuple(dict.fromkeys(endpoints)),
            credentials=credentials,
        )


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
        if request.endpoints is not None:
            return {
                name: _serve(request, name, None, deps, wait_seconds, metrics).to_dict() for name in request.endpoints
            }
        ref = _serve(request, request.endpoint, request.used_version, deps, wait_seconds, metrics)
    except OPERATOR_ERRORS as exc:
        # What the operator must read (renew the token, accept a EULA, ...): kept for Summarize's report,
        # since a failed map child's own error does not reach the execution's cause.
        _record_error(deps, request, exc)
        raise
    if request.credentials is not None:
        return {**request.credentials, request.endpoint: ref.to_dict()}
    return ref.to_dict()


def _record_error(deps: CredentialDeps, request: CredentialsRequest, error: Exception) -> None:
    detail = {"error": type(error).__name__, "message": str(error)[:1000], "endpoint": request.endpoint}
    try:
        record_event(deps.s3, deps.settings.staging_bucket, request.run_id, "errors", detail)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not record a credentials error for run %s: %s", request.run_id, type(exc).__name__)


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
            logger.warning("could not record a %s event for run %s: %s", kind, request.run_id, type(exc).__name__)

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
        "credentials %s: run_id=%s endpoint=%s used_version=%s version=%s expiration=%s fetched=%s",
        request.action,
        request.run_id,
        endpoint,
        used_version,
        ref.version,
        ref.expiration,
        fetched,
    )
    if request.action == "refresh":
        if metrics is not None:
            record_refresh(metrics, fetched)
        record(
            "refresh",
            {"fetched": fetched, "used_version": used_version, "new_version": ref.version, "endpoint": endpoint},
        )
    return ref
