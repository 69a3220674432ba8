"""Where the CLI finds the stack: real AWS (boto3 default session, outputs by stack name) or the local engine.

Everything the commands need is one ``Backend``: a Step Functions client, an S3 client, the state
machine ARN, the staging bucket, and the Plan function's environment (so ``start`` validates an input
with exactly the settings the deployed Plan step uses).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
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


class BackendError(RuntimeError):
    """The stack or one of its outputs cannot be found (the message says what to check)."""


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

    def plan_settings(self) -> PlanSettings:
        return PlanSettings.from_env(dict(self.plan_environment))

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


def aws_backend(stack_name: str = DEFAULT_STACK, *, region: str | None = None, profile: str | None = None) -> Backend:
    """The deployed stack, found by name with the default boto3 session (or ``profile``/``region``)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(profile_name=profile, region_name=region)
    config = _client_config()
    cfn = session.client("cloudformation", config=config)
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise BackendError(
            f"cannot describe stack {stack_name!r} in {session.region_name or 'the default region'}: {exc}. "
            "Pass --stack/--region (or set AWS_REGION / AWS_PROFILE)."
        ) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in (OUTPUT_STATE_MACHINE, OUTPUT_STAGING_BUCKET) if k not in outputs]
    if missing:
        raise BackendError(f"stack {stack_name!r} has no output {', '.join(missing)}: is it a teacopy stack?")
    state_machine_arn = outputs[OUTPUT_STATE_MACHINE]
    environment: dict[str, str] = {}
    try:
        resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=PLAN_LOGICAL_ID)
        function = resource["StackResourceDetail"]["PhysicalResourceId"]
        lam = session.client("lambda", config=config)
        environment = dict(lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"])
    except (ClientError, BotoCoreError, KeyError) as exc:
        logger.warning("cannot read the Plan function's settings (%s): inputs are not validated locally", exc)
    return Backend(
        sfn=session.client("stepfunctions", config=config),
        s3=session.client("s3", config=config),
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
