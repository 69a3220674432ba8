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


class MapError(_Shape):
    error: str | None
    cause: str


class RunReport(_Shape):
    """The run's outcome, from its plan, result files and events (``summary.collect``)."""

    run_id: str
    objects: int
    copied: int
    skipped: int
    failed: int
    not_attempted: int
    bytes: int = Field(description="bytes copied")
    dry_run: bool
    would_copy: int
    would_skip: int
    bytes_to_copy: int
    tea_requests: int
    tea_errors: int
    credential_refreshes: int = Field(description="credential versions adopted after the first")
    refresh_calls: int
    source: dict[str, Any] | None = Field(description="plan.json's source: mode, buckets, manifest/prefix/cmr")
    destination: dict[str, Any] | None
    schedule: dict[str, Any] | None
    planned_at: str | None
    failures_by_reason: dict[str, int]
    failures: list[Failure] = Field(description="the first MAX_LISTED_FAILURES failures, by key")
    failures_truncated: bool
    by_status: dict[str, int]
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    throughput_bytes_per_second: int | None
    timeline: list[list[int | float]] = Field(description="[seconds since start, objects done, bytes copied, failed]")
    refresh_offsets: list[float] = Field(description="seconds since start at which new credentials were adopted")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Report(RunReport):
    """report.json: the run's outcome plus what Summarize did (aborted uploads) and where it wrote the reports."""

    uploads_aborted: int
    errors: list[RecordedError]
    map_failed: bool
    map_error: MapError | None = None
    report_csv: str
    report_html: str
    generated_at: str | None
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
DRY_RUN_FIELDS = ("dry_run", "would_copy", "would_skip", "bytes_to_copy")
