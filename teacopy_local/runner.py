"""Run any execution input in the local engine: ``teacopy local --input job.json``.

The input is checked with the Plan step's own rules and the settings of the stack cdk.json builds
(``stack.py``); the sources answer with synthetic objects for whatever the input names
(``synthetic.py``: keys, manifest entries, a prefix listing, a CMR query served by the CMR emulator,
several DAACs where the configuration names them, each with its own TEA emulator). Then, as the demo:
live progress on stderr, every copied object compared byte for byte with its source, a scan for leaked
secrets, and one JSON line on stdout. The run is kept in its run directory (``rundir.py``) for
``teacopy report|watch|retry-failed --local``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lambdas.contracts import counters, env_names, staging
from lambdas.planning.request import parse_request
from lambdas.reporting import summary as summaries
from lambdas.reporting.render import write_html_file

from .cmr_emulator import CmrEmulator
from .engine import LocalEngine, RunResult
from .errors import LocalRunError
from .rundir import RunMirror, runs_dir
from .stack import current_template, function_environment, plan_settings
from .synthetic import DEFAULT_COUNT, DEFAULT_SIZES, SyntheticWorld, body_of, build_world
from .tea_emulator import TeaEmulator

LOCAL_TOKEN = "local-edl-token-" + "x" * 24  # the EDL token of local runs (only the TEA emulators know it)


class ProgressPrinter:
    """The demo's live progress line: objects, outcomes, bytes, rate and the credential counters, with the labels
    of ``lambdas.contracts.counters`` (the names of report.json and the last JSON line)."""

    def __init__(self, stream: Any, total: int | None = None) -> None:
        self.stream, self.total, self.started, self.last = stream, total, time.monotonic(), ""

    def __call__(self, counts: dict[str, Any]) -> None:
        done = counts["done"]
        total = self.total if self.total is not None else counts.get("objects")
        width = 30
        filled = min(width, int(width * done / total)) if total else (width if total == 0 else 0)
        elapsed = time.monotonic() - self.started
        rate = counts["bytes"] / elapsed / 1024**2 if elapsed > 0 else 0.0
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{'?' if total is None else total} objects  "
            f"{counters.progress_text(counts, ('copied', 'skipped', 'failed'))}  "
            f"{counts['bytes'] / 1024**2:.1f} MiB {rate:.1f} MiB/s  "
            f"{counters.progress_text(counts, counters.PROGRESS_CREDENTIALS)}"
        )
        if line != self.last:
            self.stream.write("\r" + line.ljust(len(self.last)))  # no tail of a longer line left behind
            self.stream.flush()
            self.last = line

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def secrets_of(tea: TeaEmulator, token: str) -> list[str]:
    """Every secret the run could leak: the EDL token and each issued secret key and session token."""
    found = [token]
    for access_key_id, _expiration in tea.issued:
        issued = tea.credentials_of(access_key_id)
        if issued is not None:
            found += [issued.secret_access_key, issued.session_token]
    return found


def plan_note(engine: LocalEngine, result: RunResult) -> str:
    """What Plan resolved (from its plan.json in the staging bucket), for the operator watching the run."""
    run_id = result.execution_arn.rsplit(":", 1)[-1]
    s3 = engine.client("s3")
    try:
        body = s3.get_object(Bucket=engine.deployment.staging_bucket, Key=staging.plan_key(run_id))
    except s3.exceptions.NoSuchKey:
        return "no plan was staged"
    plan = json.loads(body["Body"].read())
    stats = plan.get("source_stats") or {}
    note = f"{plan['objects']} objects in {plan['batches']} batches from {plan['source']['mode']}"
    if "listed" in stats:
        listed, kept, markers = int(stats["listed"]), int(stats["kept"]), int(stats.get("folder_markers", 0))
        note += f": {listed} objects listed in {stats['pages']} page(s)"
        if markers:
            note += f" (and {markers} folder marker{'s' if markers != 1 else ''}, skipped)"
        note += f", {kept} kept by include/exclude, {listed - kept} left out"
        if stats.get("duplicates_skipped"):
            note += f", {stats['duplicates_skipped']} duplicates skipped"
    if "hits" in stats:
        note += (
            f", CMR: {stats['hits']} granules in {stats['pages']} pages, {stats['requests']} requests "
            f"({stats['throttled']} answered 429, waited {stats['waited_seconds']} s)"
        )
    return note


def short_lived_tea(args: argparse.Namespace) -> TeaEmulator:
    """A TEA emulator whose first credentials live ``first_lifetime`` s and later ones ``credential_lifetime``
    s (as if the first were fetched just before the job started: they expire mid-run even on a fast machine)."""

    def after_issue(_issued: object) -> None:
        emulator.set_lifetime(args.credential_lifetime)

    emulator = TeaEmulator(lifetime_seconds=args.first_lifetime, valid_tokens={LOCAL_TOKEN}, issue=after_issue)
    return emulator


def run_and_keep(
    engine: LocalEngine,
    job: Mapping[str, Any],
    name: str,
    *,
    timeout: float,
    on_progress: Callable[[dict[str, Any]], None],
    root: Path,
) -> tuple[RunResult, Path]:
    """Start ``job``, follow it, and keep it in its run directory under ``root`` (while it runs, and at the end)."""
    arn = engine.start(dict(job), name)
    mirror = RunMirror(engine.client("s3"), engine.client("stepfunctions"), engine.deployment.staging_bucket, arn, root)

    def progress(counts: dict[str, Any]) -> None:
        on_progress(counts)
        mirror.sync()

    result = engine.wait(arn, timeout=timeout, on_progress=progress)
    return result, mirror.sync()


def render_local_report(
    report: Mapping[str, Any], directory: Path, result: RunResult, verified: int, rows: list[dict[str, Any]]
) -> Path:
    """Rewrite the run directory's report.html with what a local run knows besides Summarize: the execution
    (a local one) and the objects compared byte for byte. The estimated cost (what these copies would cost on
    AWS) is Summarize's own (``report["cost"]``), else the same model applied to the rows (``run_cost``)."""
    from teacopy_cli.estimate import run_cost

    cost = report.get("cost") or run_cost(rows, dry_run=bool(report.get("dry_run")))
    execution = {"arn": result.execution_arn, "status": result.status, "local": True, "verified": verified}
    return write_html_file(report, directory / "report.html", execution=execution, cost=cost)


def read_input(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalRunError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        job = json.loads(text)
    except ValueError as exc:
        raise LocalRunError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(job, dict):
        raise LocalRunError(f"{path}: the execution input must be a JSON object with source and destination")
    return job


def run_rows(engine: LocalEngine, run_id: str) -> list[dict[str, Any]]:
    """The run's report.csv rows (each object's last recorded outcome)."""
    return summaries.collect_run(engine.client("s3"), engine.deployment.staging_bucket, run_id)[1]


def verify_copies(
    engine: LocalEngine, run_id: str, world: SyntheticWorld, rows: list[dict[str, Any]]
) -> tuple[int, int]:
    """(copied objects whose destination bytes equal their synthetic source, copied objects) of ``rows``."""
    s3 = engine.client("s3")
    bucket = engine.deployment.staging_bucket
    batches = staging.get_json(s3, bucket, staging.manifest_key(run_id))
    bucket_of = {str(batch["id"]): str(batch["source_bucket"]) for batch in batches}
    destination = staging.get_json(s3, bucket, staging.plan_key(run_id))["destination"]["bucket"]
    good = copied = 0
    for row in rows:
        if row.get("status") != "copied":
            continue
        copied += 1
        source = (bucket_of.get(str(row.get("batch"))), str(row["key"]))
        size = world.objects.get((source[0] or "", source[1]))
        if size is None:
            continue
        body = s3.get_object(Bucket=destination, Key=row["dest_key"])["Body"].read()
        expected = body_of(source[0] or "", source[1], size)
        good += int(len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(expected).digest())
    return good, copied


def run_input(
    job: dict[str, Any],
    args: argparse.Namespace,
    *,
    out: Any = sys.stdout,
    err: Any = sys.stderr,
    manifests: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Run ``job`` in the local engine with synthetic sources; print progress and one JSON line; return it.

    ``args``: the ``teacopy local`` options (template, objects, sizes, missing, lifetimes, timeout, name,
    runs_dir). ``manifests``: manifest bodies by s3:// URL to use instead of made-up ones (a retry's).
    """

    def note(text: str) -> None:
        print(text, file=err, flush=True)

    template = current_template(args.template, note=note)
    settings = plan_settings(template)
    request = parse_request(job, settings)  # InvalidInput: exactly the Plan step's message
    bucket_endpoints = dict(settings.bucket_endpoints)
    world = build_world(
        request,
        count=args.objects or DEFAULT_COUNT,
        sizes=args.sizes or DEFAULT_SIZES,
        missing=args.missing,
        bucket_endpoints=bucket_endpoints,
        manifests=manifests,
    )
    endpoints = json.loads(function_environment(template, "CopyBatchFunction").get(env_names.TEA_ENDPOINTS) or "{}")
    name = args.name or f"local-{time.strftime('%Y%m%d-%H%M%S')}"

    teas = {endpoint: short_lived_tea(args) for endpoint in ("default", *sorted(endpoints))}
    default_buckets = {b for b in world.source_buckets if b not in bucket_endpoints}
    with contextlib.ExitStack() as stack:
        for emulator in teas.values():
            stack.enter_context(emulator)
        cmr = stack.enter_context(CmrEmulator()) if world.collection is not None else None
        overrides = {
            env_names.TEA_ENDPOINT: teas["default"].url,
            env_names.SAFETY_MARGIN_SECONDS: str(args.safety_margin),
        }
        if cmr is not None:
            overrides[env_names.CMR_URL] = cmr.url
        extra = {
            endpoint: (teas[endpoint], {b for b, e in bucket_endpoints.items() if e == endpoint})
            for endpoint in endpoints
        }
        with LocalEngine(
            template,
            tea=teas["default"],
            edl_token=LOCAL_TOKEN,
            source_buckets=default_buckets,
            env_overrides=overrides,
            extra_teas=extra,
        ) as engine:
            s3 = engine.client("s3", region="us-west-2")
            world.seed(s3, {b["Name"] for b in s3.list_buckets().get("Buckets", [])})
            if cmr is not None:
                world.seed_cmr(cmr, teas["default"].url)
            note(f"teacopy local: run {name}: {world.description}")
            note(
                f"TEA credentials live {args.first_lifetime:g} s, then {args.credential_lifetime:g} s "
                f"(safety margin {args.safety_margin} s)"
            )
            printer = ProgressPrinter(err)
            result, directory = run_and_keep(
                engine, job, name, timeout=args.timeout, on_progress=printer, root=runs_dir(args.runs_dir)
            )
            printer.close()
            note(f"plan: {plan_note(engine, result)}")
            report = result.report or {}
            rows = run_rows(engine, name) if report else []
            verified, copied = verify_copies(engine, name, world, rows) if report else (0, 0)
            page = render_local_report(report, directory, result, verified, rows) if report else None
            secrets = [secret for emulator in teas.values() for secret in secrets_of(emulator, LOCAL_TOKEN)]
            leaks = engine.scan_for_secrets(secrets, [result.execution_arn])
            summary: dict[str, Any] = {
                "run": name,
                "objects": report.get("objects", 0),
                "copied": report.get("copied", 0),
                "skipped": report.get("skipped", 0),
                "failed": report.get("failed", 0),
                "bytes": report.get("bytes", 0),
                "verified": verified,
                "tea_requests": report.get("tea_requests", sum(t.requests for t in teas.values())),
                "credential_refreshes": report.get("credential_refreshes", 0),
                "refresh_requests": report.get("refresh_requests", 0),
                "seconds": round(result.seconds, 2),
                "status": result.status,
                "expired_token_answers": engine.policy.expired_answers,
                "leaked_secrets": len(leaks),
                "report": str(page) if page is not None else None,
                "run_dir": str(directory),
            }
            if report.get("dry_run"):
                summary.update({k: report.get(k, 0) for k in ("would_copy", "would_skip", "bytes_to_copy")})
            if len(teas) > 1:
                summary["tea_requests_by_endpoint"] = {n: t.requests for n, t in teas.items()}
                summary["foreign_key_denials"] = len(engine.policy.denied)
            if copied != verified:
                note(f"verification: {copied - verified} copied objects differ from their source")
            if result.status != "SUCCEEDED":
                note(f"execution {result.status}: {result.error}: {result.cause}")
            if report.get("failed") or report.get("not_attempted"):
                note(f"retry only the failures: teacopy retry-failed {name} --local")
            note(f"inspect it: teacopy report {name} --local   (files: {directory})")
    print(json.dumps(summary), file=out, flush=True)
    return summary


def succeeded(summary: Mapping[str, Any]) -> bool:
    """The run succeeded, nothing failed, every copy is byte-identical to its source, nothing leaked."""
    return (
        summary["status"] == "SUCCEEDED"
        and summary["failed"] == 0
        and summary["verified"] == summary["copied"]
        and summary["leaked_secrets"] == 0
    )
