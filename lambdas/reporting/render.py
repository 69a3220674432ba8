"""Run reports for people: a CSV of per-object results and a self-contained HTML page.

Summarize builds the report dict (``summary.collect``) and writes, next to ``runs/<run>/report.json``:

- ``report.csv``   one row per object (its last recorded outcome): key, dest_key, status, bytes,
                   reason, batch, recorded_at (when the result file holding it was written);
- ``report.html``  counts, bytes, throughput, duration, failures by reason, credential refreshes and
                   a small inline SVG chart of progress over time. No script, no external resource:
                   it can be mailed, attached to a ticket or opened from disk.

The chart's data is the report's ``timeline``: result files are named by a time-ordered sequence
(``staging.sequence_name``: nanoseconds since the epoch first), so the cumulative number of objects
and bytes done after each file is the job's progress curve. Only the standard library is used.
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

from lambdas.contracts import staging

CSV_FIELDS = ("key", "dest_key", "status", "bytes", "reason", "batch", "recorded_at")
MAX_TIMELINE_POINTS = 240
MAX_REFRESH_MARKS = 100
MAX_HTML_FAILURES = 200  # failures listed one by one in the page (all of them are in the CSV)


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


def progress_timeline(
    files: Sequence[tuple[float | None, Sequence[Mapping[str, Any]]]], started: float | None
) -> list[list[float]]:
    """Cumulative ``[seconds since start, objects done, bytes copied, failed]`` after each result file.

    ``files`` are (time, records) in time order. An object recorded twice (a retried batch) counts once,
    with its last status. The curve is thinned to at most MAX_TIMELINE_POINTS points (the last kept).
    """
    status_of: dict[str, str] = {}
    bytes_of: dict[str, int] = {}
    done = copied_bytes = failed = 0
    points: list[list[float]] = []
    origin = started
    for when, records in files:
        if when is None:
            continue
        if origin is None:
            origin = when
        for record in records:
            key = str(record.get("key"))
            previous = status_of.get(key)
            if previous is None:
                done += 1
            elif previous == "failed":
                failed -= 1
            copied_bytes -= bytes_of.get(key, 0)
            status = str(record.get("status"))
            status_of[key] = status
            counted = int(record.get("bytes", 0) or 0) if status in ("copied", "would_copy") else 0
            bytes_of[key] = counted
            copied_bytes += counted
            if status == "failed":
                failed += 1
        points.append([round(max(0.0, when - origin), 3), done, copied_bytes, failed])
    return thin(points, MAX_TIMELINE_POINTS)


def thin(points: list[list[float]], limit: int) -> list[list[float]]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[min(len(points) - 1, round(i * step))] for i in range(limit)]


# --- CSV ------------------------------------------------------------------------------------------------


def render_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Per-object rows (the fields of CSV_FIELDS; extra fields ignored, missing ones empty)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
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
svg{display:block;background:#fff;border:1px solid #dfe3ea;border-radius:8px}
.muted{color:#5b6475}footer{margin-top:28px;color:#5b6475;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _tile(name: str, label: str, value: Any, display: str | None = None) -> str:
    shown = display if display is not None else (f"{value:,}" if isinstance(value, int) else str(value))
    return (
        f'<div class="tile {_e(name)}"><div class="v" id="count-{_e(name)}" data-count="{_e(name)}" '
        f'data-value="{_e(value)}">{_e(shown)}</div><div class="l">{_e(label)}</div></div>'
    )


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


def render_html(report: Mapping[str, Any], *, title: str = "teacopy run report") -> str:
    """A self-contained HTML page for one run (only the report dict is needed)."""
    run_id = report.get("run_id", "")
    label, css = run_state(report)
    dry_run = bool(report.get("dry_run"))
    tiles = [_tile("objects", "objects", int(report.get("objects") or 0))]
    if dry_run:
        tiles += [
            _tile("would_copy", "would copy", int(report.get("would_copy") or 0)),
            _tile("would_skip", "would skip", int(report.get("would_skip") or 0)),
            _tile(
                "bytes_to_copy",
                "bytes to copy",
                int(report.get("bytes_to_copy") or 0),
                human_bytes(report.get("bytes_to_copy") or 0),
            ),
        ]
    else:
        tiles += [
            _tile("copied", "copied", int(report.get("copied") or 0)),
            _tile("skipped", "skipped", int(report.get("skipped") or 0)),
        ]
    tiles += [
        _tile("failed", "failed", int(report.get("failed") or 0)),
        _tile("not_attempted", "not attempted", int(report.get("not_attempted") or 0)),
    ]
    if not dry_run:
        tiles.append(
            _tile("bytes", "data copied", int(report.get("bytes") or 0), human_bytes(report.get("bytes") or 0))
        )
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
        _tile("tea_requests", "TEA requests", int(report.get("tea_requests") or 0)),
        _tile("credential_refreshes", "credential refreshes", int(report.get("credential_refreshes") or 0)),
    ]
    reasons = sorted((report.get("failures_by_reason") or {}).items(), key=lambda kv: (-int(kv[1]), kv[0]))
    failures: list[Mapping[str, Any]] = list(report.get("failures") or [])
    listed = failures[:MAX_HTML_FAILURES]
    more = int(report.get("failed") or 0) - len(listed)

    body = [
        f"<h1>{_e(title)} <span class='badge {css}' id='run-state'>{_e(label)}</span>"
        + ("<span class='badge dry' id='dry-run'>dry run: nothing was copied</span>" if dry_run else "")
        + "</h1>",
        f"<p class='sub'>run <code id='run-id'>{_e(run_id)}</code>",
    ]
    source, destination = describe_location(report.get("source")), describe_location(report.get("destination"))
    if source or destination:
        body.append(f" · {_e(source)} → {_e(destination)}")
    if report.get("started_at"):
        body.append(f" · started {_e(report.get('started_at'))}")
    body.append("</p>")
    body.append(f"<section class='tiles' id='counts'>{''.join(tiles)}</section>")
    body.append("<h2>Progress</h2>")
    body.append(progress_svg(report))
    if report.get("refresh_offsets"):
        marks = len(report["refresh_offsets"])
        body.append(
            f"<p class='muted'>Dashed vertical {'line' if marks == 1 else 'lines'}: when the workers adopted new TEA "
            f"credentials ({marks} credential {'refresh' if marks == 1 else 'refreshes'}).</p>"
        )
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
            body.append(f"<p class='muted'>… and {more:,} more: see report.csv.</p>")
    if report.get("uploads_aborted"):
        body.append(
            f"<p class='muted'>{int(report['uploads_aborted'])} unfinished multipart upload(s) were aborted.</p>"
        )
    generated = report.get("generated_at") or iso(datetime.now(UTC).timestamp())
    body.append(
        f"<footer>Generated by teacopy at {_e(generated)}. Per-object results: report.csv; "
        "machine-readable: report.json.</footer>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · {_e(run_id)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>"
    )


# --- writing ---------------------------------------------------------------------------------------------


def write_reports(
    s3: Any, bucket: str, run_id: str, report: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Write report.csv and report.html next to report.json; return their s3:// URLs."""
    s3.put_object(
        Bucket=bucket,
        Key=csv_key(run_id),
        Body=render_csv(rows).encode("utf-8"),
        ContentType="text/csv; charset=utf-8",
    )
    s3.put_object(
        Bucket=bucket,
        Key=html_key(run_id),
        Body=render_html(report).encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    return {"csv": f"s3://{bucket}/{csv_key(run_id)}", "html": f"s3://{bucket}/{html_key(run_id)}"}


def write_html_file(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the HTML report of ``report`` to a local file (the demo, ``teacopy report --html``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target.resolve()


def rate(bytes_done: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0 or math.isnan(seconds):
        return None
    return bytes_done / seconds


def save_local_report(report: Mapping[str, Any], directory: str | Path) -> str:
    """Write ``<directory>/<run id>.html`` from a run's report dict and return its absolute path (``make demo``)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(report.get("run_id") or "run"))
    return str(write_html_file(report, Path(directory) / f"{name}.html"))
