"""Read the synthesized CloudFormation template: resolve intrinsics, extract the state machine definition.

Used by ``scripts/validate_asl.py``, by the tests, and by the local engine, which deploys the
*synthesized* definition (not a hand-written copy) into moto. The caller supplies a resolver that
maps ``(logical_id, attribute)`` to a physical string: ``attribute`` is ``None`` for ``Ref`` and the
attribute name (e.g. ``"Arn"``) for ``Fn::GetAtt``. Pseudo parameters (``AWS::Region`` ...) are
passed to the resolver as ``Ref``s too, so it decides the partition, region and account.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Resolver = Callable[[str, str | None], str]

STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"

PSEUDO_DEFAULTS: dict[str, str] = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-west-2",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "TeacopyStack",
    "AWS::NoValue": "",
}


class TemplateError(ValueError):
    """The template does not have the expected shape (or uses an intrinsic we cannot resolve)."""


def resolve_intrinsics(node: Any, resolver: Resolver) -> Any:
    """Return ``node`` with ``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub`` and ``Fn::Select`` resolved."""
    if isinstance(node, list):
        return [resolve_intrinsics(item, resolver) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref":
            return resolver(str(value), None)
        if key == "Fn::GetAtt":
            if isinstance(value, str):
                logical_id, _, attribute = value.partition(".")
            else:
                logical_id, attribute = value[0], value[1]
            return resolver(str(logical_id), str(attribute))
        if key == "Fn::Join":
            separator, parts = value
            resolved = [resolve_intrinsics(part, resolver) for part in resolve_intrinsics(parts, resolver)]
            return str(separator).join(str(part) for part in resolved)
        if key == "Fn::Select":
            index, items = value
            return resolve_intrinsics(items, resolver)[int(resolve_intrinsics(index, resolver))]
        if key == "Fn::Sub":
            return _sub(value, resolver)
        if key.startswith("Fn::"):
            raise TemplateError(f"cannot resolve intrinsic {key}")
    return {key: resolve_intrinsics(value, resolver) for key, value in node.items()}


def _sub(value: Any, resolver: Resolver) -> str:
    if isinstance(value, list):
        text, variables = value[0], {k: resolve_intrinsics(v, resolver) for k, v in value[1].items()}
    else:
        text, variables = value, {}
    out, index = [], 0
    while index < len(text):
        start = text.find("${", index)
        if start < 0:
            out.append(text[index:])
            break
        end = text.index("}", start)
        out.append(text[index:start])
        name = text[start + 2 : end]
        if name.startswith("!"):
            out.append("${" + name[1:] + "}")
        elif name in variables:
            out.append(str(variables[name]))
        elif "." in name:
            logical_id, _, attribute = name.partition(".")
            out.append(resolver(logical_id, attribute))
        else:
            out.append(resolver(name, None))
        index = end + 1
    return "".join(out)


def referenced(node: Any) -> set[tuple[str, str | None]]:
    """Every ``(logical_id, attribute)`` a node refers to (``Ref`` -> attribute ``None``), pseudo parameters included.

    ``Fn::Sub`` strings are not parsed. Lets a caller build its resolver for exactly what is needed.
    """
    found: set[tuple[str, str | None]] = set()
    if isinstance(node, list):
        for item in node:
            found |= referenced(item)
    elif isinstance(node, dict):
        if set(node) == {"Ref"}:
            found.add((str(node["Ref"]), None))
        elif set(node) == {"Fn::GetAtt"}:
            value = node["Fn::GetAtt"]
            logical_id, attribute = value.split(".", 1) if isinstance(value, str) else (value[0], value[1])
            found.add((str(logical_id), str(attribute)))
        else:
            for value in node.values():
                found |= referenced(value)
    return found


def dummy_resolver(template: Mapping[str, Any]) -> Resolver:
    """A resolver giving plausible fake ARNs/names: enough to validate or inspect a definition offline."""
    resources: Mapping[str, Any] = template.get("Resources", {})

    def resolve(logical_id: str, attribute: str | None) -> str:
        if logical_id in PSEUDO_DEFAULTS and attribute is None:
            return PSEUDO_DEFAULTS[logical_id]
        kind = resources.get(logical_id, {}).get("Type", "")
        name = logical_id.lower()
        region, account = PSEUDO_DEFAULTS["AWS::Region"], PSEUDO_DEFAULTS["AWS::AccountId"]
        if kind == "AWS::Lambda::Function":
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
            return arn if attribute == "Arn" else name
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}" if attribute == "Arn" else name
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{region}:{account}:table/{name}" if attribute == "Arn" else name
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{region}:{account}:log-group:{name}:*" if attribute == "Arn" else name
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{name}" if attribute == "Arn" else name
        if kind == STATE_MACHINE_TYPE:
            return f"arn:aws:states:{region}:{account}:stateMachine:{name}"
        return f"{name}-{attribute.lower()}" if attribute else name

    return resolve


def state_machine_logical_ids(template: Mapping[str, Any]) -> list[str]:
    return sorted(
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == STATE_MACHINE_TYPE
    )


def state_machine_definition(
    template: Mapping[str, Any], resolver: Resolver | None = None, logical_id: str | None = None
) -> dict[str, Any]:
    """The ASL definition (a dict) of the template's state machine, intrinsics resolved by ``resolver``.

    ``logical_id`` is required only when the template holds more than one state machine.
    """
    ids = state_machine_logical_ids(template)
    if logical_id is None:
        if len(ids) != 1:
            raise TemplateError(f"expected exactly one {STATE_MACHINE_TYPE}, found {ids}")
        logical_id = ids[0]
    elif logical_id not in ids:
        raise TemplateError(f"{logical_id} is not a {STATE_MACHINE_TYPE} in this template (found {ids})")
    properties = template["Resources"][logical_id].get("Properties", {})
    if "Definition" in properties:
        definition = properties["Definition"]
    elif "DefinitionString" in properties:
        definition = properties["DefinitionString"]
    else:
        raise TemplateError(f"{logical_id} has neither DefinitionString nor Definition (S3 definitions unsupported)")
    if properties.get("DefinitionSubstitutions"):
        raise TemplateError(f"{logical_id}: DefinitionSubstitutions are not supported")
    resolved = resolve_intrinsics(definition, resolver or dummy_resolver(template))
    if isinstance(resolved, str):
        resolved = json.loads(resolved)
    if not isinstance(resolved, dict):
        raise TemplateError(f"{logical_id}: the definition is not a JSON object")
    return resolved


def iter_states(definition: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """Every state, nested ones included, as ``(path of enclosing Map/Parallel names + name, state)``."""
    found: list[tuple[tuple[str, ...], dict]] = []
    for name, state in definition.get("States", {}).items():
        here = (*path, name)
        found.append((here, state))
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                found.extend(iter_states(state[key], here))
        for branch in state.get("Branches", []):
            found.extend(iter_states(branch, here))
    return found
