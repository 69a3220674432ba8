"""The copy state machine: Plan -> FetchCredentials -> CopyObjects (Distributed Map) -> Summarize.

State names are an API: the local engine, the tests and the runbooks refer to them.

Each map child copies one pre-batched item of the staged manifest::

    CopyBatch --CredentialsExpired--> CountRefreshRound -> CanRefresh --(> max rounds)--> RefreshRoundsExhausted
        |                                                      '--> RefreshCredentials -> CopyBatch
        '--> BatchDone --(done)--> BatchCopied
                 '--(not done: CopyBatch stopped before its deadline)--> CopyBatch

The loop through BatchDone is bounded because every CopyBatch invocation makes progress (it resumes
after the objects already recorded in the staging bucket); the refresh loop is bounded by
``max_refresh_rounds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.contracts import errors
from lambdas.contracts.staging import RUNS_PREFIX

from ..config import TeacopyConfig
from .function import TeacopyFunction, retention_days
from .storage import MAP_RESULTS_PREFIX

LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# A CopyBatch invocation that crashed or hit the Lambda timeout: retried a little (it resumes).
CRASH_ERRORS = ("Sandbox.Timedout", "Lambda.Unknown")
COPY_TRANSIENT_ERRORS = ("TransientCopyError",)
REFRESH_EXHAUSTED_ERROR = "CredentialsRefreshExhausted"
MAP_LABEL = "CopyBatches"


class StateNames:
    PLAN = "Plan"
    FETCH_CREDENTIALS = "FetchCredentials"
    COPY_OBJECTS = "CopyObjects"
    MAP_FAILED = "MapFailed"
    MAP_SUCCEEDED = "MapSucceeded"
    SUMMARIZE = "Summarize"
    COPY_BATCH = "CopyBatch"
    COUNT_REFRESH_ROUND = "CountRefreshRound"
    CAN_REFRESH = "CanRefresh"
    REFRESH_ROUNDS_EXHAUSTED = "RefreshRoundsExhausted"
    REFRESH_CREDENTIALS = "RefreshCredentials"
    BATCH_DONE = "BatchDone"
    RESET_REFRESH_ROUND = "ResetRefreshRound"
    BATCH_COPIED = "BatchCopied"


@dataclass(frozen=True)
class WorkflowFunctions:
    plan: TeacopyFunction
    credentials: TeacopyFunction
    copy_batch: TeacopyFunction
    summarize: TeacopyFunction


def _retry_lambda_service(task: tasks.LambdaInvoke) -> None:
    task.add_retry(
        errors=list(LAMBDA_SERVICE_ERRORS),
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=6,
    )


def _retry_credentials(task: tasks.LambdaInvoke) -> None:
    _retry_lambda_service(task)
    task.add_retry(
        errors=list(errors.RETRYABLE_ERRORS),
        interval=Duration.seconds(5),
        backoff_rate=2,
        max_attempts=4,
    )
    # A timed-out or crashed invocation (the coalesced refresh is safe to repeat: the lease expires)
    task.add_retry(errors=list(CRASH_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=2)


class CopyWorkflow(Construct):
    def _lambda_task(
        self, name: str, function: lambda_.IFunction, result_path: str, payload: sfn.TaskInput | None = None
    ) -> tasks.LambdaInvoke:
        """A Lambda task whose state is the function's payload; retries are added explicitly per task."""
        return tasks.LambdaInvoke(
            self,
            name,
            state_name=name,
            lambda_function=function,
            payload=payload,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TeacopyConfig,
        functions: WorkflowFunctions,
        staging_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        n = StateNames

        plan = self._lambda_task(
            n.PLAN,
            functions.plan.function,
            result_path="$",
            payload=sfn.TaskInput.from_object(
                {"input": sfn.JsonPath.entire_payload, "run_id": sfn.JsonPath.execution_name}
            ),
        )
        _retry_credentials(plan)  # a prefix source makes Plan ask the Credentials function for TEA credentials

        fetch = self._lambda_task(
            n.FETCH_CREDENTIALS,
            functions.credentials.function,
            result_path="$.credentials",
            # one {version, expiration} per TEA endpoint the plan's batches need: {"default": {...}, ...}
            payload=sfn.TaskInput.from_object(
                {
                    "action": "fetch",
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "endpoints": sfn.JsonPath.list_at("$.endpoints"),
                }
            ),
        )
        _retry_credentials(fetch)

        # --- the map child ---------------------------------------------------------------------------
        copy_batch = self._lambda_task(
            n.COPY_BATCH,
            functions.copy_batch.function,
            result_path="$.result",
            # No payload: the whole state is the event. (TaskInput.from_json_path_at("$") would render
            # `"Parameters": "$"`, which is not valid ASL with payload_response_only.)
        )
        _retry_lambda_service(copy_batch)
        copy_batch.add_retry(
            errors=list(COPY_TRANSIENT_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=5
        )
        copy_batch.add_retry(errors=list(CRASH_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=2)

        def child_state(refresh_round: Any) -> dict[str, Any]:
            """The child's state for the next CopyBatch: the event fields plus the refresh round."""
            return {
                "run_id": sfn.JsonPath.string_at("$.run_id"),
                "batch": sfn.JsonPath.object_at("$.batch"),
                "destination": sfn.JsonPath.object_at("$.destination"),
                "options": sfn.JsonPath.object_at("$.options"),
                "credentials": sfn.JsonPath.object_at("$.credentials"),
                "refresh_round": refresh_round,
            }

        # Expiry before any progress (CopyBatch raised CredentialsExpired): a counted round, bounded.
        count_round = sfn.Pass(
            self,
            n.COUNT_REFRESH_ROUND,
            state_name=n.COUNT_REFRESH_ROUND,
            parameters=child_state(sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.refresh_round"), 1)),
        )
        # Expiry after progress (CopyBatch returned refresh=true): the budget starts again, since a
        # batch that keeps making progress may legitimately outlive many one-hour credentials.
        reset_round = sfn.Pass(self, n.RESET_REFRESH_ROUND, state_name=n.RESET_REFRESH_ROUND, parameters=child_state(0))
        exhausted = sfn.Fail(
            self,
            n.REFRESH_ROUNDS_EXHAUSTED,
            state_name=n.REFRESH_ROUNDS_EXHAUSTED,
            error=REFRESH_EXHAUSTED_ERROR,
            cause=(f"credentials expired {config.max_refresh_rounds} times for this batch; check TEA and the clock"),
        )
        refresh = self._lambda_task(
            n.REFRESH_CREDENTIALS,
            functions.credentials.function,
            result_path="$.credentials",
            payload=sfn.TaskInput.from_object(
                {
                    # renews the batch's endpoint in the credentials map (the other entries pass through)
                    "action": "refresh",
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "endpoint": sfn.JsonPath.string_at("$.batch.endpoint"),
                    "credentials": sfn.JsonPath.object_at("$.credentials"),
                }
            ),
        )
        _retry_credentials(refresh)
        can_refresh = (
            sfn.Choice(self, n.CAN_REFRESH, state_name=n.CAN_REFRESH)
            .when(sfn.Condition.number_greater_than("$.refresh_round", config.max_refresh_rounds), exhausted)
            .otherwise(refresh)
        )
        copy_batch.add_catch(count_round, errors=list(errors.REFRESH_ERRORS), result_path="$.expired")
        count_round.next(can_refresh)
        reset_round.next(refresh)
        refresh.next(copy_batch)

        batch_copied = sfn.Succeed(self, n.BATCH_COPIED, state_name=n.BATCH_COPIED)
        batch_done = (
            sfn.Choice(self, n.BATCH_DONE, state_name=n.BATCH_DONE)
            .when(sfn.Condition.boolean_equals("$.result.done", True), batch_copied)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.result.refresh"),
                    sfn.Condition.boolean_equals("$.result.refresh", True),
                ),
                reset_round,
            )
            .otherwise(copy_batch)
        )
        child = copy_batch.next(batch_done)

        # --- the map ---------------------------------------------------------------------------------
        copy_objects = sfn.DistributedMap(
            self,
            n.COPY_OBJECTS,
            state_name=n.COPY_OBJECTS,
            item_reader=sfn.S3JsonItemReader(bucket=staging_bucket, key=sfn.JsonPath.string_at("$.manifest.key")),
            item_selector={
                "batch": sfn.JsonPath.object_at("$$.Map.Item.Value"),
                "run_id": sfn.JsonPath.string_at("$.run_id"),
                "destination": sfn.JsonPath.object_at("$.destination"),
                "options": sfn.JsonPath.object_at("$.options"),
                "credentials": sfn.JsonPath.object_at("$.credentials"),
                "refresh_round": 0,
            },
            max_concurrency=config.max_concurrency,
            tolerated_failure_percentage=(
                config.tolerated_failure_percentage if config.tolerated_failure_percentage > 0 else None
            ),
            map_execution_type=sfn.StateMachineType.STANDARD,
            label=MAP_LABEL,
            result_writer_v2=sfn.ResultWriterV2(bucket=staging_bucket, prefix=MAP_RESULTS_PREFIX),
            result_path="$.map",
        )
        copy_objects.item_processor(child)

        summarize = self._lambda_task(
            n.SUMMARIZE,
            functions.summarize.function,
            result_path="$",
            payload=sfn.TaskInput.from_object(
                {
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "outcome": sfn.JsonPath.object_at("$.outcome"),
                    "execution_started": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                }
            ),
        )
        _retry_lambda_service(summarize)

        map_failed = sfn.Pass(
            self,
            n.MAP_FAILED,
            state_name=n.MAP_FAILED,
            parameters={
                "map_failed": True,
                "error": sfn.JsonPath.string_at("$.map_error.Error"),
                "cause": sfn.JsonPath.string_at("$.map_error.Cause"),
            },
            result_path="$.outcome",
        )
        map_succeeded = sfn.Pass(
            self,
            n.MAP_SUCCEEDED,
            state_name=n.MAP_SUCCEEDED,
            result=sfn.Result.from_object({"map_failed": False}),
            result_path="$.outcome",
        )
        copy_objects.add_catch(map_failed, errors=["States.ALL"], result_path="$.map_error")
        map_failed.next(summarize)
        map_succeeded.next(summarize)

        definition = plan.next(fetch).next(copy_objects).next(map_succeeded)

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-CopyStateMachine",
            retention=retention_days(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )

        # The role's policies are written here, not by CDK: CDK's item reader/result writer grants cover
        # the whole staging bucket (and `<function>:*`); ours name the prefixes and the functions only.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="teacopy copy state machine",
        )
        base_policy = iam.Policy(
            self,
            "RolePolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="InvokeTeacopyFunctions",
                    actions=["lambda:InvokeFunction"],
                    resources=[
                        fn.function.function_arn
                        for fn in (functions.plan, functions.credentials, functions.copy_batch, functions.summarize)
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadStagedManifest",
                    actions=["s3:GetObject"],
                    resources=[staging_bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
                ),
                iam.PolicyStatement(
                    sid="WriteMapResults",
                    actions=[
                        "s3:PutObject",
                        "s3:GetObject",
                        "s3:ListMultipartUploadParts",
                        "s3:AbortMultipartUpload",
                    ],
                    resources=[staging_bucket.arn_for_objects(f"{MAP_RESULTS_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    sid="VendedLogDelivery",
                    actions=[
                        "logs:CreateLogDelivery",
                        "logs:GetLogDelivery",
                        "logs:UpdateLogDelivery",
                        "logs:DeleteLogDelivery",
                        "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy",
                        "logs:DescribeResourcePolicies",
                        "logs:DescribeLogGroups",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="XRayTracing",
                    actions=[
                        "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords",
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                    ],
                    resources=["*"],
                ),
            ],
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=self.role.without_policy_updates(),
            timeout=Duration.days(7),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="teacopy: copy Earthdata Cloud objects (read with TEA credentials) into your own bucket",
        )
        # CreateStateMachine checks the log-delivery permissions: the policy must exist first.
        self.state_machine.node.add_dependency(base_policy)
        # CDK's own DistributedMapPolicy could not attach to the immutable role (it is not rendered);
        # drop the dead construct so nothing (cdk-nag included) mistakes it for a live policy.
        self.state_machine.node.try_remove_child("DistributedMapPolicy")

        # The Distributed Map starts, watches and redrives child executions of this state machine.
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        child_executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}/{MAP_LABEL}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        map_policy = iam.Policy(
            self,
            "DistributedMapPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="StartChildExecutions",
                    actions=["states:StartExecution"],
                    resources=[self.state_machine.state_machine_arn],
                ),
                iam.PolicyStatement(
                    sid="WatchChildExecutions",
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[executions],
                ),
                iam.PolicyStatement(
                    sid="RedriveChildExecutions", actions=["states:RedriveExecution"], resources=[child_executions]
                ),
            ],
        )

        self.role_policy = base_policy
        self.distributed_map_policy = map_policy
