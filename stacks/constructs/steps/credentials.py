"""The Credentials step: FetchCredentials (once per run) and RefreshCredentials (in the map child).

Only this function reads the EDL token and calls TEA; it writes the TEA credentials into the cache
secret(s) under a DynamoDB lease (coalesced refreshes). The Plan step invokes it directly to list a
prefix source (``PlanStep(credentials=...)``).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas.contracts import env_names, errors
from lambdas.contracts.staging import RUNS_PREFIX
from stacks import memory
from stacks.constructs.state_names import StateNames
from stacks.constructs.steps.base import (
    AWS_TRANSIENT_ERRORS,
    CRASH_ERRORS,
    RUNS_OBJECTS_FINDING,
    STAGING_OBJECTS_REASON,
    LambdaStep,
    StepResources,
    retry_lambda_service,
)
from stacks.logical_ids import LOGICAL_IDS


def add_credentials_retries(task: tasks.LambdaInvoke) -> None:
    """The retries of a task that runs the credentials flow (a fetch, a refresh, or Plan asking for them)."""
    retry_lambda_service(task)  # also AwsServiceUnavailable
    retryable = [name for name in errors.RETRYABLE_ERRORS if name not in AWS_TRANSIENT_ERRORS]
    task.add_retry(errors=retryable, interval=Duration.seconds(5), backoff_rate=2, max_attempts=4)
    # A timed-out or crashed invocation (the coalesced refresh is safe to repeat: the lease expires)
    task.add_retry(errors=list(CRASH_ERRORS), interval=Duration.seconds(5), backoff_rate=2, max_attempts=2)


def credentials_environment(resources: StepResources) -> dict[str, str]:
    config, storage = resources.config, resources.storage
    return {
        **resources.staging_env,
        env_names.TOKEN_SECRET_ID: storage.token_secret.secret_arn,
        env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
        env_names.LOCK_TABLE: storage.lease_table.table_name,
        env_names.TEA_ENDPOINT: config.tea_endpoint,
        env_names.APP_NAME: config.app_name,
        env_names.SAFETY_MARGIN_SECONDS: str(config.safety_margin_seconds),
        env_names.TEA_TIMEOUT_SECONDS: str(config.tea_timeout_seconds),
        **resources.tea_endpoints_env,
    }


class CredentialsStep(LambdaStep):
    def __init__(self, scope: Construct, construct_id: str, *, resources: StepResources) -> None:
        storage = resources.storage
        super().__init__(
            scope,
            construct_id,
            resources=resources,
            logical_id=LOGICAL_IDS["credentials"],
            handler="lambdas.handlers.credentials.lambda_handler",
            description="teacopy credentials: fetch/refresh TEA S3 credentials into the cache secret",
            memory_mb=memory.CREDENTIALS_MB,
            timeout=Duration.minutes(2),
            environment=credentials_environment(resources),
            # copy workers can never take the last concurrency a refresh needs (stacks/config.py)
            reserved_concurrency=resources.config.credentials_reserved_concurrency,
        )
        fn = self.lambda_
        fn.grant_secret_read(storage.token_secret)
        fn.grant_secret_versions(storage.credentials_cache)
        for cache in storage.endpoint_caches.values():
            fn.grant_secret_versions(cache)
        fn.grant_lease_table(storage.lease_table)
        fn.grant_objects(["s3:PutObject"], storage.staging_bucket, RUNS_PREFIX)
        fn.acknowledge_object_wildcards([RUNS_OBJECTS_FINDING], STAGING_OBJECTS_REASON)

        # one {version, expiration} per TEA endpoint the plan's batches need: {"default": {...}, ...}
        self.fetch_task = self._lambda_task(
            StateNames.FETCH_CREDENTIALS,
            result_path="$.credentials",
            payload=sfn.TaskInput.from_object(
                {
                    "action": "fetch",
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "endpoints": sfn.JsonPath.list_at("$.endpoints"),
                }
            ),
        )
        add_credentials_retries(self.fetch_task)
        # renews the batch's endpoint in the credentials map (the other entries pass through)
        self.refresh_task = self._lambda_task(
            StateNames.REFRESH_CREDENTIALS,
            result_path="$.credentials",
            payload=sfn.TaskInput.from_object(
                {
                    "action": "refresh",
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "endpoint": sfn.JsonPath.string_at("$.batch.endpoint"),
                    "credentials": sfn.JsonPath.object_at("$.credentials"),
                }
            ),
        )
        add_credentials_retries(self.refresh_task)
