"""`make demo` and `teacopy local`: run a teacopy job end to end on this machine.

Synthesized stack → local engine (moto + in-process Lambdas) → TEA emulator with short-lived
credentials → seed a source bucket → run → live progress → byte-for-byte verification → one JSON
summary as the last line of stdout. The run is kept in its run directory (``rundir.py``), where
``teacopy report|watch|retry-failed --local`` find it.

``--input FILE`` runs any execution input instead of the demo's job, with synthetic sources for what
it names (``runner.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lambdas.contracts import env_names

from .cmr_emulator import CmrEmulator, EmulatedFile
from .engine import LocalEngine, load_template
from .errors import LocalRunError
from .rundir import runs_dir
from .runner import (
    ProgressPrinter,
    plan_note,
    read_input,
    render_local_report,
    run_and_keep,
    run_input,
    run_rows,
    secrets_of,
    succeeded,
)
from .stack import current_template
from .synthetic import DEFAULT_COUNT
from .tea_emulator import TeaEmulator

__all__ = ["ProgressPrinter", "build_parser", "main", "plan_note", "run_demo", "secrets_of"]

REPO = Path(__file__).resolve().parents[1]
SOURCE_BUCKET = "podaac-demo-protected"
DEMO_TOKEN = "demo-edl-token-" + "x" * 24
INLINE_KEYS = 500  # the demo switches to a manifest beyond this many keys
DEMO_OBJECTS = 150
DEMO_SIZES = [1024, 100 * 1024, 700 * 1024, 2 * 1024**2]
_UNITS = {"B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in {**_UNITS, "": 1}:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 512KiB, 3MiB")
    return int(float(match.group(1)) * _UNITS.get(match.group(2).upper(), 1))


def demo_keys(count: int) -> list[str]:
    names = ["granule", "Größe données", "温度 map", "with space", "plain"]
    return [f"demo/{2020 + i % 4}/{names[i % len(names)]} {i:05d}.nc" for i in range(count)]


def seed(
    engine: LocalEngine, keys: list[str], sizes: list[int], large: int, seed_value: int
) -> dict[str, tuple[int, str]]:
    """Put the objects into the source bucket; return key -> (size, sha256)."""
    s3 = engine.client("s3", region="us-west-2")
    rng = random.Random(seed_value)
    expected: dict[str, tuple[int, str]] = {}
    for index, key in enumerate(keys):
        size = large if (large and index == len(keys) // 2) else sizes[index % len(sizes)]
        body = rng.randbytes(size)
        s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
        expected[key] = (size, hashlib.sha256(body).hexdigest())
    return expected


def verify(engine: LocalEngine, bucket: str, prefix: str, expected: dict[str, tuple[int, str]]) -> int:
    """Count destination objects whose bytes hash exactly like their source."""
    s3 = engine.client("s3")
    good = 0
    for key, (size, digest) in expected.items():
        try:
            body = s3.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        if len(body) == size and hashlib.sha256(body).hexdigest() == digest:
            good += 1
    return good


SOURCE_MODES = ("keys", "manifest", "prefix", "cmr", "multi-daac")
# multi-daac: a second DAAC whose bucket is read with credentials from its own TEA (its own emulator)
SECOND_ENDPOINT = {"name": "nsidc", "endpoint": "https://data.nsidc.earthdatacloud.nasa.gov"}
SECOND_BUCKET = "nsidc-demo-protected"


def multi_daac_template() -> dict[str, Any]:
    """The stack of cdk.json plus a second TEA endpoint serving SECOND_BUCKET, synthesized in-process."""
    import os
    import tempfile

    from stacks.teacopy_stack import STACK_ID, build_app

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

    with tempfile.TemporaryDirectory(prefix="teacopy-demo-") as outdir:
        app = build_app(
            {"tea_endpoints": [{**SECOND_ENDPOINT, "buckets": [SECOND_BUCKET]}]}, outdir, cfn_validation=False
        )
        assembly = app.synth()
        return load_template(assembly.get_stack_by_name(STACK_ID).template_full_path)


def move_half_to_second_daac(engine: LocalEngine, keys: list[str]) -> list[str]:
    """Every other object lives in the second DAAC's bucket; returns the job's s3:// URLs."""
    s3 = engine.client("s3", region="us-west-2")
    urls = []
    for index, key in enumerate(keys):
        if index % 2:
            body = s3.get_object(Bucket=SOURCE_BUCKET, Key=key)["Body"].read()
            s3.put_object(Bucket=SECOND_BUCKET, Key=key, Body=body)
            s3.delete_object(Bucket=SOURCE_BUCKET, Key=key)
            urls.append(f"s3://{SECOND_BUCKET}/{key}")
        else:
            urls.append(f"s3://{SOURCE_BUCKET}/{key}")
    return urls


DEMO_PREFIX = "demo/"
CMR_PAGE_SIZE = 40  # small pages so the demo shows CMR paging (CMR itself allows 2000)


def seed_noise(engine: LocalEngine, keys: list[str]) -> tuple[list[str], list[str]]:
    """What a prefix listing finds besides the job's objects: (objects the include/exclude patterns leave out,
    folder markers, which listings skip)."""
    s3 = engine.client("s3", region="us-west-2")
    left_out = [f"{k}.md5" for k in keys[::10]] + [f"{DEMO_PREFIX}README.txt"]
    markers = [f"{DEMO_PREFIX}2020/"]
    for key in left_out:
        s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=b"not copied")
    for key in markers:
        s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=b"")
    return left_out, markers


def demo_source(
    mode: str,
    engine: LocalEngine,
    keys: list[str],
    expected: dict[str, tuple[int, str]],
    destination: str,
    cmr: CmrEmulator | None,
) -> tuple[dict[str, Any], str]:
    """The execution input's ``source`` for one mode (and a line describing it), after staging what it needs."""
    s3 = engine.client("s3")
    if mode == "manifest":
        lines = ["key,size,checksum,checksum_algorithm"]
        lines += [f'"{k}",{expected[k][0]},{expected[k][1]},SHA-256' for k in keys]
        s3.put_object(Bucket=destination, Key="manifests/demo.csv", Body="\n".join(lines).encode("utf-8"))
        return (
            {"bucket": SOURCE_BUCKET, "manifest": f"s3://{destination}/manifests/demo.csv"},
            "a CSV manifest in your bucket (size + SHA-256 per object, verified by the copy)",
        )
    if mode == "prefix":
        left_out, markers = seed_noise(engine, keys)
        md5 = sum(1 for key in left_out if key.endswith(".md5"))
        return (
            {"bucket": SOURCE_BUCKET, "prefix": DEMO_PREFIX, "include": ["*.nc", "*.txt"], "exclude": ["README*"]},
            f"a listing of s3://{SOURCE_BUCKET}/{DEMO_PREFIX} with TEA credentials: {len(keys)} objects to copy, "
            f"{len(left_out)} more that include/exclude leave out ({md5} .md5 files, "
            f"{len(left_out) - md5} README.txt) and {len(markers)} folder marker ({', '.join(markers)}) that "
            "listings skip",
        )
    if mode == "multi-daac":
        urls = move_half_to_second_daac(engine, keys)
        s3.put_object(Bucket=destination, Key="manifests/two-daacs.txt", Body="\n".join(urls).encode("utf-8"))
        return (
            {"manifest": f"s3://{destination}/manifests/two-daacs.txt"},
            f"a manifest of s3:// URLs in two DAACs' buckets ({SOURCE_BUCKET}, {SECOND_BUCKET}), "
            "each read with credentials from its own TEA endpoint",
        )
    if mode == "cmr":
        assert cmr is not None
        concept = cmr.add_collection("TEACOPY-DEMO-L4", "1.0")
        start = datetime(2024, 1, 1, tzinfo=UTC)
        for index, key in enumerate(keys):
            size, sha256 = expected[key]
            cmr.add_granule(
                concept,
                f"demo-granule-{index:05d}",
                [EmulatedFile(SOURCE_BUCKET, key, size, ("SHA-256", sha256))],
                begin=start + timedelta(hours=index),
            )
        cmr.throttle(times=1, retry_after=0.5, at_request=3)  # CMR asks us to slow down once (on page 2)
        return (
            {"cmr": {"collection_concept_id": concept, "temporal": {"start": "2024-01-01T00:00:00Z"}}},
            f"a CMR query ({len(keys)} granules, {CMR_PAGE_SIZE} per page, one 429; sizes and SHA-256 from UMM-G)",
        )
    if len(keys) > INLINE_KEYS:  # past what fits in an execution input: a manifest in your bucket
        s3.put_object(Bucket=destination, Key="manifests/demo.txt", Body="\n".join(keys).encode("utf-8"))
        return {"bucket": SOURCE_BUCKET, "manifest": f"s3://{destination}/manifests/demo.txt"}, "a key list manifest"
    return {"bucket": SOURCE_BUCKET, "keys": keys}, "inline keys"


def run_demo(args: argparse.Namespace, out: Any = sys.stdout, err: Any = sys.stderr) -> dict[str, Any]:
    keys = demo_keys(args.objects or DEMO_OBJECTS)
    mode = getattr(args, "source", None) or "keys"
    template = (
        multi_daac_template()
        if mode == "multi-daac"
        else current_template(args.template, note=lambda text: print(text, file=err, flush=True))
    )
    sizes = args.sizes or DEMO_SIZES

    # The first credentials are short-lived (as if fetched just before the job started), so that they
    # expire mid-run even on a fast machine; later ones live --credential-lifetime seconds.
    def after_issue(_issued: object) -> None:
        tea.set_lifetime(args.credential_lifetime)

    tea = TeaEmulator(lifetime_seconds=args.first_lifetime, valid_tokens={DEMO_TOKEN}, issue=after_issue)
    second_tea: TeaEmulator | None = None
    if mode == "multi-daac":

        def after_second_issue(_issued: object) -> None:
            assert second_tea is not None
            second_tea.set_lifetime(args.credential_lifetime)

        second_tea = TeaEmulator(
            lifetime_seconds=args.first_lifetime, valid_tokens={DEMO_TOKEN}, issue=after_second_issue
        )
    teas = [tea] if second_tea is None else [tea, second_tea]
    with contextlib.ExitStack() as stack:
        for emulator in teas:
            stack.enter_context(emulator)
        cmr = stack.enter_context(CmrEmulator()) if mode == "cmr" else None
        overrides = {
            env_names.TEA_ENDPOINT: tea.url,
            env_names.SAFETY_MARGIN_SECONDS: str(args.safety_margin),
        }
        if cmr is not None:
            overrides |= {env_names.CMR_URL: cmr.url, env_names.CMR_PAGE_SIZE: str(CMR_PAGE_SIZE)}
        with LocalEngine(
            template,
            tea=tea,
            edl_token=DEMO_TOKEN,
            source_buckets={SOURCE_BUCKET},
            env_overrides=overrides,
            extra_teas={} if second_tea is None else {str(SECOND_ENDPOINT["name"]): (second_tea, {SECOND_BUCKET})},
        ) as engine:
            expected = seed(engine, keys, sizes, args.large, args.seed)
            destination = engine.deployment.destination_buckets[0]
            prefix = "demo-copy/"
            source, described = demo_source(mode, engine, keys, expected, destination, cmr)
            job = {"source": source, "destination": {"bucket": destination, "prefix": prefix}}
            print(
                f"teacopy demo: {len(keys)} objects, {sum(s for s, _ in expected.values()) / 1024**2:.1f} MiB, "
                f"TEA credentials live {args.first_lifetime:g} s, then {args.credential_lifetime:g} s "
                f"(safety margin {args.safety_margin} s)",
                file=err,
            )
            if mode != "keys":
                print(f"source: {described}", file=err)
            printer = ProgressPrinter(err, len(keys))
            result, directory = run_and_keep(
                engine,
                job,
                args.name or f"demo-{int(time.time())}",
                timeout=args.timeout,
                on_progress=printer,
                root=runs_dir(args.runs_dir),
            )
            printer.close()
            if mode != "keys":
                print(f"plan: {plan_note(engine, result)}", file=err)
            verified = verify(engine, destination, prefix, expected)
            report = result.report or {}
            rows = run_rows(engine, result.execution_arn.rsplit(":", 1)[-1]) if report else []
            page = render_local_report(report, directory, result, verified, rows) if report else None
            secrets = [secret for emulator in teas for secret in secrets_of(emulator, DEMO_TOKEN)]
            leaks = engine.scan_for_secrets(secrets, [result.execution_arn])
            summary = {
                "objects": report.get("objects", len(keys)),
                "copied": report.get("copied", 0),
                "skipped": report.get("skipped", 0),
                "failed": report.get("failed", 0),
                "bytes": report.get("bytes", 0),
                "verified": verified,
                "tea_requests": report.get("tea_requests", sum(t.requests for t in teas)),
                "credential_refreshes": report.get("credential_refreshes", 0),
                "refresh_requests": report.get("refresh_requests", 0),
                "seconds": round(result.seconds, 2),
                "status": result.status,
                "expired_token_answers": engine.policy.expired_answers,
                "leaked_secrets": len(leaks),
                "report": str(page) if page is not None else None,
                "run_dir": str(directory),
            }
            if second_tea is not None:
                summary["tea_requests_by_endpoint"] = {"default": tea.requests, "nsidc": second_tea.requests}
                summary["foreign_key_denials"] = len(engine.policy.denied)
            if result.status != "SUCCEEDED":
                print(f"execution {result.status}: {result.error}: {result.cause}", file=err)
    print(json.dumps(summary), file=out)
    return summary


def build_parser(
    prog: str = "python -m teacopy_local.demo", parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser = parser_class(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input",
        metavar="FILE",
        help="run this execution input (a JSON file, '-' for stdin; e.g. one of docs/console.md) instead of the "
        "demo's job: the sources answer with synthetic objects for what it names",
    )
    parser.add_argument("--name", help="the run id (execution name; default demo-<time> / local-<time>)")
    parser.add_argument(
        "--template",
        help="synthesized template (default: cdk.out's when newer than cdk.json and the code, else the stack "
        "synthesized from cdk.json)",
    )
    parser.add_argument(
        "--objects",
        type=int,
        help=f"number of source objects (demo: default {DEMO_OBJECTS}; --input: objects made up for a manifest, "
        f"prefix or CMR query, default {DEFAULT_COUNT})",
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        help="comma-separated object sizes, cycled (default 1KiB,100KiB,700KiB,2MiB)",
    )
    parser.add_argument(
        "--large",
        type=parse_size,
        default=parse_size("80MiB"),
        help="demo: one object of this size (multipart); 0 for none",
    )
    parser.add_argument(
        "--missing",
        type=int,
        default=0,
        help="--input: leave the last N objects the input names out of the source (they fail: try retry-failed)",
    )
    parser.add_argument(
        "--runs-dir",
        help="keep the run under this directory (default artifacts/local-runs, or $TEACOPY_LOCAL_RUNS)",
    )
    parser.add_argument(
        "--first-lifetime", type=float, default=1.5, help="seconds the first credentials live (default 1.5)"
    )
    parser.add_argument(
        "--credential-lifetime", type=float, default=6.0, help="seconds later credentials live (default 6)"
    )
    parser.add_argument(
        "--safety-margin", type=int, default=1, help="seconds before expiry a worker refreshes (default 1)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--source",
        choices=SOURCE_MODES,
        help="how the job names its objects: inline keys (default), a CSV manifest with checksums, a prefix "
        "listing with include/exclude patterns, a CMR query served by the local CMR emulator, or a manifest "
        "spanning two DAACs, each with its own TEA endpoint (multi-daac)",
    )
    return parser


def run(args: argparse.Namespace, out: Any = sys.stdout, err: Any = sys.stderr) -> int:
    """The demo, or ``--input``; 0 when the run succeeded and every object was verified, else 1."""
    if args.objects is not None and args.objects < 1:
        raise LocalRunError("--objects must be at least 1")
    if args.missing < 0:
        raise LocalRunError("--missing must be 0 or more")
    if args.input is not None:
        if args.source is not None:
            raise LocalRunError("--source chooses one of the demo's jobs; with --input the input names the source")
        return 0 if succeeded(run_input(read_input(args.input), args, out=out, err=err)) else 1
    summary = run_demo(args, out=out, err=err)
    ok = summary["failed"] == 0 and summary["verified"] == summary["objects"] and summary["status"] == "SUCCEEDED"
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
