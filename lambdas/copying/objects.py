"""One object from source to destination: the overwrite policy, skip-if-identical, dry run, single PUT.

Per object (``skip-if-identical``, the default): HEAD destination (404) + GET source + PUT destination.
A destination written by teacopy records the source ETag and size in its metadata; the GET then
carries ``IfNoneMatch=<recorded ETag>`` so an unchanged source answers 304 and nothing is transferred.
A batch-wide listing of the destination (``ExistingKeys``) saves the HEAD of keys known to be absent.

From ``stream_min_bytes`` up to the multipart threshold, an object whose source ETag is its MD5 is
*streamed*: the GET body is the PutObject body, read while it is sent (``VerifiedBody``), with
``Content-MD5`` = the ETag; the MD5 and the plan's checksum are checked before the last byte goes out.
Objects at or above the multipart threshold go to ``MultipartUploader``; one with a checkpoint is
continued from it. An integrity failure is retried once from zero, then recorded FAILED.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from typing import Any

from lambdas.contracts.errors import TransientCopyError
from lambdas.contracts.models import (
    COPIED,
    FAILED,
    OVERWRITE_POLICIES,
    SKIPPED,
    WOULD_COPY,
    WOULD_SKIP,
    Checksum,
    CopyBatchEvent,
    ObjectResult,
    ObjectSpec,
)
from lambdas.contracts.settings import CopySettings
from lambdas.copying.checkpoints import Checkpoint, CheckpointStore
from lambdas.copying.destination import DestinationBucket, ExistingKeys
from lambdas.copying.digests import StreamDigest
from lambdas.copying.multipart import MultipartUploader
from lambdas.copying.signals import Cancelled, IntegrityError, ObjectFailed, StopSignal
from lambdas.copying.source import SourceBucket
from lambdas.copying.stream import SourceStream, VerifiedBody
from lambdas.s3.limits import MAX_PUT_BYTES
from lambdas.s3.names import unwritable_destination_key

logger = logging.getLogger(__name__)

META_SOURCE_ETAG = "teacopy-source-etag"  # the source ETag exactly as S3 returned it (quotes included)
META_SOURCE_SIZE = "teacopy-source-size"
META_VERIFIED = "teacopy-verified"  # "<algorithm>:<hex>" of the expected checksum the bytes matched

SKIP_IDENTICAL, OVERWRITE_ALWAYS, OVERWRITE_NEVER = OVERWRITE_POLICIES  # options.overwrite, as the contract names them
_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')
_KMS = ("aws:kms", "aws:kms:dsse")


def passthrough_headers(response: dict[str, Any]) -> dict[str, str]:
    """The source's content headers the destination object keeps."""
    out: dict[str, str] = {}
    for name in ("ContentType", "ContentEncoding", "ContentDisposition", "CacheControl"):
        value = response.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    return out


def total_size(response: dict[str, Any]) -> int | None:
    """The whole object's size from a ranged GET's ``Content-Range: bytes a-b/total``."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    return None


def recorded_etag(spec: ObjectSpec, existing: dict[str, Any] | None) -> str | None:
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


def single_put_limit(settings: CopySettings) -> int:
    """Objects below this size go in one PutObject; from it on, in a multipart upload."""
    return min(settings.multipart_threshold_bytes, MAX_PUT_BYTES)


def streamable(settings: CopySettings, size: int) -> bool:
    """Whether an object of ``size`` bytes is streamed GET -> PutObject (when its ETag is its MD5)."""
    return settings.stream_min_bytes <= size < single_put_limit(settings)


def etag_md5(response: dict[str, Any]) -> str | None:
    """The MD5 (lower-case hex) a GetObject's ETag states, or None when the ETag is not one.

    S3's ETag is the body's MD5 for an object uploaded in one request and stored unencrypted or with SSE-S3;
    not for a multipart upload (``"<hex>-<parts>"``), SSE-KMS or SSE-C.
    """
    if response.get("ServerSideEncryption") in _KMS or response.get("SSECustomerAlgorithm"):
        return None
    match = _MD5_ETAG.fullmatch(str(response.get("ETag", "")))
    return match.group(1).lower() if match else None


def destination_metadata(spec: ObjectSpec, etag: str, size: int) -> dict[str, str]:
    """What the destination object records: the source ETag and size, and the checksum it matched."""
    metadata = {META_SOURCE_ETAG: etag, META_SOURCE_SIZE: str(size)}
    if spec.checksum is not None:
        metadata[META_VERIFIED] = f"{spec.checksum.algorithm}:{spec.checksum.value}"
    return metadata


class ObjectCopier:
    """Copies the objects of one batch, one ``copy`` call per object (called from several threads)."""

    def __init__(
        self,
        *,
        event: CopyBatchEvent,
        settings: CopySettings,
        source: SourceBucket,
        destination: DestinationBucket,
        existing: ExistingKeys,
        checkpoints: CheckpointStore,
        multipart: MultipartUploader,
    ) -> None:
        self._event = event
        self._settings = settings
        self._source = source
        self._destination = destination
        self._existing = existing
        self._checkpoints = checkpoints
        self._multipart = multipart
        # Held while a small object downloads (BatchRun sets it from the batch's pace; None: no gate).
        self.download_gate: contextlib.AbstractContextManager[object] | None = None

    def copy(self, spec: ObjectSpec, stop: StopSignal) -> ObjectResult:
        """Copy one object. Returns its final result or raises a batch-level error (or Cancelled)."""
        dest_key = self._event.destination.key_for_object(spec)
        started = time.monotonic()
        result: ObjectResult | None = None
        unwritable = unwritable_destination_key(dest_key)  # e.g. > 1,024 bytes after the prefix/mapping
        if unwritable is not None:
            result = ObjectResult(spec.key, dest_key, FAILED, reason=unwritable)
        for attempt in (1, 2) if result is None else ():
            if stop.is_set():
                raise Cancelled(spec.key)
            try:
                result = self._attempt(spec, dest_key, stop)
                break
            except IntegrityError as exc:
                self._checkpoints.discard(spec.key, dest_key)  # the retry starts from zero
                if attempt == 2:
                    result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                else:
                    logger.warning(
                        "integrity check failed: retrying once", extra={"key": spec.key, "reason": exc.reason}
                    )
            except ObjectFailed as exc:
                result = ObjectResult(spec.key, dest_key, FAILED, reason=exc.reason)
                break
        assert result is not None
        self._checkpoints.discard(spec.key, dest_key)  # final: a leftover checkpoint (and its upload) is obsolete
        log = logger.warning if result.status == FAILED else logger.info
        detail = {"key": spec.key, "dest_key": dest_key, "status": result.status, "bytes": result.bytes}
        detail["seconds"] = round(time.monotonic() - started, 3)
        if result.reason:
            detail["reason"] = result.reason
        log("object done", extra=detail)
        return result

    def _attempt(self, spec: ObjectSpec, dest_key: str, stop: StopSignal) -> ObjectResult:
        """One try: apply the overwrite policy, then dry-run, continue a checkpoint, or copy from byte 0."""
        options = self._event.options
        listing = self._existing.known()
        known_absent = listing is not None and dest_key not in listing
        existing = None if options.overwrite == OVERWRITE_ALWAYS or known_absent else self._destination.head(dest_key)
        if options.overwrite == OVERWRITE_NEVER and existing is not None:
            return ObjectResult(spec.key, dest_key, WOULD_SKIP if options.dry_run else SKIPPED, reason="exists")
        recorded = recorded_etag(spec, existing) if options.overwrite == SKIP_IDENTICAL else None
        if options.dry_run:
            return self._dry_run(spec, dest_key, recorded)

        checkpoint = self._checkpoints.load(spec.key, dest_key)
        if checkpoint is not None and recorded is None:
            return self._resume(spec, checkpoint, stop)
        if checkpoint is not None:
            self._checkpoints.discard(spec.key, dest_key)
            if recorded == checkpoint.source_etag and existing is not None:
                # This run's own upload of this source version was completed by an invocation that ended
                # (killed, timed out) before it recorded the object: it was copied, not skipped.
                logger.info("a completed upload was not recorded: recording it", extra={"key": spec.key})
                return ObjectResult(spec.key, dest_key, COPIED, bytes=checkpoint.size)
        return self._copy_whole(spec, dest_key, recorded, stop)

    def _streams(self, size: int) -> bool:
        """Whether an object of ``size`` bytes is streamed (when its ETag is its MD5)."""
        return self._destination.streamer is not None and streamable(self._settings, size)

    def _copy_whole(self, spec: ObjectSpec, dest_key: str, recorded: str | None, stop: StopSignal) -> ObjectResult:
        """GET the source (304 when it still has the ``recorded`` ETag: skipped) and write it, PUT or multipart."""
        params: dict[str, Any] = {"IfNoneMatch": recorded} if recorded is not None else {}
        threshold = single_put_limit(self._settings)
        if spec.size is not None and spec.size < threshold and not self._streams(spec.size):
            # one PutObject: download it whole, then upload
            with self.download_gate or contextlib.nullcontext():  # the batch's pace: downloads at once
                response = self._source.get_small(spec.key, threshold, **params)
                if response is None:
                    return ObjectResult(spec.key, dest_key, SKIPPED, reason="identical")
                size, data, url = self._download_whole(spec, response)
            self._put_small(data, url, dest_key, self._extra(spec, response, size), spec)
            return ObjectResult(spec.key, dest_key, COPIED, bytes=size)
        response = self._source.get(spec.key, **params)
        if response is None:
            return ObjectResult(spec.key, dest_key, SKIPPED, reason="identical")
        size = int(response["ContentLength"])
        if size < threshold:  # streamed, or the plan did not know the size: a small object after all
            md5 = etag_md5(response) if self._streams(size) else None
            if md5 is not None:
                self._put_streamed(spec, response, dest_key, md5)
                return ObjectResult(spec.key, dest_key, COPIED, bytes=size)
            size, data, url = self._download_whole(spec, response)
            self._put_small(data, url, dest_key, self._extra(spec, response, size), spec)
            return ObjectResult(spec.key, dest_key, COPIED, bytes=size)
        etag = str(response.get("ETag", ""))
        stream = SourceStream(self._source, spec.key, response["Body"], etag, 0)
        try:
            self._check_size(spec, response)
            extra = self._extra(spec, response, size)
            self._multipart.start(stream, spec, dest_key, stop, size=size, etag=etag, extra=extra)
        finally:
            stream.close()
        return ObjectResult(spec.key, dest_key, COPIED, bytes=size)

    def _put_streamed(self, spec: ObjectSpec, response: dict[str, Any], dest_key: str, md5: str) -> None:
        """One PutObject whose body is the GET's, sent as it arrives; verified before its last byte (VerifiedBody)."""
        stream = SourceStream(self._source, spec.key, response["Body"], str(response.get("ETag", "")), 0)
        try:
            size = self._check_size(spec, response)
            checks = [StreamDigest(Checksum(algorithm="MD5", value=md5))]
            if spec.checksum is not None:
                checks.append(StreamDigest(spec.checksum))
            content_md5 = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
            body = VerifiedBody(stream, size, checks)
            try:
                self._destination.put_stream(dest_key, body, size, content_md5, self._extra(spec, response, size))
            except (IntegrityError, TransientCopyError) as exc:
                if body.failure is not None and body.failure is not exc:
                    raise body.failure from exc  # what stopped the body, not botocore's retry of it
                raise
        finally:
            stream.close()

    def _download_whole(self, spec: ObjectSpec, response: dict[str, Any]) -> tuple[int, bytes, str]:
        """(size, body, url) of a small object: its whole body read and checked to end where it should."""
        stream = SourceStream(self._source, spec.key, response["Body"], str(response.get("ETag", "")), 0)
        try:
            size = self._check_size(spec, response)
            data = stream.read_exact(size, size)  # size < threshold: bounded
            stream.expect_end(size)
        finally:
            stream.close()
        return size, data, stream.url

    @staticmethod
    def _extra(spec: ObjectSpec, response: dict[str, Any], size: int) -> dict[str, Any]:
        """The destination object's metadata and the source's content headers."""
        etag = str(response.get("ETag", ""))
        return {"Metadata": destination_metadata(spec, etag, size), **passthrough_headers(response)}

    @staticmethod
    def _check_size(spec: ObjectSpec, response: dict[str, Any]) -> int:
        size = int(response["ContentLength"])
        if spec.size is not None and spec.size != size:
            raise ObjectFailed(f"size mismatch: the plan says {spec.size} bytes, the source has {size}")
        return size

    def _dry_run(self, spec: ObjectSpec, dest_key: str, recorded: str | None) -> ObjectResult:
        """What a real run would do with this object: HEAD the source (TEA credentials), write nothing."""
        head = self._source.head(spec.key)
        size = int(head.get("ContentLength", 0))
        if spec.size is not None and spec.size != size:
            raise ObjectFailed(f"size mismatch: the plan says {spec.size} bytes, the source has {size}")
        if recorded is not None and recorded == head.get("ETag"):
            return ObjectResult(spec.key, dest_key, WOULD_SKIP, reason="identical")
        return ObjectResult(spec.key, dest_key, WOULD_COPY, bytes=size)

    def _resume(self, spec: ObjectSpec, checkpoint: Checkpoint, stop: StopSignal) -> ObjectResult:
        """Continue a paused multipart upload from its last completed part."""
        url = self._source.url(spec.key)
        logger.info(
            "resuming a paused multipart copy",
            extra={
                "key": spec.key,
                "from_part": len(checkpoint.parts) + 1,
                "offset": checkpoint.offset,
                "bytes": checkpoint.size,
                "upload_id": checkpoint.upload_id,
            },
        )
        response = self._source.get(spec.key, Range=f"bytes={checkpoint.offset}-", IfMatch=checkpoint.source_etag)
        assert response is not None  # no IfNoneMatch: never 304
        stream = SourceStream(self._source, spec.key, response["Body"], checkpoint.source_etag, checkpoint.offset)
        try:
            if total_size(response) != checkpoint.size:
                raise IntegrityError(f"{url} changed size while being copied")
            self._multipart.resume(stream, spec, checkpoint, stop)
        finally:
            stream.close()
        return ObjectResult(spec.key, checkpoint.dest_key, COPIED, bytes=checkpoint.size)

    def _put_small(self, data: bytes, url: str, dest_key: str, extra: dict[str, Any], spec: ObjectSpec) -> None:
        """One PutObject: the whole body in memory (below the multipart threshold), verified first."""
        digest = StreamDigest(spec.checksum)
        digest.update(data)
        mismatch = digest.mismatch()
        if mismatch:
            raise IntegrityError(f"{mismatch} ({url})")
        self._destination.put_object(dest_key, data, digest.crc_b64(), extra)
