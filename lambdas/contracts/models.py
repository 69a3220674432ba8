"""Event and result shapes passed between states. Only references and expirations, never secrets."""

from __future__ import annotations

import re
from dataclasses import dataclass as std_dataclass
from dataclasses import field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.validation import known_fields, one_of, parse, rule_error

DEFAULT_ENDPOINT = "default"  # the name of config ``tea_endpoint``; more endpoints are named in ``tea_endpoints``
ENDPOINT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
ENDPOINT_NAME_RE = re.compile(ENDPOINT_PATTERN)


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 time (TEA's ``str(datetime)`` form with a space included) as aware UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")


# The shapes below cross a boundary (the map's items, the CopyBatch event and result, the Credentials
# function's answer): Pydantic dataclasses, so code builds them positionally as before and events are
# validated by the same declaration (``from_dict``: the first failure is InvalidInput naming the field).
EVENT_CONFIG = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="ignore")


def _wire(value: Any) -> dict[str, Any]:
    """A shape's JSON form, as the state machine carries it (aliases, no null fields)."""
    return cast(
        dict[str, Any], value.__pydantic_serializer__.to_python(value, mode="json", by_alias=True, exclude_none=True)
    )


def _non_empty(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise rule_error("must be a non-empty string")
    return value


def _iso_time(value: Any) -> str:
    if not isinstance(value, str):
        raise rule_error("must be an ISO-8601 string")
    try:
        parse_time(value)
    except ValueError:
        raise rule_error("must be an ISO-8601 string") from None
    return value


@dataclass(frozen=True, config=EVENT_CONFIG)
class CredentialsRef:
    """What the state machine carries about TEA credentials: the cache version and its expiry."""

    version: Annotated[str, BeforeValidator(_non_empty), Field(description="Credentials cache secret version id")]
    expiration: Annotated[str, BeforeValidator(_iso_time), Field(description="ISO-8601 UTC expiry")]

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict | ArgsKwargs):
            raise rule_error("must be an object with 'version' and 'expiration'")
        return data

    @property
    def expires_at(self) -> datetime:
        return parse_time(self.expiration)

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "expiration": self.expiration}

    @classmethod
    def from_dict(cls, data: Any, field_name: str = "credentials") -> CredentialsRef:
        if isinstance(data, CredentialsRef):
            return data
        return parse(_CREDENTIALS_REF, data, root=field_name)


# Expected-checksum algorithms the copy engine verifies while streaming (CMR's spelling → hex digest size).
CHECKSUM_ALGORITHMS: dict[str, int] = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-384": 96, "SHA-512": 128}
HEX_DIGITS = frozenset("0123456789abcdef")
_SPELLINGS = {"SHA1": "SHA-1", "SHA256": "SHA-256", "SHA384": "SHA-384", "SHA512": "SHA-512"}


def _algorithm(value: Any) -> str:
    canonical = value.upper().replace("_", "-") if isinstance(value, str) else ""
    canonical = _SPELLINGS.get(canonical, canonical)
    if canonical not in CHECKSUM_ALGORITHMS:
        raise rule_error(f"must be one of {', '.join(CHECKSUM_ALGORITHMS)}")
    return canonical


@dataclass(frozen=True, config=EVENT_CONFIG)
class Checksum:
    """An expected checksum of a whole source object, as CMR publishes it: algorithm + hex digest."""

    algorithm: Annotated[
        str,
        BeforeValidator(_algorithm, json_schema_input_type=str),
        Field(description=f"one of {', '.join(CHECKSUM_ALGORITHMS)} (sha256, SHA_256 ... accepted)"),
    ]
    value: Annotated[str, Field(description="the hex digest")]

    @model_validator(mode="before")
    @classmethod
    def _exactly_two(cls, data: Any) -> Any:
        if not isinstance(data, ArgsKwargs) and (not isinstance(data, dict) or set(data) != {"algorithm", "value"}):
            raise rule_error("must be an object with exactly 'algorithm' and 'value'")
        return data

    @field_validator("value", mode="before")
    @classmethod
    def _hex_digest(cls, value: Any, info: ValidationInfo) -> str:
        algorithm = info.data.get("algorithm")
        if algorithm is None:  # already failed
            return str(value)
        digits = CHECKSUM_ALGORITHMS[algorithm]
        if not isinstance(value, str) or len(value) != digits or any(c not in HEX_DIGITS for c in value.lower()):
            raise rule_error(f"must be a {digits}-digit hex {algorithm} digest")
        return value.lower()

    def to_dict(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "value": self.value}

    @classmethod
    def from_dict(cls, data: Any, field_name: str = "checksum") -> Checksum:
        return parse(_CHECKSUM, data, root=field_name)


@dataclass(frozen=True, config=EVENT_CONFIG)
class ObjectSpec:
    """One source object. ``size`` and ``checksum`` are known when the plan had them (manifest, CMR).

    Built once per object by Plan (listings of millions): its rules are Pydantic's own (no Python validator).
    """

    key: Annotated[str, Strict(), Field(description="source key")]
    size: Annotated[int, Strict(), Field(ge=0, description="bytes, when the plan knew them")] | None = None
    checksum: Checksum | None = None
    # the full destination key Plan mapped (key_mapping); None: destination prefix + key
    dest_key: Annotated[str, Strict(), Field(min_length=1)] | None = None

    def to_dict(self) -> dict[str, Any]:
        # the wire form (_wire) written out: this runs once per planned object
        out: dict[str, Any] = {"key": self.key}
        if self.size is not None:
            out["size"] = self.size
        if self.checksum is not None:
            out["checksum"] = self.checksum.to_dict()
        if self.dest_key is not None:
            out["dest_key"] = self.dest_key
        return out

    @classmethod
    def from_dict(cls, data: Any, field_name: str = "object") -> ObjectSpec:
        return parse(_OBJECT_SPEC, data, root=field_name)


@dataclass(frozen=True, config=EVENT_CONFIG)
class Destination:
    bucket: str
    prefix: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bucketed(cls, data: Any) -> Any:
        if not isinstance(data, ArgsKwargs) and (not isinstance(data, dict) or not isinstance(data.get("bucket"), str)):
            raise rule_error("must be an object with a string 'bucket'")
        return data

    def key_for(self, source_key: str) -> str:
        return f"{self.prefix}{source_key}"

    def key_for_object(self, spec: ObjectSpec) -> str:
        """The object's mapped destination key (Plan's key_mapping), else prefix + source key."""
        if spec.dest_key is None:
            return self.key_for(spec.key)
        if not spec.dest_key.startswith(self.prefix):
            raise InvalidInput("batch.objects.dest_key", f"{spec.dest_key[:80]!r} is outside destination.prefix")
        return spec.dest_key

    def to_dict(self) -> dict[str, str]:
        return {"bucket": self.bucket, "prefix": self.prefix}

    @classmethod
    def from_dict(cls, data: Any) -> Destination:
        return parse(_DESTINATION, data, root="destination")


OverwritePolicy = Literal["skip-if-identical", "always", "never"]
OVERWRITE_POLICIES: tuple[str, ...] = get_args(OverwritePolicy)


@dataclass(frozen=True, config=ConfigDict(extra="forbid", title="options"))
class CopyOptions:
    """How objects are written (the same in the execution input and in every CopyBatch event)."""

    overwrite: Annotated[
        str,  # one of OVERWRITE_POLICIES (typed str: callers pass plain strings)
        BeforeValidator(one_of(OVERWRITE_POLICIES)),
        Field(
            description="skip-if-identical (default: an object already copied from the same source ETag and size "
            "is skipped), never (skip whatever exists), always.",
            json_schema_extra={"enum": list(OVERWRITE_POLICIES)},
        ),
    ] = "skip-if-identical"
    # HEAD sources and destinations, record what would be copied; write nothing
    dry_run: Annotated[
        StrictBool,
        Field(
            description="Copy nothing: HEAD sources (TEA credentials) and destinations, record "
            "would_copy/would_skip, report them and the bytes to copy."
        ),
    ] = False

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, data: Any) -> Any:
        return known_fields({} if data is None else data, ("overwrite", "dry_run"), "must be an object")

    def to_dict(self) -> dict[str, Any]:
        return {"overwrite": self.overwrite, "dry_run": self.dry_run}

    @classmethod
    def from_dict(cls, data: Any) -> CopyOptions:
        return parse(_COPY_OPTIONS, data, root="options")


def _endpoint_name(value: Any) -> Any:
    if not isinstance(value, str) or not ENDPOINT_NAME_RE.match(value):
        raise rule_error("must be the name of a configured TEA endpoint")
    return value


EndpointName = Annotated[str, BeforeValidator(_endpoint_name), Field(json_schema_extra={"pattern": ENDPOINT_PATTERN})]


@dataclass(frozen=True, config=EVENT_CONFIG)
class Batch:
    """One item of the staged manifest: the unit of work of one map child.

    All its objects are in one source bucket, read with the credentials of one TEA ``endpoint``
    (the name of a configured endpoint; ``default`` is ``tea_endpoint``).
    """

    batch_id: Annotated[str, Field(alias="id")]
    source_bucket: str
    objects: tuple[ObjectSpec, ...]
    endpoint: EndpointName = DEFAULT_ENDPOINT

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, data: Any) -> Any:
        if isinstance(data, ArgsKwargs):
            return data
        if not isinstance(data, dict):
            raise rule_error("must be an object")
        if not isinstance(data.get("id"), str) or not isinstance(data.get("source_bucket"), str):
            raise rule_error("needs 'id', 'source_bucket' and 'objects'")
        if not isinstance(data.get("objects"), list):
            raise rule_error("needs 'id', 'source_bucket' and 'objects'")
        return data

    def to_dict(self) -> dict[str, Any]:
        return _wire(self)

    @classmethod
    def from_dict(cls, data: Any) -> Batch:
        return parse(_BATCH, data, root="batch")


@dataclass(frozen=True, config=EVENT_CONFIG)
class CopyBatchEvent:
    """Input of CopyBatch (built by the map's ItemSelector and the refresh loop).

    ``credentials`` is the state's ``{endpoint name: ref}`` map (or one ref): the batch's endpoint's ref is
    kept. The fields the child adds for its own loop (``refresh_round``, ``result``, ``expired``) are ignored.
    """

    run_id: Annotated[str, BeforeValidator(_non_empty)]
    batch: Batch
    destination: Destination
    credentials: Annotated[
        CredentialsRef,
        Field(description="the credentials of the batch's endpoint: one ref, or the state's {endpoint: ref} map"),
    ]
    options: CopyOptions = field(default_factory=CopyOptions)

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict | ArgsKwargs):
            raise rule_error("must be an object")
        return data

    @field_validator("credentials", mode="before")
    @classmethod
    def _of_the_batch_endpoint(cls, value: Any, info: ValidationInfo) -> Any:
        batch = info.data.get("batch")
        if isinstance(value, CredentialsRef) or batch is None:
            return value
        try:
            return credentials_for(value, batch.endpoint)
        except InvalidInput as exc:
            raise rule_error(exc.rule, exc.field.removeprefix("credentials")) from None

    @classmethod
    def from_dict(cls, data: Any) -> CopyBatchEvent:
        return parse(_COPY_BATCH_EVENT, data, whole="event")


def credentials_for(data: Any, endpoint: str) -> CredentialsRef:
    """The reference of ``endpoint`` in the state's ``credentials``: ``{endpoint name: ref}`` (or one ref)."""
    if isinstance(data, dict) and "version" not in data:
        if endpoint not in data:
            raise InvalidInput("credentials", f"has no credentials for TEA endpoint {endpoint!r}")
        return CredentialsRef.from_dict(data[endpoint], f"credentials.{endpoint}")
    return CredentialsRef.from_dict(data)


# Per-object outcome statuses written to the staging bucket and aggregated by Summarize.
COPIED: Final = "copied"
SKIPPED: Final = "skipped"
FAILED: Final = "failed"
WOULD_COPY: Final = "would_copy"  # dry runs only
WOULD_SKIP: Final = "would_skip"
ObjectStatus = Literal["copied", "skipped", "failed", "would_copy", "would_skip"]
FINAL_STATUSES: tuple[str, ...] = get_args(ObjectStatus)


@dataclass(frozen=True, config=EVENT_CONFIG)
class ObjectResult:
    """One object's outcome, as CopyBatch records it (``runs/<run>/results/<batch>/<seq>.json``)."""

    key: str
    dest_key: str
    status: Annotated[
        str, BeforeValidator(one_of(FINAL_STATUSES)), Field(json_schema_extra={"enum": list(FINAL_STATUSES)})
    ]
    bytes: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "dest_key": self.dest_key, "status": self.status, "bytes": self.bytes}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, config=EVENT_CONFIG)
class CopyBatchResult:
    """What CopyBatch returns to its map child (``$.result``): the counts of this invocation, and what next.

    ``done``: the batch is finished (BatchCopied); else ``refresh`` says whether to renew the credentials
    before the next invocation (expiry after progress) or to continue at once (deadline).
    """

    batch_id: str
    copied: int
    skipped: int
    failed: int
    bytes: int
    parts: Annotated[int, Field(description="multipart parts uploaded by this invocation")]
    done: StrictBool
    refresh: StrictBool
    would_copy: int | None = None  # dry runs only
    would_skip: int | None = None
    bytes_to_copy: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _wire(self)

    @classmethod
    def from_dict(cls, data: Any) -> CopyBatchResult:
        return parse(_COPY_BATCH_RESULT, data, root="result")


_CREDENTIALS_REF = TypeAdapter(CredentialsRef)
_CHECKSUM = TypeAdapter(Checksum)
_OBJECT_SPEC = TypeAdapter(ObjectSpec)
_DESTINATION = TypeAdapter(Destination)
_COPY_OPTIONS = TypeAdapter(CopyOptions)
_BATCH = TypeAdapter(Batch)
_COPY_BATCH_EVENT = TypeAdapter(CopyBatchEvent)
_COPY_BATCH_RESULT = TypeAdapter(CopyBatchResult)


@std_dataclass(frozen=True)
class TeaCredentials:
    """Temporary S3 credentials from TEA. ``repr`` never shows the secret parts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime  # aware UTC

    def seconds_left(self, now: datetime) -> float:
        return (self.expiration - now).total_seconds()

    def to_secret_payload(self) -> dict[str, str]:
        """The cache's stored form (Secrets Manager SecretString). Only ever sent to the cache."""
        return {
            "accessKeyId": self.access_key_id,
            "secretAccessKey": self.secret_access_key,
            "sessionToken": self.session_token,
            "expiration": format_time(self.expiration),
        }

    @classmethod
    def from_tea_json(cls, data: Any) -> TeaCredentials:
        """Parse TEA's /s3credentials body (also the cache's stored form). Raises ValueError."""
        if not isinstance(data, dict):
            raise ValueError("credentials document is not a JSON object")
        missing = [k for k in ("accessKeyId", "secretAccessKey", "sessionToken", "expiration") if not data.get(k)]
        if missing:
            raise ValueError(f"credentials document lacks {', '.join(missing)}")
        if not all(isinstance(data[k], str) for k in ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")):
            raise ValueError("credentials document fields must be strings")
        return cls(
            access_key_id=data["accessKeyId"],
            secret_access_key=data["secretAccessKey"],
            session_token=data["sessionToken"],
            expiration=parse_time(data["expiration"]),
        )
