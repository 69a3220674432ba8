"""The teacopy stack, and ``build_app`` which builds the whole CDK app in-process (app.py, tests, local engine)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import Acknowledgment as Ack
from aws_cdk import CfnOutput, Duration, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from lambdas.contracts import env_names
from lambdas.contracts.staging import RUNS_PREFIX
from lambdas.earthdata.cmr import DEFAULT_CMR_URL
from lambdas.earthdata.cmr import MAX_PAGE_SIZE as CMR_MAX_PAGE_SIZE
from lambdas.s3.limits import MIB

from .config import TeacopyConfig
from .constructs.function import TeacopyFunction, dependencies_layer, s3_object_arn
from .constructs.observability import Observability
from .constructs.schedules import Schedules, schedule_state_parameter_arn, schedule_state_prefix
from .constructs.storage import MAP_RESULTS_PREFIX, Storage
from .constructs.workflow import MAP_LABEL, CopyWorkflow, WorkflowFunctions

REPO_ROOT = Path(__file__).resolve().parents[1]
CDK_JSON = REPO_ROOT / "cdk.json"
STACK_ID = "TeacopyStack"
CONTEXT_KEY = "teacopy"

# Feature flags this app relies on. Set in code: cdk.json context reaches only the CDK CLI, not
# `python app.py` or pytest, and a silently dropped ResultWriter would be a silent behaviour change.
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2": True,
}

DEADLINE_RESERVE_SECONDS = 60

# Stable logical ids for the resources other tools look up (the local engine, runbooks).
LOGICAL_IDS = {
    "staging_bucket": "StagingBucket",
    "token_secret": "EdlTokenSecret",
    "credentials_cache": "CredentialsCacheSecret",
    "lease_table": "LeaseTable",
    "plan": "PlanFunction",
    "credentials": "CredentialsFunction",
    "copy_batch": "CopyBatchFunction",
    "summarize": "SummarizeFunction",
    "state_machine": "CopyStateMachine",
}

STAGING_OBJECTS_REASON = (
    "Object-level wildcard limited to one key prefix of the staging bucket this stack owns "
    "(runs/<run_id>/... is created per execution, so the key cannot be known in advance)."
)
DESTINATION_OBJECTS_REASON = (
    "Object-level wildcard limited to a destination bucket/prefix configured in cdk.json "
    "(copied keys mirror the source keys, which are only known at run time)."
)
MANIFEST_OBJECTS_REASON = (
    "Plan reads user-supplied manifests by key from the configured manifest/destination buckets; "
    "read-only and limited to the buckets listed in cdk.json."
)


def _override_logical_id(construct: Construct, logical_id: str) -> None:
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation default child")
    child.override_logical_id(logical_id)


class TeacopyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: TeacopyConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.storage = storage = Storage(self, "Storage", config=config)
        staging = storage.staging_bucket
        staging_env = {env_names.STAGING_BUCKET: staging.bucket_name}
        runs_objects = f"<{LOGICAL_IDS['staging_bucket']}.Arn>/{RUNS_PREFIX}*"

        # awscrt (CopyBatch), aws-lambda-powertools (EMF metrics: CopyBatch, Credentials), pydantic (the boundary
        # shapes: every function)
        self.dependencies_layer = dependencies_layer(self, "DependenciesLayer")

        # --- Plan -----------------------------------------------------------------------------------
        self.plan = TeacopyFunction(
            self,
            "Plan",
            handler="lambdas.handlers.plan.lambda_handler",
            description="teacopy Plan: validate the request and stage the batched manifest",
            memory_mb=512,
            timeout=Duration.minutes(15),  # a prefix listing or CMR query of millions of objects
            layers=[self.dependencies_layer],
            log_retention_days=config.log_retention_days,
            environment={
                **staging_env,
                env_names.DESTINATIONS: json.dumps(
                    [{"bucket": d.bucket, "prefix": d.prefix} for d in config.destinations], separators=(",", ":")
                ),
                env_names.MANIFEST_BUCKETS: json.dumps(list(config.readable_buckets), separators=(",", ":")),
                env_names.BATCH_MAX_OBJECTS: str(config.batch_max_objects),
                env_names.BATCH_MAX_BYTES: str(config.batch_max_bytes),
                env_names.MAX_INLINE_KEYS: str(config.max_inline_keys),
                # Source modes: prefix listings read TEA credentials from the cache (the Credentials
                # function is added below, once it exists); CMR queries.
                env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
                env_names.SOURCE_REGION: config.source_region,
                env_names.CMR_URL: DEFAULT_CMR_URL,
                # a CMR collection names its TEA (DirectDistributionInformation): matched to a configured one
                env_names.TEA_ENDPOINT: config.tea_endpoint,
                env_names.CMR_PAGE_SIZE: str(CMR_MAX_PAGE_SIZE),
            },
        )
        for bucket in config.readable_buckets:
            self.plan.allow(["s3:GetObject"], [f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}/*"])
        # The staged manifest is a multipart upload when it is large.
        self.plan.grant_objects(["s3:PutObject", "s3:AbortMultipartUpload"], staging, RUNS_PREFIX)
        self.plan.grant_secret_read(storage.credentials_cache)
        # Several DAACs: the other endpoints' caches (same JSON in every function: one process env locally).
        endpoints_env: dict[str, str] = {}
        if config.tea_endpoints:
            endpoints_env[env_names.TEA_ENDPOINTS] = self.to_json_string(
                {
                    e.name: {"url": e.endpoint, "cache": storage.endpoint_caches[e.name].secret_arn}
                    for e in config.tea_endpoints
                }
            )
            self.plan.function.add_environment(
                env_names.BUCKET_ENDPOINTS,
                json.dumps({b: e.name for e in config.tea_endpoints for b in e.buckets}, separators=(",", ":")),
            )
            for name, value in endpoints_env.items():
                self.plan.function.add_environment(name, value)
        for cache in storage.endpoint_caches.values():
            self.plan.grant_secret_read(cache)
        self.plan.acknowledge_object_wildcards([runs_objects], STAGING_OBJECTS_REASON)
        self.plan.acknowledge_object_wildcards(
            [f"arn:<AWS::Partition>:s3:::{bucket}/*" for bucket in config.readable_buckets], MANIFEST_OBJECTS_REASON
        )

        # --- Credentials (FetchCredentials and RefreshCredentials) -----------------------------------
        self.credentials = TeacopyFunction(
            self,
            "Credentials",
            handler="lambdas.handlers.credentials.lambda_handler",
            description="teacopy credentials: fetch/refresh TEA S3 credentials into the cache secret",
            memory_mb=256,
            timeout=Duration.minutes(2),
            layers=[self.dependencies_layer],
            log_retention_days=config.log_retention_days,
            environment={
                **staging_env,
                env_names.TOKEN_SECRET_ID: storage.token_secret.secret_arn,
                env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
                env_names.LOCK_TABLE: storage.lease_table.table_name,
                env_names.TEA_ENDPOINT: config.tea_endpoint,
                env_names.APP_NAME: config.app_name,
                env_names.SAFETY_MARGIN_SECONDS: str(config.safety_margin_seconds),
                env_names.TEA_TIMEOUT_SECONDS: str(config.tea_timeout_seconds),
                **endpoints_env,
            },
        )
        self.credentials.grant_secret_read(storage.token_secret)
        self.credentials.grant_secret_versions(storage.credentials_cache)
        for cache in storage.endpoint_caches.values():
            self.credentials.grant_secret_versions(cache)
        self.credentials.grant_lease_table(storage.lease_table)
        self.credentials.grant_objects(["s3:PutObject"], staging, RUNS_PREFIX)
        self.credentials.acknowledge_object_wildcards([runs_objects], STAGING_OBJECTS_REASON)
        # Plan lists a prefix source with TEA credentials: it asks this function for them (coalesced, same
        # cache), so only this function ever reads the EDL token or calls TEA.
        self.plan.function.add_environment(env_names.CREDENTIALS_FUNCTION, self.credentials.function.function_name)
        self.plan.allow(["lambda:InvokeFunction"], [self.credentials.function.function_arn])

        # --- CopyBatch --------------------------------------------------------------------------------
        part_size = config.part_size_mb * MIB
        self.copy_batch = TeacopyFunction(
            self,
            "CopyBatch",
            handler="lambdas.handlers.copy_batch.lambda_handler",
            description="teacopy CopyBatch: stream one batch of source objects into the destination bucket",
            memory_mb=config.copy_memory_mb,
            timeout=Duration.seconds(config.copy_timeout_seconds),
            layers=[self.dependencies_layer],
            log_retention_days=config.log_retention_days,
            environment={
                **staging_env,
                env_names.CREDENTIALS_SECRET_ID: storage.credentials_cache.secret_arn,
                env_names.SOURCE_REGION: config.source_region,
                env_names.SAFETY_MARGIN_SECONDS: str(config.safety_margin_seconds),
                env_names.PART_SIZE_BYTES: str(part_size),
                env_names.MULTIPART_THRESHOLD_BYTES: str(config.multipart_threshold_mb * MIB),
                env_names.INFLIGHT_PARTS: str(config.inflight_parts),
                env_names.OBJECT_CONCURRENCY: str(config.object_concurrency),
                env_names.DEADLINE_RESERVE_SECONDS: str(DEADLINE_RESERVE_SECONDS),
                **endpoints_env,
            },
        )
        self.copy_batch.grant_secret_read(storage.credentials_cache)
        for cache in storage.endpoint_caches.values():
            self.copy_batch.grant_secret_read(cache)
        # results and upload checkpoints (a checkpoint is deleted when its object is final)
        self.copy_batch.grant_objects(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], staging, RUNS_PREFIX)
        self.copy_batch.grant_list_prefix(staging, RUNS_PREFIX)
        for destination in config.destinations:
            self.copy_batch.grant_destination(destination.bucket, destination.prefix)
        self.copy_batch.acknowledge_object_wildcards([runs_objects], STAGING_OBJECTS_REASON)
        self.copy_batch.acknowledge_object_wildcards(
            sorted({f"arn:<AWS::Partition>:s3:::{d.bucket}/{d.prefix}*" for d in config.destinations}),
            DESTINATION_OBJECTS_REASON,
        )

        # --- Summarize --------------------------------------------------------------------------------
        self.summarize = TeacopyFunction(
            self,
            "Summarize",
            handler="lambdas.handlers.summarize.lambda_handler",
            description="teacopy Summarize: aggregate per-object results into the run report",
            memory_mb=1024,
            timeout=Duration.minutes(15),
            layers=[self.dependencies_layer],
            log_retention_days=config.log_retention_days,
            environment={**staging_env, env_names.MAX_FAILED_PERCENT: str(config.max_failed_percent)},
        )
        self.summarize.grant_objects(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], staging, RUNS_PREFIX)
        self.summarize.grant_list_prefix(staging, RUNS_PREFIX)
        self.summarize.acknowledge_object_wildcards([runs_objects], STAGING_OBJECTS_REASON)
        # aborts the multipart uploads that paused objects of a failed run left open (nothing else there)
        destination_objects = sorted({s3_object_arn(d.bucket, d.prefix) for d in config.destinations})
        self.summarize.allow(["s3:AbortMultipartUpload"], destination_objects)
        self.summarize.acknowledge_object_wildcards(
            sorted({f"arn:<AWS::Partition>:s3:::{d.bucket}/{d.prefix}*" for d in config.destinations}),
            "Summarize may only abort multipart uploads under the configured destination prefixes; upload keys "
            "are the copied objects' keys, known at run time only.",
        )

        # --- the state machine ------------------------------------------------------------------------
        self.workflow = CopyWorkflow(
            self,
            "Workflow",
            config=config,
            functions=WorkflowFunctions(
                plan=self.plan, credentials=self.credentials, copy_batch=self.copy_batch, summarize=self.summarize
            ),
            staging_bucket=staging,
        )
        self.state_machine = self.workflow.state_machine

        # --- schedules (EventBridge Scheduler), incremental state in SSM ------------------------------
        self.schedules = (
            Schedules(self, "Schedules", config=config, state_machine=self.state_machine) if config.schedules else None
        )
        if any(s.incremental for s in config.schedules):
            state_prefix = schedule_state_prefix(config.app_name)
            state_arn = schedule_state_parameter_arn(config.app_name)
            self.plan.function.add_environment(env_names.SCHEDULE_STATE_PREFIX, state_prefix)
            self.plan.allow(["ssm:GetParameter"], [state_arn])
            self.summarize.function.add_environment(env_names.SCHEDULE_STATE_PREFIX, state_prefix)
            self.summarize.allow(["ssm:PutParameter"], [state_arn])
            for function in (self.plan, self.summarize):
                function.acknowledge_object_wildcards(
                    [f"arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/{state_prefix.lstrip('/')}*"],
                    "One SSM parameter per configured incremental schedule, under this app's own path.",
                )

        for key, construct in (
            ("staging_bucket", staging),
            ("token_secret", storage.token_secret),
            ("credentials_cache", storage.credentials_cache),
            ("lease_table", storage.lease_table),
            ("plan", self.plan.function),
            ("credentials", self.credentials.function),
            ("copy_batch", self.copy_batch.function),
            ("summarize", self.summarize.function),
            ("state_machine", self.state_machine),
        ):
            _override_logical_id(construct, LOGICAL_IDS[key])
        for name, cache in storage.endpoint_caches.items():  # e.g. CredentialsCacheSecretNsidc
            _override_logical_id(cache, "CredentialsCacheSecret" + "".join(p.capitalize() for p in name.split("-")))

        self._acknowledge_stack_findings()

        # --- dashboard, alarms (failed executions, expired EDL token), optional SNS notifications -----
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            state_machine=self.state_machine,
            functions=[
                ("Plan", self.plan.function),
                ("Credentials", self.credentials.function),
                ("CopyBatch", self.copy_batch.function),
                ("Summarize", self.summarize.function),
            ],
        )
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "StagingBucketName", value=staging.bucket_name)
        CfnOutput(self, "TokenSecretName", value=config.token_secret_name)
        CfnOutput(self, "CredentialsCacheSecretArn", value=storage.credentials_cache.secret_arn)

    def _acknowledge_stack_findings(self) -> None:
        storage = self.storage
        bucket, machine = LOGICAL_IDS["staging_bucket"], LOGICAL_IDS["state_machine"]
        Validations.of(self.workflow.role_policy).acknowledge(
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
        execution_arn = f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<{machine}.Name>"
        Validations.of(self.workflow.distributed_map_policy).acknowledge(
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
        Validations.of(storage.staging_bucket).acknowledge(
            Ack(
                id="AwsSolutions-S1",
                reason="Staging bucket holds only transient manifests/results (expired by lifecycle); every "
                "access is made by this stack's roles and recorded by CloudTrail; no separate access-log bucket.",
            )
        )
        Validations.of(storage.token_secret).acknowledge(
            Ack(
                id="AwsSolutions-SMG4",
                reason="EDL tokens cannot be rotated by a Lambda: renewal needs the user's Earthdata password, "
                "so the user replaces the token (60-day lifetime) with put-secret-value.",
            )
        )
        for cache in (storage.credentials_cache, *storage.endpoint_caches.values()):
            Validations.of(cache).acknowledge(
                Ack(
                    id="AwsSolutions-SMG4",
                    reason="Cache of 1-hour TEA credentials: the credentials Lambda writes a new version on every "
                    "refresh, which is more frequent than any rotation schedule.",
                )
            )


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` object of cdk.json (read from next to app.py, whatever the working directory)."""
    context = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    if not isinstance(context, dict):
        raise ValueError(f"{CDK_JSON}: 'context' must be an object")
    return context


def build_app(
    context_overrides: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    *,
    nag: bool = True,
    cfn_validation: bool = True,
) -> cdk.App:
    """Build the app (not yet synthesized): cdk.json context, then CLI context, then ``context_overrides``.

    ``context_overrides`` are merged key by key into the ``teacopy`` object. The cdk-nag AwsSolutions
    pack is registered unless ``nag`` is false: any unacknowledged finding makes ``app.synth()`` raise.
    ``cfn_validation=False`` skips CDK's built-in template validation (it only warns, and costs ~4 s;
    the tests run cfn-lint on the template instead).
    """
    app = cdk.App(
        context=cdk_json_context(),
        post_cli_context=FEATURE_FLAGS,
        outdir=outdir,
        builtin_cloud_formation_validation=cfn_validation,
    )
    raw = app.node.try_get_context(CONTEXT_KEY)
    if isinstance(raw, str):  # `cdk synth -c teacopy='{...}'` passes a string
        raw = json.loads(raw)
    merged = {**(raw or {}), **dict(context_overrides or {})}
    config = TeacopyConfig.from_context(merged)
    TeacopyStack(
        app,
        STACK_ID,
        config=config,
        description="teacopy: bulk-copy NASA Earthdata Cloud objects (TEA credentials) into your own S3 bucket",
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app
