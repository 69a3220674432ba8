"""The batch's result log in the staging bucket: the durable record of which objects are final.

Each invocation writes the objects it finished as new files (``runs/<run>/results/<batch>/<seq>.json``,
a JSON list of ``ObjectResult.to_dict()``), while it runs and on every exit; the next invocation of
the same batch skips every key already recorded. A batch's fatal error is recorded for Summarize.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import staging
from lambdas.contracts.errors import TeacopyError, TransientCopyError
from lambdas.contracts.models import FINAL_STATUSES, CopyBatchEvent, ObjectResult

logger = logging.getLogger(__name__)

# Results are also written while a batch runs (progress for operators, less to redo after a crash).
FLUSH_EVERY_OBJECTS = 25
FLUSH_EVERY_SECONDS = 10.0


def load_recorded_keys(staging_s3: Any, bucket: str, prefix: str) -> set[str]:
    """Source keys already recorded (any final status) in the batch's result files."""
    recorded: set[str] = set()
    try:
        keys = list(staging.list_keys(staging_s3, bucket, prefix))
        for key in keys:
            entries = staging.get_json(staging_s3, bucket, key)
            if not isinstance(entries, list):
                logger.warning("ignoring a malformed result file", extra={"bucket": bucket, "key": key})
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
    """This invocation's results, written to the batch's result log in files of new results."""

    def __init__(self, staging_s3: Any, bucket: str, prefix: str) -> None:
        self._staging_s3, self._bucket, self._prefix = staging_s3, bucket, prefix
        self.results: list[ObjectResult] = []
        self._flushed = 0  # results[:_flushed] are already in the result log
        self._last_flush = time.monotonic()

    def add(self, result: ObjectResult) -> None:
        self.results.append(result)

    def flush_if_due(self) -> TransientCopyError | None:
        """Write the unwritten results every FLUSH_EVERY_OBJECTS objects or FLUSH_EVERY_SECONDS."""
        unflushed = len(self.results) - self._flushed
        if unflushed >= FLUSH_EVERY_OBJECTS or (
            unflushed and time.monotonic() - self._last_flush > FLUSH_EVERY_SECONDS
        ):
            error = write_results(self._staging_s3, self._bucket, self._prefix, self.results[self._flushed :])
            if error is not None:
                return error
            self._flushed, self._last_flush = len(self.results), time.monotonic()
        return None

    def flush_rest(self) -> TransientCopyError | None:
        """Write what is not written yet (on every exit)."""
        error = write_results(self._staging_s3, self._bucket, self._prefix, self.results[self._flushed :])
        if error is None:
            self._flushed = len(self.results)
        return error

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def bytes(self, status: str) -> int:
        return sum(r.bytes for r in self.results if r.status == status)
