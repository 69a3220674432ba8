"""Reading a run back from the staging bucket: its report, its failures, a retry of just those."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import staging
from lambdas.planning.keys import CMR_FIELDS
from lambdas.reporting import summary

from .backend import Backend


class RunError(RuntimeError):
    """The run cannot be read or retried as asked (the message says why and what to do instead)."""


def run_id_of(execution_arn: str) -> str:
    """The run id is the execution name (the last ARN component)."""
    return execution_arn.rsplit(":", 1)[-1]


def read_json(s3: Any, bucket: str, key: str) -> Any | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(body)


def describe(backend: Backend, execution_arn: str) -> dict[str, Any] | None:
    try:
        return dict(backend.sfn.describe_execution(executionArn=execution_arn))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "InvalidArn"):
            return None
        raise


def load_report(backend: Backend, run_id: str) -> tuple[dict[str, Any], bool]:
    """(report, final): Summarize's report.json, or one computed now from the result log (a live run)."""
    report = read_json(backend.s3, backend.staging_bucket, staging.report_key(run_id))
    if isinstance(report, dict):
        return report, True
    if read_json(backend.s3, backend.staging_bucket, staging.plan_key(run_id)) is None:
        raise RunError(f"run {run_id} has no plan in s3://{backend.staging_bucket}/runs/{run_id}/ (not planned yet?)")
    return summary.collect(backend.s3, backend.staging_bucket, run_id), False


def result_rows(backend: Backend, run_id: str) -> list[dict[str, Any]]:
    """Each object's last recorded outcome (the rows of report.csv), read from the result log."""
    if read_json(backend.s3, backend.staging_bucket, staging.plan_key(run_id)) is None:
        raise RunError(f"run {run_id} has no plan in s3://{backend.staging_bucket}/runs/{run_id}/")
    return summary.collect_run(backend.s3, backend.staging_bucket, run_id)[1]


@dataclass(frozen=True)
class Pending:
    """An object to retry: its source bucket and its manifest entry (key, size, checksum)."""

    bucket: str
    entry: Mapping[str, Any]
    reason: str


def objects_to_retry(backend: Backend, run_id: str, include_not_attempted: bool = False) -> list[Pending]:
    """The failed objects of a run (and, optionally, those never attempted), in staged-manifest order."""
    batches = read_json(backend.s3, backend.staging_bucket, staging.manifest_key(run_id))
    if not isinstance(batches, list):
        raise RunError(f"run {run_id} has no staged manifest (runs/{run_id}/manifest.json): was it planned?")
    rows = {(row["batch"], row["key"]): row for row in result_rows(backend, run_id)}
    out: list[Pending] = []
    for batch in batches:
        for entry in batch.get("objects", []):
            row = rows.get((batch["id"], entry["key"]))
            if row is None:
                if include_not_attempted:
                    out.append(Pending(batch["source_bucket"], entry, "not attempted"))
            elif row["status"] == "failed":
                out.append(Pending(batch["source_bucket"], entry, str(row.get("reason", ""))))
    return out


def _manifest_entry(item: Pending) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": f"s3://{item.bucket}/{item.entry['key']}"}
    if item.entry.get("size") is not None:
        entry["size"] = item.entry["size"]
    if item.entry.get("checksum") is not None:
        entry["checksum"] = item.entry["checksum"]
    return entry


def retry_input(
    plan: Mapping[str, Any],
    pending: Sequence[Pending],
    *,
    max_inline_keys: int,
    manifest_url: str | None,
    dry_run: bool = False,
    prefer_inline: bool = False,
) -> tuple[dict[str, Any], bytes | None]:
    """The execution input that retries ``pending`` into the same destination, and the manifest to upload.

    Inline keys when they fit (one source bucket, no expected checksums, at most ``max_inline_keys``)
    and no ``manifest_url`` is given (or ``prefer_inline``: the URL is only a fallback); otherwise a
    JSON manifest of s3:// URLs (sizes and checksums kept) at ``manifest_url``.
    """
    if not pending:
        raise RunError("nothing to retry: no object of this run failed")
    destination = dict(plan.get("destination") or {})
    mapping = destination.get("key_mapping", "keep")
    if isinstance(mapping, dict) and "template" in mapping:
        fields = {f for f in CMR_FIELDS if "{" + f + "}" in str(mapping["template"])}
        if fields:
            raise RunError(
                f"the destination key template uses CMR granule fields ({', '.join(sorted(fields))}), which a retry "
                "by key cannot supply: rerun the original input instead (objects already copied are skipped)"
            )
    if mapping == "keep":
        destination.pop("key_mapping", None)
    options = {k: v for k, v in dict(plan.get("options") or {}).items() if k != "dry_run"}
    if dry_run:
        options["dry_run"] = True
    buckets = {item.bucket for item in pending}
    inline = (
        (manifest_url is None or prefer_inline)
        and len(buckets) == 1
        and len(pending) <= max_inline_keys
        and not any(item.entry.get("checksum") for item in pending)
    )
    job: dict[str, Any]
    if inline:
        job = {"source": {"bucket": next(iter(buckets)), "keys": [item.entry["key"] for item in pending]}}
        body = None
    else:
        if manifest_url is None:
            why = (
                f"{len(pending)} objects (inline limit {max_inline_keys})"
                if len(pending) > max_inline_keys
                else ("objects from several buckets" if len(buckets) > 1 else "expected checksums to keep")
            )
            raise RunError(
                f"the retry needs a manifest ({why}): pass --manifest-to s3://<one of your buckets>/<key>.json"
            )
        job = {"source": {"manifest": manifest_url, "format": "json"}}
        body = json.dumps([_manifest_entry(item) for item in pending], ensure_ascii=False).encode("utf-8")
    job["destination"] = destination
    if options:
        job["options"] = options
    return job, body
