"""Plan: resolve the validated request's objects and stream them, batched, into the staged manifest."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lambdas.contracts import staging
from lambdas.contracts.errors import ConfigurationError, InvalidInput
from lambdas.contracts.models import (
    DEFAULT_ENDPOINT,
    ObjectSpec,
    format_time,
    parse_time,
)
from lambdas.contracts.settings import PlanSettings
from lambdas.earthdata.cmr import DIRECT_ACCESS, CmrClient, normalize_tea_url
from lambdas.planning.keys import SeenKeys, destination_key
from lambdas.planning.listing import SourceClients, list_prefix
from lambdas.planning.manifests import (
    MAX_MANIFEST_BYTES,
    decode_chunks,
    format_for,
    parse_manifest_stream,
    read_chunks,
    validated_entry,
)
from lambdas.planning.request import JobRequest, parse_request
from lambdas.planning.staged import MAX_BATCH_JSON_BYTES, STAGED_PART_BYTES, Batcher, StagedManifest
from lambdas.s3.codes import error_status, is_transient
from lambdas.s3.limits import MIB
from lambdas.s3.names import validate_bucket, validate_key

logger = logging.getLogger(__name__)

# A Plan stops listing/querying this long before its Lambda deadline (the error says what to narrow).
DEADLINE_RESERVE_SECONDS = 30


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
        logger.warning("the collection's TEA is not a configured endpoint", extra={"tea_url": url, "note": note})
        return settings.endpoint_for, note
    explicit = dict(settings.bucket_endpoints)
    logger.info(
        "the collection's TEA is a configured endpoint",
        extra={"cmr_query": request.cmr.describe(), "endpoint": name, "tea_url": url},
    )
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
                "incremental schedule without a CMR source: skip-if-identical applies",
                extra={"schedule": schedule.name},
            )
        return request, None
    since = deps.schedule_state(schedule.name)
    if since is None:
        logger.info(
            "no successful run of the schedule yet: the query is not narrowed", extra={"schedule": schedule.name}
        )
        return request, None
    explicit = request.cmr.updated_since
    if explicit is not None and parse_time(explicit) >= parse_time(since):
        return request, since
    logger.info(
        "narrowing the CMR query to granules updated since the last success",
        extra={"schedule": schedule.name, "updated_since": since},
    )
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
    seen = SeenKeys(sources=mode in ("manifest", "cmr"), destinations=not mapping.injective or not single_bucket)
    manifest_key = staging.manifest_key(run_id)
    writer = StagedManifest(s3, settings.staging_bucket, manifest_key, STAGED_PART_BYTES)
    endpoint_for, endpoint_note = _endpoint_chooser(request, settings, deps)
    batcher = Batcher(writer, settings.batch_max_objects, settings.batch_max_bytes, MAX_BATCH_JSON_BYTES, endpoint_for)
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
            dest_key = destination_key(
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
        "planned the run",
        extra={"mode": mode, "objects": count, "batches": batcher.batches, "source_buckets": len(buckets)},
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
            fmt = format_for(request.manifest[1], request.manifest_format)
            texts = decode_chunks(read_chunks(body), "source.manifest", MAX_MANIFEST_BYTES)
            for entry in parse_manifest_stream(texts, fmt):
                bucket, spec = validated_entry(entry, request.source_bucket)
                if key_filter.accepts(spec.key):
                    yield _Resolved(bucket, spec, entry.where)
        finally:
            body.close()
    elif request.prefix is not None:
        assert request.source_bucket is not None
        if deps.clients is None:
            raise ConfigurationError("prefix sources need TEA credentials: TEACOPY_CREDENTIALS_FUNCTION is not set")
        for spec in list_prefix(
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
        code, status = error_status(exc)
        if is_transient(code, status):
            raise  # throttled or a server error: not the input's fault (the handler retries it: AwsServiceUnavailable)
        raise InvalidInput("source.manifest", f"cannot read s3://{bucket}/{key}: {code}") from exc
    if response.get("ContentLength", 0) > MAX_MANIFEST_BYTES:
        response["Body"].close()
        raise InvalidInput("source.manifest", f"is larger than {MAX_MANIFEST_BYTES // MIB} MiB; split it")
    return response["Body"]
