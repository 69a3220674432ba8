"""The synthesized roles' IAM policies, evaluated for the local engine's S3 requests.

Each Lambda function of the template has a role; the role's policies (``AWS::IAM::Policy`` resources
attached to it and the role's inline ``Policies``) are read from the template, their intrinsics resolved
to the local names, and every S3 request a function makes is decided as IAM would for an identity
policy: an explicit Deny wins, else an Allow must match the action, the resource and every condition.

Supported, as the stack uses them and a little beyond: ``Action``/``NotAction`` and ``Resource``/
``NotResource`` with ``*`` and ``?`` wildcards; condition operators ``String(Not)Equals``,
``String(Not)Like``, ``StringEqualsIgnoreCase``, ``Bool``, ``Null``, each with ``IfExists``, and the
``ForAnyValue:``/``ForAllValues:`` set prefixes. A condition this module cannot evaluate makes an Allow
not apply and a Deny apply (fail closed). Managed policies (``ManagedPolicyArns``) are not read: the
stack attaches none that grants S3, so a grant there would not count (stricter than AWS, never laxer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from stacks.template_tools import TemplateError, resolve_intrinsics

Resolver = Callable[[str, str | None], str]
S3_BUCKET_ACTIONS = frozenset(
    {"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions", "s3:GetBucketLocation"}
)
# moto's name for an S3 request (``S3Response.data["Action"]``) -> the IAM action S3 authorizes it as
MOTO_TO_IAM = {"HeadBucket": "s3:ListBucket", "ListObjects": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket"}


def iam_action(moto_action: str) -> str:
    """The IAM action of an S3 request moto names ``moto_action`` (e.g. ``GetObject`` for a HEAD)."""
    return MOTO_TO_IAM.get(moto_action, f"s3:{moto_action}")


def s3_resource(action: str, bucket: str, key: str | None) -> str:
    """The ARN an S3 action is authorized on: the bucket for bucket actions, else the object."""
    if action in S3_BUCKET_ACTIONS or not key:
        return f"arn:aws:s3:::{bucket}"
    return f"arn:aws:s3:::{bucket}/{key}"


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters, ? one character; nothing else is special (not a shell glob)
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_pattern(glob, ignore_case).match(value))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


class UnsupportedCondition(ValueError):
    """A condition operator this evaluator does not know (the statement is decided fail-closed)."""


def _string_test(operator: str) -> Callable[[str, str], bool] | None:
    tests: dict[str, Callable[[str, str], bool]] = {
        "StringEquals": lambda want, got: want == got,
        "StringNotEquals": lambda want, got: want != got,
        "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
        "StringNotEqualsIgnoreCase": lambda want, got: want.lower() != got.lower(),
        "StringLike": lambda want, got: matches(want, got),
        "StringNotLike": lambda want, got: not matches(want, got),
        "ArnEquals": lambda want, got: want == got,
        "ArnLike": lambda want, got: matches(want, got),
        "Bool": lambda want, got: want.lower() == got.lower(),
    }
    return tests.get(operator)


def condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, list[str]]) -> bool:
    """One condition (operator, key, values) against the request context (key -> its values)."""
    set_prefix, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    present = key in context
    if name == "Null":
        return (str(_as_list(wanted)[0]).lower() == "true") != present
    test = _string_test(name)
    if test is None or set_prefix not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedCondition(operator)
    if not present:
        return if_exists or (set_prefix == "ForAllValues")
    values = context[key]
    wants = [str(w) for w in _as_list(wanted)]
    negated = name.startswith("StringNot") or name.startswith("ArnNot")

    def one(got: str) -> bool:
        return all(test(w, got) for w in wants) if negated else any(test(w, got) for w in wants)

    if set_prefix == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


@dataclass(frozen=True)
class Statement:
    effect: str  # Allow | Deny
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Statement:
        def strings(name: str) -> tuple[str, ...]:
            return tuple(str(v) for v in _as_list(data[name])) if name in data else ()

        return cls(
            effect=str(data.get("Effect", "Allow")),
            actions=strings("Action"),
            not_actions=strings("NotAction"),
            resources=strings("Resource"),
            not_resources=strings("NotResource"),
            conditions=dict(data.get("Condition") or {}),
        )

    def covers(self, action: str, resource: str) -> bool:
        if self.actions and not any(matches(a, action, ignore_case=True) for a in self.actions):
            return False
        if self.not_actions and any(matches(a, action, ignore_case=True) for a in self.not_actions):
            return False
        if self.resources and not any(matches(r, resource) for r in self.resources):
            return False
        return not (self.not_resources and any(matches(r, resource) for r in self.not_resources))

    def conditions_hold(self, context: Mapping[str, list[str]]) -> bool:
        """Every condition holds (an unsupported one: False for an Allow, True for a Deny)."""
        try:
            return all(
                condition_holds(operator, key, wanted, context)
                for operator, keys in self.conditions.items()
                for key, wanted in keys.items()
            )
        except UnsupportedCondition:
            return self.effect == "Deny"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str  # "allowed", "explicit deny", "no statement allows it"


@dataclass
class RolePolicy:
    """The identity policy statements of one role (all its policies together)."""

    role: str  # the role's logical id
    statements: list[Statement] = field(default_factory=list)

    def decide(self, action: str, resource: str, context: Mapping[str, list[str]]) -> Decision:
        relevant = [s for s in self.statements if s.covers(action, resource) and s.conditions_hold(context)]
        if any(s.effect == "Deny" for s in relevant):
            return Decision(False, "explicit deny")
        if any(s.effect == "Allow" for s in relevant):
            return Decision(True, "allowed")
        return Decision(False, "no statement allows it")


def _role_logical_id(function: Mapping[str, Any]) -> str | None:
    role = function.get("Properties", {}).get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        target = role["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
    return None


def function_policies(template: Mapping[str, Any], resolve: Resolver) -> dict[str, RolePolicy]:
    """Function logical id -> its role's policy (statements resolved with ``resolve``; unknown names stay unmatched)."""

    def lenient(logical_id: str, attribute: str | None) -> str:
        try:
            return resolve(logical_id, attribute)
        except KeyError:
            return f"unresolved:{logical_id}.{attribute or 'Ref'}"  # matches no real ARN

    resources: Mapping[str, Any] = template.get("Resources", {})
    by_role: dict[str, RolePolicy] = {}

    def add(role: str, document: Mapping[str, Any]) -> None:
        try:
            resolved = resolve_intrinsics(document, lenient)
        except TemplateError as exc:
            raise TemplateError(f"policy of role {role}: {exc}") from exc
        policy = by_role.setdefault(role, RolePolicy(role))
        policy.statements += [Statement.from_json(s) for s in _as_list(resolved.get("Statement", []))]

    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::IAM::Role":
            by_role.setdefault(logical_id, RolePolicy(logical_id))
            for inline in props.get("Policies", []) or []:
                add(logical_id, inline.get("PolicyDocument", {}))
        elif resource.get("Type") == "AWS::IAM::Policy":
            for role in props.get("Roles", []) or []:
                if isinstance(role, dict) and "Ref" in role:
                    add(str(role["Ref"]), props.get("PolicyDocument", {}))
    out: dict[str, RolePolicy] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Lambda::Function":
            role = _role_logical_id(resource)
            out[logical_id] = by_role.get(role or "", RolePolicy(role or "none"))
    return out


def request_context(query: Mapping[str, Any]) -> dict[str, list[str]]:
    """The S3 condition keys of a request, from its query string (``s3:prefix`` of a listing, ...)."""
    context: dict[str, list[str]] = {"aws:SecureTransport": ["true"]}
    for key, name in (("prefix", "s3:prefix"), ("delimiter", "s3:delimiter"), ("max-keys", "s3:max-keys")):
        if key in query:
            value = query[key]
            context[name] = [str(v) for v in _as_list(value)]
    return context
