"""The deployment region rule: teacopy runs only where TEA's credentials work (``source_region``, us-west-2).

A DAAC's TEA hands out credentials that S3 accepts only for requests made from its own region (research.md), so
a stack deployed anywhere else would start runs in which every object fails. Two guards, because the region is
not always known when the template is synthesized:

- **at synth**, when the stack's environment names a region (``build_app(env=...)``, or a stack given
  ``env=Environment(region=...)``): a region other than ``source_region`` is a ``ConfigError`` naming both;
- **at deploy**, always: the template carries a CloudFormation rule asserting ``AWS::Region`` equals
  ``source_region``. ``cdk deploy`` of the environment-agnostic stack into another region (a profile or
  ``AWS_REGION`` pointing elsewhere) then fails while creating the change set, before any resource exists,
  with the rule's message. (``cdk synth`` itself cannot tell: the CDK CLI passes us-east-1 to the app when no
  region is configured at all.)
"""

from __future__ import annotations

from aws_cdk import Aws, CfnRule, CfnRuleAssertion, Fn, Stack, Token
from constructs import Construct

from stacks.config import ConfigError

RULE_ID = "DeployRegion"


def region_message(required: str) -> str:
    return (
        f"teacopy must be deployed in {required}: TEA credentials are accepted only from the DAAC buckets' region "
        "(cdk.json teacopy.source_region). Deploy with AWS_REGION=" + required + " (and AWS_DEFAULT_REGION) or a "
        "profile in that region."
    )


class RequiredRegion(Construct):
    """Refuse any region but ``region``: at synth when the stack's region is known, by a CloudFormation rule always."""

    def __init__(self, scope: Construct, construct_id: str, *, region: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if not Token.is_unresolved(stack.region) and stack.region != region:
            raise ConfigError(f"the stack's region is {stack.region}; " + region_message(region))
        self.rule = CfnRule(
            stack,
            RULE_ID,
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_equals(Aws.REGION, region),
                    assert_description=region_message(region),
                )
            ],
        )
