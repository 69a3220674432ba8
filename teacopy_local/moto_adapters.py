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

Nothing else in moto is changed; the Step Functions interpreter runs the synthesized ASL as is.
"""

from __future__ import annotations

import importlib
import json
import logging
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
from pathlib import Path
from typing import Any

from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response
from moto.secretsmanager.models import SecretsManagerBackend

logger = logging.getLogger(__name__)
_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/")
_READ_METHODS = ("GET", "HEAD")
# The Lambda asset root: handlers import ``shared.*`` exactly as they do in the Lambda runtime.
LAMBDAS_DIR = Path(__file__).resolve().parents[1] / "lambdas"


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


@dataclass
class FunctionSpec:
    handler: str  # e.g. "copy_batch.handler.lambda_handler"
    timeout_seconds: float
    memory_mb: int


@dataclass
class LambdaRuntime:
    """Maps moto function names to handlers, and records invocations (for tests and progress)."""

    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    invocations: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    fault: Callable[[str, dict[str, Any]], None] | None = None  # test hook: may raise before a handler runs
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler_for(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_name, _, func_name = spec.handler.rpartition(".")
        if str(LAMBDAS_DIR) not in sys.path:
            sys.path.insert(0, str(LAMBDAS_DIR))
        module = importlib.import_module(module_name)  # first import = cold start
        handler: Callable[[Any, Any], Any] = getattr(module, func_name)
        return handler

    def invoke(self, name: str, event: Any) -> tuple[bytes, bool]:
        spec = self.functions[name]
        with self._lock:
            self.invocations[name] += 1
        try:
            if self.fault is not None:
                self.fault(name, event)
            result = self.handler_for(spec)(event, LocalContext(name, spec.timeout_seconds, spec.memory_mb))
            return json.dumps(result).encode("utf-8"), False
        except Exception as exc:  # noqa: BLE001 — this IS the Lambda runtime boundary: any error becomes a payload
            with self._lock:
                self.errors.append((name, type(exc).__name__, str(exc)))
            logger.debug("function %s raised %s", name, "".join(traceback.format_exception_only(exc)).strip())
            payload = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return json.dumps(payload).encode("utf-8"), True


def fresh_handler_modules() -> None:
    """Forget imported handler/shared modules so the next invoke is a cold start with the current env."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("shared", "plan", "credentials", "copy_batch", "summarize"):
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
            if bucket_name not in policy.source_buckets:
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
