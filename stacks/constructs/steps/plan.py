"""The Plan step: validate the execution input and stage the batched manifest (state ``Plan``).

Reads manifests from the configured buckets, lists prefix sources with TEA credentials it asks the
Credentials function for (so only that function reads the EDL token), queries CMR, and, for an
incremental schedule, reads the schedule's last successful run (``read_schedule_state``).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment as Ack
from aws_cdk import ArnFormat, Aws, Duration, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts import env_names
from lambdas.contracts.settings import DEFAULT_BUDGET_SECONDS
from lambdas.contracts.staging import RUNS_PREFIX, planning_prefix
from lambdas.earthdata.cmr import DEFAULT_CMR_URL
from lambdas.earthdata.cmr import MAX_PAGE_SIZE as CMR_MAX_PAGE_SIZE
from stacks import memory
from stacks.constructs.schedules import ScheduleState
from stacks.constructs.state_names import StateNames
from stacks.constructs.steps.base import (
    RUNS_OBJECTS_FINDING,
    STAGING_OBJECTS_REASON,
    LambdaStep,
    StepResources,
    compact_json,
)
from stacks.constructs.steps.credentials import CredentialsStep, add_credentials_retries
from stacks.logical_ids import LOGICAL_IDS

PLANNING_PREFIX = planning_prefix("*")  # runs/*/planning/: every run's planning scratch files
PLANNING_OBJECTS_FINDING = f"<{LOGICAL_IDS['staging_bucket']}.Arn>/{PLANNING_PREFIX}*"

MANIFEST_OBJECTS_REASON = (
    "Plan reads user-supplied manifests by key from the configured manifest/destination buckets; "
    "read-only and limited to the buckets listed in cdk.json."
)


def plan_environment(resources: StepResources, credentials: CredentialsStep) -> dict[str, str]:
    config, storage = resources.config, resources.storage
    environment = {
        **resources.staging_env,
        env_names.DESTINATIONS: compact_json([{"bucket": d.bucket, "prefix": d.prefix} for d in config.destinations]),
        env_names.MANIFEST_BUCKETS: compact_json(list(config.readable_buckets)),
        env_names.BATCH_MAX_OBJECTS: str(config.batch_max_objects),
        env_names.BATCH_MAX_BYTES: str(config.batch_max_bytes),
        env_names.MAX_INLINE_KEYS: str(config.max_inline_keys),
        # Source modes: prefix listings read TEA credentials from the cache (filled by the Credentials
        # function, which Plan invokes); CMR queries.
        env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
        env_names.SOURCE_REGION: config.source_region,
        env_names.CMR_URL: DEFAULT_CMR_URL,
        # a CMR collection names its TEA (DirectDistributionInformation): matched to a configured one
        env_names.TEA_ENDPOINT: config.tea_endpoint,
        env_names.CMR_PAGE_SIZE: str(CMR_MAX_PAGE_SIZE),
        # work per invocation before Plan checkpoints and the state machine invokes it again (PlanningDone)
        env_names.PLAN_BUDGET_SECONDS: str(DEFAULT_BUDGET_SECONDS),
    }
    if config.tea_endpoints:  # several DAACs: which endpoint serves which bucket, and the endpoints' caches
        environment[env_names.BUCKET_ENDPOINTS] = compact_json(
            {b: e.name for e in config.tea_endpoints for b in e.buckets}
        )
        environment.update(resources.tea_endpoints_env)
    environment[env_names.CREDENTIALS_FUNCTION] = credentials.function.function_name
    return environment


class PlanStep(LambdaStep):
    def __init__(
        self, scope: Construct, construct_id: str, *, resources: StepResources, credentials: CredentialsStep
    ) -> None:
        config, storage = resources.config, resources.storage
        super().__init__(
            scope,
            construct_id,
            resources=resources,
            logical_id=LOGICAL_IDS["plan"],
            handler="lambdas.handlers.plan.lambda_handler",
            description="teacopy Plan: validate the request and stage the batched manifest",
            memory_mb=memory.PLAN_MB,
            ephemeral_storage_mb=memory.PLAN_TMP_MB,  # the seen-keys file (planning/seen.py)
            timeout=Duration.minutes(15),  # a prefix listing or CMR query of millions of objects
            environment=plan_environment(resources, credentials),
        )
        fn = self.lambda_
        for bucket in config.readable_buckets:
            fn.allow(["s3:GetObject"], [f"arn:{Aws.PARTITION}:s3:::{bucket}/*"])
        # The staged manifest is a multipart upload when it is large; planning across invocations reads its
        # checkpoint files and reads plan.json (a retried last invocation); it deletes only its own scratch
        # files (runs/<run>/planning/: checkpoint, manifest tails, seen-keys files).
        fn.grant_objects(
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], storage.staging_bucket, RUNS_PREFIX
        )
        fn.grant_objects(["s3:DeleteObject"], storage.staging_bucket, PLANNING_PREFIX)
        fn.grant_list_prefix(storage.staging_bucket, RUNS_PREFIX)
        for cache in (storage.credentials_cache, *storage.endpoint_caches.values()):
            fn.grant_secret_read(cache)
        # A prefix source: Plan asks the Credentials function for TEA credentials (coalesced, same cache).
        fn.allow(["lambda:InvokeFunction"], [credentials.function.function_arn])
        fn.acknowledge_object_wildcards([RUNS_OBJECTS_FINDING, PLANNING_OBJECTS_FINDING], STAGING_OBJECTS_REASON)
        fn.acknowledge_object_wildcards(
            [f"arn:<AWS::Partition>:s3:::{bucket}/*" for bucket in config.readable_buckets], MANIFEST_OBJECTS_REASON
        )

        self.task = self._lambda_task(
            StateNames.PLAN,
            result_path="$",
            # the execution input every time: a continuation's state is only {"run_id", "continuation"}
            payload=sfn.TaskInput.from_object(
                {
                    "input": sfn.JsonPath.execution_input,
                    "run_id": sfn.JsonPath.execution_name,
                    # a scheduled run checks its schedule's previous run has ended (lambdas/lifecycle/overlap.py)
                    "execution_arn": sfn.JsonPath.execution_id,
                }
            ),
        )
        add_credentials_retries(self.task)  # a prefix source makes Plan ask the Credentials function

    def watch_executions(self, state_machine: sfn.StateMachine) -> None:
        """A scheduled run lists the running executions of its state machine and reads their input, to end at once
        when its schedule's previous run is still running. A policy of its own (not the role's default policy, on
        which the function depends): the state machine refers to the function, so the grant must come after it."""
        stack = Stack.of(self)
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.executions_policy = iam.Policy(
            self,
            "ExecutionsPolicy",
            roles=[self.lambda_.role],
            statements=[
                iam.PolicyStatement(actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]),
                iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions]),
            ],
        )
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        machine = LOGICAL_IDS["state_machine"]
        Validations.of(self.executions_policy).acknowledge(
            Ack(
                id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:{region}:{account}:execution:"
                f"<{machine}.Name>:*]",
                reason="Plan reads the input of the running executions of this state machine only (execution "
                "names are generated by the schedules), to skip a run whose schedule's previous run still runs.",
            )
        )

    def read_schedule_state(self, state: ScheduleState) -> None:
        """Incremental schedules: Plan narrows a CMR query to what changed since the last successful run."""
        self._use_schedule_state(state, "ssm:GetParameter")
