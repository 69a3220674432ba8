"""What Summarize writes to ``runs/<run>/report.json`` and returns as the execution output (the report's keys).

``RunReport`` is what the run's staging files say (``summary.collect``: also what ``teacopy report`` shows);
``Report`` adds what Summarize itself did and found (or the clean-up, for a run Summarize never saw; then
``execution_status`` says how the execution ended); ``RunSummary`` is the execution output. ``to_dict`` gives
the JSON form (every key present, ``null`` when unknown; ``map_error`` only when the map failed,
``execution_status`` only in a clean-up's report; the dry-run counts of the summary only for a dry run).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lambdas.contracts import counters


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Failure(_Shape):
    key: str
    reason: str


class RecordedError(_Shape):
    """An error a failed map child recorded (CopyBatch, Credentials), with how often it was recorded."""

    error: str
    message: str
    count: int


class CleanupFailure(_Shape):
    """A leftover multipart upload Summarize could not abort (it stays in the destination bucket until aborted)."""

    dest_bucket: str
    dest_key: str
    upload_id: str
    error: str


class MapError(_Shape):
    error: str | None
    cause: str


class CostEstimate(_Shape):
    """The run's estimated cost on AWS (``lambdas.reporting.cost.run_cost``): its copies priced at us-west-2 list
    prices with the deployed settings; an estimate from the copy path's request pattern, not a bill."""

    objects: int = Field(description="objects copied (a dry run: that it would copy)")
    bytes: int = Field(description="their bytes")
    skipped: int = Field(description="objects skipped (one HeadObject each)")
    batches: int = Field(description="batches the copied objects make (the Plan's batching)")
    requests: dict[str, dict[str, int]] = Field(
        description="modelled S3 requests by bucket kind (data, staging) and price class (put, get, free)"
    )
    source_region: str
    destination_region: str = Field(description="as priced: data transfer only when it differs from the source's")
    usd: float = Field(description="USD in total (S3 requests, Lambda, Step Functions, data transfer)")
    breakdown_usd: dict[str, float]
    usd_per_tb: float
    storage_usd_per_month: float = Field(description="a month of S3 Standard for the bytes copied")


def _count(counter: counters.Counter) -> Any:
    """A required count field described by its counter (``lambdas.contracts.counters``: the one vocabulary)."""
    return Field(description=f"{counter.label}: {counter.meaning}")


class RunReport(_Shape):
    """The run's outcome, from its plan, result files and events (``summary.collect``)."""

    run_id: str
    objects: int = _count(counters.OBJECTS)
    copied: int = _count(counters.COPIED)
    skipped: int = _count(counters.SKIPPED)
    failed: int = _count(counters.FAILED)
    not_attempted: int = _count(counters.NOT_ATTEMPTED)
    bytes: int = _count(counters.BYTES)
    dry_run: bool
    would_copy: int = _count(counters.WOULD_COPY)
    would_skip: int = _count(counters.WOULD_SKIP)
    bytes_to_copy: int = _count(counters.BYTES_TO_COPY)
    tea_requests: int = _count(counters.TEA_REQUESTS)
    credential_fetches: int = _count(counters.CREDENTIAL_FETCHES)
    tea_errors: int = _count(counters.TEA_ERRORS)
    refresh_requests: int = _count(counters.REFRESH_REQUESTS)
    credential_refreshes: int = _count(counters.CREDENTIAL_REFRESHES)
    coalesced_refreshes: int = _count(counters.COALESCED_REFRESHES)
    sizes_known: int | None = Field(
        default=None, description="planned objects whose size the plan knew (the copy checks it); null: not recorded"
    )
    checksums_known: int | None = Field(
        default=None,
        description="planned objects with a published checksum (MD5/SHA from a manifest or CMR; the copy verifies "
        "it); null: not recorded",
    )
    source: dict[str, Any] | None = Field(description="plan.json's source: mode, buckets, manifest/prefix/cmr")
    destination: dict[str, Any] | None
    schedule: dict[str, Any] | None
    planned_at: str | None
    failures_by_reason: dict[str, int]
    failures: list[Failure] = Field(
        description="the first MAX_LISTED_FAILURES failures by key (all of them are in report.csv)"
    )
    failures_truncated: bool
    by_status: dict[str, int]
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    throughput_bytes_per_second: int | None
    timeline: list[list[int | float]] = Field(description="[seconds since start, objects done, bytes copied, failed]")
    refresh_offsets: list[float] = Field(description="seconds since start at which new credentials were adopted")
    unreadable_result_files: int = Field(
        default=0, description="result files that were not JSON (Summarize set them aside; their objects not counted)"
    )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Report(RunReport):
    """report.json: the run's outcome plus what Summarize did (aborted uploads, those it could not abort, its
    invocations) and where it wrote the reports."""

    uploads_aborted: int
    cleanup_failures: list[CleanupFailure] = Field(
        default_factory=list, description="leftover uploads that could not be aborted (still open)"
    )
    summary_invocations: int = Field(default=1, description="Summarize invocations that built this report")
    errors: list[RecordedError]
    map_failed: bool
    map_error: MapError | None = None
    report_csv: str
    report_html: str
    generated_at: str | None
    execution_arn: str | None = Field(
        default=None, description="the execution's ARN (the state machine passes it); null: not known"
    )
    cost: CostEstimate | None = Field(
        default=None, description="the run's estimated cost (Summarize prices it); null: not priced"
    )
    # Set only when the clean-up wrote the report because Summarize never ran (lambdas/lifecycle/cleanup.py):
    # the execution's terminal status, ABORTED, TIMED_OUT or FAILED.
    execution_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        absent = {name for name in ("map_error", "execution_status") if getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=absent or None)


class RunSummary(_Shape):
    """The execution output: the counts and where the reports are."""

    objects: int
    copied: int
    skipped: int
    failed: int
    not_attempted: int
    bytes: int
    tea_requests: int
    credential_refreshes: int
    dry_run: bool | None = None  # the four dry-run fields: only for a dry run
    would_copy: int | None = None
    would_skip: int | None = None
    bytes_to_copy: int | None = None
    report: str
    report_csv: str
    report_html: str

    @classmethod
    def of(cls, report: Report, location: str) -> RunSummary:
        dry = {name: getattr(report, name) for name in DRY_RUN_FIELDS} if report.dry_run else {}
        counts = {name: getattr(report, name) for name in COUNT_FIELDS}
        return cls(**counts, **dry, report=location, report_csv=report.report_csv, report_html=report.report_html)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


COUNT_FIELDS = tuple(counter.name for counter in counters.SUMMARY_COUNTERS)
DRY_RUN_FIELDS = ("dry_run", *(counter.name for counter in counters.DRY_RUN_COUNTERS))
