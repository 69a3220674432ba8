"""``python -m bench``: run the benchmark, print the table, and as the LAST line one JSON object.

Examples::

    python -m bench                                  # all sets: 1 GiB, 20 x 50 MiB, 1000 x 100 KiB, 4 GiB
    python -m bench --quick                          # MiB-sized sets, ~2 minutes
    python -m bench --sets 100kib --tools teacopy,s5cmd --repeat 1 --peer-configs s5cmd=staged-w256
    python -m bench --first-byte-ms 40 --link-mibps 150  # another S3 model
    python -m bench --loopback                       # only the zero-latency loopback figure
    python -m bench --stock-complete                 # moto's own CompleteMultipartUpload for every set
    python -m bench --sets 1gib --tools teacopy --sweep
    python -m bench --part-size 32MiB --inflight-parts 8
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench import cost
from bench.model import S3Model
from bench.runner import DEFAULT_AWS_CLI, MIB, REPO, SETS, TOOLS, Options, format_report, run_bench
from bench.server import add_model_arguments, model_from_args

SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MIB, "mb": MIB, "mib": MIB}
UNITS.update({"g": 1024**3, "gb": 1024**3, "gib": 1024**3})
SWEEP_PARTS = (8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB)
SWEEP_INFLIGHT = (2, 4, 8)


def parse_size(text: str) -> int:
    """``16MiB`` / ``16m`` / ``16777216`` -> bytes (binary units)."""
    match = SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16MiB)")
    return int(match.group(1)) * UNITS[(match.group(2) or "").lower()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="1gib,50mib,100kib,4gib", help=f"comma list of {', '.join(SETS)}")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every object size (e.g. 0.015625)")
    parser.add_argument("--count-scale", type=float, default=1.0, help="multiply every set's object count")
    parser.add_argument(
        "--quick", action="store_true", help="= --scale 1/64 --count-scale 0.1 --repeat 1 (MiB-sized sets)"
    )
    parser.add_argument("--workers", type=int, default=1, help="teacopy worker processes (one copy_batch each)")
    parser.add_argument("--part-size", type=parse_size, help="teacopy part size (default: the engine's)")
    parser.add_argument("--threshold", type=parse_size, help="teacopy multipart threshold (default: the engine's)")
    parser.add_argument("--inflight-parts", type=int, help="teacopy parts in flight per object")
    parser.add_argument("--object-concurrency", type=int, help="teacopy objects in flight per batch")
    parser.add_argument(
        "--repeat", type=int, help="runs per tool and set, the median is reported (default 3; 1 with --quick)"
    )
    parser.add_argument("--sweep", action="store_true", help="1gib set: part size 8/16/32/64 MiB x inflight 2/4/8")
    parser.add_argument(
        "--stock-complete",
        dest="lean_complete",
        action="store_false",
        help="run the 1gib/50mib/100kib sets on moto's stock CompleteMultipartUpload, which copies every part "
        "twice and re-reads the whole object for a FULL_OBJECT checksum (S3 combines part CRCs instead); "
        "by default every set uses the memory-bounded Complete that serves the object from its parts "
        "(same ETag, CRC and bytes; bench/server.py), for every tool alike",
    )
    add_model_arguments(parser)
    parser.add_argument("--loopback", action="store_true", help="no S3 model: only the zero-latency loopback figure")
    parser.add_argument(
        "--no-loopback-figure",
        dest="loopback_figure",
        action="store_false",
        help="skip the second figure (the same copies on the loopback server)",
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not confine the tools and the server to one core each"
    )
    parser.add_argument(
        "--peer-configs",
        default="",
        help="candidate configurations to try, e.g. rclone=t64+t128,s5cmd=staged-w256 (default: all; bench/peers.py)",
    )
    parser.add_argument(
        "--lambda-memory-mb",
        type=int,
        default=cost.DEPLOYED_COPY_MEMORY_MB,
        help="CopyBatch memory: priced in the cost model, and teacopy sizes its buffers from it (default: the stack's)",
    )
    parser.add_argument("--floor-ms", type=float, default=50.0, help="modelled Lambda milliseconds per object")
    parser.add_argument("--aws-cli", type=Path, default=DEFAULT_AWS_CLI, help="the aws executable (CLI v1)")
    parser.add_argument(
        "--max-cli-objects",
        type=int,
        default=20,
        help="the CLI pipe copies only the first N objects of a set (~1 s of process starts each; 0 = all)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench", help="results and logs")
    parser.add_argument("--tool-timeout", type=float, default=3600.0, help="seconds before a tool run is killed")
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    if any(t not in TOOLS for t in tools) or "teacopy" not in tools:
        raise SystemExit(f"--tools must include teacopy and only name {', '.join(TOOLS)}")
    peer_configs: dict[str, list[str]] = {}
    for item in filter(None, (p.strip() for p in args.peer_configs.split(","))):
        tool, _, labels = item.partition("=")
        peer_configs[tool.strip()] = [label for label in labels.split("+") if label]
    scale, count_scale = (1 / 64, 0.1) if args.quick else (args.scale, args.count_scale)
    sets = [SETS[n].scaled(scale, count_scale) for n in names]
    settings: dict[str, int] = {}
    for attr, value in (
        ("PART_SIZE_BYTES", args.part_size),
        ("MULTIPART_THRESHOLD_BYTES", args.threshold),
        ("INFLIGHT_PARTS", args.inflight_parts),
        ("OBJECT_CONCURRENCY", args.object_concurrency),
    ):
        if value is not None:
            settings[attr] = value
    sweep = [(p, i) for p in SWEEP_PARTS for i in SWEEP_INFLIGHT] if args.sweep else []
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    return Options(
        sets=sets,
        tools=tools,
        workers=args.workers,
        settings=settings,
        sweep=sweep,
        aws_cli=args.aws_cli,
        model=cost.ComputeModel(lambda_memory_mb=args.lambda_memory_mb, floor_ms_per_object=args.floor_ms),
        out_dir=args.out,
        tool_timeout_s=args.tool_timeout,
        max_cli_objects=args.max_cli_objects or None,
        lean_complete=args.lean_complete,
        s3_model=S3Model.loopback() if args.loopback else model_from_args(args),
        loopback=args.loopback_figure,
        pin=args.pin,
        peer_configs=peer_configs,
        repeat=max(1, args.repeat if args.repeat is not None else (1 if args.quick else 3)),
    )


def main(argv: list[str] | None = None) -> int:
    options = options_from_args(build_parser().parse_args(argv))
    result = run_bench(options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / "latest.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(format_report(result))
    print(f"full results: {options.out_dir / 'latest.json'}")
    last = {**result["summary"], "uptime": result["uptime"], "teacopy_worker_processes": options.workers}
    print(json.dumps(last, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
