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

from bench import cost, peers
from bench.drivers import ROLE_LIKE, TEA_LIKE
from bench.model import S3Model
from bench.peers import PeerConfig

REPO = Path(__file__).resolve().parents[1]
KIB, MIB, GIB = 1024, 1024**2, 1024**3
REGION = "us-west-2"
SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET = "bench-daac-protected", "bench-dest", "bench-staging"
DEFAULT_AWS_CLI = REPO / "build" / "venv-awscli" / "bin" / "aws"
TOOLS = ("teacopy", "rclone", "s5cmd", "naive", "cli")
PEERS = ("rclone", "s5cmd")  # configured per set (bench.peers), best candidate kept
TOOLS_CPUS, SERVER_CPUS = "0", "1"  # taskset: every tool on one core (a 1,769 MB Lambda), the server on the other
MODELLED, LOOPBACK = "modelled", "loopback"  # the two figures
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
    s3_model: S3Model = field(default_factory=S3Model)  # the modelled S3 (bench.model)
    loopback: bool = True  # also the second figure: the same copies on the zero-latency loopback server
    pin: bool = True  # tools on CPU TOOLS_CPUS, the server on SERVER_CPUS (taskset)
    peer_configs: dict[str, list[str]] = field(default_factory=dict)  # tool -> candidate labels to try (all: empty)
    repeat: int = 1  # runs per tool and set (the median-throughput run is reported)
    lean_complete: bool = False  # every set on the memory-bounded CompleteMultipartUpload (diagnostic)
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)


# --- the server ----------------------------------------------------------------------------------


class BenchServer:
    """The counting moto server (``bench.server``) in its own process, and its admin endpoints."""

    def __init__(
        self,
        log_path: Path,
        lean_complete: bool = False,
        model: S3Model | None = None,
        cpus: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.lean_complete = lean_complete
        self.model = model or S3Model.loopback()
        self.cpus = cpus  # taskset CPU list for the server process (None: not pinned)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.server", "--host", "127.0.0.1", "--port", "0"]
        if self.lean_complete:
            argv.append("--lean-complete")
        model = self.model
        if model.is_loopback:
            argv.append("--loopback")
        else:
            argv += ["--first-byte-ms", str(model.first_byte_ms), "--jitter-ms", str(model.jitter_ms)]
            argv += ["--connection-mbps", str(model.connection_mbps), "--link-mibps", str(model.link_mibps)]
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(  # noqa: S603 — our own module, fixed argv
                peers.pinned(argv, self.cpus),
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

    def set_model(self, model: S3Model) -> None:
        """Switch the running server's S3 model (same process, same stored objects)."""
        self.model = model
        self.admin("POST", "model", **model.as_dict())

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
def running_server(
    log_path: Path, lean_complete: bool = False, model: S3Model | None = None, cpus: str | None = None
) -> Iterator[BenchServer]:
    server = BenchServer(log_path, lean_complete, model, cpus)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO)  # the core is imported as lambdas.… only (one import name)
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


def run_driver(
    tool: str, spec: dict[str, Any], log_path: Path, timeout_s: float, cpus: str | None = None
) -> dict[str, Any]:
    """One driver process; returns its report plus the kernel's view of its peak RSS and CPU."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with log_path.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(  # noqa: S603 — our own module, fixed argv
                peers.pinned([sys.executable, "-m", "bench.drivers", tool, str(spec_path), str(out_path)], cpus),
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


def run_teacopy(
    spec: dict[str, Any], workers: int, log_dir: Path, label: str, timeout_s: float, cpus: str | None = None
) -> dict[str, Any]:
    """``workers`` driver processes, each calling copy_batch for one batch at a time."""
    if workers == 1:
        report = run_driver(
            "teacopy", {**spec, "workers": 1, "worker_index": 0}, log_dir / f"{label}.log", timeout_s, cpus
        )
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
                cpus,
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
    aws: Path,
    endpoint: str,
    objects: list[dict[str, Any]],
    log_path: Path,
    timeout_s: float,
    cpus: str | None = None,
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
                peers.pinned([str(aws), "s3", "cp", f"s3://{SOURCE_BUCKET}/{key}", "-", *common], cpus),
                stdout=subprocess.PIPE,
                stderr=log,
                env=source_env,
            )
            writer = subprocess.Popen(  # noqa: S603 — fixed argv
                peers.pinned([str(aws), "s3", "cp", "-", f"s3://{DEST_BUCKET}/{key}", *common], cpus),
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
    for obj in objects:  # the source objects are checked once per set, at its end (run_bench)
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
    figure: str = MODELLED,
    peer: PeerConfig | None = None,
) -> dict[str, Any]:
    empty_bucket(s3, DEST_BUCKET)
    empty_bucket(s3, STAGING_BUCKET)
    log_dir = options.out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cpus = TOOLS_CPUS if options.pin else None
    driver_spec = {
        "endpoint": server.url,
        "region": REGION,
        "source_bucket": SOURCE_BUCKET,
        "dest_bucket": DEST_BUCKET,
        "staging_bucket": STAGING_BUCKET,
        "objects": [{"key": o["key"], "size": o["size"]} for o in objects],
        "settings": settings,
        "lambda_memory_mb": options.model.lambda_memory_mb,  # teacopy sizes its buffers from it, as in Lambda
        "run_id": f"bench-{label}-{int(time.time())}",
    }
    subset = objects
    server.admin("POST", "reset")
    before = server.admin("GET", "counts")
    load = os.getloadavg()[0]
    if tool == "teacopy":
        report = run_teacopy(driver_spec, options.workers, log_dir, label, options.tool_timeout_s, cpus)
    elif tool == "naive":
        report = run_driver("naive", driver_spec, log_dir / f"{label}.log", options.tool_timeout_s, cpus)
        report["peak_rss_mb"] = report["process"]["peak_rss_mb"]
        report["client_cpu_s"] = report["process"]["cpu_s"]
    elif tool in PEERS:
        assert peer is not None
        prefix = objects[0]["key"].rsplit("/", 1)[0]
        report = peers.run_peer(
            peer,
            endpoint=server.url,
            region=REGION,
            source=(SOURCE_BUCKET, prefix, TEA_LIKE),
            dest=(DEST_BUCKET, prefix, ROLE_LIKE),
            keys=[o["key"] for o in objects],
            log_path=log_dir / f"{label}.log",
            timeout_s=options.tool_timeout_s,
            cpus=cpus,
        )
    else:
        if options.max_cli_objects is not None:
            subset = objects[: options.max_cli_objects]
        report = run_cli_pipe(
            options.aws_cli, server.url, subset, log_dir / f"{label}.log", options.tool_timeout_s, cpus
        )
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
    server_cpu = after["server_cpu_s"] - before["server_cpu_s"]
    row = {
        "set": spec.name,
        "tool": tool,
        "figure": figure,
        "config": peer.label if peer is not None else ("deployed defaults" if tool == "teacopy" else ""),
        "command": peer.describe() if peer is not None else "",
        "objects": len(subset),
        "bytes": copied_bytes,
        "seconds": round(seconds, 3),
        "mib_s": round(copied_bytes / MIB / seconds, 2),
        "objects_per_s": round(len(subset) / seconds, 1),
        "peak_rss_mb": round(float(report.get("peak_rss_mb", 0.0)), 1),
        "client_cpu_s": round(float(report.get("client_cpu_s", 0.0)), 2),
        "server_cpu_s": round(server_cpu, 2),
        "server_busy": round(server_cpu / seconds, 3),  # share of the server's core it used: < ~0.8 = not the limit
        "server_peak_rss_mb": after["server_peak_rss_mb"],
        "load_1min_before": round(load, 2),
        **counted,
        **priced,
        "verified": checked,
        "errors": report.get("errors", [])[:5],
    }
    for name in ("invocations", "retries", "batches", "settings", "peak_rss_mb_sum", "phases", "processes"):
        if name in report:
            row[name] = report[name]
    return row


def _ok(row: dict[str, Any]) -> bool:
    return bool(row["verified"]["ok"]) and not row["errors"]


def _prepare(server: BenchServer, spec: SetSpec, options: Options) -> tuple[Any, list[dict[str, Any]]]:
    s3 = server.client()
    for bucket in (SOURCE_BUCKET, DEST_BUCKET, STAGING_BUCKET):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    options.progress(f"[bench] set {spec.name}: generating {spec.count} x {_size(spec.size)}")
    generated = time.monotonic()
    objects = generate(server, spec)
    options.progress(f"[bench] set {spec.name}: generated in {time.monotonic() - generated:.1f} s")
    return s3, objects


def run_bench(options: Options) -> dict[str, Any]:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    tools = [t for t in options.tools if t in TOOLS]
    notes: list[str] = []
    if "cli" in tools and not options.aws_cli.exists():
        tools.remove("cli")
        notes.append(f"AWS CLI not found at {options.aws_cli}: the CLI pipe was not run (make bench installs it)")
    for peer in PEERS:
        if peer in tools and not peers.installed(peer):
            tools.remove(peer)
            notes.append(f"{peer} not found in {peers.PEERS_VENV}: not run (make bench installs it)")
    rows: list[dict[str, Any]] = []
    sweep_rows: list[dict[str, Any]] = []
    tried: list[dict[str, Any]] = []
    cpus = SERVER_CPUS if options.pin else None
    for spec in options.sets:
        lean = options.lean_complete or spec.lean_server
        # A fresh server per set: the previous set's objects and moto's memory are gone.
        log = options.out_dir / "logs" / f"server-{spec.name}.log"
        with running_server(log, lean, options.s3_model, cpus) as server:
            s3, objects = _prepare(server, spec, options)
            set_tools = [t for t in tools if t == "teacopy" or not spec.teacopy_only]

            def one(
                tool: str,
                label: str,
                figure: str,
                peer: PeerConfig | None = None,
                *,
                spec: SetSpec = spec,
                server: BenchServer = server,
                s3: Any = s3,
                objects: list[dict[str, Any]] = objects,
                lean: bool = lean,
            ) -> dict[str, Any]:
                options.progress(f"[bench] set {spec.name} ({figure}): {tool} {peer.label if peer else ''} ...")
                row = run_tool(tool, server, s3, spec, objects, options, options.settings, label, figure, peer)
                row["lean_complete_server"] = lean
                options.progress(f"[bench] set {spec.name} ({figure}): {tool}: {_row_brief(row)}")
                return row

            # 1. the peers' candidate configurations, once each; the fastest verified one is kept
            chosen: dict[str, PeerConfig] = {}
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in set_tools}
            for tool in (t for t in set_tools if t in PEERS):
                best: tuple[float, PeerConfig, dict[str, Any]] | None = None
                for config in _candidates(tool, spec, options):
                    row = one(tool, f"{spec.name}-{tool}-{config.label}", MODELLED, config)
                    tried.append(row)
                    if _ok(row) and (best is None or row["mib_s"] > best[0]):
                        best = (row["mib_s"], config, row)
                if best is not None:
                    chosen[tool] = best[1]
                    runs[tool].append(best[2])
            # 2. teacopy and the chosen peer configurations, interleaved (load drift hits them alike)
            for repetition in range(options.repeat):
                for tool in set_tools:
                    done = runs[tool]
                    if tool in PEERS and (tool not in chosen or len(done) > repetition):
                        continue  # the candidate run is its first run
                    if tool in ("naive", "cli") and done:
                        continue  # far behind: one run
                    if done and float(done[-1]["seconds"]) > REPEAT_LIMIT_S:
                        continue  # long runs are not repeated: noise is small next to them
                    label = f"{spec.name}-{tool}" + (f"-r{repetition + 1}" if options.repeat > 1 else "")
                    rows_peer = chosen.get(tool)
                    done.append(one(tool, label, MODELLED, rows_peer))
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
            # 3. the second figure: the same data and configurations on the zero-latency loopback server
            if options.loopback and not spec.teacopy_only and not options.s3_model.is_loopback:
                server.set_model(S3Model.loopback())
                for tool in set_tools:
                    if tool == "cli" or (tool in PEERS and tool not in chosen):
                        continue
                    row = one(tool, f"{spec.name}-{tool}-loopback", LOOPBACK, chosen.get(tool))
                    rows.append({**row, "runs": 1, "mib_s_runs": [row["mib_s"]]})
            changed = [o["key"] for o in objects if digest(server, SOURCE_BUCKET, o["key"])["sha256"] != o["sha256"]]
            if changed:
                notes.append(f"set {spec.name}: source objects changed during the runs: {changed[:3]}")
    lean_sets = [s.name for s in options.sets if options.lean_complete or s.lean_server]
    if lean_sets:
        notes.append(
            f"sets {', '.join(lean_sets)} ran on the lean-complete server (bench.server --lean-complete): moto's"
            " CompleteMultipartUpload serves the object from its parts instead of concatenating them (stock moto needs"
            " ~4-7 GB of server memory per GiB completed; a 4 GiB object does not fit this machine)"
        )
    if not options.pin:
        notes.append("--no-pin: tools and server were not confined to their own cores")
    briefs = [_tried_brief(r) for r in tried]
    return {
        "rows": rows,
        "sweep": sweep_rows,
        "tried": briefs,
        "summary": summarize(rows, options.s3_model, briefs),
        "assumptions": {
            **cost.assumptions(options.model),
            "s3_model": options.s3_model.as_dict(),
            "cpus": {"tools": TOOLS_CPUS, "server": SERVER_CPUS} if options.pin else None,
            "teacopy_worker_processes": options.workers,
            "repeat": options.repeat,
            "teacopy_settings_overrides": options.settings,
            "peers": "rclone and s5cmd: every candidate configuration once, the fastest repeated; naive: one"
            " process, sequential, one run; cli: one pipe (two aws processes) per object, sequential, one run"
            + (f", at most the first {options.max_cli_objects} objects of a set" if options.max_cli_objects else ""),
            "sets": [asdict(s) for s in options.sets],
        },
        "notes": notes,
        "uptime": _uptime(),
    }


def _candidates(tool: str, spec: SetSpec, options: Options) -> list[PeerConfig]:
    every = peers.candidates(tool, spec.size, spec.count)
    wanted = options.peer_configs.get(tool)
    return [c for c in every if c.label in wanted] or every[:1] if wanted else every


def digest(server: BenchServer, bucket: str, key: str) -> dict[str, Any]:
    result: dict[str, Any] = server.admin("GET", "digest", bucket=bucket, key=key)
    return result


def _tried_brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row.get(k)
        for k in ("set", "tool", "config", "command", "mib_s", "objects_per_s", "peak_rss_mb", "client_cpu_s")
    } | {"ok": _ok(row), "requests_per_object": row.get("requests_per_object"), "phases": row.get("phases")}


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


def _by_set(rows: list[dict[str, Any]], figure: str) -> dict[str, dict[str, dict[str, Any]]]:
    by_set: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.get("figure", MODELLED) == figure:
            by_set.setdefault(row["set"], {})[row["tool"]] = row
    return by_set


def _ratios(by_set: dict[str, dict[str, dict[str, Any]]]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    ratios: dict[str, float] = {}
    best: dict[str, dict[str, Any]] = {}
    for name, tools in by_set.items():
        others = [r for t, r in tools.items() if t != "teacopy"]
        if "teacopy" in tools and others:
            top = max(others, key=lambda r: r["mib_s"])
            ratios[name] = round(tools["teacopy"]["mib_s"] / max(1e-9, top["mib_s"]), 3)
            best[name] = {
                "tool": top["tool"],
                "config": top["config"],
                "command": top["command"],
                "mib_s": top["mib_s"],
            }
    return ratios, best


def summarize(
    rows: list[dict[str, Any]], s3_model: S3Model | None = None, tried: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The headline numbers (the last line of ``make bench``) and whether the issue's targets are met."""
    s3_model = s3_model or S3Model()
    figure = LOOPBACK if s3_model.is_loopback else MODELLED
    by_set = _by_set(rows, figure)
    ratios, best = _ratios(by_set)
    loop_ratios, loop_best = _ratios(_by_set(rows, LOOPBACK)) if figure == MODELLED else ({}, {})

    def teacopy(set_name: str, key: str) -> Any:
        return by_set.get(set_name, {}).get("teacopy", {}).get(key)

    def utilization(set_name: str) -> float | None:
        mib_s = teacopy(set_name, "mib_s")
        if mib_s is None or not s3_model.link_mibps:
            return None
        return round(mib_s / s3_model.link_mibps, 3)

    native: dict[str, dict[str, float]] = {}
    for row in tried or []:
        phases = row.get("phases") or []
        if row["tool"] == "s5cmd" and len(phases) == 2 and row["ok"]:
            sizes = by_set.get(row["set"], {}).get("teacopy", {}).get("bytes")
            if sizes:
                entry = native.setdefault(row["set"], {"download_mib_s": 0.0, "upload_mib_s": 0.0})
                entry["download_mib_s"] = max(entry["download_mib_s"], round(sizes / MIB / phases[0]["seconds"], 1))
                entry["upload_mib_s"] = max(entry["upload_mib_s"], round(sizes / MIB / phases[1]["seconds"], 1))
    peer_names = sorted({r["tool"] for r in rows if r["tool"] != "teacopy"})
    out: dict[str, Any] = {
        "throughput_ratio_vs_best_peer": min(ratios.values()) if ratios else None,
        "best_peer_by_set": best,
        "peers": peer_names,
        "s3_model": {
            "first_byte_ms": s3_model.first_byte_ms,
            "jitter_ms": s3_model.jitter_ms,
            "connection_mbps": s3_model.connection_mbps,
            "link_mibps": s3_model.link_mibps,
        },
        "link_utilization_1gib": utilization("1gib"),
        "link_utilization_50mib": utilization("50mib"),
        "small_objects_per_second": teacopy("100kib", "objects_per_s"),
        "peak_rss_mb_1gib": teacopy("1gib", "peak_rss_mb"),
        "peak_rss_mb_4gib": teacopy("4gib", "peak_rss_mb"),
        "requests_per_small_object": teacopy("100kib", "requests_per_object"),
        "staging_requests_per_small_object": teacopy("100kib", "staging_requests_per_object"),
        "usd_per_tb_50mib": teacopy("50mib", "usd_per_tb"),
        "loopback_ratio_vs_best_peer": min(loop_ratios.values()) if loop_ratios else None,
        "throughput_ratio_by_set": ratios,
        "loopback_ratio_by_set": loop_ratios,
        "loopback_best_peer_by_set": loop_best,
        "teacopy_mib_s_by_set": {
            name: tools["teacopy"]["mib_s"] for name, tools in by_set.items() if "teacopy" in tools
        },
        "server_busy_max": max((float(r.get("server_busy", 0.0)) for r in rows), default=0.0),
        "native_client_by_set": native,
        "lean_complete_sets": sorted({r["set"] for r in rows if r.get("lean_complete_server")}),
        "all_verified": all(_ok(r) for r in rows),
        "per_set": {
            name: {
                tool: {
                    "mib_s": r["mib_s"],
                    "objects_per_s": r.get("objects_per_s"),
                    "peak_rss_mb": r["peak_rss_mb"],
                    "requests_per_object": r["requests_per_object"],
                    "client_cpu_s": r.get("client_cpu_s"),
                    "usd_per_tb": r["usd_per_tb"],
                    "usd_per_million_objects": r["usd_per_million_objects"],
                    "config": r.get("config", ""),
                    "verified": r["verified"]["ok"],
                }
                for tool, r in tools.items()
            }
            for name, tools in by_set.items()
        },
    }
    rss4 = out["peak_rss_mb_4gib"]
    sets_with_peers = set(ratios)

    def at_least(value: Any, floor: float) -> bool | None:
        return None if value is None else value >= floor

    out["targets_met"] = {
        "throughput_ratio_vs_best_peer>=1.0_every_set": None if not ratios else min(ratios.values()) >= 1.0,
        "rclone_and_s5cmd_among_peers": {"rclone", "s5cmd"} <= set(peer_names),
        "sets_1gib_50mib_100kib_compared": {"1gib", "50mib", "100kib"} <= sets_with_peers,
        "link_utilization_1gib>=0.85": at_least(out["link_utilization_1gib"], 0.85),
        "link_utilization_50mib>=0.85": at_least(out["link_utilization_50mib"], 0.85),
        "peak_rss_mb_4gib<=300": None if rss4 is None else rss4 <= 300,
        "requests_per_small_object<=3": None
        if out["requests_per_small_object"] is None
        else out["requests_per_small_object"] <= 3,
        "usd_per_tb_50mib<=0.40": None if out["usd_per_tb_50mib"] is None else out["usd_per_tb_50mib"] <= 0.40,
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
    ok = "ok" if _ok(row) else f"FAILED {row['verified']['bad']} {row['errors']}"
    return (
        f"{row['mib_s']} MiB/s, {row['objects_per_s']} obj/s, {row['seconds']} s, rss {row['peak_rss_mb']} MB, "
        f"cpu {row['client_cpu_s']} s, {row['requests_per_object']} req/obj "
        f"(+{row['staging_requests_per_object']} staging), server busy {row['server_busy']:.0%}, "
        f"${row['usd_per_tb']}/TB, verify {ok}"
    )


HEADER = (
    f"{'set':<7} {'tool':<8} {'config':<18} {'MiB/s':>7} {'obj/s':>7} {'RSS MB':>7} {'req/obj':>8} "
    f"{'CPU s':>6} {'srv %':>6} {'$/TB':>7}  ok"
)


def format_report(result: dict[str, Any]) -> str:
    a = result["assumptions"]
    model = S3Model(**{k: v for k, v in a.get("s3_model", {}).items() if k in S3Model.__dataclass_fields__})
    lines: list[str] = []
    for figure, title in (
        (MODELLED, f"modelled S3: {model.describe()}"),
        (LOOPBACK, "loopback S3 (no latency, no caps: bound by the server's and the tools' CPU)"),
    ):
        rows = [r for r in result["rows"] if r.get("figure", MODELLED) == figure]
        if not rows:
            continue
        lines += [title, HEADER, "-" * len(HEADER)]
        current = None
        for row in rows:
            if current is not None and row["set"] != current:
                lines.append("")
            current = row["set"]
            lines.append(_table_line(row))
        lines.append("")
    summary = result.get("summary") or {}
    native = summary.get("native_client_by_set") or {}
    if native and not model.is_loopback:
        lines.append(
            "is the server the limit? a native client (s5cmd, Go, download-all then upload-all) against the same"
            f" server and model (link {model.link_mibps:g} MiB/s per direction):"
        )
        for set_name, entry in native.items():
            lines.append(
                f"  {set_name:<7} download {entry['download_mib_s']:.1f} MiB/s"
                f" ({entry['download_mib_s'] / model.link_mibps:.0%} of the link),"
                f" upload {entry['upload_mib_s']:.1f} MiB/s ({entry['upload_mib_s'] / model.link_mibps:.0%})"
            )
        lines.append(f"  the server's busiest run used {summary.get('server_busy_max', 0):.0%} of its core")
        lines.append("")
    if result.get("tried"):
        lines.append("peer configurations tried (modelled S3, one run each; the fastest is repeated above):")
        for row in result["tried"]:
            phases = row.get("phases") or []
            extra = ""
            if len(phases) == 2:
                extra = f"  (download {phases[0]['seconds']:.2f} s, upload {phases[1]['seconds']:.2f} s)"
            lines.append(
                f"  {row['set']:<7} {row['tool']:<7} {row['config']:<14} {row['mib_s']:>8.1f} MiB/s"
                f" {row['objects_per_s']:>7.1f} obj/s  {'ok' if row['ok'] else 'FAILED'}  {row['command']}{extra}"
            )
        lines.append("")
    if result["sweep"]:
        lines += ["sweep (teacopy, 1gib set): part size x in-flight parts", HEADER, "-" * len(HEADER)]
        for row in result["sweep"]:
            lines.append(_table_line({**row, "config": f"{row['part_size_mib']}M x {row['inflight_parts']}"}))
        lines.append("")
    lines.append("requests counted per tool (source | destination | staging), per set:")
    for row in result["rows"]:
        r = row["requests"]
        lines.append(
            f"  {row['set']:<7} {row.get('figure', ''):<9} {row['tool']:<8}"
            f" {_ops(r['source'])} | {_ops(r['dest'])} | {_ops(r['staging'])}"
        )
    m, p = a["compute"], a["prices"]
    lines += [
        "",
        "assumptions:",
        f"  S3 model: {model.describe()}; the server answers the data path itself (bench/fastpath.py) on"
        " moto's storage, on its own core",
        "  CPU: every tool (teacopy included) runs under `taskset -c "
        f"{TOOLS_CPUS}` (one core: a 1,769 MB Lambda), the server under `taskset -c {SERVER_CPUS}`"
        if a.get("cpus")
        else "  CPU: not pinned (--no-pin)",
        f"  throughput = set bytes / wall clock of the copy only; median of {a['repeat']} run(s) for teacopy and"
        f" each peer's chosen configuration (runs over {REPEAT_LIMIT_S:.0f} s are not repeated); {a['peers']}",
        "  peak RSS = ru_maxrss of the copying process (teacopy: max per worker; s5cmd pipes and the CLI pipe:"
        " the processes of concurrent pipelines added); CPU s = user + system seconds of the tool's processes;"
        " srv % = the server's CPU seconds / wall clock (its one core: below ~80 % it is not the limit)",
        "  req/obj = all requests counted on the source + destination buckets / objects (teacopy's result log"
        " in the staging bucket is priced too)",
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
    ok = "yes" if _ok(row) else "NO"
    return (
        f"{row['set']:<7} {row['tool']:<8} {str(row.get('config', ''))[:18]:<18} {row['mib_s']:>7.1f}"
        f" {row.get('objects_per_s', 0):>7.1f} {row['peak_rss_mb']:>7.0f} {row['requests_per_object']:>8.2f}"
        f" {row['client_cpu_s']:>6.1f} {row.get('server_busy', 0):>6.0%} {row['usd_per_tb']:>7.3f}  {ok}"
        + (f"  runs {row['mib_s_runs']}" if len(row.get("mib_s_runs", [])) > 1 else "")
    )
