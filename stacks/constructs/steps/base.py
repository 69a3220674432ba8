"""What every workflow step shares: the resources it is given, its function, its Lambda task and retries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.contracts import env_names
from lambdas.contracts.staging import RUNS_PREFIX
from stacks.config import TeacopyConfig
from stacks.constructs.function import TeacopyFunction
from stacks.constructs.schedules import ScheduleState
from stacks.constructs.storage import Storage
from stacks.logical_ids import LOGICAL_IDS

# Errors of the Lambda service itself (not of the function): every Lambda task retries them.
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# An AWS call of the function itself was throttled or failed transiently (lambdas/handlers/boundary.py).
AWS_TRANSIENT_ERRORS = ("AwsServiceUnavailable",)
# An invocation that crashed or hit the Lambda timeout: retried a little where that is safe (it resumes).
CRASH_ERRORS = ("Sandbox.Timedout", "Lambda.Unknown")

# The staging objects of the runs (runs/<run_id>/...) as cdk-nag prints them, and why a wildcard is needed.
RUNS_OBJECTS_FINDING = f"<{LOGICAL_IDS['staging_bucket']}.Arn>/{RUNS_PREFIX}*"
STAGING_OBJECTS_REASON = (
    "Object-level wildcard limited to one key prefix of the staging bucket this stack owns "
    "(runs/<run_id>/... is created per execution, so the key cannot be known in advance)."
)


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def destination_object_findings(config: TeacopyConfig) -> list[str]:
    """The configured destinations' object ARNs (``bucket/prefix*``) as cdk-nag prints them."""
    return sorted({f"arn:<AWS::Partition>:s3:::{d.bucket}/{d.prefix}*" for d in config.destinations})


@dataclass(frozen=True)
class StepResources:
    """What the stack gives every step: the configuration, the stateful resources and the dependencies layer."""

    config: TeacopyConfig
    storage: Storage
    layer: lambda_.ILayerVersion

    @property
    def staging_env(self) -> dict[str, str]:
        return {env_names.STAGING_BUCKET: self.storage.staging_bucket.bucket_name}

    @property
    def tea_endpoints_env(self) -> dict[str, str]:
        """Several DAACs: each other endpoint's URL and credentials cache, the same JSON in every function
        that reads credentials (locally, the functions share one process environment)."""
        if not self.config.tea_endpoints:
            return {}
        caches = self.storage.endpoint_caches
        endpoints = {e.name: {"url": e.endpoint, "cache": caches[e.name].secret_arn} for e in self.config.tea_endpoints}
        return {env_names.TEA_ENDPOINTS: Stack.of(self.storage).to_json_string(endpoints)}


def retry_lambda_service(task: tasks.LambdaInvoke) -> None:
    """What every Lambda task retries: the Lambda service's own errors, and the function's transient AWS errors."""
    task.add_retry(errors=list(LAMBDA_SERVICE_ERRORS), interval=Duration.seconds(2), backoff_rate=2, max_attempts=6)
    task.add_retry(errors=list(AWS_TRANSIENT_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=4)


class LambdaStep(Construct):
    """One workflow step run by one Lambda: the step's ``TeacopyFunction`` and the task(s) that invoke it.

    The function is the step's ``Default`` child, which CDK leaves out of logical ids: its role, log
    group and policy keep the ids they had when the stack created the function itself (``PlanRole…``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resources: StepResources,
        logical_id: str,
        handler: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        environment: Mapping[str, str],
        ephemeral_storage_mb: int | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.resources = resources
        self.lambda_ = TeacopyFunction(
            self,
            "Default",
            name=construct_id,
            logical_id=logical_id,
            handler=handler,
            description=description,
            memory_mb=memory_mb,
            timeout=timeout,
            ephemeral_storage_mb=ephemeral_storage_mb,
            layers=[resources.layer],
            environment=environment,
            log_retention_days=resources.config.log_retention_days,
            reserved_concurrency=reserved_concurrency,
        )

    @property
    def function(self) -> lambda_.Function:
        return self.lambda_.function

    def _use_schedule_state(self, state: ScheduleState, action: str) -> None:
        self.function.add_environment(env_names.SCHEDULE_STATE_PREFIX, state.prefix)
        self.lambda_.allow([action], [state.parameter_arn])
        self.lambda_.acknowledge_object_wildcards([state.nag_finding], state.reason)

    def _lambda_task(
        self, state_name: str, *, result_path: str, payload: sfn.TaskInput | None = None
    ) -> tasks.LambdaInvoke:
        """A task state invoking this step's function; its state is the function's payload. Retries are
        added explicitly per task (no CDK default retry)."""
        return tasks.LambdaInvoke(
            self,
            state_name,
            state_name=state_name,
            lambda_function=self.function,
            payload=payload,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
