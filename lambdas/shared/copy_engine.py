"""The CopyBatch logic: stream each object of one batch from the DAAC bucket into the destination.

Every AWS client is injected, so the whole engine runs against moto (or fakes) without patching:

- ``source_s3`` carries the temporary TEA credentials (GetObject only);
- ``dest_s3`` writes the destination (the Lambda role);
- ``staging_s3`` reads and writes the run's result log in the staging bucket.

Progress is durable in the staging bucket: each invocation writes ONE result file
(``runs/<run_id>/results/<batch_id>/<seq>.json``, a JSON list of ``ObjectResult.to_dict()``) with the
objects it finished, and the next invocation of the same batch skips every key already recorded there.
So a retry after ``CredentialsExpired``, ``TransientCopyError``, a deadline continuation or a crash
resumes without re-reporting anything.

Per object (``skip-if-identical``, the default): HEAD destination (404) + GET source + PUT destination.
A destination written by teacopy records the source ETag and size in its metadata; the GET then
carries ``IfNoneMatch=<recorded ETag>`` so an unchanged source answers 304 and nothing is transferred.
Objects at or above the multipart threshold are uploaded in parts with bounded memory
(``inflight_parts`` parts in flight); any failure aborts the multipart upload, so the destination
never shows a truncated object and no incomplete upload is left behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError, IncompleteReadError

from . import staging
from .errors import CredentialsExpired, DestinationAccessDenied, TeacopyError, TransientCopyError
from .models import COPIED, FAILED, SKIPPED, CopyBatchEvent, ObjectResult, ObjectSpec, TeaCredentials
from .settings import CopySettings

logger = logging.getLogger(__name__)

MIB = 1024**2
MIN_PART_BYTES = 5 * MIB  # S3's minimum part size (all parts but the last)
MAX_PARTS = 10_000  # S3's maximum number of parts per upload
MAX_PUT_BYTES = 5 * 1024**3  # S3's maximum single PutObject
META_SOURCE_ETAG = "teacopy-source-etag"  # the source ETag exactly as S3 returned it (quotes included)
META_SOURCE_SIZE = "teacopy-source-size"
CHECKSUM_ALGORITHM = "CRC32"
POLL_SECONDS = 0.25  # how often waiting loops look at the deadline and at failures
# Results are also written while a batch runs (progress for operators, less to redo after a crash).
FLUSH_EVERY_OBJECTS = 25
FLUSH_EVERY_SECONDS = 10.0

# S3 error codes, grouped by what the worker does about them.
EXPIRED_CODES = frozenset({"ExpiredToken", "TokenRefreshRequired", "InvalidToken", "ExpiredTokenException"})
NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
        "NoSuchUpload",  # the upload vanished under us (e.g. a lifecycle rule): redo the object
    }
)
INTEGRITY_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"})

SKIP_IDENTICAL, OVERWRITE_ALWAYS, OVERWRITE_NEVER = "skip-if-identical", "always", "never"


# --- internal signals (never leave this module) ---------------------------------------------------


class _ObjectFailed(Exception):
    """This object cannot be copied; record it FAILED with ``reason`` and go on with the batch."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _IntegrityError(_ObjectFailed):
    """Bytes read or written do not match (size/checksum). Retried once, then recorded FAILED."""


class _Cancelled(Exception):
    """The coordinator asked in-flight work to stop (hard deadline or a batch-level error)."""


# --- small helpers ----------------------------------------------------------------------------------


def part_size_for(size: int, configured: int) -> int:
    """Part size for an object of ``size`` bytes: >= 5 MiB, >= configured, and <= 10,000 parts."""
    needed = -(-size // MAX_PARTS)  # ceil(size / 10000)
    needed = -(-needed // MIB) * MIB  # rounded up to a MiB
    return max(configured, MIN_PART_BYTES, needed)


def _s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _error_code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {}) or {}
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    return str(error.get("Code", "") or status), int(status)


def _error_message(exc: ClientError) -> str:
    message = str((exc.response.get("Error", {}) or {}).get("Message", "") or "")
    return message[:200]


def _is_transient(code: str, status: int) -> bool:
    return code in TRANSIENT_CODES or status >= 500 or status == 429


def _read_exact(body: Any, amount: int, url: str) -> bytes:
    """Read exactly ``amount`` bytes (fewer only at end of stream). Stream failures are transient."""
    try:
        first = body.read(amount)
        if len(first) >= amount or not first:
            return bytes(first)
        pieces = [first]
        got = len(first)
        while got < amount:
            piece = body.read(amount - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)
    except FlexibleChecksumError as exc:
        raise _IntegrityError(f"source checksum mismatch reading {url}") from exc
    except IncompleteReadError as exc:
        raise TransientCopyError(f"source stream of {url} ended early") from exc
    except (BotoCoreError, OSError) as exc:
        raise TransientCopyError(f"reading {url} failed: {type(exc).__name__}") from exc


def _expect_end(body: Any, size: int, url: str) -> None:
    """After ``size`` bytes the stream must be at its end (this also runs botocore's checksum check)."""
    extra = _read_exact(body, 1, url)
    if extra:
        raise _IntegrityError(f"size mismatch: {url} returned more than its ContentLength ({size} bytes)")


def _truncated(url: str, got: int, size: int) -> TransientCopyError:
    return TransientCopyError(f"source stream of {url} ended after {got} of {size} bytes")


def _passthrough_headers(response: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("ContentType", "ContentEncoding", "ContentDisposition", "CacheControl"):
        value = response.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    return out


# --- resume -------------------------------------------------------------------------------------


def load_recorded_keys(staging_s3: Any, bucket: str, prefix: str) -> set[str]:
    """Source keys already recorded (any final status) in the batch's result files."""
    recorded: set[str] = set()
    try:
        keys = list(staging.list_keys(staging_s3, bucket, prefix))
        for key in keys:
            entries = staging.get_json(staging_s3, bucket, key)
            if not isinstance(entries, list):
                logger.warning("ignoring malformed result file s3://%s/%s", bucket, key)
                continue
            for entry in entries:
                if (
                    isinstance(entry, dict)
                    and isinstance(entry.get("key"), str)
                    and entry.get("status") in (COPIED, SKIPPED, FAILED)
                ):
                    recorded.add(entry["key"])
    except (ClientError, BotoCoreError) as exc:
        raise TransientCopyError(f"could not read the result log s3://{bucket}/{prefix}") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise TransientCopyError(f"a result file under s3://{bucket}/{prefix} is not JSON") from exc
    return recorded


def _unique(objects: Iterable[ObjectSpec]) -> list[ObjectSpec]:
    seen: dict[str, ObjectSpec] = {}
    for spec in objects:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


# --- one object ---------------------------------------------------------------------------------


@dataclass
class _ObjectCopier:
    event: CopyBatchEvent
    settings: CopySettings
    source_s3: Any
    dest_s3: Any

    @property
    def source_bucket(self) -> str:
        return self.event.batch.source_bucket

    @property
    def dest_bucket(self) -> str:
        return self.event.destination.bucket

    def copy(self, spec: ObjectSpec, cancel: threading.Event) -> ObjectResult:
        """Copy one object. Returns its final result or raises a batch-level error (or _Cancelled)."""
        dest_key = self.event.destination.key_for(spec.key)
        started = time.monotonic()
        result: ObjectResult | None = None
        for attempt in (1, 2):
            if cancel.is_set():
                raise _Cancelled(spec.key)
            try:
                result = self._attempt(spec, dest_key, cancel)
                break
            except _IntegrityError as exc:
                if attempt == 2:
                    result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                else:
                    logger.warning("retrying %s once: %s", _s3_url(self.source_bucket, spec.key), exc.reason)
            except _ObjectFailed as exc:
                result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                break
        assert result is not None
        log = logger.warning if result.status == FAILED else logger.info
        log(
            "%s %s -> %s bytes=%d %.2fs%s",
            result.status,
            _s3_url(self.source_bucket, spec.key),
            _s3_url(self.dest_bucket, dest_key),
            result.bytes,
            time.monotonic() - started,
            f" ({result.reason})" if result.reason else "",
        )
        return result

    def _attempt(self, spec: ObjectSpec, dest_key: str, cancel: threading.Event) -> ObjectResult:
        policy = self.event.options.overwrite
        existing = None if policy == OVERWRITE_ALWAYS else self._head_dest(dest_key)
        if policy == OVERWRITE_NEVER and existing is not None:
            return ObjectResult(spec.key, dest_key, SKIPPED, reason="exists")
        recorded_etag = self._recorded_etag(spec, existing) if policy == SKIP_IDENTICAL else None

        url = _s3_url(self.source_bucket, spec.key)
        params: dict[str, Any] = {"Bucket": self.source_bucket, "Key": spec.key}
        if recorded_etag is not None:
            params["IfNoneMatch"] = recorded_etag
        try:
            response = self.source_s3.get_object(**params)
        except ClientError as exc:
            code, status = _error_code(exc)
            if recorded_etag is not None and (code in NOT_MODIFIED_CODES or status == 304):
                return ObjectResult(spec.key, dest_key, SKIPPED, reason="identical")
            raise self._source_error(exc, url) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"GetObject {url} failed: {type(exc).__name__}") from exc

        body = response["Body"]
        try:
            size = int(response["ContentLength"])
            etag = str(response.get("ETag", ""))
            if spec.size is not None and spec.size != size:
                logger.info("%s is %d bytes now (planned %d)", url, size, spec.size)
            extra: dict[str, Any] = {
                "Metadata": {META_SOURCE_ETAG: etag, META_SOURCE_SIZE: str(size)},
                **_passthrough_headers(response),
            }
            if size < min(self.settings.multipart_threshold_bytes, MAX_PUT_BYTES):
                self._put_small(body, size, url, dest_key, extra)
            else:
                self._put_multipart(body, size, url, dest_key, extra, cancel)
        finally:
            body.close()
        return ObjectResult(spec.key, dest_key, COPIED, bytes=size)

    # -- destination checks

    def _head_dest(self, dest_key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.dest_s3.head_object(Bucket=self.dest_bucket, Key=dest_key)
            return head
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in ("404", "NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
                return None
            raise self._dest_error(exc, "HeadObject", dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"HeadObject on the destination failed: {type(exc).__name__}") from exc

    @staticmethod
    def _recorded_etag(spec: ObjectSpec, existing: dict[str, Any] | None) -> str | None:
        """The source ETag a previous teacopy copy recorded, if the destination looks complete."""
        if existing is None:
            return None
        metadata = existing.get("Metadata") or {}
        etag, recorded_size = metadata.get(META_SOURCE_ETAG), metadata.get(META_SOURCE_SIZE)
        length = existing.get("ContentLength")
        if not etag or recorded_size != str(length):
            return None
        if spec.size is not None and spec.size != length:
            return None  # the plan already says the source differs: no need to ask
        return str(etag)

    # -- error classification

    def _source_error(self, exc: ClientError, url: str) -> Exception:
        code, status = _error_code(exc)
        if code in EXPIRED_CODES:
            return CredentialsExpired(f"S3 rejected the TEA credentials ({code}) reading {url}")
        if code in NOT_FOUND_CODES or status == 404:
            return _ObjectFailed(f"source {code}: {url} does not exist")
        if code in DENIED_CODES or status == 403:
            return _ObjectFailed(
                f"source {code}: {url} is not readable with these TEA credentials (no permission, or wrong endpoint)"
            )
        if _is_transient(code, status):
            return TransientCopyError(f"source {code} (HTTP {status}) reading {url}")
        return _ObjectFailed(f"source {code} (HTTP {status}) reading {url}: {_error_message(exc)}")

    def _dest_error(self, exc: ClientError, operation: str, dest_key: str) -> Exception:
        code, status = _error_code(exc)
        where = _s3_url(self.dest_bucket, self.event.destination.prefix)
        if code in DENIED_CODES or status == 403:
            return DestinationAccessDenied(f"the copy role may not write {where} ({operation}: {code})")
        if code == "NoSuchBucket":
            return DestinationAccessDenied(f"destination bucket {self.dest_bucket} does not exist ({operation})")
        if code in INTEGRITY_CODES:
            return _IntegrityError(f"destination rejected the bytes of {_s3_url(self.dest_bucket, dest_key)} ({code})")
        if _is_transient(code, status):
            return TransientCopyError(f"destination {code} (HTTP {status}) on {operation}")
        return _ObjectFailed(
            f"destination {code} on {operation} {_s3_url(self.dest_bucket, dest_key)}: {_error_message(exc)}"
        )

    def _dest_call(self, operation: str, dest_key: str, method: Callable[..., Any], **params: Any) -> Any:
        try:
            return method(**params)
        except ClientError as exc:
            raise self._dest_error(exc, operation, dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"{operation} on the destination failed: {type(exc).__name__}") from exc

    # -- single PUT

    def _put_small(self, body: Any, size: int, url: str, dest_key: str, extra: dict[str, Any]) -> None:
        data = _read_exact(body, size, url)  # size < threshold: bounded
        if len(data) < size:
            raise _truncated(url, len(data), size)
        _expect_end(body, size, url)
        self._dest_call(
            "PutObject",
            dest_key,
            self.dest_s3.put_object,
            Bucket=self.dest_bucket,
            Key=dest_key,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            **extra,
        )

    # -- multipart

    def _put_multipart(
        self, body: Any, size: int, url: str, dest_key: str, extra: dict[str, Any], cancel: threading.Event
    ) -> None:
        part_size = part_size_for(size, self.settings.part_size_bytes)
        created = self._dest_call(
            "CreateMultipartUpload",
            dest_key,
            self.dest_s3.create_multipart_upload,
            Bucket=self.dest_bucket,
            Key=dest_key,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            **extra,
        )
        upload_id = str(created["UploadId"])
        logger.info(
            "multipart %s -> %s: %d bytes in parts of %d (upload %s)",
            url,
            _s3_url(self.dest_bucket, dest_key),
            size,
            part_size,
            upload_id,
        )
        completed = False
        try:
            parts = self._upload_parts(body, size, part_size, url, dest_key, upload_id, cancel)
            self._dest_call(
                "CompleteMultipartUpload",
                dest_key,
                self.dest_s3.complete_multipart_upload,
                Bucket=self.dest_bucket,
                Key=dest_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            completed = True
        finally:
            if not completed:
                self._abort(dest_key, upload_id)

    def _upload_parts(
        self,
        body: Any,
        size: int,
        part_size: int,
        url: str,
        dest_key: str,
        upload_id: str,
        cancel: threading.Event,
    ) -> list[dict[str, Any]]:
        """Read the body part by part; at most ``inflight_parts`` parts are buffered or uploading."""
        inflight = max(1, self.settings.inflight_parts)
        slots = threading.BoundedSemaphore(inflight)
        futures: list[Future[dict[str, Any]]] = []
        pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="part")
        try:
            read_total = 0
            part_number = 0
            while read_total < size:
                while not slots.acquire(timeout=POLL_SECONDS):
                    self._check_parts(futures, cancel)
                self._check_parts(futures, cancel)
                want = min(part_size, size - read_total)
                chunk = _read_exact(body, want, url)
                if len(chunk) < want:
                    raise _truncated(url, read_total + len(chunk), size)
                read_total += want
                part_number += 1
                future = pool.submit(self._upload_part, dest_key, upload_id, part_number, chunk)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
                del chunk
            _expect_end(body, size, url)
            if read_total != size:
                raise _IntegrityError(f"size mismatch: read {read_total} of {size} bytes from {url}")
            wait(futures)  # every byte is read: finish (and complete) even if cancelled meanwhile
            return [f.result() for f in futures]
        finally:
            # On failure: drop queued parts and let running ones finish before the caller aborts.
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _check_parts(futures: list[Future[dict[str, Any]]], cancel: threading.Event) -> None:
        """Re-raise the first failed part (in part order) in the reading thread; honor cancellation."""
        for future in futures:
            if future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error
        if cancel.is_set():
            raise _Cancelled("multipart upload cancelled")

    def _upload_part(self, dest_key: str, upload_id: str, part_number: int, data: bytes) -> dict[str, Any]:
        response = self._dest_call(
            "UploadPart",
            dest_key,
            self.dest_s3.upload_part,
            Bucket=self.dest_bucket,
            Key=dest_key,
            UploadId=upload_id,
            PartNumber=part_number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        part: dict[str, Any] = {"PartNumber": part_number, "ETag": response["ETag"]}
        if response.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def _abort(self, dest_key: str, upload_id: str) -> None:
        try:
            self.dest_s3.abort_multipart_upload(Bucket=self.dest_bucket, Key=dest_key, UploadId=upload_id)
            logger.info("aborted multipart upload %s of %s", upload_id, _s3_url(self.dest_bucket, dest_key))
        except (ClientError, BotoCoreError) as exc:
            logger.error(
                "could not abort multipart upload %s of %s (%s); the bucket's lifecycle rule must clean it up",
                upload_id,
                _s3_url(self.dest_bucket, dest_key),
                type(exc).__name__,
            )


# --- the batch ----------------------------------------------------------------------------------


def _error_rank(error: BaseException) -> int:
    """Which of several worker errors the batch reports (lowest wins)."""
    if isinstance(error, DestinationAccessDenied):
        return 0
    if not isinstance(error, TeacopyError):
        return 1  # a bug or an unexpected error: surface it
    if isinstance(error, CredentialsExpired):
        return 2
    if isinstance(error, TransientCopyError):
        return 3
    return 4


def _is_fatal(error: BaseException) -> bool:
    """Errors after which in-flight siblings should stop too (their work cannot be kept)."""
    return _error_rank(error) <= 1


def copy_batch(
    event: CopyBatchEvent,
    *,
    settings: CopySettings,
    source_s3: Any,
    dest_s3: Any,
    staging_s3: Any,
    credentials: TeaCredentials,
    clock: Callable[[], datetime],
    remaining_ms: Callable[[], int],
) -> dict[str, Any]:
    """Copy (the rest of) one batch. Returns ``{"batch_id", "done", "copied", "skipped", "failed", "bytes"}``.

    Counts are for this invocation. ``done`` is False when the Lambda deadline stopped the batch early
    (invoke again with the same event). Raises CredentialsExpired (refresh, then invoke again),
    TransientCopyError (retry), DestinationAccessDenied (fatal). Whatever the exit, the objects
    finished by this invocation are recorded first: every FLUSH_EVERY_OBJECTS objects or
    FLUSH_EVERY_SECONDS while running, and on every exit, each time in a new result file.

    Deadline: no new object starts once ``remaining_ms()`` is below the reserve (except the first);
    below half the reserve, in-flight multipart uploads are aborted (redone by the continuation) so
    the results of finished objects are always flushed before the Lambda timeout.
    """
    batch = event.batch
    prefix = staging.results_prefix(event.run_id, batch.batch_id)
    recorded = load_recorded_keys(staging_s3, settings.staging_bucket, prefix)
    pending = deque(spec for spec in _unique(batch.objects) if spec.key not in recorded)
    logger.info(
        "batch %s of run %s: %d objects, %d already recorded, %d to do",
        batch.batch_id,
        event.run_id,
        len(batch.objects),
        len(recorded),
        len(pending),
    )

    copier = _ObjectCopier(event=event, settings=settings, source_s3=source_s3, dest_s3=dest_s3)
    concurrency = max(1, settings.object_concurrency)
    reserve_ms = settings.deadline_reserve_seconds * 1000
    hard_floor_ms = reserve_ms // 2  # below this, in-flight multipart uploads are aborted and redone later
    cancel = threading.Event()
    results: list[ObjectResult] = []
    errors: list[BaseException] = []
    in_flight: dict[Future[ObjectResult], ObjectSpec] = {}
    cancelled: list[ObjectSpec] = []  # objects started but cancelled (not recorded)
    flushed = 0  # results[:flushed] are already in the result log
    last_flush = time.monotonic()
    stop: str | None = None
    expiry_message = ""

    def expiry_note(seconds_left: float) -> str:
        return (
            f"TEA credentials version {event.credentials.version} expire in {seconds_left:.0f} s "
            f"(safety margin {settings.safety_margin_seconds} s)"
        )

    def harvest(done: Iterable[Future[ObjectResult]]) -> None:
        for future in done:
            spec = in_flight.pop(future)
            error = future.exception()
            if error is None:
                results.append(future.result())
            elif isinstance(error, _Cancelled):
                cancelled.append(spec)
            else:
                logger.warning("object %s stopped the batch: %s: %s", spec.key, type(error).__name__, error)
                errors.append(error)
                if _is_fatal(error):
                    cancel.set()

    def wait_some() -> None:
        nonlocal stop
        done, _ = wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        harvest(done)
        if in_flight and not cancel.is_set() and remaining_ms() < hard_floor_ms:
            logger.warning("deadline: cancelling %d in-flight objects", len(in_flight))
            stop = stop or "deadline"
            cancel.set()

    pool = ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(pending))), thread_name_prefix="object")
    try:
        try:
            started = 0
            while pending and stop is None:
                harvest([f for f in list(in_flight) if f.done()])
                unflushed = len(results) - flushed
                if unflushed >= FLUSH_EVERY_OBJECTS or (
                    unflushed and time.monotonic() - last_flush > FLUSH_EVERY_SECONDS
                ):
                    progress_error = _flush(staging_s3, settings.staging_bucket, prefix, results[flushed:])
                    if progress_error is not None:
                        errors.append(progress_error)
                        stop = "error"
                        break
                    flushed, last_flush = len(results), time.monotonic()
                if errors:
                    stop = "error"
                    break
                if len(in_flight) >= concurrency:
                    wait_some()
                    continue
                spec = pending[0]
                seconds_left = credentials.seconds_left(clock())
                if seconds_left <= settings.safety_margin_seconds:
                    stop = "expired"
                    expiry_message = (
                        f"{expiry_note(seconds_left)}; stopped before {_s3_url(batch.source_bucket, spec.key)}"
                    )
                    break
                if started and remaining_ms() < reserve_ms:
                    stop = "deadline"
                    break
                pending.popleft()
                in_flight[pool.submit(copier.copy, spec, cancel)] = spec
                started += 1
            while in_flight:
                wait_some()
        finally:
            if in_flight:  # the coordinator itself failed: stop the workers, keep what finished
                cancel.set()
            pool.shutdown(wait=True)
            harvest(list(in_flight))
        if stop == "deadline" and cancelled and not results:
            # Nothing finished in a whole invocation: the continuation would only start over and
            # loop. Report those objects failed instead (copies spanning invocations: issue #3).
            for spec in cancelled:
                results.append(
                    ObjectResult(
                        key=spec.key,
                        dest_key=event.destination.key_for(spec.key),
                        status=FAILED,
                        reason="too large for one invocation: the copy did not finish before the Lambda deadline",
                    )
                )
            cancelled.clear()
    finally:
        flush_error = _flush(staging_s3, settings.staging_bucket, prefix, results[flushed:])

    copied = sum(1 for r in results if r.status == COPIED)
    skipped = sum(1 for r in results if r.status == SKIPPED)
    failed = sum(1 for r in results if r.status == FAILED)
    logger.info(
        "batch %s: copied=%d skipped=%d failed=%d bytes=%d stop=%s",
        batch.batch_id,
        copied,
        skipped,
        failed,
        sum(r.bytes for r in results if r.status == COPIED),
        stop,
    )
    if stop == "error" and pending and not any(isinstance(e, CredentialsExpired) for e in errors):
        # A sibling's transient error stopped the batch: if the credentials are near expiry anyway,
        # say so, so the retry starts with a refresh instead of failing on the margin check.
        seconds_left = credentials.seconds_left(clock())
        if seconds_left <= settings.safety_margin_seconds:
            stop = "expired"
            expiry_message = expiry_note(seconds_left)
    if stop == "expired":
        errors.append(CredentialsExpired(f"{expiry_message}; {len(results)} objects recorded by this invocation"))
    if errors:  # the most telling one: e.g. CredentialsExpired (refresh) rather than a sibling's throttling
        raise min(errors, key=_error_rank)
    if flush_error is not None:
        raise flush_error
    return {
        "batch_id": batch.batch_id,
        "done": not pending and not cancelled,
        "copied": copied,
        "skipped": skipped,
        "failed": failed,
        "bytes": sum(r.bytes for r in results if r.status == COPIED),
    }


def _flush(staging_s3: Any, bucket: str, prefix: str, results: list[ObjectResult]) -> TransientCopyError | None:
    """Write this invocation's results as one new file (never an empty one)."""
    if not results:
        return None
    key = prefix + staging.sequence_name()
    try:
        staging.put_json(staging_s3, bucket, key, [r.to_dict() for r in results])
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not record %d results at s3://%s/%s: %s", len(results), bucket, key, exc)
        error = TransientCopyError(f"could not record {len(results)} results in s3://{bucket}/{prefix}")
        error.__cause__ = exc
        return error
    logger.info("recorded %d results at s3://%s/%s", len(results), bucket, key)
    return None
