"""The counters' one vocabulary: declared once (lambdas/contracts/counters.py), the same in docs/counters.md,
the report model, the execution output, the metrics and the progress lines."""

from __future__ import annotations

import io
import re
from pathlib import Path

from lambdas.contracts import counters
from lambdas.contracts.report import COUNT_FIELDS, DRY_RUN_FIELDS, RunReport
from lambdas.observability import metrics
from teacopy_cli.progress import ProgressBar, Snapshot
from teacopy_local.runner import ProgressPrinter

DOC = Path(__file__).resolve().parents[2] / "docs" / "counters.md"


def doc_rows() -> dict[str, tuple[str, str, str]]:
    """name -> (label, meaning, metric) from the table of docs/counters.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `(\w+)` \| (.+?) \| (.+?) \| (`\w+`|—) \| .+ \|", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3), match.group(4).strip("`"))
    return rows


def test_the_docs_table_is_the_code() -> None:
    expected = {c.name: (c.label, c.meaning, c.metric or "—") for c in counters.ALL}
    assert doc_rows() == expected


def test_names_are_unique_and_the_report_model_carries_every_run_counter() -> None:
    names = [c.name for c in counters.ALL]
    labels = [c.label for c in counters.ALL]
    assert len(set(names)) == len(names) and len(set(labels)) == len(labels)
    fields = RunReport.model_fields
    for counter in counters.ALL:
        if counter.local_only:
            assert counter.name not in fields
        else:
            assert counter.meaning in str(fields[counter.name].description), counter.name
    # the execution output's counts (a contract with whoever reads it) are unchanged
    assert COUNT_FIELDS == ("objects", "copied", "skipped", "failed", "not_attempted", "bytes", "tea_requests",
                            "credential_refreshes")  # fmt: skip
    assert DRY_RUN_FIELDS == ("dry_run", "would_copy", "would_skip", "bytes_to_copy")


def test_metrics_are_named_by_their_counters() -> None:
    assert metrics.OBJECTS_COPIED == counters.COPIED.metric == "ObjectsCopied"
    assert metrics.BYTES_COPIED == counters.BYTES.metric == "BytesCopied"
    assert metrics.TEA_REQUESTS == counters.TEA_REQUESTS.metric == "TeaRequests"
    assert metrics.TEA_ERRORS == counters.TEA_ERRORS.metric == "TeaErrors"
    assert metrics.CREDENTIAL_REFRESHES == counters.CREDENTIAL_REFRESHES.metric == "CredentialRefreshes"
    assert metrics.COALESCED_REFRESHES == counters.COALESCED_REFRESHES.metric == "CoalescedRefreshes"
    sink = metrics.RecordingMetrics()
    metrics.record_copy_result(sink, {"copied": 3, "skipped": 1, "failed": 2, "bytes": 10})
    assert {name: sink.total(name) for name in sink.names()} == {
        "ObjectsCopied": 3,
        "ObjectsSkipped": 1,
        "ObjectsFailed": 2,
        "BytesCopied": 10,
    }


def test_both_progress_lines_use_the_labels() -> None:
    counts = {"done": 4, "objects": 10, "copied": 3, "skipped": 0, "failed": 1, "bytes": 0}
    counts |= {"tea_requests": 10, "credential_refreshes": 9, "refresh_requests": 115}
    stream = io.StringIO()
    ProgressPrinter(stream, 10)(counts)
    local = stream.getvalue()
    assert "copied 3  skipped 0  failed 1" in local
    assert "TEA requests 10  credential refreshes 9  refresh requests 115" in local
    snap = Snapshot(
        objects=10,
        bytes_total=None,
        done=4,
        by_status={"copied": 3, "failed": 1},
        bytes_done=0,
        failed=1,
        credential_refreshes=9,
        refresh_requests=115,
        tea_requests=10,
        elapsed=1.0,
    )
    watched = ProgressBar(io.StringIO(), clock=lambda: 0.0).line(snap, "RUNNING")
    assert "failed 1  TEA requests 10  credential refreshes 9  refresh requests 115  RUNNING" in watched
