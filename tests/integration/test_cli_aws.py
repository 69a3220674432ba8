"""The CLI's AWS path (no injected backend): the stack is found by name with the default boto3 session,
its outputs give the state machine and the staging bucket, and the deployed Plan function's environment
gives the settings ``start`` validates with. AWS is moto here (CloudFormation, Lambda, Step Functions)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from teacopy_cli.backend import AwsNotConfigured, aws_backend, aws_problem
from teacopy_cli.cli import main

REGION = "us-west-2"
MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:CopyStateMachine"
TEMPLATE = {
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
        },
        "PlanFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.12",
                "Handler": "lambdas.handlers.plan.lambda_handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "placeholder = True"},
                "Environment": {
                    "Variables": {
                        "TEACOPY_STAGING_BUCKET": "teacopy-staging",
                        "TEACOPY_DESTINATIONS": json.dumps([{"bucket": "my-earthdata-copy", "prefix": "mur/"}]),
                        "TEACOPY_MAX_INLINE_KEYS": "3",
                    }
                },
            },
        },
    },
    "Outputs": {"StateMachineArn": {"Value": MACHINE}, "StagingBucketName": {"Value": "teacopy-staging"}},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="TeacopyStack", TemplateBody=json.dumps(TEMPLATE)
        )
        yield


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_backend_from_the_stack_outputs_and_the_plan_function(aws: None) -> None:
    backend = aws_backend("TeacopyStack", region=REGION)
    assert (backend.state_machine_arn, backend.staging_bucket, backend.region) == (MACHINE, "teacopy-staging", REGION)
    settings = backend.plan_settings()
    assert [(d.bucket, d.prefix) for d in settings.destinations] == [("my-earthdata-copy", "mur/")]
    assert settings.max_inline_keys == 3
    arn = backend.execution_arn("run-1")
    assert arn == f"arn:aws:states:{REGION}:123456789012:execution:CopyStateMachine:run-1"
    assert backend.console_url(arn) == (
        f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/"
        + arn.replace(":", "%3A")
    )


def test_start_validates_with_the_deployed_settings(aws: None) -> None:
    base = ["start", "--region", REGION, "--validate-only", "--source-bucket", "podaac-ops-cumulus-protected"]
    code, out, err = run(*base, "--keys", "a.nc", "b.nc", "--dest-bucket", "my-earthdata-copy", "--dest-prefix", "mur/")
    assert code == 0, err
    assert json.loads(out) == {
        "source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["a.nc", "b.nc"]},
        "destination": {"bucket": "my-earthdata-copy", "prefix": "mur/"},
    }
    # the deployment allows only mur/ and 3 inline keys: the same rules as its Plan step
    code, _, err = run(*base, "--keys", "a.nc", "--dest-bucket", "my-earthdata-copy", "--dest-prefix", "other/")
    assert code == 2 and "invalid input: destination.prefix: must start with one of the allowed prefixes" in err
    code, _, err = run(
        *base, "--keys", "a", "b", "c", "d", "--dest-bucket", "my-earthdata-copy", "--dest-prefix", "mur/"
    )
    assert code == 2 and "source.keys: has 4 keys; at most 3 inline" in err


def test_unknown_stack_is_a_clear_error(aws: None) -> None:
    code, _, err = run("watch", "--stack", "NoSuchStack", "--region", REGION)
    assert code == 4
    assert err == (
        "error: no stack 'NoSuchStack' in us-west-2: pass --stack NAME and --region REGION (where you deployed it; "
        "`npx cdk deploy` prints both)\n"
    )


def test_the_region_comes_from_the_flag_then_aws_region_then_aws_default_region_then_the_profile(
    aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert aws_backend("TeacopyStack").region == REGION  # AWS_REGION before AWS_DEFAULT_REGION
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert aws_backend("TeacopyStack", region=REGION).region == REGION  # --region before both
    code, _, err = run("watch")
    assert code == 4 and err.startswith("error: no stack 'TeacopyStack' in eu-west-1: pass --stack NAME")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert aws_backend("TeacopyStack").region == REGION
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    config = tmp_path / "config"
    config.write_text(f"[default]\nregion = {REGION}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert aws_backend("TeacopyStack").region == REGION  # the profile's region, last


def test_aws_failures_say_whether_credentials_permissions_or_the_network_are_the_problem() -> None:
    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "The security token is invalid."}}, "DescribeStacks")

    for code in ("ExpiredToken", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"):
        problem = aws_problem(client_error(code), "describing stack 'TeacopyStack'")
        assert isinstance(problem, AwsNotConfigured)
        assert f"AWS rejected the credentials while describing stack 'TeacopyStack' ({code}:" in str(problem)
        assert "a credentials problem" in str(problem) and "aws sso login" in str(problem)
    denied = aws_problem(client_error("AccessDenied"), "reading the report")
    assert "a permissions problem" in str(denied) and "credentials problem" not in str(denied)
    offline = aws_problem(EndpointConnectionError(endpoint_url="https://s3.us-west-2.amazonaws.com"), "x", "us-west-2")
    assert str(offline).startswith("cannot reach AWS in us-west-2 while x")


def test_local_passes_its_arguments_to_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["local", "--help"])
    assert info.value.code == 0
    assert "usage: teacopy local" in capsys.readouterr().out
