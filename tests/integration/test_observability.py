"""Observability: the dashboard, the alarms and their SNS wiring in the template; the metrics the
handlers publish (CloudWatch EMF on stdout, as in Lambda)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import env_names
from lambdas.contracts.errors import CredentialsExpired, EdlTokenRejected
from lambdas.contracts.models import TeaCredentials
from lambdas.observability import metrics as m
from stacks.config import ConfigError, TeacopyConfig
from stacks.teacopy_stack import LOGICAL_IDS
from teacopy_local.moto_adapters import LocalContext
from teacopy_local.tea_emulator import DEFAULT_TOKEN, TeaEmulator
from tests.infrastructure.test_stack import CFN_LINT_IGNORED, resources

ALERT_TOPIC = "arn:aws:sns:us-west-2:123456789012:ops-alerts"
ALERT_EMAIL = "ops@example.org"


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return resources(template, kind)


def alarm(template: dict[str, Any], name: str) -> dict[str, Any]:
    found = [props["Properties"] for key, props in of_type(template, "AWS::CloudWatch::Alarm").items() if name in key]
    assert len(found) == 1, name
    return found[0]


@pytest.fixture(scope="module")
def notified(synth: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The stack synthesized with both notification settings (cdk-nag on: any finding raises)."""
    from stacks.teacopy_stack import STACK_ID, build_app
    from tests.conftest import SYNTH_CONTEXT_OVERRIDES

    outdir = tmp_path_factory.mktemp("cdk.out.alarms")
    overrides = {**SYNTH_CONTEXT_OVERRIDES, "alarm_topic_arn": ALERT_TOPIC, "alarm_email": ALERT_EMAIL}
    app = build_app(overrides, outdir=str(outdir), cfn_validation=False)
    path = Path(app.synth().get_stack_by_name(STACK_ID).template_full_path)
    return json.loads(path.read_text(encoding="utf-8")), path


# --- template -------------------------------------------------------------------------------------------


def test_dashboard_shows_the_published_metrics(synth: Any) -> None:
    dashboards = of_type(synth.template, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = json.dumps(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for name in (
        m.OBJECTS_COPIED,
        m.OBJECTS_FAILED,
        m.BYTES_COPIED,
        m.TEA_REQUESTS,
        m.TEA_LATENCY,
        m.TEA_ERRORS,
        m.TEA_AUTH_FAILURES,
        m.CREDENTIAL_REFRESHES,
    ):
        assert f'\\"{m.NAMESPACE}\\",\\"{name}\\",\\"service\\"' in body, name
    for name in ("ExecutionsStarted", "ExecutionsFailed", "ExecutionsSucceeded"):
        assert f'\\"AWS/States\\",\\"{name}\\",\\"StateMachineArn\\"' in body
    assert '\\"AWS/Lambda\\",\\"Errors\\"' in body
    assert "DashboardName" in synth.template["Outputs"]


def test_alarms_on_failed_executions_and_tea_authentication_failures(synth: Any) -> None:
    failed = alarm(synth.template, "ExecutionsFailedAlarm")
    assert failed["Threshold"] == 1 and failed["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert failed["TreatMissingData"] == "notBreaching"
    queries = {q["Id"]: q for q in failed["Metrics"]}
    assert queries["expr_1"]["Expression"] == "FILL(failed, 0) + FILL(timedOut, 0)"
    for query_id, metric_name in (("failed", "ExecutionsFailed"), ("timedOut", "ExecutionsTimedOut")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/States" and stat["Metric"]["MetricName"] == metric_name
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "StateMachineArn", "Value": {"Ref": LOGICAL_IDS["state_machine"]}}
        ]
        assert stat["Stat"] == "Sum" and stat["Period"] == 300

    auth = alarm(synth.template, "TeaAuthFailuresAlarm")
    [query] = auth["Metrics"]
    metric = query["MetricStat"]["Metric"]
    assert (metric["Namespace"], metric["MetricName"]) == (m.NAMESPACE, m.TEA_AUTH_FAILURES)
    assert metric["Dimensions"] == [{"Name": "service", "Value": m.SERVICE_CREDENTIALS}]
    assert (query["MetricStat"]["Stat"], query["MetricStat"]["Period"], auth["Threshold"]) == ("Sum", 300, 1)
    assert auth["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert auth["TreatMissingData"] == "notBreaching"
    assert "put-secret-value" in auth["AlarmDescription"]
    # without a topic or an email in the config, nothing is notified and no topic is created
    assert "AlarmActions" not in auth and "AlarmActions" not in failed
    assert of_type(synth.template, "AWS::SNS::Topic") == {}


def test_the_dependencies_layer_is_attached_to_every_function(synth: Any) -> None:
    """awscrt, Powertools (the logger for every function, metrics) and pydantic (the boundary shapes): all four."""
    layers = of_type(synth.template, "AWS::Lambda::LayerVersion")
    assert len(layers) == 1
    layer_ref = {"Ref": next(iter(layers))}
    functions = synth.template["Resources"]
    for key in ("plan", "credentials", "copy_batch", "summarize"):
        assert functions[LOGICAL_IDS[key]]["Properties"]["Layers"] == [layer_ref], key
    requirements = (Path(__file__).resolve().parents[2] / "requirements-layer.txt").read_text()
    assert "aws-lambda-powertools==" in requirements and "pydantic==" in requirements


def test_alarm_notifications_go_to_the_configured_topic_and_email(notified: tuple[dict[str, Any], Path]) -> None:
    template, _ = notified
    topics = of_type(template, "AWS::SNS::Topic")
    assert len(topics) == 1
    topic_id, topic = next(iter(topics.items()))
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = template["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    subscriptions = of_type(template, "AWS::SNS::Subscription")
    assert [s["Properties"] for s in subscriptions.values()] == [
        {"Protocol": "email", "TopicArn": {"Ref": topic_id}, "Endpoint": ALERT_EMAIL}
    ]
    policy = next(iter(of_type(template, "AWS::SNS::TopicPolicy").values()))["Properties"]["PolicyDocument"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )
    for name in ("ExecutionsFailedAlarm", "TeaAuthFailuresAlarm"):
        props = alarm(template, name)
        for actions in ("AlarmActions", "OKActions"):
            assert props[actions] == [ALERT_TOPIC, {"Ref": topic_id}], (name, actions)


def test_notified_template_is_cfn_lint_clean(notified: tuple[dict[str, Any], Path]) -> None:
    _, path = notified
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    ignored = [arg for rule in CFN_LINT_IGNORED for arg in ("--ignore-checks", rule)]
    result = subprocess.run(  # noqa: S603 - the venv's cfn-lint on our template
        [str(cfn_lint), *ignored, "--", str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [("alarm_topic_arn", "not-an-arn"), ("alarm_email", "nobody"), ("alarm_email", 42)],
)
def test_notification_settings_are_validated(key: str, value: Any) -> None:
    raw = {"tea_endpoint": "https://tea.example", "destinations": ["my-bucket"], key: value}
    with pytest.raises(ConfigError, match=f"teacopy.{key}"):
        TeacopyConfig.from_context(raw)
    ok = TeacopyConfig.from_context({**raw, "alarm_topic_arn": ALERT_TOPIC, "alarm_email": ALERT_EMAIL})
    assert (ok.alarm_topic_arn, ok.alarm_email) == (ALERT_TOPIC, ALERT_EMAIL)


# --- metrics the handlers publish ----------------------------------------------------------------------------


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


def metric_values(documents: list[dict[str, Any]], service: str) -> dict[str, list[float]]:
    """{metric name: values} of the EMF documents of ``service`` (checking the EMF structure on the way)."""
    out: dict[str, list[float]] = {}
    for doc in documents:
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == m.NAMESPACE and directive["Dimensions"] == [["service"]]
        if doc["service"] != service:
            continue
        for definition in directive["Metrics"]:
            values = doc[definition["Name"]]
            out.setdefault(definition["Name"], []).extend(values if isinstance(values, list) else [values])
    return out


def fresh_module(monkeypatch: pytest.MonkeyPatch, name: str) -> types.ModuleType:
    """Import a handler afresh (it reads its environment at import); teardown restores sys.modules."""
    monkeypatch.setitem(sys.modules, name, types.ModuleType("placeholder"))
    del sys.modules[name]
    return importlib.import_module(name)


def lambda_context() -> LocalContext:
    return LocalContext("teacopy-test", 900, 1024)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "teacopy-test")  # as in Lambda: EMF goes to stdout
    with mock_aws():
        yield boto3.Session(region_name="us-west-2")


def credentials_environment(monkeypatch: pytest.MonkeyPatch, session: Any, tea_url: str) -> None:
    secrets = session.client("secretsmanager")
    secrets.create_secret(Name="teacopy/edl-token", SecretString=DEFAULT_TOKEN)
    secrets.create_secret(Name="teacopy/cache", SecretString='{"placeholder": true}')
    session.client("dynamodb").create_table(
        TableName="leases",
        KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    session.client("s3").create_bucket(Bucket="staging", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for name, value in {
        env_names.TOKEN_SECRET_ID: "teacopy/edl-token",
        env_names.CREDENTIALS_SECRET_ID: "teacopy/cache",
        env_names.LOCK_TABLE: "leases",
        env_names.TEA_ENDPOINT: tea_url,
        env_names.SAFETY_MARGIN_SECONDS: "60",
        env_names.TEA_TIMEOUT_SECONDS: "2",
        env_names.STAGING_BUCKET: "staging",
    }.items():
        monkeypatch.setenv(name, value)


def test_credentials_handler_publishes_tea_requests_latency_and_refreshes(
    aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with TeaEmulator() as tea:
        credentials_environment(monkeypatch, aws, tea.url)
        handler = fresh_module(monkeypatch, "lambdas.handlers.credentials")
        first = handler.lambda_handler({"action": "fetch", "run_id": "r1"}, lambda_context())
        handler.lambda_handler(
            {"action": "refresh", "run_id": "r1", "used_version": first["version"]}, lambda_context()
        )
        second = handler.lambda_handler(
            {"action": "refresh", "run_id": "r1", "used_version": first["version"]}, lambda_context()
        )
        assert tea.requests == 2
    documents = emf_documents(capsys.readouterr().out)
    assert len(documents) == 3  # one per invocation
    values = metric_values(documents, m.SERVICE_CREDENTIALS)
    assert sum(values[m.TEA_REQUESTS]) == 2
    assert len(values[m.TEA_LATENCY]) == 2 and all(0 < ms < 5000 for ms in values[m.TEA_LATENCY])
    assert sum(values[m.CREDENTIAL_REFRESHES]) == 1  # the first refresh called TEA...
    assert sum(values[m.COALESCED_REFRESHES]) == 1  # ...the second was served the version it stored
    assert m.TEA_ERRORS not in values and m.TEA_AUTH_FAILURES not in values and m.ERRORS not in values
    assert second["version"] != first["version"]
    units = {d["Name"]: d["Unit"] for doc in documents for d in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units[m.TEA_LATENCY] == "Milliseconds" and units[m.TEA_REQUESTS] == "Count"


def test_expired_edl_token_is_counted_as_a_tea_authentication_failure(
    aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with TeaEmulator(valid_tokens={"a-token-we-do-not-have"}) as tea:  # ours is rejected: 302 to EDL
        credentials_environment(monkeypatch, aws, tea.url)
        handler = fresh_module(monkeypatch, "lambdas.handlers.credentials")
        with pytest.raises(EdlTokenRejected):
            handler.lambda_handler({"action": "fetch", "run_id": "r1"}, lambda_context())
    values = metric_values(emf_documents(capsys.readouterr().out), m.SERVICE_CREDENTIALS)
    assert values[m.TEA_AUTH_FAILURES] == [1.0]
    assert values[m.ERRORS] == [1.0]
    assert values[m.TEA_REQUESTS] == [1.0] and values[m.TEA_ERRORS] == [1.0]


def test_copy_batch_handler_publishes_objects_and_bytes(
    aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = aws.client("s3")
    for bucket in ("daac", "dest", "staging"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    s3.put_object(Bucket="daac", Key="a.nc", Body=b"x" * 1000)
    s3.put_object(Bucket="daac", Key="b.nc", Body=b"y" * 500)
    monkeypatch.setenv(env_names.STAGING_BUCKET, "staging")
    monkeypatch.setenv(env_names.CREDENTIALS_SECRET_ID, "teacopy/cache")
    handler = fresh_module(monkeypatch, "lambdas.handlers.copy_batch")

    class FakeCache:
        def get(self, version: str) -> TeaCredentials:
            return TeaCredentials("ASIAFAKE", "fake-secret", "fake-token", datetime.now(UTC) + timedelta(hours=1))

    monkeypatch.setattr(handler, "_CACHES", {"default": FakeCache()})
    event = {
        "run_id": "r1",
        "batch": {
            "id": "b000001",
            "source_bucket": "daac",
            "objects": [{"key": "a.nc"}, {"key": "b.nc"}, {"key": "c.nc"}],
        },
        "destination": {"bucket": "dest", "prefix": "copy/"},
        "credentials": {"version": "v1", "expiration": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
    }
    result = handler.lambda_handler(event, lambda_context())
    assert (result["copied"], result["failed"], result["bytes"]) == (2, 1, 1500)  # c.nc does not exist
    values = metric_values(emf_documents(capsys.readouterr().out), m.SERVICE_COPY)
    assert values == {
        m.OBJECTS_COPIED: [2.0],
        m.OBJECTS_SKIPPED: [0.0],
        m.OBJECTS_FAILED: [1.0],
        m.BYTES_COPIED: [1500.0],
    }


def test_outside_lambda_metrics_are_logged_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    caplog.set_level("INFO", logger="teacopy.metrics")
    with pytest.raises(EdlTokenRejected), m.observed(m.for_lambda(m.SERVICE_CREDENTIALS)):
        raise EdlTokenRejected("token expired")
    assert capsys.readouterr().out == ""
    [line] = [r.getMessage() for r in caplog.records if r.name == "teacopy.metrics"]
    values = metric_values([json.loads(line.removeprefix("EMF "))], m.SERVICE_CREDENTIALS)
    assert values == {m.TEA_AUTH_FAILURES: [1.0], m.ERRORS: [1.0]}


def test_routine_refresh_signal_is_not_an_error() -> None:
    sink = m.RecordingMetrics()
    m.record_error(sink, CredentialsExpired("TEA credentials expire in 200 s"))
    assert sink.records == []
