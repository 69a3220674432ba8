"""End to end, in the local engine: the hardening for real AWS (issue 11) that a local run can show.

Clean-up when Summarize never runs (the stopped execution's status-change event, routed as the template's rule
routes it: teacopy_local/status_events.py); a TEA answer that cannot be parsed is retried; a destination that
answers 403 for a missing key.
"""

from __future__ import annotations

import importlib
import json
import random
import time
from typing import Any

import pytest
from moto.s3.models import s3_backends

from lambdas.contracts import env_names
from stacks.teacopy_stack import LOGICAL_IDS
from teacopy_local.engine import ACCOUNT
from teacopy_local.moto_adapters import S3Faults, S3Request, s3_fault_injection
from tests.e2e.test_e2e import DEST, SOURCE, assert_no_secrets, dest_digests, engine_for, job, seed

pytestmark = pytest.mark.e2e
MIB = 1024**2


def wait_for(condition: Any, timeout: float = 60.0, what: str = "condition") -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not met after {timeout:.0f} s")
        time.sleep(0.05)


def test_a_stopped_execution_leaves_no_open_upload_and_a_report_that_says_aborted(synth: Any) -> None:
    # Each CopyBatch invocation gets 2 s and uploads a few 5 MiB parts (0.3 s each) of a 38 MiB object, then
    # pauses it (checkpoint, upload left open) for the next invocation. The execution is stopped after the
    # first pause: nothing ever completes that upload, and Summarize never runs.
    data = random.Random(11).randbytes(38 * MIB)
    env = {
        env_names.PART_SIZE_BYTES: str(5 * MIB),
        env_names.MULTIPART_THRESHOLD_BYTES: str(5 * MIB),
        env_names.INFLIGHT_PARTS: "1",
        env_names.DEADLINE_RESERVE_SECONDS: "1",
    }
    with engine_for(synth, function_timeouts={LOGICAL_IDS["copy_batch"]: 2}, env=env) as (engine, tea):
        engine.client("s3", region="us-west-2").put_object(Bucket=SOURCE, Key="big/granule.h5", Body=data)
        handler = importlib.import_module("lambdas.handlers.copy_batch")
        handler.S3.meta.events.register("before-parameter-build.s3.UploadPart", lambda **_: time.sleep(0.3))
        s3, sfn = engine.client("s3"), engine.client("stepfunctions")
        staging = engine.deployment.staging_bucket

        arn = engine.start(job(["big/granule.h5"]), name="stopped")
        wait_for(
            lambda: s3.list_objects_v2(Bucket=staging, Prefix="runs/stopped/uploads/").get("KeyCount", 0) > 0,
            what="a paused multipart upload (its checkpoint)",
        )
        assert len(s3.list_multipart_uploads(Bucket=DEST).get("Uploads", [])) == 1
        sfn.stop_execution(executionArn=arn, error="OperatorStopped", cause="stopped by the test")
        result = engine.wait(arn, timeout=60)

        assert result.status == "ABORTED"
        assert "Summarize" not in engine.runtime.invocations
        (delivery,) = engine.status_events.deliveries if engine.status_events else []
        assert delivery.function == LOGICAL_IDS["cleanup"] and not delivery.errored
        assert delivery.event["detail"]["status"] == "ABORTED" and delivery.event["detail"]["name"] == "stopped"
        # the clean-up ran after the last CopyBatch invocation had ended (the queue's delay, emulated)
        assert engine.runtime.idle(LOGICAL_IDS["copy_batch"])
        assert s3.list_multipart_uploads(Bucket=DEST).get("Uploads", []) == []
        assert s3.list_objects_v2(Bucket=DEST).get("KeyCount", 0) == 0  # nothing half-written appeared either
        assert s3.list_objects_v2(Bucket=staging, Prefix="runs/stopped/uploads/").get("KeyCount", 0) == 0
        report = result.report
        assert report is not None
        assert report["execution_status"] == "ABORTED"
        assert report["uploads_aborted"] == 1
        assert (report["objects"], report["copied"], report["not_attempted"]) == (1, 0, 1)
        html = s3.get_object(Bucket=staging, Key="runs/stopped/report.html")["Body"].read().decode()
        assert "execution aborted" in html
        assert_no_secrets(engine, tea, result)


def test_a_failed_run_keeps_summarizes_report_and_the_cleanup_changes_nothing(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea):
        result = engine.run(job(["missing/a.nc"]), name="missing", timeout=60)  # NoSuchKey: CopyJobFailed
        assert result.status == "FAILED" and result.error == "CopyJobFailed"
        (delivery,) = engine.status_events.deliveries if engine.status_events else []
        assert not delivery.errored
        assert result.report is not None and "execution_status" not in result.report  # Summarize's own report
        assert result.report["failed"] == 1


def test_a_run_refused_at_plan_has_nothing_to_clean(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea):
        result = engine.run({"source": {"bucket": SOURCE, "keys": []}, "destination": {"bucket": DEST}}, name="bad")
        assert result.status == "FAILED" and result.error == "InvalidInput"
        (delivery,) = engine.status_events.deliveries if engine.status_events else []
        assert not delivery.errored and result.report is None


# --- 10. a TEA answer that cannot be parsed is retried -----------------------------------------------------------


def test_a_truncated_tea_answer_is_retried_and_the_run_succeeds(synth: Any) -> None:
    with engine_for(synth) as (engine, tea):
        seed(engine, ["granules/a.nc", "granules/b.nc"])
        good = {"accessKeyId": "ASIATRUNCATED0000001", "secretAccessKey": "truncatedSecret0123456789abcdef"}
        tea.script(200, json.dumps(good)[:-12], headers={"Content-Type": "application/json"})
        result = engine.run(job(["granules/a.nc", "granules/b.nc"]), name="truncated", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert result.output is not None and result.output["copied"] == 2
        assert tea.requests == 2  # the truncated answer, then the retry within the same invocation
        assert engine.runtime.invocations[LOGICAL_IDS["credentials"]] == 1
        assert_no_secrets(engine, tea, result)


# --- 4. a missing destination key answered 403 (no s3:ListBucket for a HEAD) -------------------------------------


def key_is_missing(request: S3Request) -> bool:
    """S3's answer to a caller without s3:ListBucket: 403 for a HEAD of a missing key (moto's own store asked)."""
    bucket = s3_backends[ACCOUNT]["global"].buckets.get(request.bucket)
    return bucket is None or bucket.keys.get(request.key) is None


def test_a_destination_that_answers_403_for_missing_keys_is_copied_into(synth: Any) -> None:
    # The batch's listing of its common prefix is refused (a ListBucket grant conditioned on a narrower prefix),
    # so every object is HEADed, and the destination answers each HEAD of a missing key with 403, as S3 does
    # when the request's role may not list the bucket for it. One LIST of exactly the key tells "absent".
    keys = ["granules/a.nc", "granules/b.nc", "granules/c.nc"]
    with engine_for(synth) as (engine, tea):
        expected = seed(engine, keys)
        engine.client("s3").put_object(Bucket=DEST, Key="copy/granules/c.nc", Body=b"an older copy")  # exists
        with s3_fault_injection(S3Faults()) as faults:
            batch_listing = faults.add("access_denied", operations=("ListObjects",), bucket=DEST, times=1)
            heads = faults.add(
                "access_denied", operations=("HeadObject",), bucket=DEST, times=None, when=key_is_missing
            )
            result = engine.run(job(keys), name="head-403", timeout=120)
            assert result.status == "SUCCEEDED", (result.error, result.cause)
            assert result.output is not None and (result.output["copied"], result.output["failed"]) == (3, 0)
            assert batch_listing.fired == 1
            assert heads.fired == 2  # a.nc and b.nc; c.nc exists and its HEAD succeeds
            assert faults.count("ListObjects", DEST) == 3  # the batch's listing, then one per 403
        assert dest_digests(engine, "copy/") == expected
        assert_no_secrets(engine, tea, result)


def test_a_destination_key_that_exists_but_may_not_be_read_is_denied(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea):
        seed(engine, ["granules/a.nc"])
        engine.client("s3").put_object(Bucket=DEST, Key="copy/granules/a.nc", Body=b"someone else's")
        with s3_fault_injection(S3Faults()) as faults:
            faults.add("access_denied", operations=("HeadObject",), bucket=DEST, times=None)
            result = engine.run(job(["granules/a.nc"]), name="head-denied", timeout=120)
        assert result.status == "FAILED" and result.error == "CopyJobFailed"
        assert "DestinationAccessDenied" in (result.cause or "")
        assert "may not read s3://my-earthdata-copy/copy/granules/a.nc, which exists" in (result.cause or "")


def test_a_destination_that_may_neither_be_headed_nor_listed_is_denied_with_the_fix(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea):
        seed(engine, ["granules/a.nc"])
        with s3_fault_injection(S3Faults()) as faults:
            faults.add("access_denied", operations=("HeadObject", "ListObjects"), bucket=DEST, times=None)
            result = engine.run(job(["granules/a.nc"]), name="no-list", timeout=120)
        assert result.status == "FAILED" and result.error == "CopyJobFailed"
        assert "DestinationAccessDenied" in (result.cause or "")
        assert "without s3:ListBucket on bucket my-earthdata-copy" in (result.cause or "")
