"""The CopyBatch step: stream one batch of source objects into the destination (state ``CopyBatch``).

Reads the TEA credentials version it is handed from the cache secret(s), writes only under the
configured destinations, and records per-object results and upload checkpoints under runs/.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts import env_names, errors
from lambdas.contracts.staging import RUNS_PREFIX
from lambdas.s3.limits import MIB
from stacks.constructs.state_names import StateNames
from stacks.constructs.steps.base import (
    CRASH_ERRORS,
    RUNS_OBJECTS_FINDING,
    STAGING_OBJECTS_REASON,
    LambdaStep,
    StepResources,
    destination_object_findings,
    retry_lambda_service,
)
from stacks.logical_ids import LOGICAL_IDS

COPY_TRANSIENT_ERRORS = ("TransientCopyError",)
DEADLINE_RESERVE_SECONDS = 60  # CopyBatch stops starting objects this long before its Lambda timeout
DESTINATION_OBJECTS_REASON = (
    "Object-level wildcard limited to a destination bucket/prefix configured in cdk.json "
    "(copied keys mirror the source keys, which are only known at run time)."
)


class CopyBatchStep(LambdaStep):
    def __init__(self, scope: Construct, construct_id: str, *, resources: StepResources) -> None:
        config, storage = resources.config, resources.storage
        super().__init__(
            scope,
            construct_id,
            resources=resources,
            logical_id=LOGICAL_IDS["copy_batch"],
            handler="lambdas.handlers.copy_batch.lambda_handler",
            description="teacopy CopyBatch: stream one batch of source objects into the destination bucket",
            memory_mb=config.copy_memory_mb,
            timeout=Duration.seconds(config.copy_timeout_seconds),
            environment={
                **resources.staging_env,
                env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
                env_names.SOURCE_REGION: config.source_region,
                env_names.SAFETY_MARGIN_SECONDS: str(config.safety_margin_seconds),
                env_names.PART_SIZE_BYTES: str(config.part_size_mb * MIB),
                env_names.MULTIPART_THRESHOLD_BYTES: str(config.multipart_threshold_mb * MIB),
                env_names.INFLIGHT_PARTS: str(config.inflight_parts),
                env_names.OBJECT_CONCURRENCY: str(config.object_concurrency),
                env_names.DEADLINE_RESERVE_SECONDS: str(DEADLINE_RESERVE_SECONDS),
                **resources.tea_endpoints_env,
            },
            # = max_concurrency by default: the map's children always find their concurrency (stacks/config.py)
            reserved_concurrency=config.copy_reserved,
        )
        fn = self.lambda_
        for cache in (storage.credentials_cache, *storage.endpoint_caches.values()):
            fn.grant_secret_read(cache)
        # results and upload checkpoints (a checkpoint is deleted when its object is final)
        fn.grant_objects(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], storage.staging_bucket, RUNS_PREFIX)
        fn.grant_list_prefix(storage.staging_bucket, RUNS_PREFIX)
        for destination in config.destinations:
            fn.grant_destination(destination.bucket, destination.prefix)
        fn.acknowledge_object_wildcards([RUNS_OBJECTS_FINDING], STAGING_OBJECTS_REASON)
        fn.acknowledge_object_wildcards(destination_object_findings(config), DESTINATION_OBJECTS_REASON)

        # No payload: the whole state is the event. (TaskInput.from_json_path_at("$") would render
        # `"Parameters": "$"`, which is not valid ASL with payload_response_only.)
        self.task = self._lambda_task(StateNames.COPY_BATCH, result_path="$.result")
        retry_lambda_service(self.task)
        self.task.add_retry(
            errors=list(COPY_TRANSIENT_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=5
        )
        self.task.add_retry(errors=list(CRASH_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=2)

    def on_credentials_expired(self, handler: sfn.IChainable) -> None:
        """Route the errors that mean "the credentials expired before any progress" to ``handler``
        (the error lands in ``$.expired``; the batch's state is kept)."""
        self.task.add_catch(handler, errors=list(errors.REFRESH_ERRORS), result_path="$.expired")
