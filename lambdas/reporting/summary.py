"""Summarize: aggregate the per-object result log of a run into a report and the job's counts."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lambdas.contracts import staging
from lambdas.contracts.errors import CopyJobFailed, InvalidInput
from lambdas.contracts.models import COPIED, FAILED, SKIPPED, WOULD_COPY, WOULD_SKIP, parse_time
from lambdas.contracts.report import Failure, MapError, RecordedError, Report, RunReport, RunSummary
from lambdas.contracts.settings import SummarySettings
from lambdas.reporting import render as reports
from lambdas.reporting.schedule_state import write_last_success
from lambdas.reporting.uploads import abort_run_uploads

logger = logging.getLogger(__name__)
MAX_LISTED_FAILURES = 1000


def _read_all(s3: Any, bucket: str, keys: list[str]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda key: staging.get_json(s3, bucket, key), keys))


def abort_leftover_uploads(s3: Any, bucket: str, run_id: str) -> int:
    """Abort the multipart uploads that paused objects of this run left open (their checkpoints).

    A run that ends with paused objects (a batch failed, refresh rounds ran out) must not leave
    incomplete uploads in the user's bucket, billed and invisible. Returns how many were aborted.
    A malformed checkpoint is no exception: its upload is found through the run's manifest
    (``lambdas.reporting.uploads``). An abort failing with anything but NoSuchUpload is raised.
    """
    return abort_run_uploads(s3, bucket, run_id)


def collect(s3: Any, bucket: str, run_id: str, started: float | None = None) -> dict[str, Any]:
    """Read the run's plan, results and events; return the report (no secrets are ever in them)."""
    return collect_run(s3, bucket, run_id, started)[0]


def collect_run(
    s3: Any, bucket: str, run_id: str, started: float | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report, and the rows of report.csv: each object's last recorded outcome, sorted by key.

    ``started``: when the execution started (epoch seconds); else when Plan started planning
    (``planned_at``), else the first TEA request of the run, else when plan.json was written. The
    timing fields and the progress curve are for people (report.html, ``teacopy report``); result
    files are named by time (``staging.sequence_name``).
    """
    plan_key = staging.plan_key(run_id)
    plan = staging.get_json(s3, bucket, plan_key)
    result_keys = sorted(
        staging.list_keys(s3, bucket, staging.results_prefix(run_id)), key=lambda k: k.rsplit("/", 1)[-1]
    )
    final: dict[str, dict[str, Any]] = {}
    files: list[tuple[float | None, list[dict[str, Any]]]] = []
    for result_key, records in zip(result_keys, _read_all(s3, bucket, result_keys), strict=True):
        when = reports.sequence_time(result_key)
        files.append((when, records))
        batch, recorded_at = reports.batch_of(result_key), reports.iso(when)
        for record in records:
            # later files win (a retried object's last word)
            final[record["key"]] = {**record, "batch": batch, "recorded_at": recorded_at}
    counts = Counter(r["status"] for r in final.values())
    tea_events = _read_all(s3, bucket, list(staging.list_keys(s3, bucket, staging.events_prefix(run_id, "tea"))))
    refresh_events = _read_all(
        s3, bucket, list(staging.list_keys(s3, bucket, staging.events_prefix(run_id, "refresh")))
    )
    adopted = {
        e["new_version"]
        for e in refresh_events
        if e.get("new_version") and e.get("new_version") != e.get("used_version")
    }
    failures = [
        Failure(key=r["key"], reason=r.get("reason", ""))
        for r in sorted(final.values(), key=lambda r: r["key"])
        if r["status"] == FAILED
    ]
    objects = int(plan["objects"])
    if started is None and isinstance(plan.get("planned_at"), str):
        started = _started(plan["planned_at"])
    if started is None:
        started = min((float(e["at"]) for e in tea_events if isinstance(e.get("at"), int | float)), default=None)
    if started is None:
        started = s3.head_object(Bucket=bucket, Key=plan_key)["LastModified"].timestamp()
    finished = max((when for when, _ in files if when is not None), default=None)
    duration = None if finished is None else max(0.0, finished - started)
    copied_bytes = sum(int(r.get("bytes", 0)) for r in final.values() if r["status"] == COPIED)
    first_adoption: dict[str, float] = {}
    for e in refresh_events:
        if e.get("new_version") in adopted and isinstance(e.get("at"), int | float):
            version, at = str(e["new_version"]), float(e["at"])
            first_adoption[version] = min(first_adoption.get(version, at), at)
    report = RunReport(
        run_id=run_id,
        objects=objects,
        copied=counts.get(COPIED, 0),
        skipped=counts.get(SKIPPED, 0),
        failed=counts.get(FAILED, 0),
        not_attempted=max(0, objects - len(final)),
        bytes=copied_bytes,
        dry_run=bool((plan.get("options") or {}).get("dry_run")),
        would_copy=counts.get(WOULD_COPY, 0),
        would_skip=counts.get(WOULD_SKIP, 0),
        bytes_to_copy=sum(int(r.get("bytes", 0)) for r in final.values() if r["status"] == WOULD_COPY),
        tea_requests=len(tea_events),
        tea_errors=sum(1 for e in tea_events if e.get("outcome") != "ok"),
        credential_refreshes=len(adopted),
        refresh_calls=len(refresh_events),
        source=plan.get("source"),
        destination=plan.get("destination"),
        schedule=plan.get("schedule"),
        planned_at=plan.get("planned_at"),
        failures_by_reason=dict(Counter(_reason_class(f.reason) for f in failures)),
        failures=failures[:MAX_LISTED_FAILURES],
        failures_truncated=len(failures) > MAX_LISTED_FAILURES,
        by_status=dict(counts),
        started_at=reports.iso(started),
        finished_at=reports.iso(finished),
        duration_seconds=None if duration is None else round(duration, 3),
        throughput_bytes_per_second=round(copied_bytes / duration) if duration else None,
        timeline=reports.progress_timeline(files, started),
        refresh_offsets=sorted(round(max(0.0, t - started), 3) for t in first_adoption.values())[
            : reports.MAX_REFRESH_MARKS
        ],
    )
    return report.to_dict(), [final[key] for key in sorted(final)]


def _reason_class(reason: str) -> str:
    return reason.split(":", 1)[0] if reason else "unknown"


def summarize(event: Any, *, settings: SummarySettings, s3: Any, ssm: Any = None) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("run_id"), str):
        raise InvalidInput("run_id", "must be a string")
    run_id = event["run_id"]
    outcome = event.get("outcome") or {}
    uploads_aborted = abort_leftover_uploads(s3, settings.staging_bucket, run_id)
    collected, rows = collect_run(s3, settings.staging_bucket, run_id, _started(event.get("execution_started")))
    map_failed = bool(outcome.get("map_failed"))
    report = Report(
        **collected,
        uploads_aborted=uploads_aborted,
        errors=_fatal_errors(s3, settings.staging_bucket, run_id),
        map_failed=map_failed,
        map_error=MapError(error=outcome.get("error"), cause=_short(outcome.get("cause"))) if map_failed else None,
        report_csv=f"s3://{settings.staging_bucket}/{reports.csv_key(run_id)}",
        report_html=f"s3://{settings.staging_bucket}/{reports.html_key(run_id)}",
        generated_at=reports.iso(time.time()),
    )
    report_key = staging.report_key(run_id)
    document = report.to_dict()
    staging.put_json(s3, settings.staging_bucket, report_key, document)
    reports.write_reports(s3, settings.staging_bucket, run_id, document, rows)
    location = f"s3://{settings.staging_bucket}/{report_key}"
    summary = RunSummary.of(report, location).to_dict()
    logger.info("run summary", extra={"summary": summary})
    too_many = report.failed * 100 > settings.max_failed_percent * report.objects
    if report.map_failed or too_many or report.not_attempted:
        why = []
        if report.failed:
            why.append(f"{report.failed} of {report.objects} objects failed ({report.failures_by_reason})")
        if report.not_attempted:
            why.append(f"{report.not_attempted} objects were not attempted")
        for error in report.errors[:3]:  # the failed batches' own words (their causes stay in the children)
            why.append(f"{error.error}: {_short(error.message, 400).rstrip('.')}")
        if report.map_failed and not report.errors:
            why.append(f"a batch failed: {outcome.get('error')}: {_short(outcome.get('cause'), 300)}")
        raise CopyJobFailed("; ".join(why) + f". Report: {location}")
    _record_schedule_success(report, settings, ssm)
    return summary


def _record_schedule_success(report: Report, settings: SummarySettings, ssm: Any) -> None:
    """An incremental schedule's run succeeded: the next one queries from this run's plan time on."""
    schedule, planned_at = report.schedule, report.planned_at
    if not isinstance(schedule, dict) or not schedule.get("incremental") or report.dry_run:
        return
    if not settings.schedule_state_prefix or ssm is None or not isinstance(planned_at, str):
        logger.warning(
            "no schedule state store configured: the next run is not narrowed", extra={"schedule": schedule.get("name")}
        )
        return
    write_last_success(ssm, settings.schedule_state_prefix, str(schedule["name"]), planned_at)


def _started(value: Any) -> float | None:
    """The execution's start time, if the state machine passes it (``$$.Execution.StartTime``)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def _fatal_errors(s3: Any, bucket: str, run_id: str) -> list[RecordedError]:
    """The errors that failed map children recorded (CopyBatch, Credentials), each once, oldest first."""
    keys = sorted(staging.list_keys(s3, bucket, staging.events_prefix(run_id, "errors")))
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for event in _read_all(s3, bucket, keys):
        key = (str(event.get("error", "")), str(event.get("message", "")))
        if key not in seen:
            seen[key] = {"error": key[0], "message": key[1], "count": 0}
        seen[key]["count"] += 1
    return [RecordedError(**entry) for entry in seen.values()]


def _short(text: Any, limit: int = 2000) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[:limit] + "…"
