"""The teacopy stack, and ``build_app`` which builds the whole CDK app in-process (app.py, tests, local engine).

The stack only composes: storage, the four workflow steps (stacks/constructs/steps/), the workflow that
wires them (stacks/constructs/workflow.py), schedules, observability and the outputs. Each construct
owns its resources' IAM, cdk-nag acknowledgments and logical ids (stacks/logical_ids.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import CfnOutput, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from stacks.config import TeacopyConfig
from stacks.constructs.function import REPO_ROOT, dependencies_layer
from stacks.constructs.observability import Observability
from stacks.constructs.region import RequiredRegion
from stacks.constructs.schedules import Schedules, ScheduleState
from stacks.constructs.steps.base import StepResources
from stacks.constructs.steps.cleanup import CleanupStep
from stacks.constructs.steps.copy_batch import CopyBatchStep
from stacks.constructs.steps.credentials import CredentialsStep
from stacks.constructs.steps.plan import PlanStep
from stacks.constructs.steps.summarize import SummarizeStep
from stacks.constructs.storage import Storage
from stacks.constructs.workflow import CopyWorkflow, WorkflowSteps
from stacks.logical_ids import LOGICAL_IDS

__all__ = ["CONTEXT_KEY", "FEATURE_FLAGS", "LOGICAL_IDS", "STACK_ID", "TeacopyStack", "build_app"]

CDK_JSON = REPO_ROOT / "cdk.json"
STACK_ID = "TeacopyStack"
CONTEXT_KEY = "teacopy"

# Feature flags this app relies on. Set in code: cdk.json context reaches only the CDK CLI, not
# `python app.py` or pytest, and a silently dropped ResultWriter would be a silent behaviour change.
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2": True,
}


class TeacopyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: TeacopyConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        # TEA credentials work only from the DAAC buckets' region: refuse any other (synth and deploy time)
        self.required_region = RequiredRegion(self, "Region", region=config.source_region)
        self.storage = Storage(self, "Storage", config=config)
        # awscrt (CopyBatch), aws-lambda-powertools (logs, EMF metrics), pydantic (boundary shapes):
        # every function gets the layer
        resources = StepResources(
            config=config, storage=self.storage, layer=dependencies_layer(self, "DependenciesLayer")
        )

        # --- the workflow steps and the state machine that wires them ----------------------------------
        self.credentials = CredentialsStep(self, "Credentials", resources=resources)
        # Plan lists a prefix source with TEA credentials it asks the Credentials function for
        self.plan = PlanStep(self, "Plan", resources=resources, credentials=self.credentials)
        self.copy_batch = CopyBatchStep(self, "CopyBatch", resources=resources)
        self.summarize = SummarizeStep(self, "Summarize", resources=resources)
        steps = WorkflowSteps(
            plan=self.plan, credentials=self.credentials, copy_batch=self.copy_batch, summarize=self.summarize
        )
        self.workflow = CopyWorkflow(
            self, "Workflow", config=config, steps=steps, staging_bucket=self.storage.staging_bucket
        )
        self.state_machine = self.workflow.state_machine
        self.plan.watch_executions(self.state_machine)  # a scheduled run skips while its previous run still runs
        # A run that is stopped, times out or fails outside the map never reaches Summarize: clean up after it.
        self.cleanup = CleanupStep(self, "Cleanup", resources=resources, state_machine=self.state_machine)

        # --- schedules (EventBridge Scheduler); incremental ones keep their state in SSM ---------------
        self.schedules = (
            Schedules(self, "Schedules", config=config, state_machine=self.state_machine) if config.schedules else None
        )
        schedule_state = ScheduleState.of(config)
        if schedule_state:  # Plan reads when the schedule last succeeded, Summarize records it
            self.plan.read_schedule_state(schedule_state)
            self.summarize.write_schedule_state(schedule_state)

        # --- dashboard, alarms (failed executions, expired EDL token), optional SNS notifications -------
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            state_machine=self.state_machine,
            functions=[(step.node.id, step.function) for step in (*steps.all, self.cleanup)],
        )
        self._outputs()

    def _outputs(self) -> None:
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "StagingBucketName", value=self.storage.staging_bucket.bucket_name)
        CfnOutput(self, "TokenSecretName", value=self.config.token_secret_name)
        CfnOutput(self, "CredentialsCacheSecretArn", value=self.storage.credentials_cache.secret_arn)


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
    env: cdk.Environment | None = None,
) -> cdk.App:
    """Build the app (not yet synthesized): cdk.json context, then CLI context, then ``context_overrides``.

    ``context_overrides`` are merged key by key into the ``teacopy`` object. The cdk-nag AwsSolutions
    pack is registered unless ``nag`` is false: any unacknowledged finding makes ``app.synth()`` raise.
    ``cfn_validation=False`` skips CDK's built-in template validation (it only warns, and costs ~4 s;
    the tests run cfn-lint on the template instead). ``env``: a region-specific stack (default: environment-agnostic,
    the region being checked at deploy time by the template's rule; stacks/constructs/region.py).
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
        env=env,
        description="teacopy: bulk-copy NASA Earthdata Cloud objects (TEA credentials) into your own S3 bucket",
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app
