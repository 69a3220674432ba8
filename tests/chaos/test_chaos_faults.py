"""The local engine's Lambda runtime (timeouts, kills) and the chaos suite's fault hooks (S3 faults, TEA faults)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError
from moto import mock_aws

from teacopy_local.moto_adapters import (
    FunctionSpec,
    LambdaKilled,
    LambdaRuntime,
    S3Faults,
    S3Request,
    inprocess_lambda,
    lambda_error,
    s3_fault_injection,
    s3_operation,
)
from teacopy_local.tea_emulator import TeaEmulator

BUCKET = "chaos-unit-bucket"
TOKEN = "unit-edl-token-0123456789"


CLIENT: list[Any] = []  # the S3 client of the fixture, for the handlers below


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
        runtime = LambdaRuntime()
        faults = S3Faults(seed=1, runtime=runtime)
        CLIENT[:] = [client]
        with inprocess_lambda(runtime), s3_fault_injection(faults):
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


# Handlers for the runtime tests (``FunctionSpec.handler`` names them as Lambda's runtime would).


def put_twice(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CLIENT[0].put_object(Bucket=BUCKET, Key=f"{event['name']}-1", Body=b"1")
    CLIENT[0].put_object(Bucket=BUCKET, Key=f"{event['name']}-2", Body=b"2")
    return {"ok": event["name"]}


def sleep_then_put(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs past its timeout; then its own thread and a thread it started each try to write."""
    time.sleep(event["sleep"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(CLIENT[0].put_object, Bucket=BUCKET, Key="from-a-worker", Body=b"late").result()
    CLIENT[0].put_object(Bucket=BUCKET, Key="late", Body=b"late")
    return {"remaining_ms": context.get_remaining_time_in_millis()}


def remaining(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"remaining_ms": context.get_remaining_time_in_millis(), "request_id": context.aws_request_id}


def handler(name: str) -> str:
    return f"{__name__}.{name}"


def keys_in(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_an_invocation_past_its_timeout_is_cut_off_and_its_sandbox_writes_nothing_more(
    s3: tuple[Any, S3Faults],
) -> None:
    client, faults = s3
    runtime = faults.runtime
    assert runtime is not None
    runtime.functions["Slow"] = FunctionSpec(handler("sleep_then_put"), 0.5, 128)
    started = time.monotonic()
    payload, errored = runtime.invoke("Slow", {"sleep": 1.5})
    assert time.monotonic() - started < 1.2  # answered at the timeout, not when the handler ended
    assert errored and json.loads(payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 0.50 seconds",
    }
    assert runtime.timeouts["Slow"] == 1 and runtime.errors[-1][:2] == ("Slow", "Sandbox.Timedout")
    time.sleep(1.5)  # the abandoned handler wakes up: neither it nor a thread it starts reaches S3
    assert keys_in(client) == ["dir/ü k.nc"]
    assert runtime.zombie_requests >= 1
    assert runtime.records[-1].function == "Slow" and runtime.records[-1].errored


def test_an_invocation_within_its_timeout_answers_and_sees_its_remaining_time(s3: tuple[Any, S3Faults]) -> None:
    _client, faults = s3
    runtime = faults.runtime
    assert runtime is not None
    runtime.functions["Quick"] = FunctionSpec(handler("remaining"), 30, 128)
    payload, errored = runtime.invoke("Quick", {"x": 1})
    answer = json.loads(payload)
    assert not errored and 29_000 < answer["remaining_ms"] <= 30_000
    assert runtime.timeouts["Quick"] == 0
    record = runtime.records[-1]
    assert (record.event, json.loads(record.answer)["request_id"]) == ('{"x": 1}', answer["request_id"])


def test_a_kill_rule_kills_only_the_invocation_making_the_request(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    runtime = faults.runtime
    assert runtime is not None
    runtime.functions["Fn"] = FunctionSpec(handler("put_twice"), 30, 128)
    faults.add("kill", operations=("PutObject",), bucket=BUCKET, key="doomed-1")
    results: dict[str, Any] = {}

    def invoke(name: str) -> None:
        results[name] = runtime.invoke("Fn", {"name": name})

    threads = [threading.Thread(target=invoke, args=(n,)) for n in ("doomed", "fine")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert json.loads(results["doomed"][0])["errorType"] == "Sandbox.Timedout"
    assert results["fine"] == (b'{"ok": "fine"}', False)
    assert runtime.kills["Fn"] == 1
    assert keys_in(client) == ["dir/ü k.nc", "fine-1", "fine-2"]  # the killed one wrote nothing (not even -2)
    assert faults.count("PutObject", BUCKET, "doomed-2") == 0  # its later request never left the sandbox


def test_a_kill_outside_any_invocation_is_a_test_error(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    faults.add("kill", operations=("PutObject",), bucket=BUCKET)
    with pytest.raises(RuntimeError, match="outside any Lambda invocation"):
        client.put_object(Bucket=BUCKET, Key="x", Body=b"1")


def test_an_after_request_hook_kills_an_invocation_after_its_request_took_effect(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    runtime = faults.runtime
    assert runtime is not None
    runtime.functions["Fn"] = FunctionSpec(handler("put_twice"), 30, 128)

    def after(invocation: Any, event_name: str, request: Any, response: Any) -> None:
        if event_name.endswith("s3.PutObject") and request.url.endswith("/hooked-1"):
            runtime.kill(invocation)
            raise LambdaKilled("killed after PutObject")

    runtime.after_request.append(after)
    payload, errored = runtime.invoke("Fn", {"name": "hooked"})
    assert errored and json.loads(payload)["errorType"] == "Sandbox.Timedout"
    assert keys_in(client) == ["dir/ü k.nc", "hooked-1"]  # the first put happened; the caller never saw it


def test_runtime_reports_named_crashes_as_lambda_errors() -> None:
    runtime = LambdaRuntime()
    runtime.functions["Fn"] = FunctionSpec(handler("remaining"), 60, 1024)

    def crashed(name: str, event: dict[str, Any]) -> None:
        raise lambda_error("Lambda.Unknown", "Process exited before completing request")

    runtime.fault = crashed
    payload, errored = runtime.invoke("Fn", {})
    assert errored and json.loads(payload) == {
        "errorType": "Lambda.Unknown",
        "errorMessage": "Process exited before completing request",
    }
    assert runtime.invocations["Fn"] == 1


@pytest.mark.parametrize(
    ("kind", "operation", "code", "status"),
    [
        ("bad_digest", "PutObject", "BadDigest", 400),
        ("invalid_digest", "PutObject", "InvalidDigest", 400),
        ("bad_digest", "UploadPart", "BadDigest", 400),
    ],
)
def test_digest_faults_answer_like_s3(
    s3: tuple[Any, S3Faults], kind: str, operation: str, code: str, status: int
) -> None:
    client, faults = s3
    faults.add(kind, operations=(operation,), bucket=BUCKET, times=None)
    with pytest.raises(ClientError) as error:
        if operation == "PutObject":
            client.put_object(Bucket=BUCKET, Key="d", Body=b"1")
        else:
            upload = client.create_multipart_upload(Bucket=BUCKET, Key="d")["UploadId"]
            client.upload_part(Bucket=BUCKET, Key="d", UploadId=upload, PartNumber=1, Body=b"1")
    assert (error.value.response["Error"]["Code"], error.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        status,
    )
    assert faults.fired[kind] == 1  # a 400 is not retried by the SDK


def test_no_such_upload_really_aborts_the_upload(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="m")["UploadId"]
    faults.add("no_such_upload", operations=("UploadPart",), bucket=BUCKET)
    with pytest.raises(ClientError) as error:
        client.upload_part(Bucket=BUCKET, Key="m", UploadId=upload, PartNumber=1, Body=b"1")
    assert error.value.response["Error"]["Code"] == "NoSuchUpload"
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    with pytest.raises(ValueError, match="naming an upload"):
        faults.add("no_such_upload", operations=("PutObject",))


def test_stored_objects_are_counted(s3: tuple[Any, S3Faults]) -> None:
    client, faults = s3
    client.put_object(Bucket=BUCKET, Key="w", Body=b"1")
    client.put_object(Bucket=BUCKET, Key="w", Body=b"2")
    faults.add("internal_error", operations=("PutObject",), bucket=BUCKET, key="never", times=None)
    with pytest.raises(ClientError):
        client.put_object(Bucket=BUCKET, Key="never", Body=b"1")
    assert faults.writes == {(BUCKET, "w"): 2}


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
