"""``teacopy``: start, watch, report, retry and estimate copy jobs; validate inputs; run jobs locally.

Against AWS the CLI uses the boto3 session (``--profile`` or the default) and finds the stack's outputs by
stack name (``--stack``, default TeacopyStack) in the region of ``--region``, AWS_REGION,
AWS_DEFAULT_REGION or the profile, in that order. ``--local`` reads the runs ``teacopy local`` kept in
their run directories instead (``local_runs.py``). Tests drive the same commands against the local
engine (``main(..., backend=...)``).

Every failure is one line on stderr saying what is wrong and what to do. Exit codes: 0 success; 1 the run
failed (or has failures); 2 bad usage or invalid input; 3 watch timed out; 4 AWS is not configured (no
region, no or rejected credentials) or not reachable, or the stack or the run cannot be found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import counters, staging
from lambdas.contracts.errors import ConfigurationError, InvalidInput
from lambdas.planning.manifests import format_for, parse_manifest_stream
from lambdas.reporting import render as reports
from lambdas.reporting.render import human_bytes, human_duration
from stacks.config import ConfigError
from teacopy_local.errors import LocalRunError
from teacopy_local.rundir import RUNS_DIR_VARIABLE, runs_dir

from . import __version__
from .backend import DEFAULT_STACK, TERMINAL, AwsNotConfigured, Backend, BackendError, aws_backend, aws_problem
from .estimate import CopyShape, estimate, run_cost
from .inputs import InputError, add_input_arguments, check_shape, input_from_args, read_json_file, validate
from .progress import ProgressBar, RunProgress
from .runs import RunError, describe, load_report, objects_to_retry, read_json, result_rows, retry_input, run_id_of

MAX_INPUT_BYTES = 256 * 1024  # Step Functions' execution input limit
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_AWS = 0, 1, 2, 3, 4
EXIT_NOT_FOUND = EXIT_AWS  # the stack or the run cannot be found: also 4
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line does not parse (argparse's message)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (raised, printed by ``main``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_UNITS.update({"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4})


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 50MB, 3GiB, 1TB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def cause_message(cause: Any) -> str:
    """An execution's cause: a Lambda error arrives as JSON {"errorType", "errorMessage"}; show the message."""
    text = "" if cause is None else str(cause)
    try:
        document = json.loads(text)
    except ValueError:
        return text
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return document["errorMessage"]
    return text


def default_name() -> str:
    return f"teacopy-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class Cli:
    def __init__(
        self,
        args: argparse.Namespace,
        *,
        backend: Backend | None,
        out: TextIO,
        err: TextIO,
        sleep: Callable[[float], None],
    ) -> None:
        self.args, self.out, self.err, self.sleep = args, out, err, sleep
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            if self.local_runs:
                from .local_runs import directory_backend

                self._backend = directory_backend(runs_dir(self.args.runs_dir))
            else:
                self._backend = aws_backend(self.args.stack, region=self.args.region, profile=self.args.profile)
        return self._backend

    @property
    def local_runs(self) -> bool:
        """The runs are local runs (read from run directories); decided without contacting AWS."""
        if self._backend is not None:
            return self._backend.run_directory is not None
        return bool(getattr(self.args, "local", False) or getattr(self.args, "runs_dir", None))

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def execution(self, ref: str | None) -> str:
        if ref in (None, "", "latest"):
            return self.backend.latest_execution()
        assert ref is not None
        return self.backend.execution_arn(ref)

    # --- start ----------------------------------------------------------------------------------------
    def validate(self, job: Any) -> None:
        if self.local_runs:  # a local run validates with the template's settings itself (teacopy_local.runner)
            return
        if not self.backend.plan_environment:
            self.note("warning: the Plan function's settings are unknown; the input is not validated locally")
            return
        validate(job, self.backend.plan_settings())

    def start_execution(self, job: Mapping[str, Any], name: str | None) -> str:
        text = json.dumps(job, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode("utf-8")) > MAX_INPUT_BYTES:
            raise InputError(
                f"the input is {len(text.encode('utf-8')):,} bytes, over Step Functions' 256 KiB: use a manifest"
            )
        name = name or default_name()
        arn = str(
            self.backend.sfn.start_execution(stateMachineArn=self.backend.state_machine_arn, name=name, input=text)[
                "executionArn"
            ]
        )
        self.say(f"started   {name}")
        self.say(f"execution {arn}")
        self.say(f"console   {self.backend.console_url(arn)}")
        self.say(f"watch     teacopy watch {name}")
        return arn

    def cmd_start(self) -> int:
        job = input_from_args(self.args)
        check_shape(job)  # what needs no deployment settings, before AWS is contacted
        self.validate(job)
        if self.args.print_input or self.args.validate_only:
            self.say(json.dumps(job, indent=2, ensure_ascii=False))
        if self.args.validate_only:
            self.note("input is valid")
            return EXIT_OK
        arn = self.start_execution(job, self.args.name)
        return self.watch(arn) if self.args.watch else EXIT_OK

    # --- watch ----------------------------------------------------------------------------------------
    def watch(self, arn: str) -> int:
        backend = self.backend
        run_id = run_id_of(arn)
        progress = RunProgress(backend.s3, backend.staging_bucket, run_id)
        bar = ProgressBar(self.err)
        deadline = time.monotonic() + self.args.timeout
        while True:
            desc = describe(backend, arn)
            if desc is None:
                raise RunError(f"no execution {arn}")
            status = str(desc["status"])
            bar.update(progress.poll(), status)
            if status in TERMINAL:
                break
            if time.monotonic() > deadline:
                bar.close()
                self.note(f"still {status} after {self.args.timeout:g} s; watch again with: teacopy watch {run_id}")
                return EXIT_TIMEOUT
            self.sleep(self.args.interval)
        bar.close()
        return self.final_summary(arn, desc)

    def final_summary(self, arn: str, desc: Mapping[str, Any]) -> int:
        status = str(desc["status"])
        run_id = run_id_of(arn)
        report = read_json(self.backend.s3, self.backend.staging_bucket, staging.report_key(run_id))
        if isinstance(report, dict):
            self.say(format_report(self.located(report), status=status, local=self.local_runs))
        else:
            self.say(f"run {run_id}: {status} (no report: the run stopped before Summarize)")
        if status != "SUCCEEDED" and desc.get("error"):
            self.say(f"error: {desc.get('error')}: {cause_message(desc.get('cause'))[:1000]}")
        if isinstance(report, dict) and report.get("dry_run") and status == "SUCCEEDED":
            self.say(format_estimate(self.dry_run_estimate(run_id), title="estimate for the real run"))
        return EXIT_OK if status == "SUCCEEDED" else EXIT_FAILED

    def cmd_watch(self) -> int:
        return self.watch(self.execution(self.args.execution))

    # --- report ---------------------------------------------------------------------------------------
    def cmd_report(self) -> int:
        arn = self.execution(self.args.execution)
        run_id = run_id_of(arn)
        desc = describe(self.backend, arn)
        status = str(desc["status"]) if desc else None
        if self.args.csv:
            self.out.write(reports.render_csv(result_rows(self.backend, run_id)))
            return EXIT_OK
        report, final = load_report(self.backend, run_id)
        report = self.located(report)
        if self.args.json:
            self.say(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            self.say(format_report(report, status=status, final=final, local=self.local_runs))
            if report.get("dry_run") and report.get("would_copy"):
                self.say(format_estimate(self.dry_run_estimate(run_id), title="estimate for the real run"))
        if self.args.html:
            execution = {"arn": arn, "status": status, "local": self.local_runs}
            rows = result_rows(self.backend, run_id)
            # Summarize's own estimate when it priced the run, else the same model applied to the rows here
            cost = report.get("cost") or run_cost(rows, dry_run=bool(report.get("dry_run")), shape=self.shape())
            path = reports.write_html_file(report, self.args.html, execution=execution, cost=cost)
            # its links are relative: report.csv and report.json beside it
            (path.parent / "report.csv").write_text(reports.render_csv(rows), encoding="utf-8")
            (path.parent / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
            self.note(f"HTML report: {path} (report.csv and report.json beside it)")
        return EXIT_OK if not report.get("failed") and not report.get("not_attempted") else EXIT_FAILED

    def located(self, report: dict[str, Any]) -> dict[str, Any]:
        """The report with its own files' URLs as the backend can show them (local runs: file paths)."""
        return {k: self.backend.locate(v) if k in ("report_html", "report_csv") and v else v for k, v in report.items()}

    # --- retry-failed ---------------------------------------------------------------------------------
    def cmd_retry_failed(self) -> int:
        backend = self.backend
        arn = self.execution(self.args.execution)
        run_id = run_id_of(arn)
        plan = read_json(backend.s3, backend.staging_bucket, staging.plan_key(run_id))
        if not isinstance(plan, dict):
            raise RunError(f"run {run_id} has no plan: nothing to retry")
        pending = objects_to_retry(backend, run_id, include_not_attempted=self.args.include_not_attempted)
        settings = backend.plan_settings() if backend.plan_environment else None
        name = self.args.name or f"{run_id[:60]}-retry-{uuid.uuid4().hex[:6]}"
        manifest_url = self.args.manifest_to
        if manifest_url is None and self.local_runs:  # a local retry may write its manifest anywhere it likes
            manifest_url = f"s3://{(plan.get('destination') or {}).get('bucket')}/teacopy-retries/{name}.json"
        job, manifest = retry_input(
            plan,
            pending,
            max_inline_keys=settings.max_inline_keys if settings else 1000,
            manifest_url=manifest_url if self.args.manifest_to or self.local_runs else None,
            dry_run=self.args.dry_run,
            prefer_inline=self.local_runs and self.args.manifest_to is None,
        )
        self.validate(job)
        reasons: dict[str, int] = {}
        for item in pending:
            reason = item.reason.split(":", 1)[0] or "unknown"
            reasons[reason] = reasons.get(reason, 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        self.say(f"retrying {len(pending)} objects of run {run_id} ({summary})")
        if self.args.print_input:
            self.say(json.dumps(job, indent=2, ensure_ascii=False))
        if manifest is not None:
            self.say(f"manifest  {manifest_url} ({len(pending)} entries)")
        if self.local_runs:
            return self.retry_locally(job, name, {str(manifest_url): manifest} if manifest is not None else None)
        if manifest is not None:
            bucket, _, key = str(manifest_url)[5:].partition("/")
            backend.s3.put_object(Bucket=bucket, Key=key, Body=manifest, ContentType="application/json")
        new_arn = self.start_execution(job, name)
        return self.watch(new_arn) if self.args.watch else EXIT_OK

    def retry_locally(self, job: dict[str, Any], name: str, manifests: dict[str, bytes] | None) -> int:
        """A local run's retry is a new local run (its sources made up again, the failed ones now present)."""
        from teacopy_local import demo, runner

        args = demo.build_parser().parse_args(["--name", name])
        args.runs_dir = str(self.backend.run_directory)
        self.out.flush()
        summary = runner.run_input(job, args, out=self.out, err=self.err, manifests=manifests)
        return EXIT_OK if runner.succeeded(summary) else EXIT_FAILED

    # --- estimate -------------------------------------------------------------------------------------
    def shape(self) -> CopyShape:
        shape = CopyShape.from_cdk_json()
        overrides = {
            k: v
            for k, v in (
                ("part_size", getattr(self.args, "part_size", None)),
                ("max_concurrency", getattr(self.args, "concurrency", None)),
            )
            if v
        }
        return replace(shape, **overrides) if overrides else shape

    def dry_run_estimate(self, run_id: str) -> dict[str, Any]:
        return run_cost(
            result_rows(self.backend, run_id),
            dry_run=True,
            shape=self.shape(),
            dest_region=getattr(self.args, "dest_region", None),
        )

    def sizes_of_run(self, run_id: str) -> list[int | None]:
        report, _ = load_report(self.backend, run_id)
        if report.get("dry_run"):
            rows = result_rows(self.backend, run_id)
            return [int(r.get("bytes") or 0) for r in rows if r.get("status") == "would_copy"]
        batches = read_json(self.backend.s3, self.backend.staging_bucket, staging.manifest_key(run_id)) or []
        return [o.get("size") for batch in batches for o in batch.get("objects", [])]

    def sizes_of_input(self, job: Mapping[str, Any]) -> list[int | None]:

        request = check_shape(job)
        source = job.get("source") or {}
        if request.keys is not None:
            return [None] * len(request.keys)
        if request.manifest is not None:
            bucket, key = request.manifest
            if self.args.manifest_file:
                try:
                    text = Path(self.args.manifest_file).read_text(encoding="utf-8")
                except OSError as exc:
                    raise InputError(f"--manifest-file: cannot read {self.args.manifest_file}: {exc.strerror}") from exc
            elif self.local_runs:
                raise InputError(f"give a local copy of s3://{bucket}/{key} with --manifest-file FILE")
            else:
                try:
                    body = self.backend.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                except AwsNotConfigured as exc:
                    raise AwsNotConfigured(
                        f"{exc}; or give a local copy of the manifest: --manifest-file FILE"
                    ) from exc
                text = body.decode("utf-8", errors="replace")
            fmt = format_for(key, source.get("format"))
            return [entry.size for entry in parse_manifest_stream([text], fmt)]
        raise InputError(
            "a prefix or CMR source is only listed by the Plan step: run a dry run (teacopy start --dry-run ...) "
            "and estimate from it (teacopy estimate --execution <name>), or give --objects and --object-size"
        )

    def cmd_estimate(self) -> int:
        args = self.args
        if args.execution:
            sizes = self.sizes_of_run(run_id_of(self.execution(args.execution)))
        elif args.objects is not None:
            if args.objects < 1:
                raise InputError("--objects must be at least 1")
            if not args.object_size:
                raise InputError("--objects needs --object-size, e.g. --objects 1000000 --object-size 50MB")
            sizes = [args.object_size] * args.objects
        else:
            sizes = self.sizes_of_input(input_from_args(args))
        try:
            result = estimate(sizes, self.shape(), assume_size=args.object_size, dest_region=args.dest_region)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if args.json:
            self.say(json.dumps(result, indent=2))
        else:
            self.say(format_estimate(result))
        return EXIT_OK

    # --- validate -------------------------------------------------------------------------------------
    def cmd_validate(self) -> int:
        """Check an input offline with the Plan step's rules and the settings of the stack cdk.json builds."""
        from teacopy_local.stack import current_template, plan_settings

        job = read_json_file(self.args.file)
        settings = plan_settings(current_template(self.args.template, note=self.note))
        request = validate(job, settings)
        source = request.source_bucket or "buckets named by the entries"
        what = {
            "keys": f"{len(request.keys or ())} inline keys of {source}",
            "manifest": f"the manifest s3://{'/'.join(request.manifest or ())} ({source})",
            "prefix": f"everything under s3://{source}/{request.prefix}",
            "cmr": "a CMR query",
        }[request.mode]
        options = ", dry run" if request.options.dry_run else ""
        self.say(
            f"valid: {what} -> s3://{request.destination.bucket}/{request.destination.prefix} "
            f"(overwrite {request.options.overwrite}{options})"
        )
        self.note(
            "checked offline with the Plan step's rules and the settings cdk.json deploys; a manifest, a "
            "listing or a CMR query is read only when the job runs (try it: teacopy local --input FILE)"
        )
        return EXIT_OK


# --- formatting -----------------------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, Any]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"  {label:<{width}}  {value}" for label, value in rows]


def format_report(
    report: Mapping[str, Any], *, status: str | None = None, final: bool = True, local: bool = False
) -> str:
    run_id = report.get("run_id", "")
    flag = " --local" if local else ""
    state = status or ("complete" if final else "running")
    head = f"run {run_id}: {state}" + ("  (dry run: nothing was copied)" if report.get("dry_run") else "")
    if not final:
        head += "  (live: computed from the result log; Summarize has not run yet)"
    lines = [head]
    source, destination = report.get("source") or {}, report.get("destination") or {}
    rows: list[tuple[str, Any]] = []
    if source:
        rows.append(("source", reports.describe_location(source)))
    if destination:
        rows.append(("destination", f"s3://{destination.get('bucket', '')}/{destination.get('prefix', '')}"))

    def row(counter: counters.Counter) -> tuple[str, str]:
        value = int(report.get(counter.name) or 0)
        return counter.label, human_bytes(value) if counter.name.startswith("bytes") else f"{value:,}"

    rows.append(row(counters.OBJECTS))
    if report.get("dry_run"):
        rows += [row(c) for c in counters.DRY_RUN_COUNTERS]
    else:
        rows += [row(counters.COPIED), row(counters.SKIPPED)]
    rows += [row(counters.FAILED), row(counters.NOT_ATTEMPTED)]
    if not report.get("dry_run"):
        rows.append(row(counters.BYTES))
    rows.append(("started", report.get("started_at") or "n/a"))
    rows.append(("finished", report.get("finished_at") or "n/a"))
    rows.append(("duration", human_duration(report.get("duration_seconds"))))
    throughput = report.get("throughput_bytes_per_second")
    rows.append(("throughput", f"{human_bytes(throughput)}/s" if throughput else "n/a"))
    rows += [row(c) for c in counters.CREDENTIAL_COUNTERS if c.name in report or c is counters.TEA_REQUESTS]
    for label, key in (("report", "report_html"), ("per object", "report_csv")):
        if report.get(key):
            rows.append((label, report[key]))
    lines += _table(rows)
    by_reason = report.get("failures_by_reason") or {}
    if by_reason:
        lines.append("")
        lines.append("failures by reason")
        failures = list(report.get("failures") or [])
        for reason, count in sorted(by_reason.items(), key=lambda kv: (-int(kv[1]), kv[0])):
            lines.append(f"  {int(count):>6,}  {reason}")
            examples = [f for f in failures if (f.get("reason") or "unknown").split(":", 1)[0] == reason]
            if examples:
                lines.append(f"          e.g. {str(examples[0].get('reason', ''))[:200]}")
            for failure in examples[:5]:
                lines.append(f"          {failure.get('key')}")
            if int(count) > 5:
                lines.append(f"          ... and {int(count) - 5:,} more (teacopy report {run_id} --csv{flag})")
    retry = reports.retry_command(report, local=local)
    if retry:
        lines.append(f"  retry only these: {retry}")
    if report.get("map_failed"):
        error = report.get("map_error") or {}
        lines.append(f"batch failure: {error.get('error')}: {str(error.get('cause') or '')[:300]}")
    return "\n".join(lines)


def format_estimate(result: Mapping[str, Any], title: str = "estimate") -> str:
    known = result["sizes_known"]
    sizes = "all known" if known == result["objects"] else f"{known:,} known"
    if result.get("assumed_size") is not None:
        sizes += f", others assumed {human_bytes(result['assumed_size'])}"
    requests = result["requests"]
    put = requests["data"]["put"] + requests["staging"]["put"]
    get = requests["data"]["get"] + requests["staging"]["get"]
    rows: list[tuple[str, Any]] = [
        ("objects", f"{result['objects']:,} ({sizes})"),
        ("data", human_bytes(result["bytes"])),
        ("batches", f"{result['batches']:,} (workers in parallel: {result.get('workers', 0)})"),
        ("S3 requests", f"{put:,} PUT-class, {get:,} GET-class"),
        ("cost", f"${result['usd']:,.4f}"),
    ]
    for name, usd in (result.get("breakdown_usd") or {}).items():
        rows.append((f"  {name.replace('_', ' ')}", f"${usd:,.4f}"))
    source, destination = result.get("source_region"), result.get("destination_region")
    if source and destination and source != destination:
        rows.append(("transfer", f"{source} -> {destination}: priced above as data transfer"))
    elif source:
        rows.append(("transfer", f"none priced (destination in {source}, like the source; --dest-region to change)"))
    rows += [
        ("storage", f"${result.get('storage_usd_per_month', 0.0):,.4f} per month (S3 Standard, after the copy)"),
        ("duration", f"~{human_duration(result['seconds'])} (lower bound)"),
        ("TEA requests", f"~{result['tea_requests']}"),
    ]
    note = "  (model: lambdas/reporting/cost.py list prices, us-west-2; Lambda at 75 MiB/s; settings from cdk.json)"
    return "\n".join([title, *_table(rows), note])


# --- argument parsing ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument("--stack", default=DEFAULT_STACK, help=f"CloudFormation stack name (default {DEFAULT_STACK})")
    common.add_argument(
        "--region", help="AWS region of the stack (default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's)"
    )
    common.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default profile)")
    local = OneLineParser(add_help=False)
    local.add_argument(
        "--local",
        action="store_true",
        help="a run of `teacopy local`, read from its run directory instead of AWS",
    )
    local.add_argument(
        "--runs-dir",
        metavar="DIR",
        help=f"where local runs are kept (implies --local; default artifacts/local-runs or ${RUNS_DIR_VARIABLE})",
    )
    watching = OneLineParser(add_help=False)
    watching.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    watching.add_argument("--timeout", type=float, default=24 * 3600, help="stop watching after this many seconds")

    parser = OneLineParser(
        prog="teacopy",
        description="Copy NASA Earthdata Cloud objects into your bucket with the teacopy stack.",
        epilog="exit codes: 0 ok; 1 the run failed or has failures; 2 bad usage or invalid input; 3 watch timed "
        "out; 4 AWS not configured or not reachable (region, credentials), or the stack or run not found",
    )
    parser.add_argument("--version", action="version", version=f"teacopy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", parents=[common, watching], help="validate an input and start an execution")
    add_input_arguments(start)
    start.add_argument("--name", help="execution name = run id (default teacopy-<time>-<random>)")
    start.add_argument("--watch", action="store_true", help="then watch it")
    start.add_argument("--print-input", action="store_true", help="print the execution input")
    start.add_argument("--validate-only", action="store_true", help="validate and print the input; start nothing")

    validate_ = sub.add_parser(
        "validate",
        help="check an execution input offline against cdk.json (the Plan step's rules and messages)",
    )
    validate_.add_argument("file", metavar="FILE", help="execution input JSON file ('-' for stdin)")
    validate_.add_argument(
        "--template", metavar="PATH", help="a synthesized template (default: cdk.out's if current, else synthesized)"
    )

    watch = sub.add_parser("watch", parents=[common, local, watching], help="live progress of an execution")
    watch.add_argument("execution", nargs="?", help="execution name or ARN (default: the latest)")

    report = sub.add_parser("report", parents=[common, local], help="summary table, failures by reason")
    report.add_argument("execution", nargs="?", help="execution name or ARN (default: the latest)")
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the full report as JSON")
    fmt.add_argument("--csv", action="store_true", help="one CSV row per object")
    report.add_argument(
        "--html",
        metavar="FILE",
        help="also write the HTML report to FILE, with the estimated cost, and report.csv and report.json beside it "
        "(the page links them)",
    )

    retry = sub.add_parser(
        "retry-failed",
        parents=[common, local, watching],
        help="start a new execution with only the failed objects (--local: a new local run)",
    )
    retry.add_argument("execution", nargs="?", help="execution name or ARN (default: the latest)")
    retry.add_argument("--include-not-attempted", action="store_true", help="also the objects never attempted")
    retry.add_argument(
        "--manifest-to", metavar="S3_URL", help="write the retry list as a manifest here (needed beyond inline limits)"
    )
    retry.add_argument("--dry-run", action="store_true", help="retry as a dry run")
    retry.add_argument("--name", help="execution name (default <run>-retry-<random>)")
    retry.add_argument("--watch", action="store_true", help="then watch it")
    retry.add_argument("--print-input", action="store_true", help="print the execution input")

    est = sub.add_parser(
        "estimate", parents=[common, local], help="cost and duration estimate (settings from cdk.json)"
    )
    add_input_arguments(est)
    est.add_argument("--execution", help="estimate from a run (a dry run: exactly what it would copy)")
    est.add_argument("--manifest-file", metavar="FILE", help="read the --manifest from this local file instead")
    est.add_argument("--objects", type=int, help="number of objects (with --object-size)")
    est.add_argument("--object-size", type=parse_size, help="size of each object / of those of unknown size")
    est.add_argument("--part-size", type=parse_size, help="multipart part size (default: cdk.json)")
    est.add_argument("--concurrency", type=int, help="map max concurrency (default: cdk.json)")
    est.add_argument(
        "--dest-region",
        metavar="REGION",
        help="region of the destination bucket: another region than source_region adds data transfer "
        "(default: the source region)",
    )
    est.add_argument("--json", action="store_true")

    # `teacopy local ...` is parsed by the demo's own parser (see main); listed here for --help
    sub.add_parser(
        "local",
        help="run the demo, or any execution input (--input FILE), end to end on this machine (local --help)",
    )
    return parser


def local_parser() -> argparse.ArgumentParser:
    from teacopy_local import demo

    return demo.build_parser(prog="teacopy local", parser_class=OneLineParser)


def run(arguments: list[str], backend: Backend | None, out: TextIO, err: TextIO, sleep: Callable[[float], None]) -> int:
    if arguments[:1] == ["local"]:  # everything after `local` belongs to the demo's own parser
        from teacopy_local import demo

        return demo.run(local_parser().parse_args(arguments[1:]), out=out, err=err)
    args = build_parser().parse_args(arguments)
    cli = Cli(args, backend=backend, out=out, err=err, sleep=sleep)
    return int(getattr(cli, "cmd_" + args.command.replace("-", "_"))())


def main(
    argv: Sequence[str] | None = None,
    *,
    backend: Backend | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run one command; every failure is one line on ``err`` and an exit code (see the module docstring)."""
    out = out or sys.stdout
    err = err or sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)

    def fail(code: int, text: str) -> int:
        out.flush()
        err.write(one_line(text) + "\n")
        err.flush()
        return code

    try:
        return run(arguments, backend, out, err, sleep)
    except UsageError as exc:
        return fail(EXIT_USAGE, f"error: {exc}")
    except InvalidInput as exc:
        return fail(EXIT_USAGE, f"invalid input: {exc}")
    except (InputError, ConfigurationError, ConfigError, LocalRunError) as exc:
        return fail(EXIT_USAGE, f"error: {exc}")
    except (BackendError, RunError) as exc:
        return fail(EXIT_AWS, f"error: {exc}")
    except (ClientError, BotoCoreError) as exc:
        return fail(EXIT_AWS, f"error: {aws_problem(exc, 'talking to AWS')}")
    except BrokenPipeError:  # the reader went away (| head): nothing to say
        return EXIT_OK
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(EXIT_USAGE, f"error: {where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
