"""Run reports for people: a CSV of per-object results and a self-contained HTML page.

Summarize builds the report dict (``summary``) and writes, next to ``runs/<run>/report.json``:

- ``report.csv``   one row per object (its last recorded outcome): key, dest_key, status, bytes,
                   reason, batch, recorded_at (when the result file holding it was written); rows by
                   batch, then by key. Streamed (``csv_header`` + ``csv_rows``) into a multipart upload;
- ``report.html``  the execution (its ARN), start, end and duration; the counts (``lambdas.contracts.counters``: the
                   labels and meanings of the one vocabulary); verification (how the copied objects were
                   verified: S3's full-object CRC64NVME, published checksums, planned sizes; mismatches);
                   the estimated cost (the report's ``cost``: Summarize prices the run with
                   ``lambdas.reporting.cost``, the model of ``teacopy estimate`` and ``make bench``; a
                   report the clean-up wrote has none and the page says how to get it); the credential
                   counters and how they add up; failures by reason and the first failures (a cap;
                   report.csv has them all) with the exact retry command; clean-up failures; a small
                   inline SVG chart of progress over time; links to report.csv and report.json
                   (relative: the three files sit side by side, in S3 and in a local run's directory).
                   No script, no external resource: it can be mailed, attached to a ticket or opened from disk.

The chart's data is the report's ``timeline``: result files are named by a time-ordered sequence
(``staging.sequence_name``: nanoseconds since the epoch first), so what each file records, added up in
time, is the job's progress curve. ``Timeline`` keeps it in at most MAX_TIMELINE_POINTS bins whose width
doubles as the run's span grows, so its size is fixed and the order the files are read in does not matter.
Only the standard library is used.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambdas.contracts import counters, staging

CSV_FIELDS = ("key", "dest_key", "status", "bytes", "reason", "batch", "recorded_at")
MAX_TIMELINE_POINTS = 240
MAX_REFRESH_MARKS = 100
MAX_HTML_FAILURES = 200  # failures listed one by one in the page (all of them are in the CSV)
CSV_LINK = "<a id='csv-link' href='report.csv'>report.csv</a>"  # next to report.html (in S3 and when downloaded)
JSON_LINK = "<a id='json-link' href='report.json'>report.json</a>"
VERIFY_REASONS = ("checksum mismatch", "size mismatch")  # failure reasons (their class) that are failed verifications


def csv_key(run_id: str) -> str:
    return f"{staging.run_prefix(run_id)}report.csv"


def html_key(run_id: str) -> str:
    return f"{staging.run_prefix(run_id)}report.html"


def sequence_time(result_key: str) -> float | None:
    """Seconds since the epoch encoded in a result file's name (``staging.sequence_name``), or None."""
    name = result_key.rsplit("/", 1)[-1]
    head = name.split("-", 1)[0]
    if len(head) != 20 or not head.isdigit():
        return None
    return int(head) / 1e9


def batch_of(result_key: str) -> str:
    """``runs/<run>/results/<batch>/<seq>.json`` -> ``<batch>``."""
    parts = result_key.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else ""


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the progress curve -----------------------------------------------------------------------------------


class Timeline:
    """Progress over time in at most ``bins`` bins: objects done, bytes copied and objects failed, added up.

    ``add(when, done, bytes, failed)`` adds changes at time ``when`` (epoch seconds; before ``origin`` counts
    as at it). Bins start ``width`` seconds wide; a time beyond the last bin doubles the width (neighbouring
    bins merge) until it fits. Each bin remembers the latest time it holds, so a sparse run keeps its exact
    times. Additions commute: result files can be read in any order. JSON-able (``state``/``from_state``):
    a continuation of Summarize carries it.
    """

    def __init__(self, origin: float, bins: int = MAX_TIMELINE_POINTS, width: float = 0.001) -> None:
        self.origin, self.size, self.width = origin, bins, width
        self._bins: dict[int, list[float]] = {}  # index -> [done, bytes, failed, latest offset]

    def add(self, when: float, done: int, bytes_: int, failed: int) -> None:
        offset = max(0.0, when - self.origin)
        index = int(offset / self.width)
        while index >= self.size:
            merged: dict[int, list[float]] = {}
            for old, values in self._bins.items():
                target = merged.setdefault(old // 2, [0, 0, 0, 0.0])
                target[0] += values[0]
                target[1] += values[1]
                target[2] += values[2]
                target[3] = max(target[3], values[3])
            self._bins, self.width = merged, self.width * 2
            index = int(offset / self.width)
        values = self._bins.setdefault(index, [0, 0, 0, 0.0])
        values[0] += done
        values[1] += bytes_
        values[2] += failed
        values[3] = max(values[3], offset)

    def points(self) -> list[list[float]]:
        """``[seconds since origin, objects done, bytes copied, failed]`` after each non-empty bin."""
        out: list[list[float]] = []
        done = copied = failed = 0
        for index in sorted(self._bins):
            values = self._bins[index]
            done, copied, failed = done + int(values[0]), copied + int(values[1]), failed + int(values[2])
            out.append([round(values[3], 3), done, copied, failed])
        return out

    def state(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "width": self.width, "bins": sorted(self._bins.items())}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Timeline:
        timeline = cls(float(state["origin"]), int(state["size"]), float(state["width"]))
        timeline._bins = {int(index): list(values) for index, values in state["bins"]}
        return timeline


def progress_timeline(
    files: Sequence[tuple[float | None, Sequence[Mapping[str, Any]]]], started: float | None
) -> list[list[float]]:
    """Cumulative ``[seconds since start, objects done, bytes copied, failed]`` of result files.

    ``files`` are (time, records) in time order (one batch's, or a small run's). An object recorded twice (a
    retried batch) counts once, with its last status. At most MAX_TIMELINE_POINTS points (``Timeline``).
    """
    times = [when for when, _records in files if when is not None]
    if not times:
        return []
    timeline = Timeline(started if started is not None else min(times))
    last: dict[str, tuple[str, int]] = {}
    for when, records in files:
        if when is not None:
            for record in records:
                key = str(record.get("key"))
                timeline.add(when, *progress_change(last, key, record))
    return timeline.points()


def progress_change(last: dict[str, tuple[str, int]], key: str, record: Mapping[str, Any]) -> tuple[int, int, int]:
    """(objects done, bytes, failed) that ``record`` adds, given each key's previous (status, bytes) in ``last``
    (updated): an object is done once, with the bytes and the failure of its latest record."""
    status = str(record.get("status"))
    counted = int(record.get("bytes", 0) or 0) if status in ("copied", "would_copy") else 0
    previous = last.get(key)
    last[key] = (status, counted)
    if previous is None:
        return 1, counted, int(status == "failed")
    return 0, counted - previous[1], int(status == "failed") - int(previous[0] == "failed")


# --- CSV ------------------------------------------------------------------------------------------------


def render_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Per-object rows (the fields of CSV_FIELDS; extra fields ignored, missing ones empty)."""
    return csv_header() + csv_rows(rows)


def csv_header() -> str:
    return ",".join(CSV_FIELDS) + "\n"


def csv_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """The CSV lines of ``rows`` (no header): report.csv is written a batch of rows at a time."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    for row in rows:
        writer.writerow({name: _csv_value(row.get(name)) for name in CSV_FIELDS})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        # Spreadsheet formula injection: keys are user data; a leading quote keeps them text.
        return "'" + value
    return value


# --- HTML -----------------------------------------------------------------------------------------------


def human_bytes(value: float) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover - the loop always returns


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def run_state(report: Mapping[str, Any]) -> tuple[str, str]:
    """(label, css class) summarising the run for the page's badge."""
    if report.get("execution_status"):  # written by the clean-up: the execution ended without Summarize
        return f"execution {str(report['execution_status']).lower().replace('_', ' ')}", "bad"
    if report.get("map_failed"):
        return "batch failure", "bad"
    if report.get("failed"):
        return "completed with failures", "bad"
    if report.get("not_attempted"):
        return "incomplete", "warn"
    if report.get("dry_run"):
        return "dry run complete", "ok"
    return "complete", "ok"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f5f7fa}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#5b6475;margin:0 0 16px;word-break:break-all}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-size:13px;font-weight:600;margin-left:8px}
.ok{background:#dff3e4;color:#17622f}.warn{background:#fff1d6;color:#7a4d00}.bad{background:#fde2e1;color:#9b1c1c}
.dry{background:#e3ecff;color:#1f3f8f}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.tile{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:10px 12px}
.tile .v{font-size:22px;font-weight:650}.tile .l{color:#5b6475;font-size:12px;text-transform:uppercase}
.tile.failed .v{color:#b42318}.tile.copied .v{color:#17622f}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dfe3ea;border-radius:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eef0f4;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td code{word-break:break-all}
table.facts th{width:160px;color:#5b6475;font-weight:600}table.facts{margin-bottom:14px}
.retry{background:#fde2e1;border:1px solid #f4b9b6;border-radius:8px;padding:8px 12px}
.retry code{font-weight:600}a{color:#1f5fbf}
svg{display:block;background:#fff;border:1px solid #dfe3ea;border-radius:8px}
.muted{color:#5b6475}footer{margin-top:28px;color:#5b6475;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _tile(name: str, label: str, value: Any, display: str | None = None) -> str:
    shown = display if display is not None else (f"{value:,}" if isinstance(value, int) else str(value))
    counter = counters.BY_NAME.get(name)
    title = f' title="{_e(counter.name + ": " + counter.meaning)}"' if counter is not None else ""
    return (
        f'<div class="tile {_e(name)}"{title}><div class="v" id="count-{_e(name)}" data-count="{_e(name)}" '
        f'data-value="{_e(value)}">{_e(shown)}</div><div class="l">{_e(label)}</div></div>'
    )


def _count_tile(report: Mapping[str, Any], counter: counters.Counter, bytes_: bool = False) -> str:
    value = int(report.get(counter.name) or 0)
    return _tile(counter.name, counter.label, value, human_bytes(value) if bytes_ else None)


def describe_location(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    if value.get("bucket") and "prefix" in value and "mode" not in value:  # a destination
        return f"s3://{value['bucket']}/{value.get('prefix', '')}"
    parts = []
    mode = value.get("mode")
    if value.get("manifest"):
        parts.append(f"manifest {value['manifest']}")
    elif value.get("bucket"):
        parts.append(f"s3://{value['bucket']}/{value.get('prefix', '')}")
    elif value.get("buckets"):
        parts.append(", ".join(f"s3://{b}" for b in value["buckets"][:5]))
    if value.get("cmr"):
        cmr = value["cmr"]
        parts.append(f"CMR {cmr.get('collection_concept_id') or cmr.get('short_name', '')}")
    if mode:
        parts.append(f"({mode})")
    return " ".join(parts)


def progress_svg(report: Mapping[str, Any], width: int = 900, height: int = 240) -> str:
    """Objects done (and bytes copied) over time, with a dashed mark at each credential refresh."""
    points = [p for p in report.get("timeline") or [] if isinstance(p, Sequence) and len(p) >= 3]
    total = max(int(report.get("objects") or 0), max((int(p[1]) for p in points), default=0), 1)
    max_bytes = max((float(p[2]) for p in points), default=0.0)
    duration = max(float(report.get("duration_seconds") or 0.0), max((float(p[0]) for p in points), default=0.0))
    span = duration if duration > 0 else 1.0
    left, right, top, bottom = 56, 16, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + plot_w * min(max(t / span, 0.0), 1.0)

    def y(fraction: float) -> float:
        return top + plot_h * (1 - min(max(fraction, 0.0), 1.0))

    parts = [
        f'<svg id="progress-chart" xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" role="img" '
        'aria-label="progress over time">'
    ]
    for i in range(5):  # grid and y labels (percent of objects)
        gy = y(i / 4)
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}" stroke="#eef0f4"/>')
        parts.append(
            f'<text x="{left - 6}" y="{gy + 4:.1f}" font-size="11" text-anchor="end" fill="#5b6475">{i * 25}%</text>'
        )
    for i in range(5):  # x labels (elapsed time)
        t = span * i / 4
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 12}" font-size="11" text-anchor="middle" fill="#5b6475">'
            f"{_e(human_duration(t) if duration > 0 else '0 s')}</text>"
        )
    for offset in (report.get("refresh_offsets") or [])[:MAX_REFRESH_MARKS]:
        rx = x(float(offset))
        parts.append(
            f'<line class="refresh" x1="{rx:.1f}" y1="{top}" x2="{rx:.1f}" y2="{top + plot_h}" '
            'stroke="#7a4d00" stroke-dasharray="4 3"><title>credential refresh</title></line>'
        )
    if points:
        start = [[0.0, 0, 0, 0]] if float(points[0][0]) > 0 else []
        curve = start + [list(p) for p in points]
        objects_path = " ".join(f"{x(float(p[0])):.1f},{y(int(p[1]) / total):.1f}" for p in curve)
        parts.append(
            f'<polyline id="objects-line" fill="none" stroke="#2f6fdf" stroke-width="2.5" points="{objects_path}"/>'
        )
        if max_bytes > 0:
            bytes_path = " ".join(f"{x(float(p[0])):.1f},{y(float(p[2]) / max_bytes):.1f}" for p in curve)
            parts.append(
                f'<polyline id="bytes-line" fill="none" stroke="#17a673" stroke-width="1.5" '
                f'stroke-dasharray="6 3" points="{bytes_path}"/>'
            )
    else:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#5b6475">'
            "no results recorded</text>"
        )
    parts.append(
        f'<text x="{left + 8}" y="{top + 14}" font-size="12" fill="#2f6fdf">— objects done (of {total:,})</text>'
    )
    if max_bytes > 0:
        parts.append(
            f'<text x="{left + 8}" y="{top + 30}" font-size="12" fill="#17a673">'
            f"- - bytes (of {_e(human_bytes(max_bytes))})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def retry_command(report: Mapping[str, Any], *, local: bool = False) -> str | None:
    """The command that retries what did not succeed (None when nothing failed and nothing is left)."""
    failed, not_attempted = int(report.get("failed") or 0), int(report.get("not_attempted") or 0)
    if report.get("dry_run") or not (failed or not_attempted):
        return None
    command = f"teacopy retry-failed {report.get('run_id', '')}"
    if not_attempted:
        command += " --include-not-attempted"
    return command + (" --local" if local else "")


def _facts(rows: Sequence[tuple[str, str, str]]) -> str:
    """A two-column table of (id, label, HTML value)."""
    body = "".join(f"<tr id='{_e(key)}'><th>{_e(label)}</th><td>{value}</td></tr>" for key, label, value in rows)
    return f"<table class='facts'>{body}</table>"


def _execution_facts(report: Mapping[str, Any], execution: Mapping[str, Any] | None) -> str:
    execution = execution or {}
    run_id = str(report.get("run_id", ""))
    if execution.get("local"):
        where = f"<code>{_e(run_id)}</code> in the local engine (<code>teacopy local</code>; nothing ran on AWS)"
    elif execution.get("arn") or report.get("execution_arn"):
        where = f"<code id='execution-arn'>{_e(execution.get('arn') or report.get('execution_arn'))}</code>"
    else:
        where = f"<code>{_e(run_id)}</code> (the execution's name; its ARN: <code>teacopy report {_e(run_id)}</code>)"
    if execution.get("status"):
        where += f" · <span id='execution-status'>{_e(execution['status'])}</span>"
    started, finished = report.get("started_at"), report.get("finished_at")
    files = f"{CSV_LINK} (every object's outcome) · {JSON_LINK} (this report, machine-readable)"
    return _facts(
        [
            ("execution", "execution", where),
            ("started", "started", f"<time>{_e(started)}</time>" if started else "n/a"),
            ("finished", "finished", f"<time>{_e(finished)}</time>" if finished else "n/a (nothing recorded)"),
            ("duration", "duration", _e(human_duration(report.get("duration_seconds")))),
            ("files", "files", files),
        ]
    )


def _verification(report: Mapping[str, Any], execution: Mapping[str, Any] | None) -> str:
    """How the copied objects were verified, and the objects that failed verification."""
    objects, copied = int(report.get("objects") or 0), int(report.get("copied") or 0)
    rows = [
        (
            "verify-crc64nvme",
            "full-object CRC64NVME",
            f"<span data-verify='crc64nvme' data-value='{copied}'>{copied:,}</span> of {copied:,} copied objects: "
            "S3 compared the bytes it stored with the CRC64NVME of the bytes read (it refuses a mismatch)",
        )
    ]
    checksums, sizes = report.get("checksums_known"), report.get("sizes_known")
    if isinstance(checksums, int):
        rows.append(
            (
                "verify-checksums",
                "published checksums",
                f"<span data-verify='checksums' data-value='{checksums}'>{checksums:,}</span> of {objects:,} planned "
                "objects carry an MD5/SHA checksum (manifest or CMR); each copied one matched it"
                if checksums
                else "<span data-verify='checksums' data-value='0'>none</span> published by the source",
            )
        )
    if isinstance(sizes, int):
        rows.append(
            (
                "verify-sizes",
                "sizes",
                f"<span data-verify='sizes' data-value='{sizes}'>{sizes:,}</span> of {objects:,} planned objects "
                "have a known size (manifest, listing or CMR); each copied one had it"
                if sizes
                else "<span data-verify='sizes' data-value='0'>none</span> known in the plan (inline keys): the "
                "source's own answer is the size",
            )
        )
    compared = (execution or {}).get("verified")
    if isinstance(compared, int):
        rows.append(
            (
                "verify-bytes",
                "byte for byte",
                f"<span data-verify='bytes' data-value='{compared}'>{compared:,}</span> of {copied:,} copied objects "
                "equal their source (compared after the run by the local engine)",
            )
        )
    reasons = report.get("failures_by_reason") or {}
    mismatches = {reason: int(reasons.get(reason) or 0) for reason in VERIFY_REASONS}
    shown = ", ".join(f"{reason} {count:,}" for reason, count in mismatches.items())
    total = sum(mismatches.values())
    rows.append(
        (
            "verify-failed",
            "failed verification",
            f"<span data-verify='failed' data-value='{total}'>{total:,}</span> object{'' if total == 1 else 's'} "
            f"({shown}): not written"
            if total
            else "<span data-verify='failed' data-value='0'>none</span>",
        )
    )
    return _facts(rows)


def _cost(report: Mapping[str, Any], cost: Mapping[str, Any] | None) -> str:
    """The run's estimated cost: ``cost`` when given, else the report's own (Summarize priced the run)."""
    run_id = str(report.get("run_id", ""))
    cost = cost or report.get("cost")
    if not cost:
        return (
            "<p class='muted' id='cost'>Not priced in this report (it was written without Summarize): "
            f"<code>teacopy estimate --execution {_e(run_id)}</code> prices this run.</p>"
        )
    parts = ", ".join(
        f"{_e(name.replace('_', ' '))} ${float(usd):,.4f}" for name, usd in (cost.get("breakdown_usd") or {}).items()
    )
    what = "would cost" if report.get("dry_run") else "cost about"
    transfer = ""
    source, destination = cost.get("source_region"), cost.get("destination_region")
    if source and destination and source != destination:
        transfer = f" (data transfer {_e(source)} → {_e(destination)} included)"
    return (
        f"<p id='cost'>Estimated: the {int(cost.get('objects') or 0):,} objects {_e(what)} "
        f"<strong id='cost-usd' data-value='{float(cost.get('usd') or 0.0)}'>${float(cost.get('usd') or 0.0):,.4f}"
        f"</strong> ({parts}){transfer}; storing {_e(human_bytes(int(cost.get('bytes') or 0)))} costs "
        f"${float(cost.get('storage_usd_per_month') or 0.0):,.4f} per month (S3 Standard).</p>"
        "<p class='muted' id='cost-model'>An estimate, not a bill: the model of Summarize, "
        "<code>teacopy estimate</code> and <code>make bench</code> (lambdas/reporting/cost.py: us-west-2 list "
        "prices, S3 requests modelled from the copied objects' sizes and the deployed settings).</p>"
    )


def _credentials(report: Mapping[str, Any]) -> str:
    values = {c.name: int(report.get(c.name) or 0) for c in counters.CREDENTIAL_COUNTERS}
    rows = "".join(
        f"<tr title='{_e(c.meaning)}'><td>{_e(c.label)}</td><td class='n' data-credential='{_e(c.name)}'>"
        f"{values[c.name]:,}</td><td class='muted'>{_e(c.meaning)}</td></tr>"
        for c in counters.CREDENTIAL_COUNTERS
    )

    def total(name: str, *parts: str) -> str:
        return f"{counters.label(name)} {values[name]:,} = " + " + ".join(
            f"{counters.label(part)} {values[part]:,}" for part in parts
        )

    tea = total("tea_requests", "credential_fetches", "credential_refreshes", "tea_errors")
    refresh = total("refresh_requests", "credential_refreshes", "coalesced_refreshes")
    return (
        f"<table id='credentials'>{rows}</table>"
        f"<p class='muted' id='tea-sum'>{_e(tea)}: each request to TEA answered a fetch or a refresh, or failed "
        "and was retried.</p>"
        f"<p class='muted' id='refresh-sum'>{_e(refresh)}: each request of a worker for newer credentials either "
        "fetched a new set from TEA or was served the set another worker had just fetched.</p>"
    )


def render_html(
    report: Mapping[str, Any],
    *,
    title: str = "teacopy run report",
    execution: Mapping[str, Any] | None = None,
    cost: Mapping[str, Any] | None = None,
) -> str:
    """A self-contained HTML page for one run.

    ``execution``: what is known of the execution besides the report: ``arn``, ``status``, ``local`` (a run of
    the local engine), ``verified`` (copied objects a local run compared byte for byte); without it, the report's
    ``execution_arn``. ``cost``: the run's estimate (``teacopy_cli.estimate.run_cost``); without it, the report's
    ``cost`` (Summarize priced the run with the same model, ``lambdas.reporting.cost``). Both optional.
    """
    run_id = report.get("run_id", "")
    label, css = run_state(report)
    dry_run = bool(report.get("dry_run"))
    tiles = [_count_tile(report, counters.OBJECTS)]
    if dry_run:
        tiles += [
            _count_tile(report, counters.WOULD_COPY),
            _count_tile(report, counters.WOULD_SKIP),
            _count_tile(report, counters.BYTES_TO_COPY, bytes_=True),
        ]
    else:
        tiles += [_count_tile(report, counters.COPIED), _count_tile(report, counters.SKIPPED)]
    tiles += [_count_tile(report, counters.FAILED), _count_tile(report, counters.NOT_ATTEMPTED)]
    if not dry_run:
        tiles.append(_count_tile(report, counters.BYTES, bytes_=True))
    throughput = report.get("throughput_bytes_per_second")
    tiles += [
        _tile(
            "duration",
            "duration",
            report.get("duration_seconds") or 0,
            human_duration(report.get("duration_seconds")),
        ),
        _tile(
            "throughput",
            "throughput",
            throughput or 0,
            f"{human_bytes(throughput)}/s" if throughput else "n/a",
        ),
        _count_tile(report, counters.TEA_REQUESTS),
        _count_tile(report, counters.CREDENTIAL_REFRESHES),
    ]
    reasons = sorted((report.get("failures_by_reason") or {}).items(), key=lambda kv: (-int(kv[1]), kv[0]))
    failures: list[Mapping[str, Any]] = list(report.get("failures") or [])
    listed = failures[:MAX_HTML_FAILURES]
    more = int(report.get("failed") or 0) - len(listed)
    retry = retry_command(report, local=bool((execution or {}).get("local")))

    body = [
        f"<h1>{_e(title)} <span class='badge {css}' id='run-state'>{_e(label)}</span>"
        + ("<span class='badge dry' id='dry-run'>dry run: nothing was copied</span>" if dry_run else "")
        + "</h1>",
        f"<p class='sub'>run <code id='run-id'>{_e(run_id)}</code>",
    ]
    source, destination = describe_location(report.get("source")), describe_location(report.get("destination"))
    if source or destination:
        body.append(f" · {_e(source)} → {_e(destination)}")
    body.append("</p>")
    body.append(_execution_facts(report, execution))
    if retry:
        body.append(
            f"<p class='retry'>Retry only what did not succeed: <code id='retry-command'>{_e(retry)}</code></p>"
        )
    body.append(f"<section class='tiles' id='counts'>{''.join(tiles)}</section>")
    if not dry_run:
        body.append("<h2>Verification</h2>")
        body.append(_verification(report, execution))
    body.append("<h2>Estimated cost</h2>")
    body.append(_cost(report, cost))
    body.append("<h2>Progress</h2>")
    body.append(progress_svg(report))
    if report.get("refresh_offsets"):
        marks = len(report["refresh_offsets"])
        body.append(
            f"<p class='muted'>Dashed vertical {'line' if marks == 1 else 'lines'}: when the workers adopted new TEA "
            f"credentials ({marks} credential {'refresh' if marks == 1 else 'refreshes'}).</p>"
        )
    body.append("<h2>TEA credentials</h2>")
    body.append(_credentials(report))
    body.append("<h2>Failures by reason</h2>")
    if reasons:
        rows = "".join(
            f"<tr><td>{_e(reason)}</td><td class='n' data-reason-count='{_e(reason)}'>{int(count):,}</td></tr>"
            for reason, count in reasons
        )
        body.append(f"<table id='reasons'><tr><th>reason</th><th class='n'>objects</th></tr>{rows}</table>")
    else:
        body.append("<p class='muted' id='reasons'>No object failed.</p>")
    if report.get("map_failed"):
        error = report.get("map_error") or {}
        body.append(f"<h2>Batch failure</h2><p><code>{_e(error.get('error'))}</code>: {_e(error.get('cause'))}</p>")
    if listed:
        rows = "".join(
            f"<tr><td><code>{_e(f.get('key'))}</code></td><td>{_e(f.get('reason'))}</td></tr>" for f in listed
        )
        body.append(f"<h2>Failed objects</h2><table id='failures'><tr><th>key</th><th>reason</th></tr>{rows}</table>")
        if more > 0:
            body.append(
                f"<p class='muted' id='more-failures'>… and {more:,} more: every object's outcome is in {CSV_LINK}.</p>"
            )
    if report.get("uploads_aborted"):
        body.append(
            f"<p class='muted'>{int(report['uploads_aborted'])} unfinished multipart upload(s) were aborted.</p>"
        )
    cleanup: list[Mapping[str, Any]] = list(report.get("cleanup_failures") or [])
    if cleanup:
        rows = "".join(
            f"<tr><td><code>s3://{_e(c.get('dest_bucket'))}/{_e(c.get('dest_key'))}</code></td>"
            f"<td><code>{_e(c.get('upload_id'))}</code></td><td>{_e(c.get('error'))}</td></tr>"
            for c in cleanup[:MAX_HTML_FAILURES]
        )
        body.append(
            "<h2>Clean-up failures</h2><p>These unfinished multipart uploads could not be aborted: they stay in "
            "the destination bucket (and are billed) until aborted, e.g. <code>aws s3api abort-multipart-upload"
            "</code> or a lifecycle rule.</p>"
            f"<table id='cleanup-failures'><tr><th>upload</th><th>upload id</th><th>error</th></tr>{rows}</table>"
        )
    generated = report.get("generated_at") or iso(datetime.now(UTC).timestamp())
    where = report.get("report_csv")
    stored = f" (stored as <code>{_e(where)}</code>)" if where else ""
    body.append(
        f"<footer>Generated by teacopy at {_e(generated)}. Per-object results: {CSV_LINK}{stored}; "
        f"machine-readable: {JSON_LINK}. The counters are defined in docs/counters.md.</footer>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · {_e(run_id)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>"
    )


# --- writing ---------------------------------------------------------------------------------------------


def write_html(s3: Any, bucket: str, run_id: str, report: Mapping[str, Any]) -> str:
    """Write report.html next to report.json; return its s3:// URL (report.csv is streamed by Summarize)."""
    s3.put_object(
        Bucket=bucket,
        Key=html_key(run_id),
        Body=render_html(report).encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    return f"s3://{bucket}/{html_key(run_id)}"


def write_html_file(
    report: Mapping[str, Any],
    path: str | Path,
    *,
    execution: Mapping[str, Any] | None = None,
    cost: Mapping[str, Any] | None = None,
) -> Path:
    """Write the HTML report of ``report`` to a local file (local runs, ``teacopy report --html``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report, execution=execution, cost=cost), encoding="utf-8")
    return target.resolve()


def rate(bytes_done: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0 or math.isnan(seconds):
        return None
    return bytes_done / seconds
