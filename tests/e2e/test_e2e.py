"""End to end: the synthesized state machine, executed by moto's interpreter, Lambdas in-process.

Every test deploys the template from the session's `synth` fixture (the same definition `cdk synth`
writes) into a fresh local engine with the TEA emulator.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.contracts import env_names
from stacks.teacopy_stack import LOGICAL_IDS
from teacopy_local.demo import secrets_of
from teacopy_local.engine import LocalEngine, RunResult
from teacopy_local.tea_emulator import TeaEmulator

pytestmark = pytest.mark.e2e

SOURCE = "daac-e2e-protected"
TOKEN = "e2e-edl-token-0123456789abcdef"  # a test token only the emulator knows
DEST = "my-earthdata-copy"  # first destination of the test synth (tests/conftest.py)


@contextmanager
def engine_for(
    synth: Any,
    lifetime: float = 3600,
    margin: int = 1,
    later_lifetime: float | None = None,
    function_timeouts: dict[str, float] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[LocalEngine, TeaEmulator]]:
    """``lifetime`` of the first credentials TEA issues; ``later_lifetime`` (if given) of the rest."""

    def after_issue(_issued: object) -> None:
        if later_lifetime is not None:
            tea.set_lifetime(later_lifetime)

    tea = TeaEmulator(lifetime_seconds=lifetime, valid_tokens={TOKEN}, issue=after_issue)
    with tea:
        overrides = {env_names.TEA_ENDPOINT: tea.url, env_names.SAFETY_MARGIN_SECONDS: str(margin), **(env or {})}
        with LocalEngine(
            synth.template,
            tea=tea,
            edl_token=TOKEN,
            source_buckets={SOURCE},
            env_overrides=overrides,
            function_timeouts=function_timeouts,
        ) as engine:
            yield engine, tea


def seed(engine: LocalEngine, keys: list[str], size: int = 2048) -> dict[str, str]:
    s3 = engine.client("s3", region="us-west-2")
    rng = random.Random(len(keys))
    digests = {}
    for key in keys:
        body = rng.randbytes(size)
        s3.put_object(Bucket=SOURCE, Key=key, Body=body)
        digests[key] = hashlib.sha256(body).hexdigest()
    return digests


def dest_digests(engine: LocalEngine, prefix: str = "") -> dict[str, str]:
    s3 = engine.client("s3")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DEST, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=DEST, Key=item["Key"])["Body"].read()
            out[item["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return out


def job(keys: list[str], prefix: str = "copy/") -> dict[str, Any]:
    return {"source": {"bucket": SOURCE, "keys": keys}, "destination": {"bucket": DEST, "prefix": prefix}}


def assert_no_secrets(engine: LocalEngine, tea: TeaEmulator, *results: RunResult) -> None:
    leaks = engine.scan_for_secrets(secrets_of(tea, TOKEN), [r.execution_arn for r in results])
    assert leaks == []


def test_happy_path_copies_everything_byte_for_byte(synth: Any) -> None:
    keys = [f"granules/ü ñ {i}.nc" for i in range(12)]
    with engine_for(synth) as (engine, tea):
        expected = seed(engine, keys)
        result = engine.run(job(keys), name="happy", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert result.output == {
            "objects": 12,
            "copied": 12,
            "skipped": 0,
            "failed": 0,
            "not_attempted": 0,
            "bytes": 12 * 2048,
            "tea_requests": 1,
            "credential_refreshes": 0,
            "report": f"s3://{engine.deployment.staging_bucket}/runs/happy/report.json",
            "report_csv": f"s3://{engine.deployment.staging_bucket}/runs/happy/report.csv",
            "report_html": f"s3://{engine.deployment.staging_bucket}/runs/happy/report.html",
        }
        assert dest_digests(engine, "copy/") == expected
        assert tea.requests == 1
        assert_no_secrets(engine, tea, result)
        # moto's interpreter resolves $$.Execution.Id in Summarize's payload: the report names the execution
        report = result.report
        assert report is not None and report["execution_arn"] == result.execution_arn
        assert result.execution_arn.endswith(":happy")
        # and Summarize priced the copies with the deployed settings: one PutObject each, one batch
        cost = report["cost"]
        assert (cost["objects"], cost["bytes"], cost["batches"]) == (12, 12 * 2048, 1)
        assert cost["requests"]["data"] == {"put": 12 + 1, "get": 12, "free": 0} and cost["usd"] > 0


def test_lambda_log_lines_carry_their_ids_stay_off_stdout_and_are_scanned(
    synth: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = [f"logged/{i}.nc" for i in range(3)]  # one batch: the four functions run one after the other
    with engine_for(synth) as (engine, tea):
        seed(engine, keys)
        result = engine.run(job(keys), name="logged", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert capsys.readouterr().out == ""  # the JSON lines go to the engine's capture, not stdout
        records = [json.loads(line) for line in engine.logs.json_lines]
        by_service: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_service.setdefault(record["service"], []).append(record)
        assert set(by_service) == {"teacopy-plan", "teacopy-credentials", "teacopy-copy-batch", "teacopy-summarize"}
        assert all(record["run_id"] == "logged" for record in records)
        assert all(record["batch_id"] for record in by_service["teacopy-copy-batch"])
        [summary] = [r["summary"] for r in by_service["teacopy-summarize"] if r["message"] == "run summary"]
        assert (summary["copied"], summary["failed"]) == (3, 0)
        assert_no_secrets(engine, tea, result)

        # A secret in a structured key (not in the message) is found by the scan.
        secret = secrets_of(tea, TOKEN)[-1]
        logging.getLogger("lambdas.planted").warning("planted", extra={"detail": secret})
        leaks = engine.scan_for_secrets([secret], [result.execution_arn])
        assert [leak for leak in leaks if leak.startswith("log line")] != []


def test_expiry_mid_run_refreshes_once_per_expiry_and_coalesces(synth: Any) -> None:
    # The first credentials live 2 s with a 1 s margin (later ones 30 s). CopyBatch invocations are
    # let in one at a time, 0.15 s apart (like a Lambda concurrency limit), so the 24 children of
    # this run span > 3.6 s: the later workers meet expired credentials mid-run, several at once.
    keys = [f"exp/{i:03d}.nc" for i in range(48)]
    gate = threading.Lock()

    def staggered(name: str, event: dict[str, Any]) -> None:
        if "batch" in event:
            with gate:
                time.sleep(0.15)

    with engine_for(synth, lifetime=2, margin=1, later_lifetime=30, env={env_names.BATCH_MAX_OBJECTS: "2"}) as (
        engine,
        tea,
    ):
        expected = seed(engine, keys)
        engine.runtime.fault = staggered
        result = engine.run(job(keys), name="expiry", timeout=300)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        out = result.output
        assert out is not None
        assert (out["copied"], out["failed"], out["skipped"]) == (48, 0, 0)
        assert out["credential_refreshes"] >= 1
        # one TEA call serves every worker: never more than one per refresh (plus the initial fetch)
        assert out["tea_requests"] <= out["credential_refreshes"] + 1
        assert tea.requests == out["tea_requests"]
        # more workers asked for a refresh than TEA was called: the refreshes were coalesced
        report = result.report
        assert report is not None and report["refresh_requests"] > out["credential_refreshes"]
        assert dest_digests(engine, "copy/") == expected
        assert_no_secrets(engine, tea, result)


def test_rerun_skips_objects_already_present(synth: Any) -> None:
    keys = [f"again/{i}.nc" for i in range(6)]
    with engine_for(synth) as (engine, _tea):
        expected = seed(engine, keys)
        first = engine.run(job(keys), name="first", timeout=120)
        assert first.output is not None and first.output["copied"] == 6
        second = engine.run(job(keys), name="second", timeout=120)
        assert second.status == "SUCCEEDED"
        assert second.output is not None
        assert (second.output["copied"], second.output["skipped"], second.output["bytes"]) == (0, 6, 0)
        assert second.output["tea_requests"] == 0  # the cached credentials were still fresh
        assert dest_digests(engine, "copy/") == expected


def test_missing_source_key_fails_alone(synth: Any) -> None:
    keys = [f"some/{i}.nc" for i in range(5)]
    with engine_for(synth) as (engine, tea):
        expected = seed(engine, keys)
        result = engine.run(job([*keys[:2], "some/missing.nc", *keys[2:]]), name="missing", timeout=120)
        assert result.status == "FAILED"
        assert result.error == "CopyJobFailed"
        assert "1 of 6 objects failed" in (result.cause or "")
        assert "runs/missing/report.json" in (result.cause or "")
        report = result.report
        assert report is not None
        assert (report["copied"], report["failed"]) == (5, 1)
        assert report["failures"] == [
            {"key": "some/missing.nc", "reason": f"source NoSuchKey: s3://{SOURCE}/some/missing.nc does not exist"}
        ]
        assert dest_digests(engine, "copy/") == expected
        assert_no_secrets(engine, tea, result)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            {"source": {"bucket": SOURCE, "keys": ["a"]}, "destination": {"bucket": "not-allowed-bucket"}},
            "destination.bucket",
        ),
        ({"source": {"bucket": SOURCE, "keys": []}, "destination": {"bucket": DEST}}, "source.keys"),
        # '../etc' is a key S3 stores (copied as is, issue 11); S3 rejects only keys over 1,024 UTF-8 bytes
        ({"source": {"bucket": SOURCE, "keys": ["k" * 1025]}, "destination": {"bucket": DEST}}, "source.keys[0]"),
        ({"destination": {"bucket": DEST}}, "source"),
    ],
)
def test_invalid_input_is_rejected_before_any_copy(synth: Any, raw: dict[str, Any], field: str) -> None:
    with engine_for(synth) as (engine, tea):
        seed(engine, ["a"])
        result = engine.run(raw, name="invalid", timeout=60)
        assert result.status == "FAILED"
        assert result.error == "InvalidInput"
        cause = json.loads(result.cause or "{}")
        assert cause["errorMessage"].startswith(f"{field}: ")
        assert dest_digests(engine) == {}
        assert tea.requests == 0  # rejected before credentials were even fetched
        assert list(engine.staging_dump()) == []


def test_tea_credentials_are_read_only_and_expire_in_the_local_s3(synth: Any) -> None:
    """The S3 adapter answers like AWS: ExpiredToken after expiry, AccessDenied for writes."""
    import time

    import boto3
    from botocore.exceptions import ClientError

    with engine_for(synth, lifetime=1.0) as (engine, tea):
        seed(engine, ["k"])
        body = json.loads(_fetch(tea.url))
        tea_s3 = boto3.client(
            "s3",
            region_name="us-west-2",
            aws_access_key_id=body["accessKeyId"],
            aws_secret_access_key=body["secretAccessKey"],
            aws_session_token=body["sessionToken"],
        )
        assert tea_s3.get_object(Bucket=SOURCE, Key="k")["Body"].read()
        with pytest.raises(ClientError) as denied:
            tea_s3.put_object(Bucket=SOURCE, Key="k2", Body=b"x")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as other_bucket:
            tea_s3.head_object(Bucket=DEST, Key="k")
        assert other_bucket.value.response["Error"]["Code"] in ("AccessDenied", "403")
        expires = datetime.fromisoformat(body["expiration"])
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
        with pytest.raises(ClientError) as expired:
            tea_s3.get_object(Bucket=SOURCE, Key="k")
        assert expired.value.response["Error"]["Code"] == "ExpiredToken"
        assert expired.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def _fetch(url: str) -> str:
    import urllib.request

    request = urllib.request.Request(f"{url}/s3credentials", headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 — loopback emulator
        return str(response.read().decode())


def test_object_larger_than_one_invocation_copies_across_invocations(synth: Any) -> None:
    # CopyBatch gets 2 s (1 s reserve: it pauses at 0.5 s left), one 5 MiB part in flight, and each
    # UploadPart takes 0.3 s: a 38 MiB object (8 parts) needs several invocations of the same batch.
    mib = 1024**2
    data = random.Random(7).randbytes(38 * mib)
    env = {
        env_names.PART_SIZE_BYTES: str(5 * mib),
        env_names.MULTIPART_THRESHOLD_BYTES: str(5 * mib),
        env_names.INFLIGHT_PARTS: "1",
        env_names.DEADLINE_RESERVE_SECONDS: "1",
    }
    with engine_for(synth, function_timeouts={LOGICAL_IDS["copy_batch"]: 2}, env=env) as (engine, tea):
        engine.client("s3", region="us-west-2").put_object(Bucket=SOURCE, Key="big/granule.h5", Body=data)
        handler = importlib.import_module("lambdas.handlers.copy_batch")
        parts: list[int] = []

        def slow_part(params: dict[str, Any], **_: Any) -> None:
            parts.append(params["PartNumber"])
            time.sleep(0.3)

        handler.S3.meta.events.register("before-parameter-build.s3.UploadPart", slow_part)
        result = engine.run(job(["big/granule.h5"]), name="big", timeout=120)

        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert result.output is not None and result.output["copied"] == 1
        assert engine.runtime.invocations["CopyBatchFunction"] >= 2  # really spanned invocations
        assert sorted(parts) == list(range(1, 9))  # each part uploaded exactly once: resumed, not redone
        s3 = engine.client("s3")
        head = s3.head_object(Bucket=DEST, Key="copy/big/granule.h5", ChecksumMode="ENABLED")
        assert head["ETag"].endswith('-8"')
        assert s3.get_object(Bucket=DEST, Key="copy/big/granule.h5")["Body"].read() == data
        assert s3.list_multipart_uploads(Bucket=DEST).get("Uploads", []) == []
        assert_no_secrets(engine, tea, result)
