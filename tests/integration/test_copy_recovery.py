"""Damaged staging files never leave work undone or uploads open (issue 15, items 1 and 2).

A corrupt or mismatched upload checkpoint still stands for an open multipart upload: the copy engine and
Summarize abort it (by the checkpoint's upload id when it can be read, else by listing the object's open
uploads). A result file that is not a list of records is set aside and its objects are copied again,
idempotently. Against moto S3, clients injected, nothing patched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import TransientCopyError
from lambdas.contracts.models import Batch, Destination, ObjectSpec, format_time
from lambdas.copying.engine import copy_batch
from lambdas.copying.results import records_of
from lambdas.reporting.summary import abort_leftover_uploads
from tests.integration.test_copy_engine import DEST, NOW, PREFIX, SETTINGS, SRC, STAGING, Env, Wrapped, blob, creds

MIB = 1024**2
BIG = 23 * MIB + 17  # 5 parts of 5 MiB


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def checkpoint_keys(env: Env) -> list[str]:
    return sorted(staging.list_keys(env.staging, STAGING, staging.uploads_prefix("run-1")))


def pause_after_two_parts(env: Env, key: str = "huge.nc") -> dict[str, Any]:
    """One invocation that uploads two parts of a 5-part object, then pauses at its deadline (checkpointed)."""
    env.put_source(key, blob(BIG, 3))
    budget = env.dest_calls["UploadPart"] + 2

    def slow_upload_part(**kw: Any) -> Any:
        time.sleep(0.15)
        return env.dest.upload_part(**kw)

    out = env.run(
        env.event([key]),
        dest=Wrapped(env.dest, upload_part=slow_upload_part),
        remaining_ms=lambda: 900_000 if env.dest_calls["UploadPart"] < budget else 1_000,
    )
    assert out["done"] is False and out["parts"] >= 2
    assert len(env.uploads()) == 1 and len(checkpoint_keys(env)) == 1
    (checkpoint_key,) = checkpoint_keys(env)
    raw: dict[str, Any] = staging.get_json(env.staging, STAGING, checkpoint_key)
    return raw


def overwrite_checkpoint(env: Env, body: bytes) -> None:
    (checkpoint_key,) = checkpoint_keys(env)
    env.admin.put_object(Bucket=STAGING, Key=checkpoint_key, Body=body)


def finish(env: Env, key: str = "huge.nc") -> dict[str, Any]:
    out = env.run(env.event([key]))
    assert out["done"] is True and out["copied"] == 1
    assert env.dest_body(key) == env.data[key]
    return out


# --- 1. checkpoints: the copy engine -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda c: {**c, "key": "another/object.nc"}, id="names-another-source-key"),
        pytest.param(lambda c: {**c, "dest_key": PREFIX + "elsewhere.nc"}, id="names-another-destination-key"),
        pytest.param(lambda c: {**c, "parts": list(reversed(c["parts"]))}, id="parts-out-of-order"),
        pytest.param(lambda c: {**c, "size": "many"}, id="size-not-a-number"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "digest"}, id="digest-missing"),
    ],
)
def test_an_unusable_checkpoint_with_a_readable_upload_id_is_aborted_by_it(env: Env, alter: Any) -> None:
    checkpoint = pause_after_two_parts(env)
    overwrite_checkpoint(env, json.dumps(alter(checkpoint)).encode())
    finish(env)
    assert env.uploads() == [], "the paused upload of the altered checkpoint is still open"
    assert checkpoint_keys(env) == []
    assert env.dest_calls["ListMultipartUploads"] == 0  # the id was readable: no listing needed
    assert env.dest_calls["CreateMultipartUpload"] == 2  # started over


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"upload_id": "', id="truncated-json"),
        pytest.param(b"\x00\xff not json", id="binary"),
        pytest.param(b'["a", "list"]', id="a-list"),
        pytest.param(b'{"upload_id": 42}', id="upload-id-not-a-string"),
    ],
)
def test_an_unreadable_checkpoint_has_its_objects_open_uploads_listed_and_aborted(env: Env, body: bytes) -> None:
    pause_after_two_parts(env)
    other = env.admin.create_multipart_upload(Bucket=DEST, Key=PREFIX + "huge.nc.md5")["UploadId"]  # another key
    overwrite_checkpoint(env, body)
    finish(env)
    assert [u["UploadId"] for u in env.uploads()] == [other]
    assert env.dest_calls["ListMultipartUploads"] == 1
    assert checkpoint_keys(env) == []


def test_a_checkpoint_that_cannot_be_read_now_is_kept_not_deleted(env: Env) -> None:
    """A transient error reading a checkpoint to discard it: the file stays (its upload is unknown yet)."""
    pause_after_two_parts(env)
    denied_once = {"left": 1}

    def flaky_get(**kw: Any) -> Any:
        if kw["Key"].startswith(staging.uploads_prefix("run-1")) and denied_once["left"]:
            denied_once["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "GetObject",
            )
        return env.staging.get_object(**kw)

    staging_s3 = Wrapped(env.staging, get_object=flaky_get)
    with pytest.raises(TransientCopyError, match="could not read the upload checkpoint"):
        copy_batch(
            env.event(["huge.nc"]),
            settings=SETTINGS,
            source_s3=env.source,
            dest_s3=env.dest,
            staging_s3=staging_s3,
            credentials=creds(),
            clock=lambda: NOW,
            remaining_ms=lambda: 900_000,
        )
    assert len(checkpoint_keys(env)) == 1 and len(env.uploads()) == 1
    finish(env)  # the retry reads it and resumes
    assert env.uploads() == [] and checkpoint_keys(env) == []
    assert env.dest_calls["CreateMultipartUpload"] == 1


# --- 1. checkpoints: Summarize ---------------------------------------------------------------------------------


def stage_plan(env: Env, keys: list[str]) -> None:
    """plan.json and the staged manifest as Plan writes them (one batch b0001)."""
    batch = Batch(batch_id="b0001", source_bucket=SRC, objects=tuple(ObjectSpec(key=k) for k in keys))
    manifest_key = staging.manifest_key("run-1")
    staging.put_json(env.staging, STAGING, manifest_key, [batch.to_dict()])
    plan = {
        "run_id": "run-1",
        "manifest": {"bucket": STAGING, "key": manifest_key},
        "destination": Destination(bucket=DEST, prefix=PREFIX).to_dict(),
        "objects": len(keys),
        "planned_at": format_time(datetime.now(UTC)),
    }
    staging.put_json(env.staging, STAGING, staging.plan_key("run-1"), plan)


@pytest.mark.parametrize(
    ("body", "listed"),
    [
        pytest.param(b"garbage", True, id="not-json"),
        pytest.param(b'{"upload_id": null, "dest_key": 7}', True, id="nothing-readable"),
        pytest.param(None, False, id="upload-id-readable-destination-not"),
    ],
)
def test_summarize_aborts_the_upload_of_a_malformed_checkpoint(env: Env, body: bytes | None, listed: bool) -> None:
    checkpoint = pause_after_two_parts(env)
    stage_plan(env, ["small.nc", "huge.nc"])
    if body is None:
        body = json.dumps({"upload_id": checkpoint["upload_id"], "parts": "?"}).encode()
    overwrite_checkpoint(env, body)
    unrelated = env.admin.create_multipart_upload(Bucket=DEST, Key=PREFIX + "huge.nc.md5")["UploadId"]
    calls: list[str] = []
    env.admin.meta.events.register("before-call.s3.ListMultipartUploads", lambda **_: calls.append("list"))

    assert abort_leftover_uploads(env.admin, STAGING, "run-1") == 1
    assert bool(calls) == listed  # by the upload id whenever it can be read
    assert [u["UploadId"] for u in env.uploads()] == [unrelated]
    assert checkpoint_keys(env) == []


def test_summarize_keeps_a_checkpoint_whose_object_is_not_in_the_manifest(env: Env) -> None:
    pause_after_two_parts(env)
    stage_plan(env, ["something-else.nc"])
    overwrite_checkpoint(env, b"garbage")
    assert abort_leftover_uploads(env.admin, STAGING, "run-1") == 0
    assert len(checkpoint_keys(env)) == 1  # left for the operator (logged), not silently dropped


# --- 2. result files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'[{"key": "a.nc", "status": "cop', id="truncated"),
        pytest.param(b'{"key": "a.nc", "status": "copied"}', id="an-object-not-a-list"),
        pytest.param(b'[{"key": "a.nc", "status": "copied"}, "junk"]', id="a-junk-entry"),
        pytest.param(b'[{"key": "a.nc", "status": "done"}]', id="an-unknown-status"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_a_result_file_that_is_not_a_list_of_records_is_set_aside_and_its_objects_redone(env: Env, body: bytes) -> None:
    keys = ["a.nc", "b.nc", "c.nc"]
    for index, key in enumerate(keys):
        env.put_source(key, blob(1000 + index, index))
    first = env.run(env.event(keys))
    assert first["done"] is True and first["copied"] == 3
    (result_key,) = staging.list_keys(env.staging, STAGING, staging.results_prefix("run-1", "b0001"))
    env.admin.put_object(Bucket=STAGING, Key=result_key, Body=body)
    puts = env.dest_calls["PutObject"]

    again = env.run(env.event(keys))

    assert again["done"] is True and again["skipped"] == 3 and again["copied"] == 0  # redone, idempotently
    assert env.dest_calls["PutObject"] == puts  # nothing rewritten
    kept = staging.set_aside_key(result_key)
    assert kept == result_key.replace("runs/run-1/results/", "runs/run-1/set-aside/results/")
    assert env.admin.get_object(Bucket=STAGING, Key=kept)["Body"].read() == body  # kept for the operator
    records = [r for f in env.result_files() for r in f]
    assert sorted(r["key"] for r in records) == keys and {r["status"] for r in records} == {"skipped"}
    for key in keys:
        assert env.dest_body(key) == env.data[key]


def test_records_of_accepts_only_a_list_of_records() -> None:
    assert records_of([]) == []
    assert records_of([{"key": "a", "status": "failed", "reason": "x"}]) == [
        {"key": "a", "status": "failed", "reason": "x"}
    ]
    malformed: list[Any] = [{}, "x", [1], [{"key": 1, "status": "copied"}], [{"key": "a"}], None]
    for raw in malformed:
        assert records_of(raw) is None


def test_set_aside_key_stays_under_the_run() -> None:
    assert staging.set_aside_key("runs/r/results/b1/x.json") == "runs/r/set-aside/results/b1/x.json"
    with pytest.raises(ValueError):
        staging.set_aside_key("map-results/x.json")


# --- an upload completed by an invocation that ended before recording it --------------------------------------


class Killed(BaseException):
    """The sandbox died (as the local engine's LambdaKilled): no handler code catches it."""


def test_an_upload_completed_but_not_recorded_is_recorded_as_copied_not_skipped(env: Env) -> None:
    # An invocation completes the multipart upload and is killed (its timeout) when it deletes the checkpoint,
    # before it records the object. The next invocation finds the checkpoint and the destination written from
    # the same source version: the object was copied by this run, and the report must say so.
    pause_after_two_parts(env)
    deletes = {"n": 0}

    def killed_on_checkpoint_delete(params: dict[str, Any], **_: Any) -> None:
        if "/uploads/" in params["Key"]:
            deletes["n"] += 1
            raise Killed("the invocation timed out")

    event = "before-parameter-build.s3.DeleteObject"
    env.staging.meta.events.register(event, killed_on_checkpoint_delete, unique_id="killed")
    with pytest.raises(Killed):
        env.run(env.event(["huge.nc"]))
    env.staging.meta.events.unregister(event, unique_id="killed")
    assert deletes["n"] == 1 and env.dest_body("huge.nc") == env.data["huge.nc"]  # completed, not recorded
    assert env.results() == {}

    out = finish(env)
    assert out["skipped"] == 0
    assert env.results()["huge.nc"]["status"] == "copied"
    assert checkpoint_keys(env) == [] and env.uploads() == []
