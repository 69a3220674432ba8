"""The CopyBatch logic: stream each object of one batch from the DAAC bucket into the destination.

Every AWS client is injected, so the whole engine runs against moto (or fakes) without patching:

- ``source_s3`` carries the temporary TEA credentials (GetObject only);
- ``dest_s3`` writes the destination (the Lambda role);
- ``staging_s3`` reads and writes the run's result log and upload checkpoints in the staging bucket.

Progress is durable in the staging bucket: each invocation writes result files
(``runs/<run_id>/results/<batch_id>/<seq>.json``, a JSON list of ``ObjectResult.to_dict()``) with the
objects it finished, and the next invocation of the same batch skips every key already recorded there.
So a retry after ``CredentialsExpired``, ``TransientCopyError``, a deadline continuation or a crash
resumes without re-reporting anything.

Per object (``skip-if-identical``, the default): HEAD destination (404) + GET source + PUT destination.
A destination written by teacopy records the source ETag and size in its metadata; the GET then
carries ``IfNoneMatch=<recorded ETag>`` so an unchanged source answers 304 and nothing is transferred.

Integrity: while streaming, the engine computes the object's full-object CRC64NVME (S3's own) and,
when the plan carries one, the expected MD5/SHA digest. The CRC64NVME goes with the PutObject /
CompleteMultipartUpload, so S3 itself rejects bytes that differ from what was read; the expected
digest is compared before the object is completed. Sizes are always checked. On any mismatch the
upload is aborted: the destination never shows a truncated or corrupt object.

Large objects are uploaded in parts, pipelined and with bounded memory (``inflight_parts`` parts
buffered or uploading). An object that cannot finish in one invocation (Lambda deadline, TEA
credentials near expiry, a transient error) is *paused*, not aborted: the upload id, the completed
parts and the running checksums are saved in a checkpoint (``runs/<run>/uploads/<batch>/…``) and the
next invocation continues from the last completed part with a ranged GET (``IfMatch`` the source ETag,
so a source that changed meanwhile restarts the object from zero). Summarize aborts the uploads of
checkpoints a failed run leaves behind.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError, IncompleteReadError

from lambdas.contracts import staging
from lambdas.contracts.errors import CredentialsExpired, DestinationAccessDenied, TeacopyError, TransientCopyError
from lambdas.contracts.models import (
    COPIED,
    FAILED,
    FINAL_STATUSES,
    SKIPPED,
    WOULD_COPY,
    WOULD_SKIP,
    CopyBatchEvent,
    ObjectResult,
    ObjectSpec,
    TeaCredentials,
)
from lambdas.contracts.settings import CopySettings
from lambdas.copying.digests import NotResumable, StreamDigest, crc64nvme, crc64nvme_b64
from lambdas.s3.codes import (
    CHANGED_CODES,
    DENIED_CODES,
    EXPIRED_CODES,
    INTEGRITY_CODES,
    NOT_FOUND_CODES,
    NOT_MODIFIED_CODES,
    error_message,
    error_status,
    is_transient,
)
from lambdas.s3.limits import MAX_PARTS, MAX_PUT_BYTES, MIB, MIN_PART_BYTES

logger = logging.getLogger(__name__)

META_SOURCE_ETAG = "teacopy-source-etag"  # the source ETag exactly as S3 returned it (quotes included)
META_SOURCE_SIZE = "teacopy-source-size"
META_VERIFIED = "teacopy-verified"  # "<algorithm>:<hex>" of the expected checksum the bytes matched
CHECKSUM_ALGORITHM = "CRC64NVME"  # S3's full-object checksum, computed by us while streaming
POLL_SECONDS = 0.25  # how often waiting loops look at the deadline and at failures
# Results are also written while a batch runs (progress for operators, less to redo after a crash).
FLUSH_EVERY_OBJECTS = 25
FLUSH_EVERY_SECONDS = 10.0
MAX_STREAM_REOPENS = 3  # ranged re-GETs of one source object after its stream broke (per invocation)
MAX_STALLED_INVOCATIONS = 3  # consecutive invocations without a completed part before an object fails
CHECKPOINT_EVERY_SECONDS = 30.0  # also saved on every pause; a crash redoes at most this much
LIST_MAX_PAGES = 2  # destination listing per batch: beyond 2,000 keys under the common prefix, HEAD instead

SKIP_IDENTICAL, OVERWRITE_ALWAYS, OVERWRITE_NEVER = "skip-if-identical", "always", "never"


# --- internal signals (never leave this module) ---------------------------------------------------


class _ObjectFailed(Exception):
    """This object cannot be copied; record it FAILED with ``reason`` and go on with the batch."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _IntegrityError(_ObjectFailed):
    """Bytes read or written do not match (size/checksum/changed source). Retried once from zero."""


class _Cancelled(Exception):
    """The coordinator asked in-flight work to stop (hard deadline or a batch-level error)."""


class _Paused(_Cancelled):
    """A multipart upload stopped at the deadline and was checkpointed: the next invocation continues it."""


class _Stop:
    """The coordinator's stop signal for in-flight objects, with why (the first reason wins)."""

    DEADLINE, FATAL = "deadline", "fatal"

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


# --- small helpers ----------------------------------------------------------------------------------


def part_size_for(size: int, configured: int) -> int:
    """Part size for an object of ``size`` bytes: >= 5 MiB, >= configured, and <= 10,000 parts."""
    needed = -(-size // MAX_PARTS)  # ceil(size / 10000)
    needed = -(-needed // MIB) * MIB  # rounded up to a MiB
    return max(configured, MIN_PART_BYTES, needed)


def _s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


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


def _passthrough_headers(response: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("ContentType", "ContentEncoding", "ContentDisposition", "CacheControl"):
        value = response.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    return out


def _total_size(response: dict[str, Any]) -> int | None:
    """The whole object's size from a ranged GET's ``Content-Range: bytes a-b/total``."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    return None


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
                    and entry.get("status") in FINAL_STATUSES
                ):
                    recorded.add(entry["key"])
    except (ClientError, BotoCoreError) as exc:
        raise TransientCopyError(f"could not read the result log s3://{bucket}/{prefix}") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise TransientCopyError(f"a result file under s3://{bucket}/{prefix} is not JSON") from exc
    return recorded


def list_destination(dest_s3: Any, bucket: str, dest_keys: list[str]) -> set[str] | None:
    """Which of a batch's destination keys exist, from one LIST of their common prefix (bounded).

    Most first runs copy into an empty prefix: one LIST (a PUT-class request, ~12 HEADs' price) then
    saves a HEAD per object (3 → ~2 requests per small object). Objects the listing shows still get
    their HEAD (the recorded source ETag lives in their metadata). None when the common prefix holds
    more than LIST_MAX_PAGES pages of keys or the listing fails: every object is HEADed, as before.
    """
    wanted = set(dest_keys)
    prefix = os.path.commonprefix(dest_keys)  # noqa: RUF071 — S3 prefixes are strings, not paths
    found: set[str] = set()
    try:
        paginator = dest_s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000})
        for number, page in enumerate(pages, start=1):
            found.update(item["Key"] for item in page.get("Contents", []) if item["Key"] in wanted)
            if page.get("IsTruncated") and number >= LIST_MAX_PAGES:
                return None
    except (ClientError, BotoCoreError) as exc:
        logger.info("listing s3://%s/%s failed (%s): HEAD each object instead", bucket, prefix, type(exc).__name__)
        return None
    return found


def _list_checkpoints(staging_s3: Any, bucket: str, prefix: str) -> set[str]:
    """Staging keys of the batch's upload checkpoints (one LIST; usually empty)."""
    try:
        return set(staging.list_keys(staging_s3, bucket, prefix))
    except (ClientError, BotoCoreError) as exc:
        raise TransientCopyError(f"could not list upload checkpoints s3://{bucket}/{prefix}") from exc


def _unique(objects: Iterable[ObjectSpec]) -> list[ObjectSpec]:
    seen: dict[str, ObjectSpec] = {}
    for spec in objects:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


@dataclass
class _Checkpoint:
    """A paused multipart upload: parts 1..len(parts) are uploaded, ``digest`` covers exactly their bytes."""

    key: str
    dest_bucket: str
    dest_key: str
    upload_id: str
    source_etag: str
    size: int
    part_size: int
    parts: list[dict[str, Any]]
    digest: dict[str, Any]
    stalled: int = 0

    @property
    def offset(self) -> int:
        return len(self.parts) * self.part_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "dest_bucket": self.dest_bucket,
            "dest_key": self.dest_key,
            "upload_id": self.upload_id,
            "source_etag": self.source_etag,
            "size": self.size,
            "part_size": self.part_size,
            "parts": self.parts,
            "digest": self.digest,
            "stalled": self.stalled,
        }

    @classmethod
    def from_dict(cls, data: Any) -> _Checkpoint:
        if not isinstance(data, dict):
            raise ValueError("checkpoint is not an object")
        parts = data["parts"]
        if not isinstance(parts, list) or [p.get("PartNumber") for p in parts] != list(range(1, len(parts) + 1)):
            raise ValueError("checkpoint parts are not 1..n")
        checkpoint = cls(
            key=str(data["key"]),
            dest_bucket=str(data["dest_bucket"]),
            dest_key=str(data["dest_key"]),
            upload_id=str(data["upload_id"]),
            source_etag=str(data["source_etag"]),
            size=int(data["size"]),
            part_size=int(data["part_size"]),
            parts=parts,
            digest=dict(data["digest"]),
            stalled=int(data.get("stalled", 0)),
        )
        if checkpoint.part_size < MIN_PART_BYTES or not 0 <= checkpoint.offset < checkpoint.size:
            raise ValueError("checkpoint sizes are inconsistent")
        return checkpoint


@dataclass
class _Upload:
    """A multipart upload in progress (shared by the reading thread and the part uploaders)."""

    checkpoint: _Checkpoint
    digest: StreamDigest
    # digest state after each part read in this invocation, to checkpoint at any completed-part boundary
    boundary: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)  # parts uploaded in this invocation
    lock: threading.Lock = field(default_factory=threading.Lock)

    def contiguous(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Completed parts 1..n with no gap, and the digest state after part n (None if unknown)."""
        with self.lock:
            parts = list(self.checkpoint.parts)
            state: dict[str, Any] | None = self.checkpoint.digest
            while len(parts) + 1 in self.done:
                number = len(parts) + 1
                parts.append(self.done[number])
                state = self.boundary.get(number)
        return parts, state


class _SourceStream:
    """The source body from ``offset`` on; a broken stream is re-opened with a ranged GET (bounded)."""

    def __init__(self, copier: _ObjectCopier, key: str, body: Any, etag: str, offset: int) -> None:
        self._copier, self._key, self._body, self._etag = copier, key, body, etag
        self.offset = offset
        self.reopens = 0
        self.url = _s3_url(copier.source_bucket, key)

    def read_exact(self, amount: int, total: int) -> bytes:
        """Exactly ``amount`` bytes (the object is ``total`` bytes long), or raise."""
        while True:
            try:
                data = _read_exact(self._body, amount, self.url)
                if len(data) < amount:
                    raise TransientCopyError(
                        f"source stream of {self.url} ended after {self.offset + len(data)} of {total} bytes"
                    )
            except TransientCopyError:
                if self.reopens >= MAX_STREAM_REOPENS or not self._etag:
                    raise
                self.reopens += 1
                logger.warning("source stream of %s broke at byte %d: re-opening it", self.url, self.offset)
                self._reopen()
                continue
            self.offset += len(data)
            return data

    def expect_end(self, size: int) -> None:
        """After ``size`` bytes the stream must be at its end (this also runs botocore's checksum check)."""
        if _read_exact(self._body, 1, self.url):
            raise _IntegrityError(f"size mismatch: {self.url} returned more than its ContentLength ({size} bytes)")

    def _reopen(self) -> None:
        self.close()
        response = self._copier.get_source(self._key, Range=f"bytes={self.offset}-", IfMatch=self._etag)
        assert response is not None  # no IfNoneMatch: never 304
        self._body = response["Body"]

    def close(self) -> None:
        try:
            self._body.close()
        except (BotoCoreError, OSError) as exc:
            logger.debug("closing the source stream of %s: %s", self.url, type(exc).__name__)


# --- one object ---------------------------------------------------------------------------------


@dataclass
class _ObjectCopier:
    event: CopyBatchEvent
    settings: CopySettings
    source_s3: Any
    dest_s3: Any
    staging_s3: Any
    credentials: TeaCredentials
    clock: Callable[[], datetime]
    checkpoint_keys: set[str]  # staging keys of this batch's upload checkpoints
    # the batch's destination keys: listed once, lazily (by the first object), to skip HEADs of absent keys
    dest_keys: list[str] = field(default_factory=list)
    _listing: set[str] | None = None
    _listed: bool = False
    parts_done: int = 0  # parts uploaded by this invocation (progress, across objects)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _known: dict[str, _Checkpoint] = field(default_factory=dict)  # source key -> checkpoint read or written

    @property
    def source_bucket(self) -> str:
        return self.event.batch.source_bucket

    @property
    def dest_bucket(self) -> str:
        return self.event.destination.bucket

    def copy(self, spec: ObjectSpec, stop: _Stop) -> ObjectResult:
        """Copy one object. Returns its final result or raises a batch-level error (or _Cancelled)."""
        dest_key = self.event.destination.key_for_object(spec)
        started = time.monotonic()
        result: ObjectResult | None = None
        for attempt in (1, 2):
            if stop.is_set():
                raise _Cancelled(spec.key)
            try:
                result = self._attempt(spec, dest_key, stop)
                break
            except _IntegrityError as exc:
                self._discard_checkpoint(spec)  # the retry starts from zero
                if attempt == 2:
                    result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                else:
                    logger.warning("retrying %s once: %s", _s3_url(self.source_bucket, spec.key), exc.reason)
            except _ObjectFailed as exc:
                result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                break
        assert result is not None
        self._discard_checkpoint(spec)  # final: a leftover checkpoint (and its upload) is obsolete
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

    def _attempt(self, spec: ObjectSpec, dest_key: str, stop: _Stop) -> ObjectResult:
        policy = self.event.options.overwrite
        listing = self._destination_listing()
        known_absent = listing is not None and dest_key not in listing
        existing = None if policy == OVERWRITE_ALWAYS or known_absent else self._head_dest(dest_key)
        if policy == OVERWRITE_NEVER and existing is not None:
            return ObjectResult(
                spec.key, dest_key, WOULD_SKIP if self.event.options.dry_run else SKIPPED, reason="exists"
            )
        recorded_etag = self._recorded_etag(spec, existing) if policy == SKIP_IDENTICAL else None
        if self.event.options.dry_run:
            return self._dry_run(spec, dest_key, recorded_etag)

        checkpoint = self._load_checkpoint(spec.key, dest_key)
        if checkpoint is not None and recorded_etag is None:
            return self._resume(spec, checkpoint, stop)
        if checkpoint is not None:
            self._discard_checkpoint(spec)

        params: dict[str, Any] = {"IfNoneMatch": recorded_etag} if recorded_etag is not None else {}
        response = self.get_source(spec.key, **params)
        if response is None:
            return ObjectResult(spec.key, dest_key, SKIPPED, reason="identical")
        size = int(response["ContentLength"])
        etag = str(response.get("ETag", ""))
        stream = _SourceStream(self, spec.key, response["Body"], etag, 0)
        try:
            if spec.size is not None and spec.size != size:
                raise _ObjectFailed(f"size mismatch: the plan says {spec.size} bytes, the source has {size}")
            metadata = {META_SOURCE_ETAG: etag, META_SOURCE_SIZE: str(size)}
            if spec.checksum is not None:
                metadata[META_VERIFIED] = f"{spec.checksum.algorithm}:{spec.checksum.value}"
            extra: dict[str, Any] = {"Metadata": metadata, **_passthrough_headers(response)}
            if size < min(self.settings.multipart_threshold_bytes, MAX_PUT_BYTES):
                self._put_small(stream, size, dest_key, extra, spec)
            else:
                self._put_multipart(stream, spec, dest_key, stop, size=size, etag=etag, extra=extra)
        finally:
            stream.close()
        return ObjectResult(spec.key, dest_key, COPIED, bytes=size)

    def _dry_run(self, spec: ObjectSpec, dest_key: str, recorded_etag: str | None) -> ObjectResult:
        """What a real run would do with this object: HEAD the source (TEA credentials), write nothing."""
        url = _s3_url(self.source_bucket, spec.key)
        try:
            head = self.source_s3.head_object(Bucket=self.source_bucket, Key=spec.key)
        except ClientError as exc:
            raise self._source_error(exc, url) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"HeadObject {url} failed: {type(exc).__name__}") from exc
        size = int(head.get("ContentLength", 0))
        if spec.size is not None and spec.size != size:
            raise _ObjectFailed(f"size mismatch: the plan says {spec.size} bytes, the source has {size}")
        if recorded_etag is not None and recorded_etag == head.get("ETag"):
            return ObjectResult(spec.key, dest_key, WOULD_SKIP, reason="identical")
        return ObjectResult(spec.key, dest_key, WOULD_COPY, bytes=size)

    def _destination_listing(self) -> set[str] | None:
        """Which destination keys of the batch exist (one LIST, on first use); None: HEAD each object."""
        with self._lock:
            if not self._listed:
                self._listed = True
                if self.event.options.overwrite != OVERWRITE_ALWAYS and self.dest_keys:
                    self._listing = list_destination(self.dest_s3, self.dest_bucket, self.dest_keys)
            return self._listing

    def _resume(self, spec: ObjectSpec, checkpoint: _Checkpoint, stop: _Stop) -> ObjectResult:
        """Continue a paused multipart upload from its last completed part."""
        url = _s3_url(self.source_bucket, spec.key)
        logger.info(
            "resuming %s at part %d (byte %d of %d, upload %s)",
            url,
            len(checkpoint.parts) + 1,
            checkpoint.offset,
            checkpoint.size,
            checkpoint.upload_id,
        )
        response = self.get_source(spec.key, Range=f"bytes={checkpoint.offset}-", IfMatch=checkpoint.source_etag)
        assert response is not None  # no IfNoneMatch: never 304
        stream = _SourceStream(self, spec.key, response["Body"], checkpoint.source_etag, checkpoint.offset)
        try:
            if _total_size(response) != checkpoint.size:
                raise _IntegrityError(f"{url} changed size while being copied")
            self._put_multipart(stream, spec, checkpoint.dest_key, stop, checkpoint=checkpoint)
        finally:
            stream.close()
        return ObjectResult(spec.key, checkpoint.dest_key, COPIED, bytes=checkpoint.size)

    def get_source(self, key: str, **params: Any) -> dict[str, Any] | None:
        """GetObject on the source; None when ``IfNoneMatch`` matched (304). Errors are classified."""
        url = _s3_url(self.source_bucket, key)
        try:
            response: dict[str, Any] = self.source_s3.get_object(Bucket=self.source_bucket, Key=key, **params)
            return response
        except ClientError as exc:
            code, status = error_status(exc)
            if "IfNoneMatch" in params and (code in NOT_MODIFIED_CODES or status == 304):
                return None
            if "IfMatch" in params and (code in CHANGED_CODES or status == 412):
                raise _IntegrityError(
                    f"{url} changed while being copied (its ETag is no longer {params['IfMatch']})"
                ) from exc
            raise self._source_error(exc, url) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"GetObject {url} failed: {type(exc).__name__}") from exc

    # -- destination checks

    def _head_dest(self, dest_key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.dest_s3.head_object(Bucket=self.dest_bucket, Key=dest_key)
            return head
        except ClientError as exc:
            code, status = error_status(exc)
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
        expected = spec.checksum
        if expected is not None and metadata.get(META_VERIFIED) != f"{expected.algorithm}:{expected.value}":
            return None  # not verified against this expected checksum: copy (and verify) again
        return str(etag)

    # -- error classification

    def _source_error(self, exc: ClientError, url: str) -> Exception:
        code, status = error_status(exc)
        if code in EXPIRED_CODES:
            return CredentialsExpired(f"S3 rejected the TEA credentials ({code}) reading {url}")
        if code in NOT_FOUND_CODES or status == 404:
            return _ObjectFailed(f"source {code}: {url} does not exist")
        if code in DENIED_CODES or status == 403:
            return _ObjectFailed(
                f"source {code}: {url} is not readable with these TEA credentials (no permission, or wrong endpoint)"
            )
        if is_transient(code, status):
            return TransientCopyError(f"source {code} (HTTP {status}) reading {url}")
        return _ObjectFailed(f"source {code} (HTTP {status}) reading {url}: {error_message(exc)}")

    def _dest_error(self, exc: ClientError, operation: str, dest_key: str) -> Exception:
        code, status = error_status(exc)
        where = _s3_url(self.dest_bucket, self.event.destination.prefix)
        if code in DENIED_CODES or status == 403:
            return DestinationAccessDenied(f"the copy role may not write {where} ({operation}: {code})")
        if code == "NoSuchBucket":
            return DestinationAccessDenied(f"destination bucket {self.dest_bucket} does not exist ({operation})")
        if code in INTEGRITY_CODES:
            return _IntegrityError(f"destination rejected the bytes of {_s3_url(self.dest_bucket, dest_key)} ({code})")
        if code == "NoSuchUpload":  # aborted under us (lifecycle rule, operator): start the object over
            return _IntegrityError(f"the multipart upload of {_s3_url(self.dest_bucket, dest_key)} vanished")
        if is_transient(code, status):
            return TransientCopyError(f"destination {code} (HTTP {status}) on {operation}")
        return _ObjectFailed(
            f"destination {code} on {operation} {_s3_url(self.dest_bucket, dest_key)}: {error_message(exc)}"
        )

    def _dest_call(self, operation: str, dest_key: str, method: Callable[..., Any], **params: Any) -> Any:
        try:
            return method(**params)
        except ClientError as exc:
            raise self._dest_error(exc, operation, dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"{operation} on the destination failed: {type(exc).__name__}") from exc

    # -- single PUT

    def _put_small(
        self, stream: _SourceStream, size: int, dest_key: str, extra: dict[str, Any], spec: ObjectSpec
    ) -> None:
        data = stream.read_exact(size, size)  # size < threshold: bounded
        stream.expect_end(size)
        digest = StreamDigest(spec.checksum)
        digest.update(data)
        mismatch = digest.mismatch()
        if mismatch:
            raise _IntegrityError(f"{mismatch} ({stream.url})")
        self._dest_call(
            "PutObject",
            dest_key,
            self.dest_s3.put_object,
            Bucket=self.dest_bucket,
            Key=dest_key,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumCRC64NVME=digest.crc_b64(),  # S3 verifies the bytes it stores against what we read
            **extra,
        )

    # -- multipart

    def _put_multipart(
        self,
        stream: _SourceStream,
        spec: ObjectSpec,
        dest_key: str,
        stop: _Stop,
        *,
        checkpoint: _Checkpoint | None = None,
        size: int = 0,
        etag: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        if checkpoint is None:
            digest = StreamDigest(spec.checksum)
            created = self._dest_call(
                "CreateMultipartUpload",
                dest_key,
                self.dest_s3.create_multipart_upload,
                Bucket=self.dest_bucket,
                Key=dest_key,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                ChecksumType="FULL_OBJECT",
                **(extra or {}),
            )
            checkpoint = _Checkpoint(
                key=spec.key,
                dest_bucket=self.dest_bucket,
                dest_key=dest_key,
                upload_id=str(created["UploadId"]),
                source_etag=etag,
                size=size,
                part_size=part_size_for(size, self.settings.part_size_bytes),
                parts=[],
                digest=_saved_state(digest) or {},
            )
            # Known before the first part: if this invocation dies (timeout, crash), the next one, or
            # Summarize, finds the open upload and continues or aborts it.
            self._save_checkpoint(checkpoint)
        else:
            try:
                digest = StreamDigest.resume(spec.checksum, checkpoint.digest)
            except (ValueError, NotResumable) as exc:
                raise _IntegrityError(f"cannot resume the checksums of {stream.url}: {exc}") from exc
        upload = _Upload(checkpoint=checkpoint, digest=digest)
        logger.info(
            "multipart %s -> %s: %d bytes in parts of %d from part %d (upload %s)",
            stream.url,
            _s3_url(self.dest_bucket, dest_key),
            checkpoint.size,
            checkpoint.part_size,
            len(checkpoint.parts) + 1,
            checkpoint.upload_id,
        )
        outcome = "abort"
        try:
            parts = self._upload_parts(stream, upload, stop)
            mismatch = digest.mismatch()
            if mismatch:
                raise _IntegrityError(f"{mismatch} ({stream.url})")
            crc = digest.crc_b64()
            self._dest_call(
                "CompleteMultipartUpload",
                dest_key,
                self.dest_s3.complete_multipart_upload,
                Bucket=self.dest_bucket,
                Key=dest_key,
                UploadId=checkpoint.upload_id,
                MultipartUpload={"Parts": parts},
                ChecksumCRC64NVME=crc,  # S3 rejects the completion if the stored bytes differ
                ChecksumType="FULL_OBJECT",
            )
            outcome = "completed"
        except _Paused:
            outcome = "paused"
            raise
        except (_Cancelled, CredentialsExpired, TransientCopyError) as exc:
            if isinstance(exc, _Cancelled) and stop.reason != _Stop.DEADLINE:
                raise  # a fatal batch error: abort (finally)
            if self._pause(upload, stalled_if_idle=not isinstance(exc, CredentialsExpired)):
                outcome = "paused"
                if isinstance(exc, _Cancelled):
                    raise _Paused(spec.key) from exc
            raise
        finally:
            if outcome == "abort":
                self._abort(dest_key, checkpoint.upload_id)
                self._forget_checkpoint(spec.key)
            elif outcome == "completed":
                self._forget_checkpoint(spec.key)

    def _upload_parts(self, stream: _SourceStream, upload: _Upload, stop: _Stop) -> list[dict[str, Any]]:
        """Read the body part by part; at most ``inflight_parts`` parts are buffered or uploading."""
        checkpoint, digest = upload.checkpoint, upload.digest
        size, part_size = checkpoint.size, checkpoint.part_size
        inflight = max(1, self.settings.inflight_parts)
        slots = threading.BoundedSemaphore(inflight)
        futures: list[Future[dict[str, Any]]] = []
        pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="part")
        last_save = time.monotonic()
        try:
            read_total = checkpoint.offset
            part_number = len(checkpoint.parts)
            while read_total < size:
                while not slots.acquire(timeout=POLL_SECONDS):
                    self._check_parts(futures, stop)
                self._check_parts(futures, stop)
                self._check_credentials(stream.url, part_number + 1)
                if time.monotonic() - last_save > CHECKPOINT_EVERY_SECONDS:
                    self._save_progress(upload)
                    last_save = time.monotonic()
                want = min(part_size, size - read_total)
                chunk = stream.read_exact(want, size)
                digest.update(chunk)
                read_total += want
                part_number += 1
                upload.boundary[part_number] = _saved_state(digest)
                future = pool.submit(self._upload_part, upload, part_number, chunk)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
                del chunk
            stream.expect_end(size)
            wait(futures)  # every byte is read: finish (and complete) even if cancelled meanwhile
            return [*checkpoint.parts, *(f.result() for f in futures)]
        finally:
            # On failure: drop queued parts and let running ones finish (they count for the checkpoint).
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _check_parts(futures: list[Future[dict[str, Any]]], stop: _Stop) -> None:
        """Re-raise the first failed part (in part order) in the reading thread; honor the stop signal."""
        for future in futures:
            if future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error
        if stop.is_set():
            raise _Cancelled("multipart upload stopped")

    def _check_credentials(self, url: str, next_part: int) -> None:
        seconds_left = self.credentials.seconds_left(self.clock())
        if seconds_left <= self.settings.safety_margin_seconds:
            raise CredentialsExpired(
                f"TEA credentials expire in {seconds_left:.0f} s (safety margin "
                f"{self.settings.safety_margin_seconds} s): pausing {url} before part {next_part}"
            )

    def _upload_part(self, upload: _Upload, part_number: int, data: bytes) -> dict[str, Any]:
        checkpoint = upload.checkpoint
        checksum = crc64nvme_b64(crc64nvme(data))
        response = self._dest_call(
            "UploadPart",
            checkpoint.dest_key,
            self.dest_s3.upload_part,
            Bucket=self.dest_bucket,
            Key=checkpoint.dest_key,
            UploadId=checkpoint.upload_id,
            PartNumber=part_number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumCRC64NVME=checksum,
        )
        part: dict[str, Any] = {"PartNumber": part_number, "ETag": response["ETag"], "ChecksumCRC64NVME": checksum}
        with upload.lock:
            upload.done[part_number] = part
        with self._lock:
            self.parts_done += 1
        return part

    def _abort(self, dest_key: str, upload_id: str) -> None:
        try:
            self.dest_s3.abort_multipart_upload(Bucket=self.dest_bucket, Key=dest_key, UploadId=upload_id)
            logger.info("aborted multipart upload %s of %s", upload_id, _s3_url(self.dest_bucket, dest_key))
        except ClientError as exc:
            if error_status(exc)[0] == "NoSuchUpload":
                return  # already completed or aborted
            logger.error(
                "could not abort multipart upload %s of %s (%s); Summarize retries, a lifecycle rule is the backstop",
                upload_id,
                _s3_url(self.dest_bucket, dest_key),
                error_status(exc)[0],
            )
        except BotoCoreError as exc:
            logger.error("could not abort multipart upload %s (%s)", upload_id, type(exc).__name__)

    # -- checkpoints (paused multipart uploads)

    def _checkpoint_key(self, key: str) -> str:
        return staging.upload_checkpoint_key(self.event.run_id, self.event.batch.batch_id, key)

    def _load_checkpoint(self, key: str, dest_key: str) -> _Checkpoint | None:
        staging_key = self._checkpoint_key(key)
        if staging_key not in self.checkpoint_keys:
            return None
        known = self._known.get(key)
        if known is not None:
            return known
        try:
            raw = staging.get_json(self.staging_s3, self.settings.staging_bucket, staging_key)
            checkpoint = _Checkpoint.from_dict(raw)
        except (ClientError, BotoCoreError) as exc:
            raise TransientCopyError(f"could not read the upload checkpoint of {key}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed upload checkpoint for %s: %s", key, exc)
            self._forget_checkpoint(key)
            return None
        if checkpoint.key != key or checkpoint.dest_key != dest_key or checkpoint.dest_bucket != self.dest_bucket:
            logger.warning("ignoring an upload checkpoint for %s that names another object", key)
            self._forget_checkpoint(key)
            return None
        self._known[key] = checkpoint
        return checkpoint

    def _save_checkpoint(self, checkpoint: _Checkpoint) -> bool:
        staging_key = self._checkpoint_key(checkpoint.key)
        try:
            staging.put_json(self.staging_s3, self.settings.staging_bucket, staging_key, checkpoint.to_dict())
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not save the upload checkpoint of %s: %s", checkpoint.key, type(exc).__name__)
            return False
        self.checkpoint_keys.add(staging_key)
        self._known[checkpoint.key] = checkpoint
        return True

    def _save_progress(self, upload: _Upload) -> None:
        """Periodic checkpoint while uploading: a crash then redoes at most CHECKPOINT_EVERY_SECONDS."""
        parts, state = upload.contiguous()
        if state is not None and parts and len(parts) > len(upload.checkpoint.parts):
            self._save_checkpoint(_replace(upload.checkpoint, parts=parts, digest=state, stalled=0))

    def _pause(self, upload: _Upload, *, stalled_if_idle: bool) -> bool:
        """Checkpoint the completed parts and keep the upload open. False: nothing worth keeping (abort).

        An invocation that completes no part (deadline or transient errors; not credential expiry,
        which the refresh fixes) counts as stalled; MAX_STALLED_INVOCATIONS in a row fail the object,
        so a part that can never be uploaded cannot hold its batch in a loop.
        """
        checkpoint = upload.checkpoint
        parts, state = upload.contiguous()
        if state is None or not parts:
            return False
        progressed = len(parts) > len(checkpoint.parts)
        stalled = 0 if progressed else checkpoint.stalled + (1 if stalled_if_idle else 0)
        if stalled >= MAX_STALLED_INVOCATIONS:
            raise _ObjectFailed(
                f"no part of {checkpoint.part_size} bytes completed in {stalled} consecutive invocations "
                "(persistent errors, or a time budget too small for one part)"
            )
        if not self._save_checkpoint(_replace(checkpoint, parts=parts, digest=state, stalled=stalled)):
            return False
        logger.info(
            "paused %s at part %d of %d (upload %s kept open)",
            _s3_url(self.source_bucket, checkpoint.key),
            len(parts),
            -(-checkpoint.size // checkpoint.part_size),
            checkpoint.upload_id,
        )
        return True

    def _forget_checkpoint(self, key: str) -> None:
        """Delete the checkpoint file (its upload was completed or aborted)."""
        staging_key = self._checkpoint_key(key)
        self._known.pop(key, None)
        if staging_key not in self.checkpoint_keys:
            return
        self.checkpoint_keys.discard(staging_key)
        try:
            staging.delete_key(self.staging_s3, self.settings.staging_bucket, staging_key)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not delete the checkpoint of %s: %s", key, type(exc).__name__)

    def _discard_checkpoint(self, spec: ObjectSpec) -> None:
        """Abort a checkpoint's upload and delete it (the object is final or starts over)."""
        key = spec.key
        if self._checkpoint_key(key) not in self.checkpoint_keys:
            return
        checkpoint = self._known.get(key)
        if checkpoint is None:
            try:
                checkpoint = self._load_checkpoint(key, self.event.destination.key_for_object(spec))
            except TransientCopyError:
                checkpoint = None
        if checkpoint is not None:
            self._abort(checkpoint.dest_key, checkpoint.upload_id)
        self._forget_checkpoint(key)


def _saved_state(digest: StreamDigest) -> dict[str, Any] | None:
    try:
        return digest.state()
    except NotResumable:
        return None


def _replace(checkpoint: _Checkpoint, **changes: Any) -> _Checkpoint:
    return _Checkpoint(**{**checkpoint.to_dict(), **changes})


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
    """Copy (the rest of) one batch.

    Returns ``{"batch_id", "done", "refresh", "copied", "skipped", "failed", "bytes", "parts"}`` with
    counts for this invocation. ``done`` is False when the batch must be invoked again with the same
    event: after the Lambda deadline, or — ``refresh`` True — when the TEA credentials neared expiry
    *after this invocation made progress* (refresh, then invoke again; progress means the refresh
    budget of the state machine is not spent). Raises CredentialsExpired when credentials expired
    before any progress (a counted refresh round), TransientCopyError (retry), DestinationAccessDenied
    (fatal). Whatever the exit, the objects finished by this invocation are recorded first: every
    FLUSH_EVERY_OBJECTS objects or FLUSH_EVERY_SECONDS while running, and on every exit, each time in
    a new result file; paused multipart uploads are checkpointed.

    Deadline: no new object starts once ``remaining_ms()`` is below the reserve (except the first);
    below half the reserve, in-flight multipart uploads are paused at their last completed part (the
    continuation resumes them), so the results of finished objects are always flushed in time.
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

    checkpoints = _list_checkpoints(
        staging_s3, settings.staging_bucket, staging.uploads_prefix(event.run_id, batch.batch_id)
    )

    copier = _ObjectCopier(
        event=event,
        settings=settings,
        source_s3=source_s3,
        dest_s3=dest_s3,
        staging_s3=staging_s3,
        credentials=credentials,
        clock=clock,
        checkpoint_keys=checkpoints,
        dest_keys=[event.destination.key_for_object(spec) for spec in pending],
    )
    concurrency = max(1, settings.object_concurrency)
    reserve_ms = settings.deadline_reserve_seconds * 1000
    hard_floor_ms = reserve_ms // 2  # below this, in-flight multipart uploads pause (checkpointed)
    cancel = _Stop()
    results: list[ObjectResult] = []
    errors: list[BaseException] = []
    in_flight: dict[Future[ObjectResult], ObjectSpec] = {}
    cancelled: list[ObjectSpec] = []  # objects started but cancelled before any kept progress (not recorded)
    paused: list[ObjectSpec] = []  # multipart uploads checkpointed for the next invocation (not recorded)
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
            elif isinstance(error, _Paused):
                paused.append(spec)
            elif isinstance(error, _Cancelled):
                cancelled.append(spec)
            else:
                logger.warning("object %s stopped the batch: %s: %s", spec.key, type(error).__name__, error)
                errors.append(error)
                if _is_fatal(error):
                    cancel.set(_Stop.FATAL)

    def wait_some() -> None:
        nonlocal stop
        done, _ = wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        harvest(done)
        if in_flight and not cancel.is_set() and remaining_ms() < hard_floor_ms:
            logger.warning("deadline: stopping %d in-flight objects", len(in_flight))
            stop = stop or "deadline"
            cancel.set(_Stop.DEADLINE)

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
                cancel.set(_Stop.FATAL)
            pool.shutdown(wait=True)
            harvest(list(in_flight))
        if stop == "deadline" and cancelled and not results and not copier.parts_done:
            # Nothing finished and no part kept in a whole invocation: the continuation would only
            # start over and loop. Report those objects failed instead. (Multipart uploads that made
            # progress were paused and continue; a paused one that stalls fails in the copier.)
            for spec in cancelled:
                results.append(
                    ObjectResult(
                        key=spec.key,
                        dest_key=event.destination.key_for_object(spec),
                        status=FAILED,
                        reason=("too large for one invocation: not even one part finished before the Lambda deadline"),
                    )
                )
            cancelled.clear()
    finally:
        flush_error = _flush(staging_s3, settings.staging_bucket, prefix, results[flushed:])

    copied = sum(1 for r in results if r.status == COPIED)
    skipped = sum(1 for r in results if r.status == SKIPPED)
    failed = sum(1 for r in results if r.status == FAILED)
    logger.info(
        "batch %s: copied=%d skipped=%d failed=%d bytes=%d parts=%d paused=%d stop=%s",
        batch.batch_id,
        copied,
        skipped,
        failed,
        sum(r.bytes for r in results if r.status == COPIED),
        copier.parts_done,
        len(paused),
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
    counts = {
        "batch_id": batch.batch_id,
        "copied": copied,
        "skipped": skipped,
        "failed": failed,
        "bytes": sum(r.bytes for r in results if r.status == COPIED),
        "parts": copier.parts_done,
    }
    if event.options.dry_run:
        counts["would_copy"] = sum(1 for r in results if r.status == WOULD_COPY)
        counts["would_skip"] = sum(1 for r in results if r.status == WOULD_SKIP)
        counts["bytes_to_copy"] = sum(r.bytes for r in results if r.status == WOULD_COPY)
    if errors:  # the most telling one: e.g. CredentialsExpired (refresh) rather than a sibling's throttling
        top = min(errors, key=_error_rank)
        if isinstance(top, CredentialsExpired) and (results or copier.parts_done) and flush_error is None:
            # Progress was made and kept: refresh without spending a refresh round of the state machine.
            logger.info("batch %s needs fresh credentials after progress: %s", batch.batch_id, top)
            return {**counts, "done": False, "refresh": True}
        if _is_fatal(top):  # the map child fails on it: leave the operator its own words (Summarize reports them)
            _record_fatal(staging_s3, settings.staging_bucket, event, top)
        raise top
    if flush_error is not None:
        raise flush_error
    return {**counts, "done": not pending and not cancelled and not paused, "refresh": False}


def _record_fatal(staging_s3: Any, bucket: str, event: CopyBatchEvent, error: BaseException) -> None:
    # TeacopyError messages are written for operators and never hold secrets; others: the type only.
    message = str(error)[:1000] if isinstance(error, TeacopyError) else "unexpected error (see the CopyBatch logs)"
    detail = {"batch": event.batch.batch_id, "error": type(error).__name__, "message": message}
    try:
        staging.record_event(staging_s3, bucket, event.run_id, "errors", detail)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not record the batch's fatal error: %s", type(exc).__name__)


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
