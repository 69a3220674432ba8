"""Execution inputs: built from command-line flags or read from a file, validated like the Plan step does.

Validation is ``lambdas.planning.request.parse_request`` itself (the execution-input model, then the
deployment's checks) with the deployed Plan function's settings (allowed destinations, manifest buckets,
inline key limit): an input the CLI accepts is one Plan accepts, up to what only Plan can check (reading the
manifest, listing the prefix, querying CMR). ``check_shape`` runs the same code with the deployment-specific
rules opened up, so that a malformed input (a bucket name that is a URL, a manifest that is not an s3:// URL,
a missing source bucket) is refused before AWS is contacted, with the Plan step's message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import OVERWRITE_POLICIES, Destination
from lambdas.contracts.settings import PlanSettings
from lambdas.planning.request import JobRequest, parse_request

SHAPE_MAX_INLINE_KEYS = 1_000_000  # no deployment limit in a shape check (the input size limit still applies)


class InputError(ValueError):
    """The flags or the input file do not make an execution input (the message says why)."""


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a job (``start`` and ``estimate``)."""
    group = parser.add_argument_group("job input (or --input FILE)")
    group.add_argument("--input", metavar="FILE", help="execution input JSON file ('-' for stdin)")
    group.add_argument("--source-bucket", help="DAAC bucket (keys and prefix sources)")
    group.add_argument("--keys", nargs="+", metavar="KEY", help="source keys")
    group.add_argument("--keys-file", metavar="FILE", help="file with one source key per line")
    group.add_argument("--manifest", metavar="S3_URL", help="manifest in one of your buckets: s3://bucket/key")
    group.add_argument("--format", dest="manifest_format", help="manifest format: json, jsonl, csv, lines")
    group.add_argument("--prefix", help="copy every object under this prefix of --source-bucket")
    group.add_argument("--include", action="append", metavar="GLOB", help="only keys matching (repeatable)")
    group.add_argument("--exclude", action="append", metavar="GLOB", help="skip keys matching (repeatable)")
    group.add_argument("--cmr-collection", metavar="CONCEPT_ID", help="CMR collection concept id (C123-PROV)")
    group.add_argument("--cmr-short-name", help="CMR collection short name (with --cmr-version)")
    group.add_argument("--cmr-version", help="CMR collection version")
    group.add_argument("--temporal", metavar="START,END", help="CMR temporal range (ISO times; either may be empty)")
    group.add_argument("--bounding-box", metavar="W,S,E,N", help="CMR bounding box in degrees")
    group.add_argument("--dest-bucket", help="destination bucket (one of the stack's destinations)")
    group.add_argument("--dest-prefix", help="destination prefix")
    group.add_argument(
        "--key-mapping",
        metavar="MAPPING",
        help="keep | basename | strip_prefix:DIR/ | template:{collection}/{basename} (default keep)",
    )
    group.add_argument("--overwrite", choices=OVERWRITE_POLICIES)
    group.add_argument(
        "--dry-run", action="store_true", help="copy nothing: HEAD sources and destinations, report what would happen"
    )


def read_json_file(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from exc


def _key_mapping(value: str) -> Any:
    if value in ("keep", "basename"):
        return value
    mode, sep, rest = value.partition(":")
    if not sep or mode not in ("strip_prefix", "template"):
        raise InputError("--key-mapping: use keep, basename, strip_prefix:DIR/ or template:TEMPLATE")
    return {mode: rest}


def _cmr(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if args.cmr_collection:
        query["collection_concept_id"] = args.cmr_collection
    if args.cmr_short_name:
        query["short_name"] = args.cmr_short_name
    if args.cmr_version:
        query["version"] = args.cmr_version
    if args.temporal:
        start, sep, end = args.temporal.partition(",")
        if not sep:
            raise InputError("--temporal: START,END (either may be empty)")
        query["temporal"] = {k: v for k, v in (("start", start.strip()), ("end", end.strip())) if v}
    if args.bounding_box:
        try:
            query["bounding_box"] = [float(v) for v in args.bounding_box.split(",")]
        except ValueError as exc:
            raise InputError("--bounding-box: four numbers W,S,E,N") from exc
    return query


def input_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The execution input: --input FILE (flags --dry-run/--overwrite/--dest-* override it) or the flags."""
    if args.input:
        job = read_json_file(args.input)
        if not isinstance(job, dict):
            raise InputError(f"{args.input}: the execution input must be a JSON object")
    else:
        source: dict[str, Any] = {}
        if args.source_bucket:
            source["bucket"] = args.source_bucket
        keys = list(args.keys or [])
        if args.keys_file:
            try:
                lines = Path(args.keys_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise InputError(f"cannot read {args.keys_file}: {exc.strerror}") from exc
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if keys:
            source["keys"] = keys
        if args.manifest:
            source["manifest"] = args.manifest
        if args.manifest_format:
            source["format"] = args.manifest_format
        if args.prefix is not None:
            source["prefix"] = args.prefix
        cmr = _cmr(args)
        if cmr:
            source["cmr"] = cmr
        if args.include:
            source["include"] = args.include
        if args.exclude:
            source["exclude"] = args.exclude
        if not source:
            raise InputError("describe the source: --keys/--keys-file, --manifest, --prefix or --cmr-collection")
        if not args.dest_bucket:
            raise InputError("--dest-bucket is required (or give --input FILE)")
        job = {"source": source, "destination": {"bucket": args.dest_bucket}}
    destination = job.setdefault("destination", {})
    if isinstance(destination, dict):
        if args.dest_bucket:
            destination["bucket"] = args.dest_bucket
        if args.dest_prefix is not None:
            destination["prefix"] = args.dest_prefix
        if args.key_mapping:
            destination["key_mapping"] = _key_mapping(args.key_mapping)
    if args.overwrite or args.dry_run:
        options = job.setdefault("options", {})
        if isinstance(options, dict):
            if args.overwrite:
                options["overwrite"] = args.overwrite
            if args.dry_run:
                options["dry_run"] = True
    return job


def validate(job: Any, settings: PlanSettings) -> JobRequest:
    """Raise InvalidInput exactly as the Plan step would (``field: rule``); the parsed request."""
    return parse_request(job, settings)


def check_shape(job: Any) -> JobRequest:
    """The Plan step's rules that need no deployment settings: any destination bucket and manifest bucket
    are allowed here and there is no inline key limit (``validate`` with the deployed settings checks those)."""
    destination = job.get("destination") if isinstance(job, dict) else None
    source = job.get("source") if isinstance(job, dict) else None
    bucket = destination.get("bucket") if isinstance(destination, dict) else None
    manifest = source.get("manifest") if isinstance(source, dict) else None
    manifest_bucket = (
        manifest[5:].partition("/")[0] if isinstance(manifest, str) and manifest.startswith("s3://") else ""
    )
    settings = PlanSettings(
        staging_bucket="shape-check",
        destinations=(Destination(bucket=bucket, prefix=""),) if isinstance(bucket, str) else (),
        manifest_buckets=(manifest_bucket,) if manifest_bucket else (),
        batch_max_objects=1,
        batch_max_bytes=1,
        max_inline_keys=SHAPE_MAX_INLINE_KEYS,
    )
    return parse_request(job, settings)


__all__ = [
    "InputError",
    "InvalidInput",
    "add_input_arguments",
    "check_shape",
    "input_from_args",
    "read_json_file",
    "validate",
]
