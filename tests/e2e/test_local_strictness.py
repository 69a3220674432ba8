"""The local engine is as strict as AWS where it matters (issue 15, items 5 and 6).

- A Lambda invocation that runs past its configured timeout is cut off and reported ``Sandbox.Timedout``;
  the sandbox is gone, so nothing it would still do reaches AWS.
- Each function's S3 requests are decided by its synthesized role policies: a missing or too-narrow grant
  fails a local run, as it would fail on AWS; DAAC (source) buckets refuse every key but their TEA's.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas.contracts import env_names
from stacks.teacopy_stack import LOGICAL_IDS
from teacopy_local.engine import LocalEngine
from teacopy_local.tea_emulator import TeaEmulator
from tests.e2e.test_e2e import DEST, SOURCE, TOKEN, assert_no_secrets, dest_digests, job, seed

pytestmark = pytest.mark.e2e
COPY = LOGICAL_IDS["copy_batch"]


@contextmanager
def engine_with(
    template: dict[str, Any], function_timeouts: dict[str, float] | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[LocalEngine, TeaEmulator]]:
    with TeaEmulator(valid_tokens={TOKEN}) as tea:
        overrides = {env_names.TEA_ENDPOINT: tea.url, env_names.SAFETY_MARGIN_SECONDS: "1", **(env or {})}
        with LocalEngine(
            template,
            tea=tea,
            edl_token=TOKEN,
            source_buckets={SOURCE},
            env_overrides=overrides,
            function_timeouts=function_timeouts,
        ) as engine:
            yield engine, tea


def role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The statements of the default policy of ``function``'s role (to edit a copy of the template)."""
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
            statements: list[dict[str, Any]] = resource["Properties"]["PolicyDocument"]["Statement"]
            return statements
    raise AssertionError(f"no policy for the role of {function}")


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return list(value) if isinstance(value, list) else [value]


# --- 5. Lambda timeouts -------------------------------------------------------------------------------------------


def test_an_invocation_past_its_timeout_is_cut_off_and_step_functions_retries_it(synth: Any) -> None:
    keys = [f"timeout/{i}.nc" for i in range(4)]
    env = {env_names.DEADLINE_RESERVE_SECONDS: "1"}
    with engine_with(synth.template, function_timeouts={COPY: 3}, env=env) as (engine, tea):
        expected = seed(engine, keys)
        hung = {"done": False}

        def hang_once(name: str, event: dict[str, Any]) -> None:
            if name == COPY and not hung["done"]:
                hung["done"] = True
                time.sleep(4.5)  # e.g. a network stall: past the function's 3 s timeout

        engine.runtime.fault = hang_once
        started = time.monotonic()
        result = engine.run(job(keys), name="timeout", timeout=120)

        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert (COPY, "Sandbox.Timedout", "Task timed out after 3.00 seconds") in engine.runtime.errors
        assert engine.runtime.timeouts[COPY] == 1
        assert engine.runtime.invocations[COPY] >= 2  # the state machine's Retry on Sandbox.Timedout ran it again
        assert time.monotonic() - started >= 3 + 5  # the timeout, then the Retry's 5 s interval
        assert dest_digests(engine, "copy/") == expected
        # the abandoned handler woke up and tried to copy: its sandbox was gone, nothing reached S3
        assert engine.runtime.zombie_requests >= 1
        assert_no_secrets(engine, tea, result)


# --- 6. IAM for S3 --------------------------------------------------------------------------------------------------


def test_a_missing_grant_fails_the_local_run(synth: Any) -> None:
    """CopyBatch's role without s3:PutObject on the destination: the run fails as it would on AWS."""
    template = copy.deepcopy(synth.template)
    edited = 0
    for statement in role_statements(template, COPY):
        resource = json.dumps(statement["Resource"])
        if "s3:PutObject" in actions(statement) and f":s3:::{DEST}/*" in resource:
            statement["Action"] = [a for a in actions(statement) if a != "s3:PutObject"]
            edited += 1
    assert edited == 1
    keys = ["iam/a.nc", "iam/b.nc"]
    with engine_with(template) as (engine, _tea):
        seed(engine, keys)
        result = engine.run(job(keys), name="no-put", timeout=120)
        assert (result.status, result.error) == ("FAILED", "CopyJobFailed")
        assert "DestinationAccessDenied" in (result.cause or "")
        denied = {(action, why) for _who, action, _resource, why in engine.policy.denied}
        assert ("s3:PutObject", "its role's policies: no statement allows it") in denied
        assert dest_digests(engine, "copy/") == {}


def test_a_too_narrow_prefix_condition_fails_the_local_run(synth: Any) -> None:
    """Summarize may list the staging bucket only under a prefix that is not the runs': its listing is refused."""
    template = copy.deepcopy(synth.template)
    narrowed = 0
    for statement in role_statements(template, LOGICAL_IDS["summarize"]):
        if actions(statement) == ["s3:ListBucket"] and "Condition" in statement:
            statement["Condition"] = {"StringLike": {"s3:prefix": ["reports/*"]}}
            narrowed += 1
    assert narrowed == 1
    with engine_with(template) as (engine, _tea):
        seed(engine, ["narrow/a.nc"])
        result = engine.run(job(["narrow/a.nc"]), name="narrow", timeout=120)
        assert result.status == "FAILED"
        assert "AccessDenied" in (result.error or "") + (result.cause or "")
        denied = [(action, resource) for _who, action, resource, _why in engine.policy.denied]
        assert ("s3:ListBucket", f"arn:aws:s3:::{engine.deployment.staging_bucket}") in denied
        assert engine.report("narrow") is None


def test_the_synthesized_grants_are_enough_and_checked(synth: Any) -> None:
    """The unedited template runs clean, and the checks were live: every function's role decided requests."""
    with engine_with(synth.template) as (engine, _tea):
        expected = seed(engine, ["ok/a.nc", "ok/b.nc"])
        result = engine.run(job(["ok/a.nc", "ok/b.nc"]), name="ok", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert engine.policy.denied == []
        assert dest_digests(engine, "copy/") == expected
        roles = engine.policy.roles
        assert roles is not None and set(roles) == {
            LOGICAL_IDS[k] for k in ("plan", "credentials", "copy_batch", "summarize")
        }
        staging = engine.deployment.staging_bucket
        decide = roles[COPY].decide
        assert decide("s3:PutObject", f"arn:aws:s3:::{DEST}/copy/x", {}).allowed
        assert not decide("s3:DeleteObject", f"arn:aws:s3:::{DEST}/copy/x", {}).allowed
        assert decide("s3:ListBucket", f"arn:aws:s3:::{staging}", {"s3:prefix": ["runs/r/"]}).allowed
        assert not decide("s3:ListBucket", f"arn:aws:s3:::{staging}", {"s3:prefix": ["other/"]}).allowed
        assert not decide("s3:ListBucket", f"arn:aws:s3:::{staging}", {}).allowed  # no prefix: the condition fails


def test_source_buckets_refuse_the_functions_own_credentials(synth: Any) -> None:
    """A DAAC bucket accepts only its TEA's keys: a Lambda reading it with its role is refused."""
    with engine_with(synth.template) as (engine, _tea):
        seed(engine, ["src/a.nc"])
        outcome: dict[str, Any] = {}

        def read_with_the_role(name: str, event: dict[str, Any]) -> None:
            if name == COPY and "error" not in outcome:
                try:
                    boto3.client("s3", region_name="us-west-2").get_object(Bucket=SOURCE, Key="src/a.nc")
                    outcome["error"] = None
                except ClientError as exc:
                    outcome["error"] = exc.response["Error"]["Code"]

        engine.runtime.fault = read_with_the_role
        result = engine.run(job(["src/a.nc"]), name="role-read", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)  # the copy itself uses TEA's keys
        assert outcome["error"] == "AccessDenied"
        assert any("accepts only its TEA's credentials" in why for *_rest, why in engine.policy.denied)
        # the harness (the DAAC's own administrator, seeding) is not refused
        assert engine.client("s3", region="us-west-2").get_object(Bucket=SOURCE, Key="src/a.nc")["Body"].read()
