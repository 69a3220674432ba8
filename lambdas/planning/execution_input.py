"""The execution input, declared once: Pydantic models whose validators call the owners of each rule.

``ExecutionInput`` is what an operator pastes in the console (examples: docs/console.md). Each field's
rule lives with its owner and is only called from here: bucket names, keys and prefixes in
``lambdas.s3.names``, the CMR query in ``lambdas.earthdata.cmr`` (``CmrQuery``), include/exclude
patterns and key mappings in ``lambdas.planning.keys``, ``options`` in ``lambdas.contracts.models``
(``CopyOptions``), ``schedule`` in ``lambdas.reporting.schedule_state`` (``ScheduleRef``). A failure is
``InvalidInput(field, rule)`` naming the path (``lambdas.contracts.validation``).

What only the deployment knows (allowed destinations, manifest buckets, the inline key limit) and what
needs the whole job (inline keys mapped to one destination key) is checked by ``parse_request``.

``make schema`` writes schema/execution-input.schema.json from ``ExecutionInput`` (scripts/schema.py);
the models live in ``planning`` rather than ``contracts`` because they call rules of ``s3``, ``earthdata``
and ``planning``, which themselves import ``contracts``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lambdas.contracts.models import CopyOptions
from lambdas.contracts.validation import VARIANT, checked, known_fields, one_of, rule_error, validate_nested
from lambdas.earthdata.cmr import CmrQuery
from lambdas.planning.keys import CMR_FIELDS, KEY_MAPPING_INPUT, KeyMapping, KeyMappingInput, Patterns, template_fields
from lambdas.planning.manifests import MANIFEST_FORMATS, ManifestFormat
from lambdas.reporting.schedule_state import ScheduleRef
from lambdas.s3.limits import MAX_KEY_BYTES, MAX_STATE_BYTES
from lambdas.s3.names import (
    BUCKET_RE,
    normalize_prefix,
    parse_s3_url,
    validate_bucket,
    validate_key,
    validate_source_prefix,
)

SOURCE_MODES = ("keys", "manifest", "prefix", "cmr")

# The JSON-Schema forms of the rules in lambdas.s3.names, for editors and the console (the rules are the functions).
# Keys: S3's own rule only (any UTF-8, 1 to 1,024 bytes; JSON Schema counts characters, the function bytes).
PREFIX_PATTERN = r"^(?!s3://)"
DEST_PREFIX_PATTERN = r"^(?!/)(?!(.*/)?\.\.(/|$))[^\u0000-\u001f\u007f]*$"
S3_URL_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+"

Bucket = Annotated[
    str,
    BeforeValidator(checked(validate_bucket), json_schema_input_type=str),
    Field(
        description="An S3 bucket name (3-63 characters: a-z 0-9 . -).",
        json_schema_extra={"pattern": BUCKET_RE.pattern},
    ),
]
SourceKey = Annotated[
    str,
    BeforeValidator(checked(validate_key), json_schema_input_type=str),
    Field(
        min_length=1,
        max_length=MAX_KEY_BYTES,
        description=f"An S3 key, exactly as stored: any UTF-8 text of 1 to {MAX_KEY_BYTES} bytes (S3's only rule; "
        "control characters, whitespace at either end, '.' and '..' segments and a leading '/' included).",
    ),
]


class S3Location(BaseModel):
    """A manifest named by bucket and key instead of an s3:// URL (its JSON Schema; parse_s3_url validates it)."""

    model_config = ConfigDict(extra="forbid", title="bucket and key")

    bucket: Bucket
    key: SourceKey


# --- source: exactly one of keys, manifest, prefix, cmr -------------------------------------------------


def _key_list(raw: Any) -> Any:
    if not isinstance(raw, list):
        raise rule_error("must be a list of S3 keys")
    if not raw:
        raise rule_error("must not be empty")
    return raw


def _unique(keys: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise rule_error(f"duplicate key {key[:80]!r}", f"[{index}]")
        seen.add(key)
    return keys


class _Source(BaseModel):
    """One source mode; its own fields only (the others are named in the error: 'is only used with ...')."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    MODE: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _fields_of_the_mode(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        bucket = cls.model_fields.get("bucket")
        if bucket is not None and bucket.is_required() and raw.get("bucket") is None:
            raise rule_error(f"is required with '{cls.MODE}'", ".bucket")
        for name in SOURCE_FIELDS:
            if name in raw and name not in cls.model_fields:
                raise rule_error(_not_used(name, cls.MODE), f".{name}")
        return raw


class KeysSource(_Source):
    """A few objects, by key (in bucket)."""

    model_config = ConfigDict(title="inline keys")
    MODE = "keys"

    bucket: Annotated[Bucket, Field(description="The DAAC bucket.", examples=["podaac-ops-cumulus-protected"])]
    keys: Annotated[
        tuple[SourceKey, ...],
        BeforeValidator(_key_list),
        AfterValidator(_unique),
        Field(
            json_schema_extra={"minItems": 1, "uniqueItems": True},
            description="Source keys, inline (at most max_inline_keys of the deployment, default 1000; use a "
            "manifest beyond). Each key once.",
            examples=[["MUR-JPL-L4-GLOB-v4.1/20230101090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc"]],
        ),
    ]


class ManifestSource(_Source):
    """Many objects: a manifest in one of your buckets (a destination bucket or one of manifest_buckets)."""

    model_config = ConfigDict(title="manifest")
    MODE = "manifest"

    bucket: Annotated[
        Bucket | None, Field(description="The DAAC bucket of the manifest's bare keys (s3:// URLs name their own).")
    ] = None
    manifest: Annotated[
        tuple[str, str],
        BeforeValidator(
            checked(parse_s3_url),
            json_schema_input_type=Annotated[str, Field(json_schema_extra={"pattern": S3_URL_PATTERN})] | S3Location,
        ),
        Field(
            description="JSON array, JSON Lines, CSV with a header or one key per line; entries are keys, s3:// URLs "
            "or objects {key|url, size, checksum}.",
            examples=["s3://my-earthdata-copy/lists/mur-2023.csv"],
        ),
    ]
    format: Annotated[
        ManifestFormat | None,
        BeforeValidator(one_of(MANIFEST_FORMATS)),
        Field(description="The manifest's format (default: from its extension, else from its first character)."),
    ] = None
    include: Patterns = ()
    exclude: Patterns = ()


class PrefixSource(_Source):
    """Every object under a prefix of bucket (a paged listing with TEA credentials), optionally filtered."""

    model_config = ConfigDict(title="prefix listing")
    MODE = "prefix"

    bucket: Annotated[Bucket, Field(description="The DAAC bucket.", examples=["podaac-ops-cumulus-protected"])]
    prefix: Annotated[
        str,
        BeforeValidator(checked(validate_source_prefix), json_schema_input_type=str),
        Field(
            description="Copy every object under this prefix of source.bucket ('' for all; used as S3 uses it: "
            "'a/b' also lists 'a/bc').",
            examples=["MUR-JPL-L4-GLOB-v4.1/2023"],
            json_schema_extra={"pattern": PREFIX_PATTERN, "maxLength": MAX_KEY_BYTES},
        ),
    ]
    include: Patterns = ()
    exclude: Patterns = ()


class CmrSource(_Source):
    """The granules of a CMR query: their 'GET DATA VIA DIRECT ACCESS' s3:// URLs (buckets from the URLs)."""

    model_config = ConfigDict(title="CMR query")
    MODE = "cmr"

    cmr: CmrQuery
    include: Patterns = ()
    exclude: Patterns = ()


SOURCE_MODELS: dict[str, type[_Source]] = {
    "keys": KeysSource,
    "manifest": ManifestSource,
    "prefix": PrefixSource,
    "cmr": CmrSource,
}
SOURCE_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(["bucket", *SOURCE_MODES, *(name for model in SOURCE_MODELS.values() for name in model.model_fields)])
)
SOURCE_MODES_RULE = (
    "give exactly one of 'keys' (a list), 'manifest' (an s3:// URL), 'prefix' (with 'bucket') or 'cmr' (a CMR query)"
)


def _not_used(name: str, mode: str) -> str:
    if name == "bucket":
        return f"is not used with '{mode}': the buckets come from the granules' s3 URLs"
    modes = [f"'{m}'" for m, model in SOURCE_MODELS.items() if name in model.model_fields]
    return "is only used with " + (f"{', '.join(modes[:-1])} or {modes[-1]}" if len(modes) > 1 else modes[0])


def _source_shape(raw: Any) -> Any:
    """What every source is checked for first: an object of known fields, a valid bucket, exactly one mode."""
    raw = known_fields(raw, SOURCE_FIELDS, f"must be a JSON object with fields {', '.join(SOURCE_FIELDS)}")
    if raw.get("bucket") is None:
        raw = {name: value for name, value in raw.items() if name != "bucket"}
    else:
        checked(validate_bucket, ".bucket")(raw["bucket"])
    if sum(1 for mode in SOURCE_MODES if mode in raw) != 1:
        raise rule_error(SOURCE_MODES_RULE)
    return raw


def _source_mode(raw: Any) -> str | None:
    if isinstance(raw, _Source):
        return VARIANT + raw.MODE
    modes = [mode for mode in SOURCE_MODES if isinstance(raw, dict) and mode in raw]
    return VARIANT + modes[0] if len(modes) == 1 else None


Source = Annotated[
    Annotated[KeysSource, Tag(VARIANT + "keys")]
    | Annotated[ManifestSource, Tag(VARIANT + "manifest")]
    | Annotated[PrefixSource, Tag(VARIANT + "prefix")]
    | Annotated[CmrSource, Tag(VARIANT + "cmr")],
    Discriminator(_source_mode),
    BeforeValidator(_source_shape),
    Field(description="What to copy: exactly one of keys, manifest, prefix or cmr."),
]


# --- destination ------------------------------------------------------------------------------------------


def _key_mapping(raw: Any, info: ValidationInfo) -> KeyMapping:
    if raw is None:
        return KeyMapping()
    if isinstance(raw, KeyMapping):
        return raw
    return KeyMapping.of(validate_nested(KEY_MAPPING_INPUT, raw, info.context))


class DestinationInput(BaseModel):
    """Where to copy: one of the stack's destinations (cdk.json teacopy.destinations); the prefix must start with
    the configured one."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, title="destination")

    bucket: Annotated[Bucket, Field(examples=["my-earthdata-copy"])]
    prefix: Annotated[
        str,
        BeforeValidator(checked(normalize_prefix), json_schema_input_type=str),
        Field(
            description="Prepended to each destination key (a missing trailing '/' is added).",
            examples=["mur/"],
            json_schema_extra={"pattern": DEST_PREFIX_PATTERN},
        ),
    ] = ""
    key_mapping: Annotated[
        KeyMapping,
        PlainValidator(_key_mapping, json_schema_input_type=KeyMappingInput),
        Field(
            description="Source key -> destination key (before the prefix): keep (default), basename, "
            "{strip_prefix: 'dir/'} or {template: '...'}; two objects mapping to one key are an input error.",
            json_schema_extra={"default": "keep"},
        ),
    ] = KeyMapping()

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, raw: Any) -> Any:
        return known_fields(
            raw, DESTINATION_FIELDS, f"must be a JSON object with fields {', '.join(DESTINATION_FIELDS)}"
        )


DESTINATION_FIELDS: tuple[str, ...] = tuple(DestinationInput.model_fields)


# --- the whole input --------------------------------------------------------------------------------------

INPUT_RULE = "must be a JSON object like {'source': {...}, 'destination': {...}}"


class ExecutionInput(BaseModel):
    """The input of one execution of the teacopy copy state machine (paste it into the Step Functions console, give
    it to `teacopy start --input`, or to an EventBridge schedule). The Plan step validates the same model
    (lambdas/planning/execution_input.py, which this schema is generated from) and also checks what only the
    deployment knows: the allowed destination buckets/prefixes, the buckets manifests may be read from, and the
    inline key limit (max_inline_keys, default 1000). Examples: docs/console.md."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="teacopy execution input",
        json_schema_extra={
            "examples": [
                {
                    "source": {
                        "bucket": "podaac-ops-cumulus-protected",
                        "keys": ["MUR-JPL-L4-GLOB-v4.1/20230101090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc"],
                    },
                    "destination": {"bucket": "my-earthdata-copy", "prefix": "mur/"},
                }
            ]
        },
    )

    source: Source
    destination: DestinationInput
    options: Annotated[CopyOptions, Field(description="How objects are written (and whether at all: dry_run).")] = (
        CopyOptions()
    )
    schedule: ScheduleRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw: Any) -> Any:
        raw = known_fields(raw, TOP_LEVEL_FIELDS, INPUT_RULE)
        size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > MAX_STATE_BYTES:  # StartExecution refuses it on AWS: say which field
            inline = isinstance(raw.get("source"), dict) and "keys" in raw["source"]
            raise rule_error(
                f"the execution input is {size} bytes, more than the 256 KiB Step Functions accepts"
                + ("; list the keys in a manifest ('manifest': 's3://...') instead" if inline else ""),
                "source.keys" if inline else "",
            )
        for required in ("source", "destination"):  # both named before either is validated
            if required not in raw:
                raise rule_error("is required", required)
        return raw

    @field_validator("destination")
    @classmethod
    def _mapping_fits_the_source(cls, destination: DestinationInput, info: ValidationInfo) -> DestinationInput:
        """Template fields of CMR granules ({collection}, {year}, ...) need a CMR source."""
        mapping, source = destination.key_mapping, info.data.get("source")
        if mapping.mode == "template" and mapping.fields & set(CMR_FIELDS) and not isinstance(source, CmrSource):
            checked(lambda value, at: template_fields(value, False, at), ".key_mapping.template")(mapping.template)
        return destination


TOP_LEVEL_FIELDS: tuple[str, ...] = tuple(ExecutionInput.model_fields)
EXECUTION_INPUT: TypeAdapter[ExecutionInput] = TypeAdapter(ExecutionInput)
