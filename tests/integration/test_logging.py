"""Logging through Powertools' Logger (lambdas/observability/logs.py): structured ids on every record, the
level from the function's configuration, the library floor, and where the lines go in and outside Lambda."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import env_names
from lambdas.contracts.models import TeaCredentials
from lambdas.observability import logs
from teacopy_local.moto_adapters import LocalContext
from teacopy_local.tea_emulator import DEFAULT_TOKEN, TeaEmulator
from tests.integration.test_observability import credentials_environment, fresh_module

# Shaped like real ones (long enough that a leak of them cannot be a coincidence).
SOURCE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"  # fakes, planted to be looked for
SOURCE_SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDEXAMPLESESSIONTOKEN"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """function_logger changes process-wide loggers (levels, the root handlers' filter): put them back."""
    names = [logs.PACKAGE, *logs.LIBRARY_FLOOR, logs.PLAN, logs.CREDENTIALS, logs.COPY_BATCH, logs.SUMMARIZE]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """As inside Lambda: AWS_LAMBDA_FUNCTION_NAME set (JSON lines to stdout), AWS services mocked."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "teacopy-test")
    with mock_aws():
        yield boto3.Session(region_name="us-west-2")


def log_records(stdout: str) -> list[dict[str, Any]]:
    """The JSON log lines of a stdout (not the EMF metric documents)."""
    records = []
    for line in stdout.splitlines():
        if line.startswith("{") and not line.startswith('{"_aws"'):
            records.append(json.loads(line))
    return records


def test_a_credentials_invocation_carries_its_ids_as_keys_and_no_secret(
    in_lambda: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with TeaEmulator() as tea:
        credentials_environment(monkeypatch, in_lambda, tea.url)
        handler = fresh_module(monkeypatch, "lambdas.handlers.credentials")
        context = LocalContext("teacopy-credentials", 60, 256)
        first = handler.lambda_handler({"action": "fetch", "run_id": "r-creds"}, context)
        refresh = {"action": "refresh", "run_id": "r-creds", "used_version": first["version"]}
        handler.lambda_handler(refresh, LocalContext("teacopy-credentials", 60, 256))
        issued = [tea.credentials_of(access_key_id) for access_key_id, _ in tea.issued]
    stdout = capsys.readouterr().out
    records = log_records(stdout)

    assert records, "the invocations logged nothing"
    for record in records:
        assert record["run_id"] == "r-creds", record
        assert record["service"] == logs.CREDENTIALS and record["function_request_id"]
        assert "batch_id" not in record
        assert "r-creds" not in record["message"]  # an id is a key, not part of the text
    assert {r["action"] for r in records} == {"fetch", "refresh"}
    assert len({r["function_request_id"] for r in records}) == 2  # one per invocation
    served = [r for r in records if r["name"] == "lambdas.credentials.refresh" and r["message"] == "credentials served"]
    assert [(r["action"], r["endpoint"], r["fetched"]) for r in served] == [
        ("fetch", "default", True),
        ("refresh", "default", True),
    ]
    assert served[1]["used_version"] == first["version"] and served[1]["version"] != first["version"]
    tea_requests = [r for r in records if r["name"] == "lambdas.earthdata.tea"]
    assert [(r["status"], r["outcome"]) for r in tea_requests] == [(200, "ok"), (200, "ok")]

    secrets = [DEFAULT_TOKEN]
    for credentials in issued:
        assert credentials is not None
        secrets += [credentials.secret_access_key, credentials.session_token]
    assert len(secrets) == 5
    for secret in secrets:
        assert secret not in stdout


def test_a_copy_batch_invocation_carries_run_and_batch_ids_from_every_thread(
    in_lambda: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = in_lambda.client("s3")
    for bucket in ("daac", "dest", "staging"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for name in ("a.nc", "b.nc", "c.nc"):
        s3.put_object(Bucket="daac", Key=name, Body=name.encode() * 100)
    monkeypatch.setenv(env_names.STAGING_BUCKET, "staging")
    monkeypatch.setenv(env_names.CREDENTIALS_SECRET_ID, "teacopy/cache")
    handler = fresh_module(monkeypatch, "lambdas.handlers.copy_batch")

    class FakeCache:
        def get(self, version: str) -> TeaCredentials:
            expires = datetime.now(UTC) + timedelta(hours=1)
            return TeaCredentials("ASIAFAKEEXAMPLE", SOURCE_SECRET_KEY, SOURCE_SESSION_TOKEN, expires)

    monkeypatch.setattr(handler, "_CACHES", {"default": FakeCache()})

    def event(batch_id: str, keys: list[str]) -> dict[str, Any]:
        return {
            "run_id": "r-copy",
            "batch": {
                "id": batch_id,
                "source_bucket": "daac",
                "endpoint": "default",
                "objects": [{"key": key} for key in keys],
            },
            "destination": {"bucket": "dest", "prefix": "copy/"},
            "credentials": {"version": "v1", "expiration": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        }

    result = handler.lambda_handler(event("b000001", ["a.nc", "b.nc", "missing.nc"]), LocalContext("cb", 900, 1024))
    assert (result["copied"], result["failed"]) == (2, 1)
    first = log_records(capsys.readouterr().out)
    handler.lambda_handler(event("b000002", ["c.nc"]), LocalContext("cb", 900, 1024))
    stdout = capsys.readouterr().out
    second = log_records(stdout)

    for records, batch_id in ((first, "b000001"), (second, "b000002")):
        assert records
        for record in records:
            assert (record["run_id"], record["batch_id"], record["endpoint"]) == ("r-copy", batch_id, "default")
            assert record["service"] == logs.COPY_BATCH
    # Objects are copied in worker threads: their records carry the invocation's keys too.
    copied = [r for r in first if r["location"].startswith("copy:")]
    assert len(copied) == 3  # two copied, one failed (NoSuchKey)
    for secret in (SOURCE_SECRET_KEY, SOURCE_SESSION_TOKEN):
        assert all(secret not in json.dumps(r) for r in first + second)
        assert secret not in stdout


def test_the_level_comes_from_the_function_configuration_and_libraries_stay_at_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package, botocore = logging.getLogger(logs.PACKAGE), logging.getLogger("botocore")
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")  # Lambda's advanced logging controls
    logs.function_logger(logs.SUMMARIZE)
    assert package.level == logging.DEBUG
    assert botocore.level == logging.WARNING  # the floor: botocore DEBUG would log the session token
    assert logging.getLogger("urllib3").level == logging.WARNING and logging.getLogger("boto3").level == logging.WARNING

    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "ERROR")
    logs.function_logger(logs.SUMMARIZE)  # a re-imported handler follows its environment
    assert package.level == logging.ERROR and botocore.level == logging.ERROR

    monkeypatch.delenv("AWS_LAMBDA_LOG_LEVEL")
    logs.function_logger(logs.SUMMARIZE)
    assert package.level == logging.INFO and botocore.level == logging.WARNING


def test_outside_lambda_lines_go_to_the_local_sinks_never_stdout_and_records_reach_caplog(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    logger = logs.function_logger(logs.PLAN)

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> None:
        logger.append_keys(**logs.invocation_keys(event))
        logging.getLogger("lambdas.planning.example").info("planned the run", extra={"objects": 3})

    lines: list[str] = []
    with logs.local_sink(lines.append):
        handler({"run_id": "r-local"}, LocalContext("plan", 60, 512))
    handler({"run_id": "r-after"}, LocalContext("plan", 60, 512))  # no sink: the line goes nowhere

    assert capsys.readouterr().out == ""
    [line] = lines
    record = json.loads(line)
    assert (record["message"], record["run_id"], record["objects"]) == ("planned the run", "r-local", 3)
    assert record["service"] == logs.PLAN and record["name"] == "lambdas.planning.example"
    ours = [r for r in caplog.records if r.name == "lambdas.planning.example"]
    assert [getattr(r, "objects", None) for r in ours] == [3, 3]


def test_inside_lambda_the_runtime_handler_does_not_write_our_records_a_second_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime_output = io.StringIO()
    runtime_handler = logging.StreamHandler(runtime_output)  # what the Lambda runtime puts on the root logger
    root = logging.getLogger()
    root.addHandler(runtime_handler)
    try:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "teacopy-test")
        logs.function_logger(logs.SUMMARIZE)
        logging.getLogger("lambdas.reporting.example").warning("ours")
        logging.getLogger("elsewhere").warning("theirs")
    finally:
        root.removeHandler(runtime_handler)
    assert runtime_output.getvalue() == "theirs\n"
    [record] = log_records(capsys.readouterr().out)
    assert record["message"] == "ours" and record["level"] == "WARNING"


def test_invocation_keys_are_the_raw_events_ids_bounded() -> None:
    copy_event = {"run_id": "r1", "batch": {"id": "b000007", "endpoint": "nsidc"}, "credentials": {"version": "v"}}
    assert logs.invocation_keys(copy_event) == {"run_id": "r1", "batch_id": "b000007", "endpoint": "nsidc"}
    refresh = {"action": "refresh", "run_id": "r1", "endpoint": "podaac", "used_version": "v1"}
    assert logs.invocation_keys(refresh) == {"run_id": "r1", "endpoint": "podaac", "action": "refresh"}
    assert logs.invocation_keys({"run_id": 7, "batch": "b", "action": ""}) == {}
    assert logs.invocation_keys(["not", "an", "object"]) == {}
    assert logs.invocation_keys({"run_id": "x" * 5000}) == {"run_id": "x" * 200}
