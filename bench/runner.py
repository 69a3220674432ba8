"""Sets, tools, verification and the report. Driven by ``python -m bench`` (see ``bench.__main__``)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import cost
from bench.drivers import ROLE_LIKE, TEA_LIKE

REPO = Path(__file__).resolve().parents[1]
KIB, MIB, GIB = 1024, 1024**2, 1024**3
REGION = "us-west-2"
SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET = "bench-daac-protected", "bench-dest", "bench-staging"
DEFAULT_AWS_CLI = REPO / "build" / "venv-awscli" / "bin" / "aws"
TOOLS = ("teacopy", "naive", "cli")
SERVER_START_TIMEOUT_S = 60.0
ADMIN_TIMEOUT_S = 600.0  # put-random of 4 GiB takes ~40 s on this machine
POLL_S = 0.005
REPEAT_LIMIT_S = 60.0  # a tool run longer than this is not repeated


@dataclass(frozen=True)
class SetSpec:
    name: str
    count: int
    size: int
    teacopy_only: bool = False  # the 4 GiB memory check
    lean_server: bool = False  # stock moto cannot complete a 4 GiB upload within this machine's memory

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def scaled(self, size_factor: float, count_factor: float) -> SetSpec:
        return replace(
            self, size=max(1024, int(self.size * size_factor)), count=max(1, round(self.count * count_factor))
        )


SETS = {
    "1gib": SetSpec("1gib", 1, GIB),
    "50mib": SetSpec("50mib", 20, 50 * MIB),
    "100kib": SetSpec("100kib", 1000, 100 * KIB),
    "4gib": SetSpec("4gib", 1, 4 * GIB, teacopy_only=True, lean_server=True),
}


@dataclass
class Options:
    sets: list[SetSpec]
    tools: tuple[str, ...] = TOOLS
    workers: int = 1
    settings: dict[str, int] = field(default_factory=dict)  # env_names attribute -> value (teacopy overrides)
    sweep: list[tuple[int, int]] = field(default_factory=list)  # (part size, inflight parts) on the 1gib set
    aws_cli: Path = DEFAULT_AWS_CLI
    model: cost.ComputeModel = field(default_factory=cost.ComputeModel)
    out_dir: Path = REPO / "build" / "bench"
    tool_timeout_s: float = 3600.0
    max_cli_objects: int | None = None
    latency_ms: float = 0.0  # added to every S3 request by the server (diagnostic: S3 is latency-bound, moto is not)
    repeat: int = 1  # runs per tool and set (the median-throughput run is reported)
    lean_complete: bool = False  # every set on the memory-bounded CompleteMultipartUpload (diagnostic)
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)


# --- the server ----------------------------------------------------------------------------------


class BenchServer:
    """The counting moto server (``bench.server``) in its own process, and its admin endpoints."""

    def __init__(self, log_path: Path, lean_complete: bool = False, latency_ms: float = 0.0) -> None:
        self.log_path = log_path
        self.lean_complete = lean_complete
        self.latency_ms = latency_ms
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.server", "--host", "127.0.0.1", "--port", "0"]
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(  # noqa: S603 — our own module, fixed argv
                [*argv, *(["--lean-complete"] if self.lean_complete else []), "--latency-ms", str(self.latency_ms)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_python_env(),
                cwd=REPO,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], SERVER_START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"the bench S3 server did not start within {SERVER_START_TIMEOUT_S:.0f} s")
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}"

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def admin(self, method: str, name: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}/__bench__/{name}?{query}", method=method)  # noqa: S310 — loopback
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_S) as response:  # noqa: S310 — loopback
            return json.loads(response.read())

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(connect_timeout=5, read_timeout=120, retries={"mode": "standard", "max_attempts": 3}),
            **ROLE_LIKE,
        )


@contextmanager
def running_server(log_path: Path, lean_complete: bool = False, latency_ms: float = 0.0) -> Iterator[BenchServer]:
    server = BenchServer(log_path, lean_complete, latency_ms)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "lambdas")])
    return env


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object and abort every multipart upload; returns the number of uploads aborted."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    return abort_uploads(s3, bucket)


def abort_uploads(s3: Any, bucket: str) -> int:
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(uploads)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float


def wait_with_rusage(process: subprocess.Popen[Any], deadline: float) -> Finished:
    """Wait for ``process`` (killing it at ``deadline``) and read its own rusage from the kernel."""
    started = time.monotonic()
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return Finished(
                returncode=process.returncode,
                wall_s=time.monotonic() - started,
                peak_rss_mb=usage.ru_maxrss / 1024,
                cpu_s=usage.ru_utime + usage.ru_stime,
            )
        if time.monotonic() > deadline:
            if killed:
                raise RuntimeError(f"process {process.pid} did not exit 30 s after SIGKILL")
            process.kill()
            killed, deadline = True, time.monotonic() + 30
        time.sleep(POLL_S)


def run_driver(tool: str, spec: dict[str, Any], log_path: Path, timeout_s: float) -> dict[str, Any]:
    """One driver process; returns its report plus the kernel's view of its peak RSS and CPU."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with log_path.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(  # noqa: S603 — our own module, fixed argv
                [sys.executable, "-m", "bench.drivers", tool, str(spec_path), str(out_path)],
                stdout=log,
                stderr=log,
                env=_python_env(),
                cwd=REPO,
            )
            finished = wait_with_rusage(process, time.monotonic() + timeout_s)
        if finished.returncode != 0 or not out_path.exists():
            return {
                "errors": [f"{tool} driver exited with {finished.returncode}; see {log_path}"],
                "copy_seconds": finished.wall_s,
                "process": asdict(finished),
            }
        report: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    report["process"] = asdict(finished)
    return report


def run_teacopy(spec: dict[str, Any], workers: int, log_dir: Path, label: str, timeout_s: float) -> dict[str, Any]:
    """``workers`` driver processes, each calling copy_batch for one batch at a time."""
    if workers == 1:
        report = run_driver("teacopy", {**spec, "workers": 1, "worker_index": 0}, log_dir / f"{label}.log", timeout_s)
        report["peak_rss_mb"] = report["process"]["peak_rss_mb"]
        report["client_cpu_s"] = report["process"]["cpu_s"]
        return report
    import concurrent.futures

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                run_driver,
                "teacopy",
                {**spec, "workers": workers, "worker_index": i},
                log_dir / f"{label}-w{i}.log",
                timeout_s,
            )
            for i in range(workers)
        ]
        reports = [f.result() for f in futures]
    merged: dict[str, Any] = {
        "copy_seconds": time.monotonic() - started,
        "errors": [e for r in reports for e in r.get("errors", [])],
        "peak_rss_mb": max(r["process"]["peak_rss_mb"] for r in reports),  # per worker = per Lambda
        "peak_rss_mb_sum": sum(r["process"]["peak_rss_mb"] for r in reports),
        "client_cpu_s": sum(r["process"]["cpu_s"] for r in reports),
        "workers": reports,
    }
    for name in ("invocations", "retries", "copied", "skipped", "failed", "bytes", "batches"):
        merged[name] = sum(int(r.get(name, 0)) for r in reports)
    merged["settings"] = reports[0].get("settings", {})
    return merged


def run_cli_pipe(
    aws: Path, endpoint: str, objects: list[dict[str, Any]], log_path: Path, timeout_s: float
) -> dict[str, Any]:
    """``aws s3 cp s3://src/k - | aws s3 cp - s3://dst/k`` per object, sequentially."""
    home = tempfile.mkdtemp(prefix="bench-awscli-")
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(Path(home) / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    source_env = {
        **base,
        "AWS_ACCESS_KEY_ID": TEA_LIKE["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": TEA_LIKE["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": TEA_LIKE["aws_session_token"],
    }
    dest_env = {
        **base,
        "AWS_ACCESS_KEY_ID": ROLE_LIKE["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ROLE_LIKE["aws_secret_access_key"],
    }
    common = ["--endpoint-url", endpoint, "--only-show-errors"]
    errors: list[str] = []
    peak = 0.0
    cpu = 0.0
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        for obj in objects:
            key = obj["key"]
            reader = subprocess.Popen(  # noqa: S603 — fixed argv
                [str(aws), "s3", "cp", f"s3://{SOURCE_BUCKET}/{key}", "-", *common],
                stdout=subprocess.PIPE,
                stderr=log,
                env=source_env,
            )
            writer = subprocess.Popen(  # noqa: S603 — fixed argv
                [str(aws), "s3", "cp", "-", f"s3://{DEST_BUCKET}/{key}", *common],
                stdin=reader.stdout,
                stdout=log,
                stderr=log,
                env=dest_env,
            )
            assert reader.stdout is not None
            reader.stdout.close()  # the writer holds the only read end
            done_writer = wait_with_rusage(writer, deadline)
            done_reader = wait_with_rusage(reader, deadline)
            peak = max(peak, done_reader.peak_rss_mb + done_writer.peak_rss_mb)
            cpu += done_reader.cpu_s + done_writer.cpu_s
            if done_reader.returncode or done_writer.returncode:
                errors.append(f"{key}: exit codes {done_reader.returncode} | {done_writer.returncode}")
    return {
        "copy_seconds": time.monotonic() - started,
        "peak_rss_mb": peak,
        "client_cpu_s": cpu,
        "processes": 2 * len(objects),
        "errors": errors,
    }


# --- one set ------------------------------------------------------------------------------------


def generate(server: BenchServer, spec: SetSpec) -> list[dict[str, Any]]:
    """Random objects in the source bucket (stored server-side, like an upload; not counted)."""
    objects = []
    for index in range(spec.count):
        key = f"bench/{spec.name}/granule-{index:05d}.nc"
        stored = server.admin("POST", "put-random", bucket=SOURCE_BUCKET, key=key, size=spec.size)
        objects.append({"key": key, "size": stored["size"], "sha256": stored["sha256"]})
    return objects


def verify(server: BenchServer, s3: Any, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Every destination object must exist with the source's size and SHA-256 (read on the server)."""
    bad: list[str] = []
    for obj in objects:
        source = server.admin("GET", "digest", bucket=SOURCE_BUCKET, key=obj["key"])
        if source["sha256"] != obj["sha256"]:
            bad.append(f"{obj['key']}: source changed")
            continue
        try:
            dest = server.admin("GET", "digest", bucket=DEST_BUCKET, key=obj["key"])
        except urllib.error.HTTPError:
            bad.append(f"{obj['key']}: missing at the destination")
            continue
        if dest["size"] != obj["size"] or dest["sha256"] != obj["sha256"]:
            bad.append(f"{obj['key']}: size {dest['size']} sha256 {dest['sha256'][:12]} != source")
    leftover = abort_uploads(s3, DEST_BUCKET)
    return {"ok": not bad and not leftover, "checked": len(objects), "bad": bad[:5], "incomplete_uploads": leftover}


def summarize_counts(counts: dict[str, Any], objects: int) -> dict[str, Any]:
    data = {b: {op: e["n"] for op, e in counts.get(b, {}).items()} for b in (SOURCE_BUCKET, DEST_BUCKET)}
    staging = {op: e["n"] for op, e in counts.get(STAGING_BUCKET, {}).items()}
    data_total = sum(sum(ops.values()) for ops in data.values())
    staging_total = sum(staging.values())
    statuses: dict[str, int] = {}
    for bucket in (SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET):
        for entry in counts.get(bucket, {}).values():
            for code, n in entry["status"].items():
                statuses[code] = statuses.get(code, 0) + n
    seconds: dict[str, float] = {}
    for bucket in (SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET):
        for op, entry in counts.get(bucket, {}).items():
            seconds[op] = round(seconds.get(op, 0.0) + float(entry.get("seconds", 0.0)), 3)
    return {
        "requests_per_object": round(data_total / objects, 3),
        "server_seconds_by_operation": seconds,  # summed over concurrent requests: can exceed wall clock
        "staging_requests_per_object": round(staging_total / objects, 3),
        "requests": {"source": data[SOURCE_BUCKET], "dest": data[DEST_BUCKET], "staging": staging},
        "status_codes": statuses,
        "by_class": cost.requests_by_class(counts, [SOURCE_BUCKET, DEST_BUCKET]),
        "staging_by_class": cost.requests_by_class(counts, [STAGING_BUCKET]),
    }


def run_tool(
    tool: str,
    server: BenchServer,
    s3: Any,
    spec: SetSpec,
    objects: list[dict[str, Any]],
    options: Options,
    settings: dict[str, int],
    label: str,
) -> dict[str, Any]:
    empty_bucket(s3, DEST_BUCKET)
    empty_bucket(s3, STAGING_BUCKET)
    log_dir = options.out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    driver_spec = {
        "endpoint": server.url,
        "region": REGION,
        "source_bucket": SOURCE_BUCKET,
        "dest_bucket": DEST_BUCKET,
        "staging_bucket": STAGING_BUCKET,
        "objects": [{"key": o["key"], "size": o["size"]} for o in objects],
        "settings": settings,
        "run_id": f"bench-{label}-{int(time.time())}",
    }
    subset = objects
    server.admin("POST", "reset")
    before = server.admin("GET", "counts")
    load = os.getloadavg()[0]
    if tool == "teacopy":
        report = run_teacopy(driver_spec, options.workers, log_dir, label, options.tool_timeout_s)
    elif tool == "naive":
        report = run_driver("naive", driver_spec, log_dir / f"{label}.log", options.tool_timeout_s)
        report["peak_rss_mb"] = report["process"]["peak_rss_mb"]
        report["client_cpu_s"] = report["process"]["cpu_s"]
    else:
        if options.max_cli_objects is not None:
            subset = objects[: options.max_cli_objects]
        report = run_cli_pipe(options.aws_cli, server.url, subset, log_dir / f"{label}.log", options.tool_timeout_s)
    after = server.admin("GET", "counts")
    if tool == "teacopy" and "copied" in report and int(report["copied"]) != len(subset):
        report.setdefault("errors", []).append(
            f"copy_batch reported copied={report['copied']} failed={report.get('failed')} of {len(subset)}"
        )
    copied_bytes = sum(o["size"] for o in subset)
    seconds = max(1e-9, float(report["copy_seconds"]))
    counted = summarize_counts(after["counts"], len(subset))
    checked = verify(server, s3, subset)
    staging_requests = counted["staging_by_class"] if tool == "teacopy" else {}
    priced = cost.estimate(
        data_requests=counted["by_class"],
        staging_requests=staging_requests,
        objects=len(subset),
        total_bytes=copied_bytes,
        model=options.model,
    )
    empty_bucket(s3, DEST_BUCKET)
    row = {
        "set": spec.name,
        "tool": tool,
        "objects": len(subset),
        "bytes": copied_bytes,
        "seconds": round(seconds, 3),
        "mib_s": round(copied_bytes / MIB / seconds, 2),
        "peak_rss_mb": round(float(report.get("peak_rss_mb", 0.0)), 1),
        "client_cpu_s": round(float(report.get("client_cpu_s", 0.0)), 2),
        "server_cpu_s": round(after["server_cpu_s"] - before["server_cpu_s"], 2),
        "server_peak_rss_mb": after["server_peak_rss_mb"],
        "load_1min_before": round(load, 2),
        **counted,
        **priced,
        "verified": checked,
        "errors": report.get("errors", [])[:5],
    }
    for name in ("invocations", "retries", "batches", "settings", "peak_rss_mb_sum"):
        if name in report:
            row[name] = report[name]
    if tool == "cli":
        row["processes"] = report.get("processes")
    return row


def run_bench(options: Options) -> dict[str, Any]:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    tools = [t for t in options.tools if t in TOOLS]
    notes: list[str] = []
    if "cli" in tools and not options.aws_cli.exists():
        tools.remove("cli")
        notes.append(f"AWS CLI not found at {options.aws_cli}: the CLI pipe was not run (make bench installs it)")
    rows: list[dict[str, Any]] = []
    sweep_rows: list[dict[str, Any]] = []
    for spec in options.sets:
        lean = options.lean_complete or spec.lean_server
        # A fresh server per set: the previous set's objects and moto's memory are gone.
        log = options.out_dir / "logs" / f"server-{spec.name}.log"
        with running_server(log, lean, options.latency_ms) as server:
            s3 = server.client()
            for bucket in (SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET):
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            options.progress(f"[bench] set {spec.name}: generating {spec.count} x {_size(spec.size)}")
            generated = time.monotonic()
            objects = generate(server, spec)
            options.progress(f"[bench] set {spec.name}: generated in {time.monotonic() - generated:.1f} s")
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools if t == "teacopy" or not spec.teacopy_only}
            for repetition in range(options.repeat):  # tools interleaved, so load drift hits them alike
                for tool, done in runs.items():
                    if done and float(done[-1]["seconds"]) > REPEAT_LIMIT_S:
                        continue  # long runs are not repeated: noise is small next to them
                    options.progress(f"[bench] set {spec.name}: {tool} (run {repetition + 1}) ...")
                    label = f"{spec.name}-{tool}" + (f"-r{repetition + 1}" if options.repeat > 1 else "")
                    row = run_tool(tool, server, s3, spec, objects, options, options.settings, label)
                    row["lean_complete_server"], row["server_latency_ms"] = lean, options.latency_ms
                    options.progress(f"[bench] set {spec.name}: {tool}: {_row_brief(row)}")
                    done.append(row)
            rows.extend(median_row(done) for done in runs.values() if done)
            if spec.name == "1gib" and options.sweep:
                for part, inflight in options.sweep:
                    settings = {**options.settings, "PART_SIZE_BYTES": part, "INFLIGHT_PARTS": inflight}
                    label = f"sweep-{part // MIB}mib-x{inflight}"
                    row = run_tool("teacopy", server, s3, spec, objects, options, settings, label)
                    row["part_size_mib"], row["inflight_parts"] = part // MIB, inflight
                    row["lean_complete_server"] = lean
                    options.progress(f"[bench] sweep {part // MIB} MiB x {inflight}: {_row_brief(row)}")
                    sweep_rows.append(row)
    if options.latency_ms:
        notes.append(f"every S3 request was delayed {options.latency_ms:g} ms by the server (--latency-ms)")
    lean_sets = [s.name for s in options.sets if options.lean_complete or s.lean_server]
    if lean_sets:
        notes.append(
            f"sets {', '.join(lean_sets)} ran on the lean-complete server (bench.server --lean-complete): moto's"
            " CompleteMultipartUpload streams the parts instead of concatenating them in memory (stock moto needs"
            " ~4-7 GB of server memory per GiB completed; a 4 GiB object does not fit this machine)"
        )
    return {
        "rows": rows,
        "sweep": sweep_rows,
        "summary": summarize(rows),
        "assumptions": {
            **cost.assumptions(options.model),
            "teacopy_worker_processes": options.workers,
            "repeat": options.repeat,
            "teacopy_settings_overrides": options.settings,
            "peers": "naive: one process, sequential; cli: one pipe (two aws processes) per object, sequential"
            + (f", at most the first {options.max_cli_objects} objects of a set" if options.max_cli_objects else ""),
            "sets": [asdict(s) for s in options.sets],
        },
        "notes": notes,
        "uptime": _uptime(),
    }


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput stands for the tool; every run's throughput and the worst RSS are kept."""
    ordered = sorted(runs, key=lambda r: r["mib_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])  # the lower median for an even count
    row["runs"] = len(runs)
    row["mib_s_runs"] = [r["mib_s"] for r in runs]
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    row["verified"] = {**row["verified"], "ok": all(r["verified"]["ok"] for r in runs)}
    row["errors"] = [e for r in runs for e in r["errors"]][:5]
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers (the last line of ``make bench``) and whether the issue's targets are met."""
    by_set: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_set.setdefault(row["set"], {})[row["tool"]] = row
    ratios: dict[str, float] = {}
    for name, tools in by_set.items():
        peers = [r["mib_s"] for t, r in tools.items() if t != "teacopy"]
        if "teacopy" in tools and peers:
            ratios[name] = round(tools["teacopy"]["mib_s"] / max(peers), 3)

    def teacopy(set_name: str, key: str) -> Any:
        return by_set.get(set_name, {}).get("teacopy", {}).get(key)

    out: dict[str, Any] = {
        "throughput_ratio_vs_best_peer": min(ratios.values()) if ratios else None,
        "peak_rss_mb_1gib": teacopy("1gib", "peak_rss_mb"),
        "peak_rss_mb_4gib": teacopy("4gib", "peak_rss_mb"),
        "requests_per_small_object": teacopy("100kib", "requests_per_object"),
        "staging_requests_per_small_object": teacopy("100kib", "staging_requests_per_object"),
        "usd_per_tb_50mib": teacopy("50mib", "usd_per_tb"),
        "throughput_ratio_by_set": ratios,
        "lean_complete_sets": sorted({r["set"] for r in rows if r.get("lean_complete_server")}),
        "server_latency_ms": max((float(r.get("server_latency_ms", 0.0)) for r in rows), default=0.0),
        "all_verified": all(r["verified"]["ok"] and not r["errors"] for r in rows),
        "per_set": {
            name: {
                tool: {
                    "mib_s": r["mib_s"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "requests_per_object": r["requests_per_object"],
                    "usd_per_tb": r["usd_per_tb"],
                    "usd_per_million_objects": r["usd_per_million_objects"],
                    "verified": r["verified"]["ok"],
                }
                for tool, r in tools.items()
            }
            for name, tools in by_set.items()
        },
    }
    rss1, rss4 = out["peak_rss_mb_1gib"], out["peak_rss_mb_4gib"]
    out["targets_met"] = {
        "throughput_ratio_vs_best_peer>=1.0": None if not ratios else min(ratios.values()) >= 1.0,
        "peak_rss_mb_4gib<=300_and_within_10pct_of_1gib": None
        if rss1 is None or rss4 is None
        else (rss4 <= 300 and abs(rss4 - rss1) <= 0.10 * rss1),
        "requests_per_small_object<=3": None
        if out["requests_per_small_object"] is None
        else out["requests_per_small_object"] <= 3,
        "usd_per_tb_50mib<=0.60": None if out["usd_per_tb_50mib"] is None else out["usd_per_tb_50mib"] <= 0.60,
    }
    return out


# --- text ---------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, factor in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def _uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _row_brief(row: dict[str, Any]) -> str:
    ok = "ok" if row["verified"]["ok"] and not row["errors"] else f"FAILED {row['verified']['bad']} {row['errors']}"
    return (
        f"{row['mib_s']} MiB/s, {row['seconds']} s, rss {row['peak_rss_mb']} MB, "
        f"{row['requests_per_object']} req/obj (+{row['staging_requests_per_object']} staging), "
        f"${row['usd_per_tb']}/TB, verify {ok}"
    )


def format_report(result: dict[str, Any]) -> str:
    lines = []
    header = (
        f"{'set':<8} {'tool':<8} {'objects':>7} {'MiB/s':>8} {'wall s':>8} {'RSS MB':>7} {'req/obj':>8} "
        f"{'stg/obj':>7} {'cli CPU':>8} {'srv CPU':>8} {'$/TB':>8} {'$/1M obj':>9}  verified"
    )
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        lines.append(_table_line(row))
    if result["sweep"]:
        lines += ["", "sweep (teacopy, 1gib set): part size x in-flight parts", header, "-" * len(header)]
        for row in result["sweep"]:
            lines.append(_table_line({**row, "tool": f"{row['part_size_mib']}Mx{row['inflight_parts']}"}))
    lines.append("")
    lines.append("requests counted per tool (source | destination | staging), per set:")
    for row in result["rows"]:
        r = row["requests"]
        lines.append(
            f"  {row['set']:<7} {row['tool']:<8} {_ops(r['source'])} | {_ops(r['dest'])} | {_ops(r['staging'])}"
        )
    lines.append("")
    lines.append("server time inside moto per operation (seconds, summed over concurrent requests):")
    for row in result["rows"] + result["sweep"]:
        ops = sorted(row["server_seconds_by_operation"].items(), key=lambda item: -item[1])
        tool = row["tool"] if "part_size_mib" not in row else f"{row['part_size_mib']}Mx{row['inflight_parts']}"
        lines.append(f"  {row['set']:<7} {tool:<8} " + ", ".join(f"{op} {sec:.2f}" for op, sec in ops if sec >= 0.01))
    a = result["assumptions"]
    m, p = a["compute"], a["prices"]
    lines += [
        "",
        "assumptions:",
        f"  throughput = set bytes / wall clock of the copy only (driver-measured; the CLI pipe includes its"
        f" process starts); median of {a['repeat']} run(s) per tool, tools interleaved (runs over"
        f" {REPEAT_LIMIT_S:.0f} s are not repeated)",
        f"  teacopy runs {a['teacopy_worker_processes']} worker process(es), one copy_batch at a time each (one map"
        f" child); {a['peers']}",
        "  peak RSS = ru_maxrss of the copying process (teacopy: max per worker; CLI pipe: both aws processes"
        " of one object added, max over objects)",
        "  req/obj = all requests counted on the source + destination buckets / objects; stg/obj = staging bucket"
        " (teacopy's result log), included in teacopy's cost",
        f"  S3 PUT-class ${p['s3_put_per_1000']}/1000 (Put, UploadPart, Create/CompleteMultipartUpload, List*),"
        f" GET-class ${p['s3_get_per_1000']}/1000 (Get, Head, other), Delete/Abort free",
        f"  Lambda (every tool alike): bytes / {m['network_mib_s']} MiB/s + {m['floor_ms_per_object']} ms per object,"
        f" arm64 ${p['lambda_arm64_per_gb_s']}/GB-s at {m['lambda_memory_mb']} MB",
        f"  Step Functions standard: {m['transitions_per_batch']} transitions per batch of up to"
        f" {m['batch_max_objects']} objects / {m['batch_max_bytes'] // GIB} GiB,"
        f" ${p['sfn_standard_per_1000_transitions']}/1000; TB = 10^12 bytes",
        f"  load (/proc/loadavg at the end): {result['uptime']}",
    ]
    lines += [f"  note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def _ops(ops: dict[str, int]) -> str:
    return " ".join(f"{op}={n}" for op, n in ops.items()) or "-"


def _table_line(row: dict[str, Any]) -> str:
    ok = "yes" if row["verified"]["ok"] and not row["errors"] else "NO"
    return (
        f"{row['set']:<8} {row['tool']:<8} {row['objects']:>7} {row['mib_s']:>8.1f} {row['seconds']:>8.2f} "
        f"{row['peak_rss_mb']:>7.0f} {row['requests_per_object']:>8.2f} {row['staging_requests_per_object']:>7.2f} "
        f"{row['client_cpu_s']:>8.1f} {row['server_cpu_s']:>8.1f} {row['usd_per_tb']:>8.3f} "
        f"{row['usd_per_million_objects']:>9.2f}  {ok}"
        + (f"  runs {row['mib_s_runs']}" if len(row.get("mib_s_runs", [])) > 1 else "")
    )
