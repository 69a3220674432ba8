"""One CopyBatch invocation: which objects to copy, how many at once, when to stop, what to report.

``copy_batch`` (the entry point handlers, the bench and the tests call) runs one ``BatchRun``:

1. load what is recorded: skip the objects the batch's result log already holds; list its checkpoints
   (both LISTs at once; their round trip is the latency the scheduler uses);
2. schedule objects on a pool of up to ``object_concurrency`` threads (``ObjectCopier.copy`` each),
   flushing results as they come in, until the batch is done or it must stop: TEA credentials within
   the safety margin (``expired``), the Lambda deadline (``deadline``), or an error (``error``);
3. harvest: finished objects are recorded, paused multipart uploads continue next time, errors
   are ranked (the most telling one is reported);
4. flush the results, then decide: done, not done (continuation), refresh, or raise.

How many objects are in flight (``Pace``) follows from the batch and the measured latency, within two
bounds: at most ``object_concurrency`` objects, and at most ``CopySettings.buffer_budget_bytes`` buffered (a
quarter of the function's memory; a small object holds its whole body, a multipart one up to
``inflight_parts x part_size``; the first object always starts), and at most ``STREAMS_IN_FLIGHT`` streamed
objects (``objects.py``: GET body into the PutObject as it arrives).
Small objects are latency-bound: enough GETs must be in flight to fill the network during a round trip (the
bandwidth-delay product, ``NETWORK_BYTES_PER_SECOND x latency / size``, doubled for jitter). Larger
ones are bandwidth-bound: one GET already fills the network, so their downloads go one or two at a time
while the objects downloaded before them are uploaded; otherwise equal-sized objects would all
download together and then all upload together, leaving one direction of the network idle. Those
downloads also start spaced (``DownloadGate``), so they do not finish together either.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from lambdas.contracts import staging
from lambdas.contracts.errors import CredentialsExpired, DestinationAccessDenied, TeacopyError, TransientCopyError
from lambdas.contracts.models import (
    COPIED,
    FAILED,
    SKIPPED,
    WOULD_COPY,
    WOULD_SKIP,
    CopyBatchEvent,
    CopyBatchResult,
    ObjectResult,
    ObjectSpec,
    TeaCredentials,
)
from lambdas.contracts.settings import CopySettings
from lambdas.copying.checkpoints import CheckpointStore
from lambdas.copying.destination import DestinationBucket, ExistingKeys
from lambdas.copying.multipart import MultipartUploader
from lambdas.copying.objects import OVERWRITE_ALWAYS, ObjectCopier, single_put_limit, streamable
from lambdas.copying.results import ResultLog, load_recorded_keys, record_fatal
from lambdas.copying.signals import POLL_SECONDS, Cancelled, Paused, StopSignal
from lambdas.copying.source import SourceBucket

logger = logging.getLogger(__name__)

# Why scheduling stopped before the batch was done (logged as ``stop=``).
STOP_EXPIRED, STOP_DEADLINE, STOP_ERROR = "expired", "deadline", "error"

# What one Lambda's network sustains after its burst (research.md: ~75 MiB/s) and one S3 connection
# carries (~85-90 MB/s): the scheduler's model of the pipe it fills.
NETWORK_BYTES_PER_SECOND = 75 * 1024**2
CONNECTION_BYTES_PER_SECOND = 85 * 1024**2
MIN_SPACING_S = 0.005  # download starts closer than this are not spaced (small objects: latency-bound)
LATENCY_BOUNDS_S = (0.005, 0.2)  # the measured round trip, clamped (a slow LIST must not explode concurrency)
# Streamed objects (GET body -> PutObject as it arrives, objects.py) in flight at once. Each one moves at the
# pace of its slower side, so a few fill the link; more only share it finer and start later. `make bench`,
# 20 x 50 MiB, modelled S3 (2026-12-01): 3 streams 73.0 MiB/s, 4 streams 72.9-73.1 (three runs), 5 (what the
# byte budget allows at 1,024 MB) 71.6-72.5 (four runs).
STREAMS_IN_FLIGHT = 4


class DownloadGate:
    """At most ``slots`` small-object downloads at once; the first ``slots`` start ``spacing_s`` apart.

    A CRT GetObject hands its body over in one piece when the last byte has arrived, and copying it
    into Python takes a moment (~0.1 s per 50 MiB on one vCPU). Downloads started together finish
    together and copy together, leaving the link idle meanwhile. Started ``size / link / slots`` apart
    they stay apart: each slot is refilled as it frees, so only the batch's first starts are spaced, and
    the gate never caps the download rate (on a network faster than the model, nothing waits longer).
    """

    def __init__(self, slots: int, spacing_s: float) -> None:
        self.slots = slots
        self.spacing_s = spacing_s
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._started = 0
        self._first_start = 0.0

    def __enter__(self) -> DownloadGate:
        self._semaphore.acquire()
        with self._lock:
            now = time.monotonic()
            if self._started == 0:
                self._first_start = now
            start = self._first_start + self._started * self.spacing_s if self._started < self.slots else now
            self._started += 1
        if start > now:
            time.sleep(start - now)  # at most (slots - 1) x spacing_s: one object's transfer time
        return self

    def __exit__(self, *_: object) -> None:
        self._semaphore.release()


class Pace:
    """Objects in flight for one batch: a byte budget, a count bound, and the download gate.

    ``cost(spec)``: the bytes an object holds while in flight. ``download_gate``: what the copier holds
    while it downloads a small object (slots sized by the bandwidth-delay product of the batch's typical
    small object, starts spaced by its transfer time over the slots).
    """

    def __init__(
        self, settings: CopySettings, objects: Iterable[ObjectSpec], latency_s: float, *, streaming: bool = False
    ) -> None:
        self.settings, self.streaming = settings, streaming
        self.threshold = single_put_limit(settings)
        self.streams = 0  # streamed objects in flight: at most STREAMS_IN_FLIGHT
        self.multipart_cost = max(1, settings.inflight_parts) * settings.part_size_bytes
        self.budget = settings.buffer_budget_bytes  # a share of the function's memory (settings.py)
        self.limit = max(1, settings.object_concurrency)
        self.latency_s = min(max(latency_s, LATENCY_BOUNDS_S[0]), LATENCY_BOUNDS_S[1])
        small = sorted(self.cost(spec) for spec in objects if self.cost(spec) < self.threshold)
        typical = small[len(small) // 2] if small else self.threshold
        needed = 2 * NETWORK_BYTES_PER_SECOND * self.latency_s / max(1, typical)
        needed += NETWORK_BYTES_PER_SECOND / CONNECTION_BYTES_PER_SECOND
        self.downloads = max(1, min(self.limit, math.ceil(needed)))
        spacing = typical / NETWORK_BYTES_PER_SECOND / self.downloads
        self.download_gate = DownloadGate(self.downloads, spacing if spacing >= MIN_SPACING_S else 0.0)
        self.reserved = 0

    def streamed(self, spec: ObjectSpec) -> bool:
        return self.streaming and spec.size is not None and streamable(self.settings, spec.size)

    def cost(self, spec: ObjectSpec) -> int:
        if spec.size is not None and spec.size < self.threshold:
            return max(1, spec.size)
        if spec.size is not None and spec.size <= self.multipart_cost:
            return spec.size
        return self.multipart_cost if spec.size is not None else self.threshold

    def fits(self, spec: ObjectSpec, in_flight: int) -> bool:
        if in_flight >= self.limit:
            return False
        if in_flight and self.streamed(spec) and self.streams >= STREAMS_IN_FLIGHT:
            return False
        return in_flight == 0 or self.reserved + self.cost(spec) <= self.budget

    def take(self, spec: ObjectSpec) -> None:
        """``spec`` starts: its bytes (a streamed object may fall back to buffering its body) and stream count."""
        self.reserved += self.cost(spec)
        self.streams += self.streamed(spec)

    def release(self, spec: ObjectSpec) -> None:
        self.reserved -= self.cost(spec)
        self.streams -= self.streamed(spec)


def error_rank(error: BaseException) -> int:
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


def is_fatal(error: BaseException) -> bool:
    """Errors after which in-flight siblings should stop too (their work cannot be kept)."""
    return error_rank(error) <= 1


def unique(objects: Iterable[ObjectSpec]) -> list[ObjectSpec]:
    """The batch's objects, each source key once (the first spec wins)."""
    seen: dict[str, ObjectSpec] = {}
    for spec in objects:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


class BatchRun:
    """The state of one invocation of one batch, and its steps (``run`` calls them in order)."""

    def __init__(
        self,
        event: CopyBatchEvent,
        *,
        settings: CopySettings,
        source_s3: Any,
        dest_s3: Any,
        staging_s3: Any,
        credentials: TeaCredentials,
        clock: Callable[[], datetime],
        remaining_ms: Callable[[], int],
        dest_stream_s3: Any = None,
    ) -> None:
        self.event, self.settings, self.credentials = event, settings, credentials
        self.clock, self.remaining_ms = clock, remaining_ms
        self.staging_s3 = staging_s3
        batch, destination = event.batch, event.destination
        self.results_prefix = staging.results_prefix(event.run_id, batch.batch_id)
        self.source = SourceBucket(source_s3, batch.source_bucket)
        self.destination = DestinationBucket(dest_s3, destination.bucket, destination.prefix, dest_stream_s3)
        self.log = ResultLog(staging_s3, settings.staging_bucket, self.results_prefix)
        self.checkpoints = CheckpointStore(
            staging_s3,
            settings.staging_bucket,
            run_id=event.run_id,
            batch_id=batch.batch_id,
            destination=self.destination,
        )
        self.existing = ExistingKeys(self.destination, [], enabled=event.options.overwrite != OVERWRITE_ALWAYS)
        self.multipart = MultipartUploader(
            settings=settings,
            destination=self.destination,
            checkpoints=self.checkpoints,
            credentials=credentials,
            clock=clock,
        )
        self.copier = ObjectCopier(
            event=event,
            settings=settings,
            source=self.source,
            destination=self.destination,
            existing=self.existing,
            checkpoints=self.checkpoints,
            multipart=self.multipart,
        )
        self.pace = Pace(settings, [], LATENCY_BOUNDS_S[0])  # set from the batch and the latency in load()
        self.reserve_ms = settings.deadline_reserve_seconds * 1000
        self.hard_floor_ms = self.reserve_ms // 2  # below this, in-flight multipart uploads pause (checkpointed)
        self.cancel = StopSignal()
        self.pending: deque[ObjectSpec] = deque()
        self.in_flight: dict[Future[ObjectResult], ObjectSpec] = {}
        self.cancelled: list[ObjectSpec] = []  # started but cancelled before any kept progress (not recorded)
        self.paused: list[ObjectSpec] = []  # multipart uploads checkpointed for the next invocation (not recorded)
        self.errors: list[BaseException] = []
        self.stop: str | None = None
        self.expiry_message = ""

    def run(self) -> dict[str, Any]:
        """Copy (the rest of) the batch; see ``copy_batch``."""
        self.load()
        try:
            self.copy_pending()
            self.fail_objects_that_cannot_progress()
        finally:
            flush_error = self.log.flush_rest()
        return self.outcome(flush_error)

    # -- 1. what is left to do

    def load(self) -> None:
        """Skip what the result log records; list the checkpoints; note the destination keys to list."""
        batch = self.event.batch
        objects = unique(batch.objects)
        round_trips: list[float] = []

        def timed(call: Callable[[], Any]) -> Any:
            started = time.monotonic()
            try:
                return call()
            finally:
                round_trips.append(time.monotonic() - started)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="load") as pool:  # both LISTs at once
            recorded_f = pool.submit(
                timed,
                lambda: load_recorded_keys(self.staging_s3, self.settings.staging_bucket, self.results_prefix),
            )
            checkpoints_f = pool.submit(timed, self.checkpoints.load_keys)
        recorded: set[str] = recorded_f.result()
        checkpoints_f.result()
        self.pending = deque(spec for spec in objects if spec.key not in recorded)
        latency = min(round_trips, default=LATENCY_BOUNDS_S[0])
        self.pace = Pace(self.settings, self.pending, latency, streaming=self.destination.streamer is not None)
        self.copier.download_gate = self.pace.download_gate
        # listed once, lazily (by the first object), to skip HEADs of absent keys
        self.existing.dest_keys = [self.event.destination.key_for_object(spec) for spec in self.pending]
        logger.info(
            "batch started",
            extra={
                "objects": len(batch.objects),
                "recorded": len(recorded),
                "pending": len(self.pending),
                "latency_ms": round(self.pace.latency_s * 1000, 1),
                "objects_in_flight": self.pace.limit,
                "downloads_in_flight": self.pace.downloads,
            },
        )

    # -- 2. scheduling

    def copy_pending(self) -> None:
        """Run the pending objects on the object pool until done or stopped; wait for the in-flight ones."""
        pool = ThreadPoolExecutor(
            max_workers=min(self.pace.limit, max(1, len(self.pending))), thread_name_prefix="object"
        )
        try:
            self.schedule(pool)
            while self.in_flight:
                self.wait_some()
        finally:
            if self.in_flight:  # the coordinator itself failed: stop the workers, keep what finished
                self.cancel.set(StopSignal.FATAL)
            pool.shutdown(wait=True)
            self.harvest(list(self.in_flight))

    def schedule(self, pool: ThreadPoolExecutor) -> None:
        """Start objects while there are some, none failed the batch, and time and credentials allow."""
        started = 0
        while self.pending and self.stop is None:
            self.harvest([f for f in list(self.in_flight) if f.done()])
            progress_error = self.log.flush_if_due()
            if progress_error is not None:
                self.errors.append(progress_error)
                self.stop = STOP_ERROR
                return
            if self.errors:
                self.stop = STOP_ERROR
                return
            if not self.pace.fits(self.pending[0], len(self.in_flight)):
                self.wait_some()
                continue
            if not self.may_start(self.pending[0], first=not started):
                return
            spec = self.pending.popleft()
            self.pace.take(spec)
            self.in_flight[pool.submit(self.copier.copy, spec, self.cancel)] = spec
            started += 1

    def may_start(self, spec: ObjectSpec, *, first: bool) -> bool:
        """False (and why, in ``stop``) when credentials are within the margin or the deadline is near."""
        seconds_left = self.credentials.seconds_left(self.clock())
        if seconds_left <= self.settings.safety_margin_seconds:
            self.stop = STOP_EXPIRED
            self.expiry_message = f"{self.expiry_note(seconds_left)}; stopped before {self.source.url(spec.key)}"
            return False
        if not first and self.remaining_ms() < self.reserve_ms:
            self.stop = STOP_DEADLINE
            return False
        return True

    def wait_some(self) -> None:
        """Wait a little for in-flight objects; below the hard floor, stop them (multipart uploads pause)."""
        done, _ = wait(list(self.in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        self.harvest(done)
        if self.in_flight and not self.cancel.is_set() and self.remaining_ms() < self.hard_floor_ms:
            logger.warning("deadline near: stopping the objects in flight", extra={"objects": len(self.in_flight)})
            self.stop = self.stop or STOP_DEADLINE
            self.cancel.set(StopSignal.DEADLINE)

    # -- 3. harvest

    def harvest(self, done: Iterable[Future[ObjectResult]]) -> None:
        """Sort finished objects: a result, paused, cancelled, or an error for the batch."""
        for future in done:
            spec = self.in_flight.pop(future)
            self.pace.release(spec)
            error = future.exception()
            if error is None:
                self.log.add(future.result())
            elif isinstance(error, Paused):
                self.paused.append(spec)
            elif isinstance(error, Cancelled):
                self.cancelled.append(spec)
            else:
                logger.warning(
                    "an object stopped the batch",
                    extra={"key": spec.key, "error": type(error).__name__, "reason": str(error)},
                )
                self.errors.append(error)
                if is_fatal(error):
                    self.cancel.set(StopSignal.FATAL)

    def fail_objects_that_cannot_progress(self) -> None:
        """Nothing finished and no part kept in a whole invocation: fail the cancelled objects.

        The continuation would only start them over and loop. (Multipart uploads that made progress
        were paused and continue; a paused one that stalls fails in the multipart uploader.)
        """
        if self.stop != STOP_DEADLINE or not self.cancelled or self.log.results or self.multipart.parts_done:
            return
        for spec in self.cancelled:
            self.log.add(
                ObjectResult(
                    key=spec.key,
                    dest_key=self.event.destination.key_for_object(spec),
                    status=FAILED,
                    reason="too large for one invocation: not even one part finished before the Lambda deadline",
                )
            )
        self.cancelled.clear()

    # -- 4. the answer

    def outcome(self, flush_error: TransientCopyError | None) -> dict[str, Any]:
        """The invocation's result (done or not, refresh or not), or the batch's error raised."""
        counts = self.counts()
        logger.info("batch invocation ended", extra={**counts, "paused": len(self.paused), "stop": self.stop})
        self.note_expiry_behind_an_error()
        if self.stop == STOP_EXPIRED:
            self.errors.append(
                CredentialsExpired(
                    f"{self.expiry_message}; {len(self.log.results)} objects recorded by this invocation"
                )
            )
        if self.errors:  # the most telling one: e.g. CredentialsExpired (refresh) rather than a sibling's throttling
            return self.refresh_or_raise(counts, flush_error)
        if flush_error is not None:
            raise flush_error
        done = not self.pending and not self.cancelled and not self.paused
        return CopyBatchResult(**counts, done=done, refresh=False).to_dict()

    def counts(self) -> dict[str, Any]:
        log = self.log
        counts: dict[str, Any] = {
            "batch_id": self.event.batch.batch_id,
            "copied": log.count(COPIED),
            "skipped": log.count(SKIPPED),
            "failed": log.count(FAILED),
            "bytes": log.bytes(COPIED),
            "parts": self.multipart.parts_done,
        }
        if self.event.options.dry_run:
            counts["would_copy"] = log.count(WOULD_COPY)
            counts["would_skip"] = log.count(WOULD_SKIP)
            counts["bytes_to_copy"] = log.bytes(WOULD_COPY)
        return counts

    def note_expiry_behind_an_error(self) -> None:
        """A sibling's transient error stopped the batch: if the credentials are near expiry anyway, say so,
        so the retry starts with a refresh instead of failing on the margin check."""
        if self.stop != STOP_ERROR or not self.pending or any(isinstance(e, CredentialsExpired) for e in self.errors):
            return
        seconds_left = self.credentials.seconds_left(self.clock())
        if seconds_left <= self.settings.safety_margin_seconds:
            self.stop = STOP_EXPIRED
            self.expiry_message = self.expiry_note(seconds_left)

    def refresh_or_raise(self, counts: dict[str, Any], flush_error: TransientCopyError | None) -> dict[str, Any]:
        top = min(self.errors, key=error_rank)
        if (
            isinstance(top, CredentialsExpired)
            and (self.log.results or self.multipart.parts_done)
            and flush_error is None
        ):
            # Progress was made and kept: refresh without spending a refresh round of the state machine.
            logger.info("fresh credentials needed after progress", extra={"reason": str(top)})
            return CopyBatchResult(**counts, done=False, refresh=True).to_dict()
        if is_fatal(top):  # the map child fails on it: leave the operator its own words (Summarize reports them)
            record_fatal(self.staging_s3, self.settings.staging_bucket, self.event, top)
        raise top

    def expiry_note(self, seconds_left: float) -> str:
        return (
            f"TEA credentials version {self.event.credentials.version} expire in {seconds_left:.0f} s "
            f"(safety margin {self.settings.safety_margin_seconds} s)"
        )


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
    dest_stream_s3: Any = None,
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

    ``dest_stream_s3``: the destination client of streamed PutObjects (``s3_config(pool, streamed_puts=True)``,
    the Lambda's role); None: no object is streamed, each one below the multipart threshold is buffered whole.
    """
    run = BatchRun(
        event,
        settings=settings,
        source_s3=source_s3,
        dest_s3=dest_s3,
        staging_s3=staging_s3,
        credentials=credentials,
        clock=clock,
        remaining_ms=remaining_ms,
        dest_stream_s3=dest_stream_s3,
    )
    return run.run()
