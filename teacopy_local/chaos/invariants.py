"""The invariants checked after every scenario, from the destination and the scenario's own knowledge.

Nothing here reads teacopy's result log or staged manifest: what a run had to do comes from the scenario
(the keys its jobs asked for, the bytes it seeded: ``World.runs``), what happened from the buckets and the
S3 requests themselves (the fault layer sees every object S3 stored).

1. Every destination object is byte-identical to its source, and is one the jobs were asked to copy
   (``corrupt`` counts the others).
2. After a run that SUCCEEDED, every object it was asked for that exists at the source is at the destination,
   byte-identical (``missing_vs_expected`` counts those absent or different, ``lost`` those absent); so are the
   objects a scenario declares present after a failed run.
3. No incomplete multipart upload is left in any bucket (``orphan_uploads``).
4. Each run's report is consistent with what the scenario knows, without redoing Summarize's aggregation:
   it counts the objects the job asked for; its counts add up; the execution output says the same; it counts
   no more objects copied than S3 stored for the run, nor more copied or skipped than are at the destination;
   every failure it lists is an object the job asked for that S3 did not store; a run that stored objects or
   SUCCEEDED wrote a report.
5. TEA was called at most the scenario's bound.
6. No EDL token, secret key or session token appears in any execution's input, output or history, in a map
   child's input or output, in a Lambda event or answer, in a recorded runtime error, in the staging bucket,
   in a log line, or in an error the operator sees (``leaked``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .world import Place, RunRecord, World

COUNT_KEYS = ("objects", "copied", "skipped", "failed", "not_attempted")


@dataclass
class InvariantReport:
    lost: int = 0
    corrupt: int = 0
    leaked: int = 0
    orphan_uploads: int = 0
    missing_vs_expected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        counts = (self.lost, self.corrupt, self.leaked, self.orphan_uploads, self.missing_vs_expected)
        return not (any(counts) or self.problems)

    def summary(self) -> str:
        return (
            f"lost={self.lost} corrupt={self.corrupt} leaked={self.leaked} orphan_uploads={self.orphan_uploads} "
            f"missing_vs_expected={self.missing_vs_expected}"
        )


def check(world: World, tea_bound: int | None, secrets_extra: list[str] | None = None) -> InvariantReport:
    report = InvariantReport()
    destination = world.destination_objects()
    _check_destination(world, destination, report)
    for run in world.runs:
        _check_expected(run, destination, report)
        _check_report(run, destination, report)
    check_uploads(world, report)
    if tea_bound is not None and world.tea.requests > tea_bound:
        report.problems.append(f"TEA was called {world.tea.requests} times, more than the bound {tea_bound}")
    _check_secrets(world, report, secrets_extra or [])
    return report


def _check_destination(world: World, destination: dict[Place, str], report: InvariantReport) -> None:
    for (bucket, key), digest in sorted(destination.items()):
        wanted = world.expected.get((bucket, key))
        if wanted is None:
            report.corrupt += 1
            report.problems.append(f"unexpected object s3://{bucket}/{key} (no job asked for it)")
        elif wanted != digest:
            report.corrupt += 1
            report.problems.append(f"s3://{bucket}/{key} differs from its source")


def _check_expected(run: RunRecord, destination: dict[Place, str], report: InvariantReport) -> None:
    """What the run had to leave at the destination is there, byte for byte."""
    succeeded = run.result.status == "SUCCEEDED"
    wanted = {place: digest for place, digest in run.expected.items() if succeeded or place in run.must_exist}
    for place in sorted(run.must_exist - set(run.expected)):
        report.problems.append(f"run {run.run_id}: the scenario expects s3://{place[0]}/{place[1]}, not in its source")
    absent = sorted(place for place in wanted if place not in destination)
    different = sorted(
        place for place, digest in wanted.items() if place in destination and destination[place] != digest
    )
    report.lost += len(absent)
    report.missing_vs_expected += len(absent) + len(different)
    why = "SUCCEEDED" if succeeded else f"{run.result.status} (objects the scenario expects anyway)"
    if absent:
        report.problems.append(f"run {run.run_id} {why}: {len(absent)} expected objects absent: {absent[:3]}")
    if different:
        report.problems.append(f"run {run.run_id} {why}: {len(different)} expected objects differ: {different[:3]}")


def _check_report(run: RunRecord, destination: dict[Place, str], report: InvariantReport) -> None:
    """The run's report against the scenario's knowledge and the destination (no re-aggregation of the log)."""
    result, run_id = run.result, run.run_id
    stored = {place for place in run.written if place in set(run.dest_of.values())}
    summary = result.report
    if summary is None:
        if result.status == "SUCCEEDED":
            report.problems.append(f"run {run_id} SUCCEEDED without a report")
        if stored:
            report.problems.append(f"run {run_id}: S3 stored {len(stored)} of its objects but no report was written")
        return
    counts = {name: summary.get(name) for name in COUNT_KEYS}
    if not all(isinstance(value, int) for value in counts.values()):
        report.problems.append(f"run {run_id}: report counts are not all numbers: {counts}")
        return
    total = sum(int(counts[name] or 0) for name in ("copied", "skipped", "failed", "not_attempted"))
    if total != counts["objects"]:
        report.problems.append(f"run {run_id}: counts add up to {total}, not objects={counts['objects']}")
    if run.asked is not None and counts["objects"] != run.asked:
        report.problems.append(
            f"run {run_id}: report counts {counts['objects']} objects, the job asked for {run.asked}"
        )
    if result.output is not None:
        for name in COUNT_KEYS:
            if name in result.output and result.output[name] != summary.get(name):
                report.problems.append(
                    f"run {run_id}: output {name}={result.output[name]} != report {summary.get(name)}"
                )
    if run.dest_of:
        copied, done = int(counts["copied"] or 0), int(counts["copied"] or 0) + int(counts["skipped"] or 0)
        if copied > len(stored):
            report.problems.append(f"run {run_id}: report says {copied} copied, S3 stored {len(stored)} of its objects")
        present = sum(1 for place, digest in run.expected.items() if destination.get(place) == digest)
        if done > present:
            report.problems.append(
                f"run {run_id}: report says {done} copied or skipped, {present} are at the destination"
            )
        for failure in summary.get("failures", []):
            place = run.dest_of.get(str(failure.get("key")))
            if place is None:
                report.problems.append(
                    f"run {run_id}: report lists a failure of {failure.get('key')!r}, never asked for"
                )
            elif place in stored:
                report.problems.append(f"run {run_id}: report lists {failure.get('key')!r} failed, yet S3 stored it")


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
    """The engine's scan (histories, map children, Lambda events and answers, runtime errors, staging, logs),
    plus what the scenario itself saw (outputs, TEA's received headers, notes, the operator's message)."""
    secrets = world.secrets()
    arns = [r.execution_arn for r in world.results]
    found = world.engine.scan_for_secrets(secrets, arns)
    texts = [
        *(json.dumps([r.output, r.error, r.cause, r.report], default=str) for r in world.results),
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
