"""The invariants checked after every scenario.

1. Every destination object is byte-identical to its source, and is one the jobs were asked to copy
   (``corrupt`` counts the others); every object a run reports copied or skipped is there (``lost``).
2. No incomplete multipart upload is left in any bucket (``orphan_uploads``).
3. Each run's report agrees with its result log, its execution output and the destination; a run
   that SUCCEEDED planned, attempted and finished every object.
4. TEA was called at most the scenario's bound.
5. No EDL token, secret key or session token appears in any execution's input, output or history, in
   the staging bucket, in a log line, or in an error the operator sees (``leaked``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdas.contracts import staging

from ..engine import RunResult
from .world import World

RESULT_STATUSES = ("copied", "skipped", "failed")
COUNT_KEYS = ("objects", "copied", "skipped", "failed", "not_attempted")


@dataclass
class InvariantReport:
    lost: int = 0
    corrupt: int = 0
    leaked: int = 0
    orphan_uploads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupt or self.leaked or self.orphan_uploads or self.problems)

    def summary(self) -> str:
        return f"lost={self.lost} corrupt={self.corrupt} leaked={self.leaked} orphan_uploads={self.orphan_uploads}"


def check(world: World, tea_bound: int | None, secrets_extra: list[str] | None = None) -> InvariantReport:
    report = InvariantReport()
    destination = _destination_objects(world)
    _check_destination(world, destination, report)
    for result in world.results:
        _check_run(world, result, destination, report)
    check_uploads(world, report)
    if tea_bound is not None and world.tea.requests > tea_bound:
        report.problems.append(f"TEA was called {world.tea.requests} times, more than the bound {tea_bound}")
    _check_secrets(world, report, secrets_extra or [])
    return report


def _destination_objects(world: World) -> dict[tuple[str, str], str]:
    """(bucket, key) -> sha256 of every object in the destination buckets (scenario inputs excluded)."""
    found: dict[tuple[str, str], str] = {}
    for bucket in world.engine.deployment.destination_buckets:
        for key, digest in world.stored(bucket).items():
            if (bucket, key) not in world.inputs:
                found[(bucket, key)] = digest
    return found


def _check_destination(world: World, destination: dict[tuple[str, str], str], report: InvariantReport) -> None:
    for (bucket, key), digest in sorted(destination.items()):
        wanted = world.expected.get((bucket, key))
        if wanted is None:
            report.corrupt += 1
            report.problems.append(f"unexpected object s3://{bucket}/{key} (no job asked for it)")
        elif wanted != digest:
            report.corrupt += 1
            report.problems.append(f"s3://{bucket}/{key} differs from its source")


def result_records(world: World, run_id: str) -> dict[str, dict[str, Any]]:
    """The final record per source key of a run's result log (later files win, as in Summarize)."""
    s3 = world.s3()
    bucket = world.engine.deployment.staging_bucket
    keys = sorted(world.staging_keys(staging.results_prefix(run_id)), key=lambda k: k.rsplit("/", 1)[-1])
    final: dict[str, dict[str, Any]] = {}
    for key in keys:
        records = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if isinstance(records, list):
            for record in records:
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    final[record["key"]] = record
    return final


def planned_keys(world: World, run_id: str) -> list[str] | None:
    """Source keys of the run's staged manifest (None when Plan staged nothing)."""
    s3 = world.s3()
    try:
        body = s3.get_object(Bucket=world.engine.deployment.staging_bucket, Key=staging.manifest_key(run_id))["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    batches = json.loads(body.read())
    return [obj["key"] for batch in batches for obj in batch.get("objects", [])]


def _check_run(
    world: World, result: RunResult, destination: dict[tuple[str, str], str], report: InvariantReport
) -> None:
    run_id = result.execution_arn.rsplit(":", 1)[-1]
    records = result_records(world, run_id)
    run_report = result.report
    if run_report is None:
        copied = [k for k, r in records.items() if r.get("status") == "copied"]
        if copied:
            report.problems.append(f"run {run_id}: {len(copied)} objects copied but no report was written")
        if result.status == "SUCCEEDED":
            report.problems.append(f"run {run_id} SUCCEEDED without a report")
        return
    dest = run_report.get("destination") or {}
    bucket = dest.get("bucket", "")
    counts = {s: sum(1 for r in records.values() if r.get("status") == s) for s in RESULT_STATUSES}
    for status in RESULT_STATUSES:
        if run_report.get(status) != counts[status]:
            report.problems.append(
                f"run {run_id}: report says {status}={run_report.get(status)}, result log has {counts[status]}"
            )
    total = sum(int(run_report.get(k, 0)) for k in ("copied", "skipped", "failed", "not_attempted"))
    if total != run_report.get("objects"):
        report.problems.append(f"run {run_id}: counts add up to {total}, not objects={run_report.get('objects')}")
    if result.output is not None:
        for name in COUNT_KEYS:
            if name in result.output and result.output[name] != run_report.get(name):
                report.problems.append(f"run {run_id}: output {name}={result.output[name]} != report")
    for key, record in sorted(records.items()):
        where = (bucket, str(record.get("dest_key", "")))
        if record.get("status") in ("copied", "skipped") and where not in destination:
            report.lost += 1
            report.problems.append(
                f"run {run_id}: {key} reported {record['status']}, s3://{bucket}/{where[1]} is absent"
            )
    failed_listed = {f.get("key") for f in run_report.get("failures", [])}
    failed_logged = {k for k, r in records.items() if r.get("status") == "failed"}
    if not run_report.get("failures_truncated") and failed_listed != failed_logged:
        report.problems.append(f"run {run_id}: report failures {sorted(failed_listed)} != log {sorted(failed_logged)}")
    if result.status == "SUCCEEDED":
        planned = planned_keys(world, run_id) or []
        missing = [k for k in planned if records.get(k, {}).get("status") not in ("copied", "skipped")]
        if missing:
            report.lost += len(missing)
            report.problems.append(f"run {run_id} SUCCEEDED, {len(missing)} planned objects not done: {missing[:3]}")


def check_uploads(world: World, report: InvariantReport) -> None:
    """Count the incomplete multipart uploads left in any bucket."""
    s3 = world.s3()
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if uploads:
            report.orphan_uploads += len(uploads)
            keys = sorted({u["Key"] for u in uploads})
            report.problems.append(f"{len(uploads)} incomplete multipart upload(s) left in {bucket}: {keys[:3]}")


def _check_secrets(world: World, report: InvariantReport, extra_texts: list[str]) -> None:
    secrets = world.secrets()
    arns = [r.execution_arn for r in world.results]
    found = world.engine.scan_for_secrets(secrets, arns)
    texts = [
        *(json.dumps([r.output, r.error, r.cause, r.report], default=str) for r in world.results),
        *(f"{name} {kind} {message}" for name, kind, message in world.engine.runtime.errors),
        *(json.dumps(h) for h in world.tea.received_headers),
        *world.notes,
        *extra_texts,
    ]
    for text in texts:
        if any(secret in text for secret in secrets):
            found.append(f"text {text[:60]!r}")
    if found:
        report.leaked += len(found)
        report.problems.append(f"secrets found in: {found[:3]}")
