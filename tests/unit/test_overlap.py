"""Overlapping scheduled runs (lambdas/lifecycle/overlap.py): which execution goes on, which is skipped."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas.contracts.errors import ConfigurationError
from lambdas.lifecycle.overlap import (
    previous_run_still_running,
    scheduled_by,
    skip_if_overlapping,
    state_machine_of,
)
from lambdas.observability.metrics import SCHEDULED_RUNS_SKIPPED, RecordingMetrics
from lambdas.planning import checkpoint as checkpoints

MACHINE = "arn:aws:states:us-west-2:123456789012:stateMachine:teacopy"
T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def arn(name: str) -> str:
    return f"arn:aws:states:us-west-2:123456789012:execution:teacopy:{name}"


class FakeSfn:
    """ListExecutions (RUNNING, two pages) and DescribeExecution over a fixed set of executions."""

    def __init__(self, executions: dict[str, tuple[datetime, str, Any]]) -> None:
        self.executions = executions  # name -> (startDate, status, input)
        self.described: list[str] = []
        self.listed: list[dict[str, Any]] = []

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        name = executionArn.rsplit(":", 1)[-1]
        self.described.append(name)
        started, status, raw = self.executions[name]
        return {
            "executionArn": executionArn,
            "name": name,
            "startDate": started,
            "status": status,
            "input": raw if isinstance(raw, str) else json.dumps(raw),
        }

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_executions"
        sfn = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> Any:
                sfn.listed.append(kwargs)
                running = [
                    {"executionArn": arn(n), "name": n, "startDate": s, "status": st}
                    for n, (s, st, _) in sfn.executions.items()
                    if st == kwargs.get("statusFilter", st)
                ]
                return [{"executions": running[:1]}, {"executions": running[1:]}]

        return Paginator()


def scheduled(name: str, **job: Any) -> dict[str, Any]:
    return {"source": {"bucket": "b", "keys": ["k"]}, "destination": {"bucket": "d"}, **job, "schedule": {"name": name}}


def test_scheduled_by_reads_only_a_named_schedule() -> None:
    assert scheduled_by(scheduled("nightly")) == "nightly"
    assert scheduled_by({"source": {}}) is None
    assert scheduled_by({"schedule": {"name": ""}}) is None
    assert scheduled_by({"schedule": "nightly"}) is None
    assert scheduled_by(None) is None


def test_state_machine_of_an_execution_arn() -> None:
    assert state_machine_of(arn("run-1")) == MACHINE
    with pytest.raises(ConfigurationError):
        state_machine_of("arn:aws:states:us-west-2:123456789012:stateMachine:teacopy")


def test_an_earlier_running_execution_of_the_same_schedule_skips_this_one() -> None:
    sfn = FakeSfn(
        {
            "night-1": (T0, "RUNNING", scheduled("nightly")),
            "night-2": (T0 + timedelta(days=1), "RUNNING", scheduled("nightly")),
        }
    )
    metrics = RecordingMetrics()
    output = skip_if_overlapping(sfn, scheduled("nightly"), arn("night-2"), metrics)
    assert output is not None and output["run_skipped"] is True
    assert (output["schedule"], output["running_execution"]) == ("nightly", "night-1")
    assert "still running" in output["reason"]
    assert metrics.total(SCHEDULED_RUNS_SKIPPED) == 1
    assert sfn.listed == [{"stateMachineArn": MACHINE, "statusFilter": "RUNNING"}]


def test_the_earlier_execution_goes_on_when_a_later_one_runs() -> None:
    sfn = FakeSfn(
        {
            "night-1": (T0, "RUNNING", scheduled("nightly")),
            "night-2": (T0 + timedelta(days=1), "RUNNING", scheduled("nightly")),
        }
    )
    metrics = RecordingMetrics()
    assert skip_if_overlapping(sfn, scheduled("nightly"), arn("night-1"), metrics) is None
    assert metrics.records == []
    assert "night-2" not in sfn.described  # a later run is not even read: it will find this one


def test_another_schedule_or_a_run_by_hand_does_not_skip() -> None:
    sfn = FakeSfn(
        {
            "weekly-1": (T0, "RUNNING", scheduled("weekly")),
            "by-hand": (T0, "RUNNING", {"source": {}, "destination": {}}),
            "garbled": (T0, "RUNNING", "{not json"),
            "night-2": (T0 + timedelta(hours=1), "RUNNING", scheduled("nightly")),
        }
    )
    assert previous_run_still_running(sfn, arn("night-2"), "nightly") is None


def test_two_starts_in_the_same_instant_exactly_one_goes_on() -> None:
    sfn = FakeSfn({"a": (T0, "RUNNING", scheduled("nightly")), "b": (T0, "RUNNING", scheduled("nightly"))})
    assert previous_run_still_running(sfn, arn("a"), "nightly") is None
    assert previous_run_still_running(sfn, arn("b"), "nightly") == "a"


def test_an_execution_started_by_hand_asks_nothing() -> None:
    sfn = FakeSfn({})
    assert skip_if_overlapping(sfn, {"source": {}}, arn("x"), RecordingMetrics()) is None
    assert skip_if_overlapping(sfn, scheduled("nightly"), None, RecordingMetrics()) is None
    assert sfn.described == [] and sfn.listed == []


class FakeS3:
    """The staging bucket: PutObject and GetObject on a dict (NoSuchKey for a missing key), GETs counted."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes | str, **_: Any) -> dict[str, Any]:
        self.objects[Key] = Body.encode() if isinstance(Body, str) else bytes(Body)
        return {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.gets.append(Key)
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


def test_only_the_first_plan_invocation_asks_step_functions() -> None:
    """A continuation of planning (a planning checkpoint exists) makes no ListExecutions or DescribeExecution
    call: the run's first invocation checked (lambdas/handlers/plan.py passes ``checkpoint.exists``)."""
    sfn = FakeSfn({"night-1": (T0, "RUNNING", scheduled("other")), "night-2": (T0 + timedelta(days=1), "RUNNING", {})})
    s3 = FakeS3()

    def continuing() -> bool:
        return checkpoints.exists(s3, "staging", "night-2")

    assert skip_if_overlapping(sfn, scheduled("nightly"), arn("night-2"), RecordingMetrics(), continuing) is None
    first = (len(sfn.listed), len(sfn.described))
    assert first == (1, 2)  # ListExecutions once; DescribeExecution of itself and of the earlier one
    checkpoints.save(s3, "staging", "night-2", checkpoints.PlanProgress(), b"", None)  # planning goes on
    for _invocation in range(3):
        assert skip_if_overlapping(sfn, scheduled("nightly"), arn("night-2"), RecordingMetrics(), continuing) is None
    assert (len(sfn.listed), len(sfn.described)) == first  # no call to Step Functions after the first invocation
    assert s3.gets.count(checkpoints.checkpoint_key("night-2")) == 4  # each invocation looked for the checkpoint
    # a run started by hand does not even look for the checkpoint
    assert skip_if_overlapping(sfn, {"source": {}}, arn("night-2"), RecordingMetrics(), continuing) is None
    assert s3.gets.count(checkpoints.checkpoint_key("night-2")) == 4
