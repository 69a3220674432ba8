"""The clean-up after a run whose Summarize never ran (stopped, timed out, failed outside the map).

An EventBridge rule on the copy state machine's "Step Functions Execution Status Change" events (ABORTED,
TIMED_OUT, FAILED) sends each event to a queue that delays it by ``copy_timeout_seconds``: when the execution
ends, CopyBatch invocations it started may still be running (Step Functions abandons a task, Lambda finishes
it) and may still pause an upload; after the delay every one of them has ended. The ``Cleanup`` function then
aborts the run's leftover multipart uploads (from its checkpoints) and writes a report marked with the terminal
status (lambdas/lifecycle/cleanup.py). A message the function fails on is redelivered, then kept 14 days in a
dead-letter queue. Not part of the state machine: nothing in the workflow invokes it.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts.staging import RUNS_PREFIX
from lambdas.lifecycle.cleanup import DETAIL_TYPE, TERMINAL_STATUSES
from stacks import memory
from stacks.constructs.function import s3_bucket_arn, s3_object_arn
from stacks.constructs.queues import dead_letter_queue
from stacks.constructs.steps.base import (
    RUNS_OBJECTS_FINDING,
    STAGING_OBJECTS_REASON,
    LambdaStep,
    StepResources,
    destination_object_findings,
)
from stacks.logical_ids import LOGICAL_IDS

MAX_QUEUE_DELAY_SECONDS = 900  # SQS's longest delivery delay (= Lambda's longest timeout)
TIMEOUT = Duration.minutes(5)
ABORT_UPLOADS_REASON = (
    "The clean-up may only abort multipart uploads under the configured destination prefixes; upload keys are "
    "the copied objects' keys, known at run time only."
)


class CleanupStep(LambdaStep):
    def __init__(
        self, scope: Construct, construct_id: str, *, resources: StepResources, state_machine: sfn.IStateMachine
    ) -> None:
        config, staging = resources.config, resources.storage.staging_bucket
        super().__init__(
            scope,
            construct_id,
            resources=resources,
            logical_id=LOGICAL_IDS["cleanup"],
            handler="lambdas.handlers.cleanup.lambda_handler",
            description="teacopy Cleanup: abort leftover uploads and report a run that ended without Summarize",
            memory_mb=memory.CLEANUP_MB,
            timeout=TIMEOUT,
            environment=resources.staging_env,
        )
        fn = self.lambda_
        fn.grant_objects(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], staging, RUNS_PREFIX)
        fn.grant_list_prefix(staging, RUNS_PREFIX)
        fn.acknowledge_object_wildcards([RUNS_OBJECTS_FINDING], STAGING_OBJECTS_REASON)
        fn.allow(["s3:AbortMultipartUpload"], sorted({s3_object_arn(d.bucket, d.prefix) for d in config.destinations}))
        # a checkpoint whose upload id cannot be read: its object's open uploads are listed (as Summarize does)
        fn.allow(["s3:ListBucketMultipartUploads"], sorted({s3_bucket_arn(d.bucket) for d in config.destinations}))
        fn.acknowledge_object_wildcards(destination_object_findings(config), ABORT_UPLOADS_REASON)

        self.delay_seconds = min(MAX_QUEUE_DELAY_SECONDS, config.copy_timeout_seconds)
        self.dead_letter_queue = dead_letter_queue(self, "the clean-up queue")
        self.queue = sqs.Queue(
            self,
            "Queue",
            delivery_delay=Duration.seconds(self.delay_seconds),
            visibility_timeout=Duration.seconds(6 * TIMEOUT.to_seconds()),  # AWS's advice for a Lambda consumer
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.dead_letter_queue),
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description="teacopy: clean up after a copy execution that was stopped, timed out or failed",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[DETAIL_TYPE],
                detail={"stateMachineArn": [state_machine.state_machine_arn], "status": list(TERMINAL_STATUSES)},
            ),
        )
        self.rule.add_target(targets.SqsQueue(self.queue))
        self.function.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=5, report_batch_item_failures=True)
        )
