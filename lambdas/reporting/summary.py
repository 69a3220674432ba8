"""Summarize: aggregate a run's result log into its report and counts, in bounded memory, across invocations.

The result log is ``runs/<run>/results/<batch>/<seq>.json`` (CopyBatch writes one file per flush). A key belongs
to exactly one batch (Plan stages each source object once), so the last word on an object is found inside its
batch: Summarize lists the result files in key order (= batch by batch, each batch's files in time order), reads
them ahead in parallel, and folds one batch at a time into a ``Tally`` — counts by status, bytes, the failures
with the smallest keys (a cap), failures by reason (a cap), the progress curve (``render.Timeline``: fixed
bins). A key recorded twice (a retried or continued CopyBatch records again) counts once, with its last status.
The batch's rows go to ``report.csv`` at once (``lambdas.s3.writer.StagedWriter``: a multipart upload); nothing
per object outlives its batch. Memory: one batch's records, the files read ahead, one CSV part.

A run too large for one invocation continues: after a batch, when the budget (``summary_budget_seconds``, or the
Lambda's remaining time less DEADLINE_RESERVE_SECONDS) is spent, the tally, the last result key read, and the
CSV upload (id, parts; its tail in its own object) are checkpointed in ``runs/<run>/summary/`` and Summarize
answers ``{"run_id", "outcome", "continuation"}``; the state machine invokes it again (``SummaryDone``). The
last invocation completes report.csv, writes report.json and report.html, and deletes the checkpoint.

Before any of it, the first invocation aborts the multipart uploads paused objects left open
(``abort_leftover_uploads``); an upload that cannot be aborted is listed in the report (``cleanup_failures``),
never a reason not to write it.

A result file that is not JSON (CopyBatch normally sets such a file aside itself, but one written after its
batch's last read, or damaged later, can still be there) does not stop the report: Summarize moves it aside
(``runs/<run>/set-aside/…``, as CopyBatch does), counts it in ``unreadable_result_files``, and its objects count
as not attempted (so the run is reported failed, naming the file count). ``teacopy report`` (``collect``) only
counts such files and leaves them where they are.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas.contracts import staging
from lambdas.contracts.errors import CopyJobFailed, InvalidInput
from lambdas.contracts.models import COPIED, FAILED, SKIPPED, WOULD_COPY, WOULD_SKIP, parse_time
from lambdas.contracts.report import (
    CleanupFailure,
    CostEstimate,
    Failure,
    MapError,
    RecordedError,
    Report,
    RunReport,
    RunSummary,
)
from lambdas.contracts.settings import SummarySettings
from lambdas.copying.results import set_aside
from lambdas.reporting import cost as costs
from lambdas.reporting import render as reports
from lambdas.reporting.render import Timeline, progress_change
from lambdas.reporting.schedule_state import write_last_success
from lambdas.reporting.uploads import abort_run_uploads
from lambdas.s3.writer import StagedWriter

logger = logging.getLogger(__name__)
MAX_LISTED_FAILURES = 1000  # failures listed in report.json (the smallest keys); report.csv has them all
MAX_REASON_CLASSES = 100  # distinct failure reasons counted (more: "other")
MAX_ERROR_KINDS = 100  # distinct recorded batch errors (more are counted into the last)
READ_THREADS = 16
READ_AHEAD = 64  # result files requested ahead of the batch being folded
DEADLINE_RESERVE_SECONDS = 60  # Summarize checkpoints this long before its Lambda deadline at the latest
MAX_SUMMARY_INVOCATIONS = 1000  # the state machine loops Summarize at most this many times
CHECKPOINT_VERSION = 1


# --- leftover uploads -------------------------------------------------------------------------------------


def abort_leftover_uploads(s3: Any, bucket: str, run_id: str, failures: list[CleanupFailure] | None = None) -> int:
    """Abort the multipart uploads that paused objects of this run left open (their checkpoints).

    A run that ends with paused objects (a batch failed, refresh rounds ran out) must not leave
    incomplete uploads in the user's bucket, billed and invisible. Returns how many were aborted.
    With ``failures``, an abort that fails with anything but NoSuchUpload is appended there (its checkpoint is
    kept) and the others go on; without, it raises. A malformed checkpoint is no exception: its upload is found
    through the run's manifest (``lambdas.reporting.uploads``).
    """
    return abort_run_uploads(s3, bucket, run_id, failures)


# --- the tally ----------------------------------------------------------------------------------------------


class Tally:
    """A run's outcome, folded in one batch at a time; bounded whatever the number of objects; JSON-able."""

    def __init__(self, origin: float) -> None:
        self.by_status: dict[str, int] = {}
        self.recorded = 0  # objects with at least one record
        self.copied_bytes = 0
        self.would_copy_bytes = 0
        self.failures: list[tuple[str, str]] = []  # (key, reason): the smallest keys, at most 2x the cap
        self.failed = 0
        self.reasons: dict[str, int] = {}
        self.timeline = Timeline(origin)
        self.finished: float | None = None  # the latest result file
        self.batches = 0
        self.files = 0
        self.unreadable = 0  # result files that were not JSON (set aside by Summarize)

    def add_batch(self, batch: str, files: list[tuple[float | None, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        """Fold one batch's result files (in time order); returns its rows (each object's last word, by key)."""
        last: dict[str, tuple[str, int]] = {}
        final: dict[str, tuple[dict[str, Any], float | None]] = {}
        for when, records in files:
            self.files += 1
            if when is not None:
                self.finished = when if self.finished is None else max(self.finished, when)
            for record in records:
                key = str(record["key"])
                change = progress_change(last, key, record)
                if when is not None:
                    self.timeline.add(when, *change)
                final[key] = (record, when)
        rows = []
        for key in sorted(final):
            record, when = final[key]
            status = str(record.get("status"))
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if status == COPIED:
                self.copied_bytes += int(record.get("bytes", 0) or 0)
            elif status == WOULD_COPY:
                self.would_copy_bytes += int(record.get("bytes", 0) or 0)
            elif status == FAILED:
                self._failure(key, str(record.get("reason", "")))
            rows.append({**record, "batch": batch, "recorded_at": reports.iso(when)})
        self.recorded += len(final)
        self.batches += 1
        return rows

    def _failure(self, key: str, reason: str) -> None:
        self.failed += 1
        kind = reason_class(reason)
        if kind not in self.reasons and len(self.reasons) >= MAX_REASON_CLASSES:
            kind = "other"
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        self.failures.append((key, reason))
        if len(self.failures) >= 2 * MAX_LISTED_FAILURES:
            self.failures = sorted(self.failures)[:MAX_LISTED_FAILURES]

    def listed_failures(self) -> list[Failure]:
        return [Failure(key=k, reason=r) for k, r in sorted(self.failures)[:MAX_LISTED_FAILURES]]

    def state(self) -> dict[str, Any]:
        out = {name: value for name, value in self.__dict__.items() if name != "timeline"}
        out["failures"] = [list(f) for f in self.failures]
        out["timeline"] = self.timeline.state()
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Tally:
        tally = cls(0.0)
        for name, value in state.items():
            setattr(tally, name, value)
        tally.failures = [(str(k), str(r)) for k, r in state["failures"]]
        tally.timeline = Timeline.from_state(state["timeline"])
        return tally


def reason_class(reason: str) -> str:
    return reason.split(":", 1)[0] if reason else "unknown"


# --- reading the result log ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A staging file whose bytes are not JSON (``read_ahead`` yields it instead of a document)."""

    body: bytes


def _get_document(s3: Any, bucket: str, key: str) -> Any:
    body = staging.get_body(s3, bucket, key)
    try:
        return json.loads(body)
    except ValueError:  # not JSON (or not UTF-8)
        return Unreadable(body)


def read_ahead(s3: Any, bucket: str, keys: Iterable[str], window: int = READ_AHEAD) -> Iterator[tuple[str, Any]]:
    """(key, JSON document or ``Unreadable``) of ``keys`` in their order, up to ``window`` requested ahead on
    READ_THREADS threads."""
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        pending: deque[tuple[str, Future[Any]]] = deque()
        for key in keys:
            pending.append((key, pool.submit(_get_document, s3, bucket, key)))
            if len(pending) >= window:
                done_key, future = pending.popleft()
                yield done_key, future.result()
        while pending:
            done_key, future = pending.popleft()
            yield done_key, future.result()


def result_batches(
    s3: Any,
    bucket: str,
    run_id: str,
    start_after: str | None = None,
    on_unreadable: Callable[[str, bytes], None] | None = None,
) -> Iterator[tuple[str, list[tuple[float | None, list[dict[str, Any]]]], str]]:
    """(batch id, its result files as (time, records) in time order, the batch's last result key), batch by batch,
    after result key ``start_after``. A file that is not JSON goes to ``on_unreadable`` (key, bytes) and records
    nothing."""
    keys = staging.list_keys(s3, bucket, staging.results_prefix(run_id), start_after=start_after)
    batch: str | None = None
    files: list[tuple[float | None, list[dict[str, Any]]]] = []
    last_key = ""
    for key, records in read_ahead(s3, bucket, keys):
        name = reports.batch_of(key)
        if batch is not None and name != batch:
            yield batch, files, last_key
            files = []
        batch, last_key = name, key
        if isinstance(records, Unreadable):
            if on_unreadable is not None:
                on_unreadable(key, records.body)
            records = None
        files.append((reports.sequence_time(key), records if isinstance(records, list) else []))
    if batch is not None:
        yield batch, files, last_key


def fold(
    s3: Any,
    bucket: str,
    run_id: str,
    tally: Tally,
    *,
    start_after: str | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    set_aside_unreadable: bool = False,
) -> tuple[str | None, bool]:
    """Fold the result batches after ``start_after`` into ``tally`` (rows to ``on_rows``). Stops after a batch when
    ``should_stop()``. Returns (the last result key folded, whether every batch is folded). A result file that is
    not JSON is counted (``tally.unreadable``) and, with ``set_aside_unreadable`` (Summarize), set aside."""

    def unreadable(key: str, body: bytes) -> None:
        tally.unreadable += 1
        if set_aside_unreadable:
            set_aside(s3, bucket, key, body)

    cursor = start_after
    for batch, files, last_key in result_batches(s3, bucket, run_id, start_after, unreadable):
        rows = tally.add_batch(batch, files)
        if on_rows is not None:
            on_rows(rows)
        cursor = last_key
        if should_stop is not None and should_stop():
            return cursor, False
    return cursor, True


# --- events -------------------------------------------------------------------------------------------------


@dataclass
class EventTotals:
    tea_requests: int = 0
    credential_fetches: int = 0  # TEA requests that answered a fetch
    tea_errors: int = 0
    refresh_requests: int = 0
    first_adoption: dict[str, float] = field(default_factory=dict)  # new version -> when first adopted
    adopted: set[str] = field(default_factory=set)


def event_totals(s3: Any, bucket: str, run_id: str) -> EventTotals:
    """The run's TEA requests and credential refreshes, streamed (one event file at a time)."""
    totals = EventTotals()
    for _key, event in read_ahead(s3, bucket, staging.list_keys(s3, bucket, staging.events_prefix(run_id, "tea"))):
        totals.tea_requests += 1
        totals.tea_errors += int(event.get("outcome") != "ok")
        totals.credential_fetches += int(event.get("outcome") == "ok" and event.get("action") == "fetch")
    refresh_keys = staging.list_keys(s3, bucket, staging.events_prefix(run_id, "refresh"))
    for _key, event in read_ahead(s3, bucket, refresh_keys):
        totals.refresh_requests += 1
        version = event.get("new_version")
        if version and version != event.get("used_version"):
            totals.adopted.add(str(version))
            if isinstance(event.get("at"), int | float):
                at = float(event["at"])
                totals.first_adoption[str(version)] = min(totals.first_adoption.get(str(version), at), at)
    return totals


def first_tea_request(s3: Any, bucket: str, run_id: str) -> float | None:
    keys = staging.list_keys(s3, bucket, staging.events_prefix(run_id, "tea"))
    times = (float(e["at"]) for _k, e in read_ahead(s3, bucket, keys) if isinstance(e.get("at"), int | float))
    return min(times, default=None)


def fatal_errors(s3: Any, bucket: str, run_id: str) -> list[RecordedError]:
    """The errors that failed map children recorded (CopyBatch, Credentials), each once, oldest first."""
    keys = staging.list_keys(s3, bucket, staging.events_prefix(run_id, "errors"))
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for _key, event in read_ahead(s3, bucket, keys):
        kind = (str(event.get("error", "")), str(event.get("message", "")))
        if kind not in seen and len(seen) >= MAX_ERROR_KINDS:
            kind = ("other", f"more kinds of error than {MAX_ERROR_KINDS}: see the run's events/errors/")
        if kind not in seen:
            seen[kind] = {"error": kind[0], "message": kind[1], "count": 0}
        seen[kind]["count"] += 1
    return [RecordedError(**entry) for entry in seen.values()]


# --- the report ---------------------------------------------------------------------------------------------


def run_started(s3: Any, bucket: str, run_id: str, plan: Mapping[str, Any], started: float | None) -> float:
    """When the run started: the execution (``started``), else when Plan started planning (``planned_at``), else
    the first TEA request of the run, else when plan.json was written."""
    if started is None and isinstance(plan.get("planned_at"), str):
        started = _started(plan["planned_at"])
    if started is None:
        started = first_tea_request(s3, bucket, run_id)
    if started is None:
        started = s3.head_object(Bucket=bucket, Key=staging.plan_key(run_id))["LastModified"].timestamp()
    return float(started)


def run_report(run_id: str, plan: Mapping[str, Any], tally: Tally, events: EventTotals, started: float) -> RunReport:
    objects = int(plan["objects"])
    finished = tally.finished
    duration = None if finished is None else max(0.0, finished - started)
    counts = tally.by_status
    return RunReport(
        run_id=run_id,
        objects=objects,
        copied=counts.get(COPIED, 0),
        skipped=counts.get(SKIPPED, 0),
        failed=counts.get(FAILED, 0),
        not_attempted=max(0, objects - tally.recorded),
        bytes=tally.copied_bytes,
        dry_run=bool((plan.get("options") or {}).get("dry_run")),
        would_copy=counts.get(WOULD_COPY, 0),
        would_skip=counts.get(WOULD_SKIP, 0),
        bytes_to_copy=tally.would_copy_bytes,
        tea_requests=events.tea_requests,
        credential_fetches=events.credential_fetches,
        tea_errors=events.tea_errors,
        refresh_requests=events.refresh_requests,
        credential_refreshes=len(events.adopted),
        coalesced_refreshes=max(0, events.refresh_requests - len(events.adopted)),
        sizes_known=_optional_int(plan.get("sizes_known")),
        checksums_known=_optional_int(plan.get("checksums_known")),
        source=plan.get("source"),
        destination=plan.get("destination"),
        schedule=plan.get("schedule"),
        planned_at=plan.get("planned_at"),
        failures_by_reason=dict(tally.reasons),
        failures=tally.listed_failures(),
        failures_truncated=tally.failed > MAX_LISTED_FAILURES,
        by_status=dict(counts),
        started_at=reports.iso(started),
        finished_at=reports.iso(finished),
        duration_seconds=None if duration is None else round(duration, 3),
        throughput_bytes_per_second=round(tally.copied_bytes / duration) if duration else None,
        timeline=tally.timeline.points(),
        unreadable_result_files=tally.unreadable,
        refresh_offsets=sorted(round(max(0.0, t - started), 3) for t in events.first_adoption.values())[
            : reports.MAX_REFRESH_MARKS
        ],
    )


def collect(s3: Any, bucket: str, run_id: str, started: float | None = None) -> dict[str, Any]:
    """Read the run's plan, results and events; return the report (no secrets are ever in them). Bounded memory:
    what ``teacopy report`` shows of a live run."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    started = run_started(s3, bucket, run_id, plan, started)
    tally = Tally(started)
    fold(s3, bucket, run_id, tally)
    return run_report(run_id, plan, tally, event_totals(s3, bucket, run_id), started).to_dict()


def collect_run(
    s3: Any, bucket: str, run_id: str, started: float | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report, and the rows of report.csv (each object's last recorded outcome, by batch then key), in
    memory: for the CLI and local runs (``teacopy report --csv``, ``retry-failed``), not for Summarize."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    started = run_started(s3, bucket, run_id, plan, started)
    tally = Tally(started)
    rows: list[dict[str, Any]] = []
    fold(s3, bucket, run_id, tally, on_rows=rows.extend)
    report = run_report(run_id, plan, tally, event_totals(s3, bucket, run_id), started)
    return report.to_dict(), rows


def write_report_once(s3: Any, bucket: str, run_id: str, started: float | None, **fields: Any) -> Report:
    """The run's report in one pass, no continuation: report.csv streamed as Summarize streams it, then report.json
    and report.html. For the Cleanup of a run that ended without Summarize (``lambdas.lifecycle.cleanup``);
    ``fields`` are the Report's own (uploads_aborted, errors, execution_status, ...)."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    started = run_started(s3, bucket, run_id, plan, started)
    tally = Tally(started)
    csv = StagedWriter(s3, bucket, reports.csv_key(run_id), content_type="text/csv; charset=utf-8")
    csv.write(reports.csv_header().encode("utf-8"))
    fold(s3, bucket, run_id, tally, on_rows=lambda rows: csv.write(reports.csv_rows(rows).encode("utf-8")))
    csv.finish()
    csv.complete()
    run = run_report(run_id, plan, tally, event_totals(s3, bucket, run_id), started)
    report = Report(
        **run.model_dump(),
        report_csv=f"s3://{bucket}/{reports.csv_key(run_id)}",
        report_html=f"s3://{bucket}/{reports.html_key(run_id)}",
        generated_at=reports.iso(time.time()),
        **fields,
    )
    document = report.to_dict()
    staging.put_json(s3, bucket, staging.report_key(run_id), document)
    reports.write_html(s3, bucket, run_id, document)
    return report


# --- Summarize, across invocations --------------------------------------------------------------------------

SUMMARIZING, COMPLETING = "summarizing", "completing"


@dataclass
class SummaryProgress:
    """What a Summarize invocation hands to the next one (``runs/<run>/summary/checkpoint.json``)."""

    started: float
    uploads_aborted: int
    cleanup_failures: list[dict[str, str]]
    tally: dict[str, Any]
    csv: dict[str, Any]  # StagedWriter.state() of report.csv
    generation: int = 0
    state: str = SUMMARIZING
    cursor: str | None = None  # the last result key folded
    tail_key: str | None = None  # report.csv's bytes not uploaded yet
    seconds: float = 0.0
    cost: dict[str, Any] = field(default_factory=dict)  # RequestTally.state() of the objects folded so far

    def to_dict(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SummaryProgress:
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"unknown summary checkpoint version {data.get('version')!r}")
        return cls(**{k: v for k, v in data.items() if k != "version"})


def checkpoint_key(run_id: str) -> str:
    return f"{staging.summary_prefix(run_id)}checkpoint.json"


class _Summary:
    """One Summarize invocation: resume (or start), fold batches until done or out of budget, then report."""

    def __init__(
        self,
        event: Mapping[str, Any],
        settings: SummarySettings,
        s3: Any,
        ssm: Any,
        remaining_seconds: Callable[[], float] | None,
    ) -> None:
        self.started_at = time.monotonic()
        self.run_id, self.outcome = str(event["run_id"]), event.get("outcome") or {}
        self.settings, self.s3, self.ssm, self.remaining = settings, s3, ssm, remaining_seconds
        self.bucket = settings.staging_bucket
        arn = event.get("execution_arn")
        self.execution_arn = arn if isinstance(arn, str) and arn else None
        self.shape = copy_shape(settings)
        self.model = costs.ComputeModel.for_shape(self.shape)
        self.csv = StagedWriter(s3, self.bucket, reports.csv_key(self.run_id), content_type="text/csv; charset=utf-8")
        data = staging.get_json_if_present(s3, self.bucket, checkpoint_key(self.run_id))
        if data is None:
            self.progress = self._start(event)
            self.tally = Tally.from_state(self.progress.tally)
            self.csv.write(reports.csv_header().encode("utf-8"))
        else:
            self.progress = SummaryProgress.from_dict(data)
            self.tally = Tally.from_state(self.progress.tally)
            tail = b"" if self.progress.tail_key is None else staging.get_bytes(s3, self.bucket, self.progress.tail_key)
            self.csv.restore(self.progress.csv, tail)
        self.requests = (
            costs.RequestTally.from_state(self.progress.cost) if self.progress.cost else costs.RequestTally()
        )

    def _start(self, event: Mapping[str, Any]) -> SummaryProgress:
        """The first invocation: abort leftover uploads (failures listed, never fatal), fix the run's start."""
        failures: list[CleanupFailure] = []
        aborted = abort_leftover_uploads(self.s3, self.bucket, self.run_id, failures)
        plan = staging.get_json(self.s3, self.bucket, staging.plan_key(self.run_id))
        started = run_started(self.s3, self.bucket, self.run_id, plan, _started(event.get("execution_started")))
        return SummaryProgress(
            started=started,
            uploads_aborted=aborted,
            cleanup_failures=[f.model_dump() for f in failures],
            tally=Tally(started).state(),
            csv={},
        )

    def _out_of_time(self) -> bool:
        if time.monotonic() - self.started_at >= self.settings.summary_budget_seconds:
            return True
        return self.remaining is not None and self.remaining() < DEADLINE_RESERVE_SECONDS

    def run(self) -> dict[str, Any]:
        progress = self.progress
        if progress.state == SUMMARIZING:
            if progress.generation >= MAX_SUMMARY_INVOCATIONS:
                raise CopyJobFailed(
                    f"the run's results were not summarized in {MAX_SUMMARY_INVOCATIONS} invocations "
                    f"({self.tally.recorded} objects so far)"
                )
            cursor, complete = fold(
                self.s3,
                self.bucket,
                self.run_id,
                self.tally,
                start_after=progress.cursor,
                on_rows=self._rows,
                should_stop=self._out_of_time,
                set_aside_unreadable=True,
            )
            progress.cursor = cursor
            if not complete:
                return self._continue()
            self.csv.finish()  # the last part (or the whole report.csv in one PutObject)
            if self.csv.upload_id is not None:  # completing must survive a retry
                progress.state = COMPLETING
                self._save(b"")
        self.csv.complete()
        return self._report()

    def _rows(self, rows: list[dict[str, Any]]) -> None:
        """A batch's rows: to report.csv, and priced (the run's estimated cost)."""
        self.csv.write(reports.csv_rows(rows).encode("utf-8"))
        self.requests.add_rows(rows, self.shape, self.model)

    def _save(self, tail: bytes) -> None:
        progress, prefix = self.progress, staging.summary_prefix(self.run_id)
        previous = progress.tail_key
        progress.generation += 1
        progress.tally = self.tally.state()
        progress.csv = self.csv.state()
        progress.cost = self.requests.state()
        progress.seconds = round(progress.seconds + time.monotonic() - self.started_at, 3)
        self.started_at = time.monotonic()
        progress.tail_key = f"{prefix}csv-tail-{progress.generation:05d}.csv"
        self.s3.put_object(Bucket=self.bucket, Key=progress.tail_key, Body=tail, ContentType="text/csv")
        staging.put_json(self.s3, self.bucket, checkpoint_key(self.run_id), progress.to_dict())
        if previous is not None and previous != progress.tail_key:
            staging.delete_key(self.s3, self.bucket, previous)

    def _continue(self) -> dict[str, Any]:
        self._save(self.csv.tail())
        logger.info(
            "summarizing continues in another invocation",
            extra={
                "invocation": self.progress.generation,
                "objects": self.tally.recorded,
                "batches": self.tally.batches,
            },
        )
        return {
            "run_id": self.run_id,
            "outcome": dict(self.outcome),
            "continuation": {
                "invocation": self.progress.generation,
                "objects": self.tally.recorded,
                "batches": self.tally.batches,
            },
        }

    def _report(self) -> dict[str, Any]:
        progress, bucket, run_id, outcome = self.progress, self.bucket, self.run_id, self.outcome
        plan = staging.get_json(self.s3, bucket, staging.plan_key(run_id))
        run = run_report(run_id, plan, self.tally, event_totals(self.s3, bucket, run_id), progress.started)
        map_failed = bool(outcome.get("map_failed"))
        report = Report(
            **run.model_dump(),
            uploads_aborted=progress.uploads_aborted,
            cleanup_failures=[CleanupFailure(**f) for f in progress.cleanup_failures],
            summary_invocations=progress.generation + 1 - int(progress.state == COMPLETING),
            errors=fatal_errors(self.s3, bucket, run_id),
            map_failed=map_failed,
            map_error=MapError(error=outcome.get("error"), cause=_short(outcome.get("cause"))) if map_failed else None,
            report_csv=f"s3://{bucket}/{reports.csv_key(run_id)}",
            report_html=f"s3://{bucket}/{reports.html_key(run_id)}",
            generated_at=reports.iso(time.time()),
            execution_arn=self.execution_arn,
            cost=CostEstimate(**costs.run_cost(self.requests.finished(self.model), self.shape, model=self.model)),
        )
        report_key = staging.report_key(run_id)
        document = report.to_dict()
        staging.put_json(self.s3, bucket, report_key, document)
        reports.write_html(self.s3, bucket, run_id, document)
        staging.delete_prefix(self.s3, bucket, staging.summary_prefix(run_id))
        location = f"s3://{bucket}/{report_key}"
        summary = RunSummary.of(report, location).to_dict()
        logger.info("run summary", extra={"summary": summary, "invocations": report.summary_invocations})
        too_many = report.failed * 100 > self.settings.max_failed_percent * report.objects
        if report.map_failed or too_many or report.not_attempted:
            why = []
            if report.failed:
                why.append(f"{report.failed} of {report.objects} objects failed ({report.failures_by_reason})")
            if report.not_attempted:
                why.append(f"{report.not_attempted} objects were not attempted")
            if report.unreadable_result_files:
                why.append(
                    f"{report.unreadable_result_files} result files were not JSON (set aside under "
                    f"runs/{run_id}/set-aside/; their objects count as not attempted)"
                )
            for error in report.errors[:3]:  # the failed batches' own words (their causes stay in the children)
                why.append(f"{error.error}: {_short(error.message, 400).rstrip('.')}")
            if report.map_failed and not report.errors:
                why.append(f"a batch failed: {outcome.get('error')}: {_short(outcome.get('cause'), 300)}")
            raise CopyJobFailed("; ".join(why) + f". Report: {location}")
        _record_schedule_success(report, self.settings, self.ssm)
        return summary


def summarize(
    event: Any,
    *,
    settings: SummarySettings,
    s3: Any,
    ssm: Any = None,
    remaining_seconds: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The Summarize step: the run's summary (the execution output), or ``{"run_id", "outcome", "continuation"}``
    when the result log needs another invocation. Raises CopyJobFailed (after writing the report) when the run
    failed: the map failed, objects were not attempted, or more than ``max_failed_percent`` failed."""
    if not isinstance(event, dict) or not isinstance(event.get("run_id"), str):
        raise InvalidInput("run_id", "must be a string")
    return _Summary(event, settings, s3, ssm, remaining_seconds).run()


def _record_schedule_success(report: Report, settings: SummarySettings, ssm: Any) -> None:
    """An incremental schedule's run copied (or skipped) every object: the next one queries from this run's plan
    time on. A run with failed objects records nothing, even within ``max_failed_percent``: the next run asks CMR
    again from the last complete run, so the failed granules are in it (those copied meanwhile are skipped)."""
    schedule, planned_at = report.schedule, report.planned_at
    if not isinstance(schedule, dict) or not schedule.get("incremental") or report.dry_run:
        return
    if report.failed or report.not_attempted:
        logger.warning(
            "objects failed: the schedule's last success stays where it was, so the next run includes them",
            extra={"schedule": schedule.get("name"), "failed": report.failed, "not_attempted": report.not_attempted},
        )
        return
    if not settings.schedule_state_prefix or ssm is None or not isinstance(planned_at, str):
        logger.warning(
            "no schedule state store configured: the next run is not narrowed", extra={"schedule": schedule.get("name")}
        )
        return
    write_last_success(ssm, settings.schedule_state_prefix, str(schedule["name"]), planned_at)


def copy_shape(settings: SummarySettings) -> costs.CopyShape:
    """The deployed copy settings a run is priced with (Summarize's environment: the stack's configuration)."""
    return costs.CopyShape(
        part_size=settings.part_size_bytes,
        multipart_threshold=settings.multipart_threshold_bytes,
        batch_max_objects=settings.batch_max_objects,
        batch_max_bytes=settings.batch_max_bytes,
        copy_memory_mb=settings.copy_memory_mb,
        source_region=settings.source_region,
    )


def _started(value: Any) -> float | None:
    """The execution's start time, if the state machine passes it (``$$.Execution.StartTime``)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(text: Any, limit: int = 2000) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[:limit] + "…"
