"""Clean-up of a run whose Summarize never ran: the execution was stopped, timed out or failed outside the map.

Such a run may leave paused multipart uploads open in the user's bucket (billed, invisible) and no report. The
``Cleanup`` function runs on the run's "Step Functions Execution Status Change" event (ABORTED, TIMED_OUT,
FAILED; stacks/constructs/cleanup.py delivers it after a delay, once every CopyBatch invocation that was still
running has ended) and:

1. aborts the run's leftover uploads from its checkpoints (``abort_leftover_uploads``, Summarize's own);
2. writes ``report.json``/``.csv``/``.html`` from what the run recorded, marked with the terminal status
   (``execution_status``), unless Summarize wrote one (a run that failed *after* Summarize, e.g.
   ``CopyJobFailed``, keeps Summarize's report);
3. writes nothing else: an incremental schedule's state (SSM) is only ever written by a successful Summarize.

A run that failed before Plan staged anything (no ``plan.json``) has nothing to clean and gets no report.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import staging
from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.report import RecordedError
from lambdas.reporting.summary import abort_leftover_uploads, write_report_once
from lambdas.s3.codes import NOT_FOUND_CODES, error_status

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")  # the statuses the clean-up rule matches
DETAIL_TYPE = "Step Functions Execution Status Change"
_RUN_ID = re.compile(r"^[\w.-]{1,80}$")  # execution names teacopy plans (lambdas/planning/plan.py)


@dataclass(frozen=True)
class Ended:
    """The part of a status-change event's ``detail`` the clean-up reads."""

    run_id: str  # the execution name
    status: str
    execution_arn: str
    started: float | None  # epoch seconds
    error: str | None
    cause: str | None

    @classmethod
    def from_detail(cls, detail: Any) -> Ended:
        if not isinstance(detail, dict):
            raise InvalidInput("detail", "must be the detail object of a Step Functions status-change event")
        status, name = detail.get("status"), detail.get("name")
        if status not in TERMINAL_STATUSES:
            raise InvalidInput("detail.status", f"must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}")
        if not isinstance(name, str) or not _RUN_ID.match(name):
            raise InvalidInput("detail.name", "must be the execution name (the run id)")
        started = detail.get("startDate")
        return cls(
            run_id=name,
            status=status,
            execution_arn=str(detail.get("executionArn") or ""),
            started=started / 1000 if isinstance(started, int | float) else None,  # milliseconds in the event
            error=_text(detail.get("error")),
            cause=_text(detail.get("cause")),
        )


def _text(value: Any, limit: int = 2000) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[:limit] + "…"


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code, status = error_status(exc)
        if code in NOT_FOUND_CODES or status == 404:
            return False
        raise
    return True


def clean_up_run(detail: Any, *, staging_bucket: str, s3: Any) -> dict[str, Any]:
    """Abort the ended run's leftover uploads and write its report (see the module doc). Idempotent."""
    ended = Ended.from_detail(detail)
    run_id = ended.run_id
    aborted = abort_leftover_uploads(s3, staging_bucket, run_id)
    outcome: dict[str, Any] = {"run_id": run_id, "status": ended.status, "uploads_aborted": aborted}
    report_key = staging.report_key(run_id)
    if _exists(s3, staging_bucket, report_key):
        logger.info("the run has a report already: kept", extra={"status": ended.status, "uploads_aborted": aborted})
        return {**outcome, "report": None}
    if not _exists(s3, staging_bucket, staging.plan_key(run_id)):
        logger.info("the run ended before it was planned: nothing to report", extra={"status": ended.status})
        return {**outcome, "report": None}
    errors = [RecordedError(error=ended.error, message=ended.cause or "", count=1)] if ended.error else []
    report = write_report_once(
        s3,
        staging_bucket,
        run_id,
        ended.started,
        uploads_aborted=aborted,
        errors=errors,
        map_failed=False,
        execution_status=ended.status,
        execution_arn=ended.execution_arn,
    )
    location = f"s3://{staging_bucket}/{report_key}"
    logger.info(
        "wrote the report of a run that ended without Summarize",
        extra={
            "status": ended.status,
            "uploads_aborted": aborted,
            "objects": report.objects,
            "copied": report.copied,
            "not_attempted": report.not_attempted,
        },
    )
    return {**outcome, "report": location}
