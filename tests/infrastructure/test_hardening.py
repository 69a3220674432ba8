"""Template tests of the hardening for real AWS (issue 11): what only a deployed stack would show.

The alarm topic's policy, the Lambda service retries, the pinned AWS SDK in the layer, reserved concurrency,
the deployment region rule, the clean-up rule, the state machine role's trust policy and the ResultWriter's
WriterConfig. The shared ``synth`` fixture (tests/conftest.py) is environment-agnostic and has no alarm e-mail;
``email_synth`` is a second, region-specific synth with ``alarm_email``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import ConfigError, TeacopyConfig
from stacks.constructs.region import RULE_ID
from stacks.teacopy_stack import LOGICAL_IDS, STACK_ID, build_app
from stacks.template_tools import dummy_resolver, resolve_intrinsics
from tests.conftest import SYNTH_CONTEXT_OVERRIDES

ALARM_EMAIL = "ops@example.org"


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="module")
def email_synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("cdk.out-email")
    app = build_app(
        {**SYNTH_CONTEXT_OVERRIDES, "alarm_email": ALARM_EMAIL},
        outdir=str(outdir),
        cfn_validation=False,
        env=cdk.Environment(account="123456789012", region="us-west-2"),
    )
    assembly = app.synth()  # cdk-nag on: raises on an unacknowledged finding
    path = Path(assembly.get_stack_by_name(STACK_ID).template_full_path)
    return dict(json.loads(path.read_text(encoding="utf-8")))


# --- 1. alarm e-mails: CloudWatch may publish to the topic ------------------------------------------------------


def test_alarm_topic_policy_lets_cloudwatch_of_this_account_publish(email_synth: dict[str, Any]) -> None:
    (topic_id,) = resources(email_synth, "AWS::SNS::Topic")
    (policy,) = resources(email_synth, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "AllowCloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": {"Ref": topic_id},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
    # the TLS-only Deny stays
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies and all(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    # and the alarms notify that topic
    for alarm in resources(email_synth, "AWS::CloudWatch::Alarm").values():
        assert {"Ref": topic_id} in alarm["Properties"]["AlarmActions"]


# --- 3. the AWS SDK the functions run with is the pinned one, from the layer ------------------------------------


def test_every_function_gets_the_dependencies_layer(synth: Any) -> None:
    layers = resources(synth.template, "AWS::Lambda::LayerVersion")
    assert len(layers) == 1
    (layer_id,) = layers
    for logical_id, function in resources(synth.template, "AWS::Lambda::Function").items():
        assert function["Properties"]["Layers"] == [{"Ref": layer_id}], logical_id


# --- 5. reserved concurrency --------------------------------------------------------------------------------


def test_copy_batch_reserves_max_concurrency_and_credentials_keeps_a_reserve(synth: Any) -> None:
    functions = synth.template["Resources"]
    copy = functions[LOGICAL_IDS["copy_batch"]]["Properties"]
    credentials = functions[LOGICAL_IDS["credentials"]]["Properties"]
    assert copy["ReservedConcurrentExecutions"] == synth.config.max_concurrency
    assert credentials["ReservedConcurrentExecutions"] == synth.config.credentials_reserved_concurrency > 0
    for key in ("plan", "summarize", "cleanup"):
        assert "ReservedConcurrentExecutions" not in functions[LOGICAL_IDS[key]]["Properties"], key


def test_reserved_concurrency_is_configurable() -> None:
    base = {"tea_endpoint": "https://tea.example", "destinations": ["my-bucket"], "max_concurrency": 200}
    assert TeacopyConfig.from_context(base).copy_reserved == 200
    assert TeacopyConfig.from_context({**base, "copy_reserved_concurrency": 50}).copy_reserved == 50
    assert TeacopyConfig.from_context({**base, "copy_reserved_concurrency": 0}).copy_reserved == 0


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"max_concurrency": 1001}, "above the account's Lambda concurrency limit of 1000"),
        ({"max_concurrency": 3000, "account_concurrency_limit": 2000}, "limit of 2000"),
        ({"max_concurrency": 895}, "Lambda keeps 100 unreserved"),
        ({"max_concurrency": 40, "credentials_reserved_concurrency": 900}, "would reserve 940"),
    ],
)
def test_concurrency_beyond_the_account_limit_is_refused_at_synth(context: dict[str, Any], message: str) -> None:
    base = {"tea_endpoint": "https://tea.example", "destinations": ["my-bucket"]}
    with pytest.raises(ConfigError, match=message):
        TeacopyConfig.from_context({**base, **context})
    # a raised limit (after a quota increase) allows it
    TeacopyConfig.from_context({**base, **context, "account_concurrency_limit": 100_000})


# --- 7. the deployment region -------------------------------------------------------------------------------


def test_the_template_refuses_any_region_but_the_tea_region(synth: Any) -> None:
    rule = synth.template["Rules"][RULE_ID]
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, synth.config.source_region]}
    assert synth.config.source_region == "us-west-2"
    assert "must be deployed in us-west-2" in assertion["AssertDescription"]


def test_a_stack_for_another_region_is_refused_at_synth() -> None:
    with pytest.raises(ConfigError, match=r"the stack's region is eu-west-1; teacopy must be deployed in us-west-2"):
        build_app(SYNTH_CONTEXT_OVERRIDES, nag=False, env=cdk.Environment(region="eu-west-1"))


def test_another_tea_region_is_configurable(email_synth: dict[str, Any]) -> None:
    assert email_synth["Rules"][RULE_ID]["Assertions"][0]["Assert"]["Fn::Equals"][1] == "us-west-2"
    app = build_app(
        {**SYNTH_CONTEXT_OVERRIDES, "source_region": "eu-central-1"},
        nag=False,
        env=cdk.Environment(region="eu-central-1"),
    )
    template = app.synth().get_stack_by_name(STACK_ID).template
    assert template["Rules"][RULE_ID]["Assertions"][0]["Assert"]["Fn::Equals"][1] == "eu-central-1"


# --- 12. least privilege ------------------------------------------------------------------------------------


def test_state_machine_role_trusts_only_step_functions_of_this_account(synth: Any) -> None:
    machine = synth.template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]
    role = synth.template["Resources"][machine["RoleArn"]["Fn::GetAtt"][0]]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "states.amazonaws.com"}
    condition = resolve_intrinsics(statement["Condition"], dummy_resolver(synth.template))
    assert condition == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:states:us-west-2:123456789012:stateMachine:*"},
    }


# --- 8. clean-up when Summarize never runs --------------------------------------------------------------------


def test_status_changes_of_ended_executions_reach_the_cleanup_function_after_the_copy_timeout(synth: Any) -> None:
    template = synth.template
    (rule,) = resources(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "stateMachineArn": [{"Ref": LOGICAL_IDS["state_machine"]}],
            "status": ["ABORTED", "TIMED_OUT", "FAILED"],
        },
    }
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    queue_id = target["Arn"]["Fn::GetAtt"][0]
    queue = template["Resources"][queue_id]["Properties"]
    # a CopyBatch invocation the ended execution started may run copy_timeout_seconds more: clean up after it
    assert queue["DelaySeconds"] == synth.config.copy_timeout_seconds == 900
    assert queue["SqsManagedSseEnabled"] is True
    dlq_id = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert template["Resources"][dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    # only this rule may send to the queue
    (queue_policy,) = [
        p
        for p in resources(template, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in p["Properties"]["Queues"]
    ]
    sends = [s for s in queue_policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert sends == [
        {
            "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
            "Condition": {
                "ArnEquals": {
                    "aws:SourceArn": {"Fn::GetAtt": [next(iter(resources(template, "AWS::Events::Rule"))), "Arn"]}
                }
            },
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
        }
    ]
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["Properties"]["FunctionName"] == {"Ref": LOGICAL_IDS["cleanup"]}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    function = template["Resources"][LOGICAL_IDS["cleanup"]]["Properties"]
    assert function["Handler"] == "lambdas.handlers.cleanup.lambda_handler"
    assert queue["VisibilityTimeout"] >= function["Timeout"]


def granted_to(template: dict[str, Any], function: str) -> dict[str, set[str]]:
    """Action -> resources (intrinsics resolved with dummy values) of every policy of ``function``'s role."""
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    resolve = dummy_resolver(template)
    granted: dict[str, set[str]] = {}
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in resolve_intrinsics(policy["Properties"]["PolicyDocument"]["Statement"], resolve):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in actions:
                granted.setdefault(action, set()).update(resources_)
    return granted


def test_cleanup_may_abort_destination_uploads_and_write_reports_only(synth: Any) -> None:
    template = synth.template
    granted = granted_to(template, LOGICAL_IDS["cleanup"])
    resolve = dummy_resolver(template)
    staging = resolve(LOGICAL_IDS["staging_bucket"], "Arn")
    destinations = {f"arn:aws:s3:::{d.bucket}/{d.prefix}*" for d in synth.config.destinations}
    assert granted["s3:AbortMultipartUpload"] == destinations
    assert granted["s3:PutObject"] == granted["s3:DeleteObject"] == {f"{staging}/runs/*"}
    assert {a.split(":")[0] for a in granted} == {"s3", "sqs", "logs", "xray"}
    assert not any(a.startswith(("ssm:", "secretsmanager:", "states:")) for a in granted)


# --- 11. overlapping scheduled runs -----------------------------------------------------------------------------


def test_plan_may_read_only_its_own_state_machines_executions(synth: Any) -> None:
    """A scheduled run's Plan lists the RUNNING executions of its state machine and reads their input (to skip a
    run whose schedule's previous run still runs); nothing else of Step Functions, no other state machine."""
    template = synth.template
    granted = granted_to(template, LOGICAL_IDS["plan"])
    states = {action: arns for action, arns in granted.items() if action.startswith("states:")}
    machine = dummy_resolver(template)(LOGICAL_IDS["state_machine"], None)
    name = dummy_resolver(template)(LOGICAL_IDS["state_machine"], "Name")
    assert states == {
        "states:ListExecutions": {machine},
        "states:DescribeExecution": {f"arn:aws:states:us-west-2:123456789012:execution:{name}:*"},
    }
    definition = json.dumps(template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]["DefinitionString"])
    assert "PlanningDone" in definition and "RunSkipped" in definition
