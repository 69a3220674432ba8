"""Overlapping scheduled runs: a scheduled execution whose schedule's previous execution still runs is skipped.

EventBridge Scheduler starts an execution on time whether or not the previous one of the same schedule has
finished (a nightly copy that takes longer than a day, a backlog). Two executions of one job would copy the same
objects at once. So Plan, for an execution started by a schedule (its input carries ``schedule.name``), first
asks Step Functions which executions of its own state machine are RUNNING, and reads the input of each one that
started before it: if one was started by the same schedule, this execution ends at once as *skipped* (its output
says so, Plan publishes the ``ScheduledRunsSkipped`` metric). It plans nothing, copies nothing, and an
incremental schedule's state (its last successful run, in SSM) is left as it is: the running execution records
its own success, and the next scheduled run picks up from there.

Only a run's first Plan invocation asks: a continuation (Plan saved a planning checkpoint and is invoked again,
``PlanningDone``) goes on, since the invocation that began the run already checked.

"Before it": an earlier start time, or the same start time and an earlier name (two deliveries in the same
instant: exactly one of them goes on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lambdas.contracts.errors import ConfigurationError
from lambdas.observability.metrics import SCHEDULED_RUNS_SKIPPED, MetricsSink

logger = logging.getLogger(__name__)


def scheduled_by(raw_input: Any) -> str | None:
    """The schedule that started the execution (``input.schedule.name``), None for an execution started by hand."""
    schedule = raw_input.get("schedule") if isinstance(raw_input, dict) else None
    name = schedule.get("name") if isinstance(schedule, dict) else None
    return name if isinstance(name, str) and name else None


def state_machine_of(execution_arn: str) -> str:
    """``arn:…:execution:<machine>:<name>`` -> ``arn:…:stateMachine:<machine>``."""
    parts = execution_arn.split(":")
    if len(parts) != 8 or parts[5] != "execution":
        raise ConfigurationError(f"Plan was given {execution_arn[:200]!r}, which is not an execution ARN")
    return ":".join([*parts[:5], "stateMachine", parts[6]])


def _order(started: Any, name: str) -> tuple[float, str]:
    return (started.timestamp() if isinstance(started, datetime) else 0.0, name)


def previous_run_still_running(sfn: Any, execution_arn: str, schedule: str) -> str | None:
    """The name of a RUNNING execution of the same state machine, started before this one by ``schedule``."""
    own = sfn.describe_execution(executionArn=execution_arn)
    mine = _order(own.get("startDate"), str(own.get("name", "")))
    paginator = sfn.get_paginator("list_executions")
    pages = paginator.paginate(stateMachineArn=state_machine_of(execution_arn), statusFilter="RUNNING")
    for page in pages:
        for execution in page.get("executions", []):
            if execution["executionArn"] == execution_arn:
                continue
            if _order(execution.get("startDate"), str(execution.get("name", ""))) >= mine:
                continue  # started after this one: that one will find this one
            other = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                other_input = json.loads(other.get("input") or "{}")
            except json.JSONDecodeError:
                continue
            if scheduled_by(other_input) == schedule:
                return str(execution["name"])
    return None


def skipped_output(schedule: str, running: str) -> dict[str, Any]:
    """What a skipped execution ends with (its output)."""
    return {
        "run_skipped": True,
        "reason": f"the previous run of schedule {schedule!r} ({running}) is still running",
        "schedule": schedule,
        "running_execution": running,
    }


def skip_if_overlapping(
    sfn: Any,
    raw_input: Any,
    execution_arn: Any,
    metrics: MetricsSink,
    continuing: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Plan's first step: the skipped output when this execution was started by a schedule whose previous
    execution is still running (logged, counted in ``ScheduledRunsSkipped``); None when the run goes on
    (started by hand, no execution ARN given, a continuation of planning: ``continuing()`` is true, or no
    earlier run of its schedule still running). ``continuing`` is asked only for a scheduled execution."""
    schedule = scheduled_by(raw_input)
    if schedule is None or not isinstance(execution_arn, str):
        return None
    if continuing is not None and continuing():
        return None  # the run's first invocation checked; this one continues its planning
    running = previous_run_still_running(sfn, execution_arn, schedule)
    if running is None:
        return None
    logger.warning(
        "skipped: the schedule's previous run is still running", extra={"schedule": schedule, "running": running}
    )
    metrics.add(SCHEDULED_RUNS_SKIPPED, 1)
    return skipped_output(schedule, running)
