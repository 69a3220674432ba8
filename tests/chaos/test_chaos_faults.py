"""The fault-injection hooks the chaos suite uses: S3 faults, the Lambda kill switch, TEA emulator faults."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError
from moto import mock_aws

from teacopy_local.moto_adapters import (
    FunctionSpec,
    KillSwitch,
    LambdaKilled,
    LambdaRuntime,
    S3Faults,
    S3Request,
    lambda_error,
    s3_fault_injection,
    s3_operation,
)
from teacopy_local.tea_emulator import TeaEmulator

BUCKET = "chaos-unit-bucket"
TOKEN = "unit-edl-token-0123456789"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, S3Faults]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client(
            "s3", region_name="us-east-1", config=Config(retries={"mode": "standard", "max_attempts": 4})
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="dir/ü k.nc", Body=b"x" * 100_000)
        faults = S3Faults(seed=1, kill_switch=KillSwitch())
        with s3_fault_injection(faults):
            yield client, faults


@pytest.mark.parametrize(
    ("method", "url", "headers", "expected"),
    [
        ("GET", "https://b-1.s3.us-west-2.amazonaws.com/a/b%20c.nc", {}, ("GetObject", "b-1", "a/b c.nc")),
        ("GET", "https://s3.amazonaws.com/b-1/a.nc?uploadId=x", {}, ("ListParts", "b-1", "a.nc")),
        ("HEAD", "https://b-1.s3.amazonaws.com/a.nc", {}, ("HeadObject", "b-1", "a.nc")),
        ("PUT", "https://b-1.s3.amazonaws.com/a.nc?partNumber=2&uploadId=x", {}, ("UploadPart", "b-1", "a.nc")),
        ("PUT", "https://b-1.s3.amazonaws.com/a.nc", {"x-amz-copy-source": "s/k"}, ("CopyObject", "b-1", "a.nc")),
        ("POST", "https://b-1.s3.amazonaws.com/a.nc?uploads", {}, ("CreateMultipartUpload", "b-1", "a.nc")),
        ("POST", "https://b-1.s3.amazonaws.com/a.nc?uploadId=x", {}, ("CompleteMultipartUpload", "b-1", "a.nc")),
        ("DELETE", "https://b-1.s3.amazonaws.com/a.nc?uploadId=x", {}, ("AbortMultipartUpload", "b-1", "a.nc")),
        ("GET", "https://b-1.s3.amazonaws.com/?list-type=2", {}, ("ListObjects", "b-1", "")),
        ("GET", "https://b-1.s3.amazonaws.com/?uploads", {}, ("ListMultipartUploads", "b-1", "")),
        ("POST", "https://secretsmanager.us-east-1.amazonaws.com/", {}, None),
    ],
)
def test_s3_operation_names_requests(method: str, url: str, headers: dict[str, str], expected: Any) -> None:
    assert s3_operation(method, url, headers) == expected


def test_error_faults_answer_like_s3_and_are_counted(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    slow = faults.add("slowdown", bucket=BUCKET, key="dir/ü k.nc", times=2)
    assert len(client.get_object(Bucket=BUCKET, Key="dir/ü k.nc")["Body"].read()) == 100_000  # the SDK retried
    assert (slow.fired, faults.count("GetObject", BUCKET, "dir/ü k.nc")) == (2, 3)
    faults.add("no_such_key", operations=("GetObject", "HeadObject"), bucket=BUCKET, times=2)
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=BUCKET, Key="dir/ü k.nc")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as head:
        client.head_object(Bucket=BUCKET, Key="dir/ü k.nc")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    faults.add("access_denied", operations=("PutObject",), bucket=BUCKET)
    with pytest.raises(ClientError) as denied:
        client.put_object(Bucket=BUCKET, Key="new", Body=b"1")
    assert (denied.value.response["Error"]["Code"], denied.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "AccessDenied",
        403,
    )
    faults.add("internal_error", operations=("PutObject",), bucket=BUCKET, times=2)
    client.put_object(Bucket=BUCKET, Key="new", Body=b"1")  # retried past two 500s
    assert faults.fired == {"slowdown": 2, "no_such_key": 2, "access_denied": 1, "internal_error": 2}


def test_body_faults_break_a_get_in_the_middle(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    faults.add("reset", bucket=BUCKET, after_bytes=1000)
    body = client.get_object(Bucket=BUCKET, Key="dir/ü k.nc")["Body"]
    assert len(body.read(600)) == 600
    with pytest.raises(ResponseStreamingError):
        while body.read(600):
            pass
    faults.add("truncate", bucket=BUCKET, after_bytes=1000)
    with pytest.raises(IncompleteReadError):
        client.get_object(Bucket=BUCKET, Key="dir/ü k.nc")["Body"].read()
    ranged = client.get_object(Bucket=BUCKET, Key="dir/ü k.nc", Range="bytes=1000-")["Body"].read()
    assert len(ranged) == 99_000
    assert faults.get_ranges[(BUCKET, "dir/ü k.nc")] == ["", "", "bytes=1000-"]
    assert faults.bytes_served[(BUCKET, "dir/ü k.nc")] == 2 * 100_000 + 99_000


def test_random_faults_are_reproducible(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    rule = faults.add("internal_error", operations=("HeadObject",), bucket=BUCKET, times=None, probability=0.3)
    for _ in range(20):
        client.head_object(Bucket=BUCKET, Key="dir/ü k.nc")
    again = S3Faults(seed=1)
    replay = again.add("internal_error", operations=("HeadObject",), times=None, probability=0.3)
    request = S3Request("HEAD", "HeadObject", BUCKET, "dir/ü k.nc", "", None)
    for _ in range(rule.matched):
        again.decide(request)
    assert 0 < rule.fired < rule.matched and replay.fired == rule.fired


def test_kill_switch_blocks_every_later_request_until_the_runtime_reports_a_timeout(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    assert faults.kill_switch is not None
    faults.add("kill", operations=("PutObject",), bucket=BUCKET)
    with pytest.raises(LambdaKilled):
        client.put_object(Bucket=BUCKET, Key="half", Body=b"1")
    with pytest.raises(LambdaKilled):
        client.list_objects_v2(Bucket=BUCKET)  # the sandbox is dead: nothing more happens
    runtime = LambdaRuntime(kill_switch=faults.kill_switch)
    runtime.functions["Fn"] = FunctionSpec("lambdas.handlers.copy_batch.lambda_handler", 900, 1024)
    payload, errored = runtime._timed_out("Fn", runtime.functions["Fn"])
    assert errored and json.loads(payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 900.00 seconds",
    }
    assert not faults.kill_switch.tripped
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["dir/ü k.nc"]


def test_runtime_reports_kills_and_named_crashes_as_lambda_errors() -> None:
    runtime = LambdaRuntime()
    runtime.functions["Fn"] = FunctionSpec("lambdas.handlers.copy_batch.lambda_handler", 60, 1024)

    def killed(name: str, event: dict[str, Any]) -> None:
        raise LambdaKilled("boom")

    runtime.fault = killed
    payload, errored = runtime.invoke("Fn", {})
    assert errored and json.loads(payload)["errorType"] == "Sandbox.Timedout"

    def crashed(name: str, event: dict[str, Any]) -> None:
        raise lambda_error("Lambda.Unknown", "Process exited before completing request")

    runtime.fault = crashed
    payload, errored = runtime.invoke("Fn", {})
    assert errored and json.loads(payload) == {
        "errorType": "Lambda.Unknown",
        "errorMessage": "Process exited before completing request",
    }
    assert runtime.invocations["Fn"] == 2


def _fetch(url: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/s3credentials", headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 — loopback emulator
        return dict(json.loads(response.read()))


def test_tea_emulator_expire_ends_sessions_early() -> None:
    with TeaEmulator(valid_tokens={TOKEN}) as tea:
        first, second = _fetch(tea.url), _fetch(tea.url)
        assert tea.is_valid(first["accessKeyId"]) and tea.is_valid(second["accessKeyId"])
        assert tea.expire(first["accessKeyId"]) == [first["accessKeyId"]]
        assert tea.is_valid(first["accessKeyId"]) is False and tea.is_valid(second["accessKeyId"])
        expiration = tea.expiration_of(first["accessKeyId"])
        assert expiration is not None and expiration <= datetime.now(UTC)
        later = datetime.now(UTC) + timedelta(seconds=30)
        tea.expire(at=later)
        assert tea.expiration_of(second["accessKeyId"]) == later
        assert tea.expiration_of(first["accessKeyId"]) == expiration  # never moved later


def test_tea_emulator_drops_a_connection() -> None:
    with TeaEmulator(valid_tokens={TOKEN}) as tea:
        tea.script_drop()
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _fetch(tea.url)
        assert _fetch(tea.url)["accessKeyId"]
        assert tea.requests == 2
