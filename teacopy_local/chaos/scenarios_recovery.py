"""Scenarios of damage that gets past the usual paths (issue 15): each must end clean.

- ``staging``: a damaged upload checkpoint (not JSON, naming another object, garbled parts; also when the
  run fails and Summarize cleans up) and a damaged result file;
- ``limits``: Lambda timeouts (CopyBatch, Credentials, Plan cut off mid-work, then retried by the state
  machine) and IAM (a missing grant, a refused listing), as the local engine now enforces them;
- ``s3``: faults that outlast botocore's retries (so TransientCopyError and the state machine's Retry run),
  destination answers ``BadDigest``/``InvalidDigest``/``NoSuchUpload``;
- ``credentials``: the refresher killed while it holds the refresh lease, with workers waiting on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from lambdas.contracts import env_names, staging
from stacks.teacopy_stack import LOGICAL_IDS

from ..engine import RunResult
from ..moto_adapters import Invocation, LambdaKilled, S3Request, current_invocation
from .model import Expected, scenario
from .scenarios import ONE_AT_A_TIME, copy_batch_invocations, each_put_once, keys, simple_run
from .world import PART, SOURCE, World, WorldSpec

COPY, CREDENTIALS, PLAN = LOGICAL_IDS["copy_batch"], LOGICAL_IDS["credentials"], LOGICAL_IDS["plan"]
SUMMARIZE = LOGICAL_IDS["summarize"]
# The CopyBatch clients' retries={"max_attempts": 8} (lambdas/handlers/copy_batch.py): botocore's max_attempts
# counts the retries after the first attempt, so a request is sent 9 times before the SDK gives up.
SDK_ATTEMPTS = 9


def before_invocation(world: World, function: str, nth: int, action: Callable[[dict[str, Any]], object]) -> None:
    """Run ``action(event)`` at the start of the ``nth`` invocation of ``function`` (inside it: its time counts)."""
    previous = world.engine.runtime.fault
    seen = {"count": 0}

    def fault(name: str, event: dict[str, Any]) -> None:
        if previous is not None:
            previous(name, event)
        if name == function:
            seen["count"] += 1
            if seen["count"] == nth:
                action(event)

    world.engine.runtime.fault = fault


def staging_files(world: World, run_id: str, part: str) -> list[str]:
    return sorted(world.staging_keys(f"{staging.run_prefix(run_id)}{part}"))


def overwrite(world: World, key: str, body: bytes) -> None:
    world.s3().put_object(Bucket=world.engine.deployment.staging_bucket, Key=key, Body=body)


def damage_checkpoint(world: World, alter: Callable[[dict[str, Any]], bytes]) -> Callable[[dict[str, Any]], None]:
    """An action that rewrites the run's (one) upload checkpoint with ``alter(checkpoint)``."""

    def action(event: dict[str, Any]) -> None:
        found = staging_files(world, str(event["run_id"]), "uploads/")
        world.expect(len(found) == 1, f"upload checkpoints before the damage: {len(found)} (1)")
        for key in found:
            raw = json.loads(
                world.s3().get_object(Bucket=world.engine.deployment.staging_bucket, Key=key)["Body"].read()
            )
            overwrite(world, key, alter(raw))

    return action


def killed_mid_multipart(world: World, big: str) -> None:
    """The first CopyBatch invocation dies at part 2 of ``big`` (its checkpoint names the open upload)."""
    world.seed([big], 3 * PART)
    world.faults.add("kill", operations=("UploadPart",), bucket=world.dest, key=f"chaos/{big}", skip=1, times=1)


def uploads_created(world: World, key: str) -> int:
    return world.faults.count("CreateMultipartUpload", world.dest, key)


# --- staging: damaged checkpoints and result files ------------------------------------------------------------


@scenario(
    "checkpoint-not-json",
    "staging",
    "CopyBatch dies mid-multipart; its upload checkpoint is overwritten with bytes that are not JSON",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def checkpoint_not_json(world: World) -> RunResult:
    big = "ckpt/big-15MiB.nc"
    killed_mid_multipart(world, big)
    before_invocation(world, COPY, 2, damage_checkpoint(world, lambda _c: b'{"upload_id": "\x00\xff'))
    result = world.run(world.job([big]))
    created, listed = uploads_created(world, f"chaos/{big}"), world.faults.count("ListMultipartUploads", world.dest)
    world.expect(created == 2 and listed >= 1, f"uploads created {created} (2: started over), listings {listed} (>= 1)")
    return result


@scenario(
    "checkpoint-names-another-object",
    "staging",
    "CopyBatch dies mid-multipart; its checkpoint is altered to name another source key",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def checkpoint_other_object(world: World) -> RunResult:
    big = "ckpt/big-15MiB.nc"
    killed_mid_multipart(world, big)
    before_invocation(world, COPY, 2, damage_checkpoint(world, lambda c: json.dumps({**c, "key": "x/y.nc"}).encode()))
    result = world.run(world.job([big]))
    created, listed = uploads_created(world, f"chaos/{big}"), world.faults.count("ListMultipartUploads", world.dest)
    world.expect(created == 2 and listed == 0, f"uploads created {created} (2), listings {listed} (0: aborted by id)")
    return result


@scenario(
    "checkpoint-parts-garbled",
    "staging",
    "CopyBatch dies mid-multipart; its checkpoint's parts and size are garbled (the upload id is intact)",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def checkpoint_garbled(world: World) -> RunResult:
    big = "ckpt/big-15MiB.nc"
    killed_mid_multipart(world, big)
    garble = damage_checkpoint(world, lambda c: json.dumps({**c, "parts": "lost", "size": -1}).encode())
    before_invocation(world, COPY, 2, garble)
    result = world.run(world.job([big]))
    created = uploads_created(world, f"chaos/{big}")
    world.expect(created == 2, f"uploads created {created} (2: the garbled one aborted, the object started over)")
    return result


@scenario(
    "checkpoint-not-json-when-the-run-fails",
    "staging",
    "every CopyBatch invocation dies at the first part (the batch fails); the checkpoint is garbage at Summarize",
    Expected("FAILED", "CopyJobFailed", ("not attempted",), {"copied": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def checkpoint_garbage_at_summarize(world: World) -> RunResult:
    big = "ckpt/big-15MiB.nc"
    world.seed([big], 3 * PART)
    world.faults.add("kill", operations=("UploadPart",), bucket=world.dest, key=f"chaos/{big}", times=None)
    before_invocation(world, SUMMARIZE, 1, damage_checkpoint(world, lambda _c: b"not a checkpoint"))
    result = world.run(world.job([big]))
    aborted = (result.report or {}).get("uploads_aborted")
    world.expect(aborted == 1, f"uploads aborted by Summarize {aborted} (1: found through the manifest)")
    return result


def damage_results(world: World, body: bytes) -> Callable[[dict[str, Any]], None]:
    def action(event: dict[str, Any]) -> None:
        found = staging_files(world, str(event["run_id"]), "results/")
        world.expect(len(found) >= 1, f"result files before the damage: {len(found)} (>= 1)")
        for key in found:
            overwrite(world, key, body)

    return action


def result_file_scenario(world: World, body: bytes) -> RunResult:
    """3 objects recorded, then credentials expire; before the next invocation the result file is damaged."""
    names = keys("results", 6)
    world.seed(names, 4096)
    world.expire_at_source_gets([4])
    before_invocation(world, COPY, 2, damage_results(world, body))
    result = world.run(world.job(names))
    run_id = result.execution_arn.rsplit(":", 1)[-1]
    kept = staging_files(world, run_id, "set-aside/results/")
    world.expect(len(kept) >= 1, f"set-aside result files kept for the operator: {len(kept)} (>= 1)")
    each_put_once(world, world.dest, [f"chaos/{k}" for k in names])  # redone idempotently: skipped, not rewritten
    return result


@scenario(
    "result-file-not-json",
    "staging",
    "the batch's result file is truncated between two invocations (not JSON any more)",
    Expected(counts={"copied": 3, "skipped": 3, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def result_file_not_json(world: World) -> RunResult:
    return result_file_scenario(world, b'[{"key": "g/granule-000.nc", "status": "cop')


@scenario(
    "result-file-not-a-list",
    "staging",
    "the batch's result file is replaced by a JSON object between two invocations",
    Expected(counts={"copied": 3, "skipped": 3, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def result_file_not_a_list(world: World) -> RunResult:
    return result_file_scenario(world, b'{"copied": 3}')


# --- limits: Lambda timeouts and IAM, enforced by the local engine ---------------------------------------------


def stall_once(world: World, predicate: Callable[[S3Request], bool], seconds: float) -> Callable[[], bool]:
    """Stall (in the requesting thread) the first S3 request matching ``predicate``; tells whether it fired."""
    fired = [False]

    def hook(request: S3Request) -> None:
        if not fired[0] and predicate(request):
            fired[0] = True
            time.sleep(seconds)

    world.faults.on_request(hook)
    return lambda: fired[0]


def timed_out(world: World, function: str, times: int = 1) -> None:
    count = world.engine.runtime.timeouts[function]
    refused = world.engine.runtime.zombie_requests
    world.expect(count == times, f"{function} invocations cut off at their timeout: {count} ({times})")
    world.note(f"requests of ended invocations refused: {refused}")


@scenario(
    "copybatch-timeout-mid-batch",
    "limits",
    "CopyBatch (timeout 5 s) stalls 7 s on its 3rd PUT: Lambda cuts it off, Step Functions retries it",
    Expected(counts={"objects": 6, "failed": 0}),
    world=WorldSpec(env={**ONE_AT_A_TIME, env_names.DEADLINE_RESERVE_SECONDS: "1"}, function_timeouts={COPY: 5}),
    slow=True,
)
def copybatch_timeout_mid_batch(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    stall_once(
        world,
        lambda r: (
            r.operation == "PutObject" and r.bucket == world.dest and world.faults.count("PutObject", world.dest) == 3
        ),
        7,
    )
    result = world.run(world.job(names))
    timed_out(world, COPY)
    each_put_once(world, world.dest, [f"chaos/{k}" for k in names])  # the stalled PUT never left the dead sandbox
    return result


@scenario(
    "copybatch-timeout-mid-multipart",
    "limits",
    "CopyBatch (timeout 5 s) stalls 7 s at part 2 of 3: the retry continues the same upload",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env={**ONE_AT_A_TIME, env_names.DEADLINE_RESERVE_SECONDS: "1"}, function_timeouts={COPY: 5}),
    slow=True,
)
def copybatch_timeout_mid_multipart(world: World) -> RunResult:
    big = "timeout/big-15MiB.nc"
    world.seed([big], 3 * PART)
    stall_once(world, lambda r: r.operation == "UploadPart" and world.faults.count("UploadPart", world.dest) == 2, 7)
    result = world.run(world.job([big]))
    timed_out(world, COPY)
    created = uploads_created(world, f"chaos/{big}")
    world.expect(created == 1, f"uploads created {created} (1: the retry continued the checkpointed upload)")
    return result


def stall_first(world: World, function: str, seconds: float, action: str | None = None) -> None:
    """The first invocation of ``function`` (with this ``action``, if given) hangs ``seconds`` before working."""

    def stall(event: dict[str, Any]) -> None:
        if action is None or event.get("action") == action:
            time.sleep(seconds)

    before_invocation(world, function, 1, stall)


@scenario(
    "credentials-fetch-timeout",
    "limits",
    "FetchCredentials (timeout 4 s) hangs 5 s: cut off, retried; its late TEA call never happens",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=1, tea_max=1),
    world=WorldSpec(function_timeouts={CREDENTIALS: 4}),
    slow=True,
)
def credentials_fetch_timeout(world: World) -> RunResult:
    stall_first(world, CREDENTIALS, 5, "fetch")
    result = simple_run(world)
    timed_out(world, CREDENTIALS)
    return result


@scenario(
    "plan-timeout",
    "limits",
    "Plan (timeout 4 s) hangs 5 s: cut off, retried, the run plans once",
    Expected(counts={"objects": 6, "copied": 6, "failed": 0}),
    world=WorldSpec(function_timeouts={PLAN: 4}),
    slow=True,
)
def plan_timeout(world: World) -> RunResult:
    stall_first(world, PLAN, 5)
    result = simple_run(world)
    timed_out(world, PLAN)
    return result


def _copy_role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = template["Resources"][COPY]["Properties"]["Role"]["Fn::GetAtt"][0]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
            statements: list[dict[str, Any]] = resource["Properties"]["PolicyDocument"]["Statement"]
            return statements
    raise KeyError(f"no policy for the role of {COPY}")


def _actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return list(value) if isinstance(value, list) else [value]


def without_destination_put(template: dict[str, Any]) -> None:
    """The copy role loses s3:PutObject on the first destination (a too-narrow deployment)."""
    for statement in _copy_role_statements(template):
        if "s3:PutObject" in _actions(statement) and ":s3:::my-earthdata-copy/*" in json.dumps(statement["Resource"]):
            statement["Action"] = [a for a in _actions(statement) if a != "s3:PutObject"]


def archive_listing_elsewhere(template: dict[str, Any]) -> None:
    """The copy role may list the prefixed destination only under another prefix."""
    for statement in _copy_role_statements(template):
        if _actions(statement) == ["s3:ListBucket"] and "podaac/*" in json.dumps(statement.get("Condition")):
            statement["Condition"] = {"StringLike": {"s3:prefix": ["elsewhere/*"]}}


@scenario(
    "iam-copy-role-without-put",
    "limits",
    "the copy role's policy lacks s3:PutObject on the destination (IAM enforced by the local engine)",
    Expected("FAILED", "CopyJobFailed", ("DestinationAccessDenied", "PutObject: AccessDenied"), {"copied": 0}),
    world=WorldSpec(template_edit=without_destination_put),
)
def iam_without_put(world: World) -> RunResult:
    result = simple_run(world)
    denied = [d for d in world.engine.policy.denied if d[1] == "s3:PutObject"]
    world.expect(bool(denied), f"PutObject requests refused by the role's policy: {len(denied)} (>= 1)")
    return result


@scenario(
    "iam-destination-listing-refused",
    "limits",
    "the copy role may not list the destination prefix (s3:prefix condition): each object is HEADed instead",
    Expected(counts={"copied": 4, "failed": 0}),
    world=WorldSpec(template_edit=archive_listing_elsewhere),
)
def iam_listing_refused(world: World) -> RunResult:
    target = world.prefixed_destination() or world.destinations[0]
    names = keys("listing", 4)
    world.seed(names, 1024)
    result = world.run(world.job(names, prefix=f"{target['prefix']}list/", bucket=target["bucket"]))
    heads = world.faults.count("HeadObject", target["bucket"])
    denied = [d for d in world.engine.policy.denied if d[1] == "s3:ListBucket"]
    world.expect(bool(denied) and heads == 4, f"listings refused {len(denied)} (>= 1), HEADs {heads} (4)")
    return result


# --- s3: past the SDK's retries, digests, vanished uploads -------------------------------------------------------


def past_the_sdk(world: World, rule: Any, function: str = COPY) -> None:
    """The fault outlasted botocore's attempts: TransientCopyError, and the state machine's Retry ran again."""
    raised = sum(
        1 for name, kind, _m in world.engine.runtime.errors if name == function and kind == "TransientCopyError"
    )
    world.expect(
        rule.fired == SDK_ATTEMPTS and raised >= 1 and copy_batch_invocations(world) >= 2,
        f"answered {rule.fired} times ({SDK_ATTEMPTS}: every SDK attempt), TransientCopyError raised {raised}, "
        f"CopyBatch invocations {copy_batch_invocations(world)} (>= 2: Step Functions retried)",
    )


@scenario(
    "s3-500-past-sdk-retries-on-source-get",
    "s3",
    f"InternalError 500 on {SDK_ATTEMPTS} GETs of one key: more than the SDK retries",
    Expected(counts={"objects": 6, "failed": 0}),
    slow=True,
)
def s3_past_sdk_get(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    rule = world.faults.add("internal_error", bucket=SOURCE, key=names[2], times=SDK_ATTEMPTS)
    result = world.run(world.job(names))
    past_the_sdk(world, rule)
    return result


@scenario(
    "s3-500-past-sdk-retries-on-destination-put",
    "s3",
    f"InternalError 500 on {SDK_ATTEMPTS} PUTs of one destination key",
    Expected(counts={"objects": 6, "failed": 0}),
    slow=True,
)
def s3_past_sdk_put(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    rule = world.faults.add(
        "internal_error", operations=("PutObject",), bucket=world.dest, key=f"chaos/{names[4]}", times=SDK_ATTEMPTS
    )
    result = world.run(world.job(names))
    past_the_sdk(world, rule)
    return result


@scenario(
    "s3-500-past-sdk-retries-on-upload-part",
    "s3",
    f"InternalError 500 on {SDK_ATTEMPTS} attempts of part 2 of 3: paused, retried, resumed at part 2",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def s3_past_sdk_part(world: World) -> RunResult:
    big = "past/big-15MiB.nc"
    world.seed([big], 3 * PART)
    rule = world.faults.add(
        "internal_error", operations=("UploadPart",), bucket=world.dest, key=f"chaos/{big}", skip=1, times=SDK_ATTEMPTS
    )
    result = world.run(world.job([big]))
    past_the_sdk(world, rule)
    parts = world.faults.count("UploadPart", world.dest, f"chaos/{big}")
    world.expect(parts == 3 + SDK_ATTEMPTS, f"UploadPart requests {parts} ({3 + SDK_ATTEMPTS}: part 1 not redone)")
    return result


@scenario(
    "s3-bad-digest-once-on-put",
    "s3",
    "the destination answers BadDigest to one PUT: the object is read and written again",
    Expected(counts={"copied": 6, "failed": 0}),
)
def s3_bad_digest_once(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    key = f"chaos/{names[1]}"
    world.faults.add("bad_digest", operations=("PutObject",), bucket=world.dest, key=key, times=1)
    result = world.run(world.job(names))
    puts = world.faults.count("PutObject", world.dest, key)
    world.expect(puts == 2, f"PUTs of the rejected object {puts} (2)")
    return result


@scenario(
    "s3-bad-digest-always-on-put",
    "s3",
    "the destination answers BadDigest to every PUT of one object: it fails, the rest is copied",
    Expected("FAILED", "CopyJobFailed", ("1 of 6 objects failed",), {"copied": 5, "failed": 1}),
)
def s3_bad_digest_always(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    world.faults.add("bad_digest", operations=("PutObject",), bucket=world.dest, key=f"chaos/{names[3]}", times=None)
    world.expect_present([k for i, k in enumerate(names) if i != 3], world.dest, "chaos/")
    result = world.run(world.job(names))
    failures = (result.report or {}).get("failures", [])
    world.expect(
        [f["key"] for f in failures] == [names[3]] and "(BadDigest)" in failures[0]["reason"],
        f"report failure: {failures[:1]}",
    )
    return result


def multipart_fault(world: World, kind: str, operation: str, skip: int = 0) -> RunResult:
    big = "digest/big-15MiB.nc"
    world.seed(["digest/small.nc", big], lambda i: 3 * PART if i else 700)
    world.faults.add(kind, operations=(operation,), bucket=world.dest, key=f"chaos/{big}", skip=skip, times=1)
    result = world.run(world.job(["digest/small.nc", big]))
    created = uploads_created(world, f"chaos/{big}")
    world.expect(created == 2, f"uploads created {created} (2: the object started over; the first one aborted)")
    return result


@scenario(
    "s3-invalid-digest-on-complete",
    "s3",
    "CompleteMultipartUpload answers InvalidDigest once: the object starts over in a new upload",
    Expected(counts={"copied": 2, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_invalid_digest_complete(world: World) -> RunResult:
    return multipart_fault(world, "invalid_digest", "CompleteMultipartUpload")


@scenario(
    "s3-bad-digest-on-upload-part",
    "s3",
    "UploadPart of part 2 answers BadDigest once: the object starts over in a new upload",
    Expected(counts={"copied": 2, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_bad_digest_part(world: World) -> RunResult:
    return multipart_fault(world, "bad_digest", "UploadPart", skip=1)


@scenario(
    "s3-no-such-upload-on-upload-part",
    "s3",
    "the upload vanishes (aborted behind teacopy's back) before part 2: the object starts over",
    Expected(counts={"copied": 2, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_no_such_upload_part(world: World) -> RunResult:
    return multipart_fault(world, "no_such_upload", "UploadPart", skip=1)


@scenario(
    "s3-no-such-upload-on-complete",
    "s3",
    "the upload vanishes before CompleteMultipartUpload: the object starts over",
    Expected(counts={"copied": 2, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_no_such_upload_complete(world: World) -> RunResult:
    return multipart_fault(world, "no_such_upload", "CompleteMultipartUpload")


# --- credentials: the refresher dies holding the lease ------------------------------------------------------------


@scenario(
    "refresher-dies-holding-the-lease",
    "credentials",
    "credentials expire under 6 workers; the RefreshCredentials that took the lease is killed before calling TEA",
    Expected(counts={"copied": 12, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env={env_names.BATCH_MAX_OBJECTS: "2"}),
    slow=True,
)
def refresher_dies_holding_the_lease(world: World) -> RunResult:
    refreshes: set[str] = set()
    killed: list[str] = []
    runtime = world.engine.runtime

    def note_refresh(name: str, event: dict[str, Any]) -> None:
        invocation = current_invocation()
        if name == CREDENTIALS and event.get("action") == "refresh" and invocation is not None:
            refreshes.add(invocation.request_id)

    def kill_after_lease(invocation: Invocation, event_name: str, request: Any, response: Any) -> None:
        took_lease = event_name.endswith("dynamodb.PutItem") and getattr(response, "status_code", 0) == 200
        if took_lease and invocation.request_id in refreshes and not killed:
            killed.append(invocation.request_id)
            runtime.kill(invocation)
            raise LambdaKilled("the refresher died holding the lease")

    previous = runtime.fault

    def fault(name: str, event: dict[str, Any]) -> None:
        if previous is not None:
            previous(name, event)
        note_refresh(name, event)

    runtime.fault = fault
    runtime.after_request.append(kill_after_lease)
    world.expire_at_source_gets([7])
    result = simple_run(world, count=12)
    waited = sum(1 for name, kind, _m in runtime.errors if name == CREDENTIALS and kind == "RefreshInProgress")
    world.expect(
        len(killed) == 1 and runtime.kills[CREDENTIALS] == 1,
        f"refreshers killed holding the lease: {len(killed)} (1)",
    )
    world.note(f"RefreshInProgress answers while the dead holder's lease ran out: {waited}")
    return result
