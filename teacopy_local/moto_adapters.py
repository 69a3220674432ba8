"""The two narrow seams where the local engine adapts moto (see docs/local-engine.md).

1. **In-process Lambda invoke.** moto runs Lambda code in Docker; we replace
   ``LambdaFunction.invoke`` so that an invoke imports the function's real handler module from
   ``lambdas/`` and calls it with the event and a Lambda-like context. A raised exception becomes
   the Lambda error payload ``{"errorType": <class name>, "errorMessage": ...}`` with the
   ``x-amz-function-error`` header, exactly what Step Functions' Catch/Retry match on.
2. **S3 credential checks.** moto never checks credential expiry. We wrap
   ``S3Response._authenticate_and_authorize_s3_action`` so that a request signed with an access
   key issued by the TEA emulator is refused like AWS would: ``ExpiredToken`` (HTTP 400) after its
   expiration, ``AccessDenied`` (403) for any write or for a bucket outside the DAAC's buckets
   (TEA credentials are read-only). Requests signed with any other key behave as before.

3. **Atomic conditional writes.** moto serves each request in the caller's thread without locking
   its backends; AWS applies each DynamoDB write and Secrets Manager call atomically. The refresh
   lease is a DynamoDB conditional put, so ``atomic_backends`` serializes the few backend methods
   the lease and the credentials cache use (as AWS would), or two threads could both "win".

4. **Fault injection (chaos suite).** ``s3_fault_injection`` wraps moto's botocore stubber (the
   in-process "network" between boto3 and moto): ``S3Faults`` rules answer chosen S3 requests with
   ``SlowDown`` (503), ``InternalError`` (500), ``NoSuchKey`` (404) or ``AccessDenied`` (403), per key
   or per bucket, or break a GetObject body in the middle (connection reset, or a truncated body);
   every request is counted. ``LambdaRuntime.kill_switch`` simulates a Lambda sandbox dying mid-
   invocation: once tripped, every further S3 request of that invocation raises ``LambdaKilled`` and
   the invocation reports ``Sandbox.Timedout`` (what Step Functions sees for a Lambda timeout).

Nothing else in moto is changed; the Step Functions interpreter runs the synthesized ASL as is.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import random
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape as xml_escape

from botocore.awsrequest import AWSResponse
from moto.awslambda.models import LambdaFunction
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response
from moto.secretsmanager.models import SecretsManagerBackend
from urllib3.exceptions import ProtocolError as URLLib3ProtocolError

logger = logging.getLogger(__name__)
HANDLERS_PACKAGE = "lambdas.handlers"
_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/")
_READ_METHODS = ("GET", "HEAD")


class LocalContext:
    """The parts of the Lambda context object the handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaKilled(BaseException):
    """The simulated Lambda sandbox died (timeout or crash). A BaseException: no handler code can catch it."""


class KillSwitch:
    """Simulates the death of a running Lambda invocation (tests/chaos only).

    ``trip()`` marks the running invocation dead: from then on every S3 request raises
    ``LambdaKilled`` (nothing more is written or cleaned up, as when AWS kills the sandbox), until the
    runtime reports the invocation as ``Sandbox.Timedout`` and resets the switch. Only meaningful
    while a single invocation runs at a time.
    """

    def __init__(self) -> None:
        self._tripped = threading.Event()
        self.kills = 0

    @property
    def tripped(self) -> bool:
        return self._tripped.is_set()

    def trip(self) -> None:
        if not self._tripped.is_set():
            self.kills += 1
        self._tripped.set()

    def reset(self) -> None:
        self._tripped.clear()


def lambda_error(error_type: str, message: str) -> Exception:
    """An exception whose class name is ``error_type`` (e.g. ``Lambda.Unknown``): what a failed invoke reports."""
    return type(error_type, (Exception,), {})(message)


@dataclass
class FunctionSpec:
    handler: str  # e.g. "lambdas.handlers.copy_batch.lambda_handler"
    timeout_seconds: float
    memory_mb: int


@dataclass
class LambdaRuntime:
    """Maps moto function names to handlers, and records invocations (for tests and progress)."""

    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    invocations: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    fault: Callable[[str, dict[str, Any]], None] | None = None  # test hook: may raise before a handler runs
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    active: Counter[str] = field(default_factory=Counter)  # invocations running now, per function
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler_for(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_name, _, func_name = spec.handler.rpartition(".")
        module = importlib.import_module(module_name)  # first import = cold start
        handler: Callable[[Any, Any], Any] = getattr(module, func_name)
        return handler

    def invoke(self, name: str, event: Any) -> tuple[bytes, bool]:
        with self._lock:
            self.invocations[name] += 1
            self.active[name] += 1
        try:
            return self._invoke(name, event)
        finally:
            with self._lock:
                self.active[name] -= 1

    def idle(self, name: str) -> bool:
        """No invocation of ``name`` is running."""
        with self._lock:
            return self.active[name] <= 0

    def _invoke(self, name: str, event: Any) -> tuple[bytes, bool]:
        spec = self.functions[name]
        try:
            if self.fault is not None:
                self.fault(name, event)
            result = self.handler_for(spec)(event, LocalContext(name, spec.timeout_seconds, spec.memory_mb))
            if self.kill_switch.tripped:
                return self._timed_out(name, spec)
            return json.dumps(result).encode("utf-8"), False
        except LambdaKilled:
            return self._timed_out(name, spec)
        except Exception as exc:  # noqa: BLE001 — this IS the Lambda runtime boundary: any error becomes a payload
            if self.kill_switch.tripped:
                return self._timed_out(name, spec)
            with self._lock:
                self.errors.append((name, type(exc).__name__, str(exc)))
            logger.debug("function %s raised %s", name, "".join(traceback.format_exception_only(exc)).strip())
            payload = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return json.dumps(payload).encode("utf-8"), True

    def _timed_out(self, name: str, spec: FunctionSpec) -> tuple[bytes, bool]:
        """The invocation died (KillSwitch): report it the way Lambda reports a timeout."""
        self.kill_switch.reset()
        message = f"Task timed out after {spec.timeout_seconds:.2f} seconds"
        with self._lock:
            self.errors.append((name, "Sandbox.Timedout", message))
        return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode("utf-8"), True


def fresh_handler_modules() -> None:
    """Forget the imported handler modules so the next invoke is a cold start with the current environment.

    Only handlers read the environment when imported; the core modules stay imported, so every class
    (the named errors included) exists once per process.
    """
    for name in list(sys.modules):
        if name.startswith(HANDLERS_PACKAGE + "."):
            del sys.modules[name]


@contextmanager
def inprocess_lambda(runtime: LambdaRuntime) -> Iterator[LambdaRuntime]:
    original = LambdaFunction.invoke

    def invoke(self: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        payload, errored = runtime.invoke(self.function_name, event)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    try:
        yield runtime
    finally:
        LambdaFunction.invoke = original  # type: ignore[method-assign]


class ExpiredToken(S3ClientError):
    code = "ExpiredToken"

    def __init__(self) -> None:
        super().__init__("ExpiredToken", "The provided token has expired.")


class TeaAccessDenied(S3ClientError):
    code = "AccessDenied"

    def __init__(self, why: str) -> None:
        super().__init__("AccessDenied", f"Access Denied ({why})")


@dataclass
class TeaKeyPolicy:
    """What the S3 hook enforces for keys issued by the TEA emulator."""

    expiration_of: Callable[[str], datetime | None]  # access key id -> expiration, None if not a TEA key
    source_buckets: set[str]
    # access key id -> the buckets its TEA serves (several DAACs); None: every key covers source_buckets
    buckets_of: Callable[[str], set[str]] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    denied: list[tuple[str, str]] = field(default_factory=list)
    expired_answers: int = 0


@contextmanager
def tea_credential_checks(policy: TeaKeyPolicy) -> Iterator[TeaKeyPolicy]:
    original = S3Response._authenticate_and_authorize_s3_action

    def check(self: S3Response, bucket_name: str | None = None, key_name: str | None = None) -> None:
        match = _CREDENTIAL_RE.search(self.headers.get("Authorization", "") or "")
        expiration = policy.expiration_of(match.group(1)) if match else None
        if expiration is not None:
            if policy.clock() >= expiration:
                policy.expired_answers += 1
                raise ExpiredToken()
            if self.method not in _READ_METHODS:
                policy.denied.append((self.method, f"{bucket_name}/{key_name}"))
                raise TeaAccessDenied("TEA credentials are read-only")
            covered = policy.buckets_of(match.group(1)) if policy.buckets_of and match else policy.source_buckets
            if bucket_name not in covered:
                policy.denied.append((self.method, f"{bucket_name}/{key_name}"))
                raise TeaAccessDenied(f"TEA credentials do not cover bucket {bucket_name}")
        original(self, bucket_name=bucket_name, key_name=key_name)

    S3Response._authenticate_and_authorize_s3_action = check  # type: ignore[method-assign,assignment]
    try:
        yield policy
    finally:
        S3Response._authenticate_and_authorize_s3_action = original  # type: ignore[method-assign]


ATOMIC_METHODS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (DynamoDBBackend, ("put_item", "delete_item", "update_item", "get_item")),
    (SecretsManagerBackend, ("get_secret_value", "put_secret_value")),
)


@contextmanager
def atomic_backends() -> Iterator[None]:
    """Serialize the moto backend calls that AWS performs atomically (see the module docstring)."""
    lock = threading.RLock()
    originals: list[tuple[type, str, Any]] = []
    for cls, names in ATOMIC_METHODS:
        for name in names:
            original = cls.__dict__[name]

            def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with lock:
                    return __original(self, *args, **kwargs)

            originals.append((cls, name, original))
            setattr(cls, name, locked)
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


# --- 4. S3 fault injection --------------------------------------------------------------------------------

ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    # kind -> (HTTP status, S3 error code, message), as S3 answers them
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
    "no_such_key": (404, "NoSuchKey", "The specified key does not exist."),
    "access_denied": (403, "AccessDenied", "Access Denied"),
}
BODY_FAULTS = ("reset", "truncate")  # GetObject only: the body breaks after ``after_bytes`` bytes
FAULT_KINDS = (*ERROR_FAULTS, *BODY_FAULTS, "kill")


@dataclass(frozen=True)
class S3Request:
    """One S3 request as the fault layer sees it."""

    method: str
    operation: str  # GetObject, HeadObject, PutObject, UploadPart, CreateMultipartUpload, ... (see s3_operation)
    bucket: str
    key: str
    access_key_id: str
    range: str | None


@dataclass
class S3FaultRule:
    """Answer matching requests with a fault. ``times=None``: every match; ``probability`` < 1: at random."""

    kind: str
    operations: tuple[str, ...] = ("GetObject",)
    bucket: str | None = None  # None: any bucket
    key: str | None = None  # exact key; None: any key (see key_prefix)
    key_prefix: str | None = None
    key_contains: str | None = None
    times: int | None = 1
    probability: float = 1.0
    skip: int = 0  # let this many matching requests through first
    after_bytes: int = 0  # reset/truncate: bytes delivered before the body breaks
    when: Callable[[S3Request], bool] | None = None  # a further condition, e.g. "the key does not exist"
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown S3 fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.kind in BODY_FAULTS and self.operations != ("GetObject",):
            raise ValueError(f"{self.kind} breaks a GetObject body: operations must be ('GetObject',)")

    def matches(self, request: S3Request) -> bool:
        return (
            request.operation in self.operations
            and (self.bucket is None or request.bucket == self.bucket)
            and (self.key is None or request.key == self.key)
            and (self.key_prefix is None or request.key.startswith(self.key_prefix))
            and (self.key_contains is None or self.key_contains in request.key)
            and (self.when is None or self.when(request))
        )


class S3Faults:
    """The fault rules and request counters of the S3 fault layer (thread-safe).

    Counters: ``requests[(operation, bucket)]``, ``per_key[(operation, bucket, key)]``,
    ``fired[kind]``, ``get_ranges[(bucket, key)]`` (the Range header of each GetObject, "" for none)
    and ``bytes_served[(bucket, key)]`` (Content-Length of each successful GetObject).
    ``hooks`` run on every request before the rules (e.g. to expire credentials at some point).
    """

    def __init__(self, seed: int = 0, kill_switch: KillSwitch | None = None) -> None:
        self.rules: list[S3FaultRule] = []
        self.hooks: list[Callable[[S3Request], None]] = []
        self.kill_switch = kill_switch
        self.requests: Counter[tuple[str, str]] = Counter()
        self.per_key: Counter[tuple[str, str, str]] = Counter()
        self.fired: Counter[str] = Counter()
        self.get_ranges: dict[tuple[str, str], list[str]] = {}
        self.bytes_served: Counter[tuple[str, str]] = Counter()
        self.killed_requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.RLock()

    def add(self, kind: str, **match: Any) -> S3FaultRule:
        rule = S3FaultRule(kind, **match)
        with self._lock:
            self.rules.append(rule)
        return rule

    def on_request(self, hook: Callable[[S3Request], None]) -> None:
        with self._lock:
            self.hooks.append(hook)

    def count(self, operation: str, bucket: str | None = None, key: str | None = None) -> int:
        with self._lock:
            if key is not None:
                return sum(n for (o, b, k), n in self.per_key.items() if o == operation and k == key and b == bucket)
            return sum(n for (o, b), n in self.requests.items() if o == operation and bucket in (None, b))

    def decide(self, request: S3Request) -> S3FaultRule | None:
        """Count the request, run the hooks, and return the rule that fires for it (if any)."""
        with self._lock:
            self.requests[(request.operation, request.bucket)] += 1
            self.per_key[(request.operation, request.bucket, request.key)] += 1
            if request.operation == "GetObject":
                self.get_ranges.setdefault((request.bucket, request.key), []).append(request.range or "")
            hooks = list(self.hooks)
        for hook in hooks:
            hook(request)
        with self._lock:
            for rule in self.rules:
                if not rule.matches(request):
                    continue
                rule.matched += 1
                if rule.matched <= rule.skip or (rule.times is not None and rule.fired >= rule.times):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.fired[rule.kind] += 1
                return rule
        return None

    def served(self, request: S3Request, length: int) -> None:
        with self._lock:
            self.bytes_served[(request.bucket, request.key)] += length


def _query_names(query: str) -> set[str]:
    return {part.split("=", 1)[0] for part in query.split("&") if part}


def s3_operation(method: str, url: str, headers: Any) -> tuple[str, str, str] | None:
    """(operation, bucket, key) of an S3 request URL (virtual-host or path style); None if not S3."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host.endswith("amazonaws.com"):
        return None
    labels = host.split(".")
    if "s3" in labels[1:] or any(label.startswith("s3-") for label in labels[1:]):
        index = next(i for i, label in enumerate(labels) if label == "s3" or label.startswith("s3-"))
        bucket, key = ".".join(labels[:index]), unquote(parts.path[1:])
    elif labels[0] == "s3" or labels[0].startswith("s3-"):
        bucket, _, key = unquote(parts.path[1:]).partition("/")
    else:
        return None
    query = _query_names(parts.query)
    copy_source = "x-amz-copy-source" in {str(name).lower() for name in headers}
    if not key:
        if method == "GET":
            operation = "ListMultipartUploads" if "uploads" in query else "ListObjects"
        else:
            operation = {"HEAD": "HeadBucket", "PUT": "PutBucket", "DELETE": "DeleteBucket"}.get(method, "BucketPost")
    elif method == "GET":
        operation = "ListParts" if "uploadId" in query else ("GetObject" if not query & {"acl", "tagging"} else "Get")
    elif method == "HEAD":
        operation = "HeadObject"
    elif method == "PUT":
        if "partNumber" in query:
            operation = "UploadPartCopy" if copy_source else "UploadPart"
        else:
            operation = "CopyObject" if copy_source else "PutObject"
    elif method == "POST":
        operation = "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    elif method == "DELETE":
        operation = "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    else:
        operation = method
    return operation, bucket, key


class _BrokenBody(io.RawIOBase):
    """A GetObject body that breaks after ``after`` bytes: a connection reset, or a silent end (truncation)."""

    def __init__(self, inner: Any, after: int, kind: str) -> None:
        super().__init__()
        self._inner, self._left, self._kind = inner, max(0, after), kind

    def readable(self) -> bool:
        return True

    def read(self, amt: int | None = -1) -> bytes:
        if self._kind == "reset" and (amt is None or amt < 0):
            self._left = 0  # reading "everything" meets the reset: the partial data is lost with the error
        if self._left <= 0:
            if self._kind == "reset":
                raise URLLib3ProtocolError(
                    "Connection broken: ConnectionResetError(104, 'Connection reset by peer')",
                    ConnectionResetError(104, "Connection reset by peer"),
                )
            return b""
        want = self._left if amt is None or amt < 0 else min(amt, self._left)
        chunk = bytes(self._inner.read(want))
        self._left -= len(chunk)
        return chunk

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk

    def close(self) -> None:
        self._inner.close()
        super().close()


def _error_response(url: str, method: str, kind: str, request: S3Request) -> AWSResponse:
    status, code, message = ERROR_FAULTS[kind]
    body = b""
    if method != "HEAD":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Key>{xml_escape(request.key)}</Key><RequestId>chaos</RequestId></Error>"
        ).encode()
    headers = {"content-type": "application/xml", "content-length": str(len(body)), "x-amz-request-id": "chaos"}
    return AWSResponse(url, status, headers, MockRawResponse(body))


@contextmanager
def s3_fault_injection(faults: S3Faults) -> Iterator[S3Faults]:
    """Route every S3 request of the mocked AWS through ``faults`` (use inside a running LocalEngine)."""
    original = BotocoreStubber.__call__

    def call(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if not self.enabled:
            return original(self, event_name, request, **kwargs)
        parsed = s3_operation(request.method, request.url, request.headers)
        if parsed is None:
            return original(self, event_name, request, **kwargs)
        operation, bucket, key = parsed
        switch = faults.kill_switch
        if switch is not None and switch.tripped:
            with faults._lock:
                faults.killed_requests += 1
            raise LambdaKilled(f"{operation} s3://{bucket}/{key} after the invocation was killed")
        authorization = request.headers.get("Authorization", "") or ""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        match = _CREDENTIAL_RE.search(authorization)
        range_header = request.headers.get("Range")
        s3_request = S3Request(
            method=request.method,
            operation=operation,
            bucket=bucket,
            key=key,
            access_key_id=match.group(1) if match else "",
            range=range_header.decode() if isinstance(range_header, bytes) else range_header,
        )
        rule = faults.decide(s3_request)
        if rule is not None and rule.kind == "kill":
            if switch is None:
                raise RuntimeError("an S3 'kill' fault needs S3Faults(kill_switch=...)")
            switch.trip()
            raise LambdaKilled(f"killed at {operation} s3://{bucket}/{key}")
        if rule is not None and rule.kind in ERROR_FAULTS:
            logger.info("chaos: %s answers %s s3://%s/%s", rule.kind, operation, bucket, key)
            return _error_response(request.url, request.method, rule.kind, s3_request)
        response = original(self, event_name, request, **kwargs)
        if response is not None and operation == "GetObject" and response.status_code in (200, 206):
            faults.served(s3_request, int(response.headers.get("content-length", 0) or 0))
            if rule is not None and rule.kind in BODY_FAULTS:
                logger.info("chaos: %s of s3://%s/%s after %d bytes", rule.kind, bucket, key, rule.after_bytes)
                response.raw = _BrokenBody(response.raw, rule.after_bytes, rule.kind)
        return response

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield faults
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]
