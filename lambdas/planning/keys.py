"""Which keys a job takes and where they go: include/exclude filters, destination key mapping, duplicate detection."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import posixpath
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.validation import RULE_ERROR, VARIANT, checked, parse
from lambdas.planning.seen import DigestSet, InMemoryDigests

logger = logging.getLogger(__name__)
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 256


# --- include/exclude patterns ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFilter:
    """Shell-style patterns (``*``, ``?``, ``[abc]``; ``*`` also matches '/'), matched against a key.

    A key is accepted when it matches at least one include pattern (or there are none) and no exclude
    pattern.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _include_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _exclude_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, include: tuple[str, ...], exclude: tuple[str, ...]) -> KeyFilter:
        """A filter of validated patterns (see ``Patterns``)."""
        return cls(
            include=include,
            exclude=exclude,
            _include_re=tuple(re.compile(fnmatch.translate(p)) for p in include),
            _exclude_re=tuple(re.compile(fnmatch.translate(p)) for p in exclude),
        )

    @classmethod
    def from_input(cls, include: Any, exclude: Any, field_prefix: str = "source") -> KeyFilter:
        return cls.of(_patterns(include, f"{field_prefix}.include"), _patterns(exclude, f"{field_prefix}.exclude"))

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)

    def accepts(self, key: str) -> bool:
        if not self._include_re and not self._exclude_re:  # no patterns (millions of keys: the common case)
            return True
        if self._include_re and not any(p.match(key) for p in self._include_re):
            return False
        return not any(p.match(key) for p in self._exclude_re)


def _patterns(raw: Any, field_name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(field_name, "must be a non-empty list of patterns such as '*.nc'")
    if len(raw) > MAX_PATTERNS:
        raise InvalidInput(field_name, f"has {len(raw)} patterns; at most {MAX_PATTERNS}")
    for index, pattern in enumerate(raw):
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInput(f"{field_name}[{index}]", f"must be a pattern of 1-{MAX_PATTERN_CHARS} characters")
        if any(not ch.isprintable() for ch in pattern):
            raise InvalidInput(f"{field_name}[{index}]", "must not contain control characters")
    return tuple(raw)


_Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]
# ``source.include`` / ``source.exclude`` of the execution input: one pattern or a list of them.
Patterns = Annotated[
    tuple[str, ...],
    BeforeValidator(
        checked(_patterns),
        json_schema_input_type=_Pattern | Annotated[list[_Pattern], Field(min_length=1, max_length=MAX_PATTERNS)],
    ),
    Field(
        description="Shell-style patterns ('*' also matches '/'), matched against each key: a key is copied when "
        "it matches an include pattern (or there are none) and no exclude pattern.",
        examples=[["*.nc"]],
    ),
]


# --- destination key mapping ---------------------------------------------------------------------------

KEY_MAPPING_MODES = ("keep", "basename", "strip_prefix", "template")
# Fields of a template; CMR_FIELDS only for a CMR source (from the granule's UMM-G record).
TEMPLATE_FIELDS = ("key", "basename", "dirname", "stem", "ext", "bucket")
CMR_FIELDS = ("collection", "version", "granule", "provider", "concept_id", "year", "month", "day", "doy")
VARYING_FIELDS = frozenset({"key", "basename", "stem"})
_SLASHES = re.compile(r"/{2,}")
KEY_MAPPING_RULE = "must be 'keep', 'basename', {'strip_prefix': 'dir/'} or {'template': '...'}"


def _mapping_path(value: Any, field_name: str) -> str:
    """The rule of a strip_prefix or a template: a relative path."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field_name, "must be a non-empty string")
    if any(not ch.isprintable() for ch in value) or value.startswith("/"):
        raise InvalidInput(field_name, "must not start with '/' or contain control characters")
    return value


def template_fields(value: str, cmr: bool, field_name: str) -> frozenset[str]:
    """The fields a destination key template uses (the template rule; CMR_FIELDS only with ``cmr``)."""
    allowed = TEMPLATE_FIELDS + (CMR_FIELDS if cmr else ())
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise InvalidInput(
            field_name, f"is not a valid template ({exc}); write literal braces as {{{{ and }}}}"
        ) from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            raise InvalidInput(field_name, f"{{{name}}}: format specs and conversions are not supported")
        if name not in allowed:
            extra = "" if cmr else f" ({', '.join(CMR_FIELDS)} only for a 'cmr' source)"
            raise InvalidInput(
                field_name, f"unknown field {{{name}}}; allowed: {', '.join('{' + f + '}' for f in allowed)}{extra}"
            )
        names.add(name)
    if not names & VARYING_FIELDS:
        raise InvalidInput(field_name, "must contain {basename}, {stem} or {key}, or every object gets the same key")
    if ".." in value.split("/"):
        raise InvalidInput(field_name, "must not contain '..' path segments")
    return frozenset(names)


_MAPPING_PATH = {"pattern": r"^(?!/)[^\u0000-\u001f\u007f]+$"}


class StripPrefixMapping(BaseModel):
    """{"strip_prefix": "dir/"}: the key without dir/ (every key must start with it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="strip a prefix")

    strip_prefix: Annotated[
        str, BeforeValidator(checked(_mapping_path)), Field(min_length=1, json_schema_extra=_MAPPING_PATH)
    ]


class TemplateMapping(BaseModel):
    """{"template": "{collection}/{year}/{basename}"}: a destination key built from fields of each object."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="template")

    template: Annotated[
        str,
        BeforeValidator(checked(_mapping_path)),
        Field(
            min_length=1,
            description=f"Fields {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}, and for a CMR source "
            f"{', '.join('{' + f + '}' for f in CMR_FIELDS)}; it must contain {{basename}}, {{stem}} or {{key}}.",
            examples=["{collection}/{year}/{basename}"],
            json_schema_extra={"pattern": r"^(?!/)(?=.*\{(basename|stem|key)\})[^\u0000-\u001f\u007f]+$"},
        ),
    ]

    @field_validator("template")
    @classmethod
    def _fields_known(cls, value: str, info: ValidationInfo) -> str:
        # ``cmr`` in the validation context: whether CMR_FIELDS are allowed (the execution input checks that
        # against its source itself, see planning.execution_input).
        cmr = bool((info.context or {}).get("cmr", True))
        checked(lambda v, f: template_fields(v, cmr, f))(value)
        return value


def _mapping_kind(raw: Any) -> str | None:
    if raw in ("keep", "basename"):
        return f"{VARIANT}name"
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in ("strip_prefix", "template"):
        return f"{VARIANT}{next(iter(raw))}"
    return None


# ``destination.key_mapping`` as typed: a name, or an object with one field.
KeyMappingInput = Annotated[
    Annotated[str, Tag(f"{VARIANT}name"), Field(json_schema_extra={"enum": ["keep", "basename"]})]
    | Annotated[StripPrefixMapping, Tag(f"{VARIANT}strip_prefix")]
    | Annotated[TemplateMapping, Tag(f"{VARIANT}template")],
    Discriminator(
        _mapping_kind,
        custom_error_type=RULE_ERROR,
        custom_error_message=KEY_MAPPING_RULE,
        custom_error_context={"rule": KEY_MAPPING_RULE, "at": ""},
    ),
]
KEY_MAPPING_INPUT: TypeAdapter[Any] = TypeAdapter(KeyMappingInput)


@dataclass(frozen=True)
class KeyMapping:
    """Source key -> destination key (before the destination prefix).

    - ``keep`` (default): the source key;
    - ``basename``: the last path segment;
    - ``{"strip_prefix": "p/"}``: the key without ``p/`` (every key must start with it);
    - ``{"template": "{collection}/{year}/{basename}"}``: fields TEMPLATE_FIELDS, plus CMR_FIELDS for a
      CMR source. Empty path segments are dropped (``a//b`` -> ``a/b``).
    """

    mode: str = "keep"
    strip_prefix: str = ""
    template: str = ""
    fields: frozenset[str] = frozenset()

    @property
    def injective(self) -> bool:
        """Two different keys of one bucket can never map to the same destination key."""
        return self.mode in ("keep", "strip_prefix")

    def to_dict(self) -> Any:
        if self.mode == "keep" or self.mode == "basename":
            return self.mode
        return {"strip_prefix": self.strip_prefix} if self.mode == "strip_prefix" else {"template": self.template}

    @classmethod
    def of(cls, value: Any) -> KeyMapping:
        """The mapping of a validated ``KeyMappingInput``."""
        if isinstance(value, StripPrefixMapping):
            return cls(mode="strip_prefix", strip_prefix=value.strip_prefix)
        if isinstance(value, TemplateMapping):
            fields = template_fields(value.template, True, "destination.key_mapping.template")
            return cls(mode="template", template=value.template, fields=fields)
        return cls() if value == "keep" else cls(mode="basename")

    @classmethod
    def from_input(cls, raw: Any, cmr: bool, field_name: str = "destination.key_mapping") -> KeyMapping:
        if raw is None:
            return cls()
        return cls.of(parse(KEY_MAPPING_INPUT, raw, root=field_name, context={"cmr": cmr}))

    def map(self, bucket: str, key: str, extra: Mapping[str, str] | None, where: str) -> str:
        """The mapped key (``where`` names the entry in errors). An empty result is an input error; one that is
        too long for S3 (with the destination prefix) fails alone, at copy time (``unwritable_destination_key``)."""
        if self.mode == "keep":
            return key
        if self.mode == "basename":
            mapped = posixpath.basename(key)
        elif self.mode == "strip_prefix":
            if not key.startswith(self.strip_prefix) or len(key) == len(self.strip_prefix):
                raise InvalidInput(
                    where,
                    f"key {key[:80]!r} does not start with destination.key_mapping.strip_prefix "
                    f"{self.strip_prefix!r} (or is only that prefix)",
                )
            mapped = key[len(self.strip_prefix) :]
        else:
            values = template_values(bucket, key, extra)
            missing = sorted(self.fields - set(values))
            if missing:
                raise InvalidInput(where, f"has no value for {{{missing[0]}}} in destination.key_mapping.template")
            mapped = _SLASHES.sub("/", self.template.format_map(values)).lstrip("/")
        if mapped == "":
            raise InvalidInput(f"{where} (destination key)", "destination.key_mapping maps this key to an empty key")
        return mapped


def template_values(bucket: str, key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    dirname, basename = posixpath.split(key)
    stem, dot, ext = basename.rpartition(".")
    if not dot or not stem:
        stem, ext = basename, ""
    values = {"key": key, "basename": basename, "dirname": dirname, "stem": stem, "ext": ext, "bucket": bucket}
    if extra:
        values.update(extra)
    return values


class SeenKeys:
    """Duplicate sources and destination-key collisions, as 16-byte digests, only where they can occur.

    The digests go to ``store`` (``planning.seen``): a set in memory by default (the inline keys of an input),
    a SQLite file for Plan (flat memory, carried across its invocations). Source and destination digests
    share one store, told apart by their first byte.
    """

    def __init__(self, sources: bool, destinations: bool, store: DigestSet | None = None) -> None:
        self.sources, self.destinations = sources, destinations
        self.store: DigestSet = store if store is not None else InMemoryDigests()

    @property
    def active(self) -> bool:
        return self.sources or self.destinations

    @staticmethod
    def _digest(kind: bytes, *parts: str) -> bytes:
        h = hashlib.blake2b(kind, digest_size=16)
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.digest()

    def is_duplicate_source(self, bucket: str, key: str) -> bool:
        if not self.sources:
            return False
        return not self.store.add(self._digest(b"s", bucket, key))

    def claims_destination(self, dest_key: str) -> bool:
        """False when another source already maps to ``dest_key``."""
        if not self.destinations:
            return True
        return self.store.add(self._digest(b"d", dest_key))

    def __len__(self) -> int:
        return len(self.store)


def destination_key(
    mapping: KeyMapping,
    dest_prefix: str,
    bucket: str,
    key: str,
    extra: Mapping[str, str] | None,
    where: str,
    seen: SeenKeys,
) -> str:
    """The full destination key of one source object; two sources mapping to one key is InvalidInput. A key longer
    than S3 allows is returned as it is: that object alone fails when CopyBatch reaches it, with the reason."""
    dest_key = dest_prefix + mapping.map(bucket, key, extra, where)
    if not seen.claims_destination(dest_key):
        raise InvalidInput(
            where,
            f"maps to destination key {dest_key[:120]!r}, which an earlier object also maps to; "
            "choose another destination.key_mapping (e.g. 'keep' or a template with {dirname})",
        )
    return dest_key
