"""The bad-input matrix: malformed executions an operator could type, each rejected before any copy.

Every case must fail the execution with ``InvalidInput`` whose message starts with the field it names
(``"<field>: <rule>"``) and contains a fragment of the rule, with no TEA call, nothing written to the
destination and nothing staged for the run. All cases share one world (one deployment): none of them
may change anything, which is itself checked after each case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import invariants
from .model import Outcome, operator_message
from .world import PREFIXED_DESTINATION, SOURCE, World

MAX_INPUT_BYTES = 256 * 1024  # Step Functions' execution input / state payload limit


@dataclass(frozen=True)
class BadInput:
    name: str
    field: str  # the message must start with "<field>: "
    rule: str  # ... and contain this fragment of the rule
    build: Callable[[World], Any]  # the execution input (may put a manifest first)
    fault: str = ""  # how the input is malformed, in words (defaults to the name)

    @property
    def id(self) -> str:
        return f"input/{self.name}"

    def expected(self) -> str:
        return f"FAILED InvalidInput TEA=0 '{self.field}: …{self.rule}…'"


def _job(world: World, source: Any = None, destination: Any = None, **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"bucket": SOURCE, "keys": ["good/a.nc"]} if source is None else source,
        "destination": {"bucket": world.dest, "prefix": "bad/"} if destination is None else destination,
    }
    body.update(top)
    return body


def _keys(*keys: Any) -> Callable[[World], Any]:
    return lambda w: _job(w, {"bucket": SOURCE, "keys": list(keys)})


def _source(**source: Any) -> Callable[[World], Any]:
    return lambda w: _job(w, source)


def _dest(**destination: Any) -> Callable[[World], Any]:
    return lambda w: _job(w, destination={"bucket": w.dest, **destination})


def _options(options: Any) -> Callable[[World], Any]:
    return lambda w: _job(w, options=options)


def _manifest(text: str, name: str) -> Callable[[World], Any]:
    def build(world: World) -> Any:
        url = world.put_input(world.manifest_bucket, f"lists/{name}", text)
        return _job(world, {"bucket": SOURCE, "manifest": url})

    return build


def _oversized(world: World) -> Any:
    """Fewer keys than the inline limit, but more bytes than a Step Functions input may have."""
    keys = [f"long/{i:04d}/" + "k" * 880 + ".nc" for i in range(320)]
    return _job(world, {"bucket": SOURCE, "keys": keys})


BAD_INPUTS: list[BadInput] = [
    BadInput("input-not-an-object", "input", "must be a JSON object", lambda w: ["good/a.nc"]),
    BadInput("input-null", "input", "must be a JSON object", lambda w: None),
    BadInput("missing-source", "source", "is required", lambda w: {"destination": {"bucket": w.dest}}),
    BadInput(
        "missing-destination", "destination", "is required", lambda w: {"source": {"bucket": SOURCE, "keys": ["a"]}}
    ),
    BadInput("unknown-top-level-field", "sourcebucket", "unknown field", lambda w: _job(w, sourcebucket=SOURCE)),
    BadInput("source-not-an-object", "source", "must be a JSON object", lambda w: _job(w, f"s3://{SOURCE}/a.nc")),
    BadInput("unknown-source-field", "source.key", "unknown field", _source(bucket=SOURCE, key="a.nc")),
    BadInput("source-bucket-missing", "source.bucket", "is required", _source(keys=["a.nc"])),
    BadInput("source-bucket-wrong-type", "source.bucket", "must be a string", _source(bucket=42, keys=["a.nc"])),
    BadInput(
        "source-bucket-invalid-name",
        "source.bucket",
        "not a valid S3 bucket name",
        _source(bucket="My_DAAC_Bucket", keys=["a.nc"]),
    ),
    BadInput(
        "source-bucket-ip-address",
        "source.bucket",
        "not a valid S3 bucket name",
        _source(bucket="192.168.0.1", keys=["a"]),
    ),
    BadInput(
        "source-bucket-too-long", "source.bucket", "not a valid S3 bucket name", _source(bucket="b" * 64, keys=["a"])
    ),
    BadInput(
        "source-keys-and-manifest",
        "source",
        "exactly one of",
        _source(bucket=SOURCE, keys=["a.nc"], manifest="s3://teacopy-manifests/x.txt"),
    ),
    BadInput("source-without-objects", "source", "exactly one of", _source(bucket=SOURCE)),
    BadInput("keys-not-a-list", "source.keys", "must be a list", _source(bucket=SOURCE, keys="good/a.nc")),
    BadInput("keys-wrong-type-object", "source.keys", "must be a list", _source(bucket=SOURCE, keys={"a.nc": 1})),
    BadInput("keys-empty", "source.keys", "must not be empty", _keys()),
    BadInput("key-not-a-string", "source.keys[1]", "must be a string", _keys("good/a.nc", 42)),
    BadInput("key-empty-string", "source.keys[0]", "must not be empty", _keys("")),
    BadInput("keys-duplicated", "source.keys[2]", "duplicate key", _keys("good/a.nc", "good/b.nc", "good/a.nc")),
    BadInput("key-dot-dot", "source.keys[0]", "'..' path segment", _keys("granules/../../etc/passwd")),
    BadInput("key-leading-slash", "source.keys[0]", "must not start with '/'", _keys("/granules/a.nc")),
    BadInput("key-newline", "source.keys[0]", "control or invisible character", _keys("granules/a\nb.nc")),
    BadInput("key-nul", "source.keys[0]", "control or invisible character", _keys("granules/a\x00.nc")),
    BadInput("key-zero-width-space", "source.keys[0]", "control or invisible character", _keys("granules/a\u200b.nc")),
    BadInput("key-bidi-override", "source.keys[0]", "control or invisible character", _keys("granules/\u202egpj.exe")),
    BadInput("key-over-1024-bytes", "source.keys[0]", "longer than 1024 bytes", _keys("é" * 600)),
    BadInput("key-is-an-s3-url", "source.keys[0]", "without s3://", _keys(f"s3://{SOURCE}/a.nc")),
    BadInput(
        "inline-keys-over-count-limit",
        "source.keys",
        "inline",
        lambda w: _job(w, {"bucket": SOURCE, "keys": [f"k/{i}.nc" for i in range(1001)]}),
    ),
    BadInput("inline-keys-over-256KiB", "source.keys", "256 KiB", _oversized),
    BadInput(
        "destination-not-allowed",
        "destination.bucket",
        "not an allowed destination",
        lambda w: _job(w, destination={"bucket": "someone-elses-bucket"}),
    ),
    BadInput(
        "destination-bucket-invalid",
        "destination.bucket",
        "not a valid S3 bucket name",
        lambda w: _job(w, destination={"bucket": "Not A Bucket"}),
    ),
    BadInput(
        "destination-prefix-not-allowed",
        "destination.prefix",
        "allowed prefixes",
        lambda w: _job(w, destination={"bucket": PREFIXED_DESTINATION["bucket"], "prefix": "elsewhere/"}),
    ),
    BadInput("destination-prefix-dot-dot", "destination.prefix", "'..'", _dest(prefix="copies/../../x/")),
    BadInput("destination-prefix-leading-slash", "destination.prefix", "must not start with '/'", _dest(prefix="/x/")),
    BadInput("destination-prefix-wrong-type", "destination.prefix", "must be a string", _dest(prefix=["x"])),
    BadInput("destination-unknown-field", "destination.region", "unknown field", _dest(region="us-west-2")),
    BadInput(
        "destination-not-an-object", "destination", "must be a JSON object", lambda w: _job(w, destination=w.dest)
    ),
    BadInput("options-not-an-object", "options", "must be an object", _options("fast")),
    BadInput("options-overwrite-invalid", "options.overwrite", "must be one of", _options({"overwrite": "sometimes"})),
    BadInput("options-absurd-concurrency", "options.concurrency", "unknown field", _options({"concurrency": 10**6})),
    BadInput("options-absurd-batch-size", "options.batch_size", "unknown field", _options({"batch_size": 0})),
    BadInput("manifest-not-a-url", "source.manifest", "s3://", _source(bucket=SOURCE, manifest="lists/keys.txt")),
    BadInput(
        "manifest-bucket-not-allowed",
        "source.manifest",
        "not readable by teacopy",
        _source(bucket=SOURCE, manifest="s3://someone-elses-bucket/keys.txt"),
    ),
    BadInput(
        "manifest-missing",
        "source.manifest",
        "NoSuchKey",
        lambda w: _job(w, {"bucket": SOURCE, "manifest": f"s3://{w.manifest_bucket}/lists/none.txt"}),
    ),
    BadInput("manifest-empty", "source.manifest", "no keys", _manifest("# nothing here\n", "empty.txt")),
    BadInput(
        "manifest-key-dot-dot", "source.manifest line 2", "'..' path segment", _manifest("a.nc\n../b.nc\n", "dd.txt")
    ),
    BadInput("manifest-duplicates", "source.manifest line 3", "duplicate", _manifest("a.nc\nb.nc\na.nc\n", "dup.txt")),
]


def run_bad_input(case: BadInput, world: World) -> Outcome:
    """Run one case in the shared ``world`` and check it changed nothing."""
    started = time.monotonic()
    problems: list[str] = []
    tea_before = world.tea.requests
    results_before = len(world.results)
    job = case.build(world)
    result = world.run(job, timeout=60)
    message = operator_message(result)
    observed = f"{result.status} {result.error or ''} {message[:200]!r}"
    if result.status != "FAILED" or result.error != "InvalidInput":
        problems.append(f"{result.status} {result.error}, expected FAILED InvalidInput")
    if not message.startswith(f"{case.field}: "):
        problems.append(f"message does not name the field {case.field!r}")
    if case.rule not in message:
        problems.append(f"message lacks the rule {case.rule!r}")
    if world.tea.requests != tea_before:
        problems.append(f"TEA was called {world.tea.requests - tea_before} times")
    run_id = result.execution_arn.rsplit(":", 1)[-1]
    staged = list(world.staging_keys(f"runs/{run_id}/"))
    if staged:
        problems.append(f"the run staged {len(staged)} objects: {staged[:2]}")
    report = invariants.InvariantReport()
    copied = [k for k in _destination_keys(world) if k not in world.inputs]
    if copied:
        report.corrupt += len(copied)
        report.problems.append(f"objects written: {copied[:3]}")
    invariants.check_uploads(world, report)
    secrets = world.secrets()
    leaks = world.engine.scan_for_secrets(secrets, [result.execution_arn])
    if any(secret in message for secret in secrets):
        leaks.append("operator message")
    if leaks:
        report.leaked += len(leaks)
        report.problems.append(f"secrets found in: {leaks[:3]}")
    problems += report.problems
    del world.results[results_before:]  # keep the shared world's run list short
    del world.runs[results_before:]
    return Outcome(
        scenario_id=case.id,
        category="input",
        name=case.name,
        fault=case.fault or case.name.replace("-", " "),
        expected=case.expected(),
        observed=observed,
        message=message,
        notes=[],
        problems=problems,
        invariants=report,
        seconds=time.monotonic() - started,
    )


def _destination_keys(world: World) -> list[tuple[str, str]]:
    return [(bucket, key) for bucket in world.engine.deployment.destination_buckets for key in world.stored(bucket)]


def prepare(world: World) -> None:
    """Seed the shared world: the keys the matrix names exist, so only the input itself is wrong."""
    world.seed(["good/a.nc", "good/b.nc", "a.nc", "b.nc"], 256)
