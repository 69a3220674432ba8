"""Stable CloudFormation logical ids of the resources other tools look up (the local engine, the CLI, runbooks).

Each construct applies its own (``override_logical_id``) as it creates the resource, so a finding that
cdk-nag prints with a logical id (``<StagingBucket.Arn>/runs/*``) can be acknowledged by that construct.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

LOGICAL_IDS = {
    "staging_bucket": "StagingBucket",
    "token_secret": "EdlTokenSecret",
    "credentials_cache": "CredentialsCacheSecret",
    "lease_table": "LeaseTable",
    "plan": "PlanFunction",
    "credentials": "CredentialsFunction",
    "copy_batch": "CopyBatchFunction",
    "summarize": "SummarizeFunction",
    "cleanup": "CleanupFunction",
    "state_machine": "CopyStateMachine",
}


def endpoint_cache_logical_id(endpoint_name: str) -> str:
    """The credentials cache of another TEA endpoint, e.g. ``nsidc`` -> ``CredentialsCacheSecretNsidc``."""
    return LOGICAL_IDS["credentials_cache"] + "".join(part.capitalize() for part in endpoint_name.split("-"))


def override_logical_id(construct: Construct, logical_id: str) -> None:
    """Give the CloudFormation resource behind ``construct`` (its default child) a fixed logical id."""
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation default child")
    child.override_logical_id(logical_id)
