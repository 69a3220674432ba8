"""One scenario's world: the TEA emulator, the local engine with S3 fault injection, and seeded data.

A ``World`` deploys the synthesized template into a fresh local engine (moto, Lambdas in-process),
starts a TEA emulator, installs the S3 fault layer (``moto_adapters.s3_fault_injection``) and
remembers what the destination may legitimately hold: ``expected[(bucket, key)] = sha256`` for every
object a job was asked to copy and that exists in the source. The invariant checks
(``invariants.py``) compare the buckets, the run reports and the logs against that knowledge.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.contracts import env_names

from ..engine import ACCOUNT, LocalEngine, RunResult
from ..moto_adapters import S3Faults, S3Request, s3_fault_injection
from ..tea_emulator import TeaEmulator

# The teacopy context the chaos suite synthesizes with (the same overrides as tests/conftest.py): a second
# destination restricted to a prefix, and a separate manifest bucket, so those rules are exercised too.
PREFIXED_DESTINATION = {"bucket": "teacopy-archive", "prefix": "podaac/"}
CHAOS_CONTEXT: dict[str, Any] = {
    "destinations": [{"bucket": "my-earthdata-copy", "prefix": ""}, PREFIXED_DESTINATION],
    "manifest_buckets": ["teacopy-manifests"],
}
SOURCE = "daac-chaos-protected"  # the DAAC bucket TEA's credentials cover (created in us-west-2)
TOKEN = "chaos-edl-token-5b0c1f7e9a2d4c68b3e1"  # a test token only the emulator knows  # noqa: S105
MIB = 1024**2
PART = 5 * MIB  # the smallest part size S3 allows: multipart scenarios stay small
RUN_TIMEOUT = 240.0
BULK_SEED = 500


def moto_s3_backend() -> Any:
    """moto's S3 backend of the local engine's account."""
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


# Local overrides every world applies (on top of the synthesized environment): a short TEA timeout so
# timeouts cost seconds, and the smallest part size so multipart objects can be a few MiB.
BASE_ENV: dict[str, str] = {
    env_names.TEA_TIMEOUT_SECONDS: "2",
    env_names.PART_SIZE_BYTES: str(PART),
    env_names.MULTIPART_THRESHOLD_BYTES: str(PART),
}


@dataclass(frozen=True)
class WorldSpec:
    """How a scenario's world is built."""

    lifetime: float = 3600  # seconds the first credentials TEA issues live
    later_lifetime: float | None = None  # seconds every later set lives (None: same as the first)
    margin: int = 1  # TEACOPY_SAFETY_MARGIN_SECONDS
    env: Mapping[str, str] = field(default_factory=dict)  # more environment overrides
    aws_clock_offset: float = 0.0  # AWS (TEA/STS/S3) clock minus the workers' clock, in seconds
    token: str = TOKEN  # what the EDL token secret holds
    seed: int = 7


class World:
    """Use as a context manager; ``run`` executions, then ``invariants.check`` it."""

    def __init__(self, template: dict[str, Any], spec: WorldSpec | None = None, name: str = "chaos") -> None:
        self.template = template
        self.spec = spec or WorldSpec()
        self.name = re.sub(r"[^A-Za-z0-9-]", "-", name)[:60]
        offset = timedelta(seconds=self.spec.aws_clock_offset)
        self.aws_clock: Callable[[], datetime] = lambda: datetime.now(UTC) + offset

        def after_issue(_issued: object) -> None:
            if self.spec.later_lifetime is not None:
                self.tea.set_lifetime(self.spec.later_lifetime)

        self.tea = TeaEmulator(
            lifetime_seconds=self.spec.lifetime, valid_tokens={TOKEN}, issue=after_issue, clock=self.aws_clock
        )
        self.faults = S3Faults(seed=self.spec.seed)
        self.rng = random.Random(self.spec.seed)
        self.sources: dict[str, str] = {}  # source key -> sha256
        self.sizes: dict[str, int] = {}
        self.expected: dict[tuple[str, str], str] = {}  # (bucket, key) -> sha256 a destination object may have
        self.inputs: set[tuple[str, str]] = set()  # objects the scenario itself put (manifests)
        self.results: list[RunResult] = []
        self.extra_secrets: list[str] = []  # secret-looking values a scenario put into TEA answers
        self.notes: list[str] = []  # measurements shown in the table
        self.problems: list[str] = []  # scenario-specific expectations that failed
        self._runs = 0
        self._stack = ExitStack()
        self.engine: LocalEngine

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> World:
        try:
            self._stack.enter_context(self.tea)
            overrides = {
                **BASE_ENV,
                env_names.TEA_ENDPOINT: self.tea.url,
                env_names.SAFETY_MARGIN_SECONDS: str(self.spec.margin),
                **self.spec.env,
            }
            self.engine = self._stack.enter_context(
                LocalEngine(
                    self.template,
                    tea=self.tea,
                    edl_token=self.spec.token,
                    source_buckets={SOURCE},
                    env_overrides=overrides,
                )
            )
            self.engine.policy.clock = self.aws_clock  # S3 judges expiry by the AWS clock
            self._create_manifest_buckets()
            self.faults.runtime = self.engine.runtime
            self._stack.enter_context(s3_fault_injection(self.faults))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _create_manifest_buckets(self) -> None:
        """The user's manifest buckets exist before the stack (the engine creates only the destinations)."""
        s3 = self.s3()
        existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        raw = self.engine.deployment.environment.get(env_names.MANIFEST_BUCKETS, "[]")
        for bucket in json.loads(raw):
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    # -- configuration of the deployed stack -----------------------------------------------------------

    @property
    def destinations(self) -> list[dict[str, str]]:
        return list(json.loads(self.engine.deployment.environment[env_names.DESTINATIONS]))

    @property
    def dest(self) -> str:
        """The first configured destination bucket."""
        return self.destinations[0]["bucket"]

    def prefixed_destination(self) -> dict[str, str] | None:
        """A configured destination restricted to a prefix, if the template has one."""
        return next((d for d in self.destinations if d.get("prefix")), None)

    @property
    def manifest_bucket(self) -> str:
        """A bucket Plan may read manifests from (a configured manifest bucket, else a destination)."""
        raw = self.engine.deployment.environment.get(env_names.MANIFEST_BUCKETS, "[]")
        buckets = [b for b in json.loads(raw) if b not in {d["bucket"] for d in self.destinations}]
        return buckets[0] if buckets else self.dest

    def s3(self, region: str = "us-east-1") -> Any:
        return self.engine.client("s3", region=region)

    # -- data ----------------------------------------------------------------------------------------

    def seed(self, keys: list[str], size: int | Callable[[int], int] = 1024) -> dict[str, str]:
        """Put ``keys`` into the source bucket with random bytes; return key -> sha256.

        Up to BULK_SEED keys go through the S3 API; more are written into moto's S3 backend directly
        (3 ms vs 0.05 ms per object: seeding is setup, not the code path under test).
        """
        s3 = self.s3("us-west-2")
        backend = moto_s3_backend() if len(keys) > BULK_SEED else None
        out = {}
        for index, key in enumerate(keys):
            length = size(index) if callable(size) else size
            body = self.rng.randbytes(length)
            if backend is not None:
                backend.put_object(SOURCE, key, body)
            else:
                s3.put_object(Bucket=SOURCE, Key=key, Body=body)
            out[key] = self.sources[key] = hashlib.sha256(body).hexdigest()
            self.sizes[key] = length
        return out

    def stored(self, bucket: str) -> dict[str, str]:
        """key -> sha256 of every object stored in ``bucket`` (read from moto's backend: the bytes S3 holds)."""
        found = {}
        for name, key in moto_s3_backend().get_bucket(bucket).keys.items():
            value = getattr(key, "value", None)  # delete markers have none
            if value is not None:
                found[name] = hashlib.sha256(value).hexdigest()
        return found

    def put_input(self, bucket: str, key: str, body: str | bytes) -> str:
        """Put a scenario input (e.g. a manifest); invariants ignore it. Returns its s3:// URL."""
        self.s3().put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)
        self.inputs.add((bucket, key))
        return f"s3://{bucket}/{key}"

    def job(self, keys: list[str], prefix: str = "chaos/", bucket: str | None = None, **source: Any) -> dict[str, Any]:
        """A keys job; registers what the destination may hold afterwards."""
        bucket = bucket or self.dest
        self.expect_copies(keys, bucket, prefix)
        return {
            "source": {"bucket": SOURCE, "keys": keys, **source},
            "destination": {"bucket": bucket, "prefix": prefix},
        }

    def expect_copies(self, keys: list[str], bucket: str, prefix: str) -> None:
        for key in keys:
            if key in self.sources:
                self.expected[(bucket, prefix + key)] = self.sources[key]

    # -- runs ----------------------------------------------------------------------------------------

    def run(self, job_input: Any, timeout: float = RUN_TIMEOUT) -> RunResult:
        self._runs += 1
        name = f"{self.name}-{self._runs}-{int(time.time() * 1000) % 100000}"
        result = self.engine.run(job_input, name=name, timeout=timeout)
        self.results.append(result)
        return result

    # -- scenario-specific expectations ----------------------------------------------------------------

    def expect(self, ok: bool, what: str) -> bool:
        """Record a scenario-specific expectation (shown in the table; a failed one fails the scenario)."""
        self.notes.append(what)
        if not ok:
            self.problems.append(what)
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)

    # -- hooks -----------------------------------------------------------------------------------------

    def expire_when(self, predicate: Callable[[S3Request], bool], times: int = 1) -> Callable[[], int]:
        """Expire every credential set TEA issued so far when an S3 request matches ``predicate``.

        Fires at most ``times`` times; returns a function that tells how often it fired.
        """
        fired = [0]

        def hook(request: S3Request) -> None:
            if fired[0] < times and predicate(request):
                fired[0] += 1
                self.tea.expire()

        self.faults.on_request(hook)
        return lambda: fired[0]

    def expire_at_source_gets(self, thresholds: list[int]) -> Callable[[], int]:
        """Expire the credentials in use when the count of source GETs reaches each threshold (in order).

        Returns a function telling how many expiries were injected.
        """
        state = {"next": 0}
        lock = threading.Lock()

        def hook(request: S3Request) -> None:
            if request.bucket != SOURCE or request.operation != "GetObject":
                return
            with lock:
                index = state["next"]
                if index >= len(thresholds) or self.source_gets() < thresholds[index]:
                    return
                state["next"] += 1
            self.tea.expire()

        self.faults.on_request(hook)
        return lambda: state["next"]

    def source_gets(self) -> int:
        return self.faults.count("GetObject", SOURCE)

    def secrets(self) -> list[str]:
        """Every secret the run could leak: the EDL token, each issued secret key and session token."""
        found = [TOKEN, self.spec.token, *self.extra_secrets]
        for access_key_id, _expiration in self.tea.issued:
            issued = self.tea.credentials_of(access_key_id)
            if issued is not None:
                found += [issued.secret_access_key, issued.session_token]
        return [s for s in dict.fromkeys(found) if s]

    def staging_keys(self, prefix: str = "") -> Iterator[str]:
        s3 = self.s3()
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.engine.deployment.staging_bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                yield item["Key"]
