"""Schedules: EventBridge Scheduler entries from cdk.json context, with retries, a DLQ and scoped roles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ConfigError, TeacopyConfig

BASE = {"tea_endpoint": "https://tea.example", "destinations": ["my-bucket"]}
JOB = {"source": {"bucket": "daac-bucket", "keys": ["a"]}, "destination": {"bucket": "my-bucket"}}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def schedule_by_name(template: dict[str, Any], name: str) -> dict[str, Any]:
    for resource in resources(template, "AWS::Scheduler::Schedule").values():
        target = resource["Properties"]["Target"]
        if json.loads(target["Input"])["schedule"]["name"] == name:
            props: dict[str, Any] = resource["Properties"]
            return props
    raise AssertionError(f"no schedule {name}")


def test_each_configured_schedule_starts_the_state_machine_with_its_input(synth: Any) -> None:
    assert len(resources(synth.template, "AWS::Scheduler::Schedule")) == 2
    nightly = schedule_by_name(synth.template, "nightly-mur")
    assert nightly["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert nightly["ScheduleExpressionTimezone"] == "UTC"
    assert nightly["State"] == "ENABLED"
    target = nightly["Target"]
    assert target["Arn"] == {"Ref": "CopyStateMachine"}
    assert json.loads(target["Input"]) == {
        "source": {"cmr": {"collection_concept_id": "C1996881146-POCLOUD"}},
        "destination": {"bucket": "my-earthdata-copy", "prefix": "mur/"},
        "schedule": {"name": "nightly-mur", "incremental": True},
    }
    weekly = schedule_by_name(synth.template, "weekly-list")
    assert weekly["State"] == "DISABLED"
    assert weekly["ScheduleExpression"] == "rate(7 days)"


def dead_letter_queue_id(template: dict[str, Any]) -> str:
    """The schedules' dead-letter queue (the stack has other queues: the clean-up's)."""
    target = schedule_by_name(template, "nightly-mur")["Target"]
    queue_id = str(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
    assert queue_id in resources(template, "AWS::SQS::Queue")
    return queue_id


def test_schedules_retry_then_dead_letter(synth: Any) -> None:
    queue_id = dead_letter_queue_id(synth.template)
    for name in ("nightly-mur", "weekly-list"):
        target = schedule_by_name(synth.template, name)["Target"]
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 6 * 3600, "MaximumRetryAttempts": 5}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    queue = synth.template["Resources"][queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600


def _policy_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def test_schedule_role_may_only_start_this_state_machine_and_feed_the_dlq(synth: Any) -> None:
    queue_id = dead_letter_queue_id(synth.template)
    target = schedule_by_name(synth.template, "nightly-mur")["Target"]
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    role = synth.template["Resources"][role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    granted = {
        (a, json.dumps(s["Resource"], sort_keys=True))
        for s in _policy_statements(synth.template, role_id)
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert granted == {
        ("states:StartExecution", json.dumps({"Ref": "CopyStateMachine"})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": [queue_id, "Arn"]}, sort_keys=True)),
    }


def test_incremental_state_is_one_ssm_path_read_by_plan_and_written_by_summarize(synth: Any) -> None:
    def ssm_grants(role_logical_id: str) -> set[str]:
        found = set()
        for statement in _policy_statements(synth.template, role_logical_id):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            for action in actions:
                if action.startswith("ssm:"):
                    found.add(action)
                    assert "parameter/teacopy/teacopy/schedules/*" in json.dumps(statement["Resource"])
        return found

    roles = {
        fn: synth.template["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0]
        for fn in ("PlanFunction", "SummarizeFunction", "CopyBatchFunction", "CredentialsFunction")
    }
    assert ssm_grants(roles["PlanFunction"]) == {"ssm:GetParameter"}
    assert ssm_grants(roles["SummarizeFunction"]) == {"ssm:PutParameter"}
    assert ssm_grants(roles["CopyBatchFunction"]) == set()
    assert ssm_grants(roles["CredentialsFunction"]) == set()
    for fn in ("PlanFunction", "SummarizeFunction"):
        env = synth.template["Resources"][fn]["Properties"]["Environment"]["Variables"]
        assert env["TEACOPY_SCHEDULE_STATE_PREFIX"] == "/teacopy/teacopy/schedules/"


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ("nightly", "must be a list"),
        ([{"name": "bad name", "expression": "rate(1 day)", "input": JOB}], ".name"),
        ([{"name": "n", "expression": "every night", "input": JOB}], ".expression"),
        ([{"name": "n", "expression": "rate(1 day)", "input": "copy"}], ".input"),
        ([{"name": "n", "expression": "rate(1 day)", "input": {**JOB, "schedule": {}}}], "without 'schedule'"),
        ([{"name": "n", "expression": "rate(1 day)", "input": JOB, "when": 1}], "unknown keys"),
        ([{"name": "n", "expression": "rate(1 day)", "input": JOB, "incremental": "yes"}], ".incremental"),
        ([{"name": "n", "expression": "rate(1 day)", "input": JOB, "retry_attempts": 500}], ".retry_attempts"),
        ([{"name": "n", "expression": "rate(1 day)", "input": JOB}] * 2, "unique"),
        ([{"name": "n", "expression": "rate(1 day)", "input": JOB, "incremental": True}], "only a 'cmr' source"),
    ],
)
def test_bad_schedule_config_is_rejected_with_the_key(schedules: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=r"teacopy\.schedules") as info:
        TeacopyConfig.from_context({**BASE, "schedules": schedules})
    assert message in str(info.value)


def test_schedule_inputs_are_validated_at_synth_by_the_plan_rules() -> None:
    from stacks.constructs.schedules import validate_schedule_inputs

    bad_destination = {**JOB, "destination": {"bucket": "not-mine"}}
    config = TeacopyConfig.from_context(
        {**BASE, "schedules": [{"name": "nightly", "expression": "rate(1 day)", "input": bad_destination}]}
    )
    with pytest.raises(ConfigError) as info:
        validate_schedule_inputs(config)
    assert "teacopy.schedules[0].input (nightly): destination.bucket" in str(info.value)
    assert "not an allowed destination" in str(info.value)
    good = TeacopyConfig.from_context(
        {**BASE, "schedules": [{"name": "nightly", "expression": "rate(1 day)", "input": JOB}]}
    )
    validate_schedule_inputs(good)  # no error
