"""Boundary validation: Pydantic models call the project's rule functions; every failure becomes InvalidInput here.

The shapes that cross a boundary (the execution input, the CopyBatch event and result, the credentials
request, the report) are Pydantic v2 models. Their rules stay single: a model field calls the one rule
function that owns it (``lambdas.s3.names.validate_key``, the CMR query rules, ...), through ``checked``.
A rule function raises ``InvalidInput(field, rule)`` with ``field`` relative to the value it was given
(``""``, ``".bucket"``, ``"[3]"``, ``" (key)"``); ``checked`` turns that into a Pydantic error that carries
the rule and that relative part, so Pydantic's own location (``("source", "keys", 7)``) gives the rest.

``parse`` validates and converts the first error of a ``ValidationError`` — the one place that does —
into ``InvalidInput`` whose field is the dotted path users know: ``source.keys[7]``,
``destination.key_mapping.template``, ``options.overwrite``, ``source.cmr.temporal.start``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ArgsKwargs, PydanticCustomError

from lambdas.contracts.errors import InvalidInput

T = TypeVar("T")

RULE_ERROR = "teacopy_rule"  # the Pydantic error type of a failed project rule (ctx: rule, at)
VARIANT = "~"  # a union member's tag starts with it; Pydantic puts tags in ``loc``, users never see them

# Pydantic's own error types, in the project's words (``field: rule``). Anything else keeps Pydantic's message.
NATIVE_RULES: Mapping[str, str] = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a number",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dataclass_type": "must be an object",
    "dataclass_exact_type": "must be an object",
}


def rule_error(rule: str, at: str = "") -> PydanticCustomError:
    """A failed project rule, raised inside a validator. ``at``: where, relative to the validated value."""
    return PydanticCustomError(RULE_ERROR, "{rule}", {"rule": rule, "at": at})


def checked(rule: Callable[[Any, str], T], at: str = "") -> Callable[[Any], T]:
    """A Pydantic validator from a rule function ``rule(value, field) -> value`` that raises InvalidInput.

    ``at``: the field the rule is told, relative to the validated value (``".bucket"`` when a model-level
    validator checks one of its fields).
    """

    def validate(value: Any) -> T:
        try:
            return rule(value, at)
        except InvalidInput as exc:
            raise rule_error(exc.rule, exc.field) from None

    validate.__name__ = getattr(rule, "__name__", "rule")
    return validate


def one_of(values: Sequence[str]) -> Callable[[Any], Any]:
    """A validator: the value is one of ``values`` (the rule text names them all)."""

    def validate(value: Any) -> Any:
        if not isinstance(value, str) or value not in values:
            raise rule_error(f"must be one of {', '.join(values)}")
        return value

    return validate


def known_fields(data: Any, allowed: Iterable[str], not_an_object: str) -> Any:
    """A model's ``mode="before"`` check: an object, and no field it does not know (named in the error).

    Keyword construction in code (``ArgsKwargs`` of a Pydantic dataclass) is left to the field checks.
    """
    if isinstance(data, ArgsKwargs):
        return data
    if not isinstance(data, dict):
        raise rule_error(not_an_object)
    names = tuple(allowed)
    unknown = sorted(str(name) for name in set(data) - set(names))
    if unknown:
        raise rule_error(f"unknown field; allowed: {', '.join(names)}", f".{unknown[0]}")
    return data


def field_path(root: str, loc: Iterable[int | str], at: str = "") -> str:
    """``("source", "~keys", "keys", 7)`` under root ``""`` -> ``source.keys[7]`` (then ``at`` appended)."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(VARIANT):
            path = f"{path}.{part}" if path else part
    path += at
    return path[1:] if path.startswith(".") else path


def invalid_input(error: ValidationError, root: str = "", whole: str = "input") -> InvalidInput:
    """The first error of ``error`` as ``InvalidInput(field, rule)``. ``whole`` names the value itself."""
    first = error.errors(include_url=False, include_input=False)[0]
    context = first.get("ctx") or {}
    if first["type"] == RULE_ERROR:
        rule, at = str(context.get("rule", "")), str(context.get("at", ""))
    else:
        rule, at = NATIVE_RULES.get(first["type"], first["msg"]), ""
        if first["type"] == "greater_than_equal":
            rule = f"must be at least {context.get('ge')}"
    return InvalidInput(field_path(root, first["loc"], at) or whole, rule)


def validate_nested(adapter: TypeAdapter[T], value: Any, context: Any = None) -> T:
    """Validate a part with its own adapter inside a validator; its first error keeps its relative field."""
    try:
        return adapter.validate_python(value, context=context)
    except ValidationError as exc:
        inner = invalid_input(exc, whole="")
        at = inner.field if inner.field.startswith(("[", " ")) or not inner.field else f".{inner.field}"
        raise rule_error(inner.rule, at) from None


def parse(adapter: TypeAdapter[T], data: Any, root: str = "", whole: str = "input", context: Any = None) -> T:
    """Validate ``data`` with ``adapter``; a failure raises InvalidInput naming the field (see invalid_input)."""
    try:
        return adapter.validate_python(data, context=context)
    except ValidationError as exc:
        raise invalid_input(exc, root, whole) from None
