"""Assertions on the synthesized TeacopyStack template (one in-process synth per session, cdk-nag on)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.contracts import env_names
from lambdas.contracts.settings import CleanupSettings, CopySettings, CredentialSettings, PlanSettings, SummarySettings
from stacks import memory
from stacks.config import TeacopyConfig
from stacks.teacopy_stack import LOGICAL_IDS
from stacks.template_tools import dummy_resolver, resolve_intrinsics, state_machine_definition

# cfn-lint rules ignored, with the reason:
#   W3005: CDK adds an explicit DependsOn on a role next to the GetAtt of its ARN (Lambda functions,
#          the state machine). Redundant and harmless; not something the stack can switch off.
CFN_LINT_IGNORED = ["W3005"]

FUNCTIONS: dict[str, tuple[str, Any]] = {
    "plan": ("lambdas.handlers.plan.lambda_handler", PlanSettings),
    "credentials": ("lambdas.handlers.credentials.lambda_handler", CredentialSettings),
    "copy_batch": ("lambdas.handlers.copy_batch.lambda_handler", CopySettings),
    "summarize": ("lambdas.handlers.summarize.lambda_handler", SummarySettings),
    "cleanup": ("lambdas.handlers.cleanup.lambda_handler", CleanupSettings),
}
EXPECTED_ENV = {
    "plan": {
        env_names.STAGING_BUCKET,
        env_names.DESTINATIONS,
        env_names.MANIFEST_BUCKETS,
        env_names.BATCH_MAX_OBJECTS,
        env_names.BATCH_MAX_BYTES,
        env_names.MAX_INLINE_KEYS,
        env_names.CREDENTIALS_SECRET_ID,
        env_names.SOURCE_REGION,
        env_names.CMR_URL,
        env_names.CMR_PAGE_SIZE,
        env_names.CREDENTIALS_FUNCTION,
        env_names.SCHEDULE_STATE_PREFIX,  # the test synth has an incremental schedule
        env_names.TEA_ENDPOINTS,  # ... and a second TEA endpoint
        env_names.BUCKET_ENDPOINTS,
        env_names.TEA_ENDPOINT,  # to match a CMR collection's DirectDistributionInformation
        env_names.PLAN_BUDGET_SECONDS,
    },
    "credentials": {
        env_names.STAGING_BUCKET,
        env_names.TOKEN_SECRET_ID,
        env_names.CREDENTIALS_SECRET_ID,
        env_names.LOCK_TABLE,
        env_names.TEA_ENDPOINT,
        env_names.APP_NAME,
        env_names.SAFETY_MARGIN_SECONDS,
        env_names.TEA_TIMEOUT_SECONDS,
        env_names.TEA_ENDPOINTS,
    },
    "copy_batch": {
        env_names.STAGING_BUCKET,
        env_names.CREDENTIALS_SECRET_ID,
        env_names.SOURCE_REGION,
        env_names.SAFETY_MARGIN_SECONDS,
        env_names.PART_SIZE_BYTES,
        env_names.MULTIPART_THRESHOLD_BYTES,
        env_names.INFLIGHT_PARTS,
        env_names.OBJECT_CONCURRENCY,
        env_names.DEADLINE_RESERVE_SECONDS,
        env_names.TEA_ENDPOINTS,
    },
    "summarize": {
        env_names.STAGING_BUCKET,
        env_names.MAX_FAILED_PERCENT,
        env_names.SCHEDULE_STATE_PREFIX,
        env_names.SUMMARY_BUDGET_SECONDS,
        env_names.PART_SIZE_BYTES,
        env_names.MULTIPART_THRESHOLD_BYTES,
        env_names.BATCH_MAX_OBJECTS,
        env_names.BATCH_MAX_BYTES,
        env_names.COPY_MEMORY_MB,
        env_names.SOURCE_REGION,
    },
    "cleanup": {env_names.STAGING_BUCKET},
}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def resolved(synth: Any, node: Any) -> Any:
    return resolve_intrinsics(node, dummy_resolver(synth.template))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement of the stack (resolved), with the logical id of the role it is attached to."""
    for policy in resources(synth.template, "AWS::IAM::Policy").values():
        for role in policy["Properties"].get("Roles", []):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                yield role["Ref"], resolved(synth, statement)
    for logical_id, role in resources(synth.template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield logical_id, resolved(synth, statement)


def environment_of(synth: Any, key: str) -> dict[str, str]:
    """The resolved environment variables of one function (``key`` as in LOGICAL_IDS)."""
    return resolved(synth, synth.template["Resources"][LOGICAL_IDS[key]]["Properties"]["Environment"]["Variables"])


def role_of(synth: Any, key: str) -> str:
    return synth.template["Resources"][LOGICAL_IDS[key]]["Properties"]["Role"]["Fn::GetAtt"][0]


def staging_arn(synth: Any, suffix: str = "") -> str:
    return dummy_resolver(synth.template)(LOGICAL_IDS["staging_bucket"], "Arn") + suffix


def destination_arns(synth: Any) -> set[str]:
    return {f"arn:aws:s3:::{d.bucket}/{d.prefix}*" for d in synth.config.destinations}


# --- Lambda -------------------------------------------------------------------------------------------


def test_every_function_python312_arm64_json_logs_tracing(synth: Any) -> None:
    functions = resources(synth.template, "AWS::Lambda::Function")
    assert set(functions) == {LOGICAL_IDS[key] for key in FUNCTIONS}
    log_groups = resources(synth.template, "AWS::Logs::LogGroup")
    for key, (handler, _) in FUNCTIONS.items():
        props = functions[LOGICAL_IDS[key]]["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == handler
        assert props["TracingConfig"] == {"Mode": "Active"}
        logging = props["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"
        assert logging["ApplicationLogLevel"] == "INFO"
        log_group = log_groups[logging["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
    copy = functions[LOGICAL_IDS["copy_batch"]]["Properties"]
    assert copy["MemorySize"] == synth.config.copy_memory_mb
    assert copy["Timeout"] == synth.config.copy_timeout_seconds
    assert functions[LOGICAL_IDS["summarize"]]["Properties"]["Timeout"] == 900


def test_plan_credentials_summarize_memory_and_plans_tmp_are_the_measured_figures(synth: Any) -> None:
    functions = resources(synth.template, "AWS::Lambda::Function")
    memory_of = {key: functions[LOGICAL_IDS[key]]["Properties"]["MemorySize"] for key in FUNCTIONS}
    assert memory_of["plan"] == memory.PLAN_MB and memory_of["summarize"] == memory.SUMMARIZE_MB
    assert memory_of["credentials"] == memory.CREDENTIALS_MB
    plan = functions[LOGICAL_IDS["plan"]]["Properties"]
    assert plan["EphemeralStorage"] == {"Size": memory.PLAN_TMP_MB}  # the seen-keys file of a 10M-object plan
    assert all("EphemeralStorage" not in functions[LOGICAL_IDS[k]]["Properties"] for k in FUNCTIONS if k != "plan")


def test_function_roles_have_no_managed_policies(synth: Any) -> None:
    for key in FUNCTIONS:
        role = synth.template["Resources"][role_of(synth, key)]
        assert "ManagedPolicyArns" not in role["Properties"], key


@pytest.mark.parametrize("key", sorted(FUNCTIONS))
def test_function_environment_matches_settings(synth: Any, key: str) -> None:
    """Exactly the variables the Lambda's settings read, and the settings accept them."""
    environment = environment_of(synth, key)
    assert set(environment) == EXPECTED_ENV[key]
    settings = FUNCTIONS[key][1].from_env(environment)
    assert settings.staging_bucket == resolved(synth, {"Ref": LOGICAL_IDS["staging_bucket"]})


def test_plan_and_copy_environment_values(synth: Any) -> None:
    cfg = synth.config
    plan = environment_of(synth, "plan")
    destinations = [{"bucket": d.bucket, "prefix": d.prefix} for d in cfg.destinations]
    assert json.loads(plan[env_names.DESTINATIONS]) == destinations
    assert json.loads(plan[env_names.MANIFEST_BUCKETS]) == list(cfg.readable_buckets)
    copy = CopySettings.from_env(environment_of(synth, "copy_batch"))
    assert copy.part_size_bytes == cfg.part_size_mb * 1024**2
    assert copy.multipart_threshold_bytes == cfg.multipart_threshold_mb * 1024**2
    assert copy.deadline_reserve_seconds == 60
    assert environment_of(synth, "summarize")[env_names.MAX_FAILED_PERCENT] == str(cfg.max_failed_percent)
    # Summarize prices the run with the copy settings the stack deploys (lambdas/reporting/cost.py)
    summary = SummarySettings.from_env(environment_of(synth, "summarize"))
    assert (summary.part_size_bytes, summary.multipart_threshold_bytes) == (
        copy.part_size_bytes,
        copy.multipart_threshold_bytes,
    )
    assert (summary.batch_max_objects, summary.batch_max_bytes) == (cfg.batch_max_objects, cfg.batch_max_bytes)
    assert (summary.copy_memory_mb, summary.source_region) == (cfg.copy_memory_mb, cfg.source_region)


def test_summarize_settings_defaults_are_the_stacks() -> None:
    """Without the environment (tests, the local engine's defaults), Summarize prices what the stack deploys."""
    fields = TeacopyConfig.__dataclass_fields__
    defaults: dict[str, Any] = {name: fields[name].default for name in fields}
    summary = SummarySettings("staging", 0)
    assert summary.part_size_bytes == defaults["part_size_mb"] * 1024**2
    assert summary.multipart_threshold_bytes == defaults["multipart_threshold_mb"] * 1024**2
    assert summary.batch_max_objects == defaults["batch_max_objects"]
    assert summary.batch_max_bytes == defaults["batch_max_bytes"]
    assert summary.copy_memory_mb == defaults["copy_memory_mb"]
    assert summary.source_region == defaults["source_region"]


# --- the state machine ----------------------------------------------------------------------------------


def test_state_machine_standard_logged_without_execution_data_and_traced(synth: Any) -> None:
    machine = synth.template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]
    assert machine.get("StateMachineType", "STANDARD") == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    logging = machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False
    log_group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synth.template["Resources"][log_group]["Type"] == "AWS::Logs::LogGroup"


def test_distributed_map_reads_staged_manifest(synth: Any) -> None:
    definition = state_machine_definition(synth.template)
    copy_objects = definition["States"]["CopyObjects"]
    assert copy_objects["Type"] == "Map"
    assert copy_objects["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = copy_objects["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {
        "Bucket": resolved(synth, {"Ref": LOGICAL_IDS["staging_bucket"]}),
        "Key.$": "$.manifest.key",
    }
    assert copy_objects["ItemSelector"] == {
        "batch.$": "$$.Map.Item.Value",
        "run_id.$": "$.run_id",
        "destination.$": "$.destination",
        "options.$": "$.options",
        "credentials.$": "$.credentials",
        "refresh_round": 0,
    }
    assert copy_objects["MaxConcurrency"] == synth.config.max_concurrency
    assert copy_objects["Label"] == "CopyBatches"
    assert copy_objects["ResultPath"] == "$.map"
    assert copy_objects["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": resolved(synth, {"Ref": LOGICAL_IDS["staging_bucket"]}), "Prefix": "map-results"},
        # each child's output only (no input, no execution metadata); the child outputs its CopyBatch result
        "WriterConfig": {"OutputType": "JSON", "Transformation": "COMPACT"},
    }
    if synth.config.tolerated_failure_percentage == 0:
        assert "ToleratedFailurePercentage" not in copy_objects
    else:
        assert copy_objects["ToleratedFailurePercentage"] == synth.config.tolerated_failure_percentage


def test_no_item_batcher_anywhere(synth: Any) -> None:
    """The manifest is pre-batched by Plan; an ItemBatcher would also break the local engine (moto)."""
    raw = json.dumps(synth.template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]["DefinitionString"])
    assert "ItemBatcher" not in raw


def test_top_level_flow(synth: Any) -> None:
    states = state_machine_definition(synth.template)["States"]
    assert state_machine_definition(synth.template)["StartAt"] == "Plan"
    # every Plan invocation reads the execution input; its answer is the state (a continuation, or the plan)
    assert states["Plan"]["Parameters"] == {
        "input.$": "$$.Execution.Input",
        "run_id.$": "$$.Execution.Name",
        "execution_arn.$": "$$.Execution.Id",  # a scheduled run checks its schedule's previous run has ended
    }
    assert states["Plan"]["ResultPath"] == "$"
    assert states["Plan"]["Next"] == "PlanningDone"
    # Plan ends a scheduled run whose schedule's previous run still runs ({"run_skipped": true, ...} -> RunSkipped)
    # and loops while its answer carries a continuation
    assert states["PlanningDone"] == {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.run_skipped", "IsPresent": True, "Next": "RunSkipped"},
            {"Variable": "$.continuation", "IsPresent": True, "Next": "Plan"},
        ],
        "Default": "FetchCredentials",
    }
    assert states["RunSkipped"] == {"Type": "Succeed"}
    assert states["FetchCredentials"]["Parameters"] == {
        "action": "fetch",
        "run_id.$": "$.run_id",
        "endpoints.$": "$.endpoints",  # every TEA endpoint the plan's batches read from
    }
    assert states["FetchCredentials"]["ResultPath"] == "$.credentials"
    assert states["FetchCredentials"]["Next"] == "CopyObjects"
    assert states["CopyObjects"]["Next"] == "MapSucceeded"
    assert states["CopyObjects"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.map_error", "Next": "MapFailed"}
    ]
    assert states["MapSucceeded"] == {
        "Type": "Pass",
        "Result": {"map_failed": False},
        "ResultPath": "$.outcome",
        "Next": "Summarize",
    }
    assert states["MapFailed"]["Parameters"] == {
        "map_failed": True,
        "error.$": "$.map_error.Error",
        "cause.$": "$.map_error.Cause",
    }
    assert states["MapFailed"]["Next"] == "Summarize"
    assert states["Summarize"]["Parameters"] == {
        "run_id.$": "$.run_id",
        "outcome.$": "$.outcome",
        "execution_started.$": "$$.Execution.StartTime",
        "execution_arn.$": "$$.Execution.Id",
    }
    assert states["Summarize"]["Next"] == "SummaryDone"
    assert states["SummaryDone"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.continuation", "IsPresent": True, "Next": "Summarize"}],
        "Default": "RunSummarized",
    }
    assert states["RunSummarized"] == {"Type": "Succeed"}


def test_credentials_expired_routes_to_refresh_and_back(synth: Any) -> None:
    child = state_machine_definition(synth.template)["States"]["CopyObjects"]["ItemProcessor"]
    states = child["States"]
    assert child["StartAt"] == "CopyBatch"
    assert "Parameters" not in states["CopyBatch"]  # the whole state is the event
    assert states["CopyBatch"]["ResultPath"] == "$.result"
    assert states["CopyBatch"]["Catch"] == [
        {"ErrorEquals": ["CredentialsExpired"], "ResultPath": "$.expired", "Next": "CountRefreshRound"}
    ]
    assert states["CountRefreshRound"]["Type"] == "Pass"
    assert states["CountRefreshRound"]["Parameters"] == {
        "run_id.$": "$.run_id",
        "batch.$": "$.batch",
        "destination.$": "$.destination",
        "options.$": "$.options",
        "credentials.$": "$.credentials",
        "refresh_round.$": "States.MathAdd($.refresh_round, 1)",
    }
    assert states["CountRefreshRound"]["Next"] == "CanRefresh"
    assert states["CanRefresh"]["Default"] == "RefreshCredentials"
    refresh = states["RefreshCredentials"]
    assert refresh["Resource"] == resolved(synth, {"Fn::GetAtt": [LOGICAL_IDS["credentials"], "Arn"]})
    assert refresh["Parameters"] == {
        "action": "refresh",
        "run_id.$": "$.run_id",
        "endpoint.$": "$.batch.endpoint",
        "credentials.$": "$.credentials",
    }
    assert refresh["ResultPath"] == "$.credentials"
    assert refresh["Next"] == "CopyBatch"


def test_refresh_loop_is_bounded_by_config(synth: Any) -> None:
    states = state_machine_definition(synth.template)["States"]["CopyObjects"]["ItemProcessor"]["States"]
    assert states["CanRefresh"]["Choices"] == [
        {
            "Variable": "$.refresh_round",
            "NumericGreaterThan": synth.config.max_refresh_rounds,
            "Next": "RefreshRoundsExhausted",
        }
    ]
    fail = states["RefreshRoundsExhausted"]
    assert fail["Type"] == "Fail"
    assert fail["Error"] == "CredentialsRefreshExhausted"
    assert fail["Cause"] == (
        f"credentials expired {synth.config.max_refresh_rounds} times for this batch; check TEA and the clock"
    )


def test_batch_continues_until_done(synth: Any) -> None:
    states = state_machine_definition(synth.template)["States"]["CopyObjects"]["ItemProcessor"]["States"]
    assert states["CopyBatch"]["Next"] == "BatchDone"
    assert states["BatchDone"] == {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.result.done", "BooleanEquals": True, "Next": "BatchCopied"},
            {
                "And": [
                    {"Variable": "$.result.refresh", "IsPresent": True},
                    {"Variable": "$.result.refresh", "BooleanEquals": True},
                ],
                "Next": "ResetRefreshRound",
            },
        ],
        "Default": "CopyBatch",
    }
    # the child's output is the CopyBatch result, not the batch it was given (map-results/ stays small)
    assert states["BatchCopied"] == {"Type": "Succeed", "OutputPath": "$.result"}


def test_refresh_after_progress_resets_the_round_budget(synth: Any) -> None:
    states = state_machine_definition(synth.template)["States"]["CopyObjects"]["ItemProcessor"]["States"]
    reset = states["ResetRefreshRound"]
    assert reset["Type"] == "Pass" and reset["Next"] == "RefreshCredentials"
    assert reset["Parameters"]["refresh_round"] == 0
    counted = states["CountRefreshRound"]["Parameters"]
    assert counted["refresh_round.$"] == "States.MathAdd($.refresh_round, 1)"
    same_event = {k: v for k, v in counted.items() if k != "refresh_round.$"}
    assert reset["Parameters"] == {**same_event, "refresh_round": 0}


# --- IAM ------------------------------------------------------------------------------------------------


def test_no_wildcard_actions_and_no_deny_less_admin(synth: Any) -> None:
    for role, statement in statements(synth):
        for action in as_list(statement["Action"]):
            assert "*" not in action, (role, statement)
        assert "NotAction" not in statement and "NotResource" not in statement


def test_put_object_only_to_staging_or_configured_destinations(synth: Any) -> None:
    allowed = destination_arns(synth) | {staging_arn(synth, "/runs/*"), staging_arn(synth, "/map-results/*")}
    seen = set()
    for role, statement in statements(synth):
        if "s3:PutObject" in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                assert resource in allowed, (role, resource)
                seen.add(resource)
    assert destination_arns(synth) <= seen


def test_copy_role_writes_only_to_destinations_and_its_staging_prefix(synth: Any) -> None:
    copy_role = role_of(synth, "copy_batch")
    writes: set[str] = set()
    lists: dict[str, Any] = {}
    for role, statement in statements(synth):
        if role != copy_role:
            continue
        actions = as_list(statement["Action"])
        if {"s3:PutObject", "s3:AbortMultipartUpload"} & set(actions):
            writes.update(as_list(statement["Resource"]))
        if "s3:ListBucket" in actions:
            for resource in as_list(statement["Resource"]):
                lists[resource] = statement.get("Condition")
    assert writes == destination_arns(synth) | {staging_arn(synth, "/runs/*")}
    assert lists[staging_arn(synth)] == {"StringLike": {"s3:prefix": ["runs/*"]}}
    for destination in synth.config.destinations:
        # no s3:prefix condition, even for a prefixed destination: a HEAD carries no s3:prefix, and without
        # s3:ListBucket S3 answers a missing key with 403 instead of 404
        assert lists[f"arn:aws:s3:::{destination.bucket}"] is None


def test_only_the_credentials_role_touches_the_token_and_lease(synth: Any) -> None:
    token = dummy_resolver(synth.template)(LOGICAL_IDS["token_secret"], None)
    table = dummy_resolver(synth.template)(LOGICAL_IDS["lease_table"], "Arn")
    credentials_role = role_of(synth, "credentials")
    for role, statement in statements(synth):
        touched = set(as_list(statement["Resource"])) & {token, table}
        if touched:
            assert role == credentials_role, (role, statement)
        if token in touched:
            assert as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"]


def test_state_machine_role_is_scoped_to_staging_prefixes(synth: Any) -> None:
    machine_role = synth.template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    for role, statement in statements(synth):
        if role != machine_role:
            continue
        for resource in as_list(statement["Resource"]):
            if resource.startswith("arn:aws:s3:::"):
                assert resource in {staging_arn(synth, "/runs/*"), staging_arn(synth, "/map-results/*")}
            if any(a.startswith("lambda:") for a in as_list(statement["Action"])):
                assert not resource.endswith(":*")


def test_state_machine_role_invokes_the_four_functions_and_runs_its_map(synth: Any) -> None:
    resolve = dummy_resolver(synth.template)
    machine = LOGICAL_IDS["state_machine"]
    machine_role = synth.template["Resources"][machine]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    granted: dict[str, set[str]] = {}
    for role, statement in statements(synth):
        if role == machine_role:
            for action in as_list(statement["Action"]):
                granted.setdefault(action, set()).update(as_list(statement["Resource"]))
    workflow_functions = set(FUNCTIONS) - {"cleanup"}  # the clean-up runs on EventBridge events, not in the workflow
    assert granted["lambda:InvokeFunction"] == {resolve(LOGICAL_IDS[key], "Arn") for key in workflow_functions}
    assert granted["states:StartExecution"] == {resolve(machine, None)}
    executions = f"arn:aws:states:us-west-2:123456789012:execution:{resolve(machine, 'Name')}"
    assert granted["states:DescribeExecution"] == granted["states:StopExecution"] == {f"{executions}:*"}
    assert granted["states:RedriveExecution"] == {f"{executions}/CopyBatches:*"}
    assert granted["s3:GetObject"] == {staging_arn(synth, "/runs/*"), staging_arn(synth, "/map-results/*")}
    # The log-delivery permissions are checked at CreateStateMachine: the policy must come first.
    depends_on = synth.template["Resources"][machine].get("DependsOn", [])
    policies = {
        logical_id
        for logical_id, policy in resources(synth.template, "AWS::IAM::Policy").items()
        if {"Ref": machine_role} in policy["Properties"]["Roles"]
        and any(
            "logs:CreateLogDelivery" in as_list(s["Action"])
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    }
    assert policies and policies <= set(depends_on)


# --- storage --------------------------------------------------------------------------------------------


def test_staging_bucket_private_tls_only_with_lifecycle(synth: Any) -> None:
    bucket = synth.template["Resources"][LOGICAL_IDS["staging_bucket"]]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = props["LifecycleConfiguration"]["Rules"]
    days = synth.config.staging_retention_days
    by_prefix = {rule.get("Prefix"): rule for rule in rules}
    assert by_prefix["runs/"]["ExpirationInDays"] == days
    assert by_prefix["map-results/"]["ExpirationInDays"] == days
    assert by_prefix[None]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert all(rule["Status"] == "Enabled" for rule in rules)

    (policy,) = [
        p
        for p in resources(synth.template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": LOGICAL_IDS["staging_bucket"]}
    ]
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Action"] == "s3:*" and deny["Principal"] == {"AWS": "*"}


def test_secrets_and_lease_table(synth: Any) -> None:
    token = synth.template["Resources"][LOGICAL_IDS["token_secret"]]["Properties"]
    assert token["Name"] == synth.config.token_secret_name
    assert "put-secret-value" in token["Description"]
    cache = synth.template["Resources"][LOGICAL_IDS["credentials_cache"]]["Properties"]
    assert "Name" not in cache
    assert "GenerateSecretString" in cache
    table = synth.template["Resources"][LOGICAL_IDS["lease_table"]]
    assert table["DeletionPolicy"] == "Delete"
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "lease_id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "lease_id", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_outputs(synth: Any) -> None:
    outputs = synth.template["Outputs"]
    assert {"StateMachineArn", "StagingBucketName", "TokenSecretName", "CredentialsCacheSecretArn"} <= set(outputs)
    assert outputs["TokenSecretName"]["Value"] == synth.config.token_secret_name


# --- static checks ---------------------------------------------------------------------------------------


def test_cdk_nag_reports_no_findings(synth: Any) -> None:
    """The synth fixture would have raised on an unacknowledged finding; the report must be clean too."""
    report = json.loads((synth.outdir / "validation-report.json").read_text(encoding="utf-8"))
    failing = [
        (plugin["pluginName"], violation["ruleName"])
        for plugin in report["pluginReports"]
        for violation in plugin.get("violations", [])
    ]
    assert failing == []


def test_cfn_lint_passes(synth: Any) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # the venv's console script
    assert cfn_lint.exists(), f"cfn-lint is not installed next to {sys.executable} (requirements-dev.txt)"
    result = subprocess.run(  # noqa: S603 - the venv's cfn-lint on our template
        [str(cfn_lint), "--ignore-checks", *CFN_LINT_IGNORED, "--", str(synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_copy_settings_defaults_are_the_deployed_defaults() -> None:
    """Local runs and `make bench` (CopySettings from a bare environment) measure what the stack deploys."""
    from stacks.config import TeacopyConfig

    defaults = TeacopyConfig(tea_endpoint="https://tea.example", destinations=())
    bare = CopySettings.from_env({env_names.STAGING_BUCKET: "s", env_names.CREDENTIALS_SECRET_ID: "c"})
    assert bare.part_size_bytes == defaults.part_size_mb * 1024**2
    assert bare.multipart_threshold_bytes == defaults.multipart_threshold_mb * 1024**2
    assert bare.inflight_parts == defaults.inflight_parts
    assert bare.object_concurrency == defaults.object_concurrency
