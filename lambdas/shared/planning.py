"""Plan: validate the execution input, resolve the object list, stage a pre-batched manifest.

Input (what an operator types in the console)::

    {"source": {"bucket": "podaac-ops-cumulus-protected", "keys": ["MUR/a.nc", "MUR/b.nc"]},
     "destination": {"bucket": "my-bucket", "prefix": "mur/"},
     "options": {"overwrite": "skip-if-identical"}}

or a manifest (``"source": {"manifest": "s3://my-bucket/lists/mur.csv"}``), a prefix listing
(``"source": {"bucket": "...", "prefix": "MUR/2023/", "include": ["*.nc"]}``) or a CMR query
(``"source": {"cmr": {"collection_concept_id": "C1996881146-POCLOUD", "temporal": {...}}}``); see
docs/sources.md. Every rule failure raises InvalidInput naming the field and the rule; the whole input
is validated before anything is read, listed or queried, and nothing is copied before the plan is staged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import sources, staging
from .cmr import DIRECT_ACCESS, CmrClient, CmrQuery, normalize_tea_url
from .errors import ConfigurationError, InvalidInput
from .models import DEFAULT_ENDPOINT, Batch, CopyOptions, Destination, ObjectSpec, format_time, parse_time
from .schedule_state import ScheduleRef
from .settings import PlanSettings
from .sources import KeyFilter, KeyMapping, SourceClients

logger = logging.getLogger(__name__)

BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024
# A batch is one Distributed Map item: it must stay well below the 256 KiB state payload limit.
MAX_BATCH_JSON_BYTES = 128 * 1024
MAX_MANIFEST_BYTES = 256 * 1024**2
# Step Functions' limit for an execution input (and every state payload). StartExecution refuses a
# larger input on AWS; Plan checks it too, so the operator always gets the field and the rule.
MAX_INPUT_BYTES = 256 * 1024
TOP_LEVEL_FIELDS = ("source", "destination", "options", "schedule")
SOURCE_MODES = ("keys", "manifest", "prefix", "cmr")
SOURCE_FIELDS = ("bucket", *SOURCE_MODES, "format", "include", "exclude")
DESTINATION_FIELDS = ("bucket", "prefix", "key_mapping")
# A Plan stops listing/querying this long before its Lambda deadline (the error says what to narrow).
DEADLINE_RESERVE_SECONDS = 30


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
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_INPUT_BYTES:
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
        if "format" in source and source["format"] not in sources.MANIFEST_FORMATS:
            raise InvalidInput("source.format", f"must be one of {', '.join(sources.MANIFEST_FORMATS)}")
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
        seen = sources.SeenKeys(sources=False, destinations=not key_mapping.injective)
        for index, obj in enumerate(keys):
            _destination_key(
                key_mapping, dest_prefix, source_bucket or "", obj.key, None, f"source.keys[{index}]", seen
            )
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


def validate_source_prefix(value: Any, field_name: str) -> str:
    """A listing prefix, used as S3 uses it (no '/' is appended: 'a/b' also lists 'a/bc')."""
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string (a key prefix of the source bucket; '' for all)")
    if value.startswith("/"):
        raise InvalidInput(field_name, "must not start with '/' (S3 keys are relative to the bucket)")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(field_name, f"is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value) or ".." in value.split("/"):
        raise InvalidInput(field_name, "must not contain control characters or '..' segments")
    if value.startswith("s3://"):
        raise InvalidInput(field_name, "give the prefix without s3://bucket/ (the bucket is source.bucket)")
    return value


def _destination_key(
    mapping: KeyMapping,
    dest_prefix: str,
    bucket: str,
    key: str,
    extra: Mapping[str, str] | None,
    where: str,
    seen: sources.SeenKeys,
) -> str:
    """The full destination key of one source object; two sources mapping to one key is InvalidInput."""
    dest_key = dest_prefix + mapping.map(bucket, key, extra, where)
    if len(dest_key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(where, f"destination key would exceed {MAX_KEY_BYTES} bytes")
    if not seen.claims_destination(dest_key):
        raise InvalidInput(
            where,
            f"maps to destination key {dest_key[:120]!r}, which an earlier object also maps to; "
            "choose another destination.key_mapping (e.g. 'keep' or a template with {dirname})",
        )
    return dest_key


def _unique(objects: Iterable[ObjectSpec], field: str = "source.keys") -> Iterator[ObjectSpec]:
    seen: set[str] = set()
    for index, obj in enumerate(objects):
        if obj.key in seen:
            raise InvalidInput(f"{field}[{index}]", f"duplicate key {obj.key[:80]!r}")
        seen.add(obj.key)
        yield obj


def parse_manifest(text: str, source_bucket: str | None, fmt: str | None = None) -> Iterator[ObjectSpec]:
    """Parse a whole manifest text (see sources.parse_manifest_stream for the formats).

    Entries may be ``s3://<source bucket>/<key>`` URLs. Used for small texts; jobs stream the manifest.
    """
    for entry in sources.parse_manifest_stream([text], fmt):
        yield sources.validated_entry(entry, source_bucket)[1]


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


@dataclass
class SourceDeps:
    """What the source modes need besides the staging S3 client (all injected; the handler builds them).

    ``clients``: S3 clients signed with TEA credentials (prefix listings); ``cmr``: the CMR client;
    ``remaining_seconds``: the Lambda's remaining time (listings/queries stop DEADLINE_RESERVE_SECONDS
    before it with a clear error).
    """

    clients: SourceClients | None = None
    cmr: CmrClient | None = None
    remaining_seconds: Callable[[], float] | None = None
    # incremental schedules: schedule name -> ISO time its last successful run started (None: never)
    schedule_state: Callable[[str], str | None] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class _Resolved:
    bucket: str
    spec: ObjectSpec
    where: str
    extra: Mapping[str, str] | None = None


def _endpoint_chooser(
    request: JobRequest, settings: PlanSettings, deps: SourceDeps
) -> tuple[Callable[[str], str], str | None]:
    """Which TEA endpoint reads each source bucket: ``tea_endpoints[].buckets`` first; for a CMR source,
    the collection's DirectDistributionInformation names its TEA, used for the granules' other buckets
    when it is one of the configured endpoints. Returns the chooser and a note for plan.json."""
    if request.cmr is None or deps.cmr is None or not settings.endpoint_urls:
        return settings.endpoint_for, None
    url = deps.cmr.credentials_endpoint(request.cmr)
    if url is None:
        return settings.endpoint_for, "the collection names no S3 credentials endpoint: bucket mapping applies"
    by_url = {normalize_tea_url(u): name for name, u in settings.endpoint_urls}
    name = by_url.get(url)
    if name is None:
        note = (
            f"the collection's TEA {url} is not configured (tea_endpoint / tea_endpoints): its buckets use the "
            "bucket mapping, and reads fail with AccessDenied if that is another DAAC"
        )
        logger.warning(note)
        return settings.endpoint_for, note
    explicit = dict(settings.bucket_endpoints)
    logger.info("collection %s is served by TEA endpoint %r (%s)", request.cmr.describe(), name, url)
    return (lambda bucket: explicit.get(bucket, name)), f"the collection's TEA is endpoint {name!r} ({url})"


def _narrow_incremental(request: JobRequest, deps: SourceDeps) -> tuple[JobRequest, str | None]:
    """An incremental schedule's CMR query, narrowed to what changed since its last successful run.

    Returns the (possibly narrowed) request and that time (None: not incremental, or no success yet).
    An explicit ``updated_since`` later than the last success is kept.
    """
    schedule = request.schedule
    if schedule is None or not schedule.incremental or request.cmr is None or deps.schedule_state is None:
        if schedule is not None and schedule.incremental and request.cmr is None:
            logger.info(
                "schedule %s is incremental but its source is not CMR: skip-if-identical applies", schedule.name
            )
        return request, None
    since = deps.schedule_state(schedule.name)
    if since is None:
        logger.info("schedule %s: no successful run yet, the query is not narrowed", schedule.name)
        return request, None
    explicit = request.cmr.updated_since
    if explicit is not None and parse_time(explicit) >= parse_time(since):
        return request, since
    logger.info("schedule %s: narrowing the CMR query to granules updated since %s", schedule.name, since)
    return dataclasses.replace(request, cmr=request.cmr.with_updated_since(parse_time(since))), since


def plan_job(
    raw_input: Any, run_id: str, *, settings: PlanSettings, s3: Any, deps: SourceDeps | None = None
) -> dict[str, Any]:
    """Validate, resolve, batch and stage. Returns the small state the workflow carries on.

    The whole input is validated first: a bad input never reads a manifest, lists a bucket (no TEA
    credentials are requested) or queries CMR. Objects are then streamed from the source into the
    staged manifest; an error part-way aborts the staged upload, so nothing is staged for a bad job.
    """
    if not isinstance(run_id, str) or not re.match(r"^[\w.-]{1,80}$", run_id):
        raise InvalidInput("run_id", "must be 1-80 characters of letters, digits, '.', '_' or '-'")
    request = parse_request(raw_input, settings)
    deps = deps or SourceDeps()
    planned_at = format_time(deps.clock())
    request, since = _narrow_incremental(request, deps)
    mode = request.mode
    mapping, destination = request.key_mapping, request.destination
    single_bucket = request.source_bucket is not None
    # Inline keys are unique already; a listing never repeats a key. Destination keys can only collide
    # when the mapping is not injective or the objects come from several buckets.
    seen = sources.SeenKeys(
        sources=mode in ("manifest", "cmr"), destinations=not mapping.injective or not single_bucket
    )
    manifest_key = staging.manifest_key(run_id)
    writer = sources.StagedManifest(s3, settings.staging_bucket, manifest_key, sources.STAGED_PART_BYTES)
    endpoint_for, endpoint_note = _endpoint_chooser(request, settings, deps)
    batcher = sources.Batcher(
        writer, settings.batch_max_objects, settings.batch_max_bytes, MAX_BATCH_JSON_BYTES, endpoint_for
    )
    stats: dict[str, Any] = {}
    count, known_bytes, unknown_sizes, duplicates = 0, 0, 0, 0
    buckets: set[str] = set()
    check_deadline = _deadline_checker(deps.remaining_seconds, mode)
    done = False
    try:
        for item in _resolve(request, settings, s3, deps, stats, check_deadline):
            if seen.is_duplicate_source(item.bucket, item.spec.key):
                if mode == "cmr":  # the same s3 URL in two granules: copy it once
                    duplicates += 1
                    continue
                raise InvalidInput(item.where, f"duplicate entry s3://{item.bucket}/{item.spec.key[:80]}")
            dest_key = _destination_key(
                mapping, destination.prefix, item.bucket, item.spec.key, item.extra, item.where, seen
            )
            entry = item.spec.to_dict()
            if dest_key != destination.key_for(item.spec.key):
                entry["dest_key"] = dest_key
            batcher.add(item.bucket, entry, item.where)
            buckets.add(item.bucket)
            count += 1
            if item.spec.size is None:
                unknown_sizes += 1
            else:
                known_bytes += item.spec.size
            if count % 10_000 == 0:
                check_deadline(count)
        if count == 0 and since is None:
            raise InvalidInput(_mode_field(mode), _nothing_found(mode, request, stats))
        batcher.finish()
        writer.close()
        done = True
    finally:
        if not done:
            writer.abort()
    source: dict[str, Any] = {"mode": mode, "buckets": sorted(buckets)[:MAX_LISTED_BUCKETS]}
    if request.source_bucket is not None:
        source["bucket"] = request.source_bucket
    if request.manifest is not None:
        source["manifest"] = f"s3://{request.manifest[0]}/{request.manifest[1]}"
    if request.prefix is not None:
        source["prefix"] = request.prefix
    if request.cmr is not None:
        source["cmr"] = request.cmr.to_dict()
    if request.key_filter.active:
        source["include"], source["exclude"] = list(request.key_filter.include), list(request.key_filter.exclude)
    if duplicates:
        stats["duplicates_skipped"] = duplicates
    plan = {
        "run_id": run_id,
        "manifest": {"bucket": settings.staging_bucket, "key": manifest_key},
        "source": source,
        "destination": {**destination.to_dict(), "key_mapping": mapping.to_dict()},
        "options": request.options.to_dict(),
        "objects": count,
        "batches": batcher.batches,
        "bytes_known": known_bytes if unknown_sizes == 0 else None,
        "source_stats": stats,
        "staged_manifest_bytes": writer.bytes_written,
        "endpoints": sorted(batcher.endpoints),
        "planned_at": planned_at,
    }
    if endpoint_note:
        plan["endpoint_note"] = endpoint_note
    if request.schedule is not None:
        plan["schedule"] = {**request.schedule.to_dict(), "since": since}
    staging.put_json(s3, settings.staging_bucket, staging.plan_key(run_id), plan)
    logger.info(
        "planned run %s (%s): %d objects in %d batches, %d source bucket(s)",
        run_id,
        mode,
        count,
        batcher.batches,
        len(buckets),
    )
    return {
        "run_id": run_id,
        "manifest": plan["manifest"],
        "destination": destination.to_dict(),
        "options": plan["options"],
        "objects": count,
        "batches": batcher.batches,
        # FetchCredentials fetches (or finds cached) credentials of each TEA endpoint the batches need
        "endpoints": sorted(batcher.endpoints) or [DEFAULT_ENDPOINT],
    }


MAX_LISTED_BUCKETS = 20


def _mode_field(mode: str) -> str:
    return "source.manifest" if mode == "manifest" else f"source.{mode}"


def _nothing_found(mode: str, request: JobRequest, stats: Mapping[str, Any]) -> str:
    filtered = " (after include/exclude)" if request.key_filter.active else ""
    if mode == "manifest":
        return f"lists no keys{filtered}"
    if mode == "prefix":
        return f"lists no objects in s3://{request.source_bucket}/{request.prefix}{filtered}"
    granules = stats.get("granules", 0)
    if not granules:
        return "the CMR query matched no granules"
    return f"the CMR query matched {granules} granules but none has a '{DIRECT_ACCESS}' s3:// URL{filtered}"


def _deadline_checker(remaining_seconds: Callable[[], float] | None, mode: str) -> Callable[[int], None]:
    def check(progress: int) -> None:
        if remaining_seconds is not None and remaining_seconds() < DEADLINE_RESERVE_SECONDS:
            what = {"prefix": "the listing", "cmr": "the CMR query", "manifest": "the manifest"}.get(mode, "the plan")
            raise InvalidInput(
                _mode_field(mode),
                f"{what} did not finish within the Plan's time limit ({progress} pages/objects done): narrow it "
                "(a longer prefix, include patterns, a shorter temporal range) or split the job",
            )

    return check


def _resolve(
    request: JobRequest,
    settings: PlanSettings,
    s3: Any,
    deps: SourceDeps,
    stats: dict[str, Any],
    check_deadline: Callable[[int], None],
) -> Iterator[_Resolved]:
    """The source objects of the request, streamed, each with its bucket and where it came from."""
    key_filter = request.key_filter
    if request.keys is not None:
        assert request.source_bucket is not None
        for index, spec in enumerate(request.keys):
            yield _Resolved(request.source_bucket, spec, f"source.keys[{index}]")
    elif request.manifest is not None:
        body = _open_manifest(s3, *request.manifest)
        try:
            fmt = sources.format_for(request.manifest[1], request.manifest_format)
            texts = sources.decode_chunks(sources.read_chunks(body), "source.manifest", MAX_MANIFEST_BYTES)
            for entry in sources.parse_manifest_stream(texts, fmt):
                bucket, spec = sources.validated_entry(entry, request.source_bucket)
                if key_filter.accepts(spec.key):
                    yield _Resolved(bucket, spec, entry.where)
        finally:
            body.close()
    elif request.prefix is not None:
        assert request.source_bucket is not None
        if deps.clients is None:
            raise ConfigurationError("prefix sources need TEA credentials: TEACOPY_CREDENTIALS_FUNCTION is not set")
        for spec in sources.list_prefix(
            deps.clients, request.source_bucket, request.prefix, key_filter, check_deadline=check_deadline, stats=stats
        ):
            yield _Resolved(request.source_bucket, spec, f"source.prefix (key {spec.key[:120]!r})")
    else:
        assert request.cmr is not None
        if deps.cmr is None:
            raise ConfigurationError("CMR sources need a CMR client (TEACOPY_CMR_URL)")
        client = deps.cmr
        time_limit = None
        if deps.remaining_seconds is not None:
            time_limit = max(1.0, deps.remaining_seconds() - DEADLINE_RESERVE_SECONDS)
        started = time.monotonic()
        try:
            for granule in client.granules(request.cmr, time_limit_seconds=time_limit):
                extra = granule.template_fields()
                for file in granule.files:
                    if not key_filter.accepts(file.key):
                        continue
                    where = f"source.cmr (granule {granule.granule_ur[:120]!r}, s3://{file.bucket}/{file.key[:120]})"
                    bucket = validate_bucket(file.bucket, where)
                    spec = ObjectSpec(validate_key(file.key, where), file.size, file.checksum)
                    yield _Resolved(bucket, spec, where, extra)
        finally:
            stats.update(client.stats.to_dict())
            stats["seconds"] = round(time.monotonic() - started, 3)


def _open_manifest(s3: Any, bucket: str, key: str) -> Any:
    """The manifest's streaming body (InvalidInput if it cannot be read or is too large)."""
    from botocore.exceptions import ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise InvalidInput("source.manifest", f"cannot read s3://{bucket}/{key}: {code}") from exc
    if response.get("ContentLength", 0) > MAX_MANIFEST_BYTES:
        response["Body"].close()
        raise InvalidInput("source.manifest", f"is larger than {MAX_MANIFEST_BYTES // 1024**2} MiB; split it")
    return response["Body"]
