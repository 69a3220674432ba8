"""The execution input's JSON Schema (schema/execution-input.schema.json) and the examples of docs/console.md.

The schema is generated from the execution-input model (``make schema``): the committed file must be what the
model generates now. Every documented example is valid for the schema AND for the Plan step's own validation;
inputs the Plan step rejects for their shape are rejected by the schema too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import OVERWRITE_POLICIES, Destination
from lambdas.contracts.settings import PlanSettings
from lambdas.planning.execution_input import SOURCE_MODES
from lambdas.planning.request import parse_request
from scripts import schema as schema_script
from stacks.config import TeacopyConfig

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schema" / "execution-input.schema.json").read_text(encoding="utf-8"))
CONSOLE = (REPO / "docs" / "console.md").read_text(encoding="utf-8")
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", CONSOLE, flags=re.DOTALL)]
VALIDATOR = Draft202012Validator(SCHEMA)


def deployed_settings() -> PlanSettings:
    """The Plan step's settings for the cdk.json configuration (destinations, manifest buckets, limits)."""
    raw = json.loads((REPO / "cdk.json").read_text(encoding="utf-8"))["context"]["teacopy"]
    config = TeacopyConfig.from_context(raw)
    return PlanSettings(
        staging_bucket="teacopy-staging",
        destinations=tuple(Destination(d.bucket, d.prefix) for d in config.destinations),
        manifest_buckets=config.readable_buckets,
        batch_max_objects=config.batch_max_objects,
        batch_max_bytes=config.batch_max_bytes,
        max_inline_keys=config.max_inline_keys,
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_console_documents_examples_of_every_source_mode() -> None:
    modes = {mode for example in EXAMPLES for mode in SOURCE_MODES if mode in example["source"]}
    assert modes == set(SOURCE_MODES)
    assert any((example.get("options") or {}).get("dry_run") for example in EXAMPLES)
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_documented_example_is_valid_for_the_schema_and_the_plan_step(index: int) -> None:
    example = EXAMPLES[index]
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(example)]
    assert errors == []
    request = parse_request(example, deployed_settings())  # raises InvalidInput if the Plan step would
    assert request.destination.bucket == example["destination"]["bucket"]


INVALID = [
    ({"destination": {"bucket": "my-earthdata-copy"}}, "source"),
    ({"source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["a"]}}, "destination"),
    (
        {"source": {"bucket": "b-b-b", "keys": ["a"], "prefix": "x/"}, "destination": {"bucket": "my-earthdata-copy"}},
        "source",
    ),
    ({"source": {"keys": ["a"]}, "destination": {"bucket": "my-earthdata-copy"}}, "source.bucket"),
    ({"source": {"bucket": "b-b-b", "keys": []}, "destination": {"bucket": "my-earthdata-copy"}}, "source.keys"),
    ({"source": {"bucket": "b-b-b", "keys": [""]}, "destination": {"bucket": "my-earthdata-copy"}}, "source.keys"),
    (
        {"source": {"bucket": "b-b-b", "keys": ["k" * 1025]}, "destination": {"bucket": "my-earthdata-copy"}},
        "source.keys",
    ),
    ({"source": {"bucket": "Bad_Bucket", "keys": ["a"]}, "destination": {"bucket": "my-earthdata-copy"}}, "bucket"),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"], "include": ["*.nc"]},
            "destination": {"bucket": "my-earthdata-copy"},
        },
        "source.include",
    ),
    ({"source": {"manifest": "https://x/y"}, "destination": {"bucket": "my-earthdata-copy"}}, "source.manifest"),
    (
        {
            "source": {"cmr": {"collection_concept_id": "C1-P"}, "bucket": "b-b-b"},
            "destination": {"bucket": "my-earthdata-copy"},
        },
        "source.bucket",
    ),
    ({"source": {"cmr": {"short_name": "MUR"}}, "destination": {"bucket": "my-earthdata-copy"}}, "source.cmr"),
    (
        {
            "source": {"cmr": {"collection_concept_id": "C1-P", "bounding_box": [0, 0, 1]}},
            "destination": {"bucket": "my-earthdata-copy"},
        },
        "source.cmr.bounding_box",
    ),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"]},
            "destination": {"bucket": "my-earthdata-copy", "key_mapping": "flat"},
        },
        "destination.key_mapping",
    ),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"]},
            "destination": {"bucket": "my-earthdata-copy", "key_mapping": {"template": "{year}/x.nc"}},
        },
        "destination.key_mapping",
    ),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"]},
            "destination": {"bucket": "my-earthdata-copy"},
            "options": {"overwrite": "yes"},
        },
        "options.overwrite",
    ),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"]},
            "destination": {"bucket": "my-earthdata-copy"},
            "options": {"dry_run": "yes"},
        },
        "options.dry_run",
    ),
    (
        {"source": {"bucket": "b-b-b", "keys": ["a"]}, "destination": {"bucket": "my-earthdata-copy"}, "$schema": "x"},
        "$schema",
    ),
    (
        {
            "source": {"bucket": "b-b-b", "keys": ["a"]},
            "destination": {"bucket": "my-earthdata-copy"},
            "schedule": {"name": "not a name!"},
        },
        "schedule.name",
    ),
]


@pytest.mark.parametrize(("raw", "field"), INVALID, ids=[field for _, field in INVALID])
def test_inputs_the_plan_step_rejects_are_rejected_by_the_schema(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_request(raw, deployed_settings())
    assert field in info.value.field or info.value.field in field
    assert not VALIDATOR.is_valid(raw)


@pytest.mark.parametrize(
    "key", ["/abs", "a/../b", "./x", "..", "\ttab", " both ends ", "a\x01\x7fb", "z\u200bw", "s3://b/k"]
)
def test_every_key_s3_accepts_is_valid_for_the_schema_and_the_plan_step(key: str) -> None:
    raw = {"source": {"bucket": "b-b-b", "keys": [key]}, "destination": {"bucket": "my-earthdata-copy"}}
    assert VALIDATOR.is_valid(raw)
    assert parse_request(raw, deployed_settings()).keys is not None


def test_the_committed_schema_is_the_one_the_model_generates() -> None:
    committed = (REPO / "schema" / "execution-input.schema.json").read_text(encoding="utf-8")
    assert committed == schema_script.render(), "schema/execution-input.schema.json is stale: run `make schema`"
    assert schema_script.main(["--check"]) == 0


def test_the_schema_documents_each_source_mode_and_the_options() -> None:
    modes = SCHEMA["properties"]["source"]["oneOf"]
    assert len(modes) == len(SOURCE_MODES)
    required = {name for ref in modes for name in SCHEMA["$defs"][ref["$ref"].rsplit("/", 1)[-1]]["required"]}
    assert set(SOURCE_MODES) <= required
    options = SCHEMA["$defs"]["CopyOptions"]["properties"]
    assert options["overwrite"]["enum"] == list(OVERWRITE_POLICIES)
    assert options["overwrite"]["description"] and options["dry_run"]["description"]
