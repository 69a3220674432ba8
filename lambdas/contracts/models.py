"""Event and result shapes passed between states. Only references and expirations, never secrets."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from lambdas.contracts.errors import InvalidInput

DEFAULT_ENDPOINT = "default"  # the name of config ``tea_endpoint``; more endpoints are named in ``tea_endpoints``
ENDPOINT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 time (TEA's ``str(datetime)`` form with a space included) as aware UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CredentialsRef:
    """What the state machine carries about TEA credentials: the cache version and its expiry."""

    version: str
    expiration: str  # ISO-8601 UTC

    @property
    def expires_at(self) -> datetime:
        return parse_time(self.expiration)

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "expiration": self.expiration}

    @classmethod
    def from_dict(cls, data: Any, field_name: str = "credentials") -> CredentialsRef:
        if not isinstance(data, dict):
            raise InvalidInput(field_name, "must be an object with 'version' and 'expiration'")
        version, expiration = data.get("version"), data.get("expiration")
        if not isinstance(version, str) or not version:
            raise InvalidInput(f"{field_name}.version", "must be a non-empty string")
        if not isinstance(expiration, str):
            raise InvalidInput(f"{field_name}.expiration", "must be an ISO-8601 string")
        try:
            parse_time(expiration)
        except ValueError as exc:
            raise InvalidInput(f"{field_name}.expiration", "must be an ISO-8601 string") from exc
        return cls(version=version, expiration=expiration)


# Expected-checksum algorithms the copy engine verifies while streaming (CMR's spelling → hex digest size).
CHECKSUM_ALGORITHMS: dict[str, int] = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-384": 96, "SHA-512": 128}


@dataclass(frozen=True)
class Checksum:
    """An expected checksum of a whole source object, as CMR publishes it: algorithm + hex digest."""

    algorithm: str  # one of CHECKSUM_ALGORITHMS
    value: str  # lowercase hex

    def to_dict(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "value": self.value}

    @classmethod
    def from_dict(cls, data: Any, field_name: str = "checksum") -> Checksum:
        if not isinstance(data, dict) or set(data) != {"algorithm", "value"}:
            raise InvalidInput(field_name, "must be an object with exactly 'algorithm' and 'value'")
        algorithm, value = data["algorithm"], data["value"]
        if not isinstance(algorithm, str):
            raise InvalidInput(f"{field_name}.algorithm", f"must be one of {', '.join(CHECKSUM_ALGORITHMS)}")
        canonical = algorithm.upper().replace("_", "-")
        canonical = {"SHA1": "SHA-1", "SHA256": "SHA-256", "SHA384": "SHA-384", "SHA512": "SHA-512"}.get(
            canonical, canonical
        )
        if canonical not in CHECKSUM_ALGORITHMS:
            raise InvalidInput(f"{field_name}.algorithm", f"must be one of {', '.join(CHECKSUM_ALGORITHMS)}")
        digits = CHECKSUM_ALGORITHMS[canonical]
        if not isinstance(value, str) or len(value) != digits or any(c not in HEX_DIGITS for c in value.lower()):
            raise InvalidInput(f"{field_name}.value", f"must be a {digits}-digit hex {canonical} digest")
        return cls(algorithm=canonical, value=value.lower())


HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ObjectSpec:
    """One source object. ``size`` and ``checksum`` are known when the plan had them (manifest, CMR)."""

    key: str
    size: int | None = None
    checksum: Checksum | None = None
    dest_key: str | None = None  # the full destination key Plan mapped (key_mapping); None: prefix + key

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key}
        if self.size is not None:
            out["size"] = self.size
        if self.checksum is not None:
            out["checksum"] = self.checksum.to_dict()
        if self.dest_key is not None:
            out["dest_key"] = self.dest_key
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ObjectSpec:
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise InvalidInput("batch.objects", "each item must be an object with a string 'key'")
        size = data.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidInput("batch.objects.size", "must be a non-negative integer")
        raw_checksum = data.get("checksum")
        checksum = None if raw_checksum is None else Checksum.from_dict(raw_checksum, "batch.objects.checksum")
        dest_key = data.get("dest_key")
        if dest_key is not None and (not isinstance(dest_key, str) or not dest_key):
            raise InvalidInput("batch.objects.dest_key", "must be a non-empty string")
        return cls(key=data["key"], size=size, checksum=checksum, dest_key=dest_key)


@dataclass(frozen=True)
class Destination:
    bucket: str
    prefix: str = ""

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
        if not isinstance(data, dict) or not isinstance(data.get("bucket"), str):
            raise InvalidInput("destination", "must be an object with a string 'bucket'")
        prefix = data.get("prefix", "")
        if not isinstance(prefix, str):
            raise InvalidInput("destination.prefix", "must be a string")
        return cls(bucket=data["bucket"], prefix=prefix)


OVERWRITE_POLICIES = ("skip-if-identical", "always", "never")


@dataclass(frozen=True)
class CopyOptions:
    overwrite: str = "skip-if-identical"
    dry_run: bool = False  # HEAD sources and destinations, record what would be copied; write nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CopyOptions:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidInput("options", "must be an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInput(
                f"options.{unknown[0]}", f"unknown field; allowed: {', '.join(cls.__dataclass_fields__)}"
            )
        overwrite = data.get("overwrite", "skip-if-identical")
        if overwrite not in OVERWRITE_POLICIES:
            raise InvalidInput("options.overwrite", f"must be one of {', '.join(OVERWRITE_POLICIES)}")
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InvalidInput("options.dry_run", "must be true or false")
        return cls(overwrite=overwrite, dry_run=dry_run)


@dataclass(frozen=True)
class Batch:
    """One item of the staged manifest: the unit of work of one map child.

    All its objects are in one source bucket, read with the credentials of one TEA ``endpoint``
    (the name of a configured endpoint; ``default`` is ``tea_endpoint``).
    """

    batch_id: str
    source_bucket: str
    objects: tuple[ObjectSpec, ...]
    endpoint: str = DEFAULT_ENDPOINT

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.batch_id,
            "source_bucket": self.source_bucket,
            "endpoint": self.endpoint,
            "objects": [o.to_dict() for o in self.objects],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Batch:
        if not isinstance(data, dict):
            raise InvalidInput("batch", "must be an object")
        batch_id, bucket, objects = data.get("id"), data.get("source_bucket"), data.get("objects")
        if not isinstance(batch_id, str) or not isinstance(bucket, str) or not isinstance(objects, list):
            raise InvalidInput("batch", "needs 'id', 'source_bucket' and 'objects'")
        endpoint = data.get("endpoint", DEFAULT_ENDPOINT)
        if not isinstance(endpoint, str) or not ENDPOINT_NAME_RE.match(endpoint):
            raise InvalidInput("batch.endpoint", "must be the name of a configured TEA endpoint")
        return cls(
            batch_id=batch_id,
            source_bucket=bucket,
            objects=tuple(ObjectSpec.from_dict(o) for o in objects),
            endpoint=endpoint,
        )


@dataclass(frozen=True)
class CopyBatchEvent:
    """Input of CopyBatch (built by the map's ItemSelector and the refresh loop)."""

    run_id: str
    batch: Batch
    destination: Destination
    credentials: CredentialsRef
    options: CopyOptions = field(default_factory=CopyOptions)

    @classmethod
    def from_dict(cls, data: Any) -> CopyBatchEvent:
        if not isinstance(data, dict):
            raise InvalidInput("event", "must be an object")
        run_id = data.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInput("run_id", "must be a non-empty string")
        batch = Batch.from_dict(data.get("batch"))
        return cls(
            run_id=run_id,
            batch=batch,
            destination=Destination.from_dict(data.get("destination")),
            credentials=credentials_for(data.get("credentials"), batch.endpoint),
            options=CopyOptions.from_dict(data.get("options")),
        )


def credentials_for(data: Any, endpoint: str) -> CredentialsRef:
    """The reference of ``endpoint`` in the state's ``credentials``: ``{endpoint name: ref}`` (or one ref)."""
    if isinstance(data, dict) and "version" not in data:
        if endpoint not in data:
            raise InvalidInput("credentials", f"has no credentials for TEA endpoint {endpoint!r}")
        return CredentialsRef.from_dict(data[endpoint], f"credentials.{endpoint}")
    return CredentialsRef.from_dict(data)


# Per-object outcome statuses written to the staging bucket and aggregated by Summarize.
COPIED, SKIPPED, FAILED = "copied", "skipped", "failed"
WOULD_COPY, WOULD_SKIP = "would_copy", "would_skip"  # dry runs only
FINAL_STATUSES = (COPIED, SKIPPED, FAILED, WOULD_COPY, WOULD_SKIP)


@dataclass(frozen=True)
class ObjectResult:
    key: str
    dest_key: str
    status: str  # COPIED | SKIPPED | FAILED
    bytes: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "dest_key": self.dest_key, "status": self.status, "bytes": self.bytes}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
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
