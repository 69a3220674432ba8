"""The local engine's IAM evaluation (teacopy_local/iam.py): what an identity policy allows, as AWS decides it."""

from __future__ import annotations

from typing import Any

import pytest

from teacopy_local.iam import (
    RolePolicy,
    Statement,
    function_policies,
    iam_action,
    matches,
    request_context,
    s3_resource,
)


def policy(*statements: dict[str, Any]) -> RolePolicy:
    return RolePolicy("Role", [Statement.from_json(s) for s in statements])


OBJECTS = "arn:aws:s3:::dest/podaac/*"


def test_wildcards_are_iam_wildcards_not_globs() -> None:
    assert matches("arn:aws:s3:::dest/*", "arn:aws:s3:::dest/a/b.nc")
    assert matches("s3:Get*", "s3:getobject", ignore_case=True)
    assert matches("a?c", "abc") and not matches("a?c", "ac")
    assert not matches("arn:aws:s3:::dest/[ab]", "arn:aws:s3:::dest/a")  # [ is literal in IAM
    assert not matches("arn:aws:s3:::dest", "arn:aws:s3:::dest-other")


def test_allow_needs_action_resource_and_conditions() -> None:
    role = policy(
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": OBJECTS},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::dest",
            "Condition": {"StringLike": {"s3:prefix": ["podaac/*"]}},
        },
    )
    assert role.decide("s3:PutObject", "arn:aws:s3:::dest/podaac/x.nc", {}).allowed
    assert not role.decide("s3:PutObject", "arn:aws:s3:::dest/other/x.nc", {}).allowed
    assert not role.decide("s3:GetObject", "arn:aws:s3:::dest/podaac/x.nc", {}).allowed
    assert role.decide("s3:ListBucket", "arn:aws:s3:::dest", {"s3:prefix": ["podaac/2024/"]}).allowed
    assert not role.decide("s3:ListBucket", "arn:aws:s3:::dest", {"s3:prefix": ["other/"]}).allowed
    assert role.decide("s3:ListBucket", "arn:aws:s3:::dest", {}).why == "no statement allows it"


def test_explicit_deny_wins_and_not_elements() -> None:
    role = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": ["s3:GetObject", "s3:ListBucket"], "Resource": "arn:aws:s3:::daac*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject", "NotResource": OBJECTS},
    )
    assert role.decide("s3:GetObject", "arn:aws:s3:::daac-x/k", {}).allowed
    assert role.decide("s3:PutObject", "arn:aws:s3:::daac-x/k", {}).why == "explicit deny"
    assert role.decide("s3:DeleteObject", "arn:aws:s3:::dest/podaac/k", {}).allowed
    assert not role.decide("s3:DeleteObject", "arn:aws:s3:::dest/other/k", {}).allowed


@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        ({"StringEquals": {"s3:prefix": "a/"}}, {"s3:prefix": ["a/"]}, True),
        ({"StringEquals": {"s3:prefix": "a/"}}, {}, False),
        ({"StringEqualsIfExists": {"s3:prefix": "a/"}}, {}, True),
        ({"StringNotLike": {"s3:prefix": ["x*", "y*"]}}, {"s3:prefix": ["a/"]}, True),
        ({"StringNotLike": {"s3:prefix": ["x*", "a*"]}}, {"s3:prefix": ["a/"]}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": ["true"]}, False),
        ({"Null": {"s3:prefix": "true"}}, {}, True),
        ({"Null": {"s3:prefix": "false"}}, {}, False),
        ({"ForAllValues:StringLike": {"s3:prefix": "a*"}}, {"s3:prefix": ["a1", "a2"]}, True),
        ({"ForAnyValue:StringEquals": {"s3:prefix": "a2"}}, {"s3:prefix": ["a1", "a2"]}, True),
    ],
)
def test_condition_operators(condition: dict[str, Any], context: dict[str, list[str]], holds: bool) -> None:
    role = policy({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*", "Condition": condition})
    assert role.decide("s3:ListBucket", "arn:aws:s3:::b", context).allowed == holds


def test_an_unsupported_condition_fails_closed() -> None:
    allow = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:x": "1"}}}
    )
    assert not allow.decide("s3:GetObject", "arn:aws:s3:::b/k", {}).allowed
    deny = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}},
    )
    assert deny.decide("s3:GetObject", "arn:aws:s3:::b/k", {}).why == "explicit deny"


def test_requests_map_to_iam_actions_and_resources() -> None:
    assert iam_action("GetObject") == "s3:GetObject"  # HEAD too: moto names it GetObject
    assert iam_action("HeadBucket") == "s3:ListBucket"
    assert iam_action("ListBucketMultipartUploads") == "s3:ListBucketMultipartUploads"
    assert s3_resource("s3:ListBucket", "b", None) == "arn:aws:s3:::b"
    assert s3_resource("s3:ListBucketMultipartUploads", "b", "") == "arn:aws:s3:::b"
    assert s3_resource("s3:PutObject", "b", "k/ü x") == "arn:aws:s3:::b/k/ü x"
    assert request_context({"prefix": ["runs/"], "list-type": ["2"]}) == {
        "aws:SecureTransport": ["true"],
        "s3:prefix": ["runs/"],
    }


def test_function_policies_come_from_the_template(synth: Any) -> None:
    def resolve(logical_id: str, attribute: str | None) -> str:
        if logical_id.startswith("AWS::"):
            return {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "1"}[logical_id]
        if logical_id == "StagingBucket":
            return "arn:aws:s3:::staging" if attribute == "Arn" else "staging"
        raise KeyError(logical_id)

    roles = function_policies(synth.template, resolve)
    copy = roles["CopyBatchFunction"]
    assert copy.decide("s3:PutObject", "arn:aws:s3:::staging/runs/r/results/b/x.json", {}).allowed
    assert copy.decide("s3:PutObject", "arn:aws:s3:::teacopy-archive/podaac/x.nc", {}).allowed
    assert not copy.decide("s3:PutObject", "arn:aws:s3:::teacopy-archive/elsewhere/x.nc", {}).allowed
    plan = roles["PlanFunction"]
    assert plan.decide("s3:GetObject", "arn:aws:s3:::teacopy-manifests/lists/a.txt", {}).allowed
    assert not plan.decide("s3:DeleteObject", "arn:aws:s3:::staging/runs/r/plan.json", {}).allowed
