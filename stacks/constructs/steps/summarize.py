"""The Summarize step: aggregate per-object results into the run report (state ``Summarize``).

Also aborts the multipart uploads that paused objects of a failed run left open, and, for an
incremental schedule, records a successful run (``write_schedule_state``).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts import env_names
from lambdas.contracts.settings import DEFAULT_BUDGET_SECONDS
from lambdas.contracts.staging import RUNS_PREFIX
from lambdas.s3.limits import MIB
from stacks import memory
from stacks.constructs.function import s3_bucket_arn, s3_object_arn
from stacks.constructs.schedules import ScheduleState
from stacks.constructs.state_names import StateNames
from stacks.constructs.steps.base import (
    RUNS_OBJECTS_FINDING,
    STAGING_OBJECTS_REASON,
    LambdaStep,
    StepResources,
    destination_object_findings,
    retry_lambda_service,
)
from stacks.logical_ids import LOGICAL_IDS

ABORT_UPLOADS_REASON = (
    "Summarize may only abort multipart uploads under the configured destination prefixes; upload keys "
    "are the copied objects' keys, known at run time only."
)


class SummarizeStep(LambdaStep):
    def __init__(self, scope: Construct, construct_id: str, *, resources: StepResources) -> None:
        config, staging = resources.config, resources.storage.staging_bucket
        super().__init__(
            scope,
            construct_id,
            resources=resources,
            logical_id=LOGICAL_IDS["summarize"],
            handler="lambdas.handlers.summarize.lambda_handler",
            description="teacopy Summarize: aggregate per-object results into the run report",
            memory_mb=memory.SUMMARIZE_MB,
            timeout=Duration.minutes(15),
            environment={
                **resources.staging_env,
                env_names.MAX_FAILED_PERCENT: str(config.max_failed_percent),
                # work per invocation before Summarize checkpoints and the state machine invokes it again
                env_names.SUMMARY_BUDGET_SECONDS: str(DEFAULT_BUDGET_SECONDS),
                # the deployed copy settings, which the run's estimated cost is priced with (reporting/cost.py)
                env_names.PART_SIZE_BYTES: str(config.part_size_mb * MIB),
                env_names.MULTIPART_THRESHOLD_BYTES: str(config.multipart_threshold_mb * MIB),
                env_names.BATCH_MAX_OBJECTS: str(config.batch_max_objects),
                env_names.BATCH_MAX_BYTES: str(config.batch_max_bytes),
                env_names.COPY_MEMORY_MB: str(config.copy_memory_mb),
                env_names.SOURCE_REGION: config.source_region,
            },
        )
        fn = self.lambda_
        # report.csv is a multipart upload (continued across invocations, aborted if the run's report fails)
        fn.grant_objects(
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], staging, RUNS_PREFIX
        )
        fn.grant_list_prefix(staging, RUNS_PREFIX)
        fn.acknowledge_object_wildcards([RUNS_OBJECTS_FINDING], STAGING_OBJECTS_REASON)
        # aborts the multipart uploads that paused objects of a failed run left open (nothing else there)
        fn.allow(["s3:AbortMultipartUpload"], sorted({s3_object_arn(d.bucket, d.prefix) for d in config.destinations}))
        # a checkpoint whose upload id cannot be read: its object's open uploads are listed (ListMultipartUploads)
        fn.allow(["s3:ListBucketMultipartUploads"], sorted({s3_bucket_arn(d.bucket) for d in config.destinations}))
        fn.acknowledge_object_wildcards(destination_object_findings(config), ABORT_UPLOADS_REASON)

        self.task = self._lambda_task(
            StateNames.SUMMARIZE,
            result_path="$",
            payload=sfn.TaskInput.from_object(
                {
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "outcome": sfn.JsonPath.object_at("$.outcome"),
                    "execution_started": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                    "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),  # the report names the execution
                }
            ),
        )
        retry_lambda_service(self.task)

    def write_schedule_state(self, state: ScheduleState) -> None:
        """Incremental schedules: a successful run records its start time for the next run's Plan."""
        self._use_schedule_state(state, "ssm:PutParameter")
