"""``make schema``: write schema/execution-input.schema.json, generated from the execution-input model.

The model is ``lambdas.planning.execution_input.ExecutionInput``; its docstrings, field descriptions and
examples become the schema's. ``python -m scripts.schema --check`` exits 1 when the committed file is stale
(tests/unit/test_console_examples.py does the same comparison).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from lambdas.planning.execution_input import EXECUTION_INPUT

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "schema" / "execution-input.schema.json"
SCHEMA_ID = "https://github.com/teacopy/teacopy/schema/execution-input.schema.json"


class ConsoleSchema(GenerateJsonSchema):
    """JSON Schema for people typing the input: an optional field is left out, not set to null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # field names are their own titles; models and variants keep theirs


def _tidy(node: Any) -> Any:
    """No ``"default": null``; descriptions (docstrings) as flowing text, blank lines kept as paragraph breaks."""
    if isinstance(node, dict):
        return {
            k: _LINE_BREAK.sub(" ", v) if k == "description" and isinstance(v, str) else _tidy(v)
            for k, v in node.items()
            if not (k == "default" and v is None)
        }
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")


def render() -> str:
    """The schema file's text."""
    schema = EXECUTION_INPUT.json_schema(schema_generator=ConsoleSchema, mode="validation")
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    document.update(_tidy(schema))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed schema is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH.relative_to(REPO)} is stale: run `make schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
