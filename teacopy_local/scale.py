"""``make scale``: Plan and Summarize of a whole collection, at 100,000 and at 1,000,000 objects, locally.

What runs for real, and what does not:

- **S3** is moto in server mode in its own process on loopback (``bench.server``: the staging and
  destination buckets). Nothing is mocked in the Lambdas' processes: they talk HTTP to it.
- **CMR** is the CMR emulator (``cmr_emulator.py``) in this process, serving a synthetic collection of N
  granules (one file each) generated page by page (never held): 2,000 granules per page, CMR-Search-After.
- **Plan** is the real handler (``lambdas.handlers.plan``), one process per invocation
  (``scale_worker.py``: a cold start each time, as if every invocation had a new Lambda container), with
  a shrunken per-invocation budget (``--plan-budget``, default 30 s, instead of 600 s) so that planning
  takes several invocations. Between invocations this driver does what the state machine's
  ``PlanningDone`` does: invoke again while the answer carries a continuation (the loop itself runs in the
  local engine in tests/e2e/test_continuations_e2e.py).
- **The copy is not run.** Instead the result log a copy would leave is seeded: for every batch of the
  staged manifest, one result file recording its objects (0.1 % failed, 5 % skipped, the rest copied with
  their sizes), and for every 25th batch a second file recording its first five objects again (failed, then
  copied: a retried invocation), so Summarize must count each object once with its last word.
- **Summarize** is the real handler, one process per invocation, budget ``--summary-budget`` (30 s), looped
  like ``SummaryDone`` does.

Measured per size: each invocation's wall time (process start and imports included) and peak RSS, read from
the kernel for that process (``os.wait4``'s ``ru_maxrss``; the worker reports its own ``getrusage`` too).
Checked against the seeded truth, not against teacopy's own counts: the staged manifest holds every granule's
file exactly once, in order; report.json's counts and bytes equal what was seeded; report.csv has one row
per object, in order. Prints a table, then as the last line one JSON object.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.runner import BenchServer, wait_with_rusage
from lambdas.contracts import env_names, staging
from lambdas.reporting import render as reports
from stacks import memory

from .cmr_emulator import CmrEmulator, SyntheticCollection

REPO = Path(__file__).resolve().parents[1]
SIZES = (100_000, 1_000_000)
STAGING = "teacopy-scale-staging"
DEST = "teacopy-scale-copy"
DAAC = "podaac-scale-protected"
LAMBDA_TIMEOUT_SECONDS = 900
MAX_INVOCATIONS = 200
INVOCATION_TIMEOUT_SECONDS = 900
T0 = 1_790_000_000.0  # when the seeded run started
RUN_SECONDS = 7_200.0  # the seeded copy's result files are spread over two hours


# --- one invocation in its own process -----------------------------------------------------------------------


def invoke(
    handler: str, event: dict[str, Any], environment: dict[str, str], memory_mb: int, log: Path
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec = {
            "handler": handler,
            "function_name": f"teacopy-{handler}",
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
            "memory_mb": memory_mb,
            "environment": environment,
            "event": event,
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with log.open("a", encoding="utf-8") as stream:
            process = subprocess.Popen(  # noqa: S603 — our own module, fixed argv
                [sys.executable, "-m", "teacopy_local.scale_worker", str(spec_path), str(out_path)],
                stdout=stream,
                stderr=stream,
                env=_worker_env(environment),
                cwd=REPO,
            )
            finished = wait_with_rusage(process, time.monotonic() + INVOCATION_TIMEOUT_SECONDS)
        if finished.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"the {handler} worker exited with {finished.returncode}; see {log}")
        out: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    out["wall_seconds"] = round(finished.wall_s, 3)
    out["kernel_peak_rss_mb"] = round(finished.peak_rss_mb, 1)
    return out


def _worker_env(environment: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEACOPY_"))}
    env.update(environment)
    env["PYTHONPATH"] = str(REPO)
    return env


def loop(
    handler: str, event: dict[str, Any], environment: dict[str, str], memory_mb: int, log: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Invoke ``handler`` until its answer carries no continuation (what PlanningDone / SummaryDone do)."""
    invocations: list[dict[str, Any]] = []
    for _ in range(MAX_INVOCATIONS):
        out = invoke(handler, event, environment, memory_mb, log)
        invocations.append(out)
        if "error" in out:
            return out, invocations
        answer = out["answer"]
        if "continuation" not in answer:
            return out, invocations
        if handler == "summarize":  # the state the next Summarize reads
            event = {**event, **{k: v for k, v in answer.items() if k != "continuation"}}
    raise RuntimeError(f"{handler} did not finish in {MAX_INVOCATIONS} invocations")


# --- reading what was staged ---------------------------------------------------------------------------------


def body_chunks(s3: Any, bucket: str, key: str, size: int = 1024**2) -> Iterator[bytes]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        while chunk := body.read(size):
            yield chunk
    finally:
        body.close()


def verify_manifest(s3: Any, run_id: str, collection: SyntheticCollection) -> dict[str, int]:
    """Every granule's file in the staged manifest exactly once, in order (read back, not Plan's counts)."""
    index = batches = 0
    for batch in staging.iter_json_array(s3, STAGING, staging.manifest_key(run_id)):
        batches += 1
        for item in batch["objects"]:
            expected = collection.key(index, 0)
            if item["key"] != expected or batch["source_bucket"] != DAAC:
                raise AssertionError(f"staged object {index} is {item['key']!r}, expected {expected!r}")
            index += 1
    if index != collection.count:
        raise AssertionError(f"the staged manifest holds {index} objects, the collection {collection.count}")
    return {"objects": index, "batches": batches}


# --- the seeded result log -----------------------------------------------------------------------------------


def seed_results(s3: Any, run_id: str, batches: int) -> dict[str, int]:
    """One result file per batch (and a retried second one for every 25th); returns the truth it seeded."""
    truth = {"copied": 0, "skipped": 0, "failed": 0, "bytes": 0, "objects": 0, "files": 0}
    index = 0

    def files_of(number: int, batch: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
        nonlocal index
        first: list[dict[str, Any]] = []
        for item in batch["objects"]:
            record: dict[str, Any] = {"key": item["key"], "dest_key": f"scale/{item['key']}"}
            if index % 1000 == 7:
                record.update(status="failed", bytes=0, reason="source NoSuchKey: the object does not exist")
            elif index % 20 == 3:
                record.update(status="skipped", bytes=0)
            else:
                record.update(status="copied", bytes=int(item["size"]))
            truth[record["status"]] += 1
            truth["bytes"] += int(record["bytes"])
            first.append(record)
            index += 1
        truth["objects"] += len(first)
        when = T0 + 60 + RUN_SECONDS * number / max(1, batches)
        out = [(_result_key(run_id, batch["id"], when), first)]
        if number % 25 == 0:  # a retried invocation: failed first, then its last word
            retried = [r for r in first[:5] if r["status"] == "copied"]
            failed_first = [{**r, "status": "failed", "bytes": 0, "reason": "source SlowDown: x"} for r in retried]
            out[0] = (out[0][0], failed_first + [r for r in first if r not in retried])
            out.append((_result_key(run_id, batch["id"], when + 30), retried))
        return out

    with ThreadPoolExecutor(max_workers=16) as pool:
        pending = []
        for number, batch in enumerate(staging.iter_json_array(s3, STAGING, staging.manifest_key(run_id))):
            for key, records in files_of(number, batch):
                pending.append(pool.submit(staging.put_json, s3, STAGING, key, records))
                truth["files"] += 1
            if len(pending) > 256:
                for future in pending:
                    future.result()
                pending = []
        for future in pending:
            future.result()
    return truth


def _result_key(run_id: str, batch_id: str, when: float) -> str:
    return f"{staging.results_prefix(run_id, batch_id)}{int(when * 1e9):020d}-{batch_id[-8:]:0>8}.json"


def verify_report(s3: Any, run_id: str, truth: dict[str, int], collection: SyntheticCollection) -> dict[str, Any]:
    """report.json's counts and bytes are the seeded truth; report.csv has each object once, in order."""
    report = staging.get_json(s3, STAGING, staging.report_key(run_id))
    got = {name: report[name] for name in ("copied", "skipped", "failed", "bytes")}
    want = {name: truth[name] for name in ("copied", "skipped", "failed", "bytes")}
    if got != want or report["objects"] != truth["objects"] or report["not_attempted"] != 0:
        raise AssertionError(f"report.json says {got} of {report['objects']}, the seeded truth is {want}")
    rows = 0
    lines = codecs.iterdecode(body_chunks(s3, STAGING, reports.csv_key(run_id)), "utf-8")
    reader = csv.DictReader(_lines(lines))
    for row in reader:
        expected = collection.key(rows, 0)
        if row["key"] != expected:
            raise AssertionError(f"report.csv row {rows} is {row['key']!r}, expected {expected!r}")
        rows += 1
    if rows != truth["objects"]:
        raise AssertionError(f"report.csv has {rows} rows for {truth['objects']} objects")
    return {"csv_rows": rows, "timeline_points": len(report["timeline"]), "listed_failures": len(report["failures"])}


def _lines(texts: Iterator[str]) -> Iterator[str]:
    rest = ""
    for text in texts:
        rest += text
        *whole, rest = rest.split("\n")
        for line in whole:
            yield line + "\n"
    if rest:
        yield rest


# --- one size ------------------------------------------------------------------------------------------------


def run_size(server: BenchServer, cmr: CmrEmulator, count: int, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    s3 = server.client()
    collection = cmr.add_synthetic_collection(f"SCALE-{count}", "1", count, DAAC)
    run_id = f"scale-{count}"
    common = {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "scale",
        "AWS_SECRET_ACCESS_KEY": "scale",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        env_names.STAGING_BUCKET: STAGING,
    }
    plan_env = {
        **common,
        env_names.DESTINATIONS: json.dumps([{"bucket": DEST, "prefix": ""}]),
        env_names.MANIFEST_BUCKETS: "[]",
        env_names.BATCH_MAX_OBJECTS: str(args.batch_objects),
        env_names.CMR_URL: cmr.url,
        env_names.CMR_PAGE_SIZE: "2000",
        env_names.PLAN_BUDGET_SECONDS: str(args.plan_budget),
    }
    job = {
        "source": {"cmr": {"collection_concept_id": collection.concept_id}},
        "destination": {"bucket": DEST, "prefix": f"{run_id}/"},
    }
    print(f"[{count:,}] planning (budget {args.plan_budget} s per invocation) ...", file=sys.stderr, flush=True)
    plan_event = {"input": job, "run_id": run_id}
    plan_out, plan_calls = loop("plan", plan_event, plan_env, memory.PLAN_MB, logs / f"plan-{count}.log")
    if "error" in plan_out:
        raise RuntimeError(f"Plan failed: {plan_out['error']}")
    staged = verify_manifest(s3, run_id, collection)
    plan = staging.get_json(s3, STAGING, staging.plan_key(run_id))
    print(f"[{count:,}] seeding the result log of {staged['batches']:,} batches ...", file=sys.stderr, flush=True)
    seeding_started = time.monotonic()
    truth = seed_results(s3, run_id, staged["batches"])
    seed_seconds = time.monotonic() - seeding_started
    summary_env = {
        **common,
        env_names.MAX_FAILED_PERCENT: "1",
        env_names.SUMMARY_BUDGET_SECONDS: str(args.summary_budget),
    }
    event = {"run_id": run_id, "outcome": {"map_failed": False}, "execution_started": reports.iso(T0)}
    print(f"[{count:,}] summarizing (budget {args.summary_budget} s per invocation) ...", file=sys.stderr, flush=True)
    summary_out, summary_calls = loop(
        "summarize", event, summary_env, memory.SUMMARIZE_MB, logs / f"summarize-{count}.log"
    )
    if "error" in summary_out:
        raise RuntimeError(f"Summarize failed: {summary_out['error']}")
    checked = verify_report(s3, run_id, truth, collection)
    manifest_head = s3.head_object(Bucket=STAGING, Key=staging.manifest_key(run_id))
    csv_head = s3.head_object(Bucket=STAGING, Key=reports.csv_key(run_id))
    return {
        "objects": count,
        "batches": staged["batches"],
        "plan_invocations": len(plan_calls),
        "plan_seconds": round(sum(c["wall_seconds"] for c in plan_calls), 1),
        "plan_handler_seconds": round(sum(c["handler_seconds"] for c in plan_calls), 1),
        "plan_peak_rss_mb": max(c["kernel_peak_rss_mb"] for c in plan_calls),
        "plan_rss_by_invocation": [c["kernel_peak_rss_mb"] for c in plan_calls],
        "seen_keys": plan["planning"]["seen_keys"],
        "staged_manifest_mb": round(manifest_head["ContentLength"] / 1024**2, 1),
        "seed_seconds": round(seed_seconds, 1),
        "result_files": truth["files"],
        "summarize_invocations": len(summary_calls),
        "summarize_seconds": round(sum(c["wall_seconds"] for c in summary_calls), 1),
        "summarize_handler_seconds": round(sum(c["handler_seconds"] for c in summary_calls), 1),
        "summarize_peak_rss_mb": max(c["kernel_peak_rss_mb"] for c in summary_calls),
        "summarize_rss_by_invocation": [c["kernel_peak_rss_mb"] for c in summary_calls],
        "report_csv_mb": round(csv_head["ContentLength"] / 1024**2, 1),
        **checked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES), help="objects per run, comma-separated")
    parser.add_argument("--plan-budget", type=int, default=30, help="Plan's seconds per invocation")
    parser.add_argument("--summary-budget", type=int, default=30, help="Summarize's seconds per invocation")
    parser.add_argument(
        "--batch-objects",
        type=int,
        default=100,
        help="objects per batch (100: ten times as many batches and result files as the stack's default 1,000 makes,"
        " the harder case for Summarize)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "scale", help="logs and the JSON result")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = BenchServer(args.out / "s3-server.log", lean_complete=True)
    server.start()
    try:
        s3 = server.client()
        for bucket in (STAGING, DEST):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        with CmrEmulator() as cmr:
            rows = [run_size(server, cmr, count, args, args.out) for count in sizes]
    finally:
        server.stop()
    total = time.monotonic() - started
    print(format_table(rows, args, total))
    result = summary_line(rows, total)
    (args.out / "scale.json").write_text(json.dumps({"runs": rows, **result}, indent=2), encoding="utf-8")
    print(json.dumps(result))
    return 0


def summary_line(rows: list[dict[str, Any]], total: float) -> dict[str, Any]:
    largest, smallest = rows[-1], rows[0]
    growth = max(
        largest["plan_peak_rss_mb"] / smallest["plan_peak_rss_mb"],
        largest["summarize_peak_rss_mb"] / smallest["summarize_peak_rss_mb"],
    )
    return {
        "objects": largest["objects"],
        "plan_invocations": largest["plan_invocations"],
        "plan_peak_rss_mb": largest["plan_peak_rss_mb"],
        "summarize_invocations": largest["summarize_invocations"],
        "summarize_peak_rss_mb": largest["summarize_peak_rss_mb"],
        "rss_growth_100k_to_1m": round(growth, 3),
        "plan_seconds": largest["plan_seconds"],
        "summarize_seconds": largest["summarize_seconds"],
        "smaller_run_objects": smallest["objects"],
        "total_seconds": round(total, 1),
    }


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace, total: float) -> str:
    lines = [
        "",
        f"make scale: CMR source of N granules (emulator, 2,000 per page) -> Plan (budget {args.plan_budget} s per "
        f"invocation) -> seeded result log -> Summarize (budget {args.summary_budget} s); one process per invocation",
        "",
        f"{'objects':>10} {'batches':>8} | {'plan inv':>8} {'plan s':>7} {'plan peak MB':>12} | "
        f"{'sum inv':>7} {'sum s':>6} {'sum peak MB':>11} | {'manifest MB':>11} {'csv MB':>6} {'seen keys':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['objects']:>10,} {r['batches']:>8,} | {r['plan_invocations']:>8} {r['plan_seconds']:>7.1f} "
            f"{r['plan_peak_rss_mb']:>12.1f} | {r['summarize_invocations']:>7} {r['summarize_seconds']:>6.1f} "
            f"{r['summarize_peak_rss_mb']:>11.1f} | {r['staged_manifest_mb']:>11.1f} {r['report_csv_mb']:>6.1f} "
            f"{r['seen_keys']:>10,}"
        )
    lines += [
        "",
        "peak MB: the largest ru_maxrss of one invocation's process (os.wait4), cold start included;",
        "plan s / sum s: wall time over all invocations (process start and imports included);",
        f"memory settings: Plan {memory.PLAN_MB} MB, Summarize {memory.SUMMARIZE_MB} MB "
        f"(stacks/memory.py). Checked against the seeded truth: manifest order and count, report counts, CSV rows.",
        "per-invocation peaks: "
        + "; ".join(
            f"{r['objects']:,}: plan {r['plan_rss_by_invocation']} summarize {r['summarize_rss_by_invocation']}"
            for r in rows
        ),
        f"total {total:.0f} s",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
