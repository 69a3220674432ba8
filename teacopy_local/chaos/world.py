"""One scenario's world: the TEA emulator, the local engine with S3 fault injection, and seeded data.

A ``World`` deploys the synthesized template (optionally edited by the scenario) into a fresh local
engine (moto, Lambdas in-process, IAM and Lambda timeouts enforced), starts a TEA emulator, installs the
S3 fault layer (``moto_adapters.s3_fault_injection``) and remembers, from the scenario's own inputs, what
the destination must and may hold: ``expected[(bucket, key)] = sha256`` for every object a job was asked to
copy and that exists in the source, and per run (``RunRecord``) the objects that run asked for, the ones it
must leave (all of them when it succeeds) and the objects S3 stored while it ran. The invariant checks
(``invariants.py``) compare the buckets, the run reports and the logs against that knowledge, never
against teacopy's own result log or staged manifest.
"""

from __future__ import annotations

import copy
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
    function_timeouts: Mapping[str, float] = field(default_factory=dict)  # function logical id -> seconds
    template_edit: Callable[[dict[str, Any]], None] | None = None  # edits a copy of the template (IAM scenarios)


Place = tuple[str, str]  # (bucket, key)


@dataclass
class RunRecord:
    """One run and what the scenario knows about it, independently of teacopy's own records."""

    result: RunResult
    asked: int | None  # objects the job asked for (None: the scenario did not say)
    expected: dict[Place, str]  # object -> sha256 of its source: present and identical if the run succeeds
    dest_of: dict[str, Place]  # source key -> where the job maps it (asked keys, present at the source or not)
    must_exist: set[Place]  # objects the scenario says must be there even if the run fails
    written: set[Place]  # objects S3 stored (PutObject, CompleteMultipartUpload) while the run ran

    @property
    def run_id(self) -> str:
        return self.result.execution_arn.rsplit(":", 1)[-1]


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
        self.expected: dict[Place, str] = {}  # (bucket, key) -> sha256 a destination object may have
        self.inputs: set[Place] = set()  # objects the scenario itself put (manifests)
        self.results: list[RunResult] = []
        self.runs: list[RunRecord] = []
        self._next: dict[str, Any] = self._fresh_expectations()  # what the next run is asked for
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
            template = self.template
            if self.spec.template_edit is not None:
                template = copy.deepcopy(template)
                self.spec.template_edit(template)
            self.engine = self._stack.enter_context(
                LocalEngine(
                    template,
                    tea=self.tea,
                    edl_token=self.spec.token,
                    source_buckets={SOURCE},
                    env_overrides=overrides,
                    function_timeouts=dict(self.spec.function_timeouts),
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

    def destination_objects(self) -> dict[Place, str]:
        """(bucket, key) -> sha256 of every object in the destination buckets (scenario inputs excluded)."""
        found: dict[Place, str] = {}
        for bucket in self.engine.deployment.destination_buckets:
            for key, digest in self.stored(bucket).items():
                if (bucket, key) not in self.inputs:
                    found[(bucket, key)] = digest
        return found

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
        """The next run is asked for ``keys`` (into ``bucket``/``prefix``): each one in the source must arrive."""
        self._next["asked"] += len(keys)
        for key in keys:
            place = (bucket, prefix + key)
            self._next["dest_of"][key] = place
            if key in self.sources:
                self.expected[place] = self._next["expected"][place] = self.sources[key]

    def expect_present(self, keys: list[str], bucket: str, prefix: str) -> None:
        """These objects must be at the destination after the next run even if it fails (its other objects may not)."""
        self._next["must_exist"].update((bucket, prefix + key) for key in keys)

    @staticmethod
    def _fresh_expectations() -> dict[str, Any]:
        return {"asked": 0, "expected": {}, "dest_of": {}, "must_exist": set()}

    # -- runs ----------------------------------------------------------------------------------------

    def run(self, job_input: Any, timeout: float = RUN_TIMEOUT) -> RunResult:
        """Run an execution; what it was asked for (``job``, ``expect_copies``, ``expect_present``) goes with it."""
        self._runs += 1
        name = f"{self.name}-{self._runs}-{int(time.time() * 1000) % 100000}"
        asked, self._next = self._next, self._fresh_expectations()
        writes_before = dict(self.faults.writes)
        result = self.engine.run(job_input, name=name, timeout=timeout)
        written = {place for place, count in self.faults.writes.items() if count > writes_before.get(place, 0)}
        self.results.append(result)
        self.runs.append(
            RunRecord(
                result=result,
                asked=asked["asked"] or None,
                expected=asked["expected"],
                dest_of=asked["dest_of"],
                must_exist=asked["must_exist"],
                written=written,
            )
        )
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
