"""The narrow seams where the local engine adapts moto (see docs/local-engine.md).

1. **In-process Lambda invoke, with Lambda's limits.** moto runs Lambda code in Docker; we replace
   ``LambdaFunction.invoke`` so that an invoke imports the function's real handler module from
   ``lambdas/`` and calls it, in a thread of its own, with the event and a Lambda-like context. A raised
   exception becomes the Lambda error payload ``{"errorType": <class name>, "errorMessage": ...}`` with
   the ``x-amz-function-error`` header, exactly what Step Functions' Catch/Retry match on. An invocation
   that runs past its configured timeout is cut off and reported as ``Sandbox.Timedout``, as Lambda does:
   from then on every AWS request of its threads (the threads it started included) raises
   ``LambdaKilled`` — the sandbox is gone, nothing more is written. Every event and every answer is kept
   (``LambdaRuntime.records``) for the secret scan.
2. **S3 access checks** (``s3_access_checks``). moto checks neither credential expiry nor IAM. We wrap
   ``S3Response._authenticate_and_authorize_s3_action``: a request signed with an access key issued by
   the TEA emulator is refused like AWS would (``ExpiredToken`` after its expiration; ``AccessDenied`` for
   anything but reads of the DAAC's own buckets: TEA credentials are read-only and bucket-scoped); a
   request of a Lambda invocation signed otherwise is decided by that function's role policies from the
   synthesized template (``iam.py``: actions, resources, conditions such as ``s3:prefix``), and a source
   (DAAC) bucket refuses it whatever the role says. Requests of the harness itself (seeding, checks)
   are not Lambda requests and pass.
3. **Atomic conditional writes.** moto serves each request in the caller's thread without locking
   its backends; AWS applies each DynamoDB write and Secrets Manager call atomically. The refresh
   lease is a DynamoDB conditional put, so ``atomic_backends`` serializes the few backend methods
   the lease and the credentials cache use (as AWS would), or two threads could both "win".
4. **Fault injection (chaos suite).** ``s3_fault_injection`` wraps moto's botocore stubber (the
   in-process "network" between boto3 and moto): ``S3Faults`` rules answer chosen S3 requests with
   ``SlowDown`` (503), ``InternalError`` (500), ``NoSuchKey`` (404), ``AccessDenied`` (403), ``BadDigest``
   / ``InvalidDigest`` (400) or ``NoSuchUpload`` (404, the upload really aborted), per key or per bucket,
   or break a GetObject body in the middle (connection reset, or a truncated body); every request is
   counted. A ``kill`` rule kills the Lambda invocation making the request (its sandbox dies: reported as
   ``Sandbox.Timedout``); ``LambdaRuntime.after_request`` hooks may kill one after any AWS request.
5. **Map children's inputs and outputs** (``map_child_records``): moto keeps no child execution history,
   so each Distributed Map iteration's input and output (or error) is recorded for the secret scan.

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
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape as xml_escape

from botocore.awsrequest import AWSResponse
from moto.awslambda.models import LambdaFunction
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response
from moto.secretsmanager.models import SecretsManagerBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker import IterationWorker
from urllib3.exceptions import ProtocolError as URLLib3ProtocolError

from .iam import RolePolicy, iam_action, request_context, s3_resource

logger = logging.getLogger(__name__)
HANDLERS_PACKAGE = "lambdas.handlers"
_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/")


class LocalContext:
    """The parts of the Lambda context object the handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int, request_id: str = "") -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaKilled(BaseException):
    """The simulated Lambda sandbox died (timeout or crash). A BaseException: no handler code can catch it."""


TIMED_OUT, KILLED = "timed out", "killed"
_INVOCATION_ATTRIBUTE = "_teacopy_invocation"


@dataclass
class Invocation:
    """One Lambda invocation: its function, and whether its sandbox is gone (timed out or killed)."""

    function: str  # the function's name (its logical id in the local engine)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ended: str = ""  # TIMED_OUT or KILLED once the sandbox is gone
    _dead: threading.Event = field(default_factory=threading.Event)

    @property
    def dead(self) -> bool:
        return self._dead.is_set()

    def end(self, why: str) -> bool:
        """Mark the sandbox gone; False if it already was."""
        if self._dead.is_set():
            return False
        self.ended = why
        self._dead.set()
        return True


def current_invocation() -> Invocation | None:
    """The Lambda invocation the calling thread works for (the handler's thread or one it started)."""
    invocation = getattr(threading.current_thread(), _INVOCATION_ATTRIBUTE, None)
    return invocation if isinstance(invocation, Invocation) else None


@contextmanager
def inherited_invocations() -> Iterator[None]:
    """A thread started by an invocation's thread (a worker pool's, say) works for the same invocation."""
    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if getattr(self, _INVOCATION_ATTRIBUTE, None) is None:
            setattr(self, _INVOCATION_ATTRIBUTE, current_invocation())
        original(self)

    threading.Thread.start = start  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]


def lambda_error(error_type: str, message: str) -> Exception:
    """An exception whose class name is ``error_type`` (``Lambda.Unknown``): a runtime failure Lambda reports.

    Only for errors of the Lambda service itself, which have no Python class; teacopy's own errors are raised
    with their real classes (lambdas.contracts.errors).
    """
    return type(error_type, (Exception,), {})(message)


@dataclass
class FunctionSpec:
    handler: str  # e.g. "lambdas.handlers.copy_batch.lambda_handler"
    timeout_seconds: float
    memory_mb: int


@dataclass(frozen=True)
class InvocationRecord:
    """What one invocation was given and what it answered (JSON text), for the secret scan and tests."""

    function: str
    request_id: str
    event: str
    answer: str
    errored: bool


@dataclass
class LambdaRuntime:
    """Maps moto function names to handlers, runs each invocation within its timeout, records them.

    ``fault`` (test hook) runs in the invocation's thread before the handler (its time counts, as any
    slowness of the function would) and may raise. ``after_request`` hooks run after each AWS request
    an invocation makes, with the invocation, the botocore event name (``before-send.dynamodb.PutItem``),
    the request and the response; one may ``kill`` the invocation there (the caller never sees the answer).
    """

    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    invocations: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    records: list[InvocationRecord] = field(default_factory=list)
    fault: Callable[[str, dict[str, Any]], None] | None = None  # test hook: may raise before a handler runs
    after_request: list[Callable[[Invocation, str, Any, Any], None]] = field(default_factory=list)
    timeouts: Counter[str] = field(default_factory=Counter)  # function -> invocations cut off at their timeout
    kills: Counter[str] = field(default_factory=Counter)  # function -> invocations killed (chaos)
    zombie_requests: int = 0  # AWS requests refused because their invocation had ended
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler_for(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_name, _, func_name = spec.handler.rpartition(".")
        module = importlib.import_module(module_name)  # first import = cold start
        handler: Callable[[Any, Any], Any] = getattr(module, func_name)
        return handler

    def kill(self, invocation: Invocation) -> bool:
        """Kill a running invocation (chaos): its sandbox dies, the invoke reports ``Sandbox.Timedout``."""
        if not invocation.end(KILLED):
            return False
        with self._lock:
            self.kills[invocation.function] += 1
        return True

    def kill_current(self, where: str) -> None:
        """Kill the invocation the calling thread works for, then die with it (raises ``LambdaKilled``)."""
        invocation = current_invocation()
        if invocation is None:
            raise RuntimeError(f"a kill outside any Lambda invocation ({where})")
        self.kill(invocation)
        raise LambdaKilled(f"killed at {where}")

    def refuse_if_dead(self, what: str) -> None:
        """Raise ``LambdaKilled`` when the calling thread's invocation is gone (its request never leaves)."""
        invocation = current_invocation()
        if invocation is not None and invocation.dead:
            with self._lock:
                self.zombie_requests += 1
            raise LambdaKilled(f"{what} after the invocation {invocation.ended}")

    def invoke(self, name: str, event: Any) -> tuple[bytes, bool]:
        spec = self.functions[name]
        invocation = Invocation(name)
        with self._lock:
            self.invocations[name] += 1
        outcome: dict[str, Any] = {}
        context = LocalContext(name, spec.timeout_seconds, spec.memory_mb, invocation.request_id)

        def run() -> None:
            try:
                if self.fault is not None:
                    self.fault(name, event)
                outcome["result"] = self.handler_for(spec)(event, context)
            except LambdaKilled:
                outcome["killed"] = True
            except Exception as exc:  # noqa: BLE001 — this IS the Lambda runtime boundary: any error becomes a payload
                outcome["error"] = exc

        thread = threading.Thread(target=run, name=f"lambda-{name}", daemon=True)
        setattr(thread, _INVOCATION_ATTRIBUTE, invocation)
        thread.start()
        deadline = time.monotonic() + spec.timeout_seconds
        while thread.is_alive() and not invocation.dead and time.monotonic() < deadline:
            thread.join(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        if thread.is_alive() and not invocation.dead and invocation.end(TIMED_OUT):
            with self._lock:
                self.timeouts[name] += 1
        payload: Any
        if invocation.dead or "killed" in outcome:
            payload, errored = self._timed_out(name, spec), True
        elif "error" in outcome:
            exc = outcome["error"]
            with self._lock:
                self.errors.append((name, type(exc).__name__, str(exc)))
            logger.debug("function %s raised %s", name, "".join(traceback.format_exception_only(exc)).strip())
            payload, errored = {"errorType": type(exc).__name__, "errorMessage": str(exc)}, True
        else:
            payload, errored = outcome.get("result"), False
        answer = json.dumps(payload)
        with self._lock:
            self.records.append(InvocationRecord(name, invocation.request_id, _json(event), answer, errored))
        return answer.encode("utf-8"), errored

    def _timed_out(self, name: str, spec: FunctionSpec) -> dict[str, str]:
        """The invocation's sandbox is gone (timeout, or killed): reported the way Lambda reports a timeout."""
        message = f"Task timed out after {spec.timeout_seconds:.2f} seconds"
        with self._lock:
            self.errors.append((name, "Sandbox.Timedout", message))
        return {"errorType": "Sandbox.Timedout", "errorMessage": message}


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


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
    """Lambda invokes run in-process (``runtime``); invocations own the threads they start; the AWS requests
    of an invocation that has ended are refused (``LambdaKilled``) and ``runtime.after_request`` hooks run."""
    original_invoke = LambdaFunction.invoke
    original_call = BotocoreStubber.__call__

    def invoke(self: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        payload, errored = runtime.invoke(self.function_name, event)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    def call(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if not self.enabled:
            return original_call(self, event_name, request, **kwargs)
        runtime.refuse_if_dead(event_name)
        response = original_call(self, event_name, request, **kwargs)
        invocation = current_invocation()
        if invocation is not None:
            for hook in list(runtime.after_request):
                hook(invocation, event_name, request, response)
        return response

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        with inherited_invocations():
            yield runtime
    finally:
        LambdaFunction.invoke = original_invoke  # type: ignore[method-assign]
        BotocoreStubber.__call__ = original_call  # type: ignore[method-assign]


def _iteration_workers() -> list[type]:
    """moto's map iteration worker classes that evaluate one child each (``_eval_job``), inline and distributed."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as processor,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker as iterator,
    )

    return [IterationWorker, processor.DistributedItemProcessorWorker, iterator.DistributedIteratorWorker]


@contextmanager
def map_child_records(sink: Callable[[str, str], None]) -> Iterator[None]:
    """Pass each map child's input and output (or error) to ``sink(kind, json)``: moto keeps no history of
    child executions, and the secret scan must see what flowed through them."""
    originals = [(cls, cls.__dict__["_eval_job"]) for cls in _iteration_workers() if "_eval_job" in cls.__dict__]

    def recorded(original: Callable[..., None]) -> Callable[..., None]:
        def eval_job(self: Any, env: Any, job: Any) -> None:
            sink("input", _json(job.job_input))
            try:
                original(self, env, job)
            finally:
                output = job.job_output
                state = env.program_state() if hasattr(env, "program_state") else None
                error = getattr(state, "error", None)
                if isinstance(output, BaseException):
                    details = getattr(getattr(output, "failure_event", None), "event_details", None)
                    sink("error", _json({"error": type(output).__name__, "message": str(output), "details": details}))
                elif error:
                    sink("error", _json(error))
                else:
                    sink("output", _json(output))

        return eval_job

    for cls, original in originals:
        cls._eval_job = recorded(original)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for cls, original in originals:
            cls._eval_job = original  # type: ignore[attr-defined]


class ExpiredToken(S3ClientError):
    code = "ExpiredToken"

    def __init__(self) -> None:
        super().__init__("ExpiredToken", "The provided token has expired.")


class S3AccessDenied(S3ClientError):
    code = "AccessDenied"

    def __init__(self, why: str) -> None:
        super().__init__("AccessDenied", f"Access Denied ({why})")


# What TEA's credentials allow (research.md: an AssumeRole with only these actions on the DAAC's buckets).
TEA_ACTIONS = frozenset({"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"})


@dataclass
class S3AccessPolicy:
    """What the S3 hook enforces: TEA keys (expiry, read-only, the DAAC's buckets) and each function's role.

    ``roles``: function name -> its role policy (``iam.function_policies``); None: no IAM checks (only TEA's).
    ``denied`` records each refusal as (who, action, resource, why).
    """

    expiration_of: Callable[[str], datetime | None]  # access key id -> expiration, None if not a TEA key
    source_buckets: set[str]  # every DAAC bucket (of every TEA)
    # access key id -> the buckets its TEA serves (several DAACs); None: every key covers source_buckets
    buckets_of: Callable[[str], set[str]] | None = None
    roles: dict[str, RolePolicy] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    denied: list[tuple[str, str, str, str]] = field(default_factory=list)
    expired_answers: int = 0
    account: str = "123456789012"

    def refuse(self, who: str, action: str, resource: str, why: str) -> S3AccessDenied:
        self.denied.append((who, action, resource, why))
        return S3AccessDenied(f"{who} is not authorized to perform: {action} on resource: {resource} because {why}")

    def check(self, access_key_id: str | None, moto_action: str, bucket: str, key: str | None, query: Any) -> None:
        """Raise what S3 answers when this request is not allowed; return when it is."""
        action = iam_action(moto_action)
        resource = s3_resource(action, bucket, key)
        expiration = self.expiration_of(access_key_id) if access_key_id else None
        if expiration is not None:
            if self.clock() >= expiration:
                self.expired_answers += 1
                raise ExpiredToken()
            who = f"TEA credentials {access_key_id[:8]}…" if access_key_id else "TEA credentials"
            if action not in TEA_ACTIONS:
                raise self.refuse(who, action, resource, "TEA credentials are read-only")
            covered = self.buckets_of(access_key_id) if self.buckets_of and access_key_id else self.source_buckets
            if bucket not in covered:
                raise self.refuse(who, action, resource, f"TEA credentials do not cover bucket {bucket}")
            return
        invocation = current_invocation()
        if invocation is None:
            return  # the harness (seeding, inspection): not a Lambda request
        who = f"arn:aws:sts::{self.account}:assumed-role/{invocation.function}Role/{invocation.function}"
        if bucket in self.source_buckets:
            raise self.refuse(who, action, resource, "a DAAC bucket accepts only its TEA's credentials")
        if self.roles is None:
            return
        role = self.roles.get(invocation.function)
        decision = role.decide(action, resource, request_context(query)) if role is not None else None
        if decision is None or not decision.allowed:
            why = decision.why if decision is not None else "the function has no role in the template"
            raise self.refuse(who, action, resource, f"its role's policies: {why}")


@contextmanager
def s3_access_checks(policy: S3AccessPolicy) -> Iterator[S3AccessPolicy]:
    original = S3Response._authenticate_and_authorize_s3_action

    def check(self: S3Response, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if bucket_name:
            match = _CREDENTIAL_RE.search(self.headers.get("Authorization", "") or "")
            action = str(self.data.get("Action", ""))
            policy.check(match.group(1) if match else None, action, bucket_name, key_name, self.querystring)
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
    # S3's answers when the bytes it received do not match the checksum sent with them
    "bad_digest": (400, "BadDigest", "The Content-MD5 or checksum value you specified did not match what we received."),
    "invalid_digest": (400, "InvalidDigest", "The Content-MD5 or checksum value you specified is not valid."),
    # the upload is gone (a lifecycle rule or an operator aborted it): the fault really aborts it first
    "no_such_upload": (
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted "
        "or completed.",
    ),
}
UPLOAD_OPERATIONS = ("UploadPart", "CompleteMultipartUpload", "ListParts")  # the requests naming an upload id
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
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown S3 fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.kind in BODY_FAULTS and self.operations != ("GetObject",):
            raise ValueError(f"{self.kind} breaks a GetObject body: operations must be ('GetObject',)")
        if self.kind == "no_such_upload" and not set(self.operations) <= set(UPLOAD_OPERATIONS):
            raise ValueError(f"no_such_upload answers requests naming an upload: operations within {UPLOAD_OPERATIONS}")

    def matches(self, request: S3Request) -> bool:
        return (
            request.operation in self.operations
            and (self.bucket is None or request.bucket == self.bucket)
            and (self.key is None or request.key == self.key)
            and (self.key_prefix is None or request.key.startswith(self.key_prefix))
            and (self.key_contains is None or self.key_contains in request.key)
        )


class S3Faults:
    """The fault rules and request counters of the S3 fault layer (thread-safe).

    Counters: ``requests[(operation, bucket)]``, ``per_key[(operation, bucket, key)]``,
    ``fired[kind]``, ``get_ranges[(bucket, key)]`` (the Range header of each GetObject, "" for none),
    ``bytes_served[(bucket, key)]`` (Content-Length of each successful GetObject) and ``writes[(bucket, key)]``
    (objects stored: each PutObject or CompleteMultipartUpload S3 answered 200). Requests of an invocation
    that has ended never leave its sandbox: they are refused before being counted.
    ``hooks`` run on every request before the rules (e.g. to expire credentials at some point).
    """

    def __init__(self, seed: int = 0, runtime: LambdaRuntime | None = None) -> None:
        self.rules: list[S3FaultRule] = []
        self.hooks: list[Callable[[S3Request], None]] = []
        self.runtime = runtime  # whose invocations a ``kill`` rule kills
        self.requests: Counter[tuple[str, str]] = Counter()
        self.per_key: Counter[tuple[str, str, str]] = Counter()
        self.fired: Counter[str] = Counter()
        self.get_ranges: dict[tuple[str, str], list[str]] = {}
        self.bytes_served: Counter[tuple[str, str]] = Counter()
        self.writes: Counter[tuple[str, str]] = Counter()  # (bucket, key) -> objects stored (PUT or Complete)
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

    def stored(self, bucket: str, key: str) -> None:
        with self._lock:
            self.writes[(bucket, key)] += 1

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


STORING_OPERATIONS = ("PutObject", "CompleteMultipartUpload")  # the requests that store an object


def _abort_upload(bucket: str, url: str) -> None:
    """Abort the upload a request names, in moto's backend (as a lifecycle rule would)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    upload_id = parse_qs(urlsplit(url).query).get("uploadId", [""])[0]
    with suppress(S3ClientError):  # already gone
        s3_backends[DEFAULT_ACCOUNT_ID]["aws"].abort_multipart_upload(bucket, upload_id)


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
        if faults.runtime is not None:
            faults.runtime.refuse_if_dead(f"{operation} s3://{bucket}/{key}")  # not counted: it never leaves
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
        if faults.runtime is not None:  # a hook may have stalled it past the invocation's end
            faults.runtime.refuse_if_dead(f"{operation} s3://{bucket}/{key}")
        if rule is not None and rule.kind == "kill":
            if faults.runtime is None:
                raise RuntimeError("an S3 'kill' fault needs S3Faults(runtime=...)")
            faults.runtime.kill_current(f"{operation} s3://{bucket}/{key}")
        if rule is not None and rule.kind == "no_such_upload":
            _abort_upload(bucket, request.url)  # it really vanished: a later abort or complete finds it gone
        if rule is not None and rule.kind in ERROR_FAULTS:
            logger.info("chaos: %s answers %s s3://%s/%s", rule.kind, operation, bucket, key)
            return _error_response(request.url, request.method, rule.kind, s3_request)
        response = original(self, event_name, request, **kwargs)
        if response is not None and operation == "GetObject" and response.status_code in (200, 206):
            faults.served(s3_request, int(response.headers.get("content-length", 0) or 0))
            if rule is not None and rule.kind in BODY_FAULTS:
                logger.info("chaos: %s of s3://%s/%s after %d bytes", rule.kind, bucket, key, rule.after_bytes)
                response.raw = _BrokenBody(response.raw, rule.after_bytes, rule.kind)
        if response is not None and operation in STORING_OPERATIONS and response.status_code == 200:
            faults.stored(bucket, key)
        return response

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield faults
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]
