"""IAM least privilege, evaluated on the synthesized template.

A small evaluator answers "may role R do action A on resource X (with s3:prefix P)?" from the
template's Allow statements (wildcards as IAM matches them, StringLike/StringEquals on s3:prefix).
The tests then ask the questions that matter: the copy Lambda writes only to the configured
destinations (and its own staging prefix), reads only the credentials cache and what it writes,
never the DAAC buckets (those are read with TEA's credentials) nor the EDL token; the state machine
role invokes exactly the four functions and touches only its staging prefixes and its own executions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import pytest

from stacks.teacopy_stack import LOGICAL_IDS
from stacks.template_tools import dummy_resolver, resolve_intrinsics

DAAC_OBJECT = "arn:aws:s3:::podaac-ops-cumulus-protected/MUR/granule.nc"
OTHER_BUCKET_OBJECT = "arn:aws:s3:::someone-elses-bucket/data.nc"
# Action classes (S3 object-level writes and reads the stack might grant).
S3_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectAcl", "s3:PutObjectTagging")
S3_READS = ("s3:GetObject", "s3:GetObjectVersion", "s3:ListMultipartUploadParts")
# Actions that have no resource-level scoping in IAM, hence "*" is the only possible resource.
UNSCOPABLE = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Grant:
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, Any] | None

    def allows(self, action: str, resource: str, prefix: str | None) -> bool:
        if not any(fnmatchcase(action.lower(), pattern.lower()) for pattern in self.actions):
            return False
        if not any(fnmatchcase(resource, pattern) for pattern in self.resources):
            return False
        if not self.condition:
            return True
        if prefix is None or set(self.condition) - {"StringLike", "StringEquals"}:
            return False  # an unknown condition, or a request without the key: not granted
        like = as_list(self.condition.get("StringLike", {}).get("s3:prefix", []))
        equal = as_list(self.condition.get("StringEquals", {}).get("s3:prefix", []))
        return any(fnmatchcase(prefix, p) for p in like) or prefix in equal


class Policies:
    """The resolved Allow statements of every role in the template."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.resolve = dummy_resolver(template)
        self.grants: dict[str, list[Grant]] = {}
        self.denies: list[Any] = []
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                statement = resolve_intrinsics(statement, self.resolve)
                if statement.get("Effect") != "Allow":
                    self.denies.append(statement)
                    continue
                grant = Grant(
                    tuple(as_list(statement["Action"])),
                    tuple(as_list(statement["Resource"])),
                    statement.get("Condition"),
                )
                for role in resource["Properties"]["Roles"]:
                    self.grants.setdefault(role["Ref"], []).append(grant)

    def role_of(self, key: str) -> str:
        props = self.template["Resources"][LOGICAL_IDS[key]]["Properties"]
        return str((props.get("Role") or props.get("RoleArn"))["Fn::GetAtt"][0])

    def allowed(self, role: str, action: str, resource: str, prefix: str | None = None) -> bool:
        return any(grant.allows(action, resource, prefix) for grant in self.grants.get(role, []))

    def actions(self, role: str) -> set[str]:
        return {action for grant in self.grants.get(role, []) for action in grant.actions}

    def arn(self, key: str, attribute: str | None = "Arn") -> str:
        return self.resolve(LOGICAL_IDS[key], attribute)


@pytest.fixture(scope="module")
def policies(synth: Any) -> Policies:
    return Policies(synth.template)


def staging(p: Policies, key: str) -> str:
    return f"{p.arn('staging_bucket')}/{key}"


def destinations(synth: Any) -> list[tuple[str, str]]:
    return [(d.bucket, d.prefix) for d in synth.config.destinations]


def test_only_allow_statements_without_wildcard_actions(policies: Policies) -> None:
    assert policies.denies == []
    for role, grants in policies.grants.items():
        for grant in grants:
            assert not any("*" in action for action in grant.actions), (role, grant)
            if "*" in grant.resources:
                assert set(grant.actions) <= UNSCOPABLE, (role, grant)


def test_roles_trust_only_their_service_and_carry_no_managed_policies(synth: Any, policies: Policies) -> None:
    services = {policies.role_of(k): "lambda.amazonaws.com" for k in ("plan", "credentials", "copy_batch", "summarize")}
    services[policies.role_of("state_machine")] = "states.amazonaws.com"
    roles = {k: v for k, v in synth.template["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert set(services) <= set(roles)
    for logical_id, role in roles.items():
        statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert len(statements) == 1 and statements[0]["Action"] == "sts:AssumeRole", logical_id
        principal = statements[0]["Principal"]
        assert list(principal) == ["Service"] and str(principal["Service"]).endswith(".amazonaws.com"), logical_id
        if logical_id in services:
            assert principal["Service"] == services[logical_id], logical_id
        assert "ManagedPolicyArns" not in role["Properties"] and "Policies" not in role["Properties"]


def test_only_the_workflow_and_its_schedules_start_executions_of_this_state_machine(policies: Policies) -> None:
    machine_arn = policies.resolve(LOGICAL_IDS["state_machine"], None)
    other = "arn:aws:states:us-west-2:123456789012:stateMachine:another"
    for role in policies.grants:
        assert not policies.allowed(role, "states:StartExecution", other), role
        for grant in policies.grants[role]:
            if "states:StartExecution" in grant.actions:
                assert set(grant.resources) == {machine_arn}, (role, grant)


def test_copy_lambda_writes_only_to_configured_destinations(synth: Any, policies: Policies) -> None:
    copy = policies.role_of("copy_batch")
    for bucket, prefix in destinations(synth):
        inside = f"arn:aws:s3:::{bucket}/{prefix}granules/a.nc"
        for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject"):
            assert policies.allowed(copy, action, inside), (action, inside)
        assert not policies.allowed(copy, "s3:DeleteObject", inside), "the copy never deletes from a destination"
        if prefix:
            outside = f"arn:aws:s3:::{bucket}/elsewhere/a.nc"
            for action in S3_WRITES + S3_READS:
                assert not policies.allowed(copy, action, outside), (action, outside)
            assert policies.allowed(copy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix=f"{prefix}granules/")
            assert not policies.allowed(copy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix="elsewhere/")
    for resource in (DAAC_OBJECT, OTHER_BUCKET_OBJECT, staging(policies, "map-results/x.json"), staging(policies, "x")):
        for action in S3_WRITES:
            assert not policies.allowed(copy, action, resource), (action, resource)


def test_copy_lambda_reads_only_what_it_needs(synth: Any, policies: Policies) -> None:
    copy = policies.role_of("copy_batch")
    assert policies.allowed(copy, "secretsmanager:GetSecretValue", policies.arn("credentials_cache"))
    assert not policies.allowed(copy, "secretsmanager:GetSecretValue", policies.arn("token_secret"))
    assert not policies.allowed(copy, "secretsmanager:PutSecretValue", policies.arn("credentials_cache"))
    # Source objects are read with TEA's credentials, never with the role.
    for action in S3_READS:
        assert not policies.allowed(copy, action, DAAC_OBJECT)
        assert not policies.allowed(copy, action, OTHER_BUCKET_OBJECT)
    assert policies.allowed(copy, "s3:GetObject", staging(policies, "runs/r1/results/b1/x.json"))
    assert not policies.allowed(copy, "s3:GetObject", staging(policies, "map-results/r1/manifest.json"))
    readable = {f"arn:aws:s3:::{bucket}/{prefix}*" for bucket, prefix in destinations(synth)} | {
        staging(policies, "runs/*")
    }
    for grant in policies.grants[copy]:
        if set(grant.actions) & set(S3_READS):
            assert set(grant.resources) <= readable, grant
    services = {action.split(":")[0] for action in policies.actions(copy)}
    assert services == {"s3", "secretsmanager", "logs", "xray"}


def test_only_the_credentials_lambda_reads_the_edl_token_and_nobody_writes_it(policies: Policies) -> None:
    token = policies.arn("token_secret")
    credentials = policies.role_of("credentials")
    for role in policies.grants:
        assert policies.allowed(role, "secretsmanager:GetSecretValue", token) == (role == credentials), role
        for action in ("secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:DeleteSecret"):
            assert not policies.allowed(role, action, token), role
    lease = policies.arn("lease_table")
    for role in policies.grants:
        assert policies.allowed(role, "dynamodb:PutItem", lease) == (role == credentials), role


def test_no_role_but_copy_writes_destination_objects(synth: Any, policies: Policies) -> None:
    copy, summarize = policies.role_of("copy_batch"), policies.role_of("summarize")
    for bucket, prefix in destinations(synth):
        resource = f"arn:aws:s3:::{bucket}/{prefix}granules/a.nc"
        for role in policies.grants:
            for action in ("s3:PutObject", "s3:DeleteObject"):
                assert policies.allowed(role, action, resource) == (role == copy and action == "s3:PutObject"), (
                    role,
                    action,
                )
            # Summarize may abort uploads a failed run left open, nothing more.
            if role not in (copy, summarize):
                assert not policies.allowed(role, "s3:AbortMultipartUpload", resource), role


def test_plan_and_summarize_stay_in_their_lanes(synth: Any, policies: Policies) -> None:
    plan, summarize = policies.role_of("plan"), policies.role_of("summarize")
    assert policies.allowed(plan, "s3:PutObject", staging(policies, "runs/r1/manifest.json"))
    for bucket in synth.config.readable_buckets:
        assert policies.allowed(plan, "s3:GetObject", f"arn:aws:s3:::{bucket}/lists/keys.txt")
    assert not policies.allowed(plan, "s3:GetObject", OTHER_BUCKET_OBJECT)
    assert not policies.allowed(plan, "secretsmanager:GetSecretValue", policies.arn("token_secret"))
    invocable = {r for g in policies.grants[plan] if "lambda:InvokeFunction" in g.actions for r in g.resources}
    assert invocable <= {policies.arn("credentials")}
    # Summarize reads/writes its staging prefix, aborts leftover uploads, and may keep schedule state in SSM.
    assert {a.split(":")[0] for a in policies.actions(summarize)} <= {"s3", "logs", "xray", "ssm"}
    for grant in policies.grants[summarize]:
        if any(a.startswith("ssm:") for a in grant.actions):
            assert all(r.startswith("arn:aws:ssm:") and ":parameter/" in r for r in grant.resources), grant
    assert not policies.allowed(summarize, "s3:GetObject", DAAC_OBJECT)
    assert not policies.allowed(summarize, "secretsmanager:GetSecretValue", policies.arn("token_secret"))
    # a malformed checkpoint: Summarize lists the object's open uploads to abort them (nothing else to list there)
    for bucket, _prefix in destinations(synth):
        assert policies.allowed(summarize, "s3:ListBucketMultipartUploads", f"arn:aws:s3:::{bucket}")
        assert not policies.allowed(summarize, "s3:ListBucket", f"arn:aws:s3:::{bucket}")


def test_state_machine_role_is_scoped(synth: Any, policies: Policies) -> None:
    machine = policies.role_of("state_machine")
    functions = {policies.arn(k) for k in ("plan", "credentials", "copy_batch", "summarize")}
    invocable = {r for g in policies.grants[machine] if "lambda:InvokeFunction" in g.actions for r in g.resources}
    assert invocable == functions
    assert not policies.allowed(machine, "lambda:InvokeFunction", "arn:aws:lambda:us-west-2:123456789012:function:x")
    assert policies.allowed(machine, "s3:GetObject", staging(policies, "runs/r1/manifest.json"))
    assert policies.allowed(machine, "s3:PutObject", staging(policies, "map-results/r1/manifest.json"))
    assert not policies.allowed(machine, "s3:PutObject", staging(policies, "runs/r1/report.json"))
    for bucket, prefix in destinations(synth):
        for action in S3_WRITES + S3_READS:
            assert not policies.allowed(machine, action, f"arn:aws:s3:::{bucket}/{prefix}a.nc"), action
    services = {a.split(":")[0] for a in policies.actions(machine)}
    assert services == {"lambda", "s3", "states", "logs", "xray"}
    machine_arn = policies.resolve(LOGICAL_IDS["state_machine"], None)
    for grant in policies.grants[machine]:
        if any(a.startswith("states:") for a in grant.actions):
            assert all(machine_arn in r or r == machine_arn for r in grant.resources), grant
    assert not policies.allowed(
        machine, "states:StartExecution", "arn:aws:states:us-west-2:123456789012:stateMachine:another"
    )
