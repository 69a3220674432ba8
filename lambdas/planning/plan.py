"""Plan: resolve the validated request's objects and stream them, batched, into the staged manifest."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lambdas.contracts import staging
from lambdas.contracts.errors import RETRYABLE_ERRORS, ConfigurationError, InvalidInput, TeacopyError
from lambdas.contracts.models import (
    DEFAULT_ENDPOINT,
    ObjectSpec,
    format_time,
    parse_time,
)
from lambdas.contracts.settings import PlanSettings
from lambdas.earthdata.cmr import DIRECT_ACCESS, CmrClient, normalize_tea_url
from lambdas.planning import checkpoint as checkpoints
from lambdas.planning.checkpoint import PlanProgress
from lambdas.planning.keys import SeenKeys, destination_key
from lambdas.planning.listing import SourceClients, list_prefix_pages
from lambdas.planning.manifests import (
    MAX_MANIFEST_BYTES,
    decode_chunks,
    format_for,
    parse_manifest_stream,
    read_chunks,
    validated_entry,
)
from lambdas.planning.request import JobRequest, parse_request
from lambdas.planning.seen import DigestFile
from lambdas.planning.staged import MAX_BATCH_JSON_BYTES, STAGED_PART_BYTES, Batcher, StagedManifest
from lambdas.s3.codes import error_status, is_transient
from lambdas.s3.limits import MIB
from lambdas.s3.names import validate_bucket, validate_key
from lambdas.s3.writer import abort_staged_upload, complete_staged_upload

logger = logging.getLogger(__name__)

# A Plan stops listing/querying this long before its Lambda deadline, and continues in another invocation.
DEADLINE_RESERVE_SECONDS = 60  # also covers saving a checkpoint (the seen-keys file of 10M keys: ~10 s)


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


def _collection_endpoint(
    request: JobRequest, settings: PlanSettings, deps: SourceDeps
) -> tuple[str | None, str | None]:
    """For a CMR source, the configured TEA endpoint the collection's DirectDistributionInformation names
    (used for the granules' buckets that ``tea_endpoints[].buckets`` does not map), and a note for plan.json."""
    if request.cmr is None or deps.cmr is None or not settings.endpoint_urls:
        return None, None
    url = deps.cmr.credentials_endpoint(request.cmr)
    if url is None:
        return None, "the collection names no S3 credentials endpoint: bucket mapping applies"
    by_url = {normalize_tea_url(u): name for name, u in settings.endpoint_urls}
    name = by_url.get(url)
    if name is None:
        note = (
            f"the collection's TEA {url} is not configured (tea_endpoint / tea_endpoints): its buckets use the "
            "bucket mapping, and reads fail with AccessDenied if that is another DAAC"
        )
        logger.warning("the collection's TEA is not a configured endpoint", extra={"tea_url": url, "note": note})
        return None, note
    logger.info(
        "the collection's TEA is a configured endpoint",
        extra={"cmr_query": request.cmr.describe(), "endpoint": name, "tea_url": url},
    )
    return name, f"the collection's TEA is endpoint {name!r} ({url})"


def _endpoint_chooser(settings: PlanSettings, collection_endpoint: str | None) -> Callable[[str], str]:
    """Which TEA endpoint reads each source bucket: ``tea_endpoints[].buckets`` first, then the collection's."""
    if collection_endpoint is None:
        return settings.endpoint_for
    explicit = dict(settings.bucket_endpoints)
    return lambda bucket: explicit.get(bucket, collection_endpoint)


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
    return _narrowed(request, since), since


def _narrowed(request: JobRequest, since: str | None) -> JobRequest:
    """The request's CMR query narrowed to ``since`` (an explicit, later ``updated_since`` is kept)."""
    if since is None or request.cmr is None:
        return request
    explicit = request.cmr.updated_since
    if explicit is not None and parse_time(explicit) >= parse_time(since):
        return request
    return dataclasses.replace(request, cmr=request.cmr.with_updated_since(parse_time(since)))


def plan_job(
    raw_input: Any, run_id: str, *, settings: PlanSettings, s3: Any, deps: SourceDeps | None = None
) -> dict[str, Any]:
    """Validate, resolve, batch and stage, within this invocation's budget. Returns the small state the
    workflow carries on: the plan's (``manifest``, ``batches``, ...) when the manifest is staged, or
    ``{"run_id", "continuation": {...}}`` when planning must go on in another invocation (``checkpoint``).

    The whole input is validated first: a bad input never reads a manifest, lists a bucket (no TEA
    credentials are requested) or queries CMR. Objects are then streamed from the source into the
    staged manifest, page by page; when the budget (``settings.plan_budget_seconds``, or the Lambda's
    remaining time less DEADLINE_RESERVE_SECONDS) is spent after a page, the progress is checkpointed.
    A fatal error part-way aborts the staged upload and drops the checkpoint, so nothing is staged for a
    bad job; a retryable one (CmrUnavailable, ...) keeps them: the retry resumes from the checkpoint.
    """
    if not isinstance(run_id, str) or not re.match(r"^[\w.-]{1,80}$", run_id):
        raise InvalidInput("run_id", "must be 1-80 characters of letters, digits, '.', '_' or '-'")
    request = parse_request(raw_input, settings)
    deps = deps or SourceDeps()
    staged_plan = staging.get_json_if_present(s3, settings.staging_bucket, staging.plan_key(run_id))
    if isinstance(staged_plan, dict):  # a retry of the invocation that staged it: the same answer
        return _answer(staged_plan)
    progress = checkpoints.load(s3, settings.staging_bucket, run_id)
    if progress is not None and progress.state == checkpoints.COMPLETING:
        return _complete(s3, settings, run_id, progress)
    if progress is not None and progress.generation >= MAX_PLAN_INVOCATIONS:
        _abandon(s3, settings, run_id, None, progress)
        raise InvalidInput(
            _mode_field(request.mode),
            f"planning did not finish in {MAX_PLAN_INVOCATIONS} invocations ({progress.objects} objects planned): "
            "narrow the source or split the job",
        )
    planning: _Planning | None = None
    try:
        planning = _Planning(request, run_id, settings, s3, deps, progress)
        return planning.run()
    except TeacopyError as exc:
        if type(exc).__name__ not in RETRYABLE_ERRORS:  # retried errors resume from the checkpoint
            _abandon(s3, settings, run_id, planning.writer if planning is not None else None, progress)
        raise


def _abandon(
    s3: Any, settings: PlanSettings, run_id: str, writer: StagedManifest | None, progress: PlanProgress | None
) -> None:
    """A job refused part-way: abort the staged manifest's upload and drop the checkpoint (nothing is staged)."""
    if writer is not None:
        writer.abort()
    elif progress is not None and progress.manifest.get("upload_id"):
        abort_staged_upload(s3, settings.staging_bucket, staging.manifest_key(run_id), progress.manifest["upload_id"])
    checkpoints.discard(s3, settings.staging_bucket, run_id)


# The state machine loops Plan at most this many times (each loop adds ~7 events to the execution history).
MAX_PLAN_INVOCATIONS = 1000
ENTRIES_PER_PAGE = 1000  # inline keys and manifest entries are read in pages of this many (checkpoint points)
LIST_PAGE_SIZE = 1000  # keys per ListObjectsV2 page of a prefix source (S3's maximum)


class _Planning:
    """One Plan invocation: resume (or start), plan pages until the source ends or the budget is spent."""

    def __init__(
        self,
        request: JobRequest,
        run_id: str,
        settings: PlanSettings,
        s3: Any,
        deps: SourceDeps,
        progress: PlanProgress | None,
    ) -> None:
        self.started = time.monotonic()
        self.run_id, self.settings, self.s3, self.deps = run_id, settings, s3, deps
        bucket = settings.staging_bucket
        if progress is None:
            progress = PlanProgress(planned_at=format_time(deps.clock()))
            request, progress.since = _narrow_incremental(request, deps)
            progress.collection_endpoint, progress.endpoint_note = _collection_endpoint(request, settings, deps)
            tail = b""
        else:
            request = _narrowed(request, progress.since)
            tail = checkpoints.load_tail(s3, bucket, progress)
        self.request, self.progress = request, progress
        mapping = request.key_mapping
        # Inline keys are unique already; a listing never repeats a key. Destination keys can only collide
        # when the mapping is not injective or the objects come from several buckets.
        sources = request.mode in ("manifest", "cmr")
        destinations = not mapping.injective or request.source_bucket is None
        self.seen_file: DigestFile | None = None
        if sources or destinations:
            self.seen_file = checkpoints.load_seen(s3, bucket, progress)
        self.seen = SeenKeys(sources, destinations, self.seen_file)
        manifest_key = staging.manifest_key(run_id)
        if progress.manifest:
            self.writer = StagedManifest.resume(s3, bucket, manifest_key, progress.manifest, tail)
        else:
            self.writer = StagedManifest(s3, bucket, manifest_key, STAGED_PART_BYTES)
        self.batcher = Batcher(
            self.writer,
            settings.batch_max_objects,
            settings.batch_max_bytes,
            MAX_BATCH_JSON_BYTES,
            _endpoint_chooser(settings, progress.collection_endpoint),
        )
        if progress.batcher:
            self.batcher.restore(progress.batcher)
        self.buckets = set(progress.buckets)

    def _out_of_time(self) -> bool:
        elapsed = time.monotonic() - self.started
        if elapsed >= self.settings.plan_budget_seconds:
            return True
        remaining = self.deps.remaining_seconds
        return remaining is not None and remaining() < DEADLINE_RESERVE_SECONDS

    def run(self) -> dict[str, Any]:
        request, progress = self.request, self.progress
        mapping, destination = request.key_mapping, request.destination
        stats = progress.stats
        try:
            with closing(_pages(request, self.settings, self.s3, self.deps, stats, progress.cursor)) as pages:
                for page in pages:
                    for item in page.items:
                        self._add(item, mapping, destination)
                    progress.cursor = page.cursor
                    if page.cursor is None:
                        break
                    if self._out_of_time():
                        pages.close()  # its statistics are added to ``stats`` now
                        return self._continue()
            if progress.objects == 0 and progress.since is None:
                raise InvalidInput(_mode_field(request.mode), _nothing_found(request.mode, request, stats))
            self.batcher.finish()
            return self._finish()
        finally:
            self._drop_seen_file()

    def _drop_seen_file(self) -> None:
        """The local seen-keys file is scratch: the staged copy (if any) is the one a later invocation reads."""
        if self.seen_file is not None:
            self.seen_file.discard()
            self.seen_file = None

    def _add(self, item: _Resolved, mapping: Any, destination: Any) -> None:
        progress = self.progress
        if self.seen.is_duplicate_source(item.bucket, item.spec.key):
            if self.request.mode == "cmr":  # the same s3 URL in two granules: copy it once
                progress.duplicates += 1
                return
            raise InvalidInput(item.where, f"duplicate entry s3://{item.bucket}/{item.spec.key[:80]}")
        dest_key = destination_key(
            mapping, destination.prefix, item.bucket, item.spec.key, item.extra, item.where, self.seen
        )
        entry = item.spec.to_dict()
        if dest_key != destination.key_for(item.spec.key):
            entry["dest_key"] = dest_key
        self.batcher.add(item.bucket, entry, item.where)
        if item.bucket not in self.buckets:
            self.buckets.add(item.bucket)
        progress.objects += 1
        if item.spec.size is None:
            progress.unknown_sizes += 1
        else:
            progress.known_bytes += item.spec.size
        progress.checksums += int(item.spec.checksum is not None)

    def _record(self) -> None:
        progress = self.progress
        progress.buckets = sorted(self.buckets)
        progress.batcher = self.batcher.state()
        progress.manifest = self.writer.state()
        progress.seconds = round(progress.seconds + time.monotonic() - self.started, 3)

    def _continue(self) -> dict[str, Any]:
        """Checkpoint and hand over to the next invocation."""
        progress = self.progress
        self._record()
        checkpoints.save(
            self.s3, self.settings.staging_bucket, self.run_id, progress, self.writer.tail(), self.seen_file
        )
        self._drop_seen_file()
        logger.info(
            "planning continues in another invocation",
            extra={"invocation": progress.generation, "objects": progress.objects, "batches": self.batcher.batches},
        )
        return {
            "run_id": self.run_id,
            "continuation": {
                "invocation": progress.generation,
                "objects": progress.objects,
                "batches": self.batcher.batches,
            },
        }

    def _finish(self) -> dict[str, Any]:
        """The source is exhausted: upload the last part, checkpoint "completing", complete, write plan.json."""
        progress, bucket = self.progress, self.settings.staging_bucket
        self.writer.finish()  # the closing bracket and the last part (or the whole manifest in one PutObject)
        seen_entries = len(self.seen)
        self._drop_seen_file()
        self._record()
        progress.plan = self._plan_document(seen_entries)
        progress.state = checkpoints.COMPLETING
        if self.writer.upload_id is not None:  # a multipart manifest: completing must survive a retry
            checkpoints.save(self.s3, bucket, self.run_id, progress, b"", None)
        return _complete(self.s3, self.settings, self.run_id, progress)

    def _plan_document(self, seen_entries: int) -> dict[str, Any]:
        request, progress = self.request, self.progress
        mode, destination, mapping = request.mode, request.destination, request.key_mapping
        source: dict[str, Any] = {"mode": mode, "buckets": progress.buckets[:MAX_LISTED_BUCKETS]}
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
        stats = dict(progress.stats)
        if progress.duplicates:
            stats["duplicates_skipped"] = progress.duplicates
        plan = {
            "run_id": self.run_id,
            "manifest": {"bucket": self.settings.staging_bucket, "key": staging.manifest_key(self.run_id)},
            "source": source,
            "destination": {**destination.to_dict(), "key_mapping": mapping.to_dict()},
            "options": request.options.to_dict(),
            "objects": progress.objects,
            "batches": self.batcher.batches,
            "bytes_known": progress.known_bytes if progress.unknown_sizes == 0 else None,
            "sizes_known": progress.objects - progress.unknown_sizes,
            "checksums_known": progress.checksums,
            "source_stats": stats,
            "staged_manifest_bytes": self.writer.bytes_written,
            "endpoints": sorted(self.batcher.endpoints),
            "planned_at": progress.planned_at,
            "planning": {
                "invocations": progress.generation + 1,
                "seconds": progress.seconds,
                "seen_keys": seen_entries,
            },
        }
        if progress.endpoint_note:
            plan["endpoint_note"] = progress.endpoint_note
        if request.schedule is not None:
            plan["schedule"] = {**request.schedule.to_dict(), "since": progress.since}
        return plan


def _complete(s3: Any, settings: PlanSettings, run_id: str, progress: PlanProgress) -> dict[str, Any]:
    """Complete the staged manifest's upload (idempotent: a retry finds it completed), write plan.json, clean up."""
    plan = progress.plan
    assert plan is not None
    bucket, key = settings.staging_bucket, staging.manifest_key(run_id)
    upload_id, parts = progress.manifest.get("upload_id"), progress.manifest.get("parts") or []
    if upload_id is not None:
        complete_staged_upload(s3, bucket, key, upload_id, parts)
    staging.put_json(s3, bucket, staging.plan_key(run_id), plan)
    checkpoints.discard(s3, bucket, run_id)
    logger.info(
        "planned the run",
        extra={
            "mode": plan["source"]["mode"],
            "objects": plan["objects"],
            "batches": plan["batches"],
            "source_buckets": len(plan["source"]["buckets"]),
            "invocations": plan["planning"]["invocations"],
        },
    )
    return _answer(plan)


def _answer(plan: Mapping[str, Any]) -> dict[str, Any]:
    """What the workflow carries on from a staged plan (plan.json)."""
    destination = {k: v for k, v in plan["destination"].items() if k != "key_mapping"}
    return {
        "run_id": plan["run_id"],
        "manifest": plan["manifest"],
        "destination": destination,
        "options": plan["options"],
        "objects": plan["objects"],
        "batches": plan["batches"],
        # FetchCredentials fetches (or finds cached) credentials of each TEA endpoint the batches need
        "endpoints": list(plan["endpoints"]) or [DEFAULT_ENDPOINT],
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


@dataclass
class _Page:
    """Source objects, and where the source continues after them (None: it is exhausted)."""

    items: list[_Resolved]
    cursor: dict[str, Any] | None


def _pages(
    request: JobRequest,
    settings: PlanSettings,
    s3: Any,
    deps: SourceDeps,
    stats: dict[str, Any],
    cursor: dict[str, Any] | None,
) -> Generator[_Page, None, None]:
    """The request's source objects from ``cursor`` on, page by page, each object with its bucket and where it
    came from. Page boundaries are the points a plan can stop at and continue from (``cursor``)."""
    key_filter = request.key_filter
    if request.keys is not None:
        bucket = request.source_bucket
        assert bucket is not None
        done = int((cursor or {}).get("entries", 0))
        while done < len(request.keys):
            end = min(len(request.keys), done + ENTRIES_PER_PAGE)
            items = [_Resolved(bucket, request.keys[i], f"source.keys[{i}]") for i in range(done, end)]
            done = end
            yield _Page(items, {"entries": done} if done < len(request.keys) else None)
        if not request.keys:
            yield _Page([], None)
    elif request.manifest is not None:
        yield from _manifest_pages(request, s3, int((cursor or {}).get("entries", 0)))
    elif request.prefix is not None:
        bucket = request.source_bucket
        assert bucket is not None
        if deps.clients is None:
            raise ConfigurationError("prefix sources need TEA credentials: TEACOPY_CREDENTIALS_FUNCTION is not set")
        listing = list_prefix_pages(
            deps.clients,
            bucket,
            request.prefix,
            key_filter,
            token=(cursor or {}).get("token"),
            page_size=LIST_PAGE_SIZE,
            stats=stats,
        )
        for listed in listing:
            items = [_Resolved(bucket, spec, f"source.prefix (key {spec.key[:120]!r})") for spec in listed.objects]
            yield _Page(items, None if listed.token is None else {"token": listed.token})
    else:
        assert request.cmr is not None
        if deps.cmr is None:
            raise ConfigurationError("CMR sources need a CMR client (TEACOPY_CMR_URL)")
        yield from _cmr_pages(request, deps, deps.cmr, stats, cursor)


def _manifest_pages(request: JobRequest, s3: Any, skip: int) -> Iterator[_Page]:
    """Manifest entries in pages of ENTRIES_PER_PAGE; a continuation reads the manifest again and skips the
    ``skip`` entries already planned (parsed, not resolved: a 256 MiB manifest re-reads in well under a minute)."""
    assert request.manifest is not None
    body = _open_manifest(s3, *request.manifest)
    try:
        fmt = format_for(request.manifest[1], request.manifest_format)
        texts = decode_chunks(read_chunks(body), "source.manifest", MAX_MANIFEST_BYTES)
        items: list[_Resolved] = []
        read = 0
        for entry in parse_manifest_stream(texts, fmt):
            read += 1
            if read <= skip:
                continue
            bucket, spec = validated_entry(entry, request.source_bucket)
            if request.key_filter.accepts(spec.key):
                items.append(_Resolved(bucket, spec, entry.where))
            if read % ENTRIES_PER_PAGE == 0:
                yield _Page(items, {"entries": read})
                items = []
        yield _Page(items, None)
    finally:
        body.close()


def _cmr_pages(
    request: JobRequest, deps: SourceDeps, client: CmrClient, stats: dict[str, Any], cursor: dict[str, Any] | None
) -> Generator[_Page, None, None]:
    """CMR pages from ``cursor`` (CMR-Search-After, and the granules read so far). Every page must arrive
    DEADLINE_RESERVE_SECONDS before the Lambda's deadline (else CmrUnavailable: retried from the checkpoint)."""
    assert request.cmr is not None
    key_filter = request.key_filter
    time_limit = None
    if deps.remaining_seconds is not None:
        time_limit = max(1.0, deps.remaining_seconds() - DEADLINE_RESERVE_SECONDS)
    started = time.monotonic()
    cursor = cursor or {}
    try:
        for page in client.pages(
            request.cmr,
            search_after=cursor.get("search_after"),
            fetched=int(cursor.get("fetched", 0)),
            time_limit_seconds=time_limit,
        ):
            items: list[_Resolved] = []
            for granule in page.granules:
                extra = granule.template_fields()
                for file in granule.files:
                    if not key_filter.accepts(file.key):
                        continue
                    where = f"source.cmr (granule {granule.granule_ur[:120]!r}, s3://{file.bucket}/{file.key[:120]})"
                    bucket = validate_bucket(file.bucket, where)
                    spec = ObjectSpec(validate_key(file.key, where), file.size, file.checksum)
                    items.append(_Resolved(bucket, spec, where, extra))
            next_cursor = None
            if page.search_after is not None:
                next_cursor = {"search_after": page.search_after, "fetched": page.fetched}
            yield _Page(items, next_cursor)
    finally:
        _add_stats(stats, client.stats.to_dict())
        stats["seconds"] = round(float(stats.get("seconds", 0.0)) + time.monotonic() - started, 3)


def _add_stats(total: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Statistics of one invocation added to the plan's: counters summed, ``hits`` the latest."""
    for name, value in part.items():
        if name == "hits" or not isinstance(value, int | float) or isinstance(value, bool):
            total[name] = value
        else:
            total[name] = (
                round(total.get(name, 0) + value, 3) if isinstance(value, float) else total.get(name, 0) + value
            )


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
