"""The multipart upload of one large object: parts pipelined with bounded memory, paused and resumed.

The reading thread reads part after part from the source stream, updates the running checksums and
hands each part to a small pool of uploaders; at most ``inflight_parts`` parts are buffered or
uploading. Before each part it checks the stop signal, failed parts and the TEA credentials' expiry.

An upload that cannot finish in this invocation (Lambda deadline, credentials near expiry, a transient
error) is *paused*: the completed parts 1..n and the checksum states after part n go into a checkpoint
(``checkpoints.py``) and the upload stays open. Anything else aborts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lambdas.contracts.errors import CredentialsExpired, TransientCopyError
from lambdas.contracts.models import ObjectSpec, TeaCredentials
from lambdas.contracts.settings import CopySettings
from lambdas.copying.checkpoints import Checkpoint, CheckpointStore
from lambdas.copying.destination import DestinationBucket
from lambdas.copying.digests import NotResumable, StreamDigest, crc64nvme, crc64nvme_b64
from lambdas.copying.signals import POLL_SECONDS, Cancelled, IntegrityError, ObjectFailed, Paused, StopSignal
from lambdas.copying.stream import SourceStream
from lambdas.s3.limits import MAX_PARTS, MIB, MIN_PART_BYTES

logger = logging.getLogger(__name__)

MAX_STALLED_INVOCATIONS = 3  # consecutive invocations without a completed part before an object fails
CHECKPOINT_EVERY_SECONDS = 30.0  # also saved on every pause; a crash redoes at most this much


def part_size_for(size: int, configured: int) -> int:
    """Part size for an object of ``size`` bytes: >= 5 MiB, >= configured, and <= 10,000 parts."""
    needed = -(-size // MAX_PARTS)  # ceil(size / 10000)
    needed = -(-needed // MIB) * MIB  # rounded up to a MiB
    return max(configured, MIN_PART_BYTES, needed)


def saved_state(digest: StreamDigest) -> dict[str, Any] | None:
    """The digest's state to checkpoint, or None when it cannot be exported."""
    try:
        return digest.state()
    except NotResumable:
        return None


@dataclass
class Upload:
    """A multipart upload in progress (shared by the reading thread and the part uploaders)."""

    checkpoint: Checkpoint
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


class MultipartUploader:
    """Starts, continues, pauses and completes the multipart uploads of one batch (one per invocation).

    ``parts_done`` counts the parts this invocation uploaded, across objects: progress for the batch.
    """

    def __init__(
        self,
        *,
        settings: CopySettings,
        destination: DestinationBucket,
        checkpoints: CheckpointStore,
        credentials: TeaCredentials,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._destination = destination
        self._checkpoints = checkpoints
        self._credentials = credentials
        self._clock = clock
        self.parts_done = 0
        self._lock = threading.Lock()

    def start(
        self,
        stream: SourceStream,
        spec: ObjectSpec,
        dest_key: str,
        stop: StopSignal,
        *,
        size: int,
        etag: str,
        extra: dict[str, Any],
    ) -> None:
        """Create the upload (checkpointed before its first part) and copy the object from byte 0."""
        digest = StreamDigest(spec.checksum)
        upload_id = self._destination.create_multipart_upload(dest_key, extra)
        checkpoint = Checkpoint(
            key=spec.key,
            dest_bucket=self._destination.bucket,
            dest_key=dest_key,
            upload_id=upload_id,
            source_etag=etag,
            size=size,
            part_size=part_size_for(size, self._settings.part_size_bytes),
            parts=[],
            digest=saved_state(digest) or {},
        )
        # Known before the first part: if this invocation dies (timeout, crash), the next one, or
        # Summarize, finds the open upload and continues or aborts it.
        self._checkpoints.save(checkpoint)
        self._run(stream, spec, Upload(checkpoint=checkpoint, digest=digest), stop)

    def resume(self, stream: SourceStream, spec: ObjectSpec, checkpoint: Checkpoint, stop: StopSignal) -> None:
        """Continue a paused upload from its last completed part (``stream`` starts at that byte)."""
        try:
            digest = StreamDigest.resume(spec.checksum, checkpoint.digest)
        except (ValueError, NotResumable) as exc:
            raise IntegrityError(f"cannot resume the checksums of {stream.url}: {exc}") from exc
        self._run(stream, spec, Upload(checkpoint=checkpoint, digest=digest), stop)

    def _run(self, stream: SourceStream, spec: ObjectSpec, upload: Upload, stop: StopSignal) -> None:
        """Upload the remaining parts and complete; on a stop, pause (checkpoint) or abort."""
        checkpoint = upload.checkpoint
        logger.info(
            "multipart copy",
            extra={
                "key": spec.key,
                "dest_key": checkpoint.dest_key,
                "bytes": checkpoint.size,
                "part_size": checkpoint.part_size,
                "from_part": len(checkpoint.parts) + 1,
                "upload_id": checkpoint.upload_id,
            },
        )
        outcome = "abort"
        try:
            self._complete(stream, upload, self._upload_parts(stream, upload, stop))
            outcome = "completed"
        except Paused:
            outcome = "paused"
            raise
        except (Cancelled, CredentialsExpired, TransientCopyError) as exc:
            if isinstance(exc, Cancelled) and stop.reason != StopSignal.DEADLINE:
                raise  # a fatal batch error: abort (finally)
            if self._pause(upload, stream.url, stalled_if_idle=not isinstance(exc, CredentialsExpired)):
                outcome = "paused"
                if isinstance(exc, Cancelled):
                    raise Paused(spec.key) from exc
            raise
        finally:
            if outcome == "abort":
                self._destination.abort_multipart_upload(checkpoint.dest_key, checkpoint.upload_id)
                self._checkpoints.forget(spec.key)
            elif outcome == "completed":
                self._checkpoints.forget(spec.key)

    def _complete(self, stream: SourceStream, upload: Upload, parts: list[dict[str, Any]]) -> None:
        """Verify the expected checksum, then complete with the full-object CRC64NVME (S3 verifies it)."""
        mismatch = upload.digest.mismatch()
        if mismatch:
            raise IntegrityError(f"{mismatch} ({stream.url})")
        checkpoint = upload.checkpoint
        self._destination.complete_multipart_upload(
            checkpoint.dest_key, checkpoint.upload_id, parts, upload.digest.crc_b64()
        )

    def _upload_parts(self, stream: SourceStream, upload: Upload, stop: StopSignal) -> list[dict[str, Any]]:
        """Read the body part by part; at most ``inflight_parts`` parts are buffered or uploading."""
        checkpoint, digest = upload.checkpoint, upload.digest
        size, part_size = checkpoint.size, checkpoint.part_size
        inflight = max(1, self._settings.inflight_parts)
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
                upload.boundary[part_number] = saved_state(digest)
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
    def _check_parts(futures: list[Future[dict[str, Any]]], stop: StopSignal) -> None:
        """Re-raise the first failed part (in part order) in the reading thread; honor the stop signal."""
        for future in futures:
            if future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error
        if stop.is_set():
            raise Cancelled("multipart upload stopped")

    def _check_credentials(self, url: str, next_part: int) -> None:
        seconds_left = self._credentials.seconds_left(self._clock())
        if seconds_left <= self._settings.safety_margin_seconds:
            raise CredentialsExpired(
                f"TEA credentials expire in {seconds_left:.0f} s (safety margin "
                f"{self._settings.safety_margin_seconds} s): pausing {url} before part {next_part}"
            )

    def _upload_part(self, upload: Upload, part_number: int, data: bytes) -> dict[str, Any]:
        checkpoint = upload.checkpoint
        checksum = crc64nvme_b64(crc64nvme(data))
        etag = self._destination.upload_part(checkpoint.dest_key, checkpoint.upload_id, part_number, data, checksum)
        part: dict[str, Any] = {"PartNumber": part_number, "ETag": etag, "ChecksumCRC64NVME": checksum}
        with upload.lock:
            upload.done[part_number] = part
        with self._lock:
            self.parts_done += 1
        return part

    def _save_progress(self, upload: Upload) -> None:
        """Periodic checkpoint while uploading: a crash then redoes at most CHECKPOINT_EVERY_SECONDS."""
        parts, state = upload.contiguous()
        if state is not None and parts and len(parts) > len(upload.checkpoint.parts):
            self._checkpoints.save(upload.checkpoint.replace(parts=parts, digest=state, stalled=0))

    def _pause(self, upload: Upload, url: str, *, stalled_if_idle: bool) -> bool:
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
            raise ObjectFailed(
                f"no part of {checkpoint.part_size} bytes completed in {stalled} consecutive invocations "
                "(persistent errors, or a time budget too small for one part)"
            )
        if not self._checkpoints.save(checkpoint.replace(parts=parts, digest=state, stalled=stalled)):
            return False
        logger.info(
            "multipart copy paused, upload kept open",
            extra={
                "key": checkpoint.key,
                "parts_done": len(parts),
                "parts": -(-checkpoint.size // checkpoint.part_size),
                "upload_id": checkpoint.upload_id,
            },
        )
        return True
