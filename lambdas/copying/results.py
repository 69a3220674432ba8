"""The batch's result log in the staging bucket: the durable record of which objects are final.

Each invocation writes the objects it finished as new files (``runs/<run>/results/<batch>/<seq>.json``,
a JSON list of ``ObjectResult.to_dict()``), while it runs and on every exit; the next invocation of
the same batch skips every key already recorded. A batch's fatal error is recorded for Summarize.

A result file that is not a JSON list of records (``records_of``: truncated, overwritten, edited by hand)
must not stop its batch for good: it is set aside (moved to ``runs/<run>/set-aside/results/...``, kept
for the operator) and the objects it recorded, now unrecorded, are copied again. That is idempotent:
skip-if-identical finds them already copied (a HEAD and a 304), ``never`` finds them existing, ``always``
rewrites the same bytes.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import staging
from lambdas.contracts.errors import TeacopyError, TransientCopyError
from lambdas.contracts.models import FINAL_STATUSES, CopyBatchEvent, ObjectResult

logger = logging.getLogger(__name__)

# Results are also written while a batch runs (progress for operators, less to redo after a crash).
FLUSH_EVERY_OBJECTS = 25
FLUSH_EVERY_SECONDS = 10.0


def records_of(raw: Any) -> list[dict[str, Any]] | None:
    """The records of a result file's JSON, or None when it is not a list of records (key and final status)."""
    if not isinstance(raw, list):
        return None
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            return None
        if entry.get("status") not in FINAL_STATUSES:
            return None
    return raw


def load_recorded_keys(staging_s3: Any, bucket: str, prefix: str) -> set[str]:
    """Source keys already recorded (any final status) in the batch's result files.

    A file that is not a list of records is set aside (``set_aside``); its objects count as not recorded.
    """
    recorded: set[str] = set()
    try:
        for key in list(staging.list_keys(staging_s3, bucket, prefix)):
            body = staging.get_body(staging_s3, bucket, key)
            try:
                records = records_of(json.loads(body))
            except ValueError:  # json.JSONDecodeError, UnicodeDecodeError
                records = None
            if records is None:
                set_aside(staging_s3, bucket, key, body)
                continue
            recorded.update(entry["key"] for entry in records)
    except (ClientError, BotoCoreError) as exc:
        raise TransientCopyError(f"could not read the result log s3://{bucket}/{prefix}") from exc
    return recorded


def set_aside(staging_s3: Any, bucket: str, key: str, body: bytes) -> None:
    """Move an unreadable result file out of the result log (kept for the operator under ``set-aside/``)."""
    kept = staging.set_aside_key(key)
    staging_s3.put_object(Bucket=bucket, Key=kept, Body=body)  # first kept, then removed: a retry repeats both
    staging.delete_key(staging_s3, bucket, key)
    logger.warning(
        "set aside a result file that is not a list of records; its objects are copied again",
        extra={"key": key, "kept": kept, "bytes": len(body)},
    )


def write_results(staging_s3: Any, bucket: str, prefix: str, results: list[ObjectResult]) -> TransientCopyError | None:
    """Write results as one new file (never an empty one); the error to raise when that failed."""
    if not results:
        return None
    key = prefix + staging.sequence_name()
    try:
        staging.put_json(staging_s3, bucket, key, [r.to_dict() for r in results])
    except (ClientError, BotoCoreError) as exc:
        logger.error(
            "could not record results", extra={"objects": len(results), "key": key, "error": type(exc).__name__}
        )
        error = TransientCopyError(f"could not record {len(results)} results in s3://{bucket}/{prefix}")
        error.__cause__ = exc
        return error
    logger.info("recorded results", extra={"objects": len(results), "key": key})
    return None


def record_fatal(staging_s3: Any, bucket: str, event: CopyBatchEvent, error: BaseException) -> None:
    """Leave the operator the batch's fatal error (Summarize reports it)."""
    # TeacopyError messages are written for operators and never hold secrets; others: the type only.
    message = str(error)[:1000] if isinstance(error, TeacopyError) else "unexpected error (see the CopyBatch logs)"
    detail = {"batch": event.batch.batch_id, "error": type(error).__name__, "message": message}
    try:
        staging.record_event(staging_s3, bucket, event.run_id, "errors", detail)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not record the batch's fatal error", extra={"error": type(exc).__name__})


class ResultLog:
    """This invocation's results, written to the batch's result log in files of new results.

    While the batch runs, a file is written in the background, one at a time, so the scheduler never waits for
    the staging bucket (a synchronous PUT every 25 objects held up the starting of new objects: ``make bench``,
    100 KiB set). A failed background write is reported by the next ``flush_if_due``; its results stay
    unwritten and go with the next file. ``flush_rest`` (on every exit) waits for the write in progress, then
    writes what is left.
    """

    def __init__(self, staging_s3: Any, bucket: str, prefix: str) -> None:
        self._staging_s3, self._bucket, self._prefix = staging_s3, bucket, prefix
        self.results: list[ObjectResult] = []
        self._flushed = 0  # results[:_flushed] are already in the result log
        self._last_flush = time.monotonic()
        self._writer: ThreadPoolExecutor | None = None
        self._writing: tuple[Future[TransientCopyError | None], int] | None = None  # (the write, results[:end])

    def add(self, result: ObjectResult) -> None:
        self.results.append(result)

    def flush_if_due(self) -> TransientCopyError | None:
        """Start writing the unwritten results every FLUSH_EVERY_OBJECTS objects or FLUSH_EVERY_SECONDS."""
        error = self._collect(wait=False)
        if error is not None or self._writing is not None:
            return error
        unflushed = len(self.results) - self._flushed
        if unflushed >= FLUSH_EVERY_OBJECTS or (
            unflushed and time.monotonic() - self._last_flush > FLUSH_EVERY_SECONDS
        ):
            end = len(self.results)
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="results")
            pending = self.results[self._flushed : end]
            write = self._writer.submit(write_results, self._staging_s3, self._bucket, self._prefix, pending)
            self._writing, self._last_flush = (write, end), time.monotonic()
        return None

    def flush_rest(self) -> TransientCopyError | None:
        """Write what is not written yet (on every exit), after the write in progress."""
        self._collect(wait=True)  # a failed one leaves its results unwritten: they go in this file
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        error = write_results(self._staging_s3, self._bucket, self._prefix, self.results[self._flushed :])
        if error is None:
            self._flushed = len(self.results)
        return error

    def _collect(self, *, wait: bool) -> TransientCopyError | None:
        """The outcome of the background write once it finished (``wait``: wait for it, bounded by its client)."""
        if self._writing is None:
            return None
        write, end = self._writing
        if not wait and not write.done():
            return None
        self._writing = None
        error = write.result()
        if error is None:
            self._flushed = end
        return error

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def bytes(self, status: str) -> int:
        return sum(r.bytes for r in self.results if r.status == status)
