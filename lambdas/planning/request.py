"""The execution input: validated whole, before anything is read, listed or queried.

Input (what an operator types in the console)::

    {"source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["MUR/a.nc", "MUR/b.nc"]},
     "destination": {"bucket": "my-bucket", "prefix": "mur/"},
     "options": {"overwrite": "skip-if-identical"}}

or a manifest (``"source": {"manifest": "s3://my-bucket/lists/mur.csv"}``), a prefix listing
(``"source": {"bucket": "...", "prefix": "MUR/2023/", "include": ["*.nc"]}``) or a CMR query
(``"source": {"cmr": {"collection_concept_id": "C1996881146-POCLOUD", "temporal": {...}}}``); see
docs/console.md. Every rule failure raises InvalidInput naming the field and the rule; the whole input
is validated before anything is read, listed or queried, and nothing is copied before the plan is staged.
The shape and its rules are declared once in ``lambdas.planning.execution_input`` (Pydantic models, from
which schema/execution-input.schema.json is generated); this module adds what only the deployment knows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import (
    CopyOptions,
    Destination,
    ObjectSpec,
)
from lambdas.contracts.settings import PlanSettings
from lambdas.contracts.validation import parse
from lambdas.earthdata.cmr import CmrQuery
from lambdas.planning.execution_input import (
    DESTINATION_FIELDS,
    EXECUTION_INPUT,
    SOURCE_FIELDS,
    SOURCE_MODES,
    TOP_LEVEL_FIELDS,
    CmrSource,
    KeysSource,
    ManifestSource,
    PrefixSource,
)
from lambdas.planning.keys import KeyFilter, KeyMapping, SeenKeys, destination_key
from lambdas.reporting.schedule_state import ScheduleRef

__all__ = ["DESTINATION_FIELDS", "SOURCE_FIELDS", "SOURCE_MODES", "TOP_LEVEL_FIELDS", "JobRequest", "parse_request"]


@dataclass(frozen=True)
class JobRequest:
    """The validated input as planning uses it (the shape itself is ``execution_input.ExecutionInput``)."""

    source_bucket: str | None  # None: a manifest of s3:// URLs, or a CMR query (buckets from its s3 URLs)
    keys: tuple[ObjectSpec, ...] | None
    manifest: tuple[str, str] | None  # (bucket, key)
    destination: Destination
    options: CopyOptions
    manifest_format: str | None = None
    prefix: str | None = None
    cmr: CmrQuery | None = None
    key_filter: KeyFilter = dataclasses.field(default_factory=KeyFilter)
    key_mapping: KeyMapping = dataclasses.field(default_factory=KeyMapping)
    schedule: ScheduleRef | None = None  # set by an EventBridge schedule (stacks/constructs/schedules.py)

    @property
    def mode(self) -> str:
        if self.keys is not None:
            return "keys"
        if self.manifest is not None:
            return "manifest"
        return "prefix" if self.prefix is not None else "cmr"


def parse_request(raw: object, settings: PlanSettings) -> JobRequest:
    """The execution input validated: its shape and rules (ExecutionInput), then what the deployment allows."""
    body = parse(EXECUTION_INPUT, raw)
    source, dest = body.source, body.destination
    keys = tuple(ObjectSpec(key) for key in source.keys) if isinstance(source, KeysSource) else None
    if keys is not None and len(keys) > settings.max_inline_keys:
        raise InvalidInput(
            "source.keys", f"has {len(keys)} keys; at most {settings.max_inline_keys} inline — use 'manifest' for more"
        )
    if isinstance(source, ManifestSource) and source.manifest[0] not in settings.manifest_buckets:
        readable = ", ".join(settings.manifest_buckets)
        raise InvalidInput(
            "source.manifest", f"bucket {source.manifest[0]!r} is not readable by teacopy (allowed: {readable})"
        )
    allowed = [d for d in settings.destinations if d.bucket == dest.bucket]
    if not allowed:
        names = ", ".join(sorted({d.bucket for d in settings.destinations}))
        raise InvalidInput("destination.bucket", f"{dest.bucket!r} is not an allowed destination (allowed: {names})")
    if not any(dest.prefix.startswith(d.prefix) for d in allowed):
        prefixes = ", ".join(repr(d.prefix) for d in allowed)
        raise InvalidInput("destination.prefix", f"must start with one of the allowed prefixes {prefixes}")
    source_bucket = getattr(source, "bucket", None)
    if keys is not None and dest.key_mapping.mode != "keep":
        # Inline keys are all known now: a mapping error is reported before anything else happens.
        seen = SeenKeys(sources=False, destinations=not dest.key_mapping.injective)
        for index, obj in enumerate(keys):
            destination_key(
                dest.key_mapping, dest.prefix, source_bucket or "", obj.key, None, f"source.keys[{index}]", seen
            )
    return JobRequest(
        source_bucket=source_bucket,
        keys=keys,
        manifest=source.manifest if isinstance(source, ManifestSource) else None,
        destination=Destination(bucket=dest.bucket, prefix=dest.prefix),
        options=body.options,
        manifest_format=source.format if isinstance(source, ManifestSource) else None,
        prefix=source.prefix if isinstance(source, PrefixSource) else None,
        cmr=source.cmr if isinstance(source, CmrSource) else None,
        key_filter=KeyFilter() if isinstance(source, KeysSource) else KeyFilter.of(source.include, source.exclude),
        key_mapping=dest.key_mapping,
        schedule=body.schedule,
    )
