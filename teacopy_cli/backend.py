"""Where the CLI finds the stack: real AWS (boto3 session, outputs by stack name), the local engine, or the
run directories ``teacopy local`` writes (``teacopy_cli/local_runs.py``).

Everything the commands need is one ``Backend``: a Step Functions client, an S3 client, the state
machine ARN, the staging bucket, and the Plan function's environment (so ``start`` validates an input
with exactly the settings the deployed Plan step uses).

On AWS the region is ``--region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's;
a missing region or missing/rejected credentials is an ``AwsNotConfigured`` error whose message says
which of the two it is and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lambdas.contracts.settings import PlanSettings

logger = logging.getLogger(__name__)
DEFAULT_STACK = "TeacopyStack"
PLAN_LOGICAL_ID = "PlanFunction"  # stacks.teacopy_stack.LOGICAL_IDS["plan"]
OUTPUT_STATE_MACHINE = "StateMachineArn"
OUTPUT_STAGING_BUCKET = "StagingBucketName"
OUTPUT_DASHBOARD = "DashboardName"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")  # in this order, after --region
# AWS error codes that mean the credentials themselves are the problem (missing, expired, revoked, mistyped)
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "InvalidToken",
        "MissingAuthenticationToken",
    }
)
PERMISSION_ERROR_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
CREDENTIALS_HELP = (
    "configure credentials for the account of the stack (aws configure, aws sso login, or AWS_PROFILE / "
    "--profile); for a run of `teacopy local` pass --local instead"
)


class BackendError(RuntimeError):
    """The stack or one of its outputs cannot be found (the message says what to check)."""


class AwsNotConfigured(BackendError):
    """No region, no or rejected credentials, or AWS cannot be reached (the message says which and what to do)."""


@dataclass
class Backend:
    sfn: Any
    s3: Any
    state_machine_arn: str
    staging_bucket: str
    region: str
    plan_environment: Mapping[str, str] = field(default_factory=dict)
    local: bool = False
    dashboard: str | None = None
    run_directory: Path | None = None  # runs of `teacopy local`, read from their directories (local_runs.py)

    def plan_settings(self) -> PlanSettings:
        return PlanSettings.from_env(dict(self.plan_environment))

    def locate(self, url: str) -> str:
        """Where the operator finds a staging object (on AWS: its s3:// URL)."""
        return url

    def execution_arn(self, ref: str) -> str:
        """An execution ARN from an ARN or a bare execution name (= the run id)."""
        if ref.startswith("arn:"):
            return ref
        prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        return f"{prefix}:{ref}"

    def console_url(self, execution_arn: str) -> str:
        if self.local:
            return f"(local engine: no console) {execution_arn}"
        return (
            f"https://{self.region}.console.aws.amazon.com/states/home?region={self.region}"
            f"#/v2/executions/details/{quote(execution_arn, safe='')}"
        )

    def latest_execution(self) -> str:
        page = self.sfn.list_executions(stateMachineArn=self.state_machine_arn, maxResults=1)
        executions = page.get("executions") or []
        if not executions:
            raise BackendError(f"no execution of {self.state_machine_arn} yet")
        return str(executions[0]["executionArn"])


def _client_config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


def resolve_region(region: str | None, session: Any) -> str | None:
    """``--region``, else AWS_REGION, else AWS_DEFAULT_REGION, else the profile's region (None: none)."""
    if region:
        return region
    for name in REGION_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    configured = session.region_name
    return str(configured) if configured else None


def aws_problem(exc: BaseException, doing: str, region: str | None = None) -> BackendError:
    """One sentence for an AWS failure: a credentials problem, a permissions problem, or AWS not reachable."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        SSOError,
        TokenRetrievalError,
    )

    where = f" in {region}" if region else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", "")).rstrip(".")
        if code in CREDENTIAL_ERROR_CODES:
            return AwsNotConfigured(
                f"AWS rejected the credentials while {doing} ({code}: {message}): a credentials problem; "
                + CREDENTIALS_HELP
            )
        if code in PERMISSION_ERROR_CODES:
            return AwsNotConfigured(
                f"the credentials may not do this while {doing} ({code}: {message}): a permissions problem; "
                "use a role or user allowed to operate the stack (README: Deploy, 'Permissions')"
            )
        return BackendError(f"AWS answered {code or 'an error'} while {doing}{where}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | SSOError | TokenRetrievalError):
        return AwsNotConfigured(
            f"no usable AWS credentials while {doing} ({exc}): a credentials problem; " + CREDENTIALS_HELP
        )
    if isinstance(exc, ProfileNotFound):
        return AwsNotConfigured(f"{exc}: check --profile / AWS_PROFILE against ~/.aws/config")
    if isinstance(exc, NoRegionError):
        return AwsNotConfigured(
            "no AWS region: pass --region (the region of the stack, e.g. us-west-2) or set AWS_REGION"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return AwsNotConfigured(f"cannot reach AWS{where} while {doing} ({exc}): check the network, proxy and --region")
    return AwsNotConfigured(f"AWS call failed while {doing}{where}: {type(exc).__name__}: {exc}")


def aws_backend(stack_name: str = DEFAULT_STACK, *, region: str | None = None, profile: str | None = None) -> Backend:
    """The deployed stack, found by name with the boto3 session of ``profile`` (default: the default session)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.Session(profile_name=profile)
    except BotoCoreError as exc:
        raise aws_problem(exc, "opening the AWS profile") from exc
    resolved = resolve_region(region, session)
    if resolved is None:
        raise AwsNotConfigured(
            "no AWS region: pass --region (the region of the stack, e.g. us-west-2) or set AWS_REGION "
            "(or a region in your AWS profile)"
        )
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise aws_problem(exc, "loading the AWS credentials", resolved) from exc
    if credentials is None:
        raise AwsNotConfigured("no AWS credentials found: a credentials problem; " + CREDENTIALS_HELP)
    config = _client_config()
    cfn = session.client("cloudformation", region_name=resolved, config=config)
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
            raise BackendError(
                f"no stack {stack_name!r} in {resolved}: pass --stack NAME and --region REGION (where you deployed "
                "it; `npx cdk deploy` prints both)"
            ) from exc
        raise aws_problem(exc, f"describing stack {stack_name!r}", resolved) from exc
    except BotoCoreError as exc:
        raise aws_problem(exc, f"describing stack {stack_name!r}", resolved) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in (OUTPUT_STATE_MACHINE, OUTPUT_STAGING_BUCKET) if k not in outputs]
    if missing:
        raise BackendError(
            f"stack {stack_name!r} has no output {', '.join(missing)}: is it a teacopy stack? (pass --stack NAME)"
        )
    state_machine_arn = outputs[OUTPUT_STATE_MACHINE]
    environment: dict[str, str] = {}
    try:
        resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=PLAN_LOGICAL_ID)
        function = resource["StackResourceDetail"]["PhysicalResourceId"]
        lam = session.client("lambda", region_name=resolved, config=config)
        environment = dict(lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"])
    except (ClientError, BotoCoreError, KeyError) as exc:
        logger.warning("cannot read the Plan function's settings (%s): inputs are not validated locally", exc)
    return Backend(
        sfn=session.client("stepfunctions", region_name=resolved, config=config),
        s3=session.client("s3", region_name=resolved, config=config),
        state_machine_arn=state_machine_arn,
        staging_bucket=outputs[OUTPUT_STAGING_BUCKET],
        region=state_machine_arn.split(":")[3],
        plan_environment=environment,
        dashboard=outputs.get(OUTPUT_DASHBOARD),
    )


def local_backend(engine: Any) -> Backend:
    """The stack deployed in a running ``teacopy_local.engine.LocalEngine`` (same process)."""
    deployment = engine.deployment
    return Backend(
        sfn=engine.client("stepfunctions"),
        s3=engine.client("s3"),
        state_machine_arn=deployment.state_machine_arn,
        staging_bucket=deployment.staging_bucket,
        region=deployment.state_machine_arn.split(":")[3],
        plan_environment=dict(deployment.environment),
        local=True,
    )
