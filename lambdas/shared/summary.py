"""Summarize: aggregate the per-object result log of a run into a report and the job's counts."""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from . import staging
from .errors import CopyJobFailed, InvalidInput
from .models import COPIED, FAILED, SKIPPED, WOULD_COPY, WOULD_SKIP
from .settings import SummarySettings

logger = logging.getLogger(__name__)
MAX_LISTED_FAILURES = 1000


def _read_all(s3: Any, bucket: str, keys: list[str]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda key: staging.get_json(s3, bucket, key), keys))


def abort_leftover_uploads(s3: Any, bucket: str, run_id: str) -> int:
    """Abort the multipart uploads that paused objects of this run left open (their checkpoints).

    A run that ends with paused objects (a batch failed, refresh rounds ran out) must not leave
    incomplete uploads in the user's bucket, billed and invisible. Returns how many were aborted.
    """
    aborted = 0
    for key in list(staging.list_keys(s3, bucket, staging.uploads_prefix(run_id))):
        try:
            checkpoint = staging.get_json(s3, bucket, key)
            dest_bucket, dest_key = checkpoint["dest_bucket"], checkpoint["dest_key"]
            upload_id = checkpoint["upload_id"]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring a malformed upload checkpoint s3://%s/%s: %s", bucket, key, exc)
            continue
        try:
            s3.abort_multipart_upload(Bucket=dest_bucket, Key=dest_key, UploadId=upload_id)
            aborted += 1
            logger.info("aborted the leftover upload %s of s3://%s/%s", upload_id, dest_bucket, dest_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
        staging.delete_key(s3, bucket, key)
    return aborted


def collect(s3: Any, bucket: str, run_id: str) -> dict[str, Any]:
    """Read the run's plan, results and events; return the report (no secrets are ever in them)."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    result_keys = sorted(
        staging.list_keys(s3, bucket, staging.results_prefix(run_id)), key=lambda k: k.rsplit("/", 1)[-1]
    )
    final: dict[str, dict[str, Any]] = {}
    for records in _read_all(s3, bucket, result_keys):
        for record in records:
            final[record["key"]] = record  # later files win (a retried object's last word)
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
        {"key": r["key"], "reason": r.get("reason", "")}
        for r in sorted(final.values(), key=lambda r: r["key"])
        if r["status"] == FAILED
    ]
    objects = int(plan["objects"])
    return {
        "run_id": run_id,
        "objects": objects,
        "copied": counts.get(COPIED, 0),
        "skipped": counts.get(SKIPPED, 0),
        "failed": counts.get(FAILED, 0),
        "not_attempted": max(0, objects - len(final)),
        "bytes": sum(int(r.get("bytes", 0)) for r in final.values() if r["status"] == COPIED),
        "dry_run": bool((plan.get("options") or {}).get("dry_run")),
        "would_copy": counts.get(WOULD_COPY, 0),
        "would_skip": counts.get(WOULD_SKIP, 0),
        "bytes_to_copy": sum(int(r.get("bytes", 0)) for r in final.values() if r["status"] == WOULD_COPY),
        "tea_requests": len(tea_events),
        "tea_errors": sum(1 for e in tea_events if e.get("outcome") != "ok"),
        "credential_refreshes": len(adopted),
        "refresh_calls": len(refresh_events),
        "source": plan.get("source"),
        "destination": plan.get("destination"),
        "failures_by_reason": dict(Counter(_reason_class(f["reason"]) for f in failures)),
        "failures": failures[:MAX_LISTED_FAILURES],
        "failures_truncated": len(failures) > MAX_LISTED_FAILURES,
    }


def _reason_class(reason: str) -> str:
    return reason.split(":", 1)[0] if reason else "unknown"


COUNT_FIELDS = (
    "objects",
    "copied",
    "skipped",
    "failed",
    "not_attempted",
    "bytes",
    "tea_requests",
    "credential_refreshes",
)


def summarize(event: Any, *, settings: SummarySettings, s3: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("run_id"), str):
        raise InvalidInput("run_id", "must be a string")
    run_id = event["run_id"]
    outcome = event.get("outcome") or {}
    uploads_aborted = abort_leftover_uploads(s3, settings.staging_bucket, run_id)
    report = collect(s3, settings.staging_bucket, run_id)
    report["uploads_aborted"] = uploads_aborted
    report["map_failed"] = bool(outcome.get("map_failed"))
    if report["map_failed"]:
        report["map_error"] = {"error": outcome.get("error"), "cause": _short(outcome.get("cause"))}
    report_key = staging.report_key(run_id)
    staging.put_json(s3, settings.staging_bucket, report_key, report)
    location = f"s3://{settings.staging_bucket}/{report_key}"
    summary = {name: report[name] for name in COUNT_FIELDS}
    if report["dry_run"]:
        summary.update({name: report[name] for name in ("dry_run", "would_copy", "would_skip", "bytes_to_copy")})
    summary["report"] = location
    logger.info("run %s summary: %s", run_id, json.dumps(summary))
    too_many = report["failed"] * 100 > settings.max_failed_percent * report["objects"]
    if report["map_failed"] or too_many or report["not_attempted"]:
        why = []
        if report["failed"]:
            why.append(f"{report['failed']} of {report['objects']} objects failed ({report['failures_by_reason']})")
        if report["not_attempted"]:
            why.append(f"{report['not_attempted']} objects were not attempted")
        if report["map_failed"]:
            why.append(f"a batch failed: {outcome.get('error')}: {_short(outcome.get('cause'), 300)}")
        raise CopyJobFailed("; ".join(why) + f". Report: {location}")
    return summary


def _short(text: Any, limit: int = 2000) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[:limit] + "…"
