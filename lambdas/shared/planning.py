"""Plan: validate the execution input, resolve the object list, stage a pre-batched manifest.

Input (what an operator types in the console)::

    {"source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["MUR/a.nc", "MUR/b.nc"]},
     "destination": {"bucket": "my-bucket", "prefix": "mur/"},
     "options": {"overwrite": "skip-if-identical"}}

or ``"source": {"bucket": "...", "manifest": "s3://my-bucket/lists/mur.txt"}``. Every rule failure
raises InvalidInput naming the field and the rule; nothing is copied before the input is valid.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import staging
from .errors import InvalidInput
from .models import Batch, CopyOptions, Destination, ObjectSpec
from .settings import PlanSettings

logger = logging.getLogger(__name__)

BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024
# A batch is one Distributed Map item: it must stay well below the 256 KiB state payload limit.
MAX_BATCH_JSON_BYTES = 128 * 1024
MAX_MANIFEST_BYTES = 256 * 1024**2
TOP_LEVEL_FIELDS = ("source", "destination", "options")
SOURCE_FIELDS = ("bucket", "keys", "manifest")
DESTINATION_FIELDS = ("bucket", "prefix")


@dataclass(frozen=True)
class JobRequest:
    source_bucket: str
    keys: tuple[ObjectSpec, ...] | None
    manifest: tuple[str, str] | None  # (bucket, key)
    destination: Destination
    options: CopyOptions


def _check_fields(value: Any, field: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, f"must be a JSON object with fields {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}" if field else unknown[0], f"unknown field; allowed: {', '.join(allowed)}"
        )
    return value


def validate_bucket(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (an S3 bucket name)")
    if not BUCKET_RE.match(value):
        raise InvalidInput(field, f"{value[:80]!r} is not a valid S3 bucket name (3-63 chars: a-z 0-9 . -)")
    return value


def validate_key(value: Any, field: str) -> str:
    """Keys are used verbatim as S3 keys and, prefixed, as destination keys: reject surprises."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (an S3 key)")
    if value.strip() == "":
        raise InvalidInput(field, "must not be empty")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(field, f"is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    if value.startswith("/"):
        raise InvalidInput(field, f"{value[:80]!r} must not start with '/' (S3 keys are relative to the bucket)")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
        raise InvalidInput(field, f"{value[:80]!r} contains a control or invisible character")
    if ".." in value.split("/"):
        raise InvalidInput(field, f"{value[:80]!r} contains a '..' path segment")
    if value.startswith("s3://"):
        raise InvalidInput(field, "give the key without s3://bucket/ (the bucket is source.bucket)")
    return value


def normalize_prefix(value: Any, field: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if value.startswith("/"):
        raise InvalidInput(field, "must not start with '/'")
    if ".." in value.split("/") or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise InvalidInput(field, "must not contain '..' segments or control characters")
    return value if value.endswith("/") else value + "/"


def parse_s3_url(value: Any, field: str) -> tuple[str, str]:
    if isinstance(value, dict):
        _check_fields(value, field, ("bucket", "key"))
        return validate_bucket(value.get("bucket"), f"{field}.bucket"), validate_key(value.get("key"), f"{field}.key")
    if not isinstance(value, str) or not value.startswith("s3://") or "/" not in value[5:]:
        raise InvalidInput(field, "must be an s3://bucket/key URL or {'bucket': ..., 'key': ...}")
    bucket, _, key = value[5:].partition("/")
    return validate_bucket(bucket, f"{field} (bucket)"), validate_key(key, f"{field} (key)")


def parse_request(raw: Any, settings: PlanSettings) -> JobRequest:
    body = _check_fields(raw, "", TOP_LEVEL_FIELDS) if isinstance(raw, dict) else None
    if body is None:
        raise InvalidInput("input", "must be a JSON object like {'source': {...}, 'destination': {...}}")
    for required in ("source", "destination"):
        if required not in body:
            raise InvalidInput(required, "is required")
    source = _check_fields(body["source"], "source", SOURCE_FIELDS)
    source_bucket = validate_bucket(source.get("bucket"), "source.bucket")
    has_keys, has_manifest = "keys" in source, "manifest" in source
    if has_keys == has_manifest:
        raise InvalidInput("source", "give exactly one of 'keys' (a list) or 'manifest' (an s3:// URL)")
    keys: tuple[ObjectSpec, ...] | None = None
    manifest: tuple[str, str] | None = None
    if has_keys:
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
    else:
        manifest = parse_s3_url(source["manifest"], "source.manifest")
        if manifest[0] not in settings.manifest_buckets:
            raise InvalidInput(
                "source.manifest",
                f"bucket {manifest[0]!r} is not readable by teacopy (allowed: {', '.join(settings.manifest_buckets)})",
            )
    dest_raw = _check_fields(body["destination"], "destination", DESTINATION_FIELDS)
    dest_bucket = validate_bucket(dest_raw.get("bucket"), "destination.bucket")
    prefix = normalize_prefix(dest_raw.get("prefix"), "destination.prefix")
    allowed = [d for d in settings.destinations if d.bucket == dest_bucket]
    if not allowed:
        names = ", ".join(sorted({d.bucket for d in settings.destinations}))
        raise InvalidInput("destination.bucket", f"{dest_bucket!r} is not an allowed destination (allowed: {names})")
    if not any(prefix.startswith(d.prefix) for d in allowed):
        prefixes = ", ".join(repr(d.prefix) for d in allowed)
        raise InvalidInput("destination.prefix", f"must start with one of the allowed prefixes {prefixes}")
    return JobRequest(
        source_bucket=source_bucket,
        keys=keys,
        manifest=manifest,
        destination=Destination(bucket=dest_bucket, prefix=prefix),
        options=CopyOptions.from_dict(body.get("options")),
    )


def _unique(objects: Iterable[ObjectSpec], field: str = "source.keys") -> Iterator[ObjectSpec]:
    seen: set[str] = set()
    for index, obj in enumerate(objects):
        if obj.key in seen:
            raise InvalidInput(f"{field}[{index}]", f"duplicate key {obj.key[:80]!r}")
        seen.add(obj.key)
        yield obj


def parse_manifest(text: str, source_bucket: str) -> Iterator[ObjectSpec]:
    """A JSON array (of keys or {"key", "size"} objects) or one key per line ('#' comments allowed).

    Entries may be ``s3://<source bucket>/<key>`` URLs.
    """
    field = "source.manifest"
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                field, f"looks like a JSON array but does not parse: {exc.msg} at line {exc.lineno}"
            ) from exc
        for index, entry in enumerate(entries):
            where = f"{field}[{index}]"
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - {"key", "size"})
                if unknown:
                    raise InvalidInput(f"{where}.{unknown[0]}", "unknown field; allowed: key, size")
                size = entry.get("size")
                if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
                    raise InvalidInput(f"{where}.size", "must be a non-negative integer")
                yield ObjectSpec(_manifest_key(entry.get("key"), where, source_bucket), size)
            else:
                yield ObjectSpec(_manifest_key(entry, where, source_bucket))
        return
    for lineno, line in enumerate(stripped.splitlines(), start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            yield ObjectSpec(_manifest_key(entry, f"{field} line {lineno}", source_bucket))


def _manifest_key(entry: Any, where: str, source_bucket: str) -> str:
    if isinstance(entry, str) and entry.startswith("s3://"):
        bucket, _, key = entry[5:].partition("/")
        if bucket != source_bucket:
            raise InvalidInput(where, f"names bucket {bucket!r} but source.bucket is {source_bucket!r}")
        entry = key
    return validate_key(entry, where)


def make_batches(
    objects: Iterable[ObjectSpec], source_bucket: str, max_objects: int, max_bytes: int
) -> Iterator[Batch]:
    """Greedy batching bounded by count, by known bytes, and by the batch's JSON size."""
    current: list[ObjectSpec] = []
    current_bytes = 0
    current_json = 0
    number = 0

    def flush() -> Batch:
        nonlocal current, current_bytes, current_json, number
        number += 1
        batch = Batch(batch_id=f"b{number:06d}", source_bucket=source_bucket, objects=tuple(current))
        current, current_bytes, current_json = [], 0, 0
        return batch

    for obj in objects:
        size = obj.size or 0
        obj_json = len(json.dumps(obj.to_dict(), ensure_ascii=False).encode("utf-8")) + 1
        if current and (
            len(current) >= max_objects
            or current_bytes + size > max_bytes
            or current_json + obj_json > MAX_BATCH_JSON_BYTES
        ):
            yield flush()
        current.append(obj)
        current_bytes += size
        current_json += obj_json
    if current:
        yield flush()


def plan_job(raw_input: Any, run_id: str, *, settings: PlanSettings, s3: Any) -> dict[str, Any]:
    """Validate, resolve, batch and stage. Returns the small state the workflow carries on."""
    if not isinstance(run_id, str) or not re.match(r"^[\w.-]{1,80}$", run_id):
        raise InvalidInput("run_id", "must be 1-80 characters of letters, digits, '.', '_' or '-'")
    request = parse_request(raw_input, settings)
    if request.keys is not None:
        objects: list[ObjectSpec] = list(request.keys)
    else:
        assert request.manifest is not None
        objects = list(
            _unique(parse_manifest(_read_manifest(s3, *request.manifest), request.source_bucket), "source.manifest")
        )
        if not objects:
            raise InvalidInput("source.manifest", "lists no keys")
    for index, obj in enumerate(objects):
        dest_key = request.destination.key_for(obj.key)
        if len(dest_key.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidInput(f"source.keys[{index}]", f"destination key would exceed {MAX_KEY_BYTES} bytes")
    batches = list(make_batches(objects, request.source_bucket, settings.batch_max_objects, settings.batch_max_bytes))
    manifest_key = staging.manifest_key(run_id)
    staging.put_json(s3, settings.staging_bucket, manifest_key, [b.to_dict() for b in batches])
    known = [o.size for o in objects if o.size is not None]
    plan = {
        "run_id": run_id,
        "manifest": {"bucket": settings.staging_bucket, "key": manifest_key},
        "source": {"bucket": request.source_bucket},
        "destination": request.destination.to_dict(),
        "options": request.options.to_dict(),
        "objects": len(objects),
        "batches": len(batches),
        "bytes_known": sum(known) if len(known) == len(objects) else None,
    }
    staging.put_json(s3, settings.staging_bucket, staging.plan_key(run_id), plan)
    logger.info("planned run %s: %d objects in %d batches", run_id, len(objects), len(batches))
    return {k: v for k, v in plan.items() if k != "source" and k != "bytes_known"}


def _read_manifest(s3: Any, bucket: str, key: str) -> str:
    from botocore.exceptions import ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise InvalidInput("source.manifest", f"cannot read s3://{bucket}/{key}: {code}") from exc
    if response.get("ContentLength", 0) > MAX_MANIFEST_BYTES:
        raise InvalidInput("source.manifest", f"is larger than {MAX_MANIFEST_BYTES // 1024**2} MiB; split it")
    try:
        return str(response["Body"].read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput("source.manifest", "is not UTF-8 text") from exc
