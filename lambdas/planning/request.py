"""The execution input: validated whole, before anything is read, listed or queried.

Input (what an operator types in the console)::

    {"source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["MUR/a.nc", "MUR/b.nc"]},
     "destination": {"bucket": "my-bucket", "prefix": "mur/"},
     "options": {"overwrite": "skip-if-identical"}}

or a manifest (``"source": {"manifest": "s3://my-bucket/lists/mur.csv"}``), a prefix listing
(``"source": {"bucket": "...", "prefix": "MUR/2023/", "include": ["*.nc"]}``) or a CMR query
(``"source": {"cmr": {"collection_concept_id": "C1996881146-POCLOUD", "temporal": {...}}}``); see
docs/md. Every rule failure raises InvalidInput naming the field and the rule; the whole input
is validated before anything is read, listed or queried, and nothing is copied before the plan is staged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import (
    CopyOptions,
    Destination,
    ObjectSpec,
)
from lambdas.contracts.settings import PlanSettings
from lambdas.earthdata.cmr import CmrQuery
from lambdas.planning.keys import KeyFilter, KeyMapping, SeenKeys, destination_key
from lambdas.planning.manifests import MANIFEST_FORMATS
from lambdas.reporting.schedule_state import ScheduleRef
from lambdas.s3.limits import MAX_STATE_BYTES
from lambdas.s3.names import normalize_prefix, parse_s3_url, validate_bucket, validate_key, validate_source_prefix

TOP_LEVEL_FIELDS = ("source", "destination", "options", "schedule")
SOURCE_MODES = ("keys", "manifest", "prefix", "cmr")
SOURCE_FIELDS = ("bucket", *SOURCE_MODES, "format", "include", "exclude")
DESTINATION_FIELDS = ("bucket", "prefix", "key_mapping")


@dataclass(frozen=True)
class JobRequest:
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


def _check_fields(value: Any, field: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, f"must be a JSON object with fields {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}" if field else unknown[0], f"unknown field; allowed: {', '.join(allowed)}"
        )
    return value


def parse_request(raw: Any, settings: PlanSettings) -> JobRequest:
    body = _check_fields(raw, "", TOP_LEVEL_FIELDS) if isinstance(raw, dict) else None
    if body is None:
        raise InvalidInput("input", "must be a JSON object like {'source': {...}, 'destination': {...}}")
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_STATE_BYTES:  # StartExecution refuses it on AWS: say which field
        inline = isinstance(body.get("source"), dict) and "keys" in body["source"]
        raise InvalidInput(
            "source.keys" if inline else "input",
            f"the execution input is {size} bytes, more than the 256 KiB Step Functions accepts"
            + ("; list the keys in a manifest ('manifest': 's3://...') instead" if inline else ""),
        )
    for required in ("source", "destination"):
        if required not in body:
            raise InvalidInput(required, "is required")
    source = _check_fields(body["source"], "source", SOURCE_FIELDS)
    modes = [m for m in SOURCE_MODES if m in source]
    source_bucket = None if source.get("bucket") is None else validate_bucket(source["bucket"], "source.bucket")
    if len(modes) != 1:
        raise InvalidInput(
            "source",
            "give exactly one of 'keys' (a list), 'manifest' (an s3:// URL), 'prefix' (with 'bucket') or 'cmr' "
            "(a CMR query)",
        )
    mode = modes[0]
    if source_bucket is None and mode in ("keys", "prefix"):
        raise InvalidInput("source.bucket", f"is required with '{mode}'")
    if source_bucket is not None and mode == "cmr":
        raise InvalidInput("source.bucket", "is not used with 'cmr': the buckets come from the granules' s3 URLs")
    if "format" in source and mode != "manifest":
        raise InvalidInput("source.format", "is only used with 'manifest'")
    for name in ("include", "exclude"):
        if name in source and mode == "keys":
            raise InvalidInput(f"source.{name}", "is only used with 'manifest', 'prefix' or 'cmr'")
    key_filter = KeyFilter.from_input(source.get("include"), source.get("exclude"))
    keys: tuple[ObjectSpec, ...] | None = None
    manifest: tuple[str, str] | None = None
    manifest_format: str | None = None
    prefix: str | None = None
    cmr: CmrQuery | None = None
    if mode == "keys":
        raw_keys = source["keys"]
        if not isinstance(raw_keys, list):
            raise InvalidInput("source.keys", "must be a list of S3 keys")
        if not raw_keys:
            raise InvalidInput("source.keys", "must not be empty")
        if len(raw_keys) > settings.max_inline_keys:
            raise InvalidInput(
                "source.keys",
                f"has {len(raw_keys)} keys; at most {settings.max_inline_keys} inline — use 'manifest' for more",
            )
        keys = tuple(_unique(ObjectSpec(validate_key(k, f"source.keys[{i}]")) for i, k in enumerate(raw_keys)))
    elif mode == "manifest":
        manifest = parse_s3_url(source["manifest"], "source.manifest")
        if manifest[0] not in settings.manifest_buckets:
            raise InvalidInput(
                "source.manifest",
                f"bucket {manifest[0]!r} is not readable by teacopy (allowed: {', '.join(settings.manifest_buckets)})",
            )
        if "format" in source and source["format"] not in MANIFEST_FORMATS:
            raise InvalidInput("source.format", f"must be one of {', '.join(MANIFEST_FORMATS)}")
        manifest_format = source.get("format")
    elif mode == "prefix":
        prefix = validate_source_prefix(source["prefix"], "source.prefix")
    else:
        cmr = CmrQuery.from_input(source["cmr"], "source.cmr")
    dest_raw = _check_fields(body["destination"], "destination", DESTINATION_FIELDS)
    dest_bucket = validate_bucket(dest_raw.get("bucket"), "destination.bucket")
    dest_prefix = normalize_prefix(dest_raw.get("prefix"), "destination.prefix")
    allowed = [d for d in settings.destinations if d.bucket == dest_bucket]
    if not allowed:
        names = ", ".join(sorted({d.bucket for d in settings.destinations}))
        raise InvalidInput("destination.bucket", f"{dest_bucket!r} is not an allowed destination (allowed: {names})")
    if not any(dest_prefix.startswith(d.prefix) for d in allowed):
        prefixes = ", ".join(repr(d.prefix) for d in allowed)
        raise InvalidInput("destination.prefix", f"must start with one of the allowed prefixes {prefixes}")
    key_mapping = KeyMapping.from_input(dest_raw.get("key_mapping"), cmr=mode == "cmr")
    options = CopyOptions.from_dict(body.get("options"))
    schedule = ScheduleRef.from_input(body.get("schedule"))
    if keys is not None and key_mapping.mode != "keep":
        # Inline keys are all known now: a mapping error is reported before anything else happens.
        seen = SeenKeys(sources=False, destinations=not key_mapping.injective)
        for index, obj in enumerate(keys):
            destination_key(key_mapping, dest_prefix, source_bucket or "", obj.key, None, f"source.keys[{index}]", seen)
    return JobRequest(
        source_bucket=source_bucket,
        keys=keys,
        manifest=manifest,
        destination=Destination(bucket=dest_bucket, prefix=dest_prefix),
        options=options,
        manifest_format=manifest_format,
        prefix=prefix,
        cmr=cmr,
        key_filter=key_filter,
        key_mapping=key_mapping,
        schedule=schedule,
    )


def _unique(objects: Iterable[ObjectSpec], field: str = "source.keys") -> Iterator[ObjectSpec]:
    seen: set[str] = set()
    for index, obj in enumerate(objects):
        if obj.key in seen:
            raise InvalidInput(f"{field}[{index}]", f"duplicate key {obj.key[:80]!r}")
        seen.add(obj.key)
        yield obj
