"""EventBridge Scheduler schedules that start the copy state machine, with retries and a dead-letter queue.

Each schedule in cdk.json context (``teacopy.schedules``) becomes one ``AWS::Scheduler::Schedule``
whose target is StartExecution with the schedule's input plus ``{"schedule": {"name", "incremental"}}``.
An *incremental* schedule keeps its state in an SSM parameter written by Summarize only when a run
succeeds (``<state prefix><name>``): the Plan narrows CMR queries to what changed since then, so a
nightly schedule copies only new granules and a failed night is picked up the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration, TimeZone
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import Destination
from lambdas.contracts.settings import PlanSettings
from lambdas.planning.request import parse_request
from stacks.config import ConfigError, ScheduleConfig, TeacopyConfig
from stacks.constructs.queues import dead_letter_queue


def schedule_state_prefix(app_name: str) -> str:
    """SSM parameter path under which incremental schedules keep their last successful run time."""
    return f"/teacopy/{app_name}/schedules/"


def schedule_state_parameter_arn(app_name: str) -> str:
    path = schedule_state_prefix(app_name).lstrip("/")
    return f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{path}*"


@dataclass(frozen=True)
class ScheduleState:
    """The SSM parameters of the incremental schedules: the Plan step reads them, the Summarize step writes them."""

    prefix: str  # the functions' TEACOPY_SCHEDULE_STATE_PREFIX
    parameter_arn: str  # every parameter under the prefix (one per incremental schedule)
    nag_finding: str  # parameter_arn as cdk-nag prints it (IAM5 acknowledgments)
    reason: str = "One SSM parameter per configured incremental schedule, under this app's own path."

    @classmethod
    def of(cls, config: TeacopyConfig) -> ScheduleState | None:
        """The state of ``config``'s incremental schedules; None when it has none."""
        if not any(s.incremental for s in config.schedules):
            return None
        prefix = schedule_state_prefix(config.app_name)
        return cls(
            prefix=prefix,
            parameter_arn=schedule_state_parameter_arn(config.app_name),
            nag_finding=f"arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/{prefix.lstrip('/')}*",
        )


def schedule_input(schedule: ScheduleConfig) -> dict[str, Any]:
    """The execution input a schedule sends: the configured job plus which schedule started it."""
    return {**schedule.input, "schedule": {"name": schedule.name, "incremental": schedule.incremental}}


def validate_schedule_inputs(config: TeacopyConfig) -> None:
    """Check each schedule's input with the Plan's own validation at synth time, not at 3 a.m."""
    settings = PlanSettings(
        staging_bucket="synth-time-check",
        destinations=tuple(Destination(bucket=d.bucket, prefix=d.prefix) for d in config.destinations),
        manifest_buckets=config.readable_buckets,
        batch_max_objects=config.batch_max_objects,
        batch_max_bytes=config.batch_max_bytes,
        max_inline_keys=config.max_inline_keys,
    )
    for index, entry in enumerate(config.schedules):
        try:
            parse_request(schedule_input(entry), settings)
        except InvalidInput as exc:
            raise ConfigError(f"teacopy.schedules[{index}].input ({entry.name}): {exc}") from exc


class Schedules(Construct):
    """One schedule per configured entry, sharing a start-execution role and a dead-letter queue."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: TeacopyConfig, state_machine: sfn.IStateMachine
    ) -> None:
        super().__init__(scope, construct_id)
        validate_schedule_inputs(config)
        self.schedules: list[scheduler.Schedule] = []
        # Events Scheduler could not deliver after its retries land here (kept 14 days, TLS only).
        self.dead_letter_queue = dead_letter_queue(self, "the schedules")
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="teacopy schedules: start executions of the copy state machine only",
        )
        for entry in config.schedules:
            target = targets.StepFunctionsStartExecution(
                state_machine,
                input=scheduler.ScheduleTargetInput.from_object(schedule_input(entry)),
                dead_letter_queue=self.dead_letter_queue,
                max_event_age=Duration.hours(entry.max_event_age_hours),
                retry_attempts=entry.retry_attempts,
                role=self.role,
            )
            self.schedules.append(
                scheduler.Schedule(
                    self,
                    f"Schedule-{entry.name}",
                    schedule=scheduler.ScheduleExpression.expression(
                        entry.expression, TimeZone.of(entry.timezone) if entry.timezone else None
                    ),
                    target=target,
                    description=f"teacopy {config.app_name}: {entry.name}"
                    + (" (incremental)" if entry.incremental else ""),
                    enabled=entry.enabled,
                )
            )
