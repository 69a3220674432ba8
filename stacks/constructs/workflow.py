"""The copy state machine: Plan (loop) -> FetchCredentials -> CopyObjects (Distributed Map) -> Summarize (loop).

Plan and Summarize each loop through a Choice (``PlanningDone``, ``SummaryDone``) while their function answers
with a ``continuation``: a job too large for one invocation is planned and summarized in several, with the
progress checkpointed in the staging bucket (lambdas/planning/checkpoint.py, lambdas/reporting/summary.py).

State names are an API (stacks/constructs/state_names.py): the local engine, the tests and the
runbooks refer to them. The steps (stacks/constructs/steps/) own their tasks and retries; this
construct only wires them, and owns the map, the child loop's flow states and the state machine.

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

from aws_cdk import Acknowledgment as Ack
from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts.staging import RUNS_PREFIX
from stacks.config import TeacopyConfig
from stacks.constructs.function import retention_days
from stacks.constructs.state_names import StateNames
from stacks.constructs.steps.copy_batch import CopyBatchStep
from stacks.constructs.steps.credentials import CredentialsStep
from stacks.constructs.steps.plan import PlanStep
from stacks.constructs.steps.summarize import SummarizeStep
from stacks.constructs.storage import MAP_RESULTS_PREFIX
from stacks.logical_ids import LOGICAL_IDS, override_logical_id

REFRESH_EXHAUSTED_ERROR = "CredentialsRefreshExhausted"
MAP_LABEL = "CopyBatches"


@dataclass(frozen=True)
class WorkflowSteps:
    plan: PlanStep
    credentials: CredentialsStep
    copy_batch: CopyBatchStep
    summarize: SummarizeStep

    @property
    def all(self) -> tuple[PlanStep, CredentialsStep, CopyBatchStep, SummarizeStep]:
        return (self.plan, self.credentials, self.copy_batch, self.summarize)


def _child_state(refresh_round: Any) -> dict[str, Any]:
    """The map child's state for the next CopyBatch: the event fields plus the refresh round."""
    return {
        "run_id": sfn.JsonPath.string_at("$.run_id"),
        "batch": sfn.JsonPath.object_at("$.batch"),
        "destination": sfn.JsonPath.object_at("$.destination"),
        "options": sfn.JsonPath.object_at("$.options"),
        "credentials": sfn.JsonPath.object_at("$.credentials"),
        "refresh_round": refresh_round,
    }


class CopyWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TeacopyConfig,
        steps: WorkflowSteps,
        staging_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        n = StateNames
        copy_objects = self._copy_objects(config, staging_bucket, self._child(config, steps))
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
        map_failed.next(steps.summarize.task)
        map_succeeded.next(steps.summarize.task)
        # Plan and Summarize continue in another invocation while their answer carries a continuation (their
        # progress is checkpointed in the staging bucket); each loop is bounded by its step (MAX_*_INVOCATIONS).
        # Plan also ends at once a scheduled run whose schedule's previous run still runs: {"run_skipped": true, ...}
        planning_done = (
            sfn.Choice(self, n.PLANNING_DONE, state_name=n.PLANNING_DONE)
            .when(sfn.Condition.is_present("$.run_skipped"), sfn.Succeed(self, n.RUN_SKIPPED, state_name=n.RUN_SKIPPED))
            .when(sfn.Condition.is_present("$.continuation"), steps.plan.task)
            .otherwise(steps.credentials.fetch_task)
        )
        summary_done = (
            sfn.Choice(self, n.SUMMARY_DONE, state_name=n.SUMMARY_DONE)
            .when(sfn.Condition.is_present("$.continuation"), steps.summarize.task)
            .otherwise(sfn.Succeed(self, n.RUN_SUMMARIZED, state_name=n.RUN_SUMMARIZED))
        )
        steps.summarize.task.next(summary_done)
        steps.credentials.fetch_task.next(copy_objects).next(map_succeeded)
        definition = steps.plan.task.next(planning_done)

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-CopyStateMachine",
            retention=retention_days(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The role's policies are written here, not by CDK: CDK's item reader/result writer grants cover
        # the whole staging bucket (and `<function>:*`); ours name the prefixes and the functions only.
        # Confused-deputy guard: only Step Functions acting for a state machine of this account and region.
        # (The role cannot name its own state machine: that one refers to the role.)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "states.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:*"
                    },
                },
            ),
            description="teacopy copy state machine",
        )
        self.role_policy = self._role_policy(steps, staging_bucket)
        self.state_machine = self._state_machine(definition)
        self.distributed_map_policy = self._distributed_map_policy()
        self._acknowledge_findings()

    def _child(self, config: TeacopyConfig, steps: WorkflowSteps) -> sfn.IChainable:
        """The map child: CopyBatch until done, refreshing the credentials (bounded) when they expire."""
        n = StateNames
        copy_batch, refresh = steps.copy_batch.task, steps.credentials.refresh_task
        # Expiry before any progress (CopyBatch raised CredentialsExpired): a counted round, bounded.
        count_round = sfn.Pass(
            self,
            n.COUNT_REFRESH_ROUND,
            state_name=n.COUNT_REFRESH_ROUND,
            parameters=_child_state(sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.refresh_round"), 1)),
        )
        # Expiry after progress (CopyBatch returned refresh=true): the budget starts again, since a
        # batch that keeps making progress may legitimately outlive many one-hour credentials.
        reset_round = sfn.Pass(
            self, n.RESET_REFRESH_ROUND, state_name=n.RESET_REFRESH_ROUND, parameters=_child_state(0)
        )
        exhausted = sfn.Fail(
            self,
            n.REFRESH_ROUNDS_EXHAUSTED,
            state_name=n.REFRESH_ROUNDS_EXHAUSTED,
            error=REFRESH_EXHAUSTED_ERROR,
            cause=(f"credentials expired {config.max_refresh_rounds} times for this batch; check TEA and the clock"),
        )
        can_refresh = (
            sfn.Choice(self, n.CAN_REFRESH, state_name=n.CAN_REFRESH)
            .when(sfn.Condition.number_greater_than("$.refresh_round", config.max_refresh_rounds), exhausted)
            .otherwise(refresh)
        )
        steps.copy_batch.on_credentials_expired(count_round)
        count_round.next(can_refresh)
        reset_round.next(refresh)
        refresh.next(copy_batch)

        # The child's output is CopyBatch's result (counts) only: the ResultWriter stores each child's output under
        # map-results/, and the batch (every object of it) is already in the staged manifest.
        batch_copied = sfn.Succeed(self, n.BATCH_COPIED, state_name=n.BATCH_COPIED, output_path="$.result")
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
        return copy_batch.next(batch_done)

    def _copy_objects(
        self, config: TeacopyConfig, staging_bucket: s3.IBucket, child: sfn.IChainable
    ) -> sfn.DistributedMap:
        """The Distributed Map over the staged manifest (one item per batch)."""
        n = StateNames
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
            # COMPACT: each child's output (its CopyBatch result), without its input or execution metadata
            result_writer_v2=sfn.ResultWriterV2(
                bucket=staging_bucket,
                prefix=MAP_RESULTS_PREFIX,
                writer_config=sfn.WriterConfig(
                    output_type=sfn.OutputType.JSON, transformation=sfn.Transformation.COMPACT
                ),
            ),
            result_path="$.map",
        )
        copy_objects.item_processor(child)
        return copy_objects

    def _role_policy(self, steps: WorkflowSteps, staging_bucket: s3.IBucket) -> iam.Policy:
        return iam.Policy(
            self,
            "RolePolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="InvokeTeacopyFunctions",
                    actions=["lambda:InvokeFunction"],
                    resources=[step.function.function_arn for step in steps.all],
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

    def _state_machine(self, definition: sfn.IChainable) -> sfn.StateMachine:
        state_machine = sfn.StateMachine(
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
        override_logical_id(state_machine, LOGICAL_IDS["state_machine"])
        # CreateStateMachine checks the log-delivery permissions: the policy must exist first.
        state_machine.node.add_dependency(self.role_policy)
        # CDK's own DistributedMapPolicy could not attach to the immutable role (it is not rendered);
        # drop the dead construct so nothing (cdk-nag included) mistakes it for a live policy.
        state_machine.node.try_remove_child("DistributedMapPolicy")
        return state_machine

    def _distributed_map_policy(self) -> iam.Policy:
        """The Distributed Map starts, watches and redrives child executions of this state machine."""
        stack, name = Stack.of(self), self.state_machine.state_machine_name
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        child_executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}/{MAP_LABEL}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return iam.Policy(
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

    def _acknowledge_findings(self) -> None:
        bucket, machine = LOGICAL_IDS["staging_bucket"], LOGICAL_IDS["state_machine"]
        Validations.of(self.role_policy).acknowledge(
            Ack(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Vended log delivery (logs:*LogDelivery, PutResourcePolicy, Describe*) and X-Ray "
                "do not support resource-level permissions.",
            ),
            Ack(
                id=f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{RUNS_PREFIX}*]",
                reason="ItemReader reads the manifest Plan staged under runs/<run_id>/ (key known only at run time).",
            ),
            Ack(
                id=f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{MAP_RESULTS_PREFIX}/*]",
                reason="ResultWriter writes the map run's result files under map-results/<map run id>/.",
            ),
        )
        stack = Stack.of(self)  # a region-specific stack prints its region and account, not the pseudo parameters
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        execution_arn = f"arn:<AWS::Partition>:states:{region}:{account}:execution:<{machine}.Name>"
        Validations.of(self.distributed_map_policy).acknowledge(
            Ack(
                id=f"AwsSolutions-IAM5[Resource::{execution_arn}:*]",
                reason="The Distributed Map describes/stops the executions of this state machine only "
                "(execution names are generated).",
            ),
            Ack(
                id=f"AwsSolutions-IAM5[Resource::{execution_arn}/{MAP_LABEL}:*]",
                reason="Redrive of this state machine's CopyBatches map-run child executions only.",
            ),
        )
