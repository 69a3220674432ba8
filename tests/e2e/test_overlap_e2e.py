"""Overlapping scheduled runs, end to end in the local engine (issue 11, item 11).

A nightly incremental schedule's run is held inside CopyBatch (the runtime's fault hook waits on an event), as a
copy that takes longer than a day would be. The schedule's next run starts meanwhile: Plan finds the previous run
of its schedule RUNNING (moto's ListExecutions/DescribeExecution) and the execution ends at once, SUCCEEDED, with
``{"run_skipped": true, ...}`` as its output, the ``ScheduledRunsSkipped`` metric, no copy, no Summarize, and the
schedule's state in SSM untouched. Another schedule's run at the same time is not affected. Once the held run
ends (and records its own success), the schedule's next run goes on normally from there.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.contracts.models import format_time
from lambdas.observability.metrics import SCHEDULED_RUNS_SKIPPED, SERVICE_PLAN
from lambdas.reporting.schedule_state import parameter_name
from stacks.config import ScheduleConfig
from stacks.constructs.schedules import schedule_input, schedule_state_prefix
from stacks.teacopy_stack import LOGICAL_IDS
from teacopy_local.cmr_emulator import EmulatedFile
from teacopy_local.engine import LocalEngine
from tests.e2e.test_hardening_e2e import wait_for
from tests.e2e.test_sources_e2e import DEST, SOURCE, engine_for, seed

pytestmark = pytest.mark.e2e

SEEDED_STATE = format_time(datetime(2020, 1, 1, tzinfo=UTC))


def emf_documents(engine: LocalEngine) -> list[dict[str, Any]]:
    """The EMF documents the functions published (locally: ``INFO teacopy.metrics EMF {...}`` records)."""
    marker = "teacopy.metrics EMF "
    return [json.loads(line.split(marker, 1)[1]) for line in engine.logs.lines if marker in line]


def skipped_metric(engine: LocalEngine) -> float:
    return sum(
        float(sum(doc[SCHEDULED_RUNS_SKIPPED]))
        for doc in emf_documents(engine)
        if SCHEDULED_RUNS_SKIPPED in doc and doc.get("service") == SERVICE_PLAN
    )


def test_a_scheduled_run_whose_previous_run_still_runs_ends_at_once_as_skipped(synth: Any) -> None:
    state_prefix = schedule_state_prefix(synth.config.app_name)
    with engine_for(synth) as (engine, _tea, cmr):
        keys = [f"overlap/{i}.nc" for i in range(2)]
        bodies = seed(engine, keys)
        concept = cmr.add_collection("OVERLAP", "1")
        for key, body in bodies.items():
            cmr.add_granule(
                concept,
                key.rsplit("/", 1)[-1],
                [EmulatedFile(SOURCE, key, len(body), None)],
                begin=datetime(2024, 1, 1, tzinfo=UTC),
                # revised well before night 1 plans: the state has one-second resolution (README, known limits)
                updated=datetime.now(UTC) - timedelta(seconds=30),
            )
        nightly = ScheduleConfig(
            name="nightly-overlap",
            expression="cron(0 3 * * ? *)",
            input={"source": {"cmr": {"collection_concept_id": concept}}, "destination": {"bucket": DEST}},
            incremental=True,
        )
        weekly = ScheduleConfig(
            name="weekly-other",
            expression="cron(0 4 ? * SUN *)",
            input={"source": {"bucket": SOURCE, "keys": keys[:1]}, "destination": {"bucket": DEST, "prefix": "w/"}},
        )
        ssm, sfn = engine.client("ssm"), engine.client("stepfunctions")
        state = parameter_name(state_prefix, nightly.name)
        ssm.put_parameter(Name=state, Value=SEEDED_STATE, Type="String")
        version = ssm.get_parameter(Name=state)["Parameter"]["Version"]

        # night 1 is held inside CopyBatch until released
        release, held = threading.Event(), threading.Event()

        def hold_night_1(function: str, event: dict[str, Any]) -> None:
            if function == LOGICAL_IDS["copy_batch"] and event.get("run_id") == "night-1":
                held.set()
                release.wait(90)

        engine.runtime.fault = hold_night_1
        night1 = engine.start(schedule_input(nightly), name="night-1")
        wait_for(held.is_set, what="night 1 inside CopyBatch")

        # night 2: the same schedule, while night 1 runs -> skipped at once
        night2 = engine.run(schedule_input(nightly), name="night-2", timeout=60)
        assert night2.status == "SUCCEEDED", (night2.error, night2.cause)
        assert night2.output is not None
        assert night2.output["run_skipped"] is True
        assert (night2.output["schedule"], night2.output["running_execution"]) == (nightly.name, "night-1")
        assert "still running" in night2.output["reason"]
        assert skipped_metric(engine) == 1
        states = [
            e["stateEnteredEventDetails"]["name"]
            for e in engine.history(night2.execution_arn)
            if "stateEnteredEventDetails" in e
        ]
        assert states == ["Plan", "PlanningDone", "RunSkipped"]
        assert night2.report is None  # no Summarize, no report
        staged = engine.client("s3").list_objects_v2(Bucket=engine.deployment.staging_bucket, Prefix="runs/night-2/")
        assert staged.get("KeyCount", 0) == 0  # nothing planned
        assert [r for r in engine.runtime.records if r.function != LOGICAL_IDS["plan"] and "night-2" in r.event] == []
        parameter = ssm.get_parameter(Name=state)["Parameter"]
        assert (parameter["Value"], parameter["Version"]) == (SEEDED_STATE, version)  # state untouched

        # another schedule's run at the same time goes on
        other = engine.run(schedule_input(weekly), name="weekly-1", timeout=120)
        assert other.status == "SUCCEEDED", (other.error, other.cause)
        assert other.output is not None and "run_skipped" not in other.output and other.output["copied"] == 1
        assert skipped_metric(engine) == 1

        # night 1 finishes and records its own success; the next night goes on from there
        assert sfn.describe_execution(executionArn=night1)["status"] == "RUNNING"
        release.set()
        first = engine.wait(night1, timeout=120)
        assert first.status == "SUCCEEDED", (first.error, first.cause)
        assert first.output is not None and (first.output["copied"], first.output["failed"]) == (2, 0)
        after_first = ssm.get_parameter(Name=state)["Parameter"]["Value"]
        assert after_first != SEEDED_STATE
        engine.runtime.fault = None

        night3 = engine.run(schedule_input(nightly), name="night-3", timeout=120)
        assert night3.status == "SUCCEEDED", (night3.error, night3.cause)
        assert night3.output is not None and "run_skipped" not in night3.output
        assert night3.output["objects"] == 0  # nothing changed since night 1
        assert skipped_metric(engine) == 1
