"""Cost and duration estimate of a job, from its object sizes where known.

Prices and the pricing function are the benchmark's (``bench/cost.py``: ``cost.estimate`` prices the
requests ``make bench`` counts and the requests modelled here alike). The settings are the ones the
stack deploys: ``stacks.config.TeacopyConfig`` read from cdk.json (its defaults where cdk.json is
silent), so part size, single-PUT threshold, batch bounds, concurrency and memory exist only there.

What this module adds is the request count of teacopy's copy path for a size distribution, for a first
copy into an empty destination prefix (a rerun adds a HEAD per object that exists):

- per object: a source GetObject (GET class), then one PutObject below the multipart threshold, else
  CreateMultipartUpload + one UploadPart per part + CompleteMultipartUpload (PUT class);
- per batch: one ListObjectsV2 of the destination (which keys exist; PUT class); on the staging bucket
  a listing of its result files and of its upload checkpoints (PUT class) and a result file every
  FLUSH_EVERY_OBJECTS objects or FLUSH_EVERY_SECONDS of copying, whichever comes first (PUT class);
- per run: the map reads the staged manifest, Summarize lists and reads every result file.

Duration: the modelled Lambda seconds spread over min(max_concurrency, batches) workers, never less than
the longest batch, plus a fixed start-up (Plan, FetchCredentials, map start). A lower bound when TEA or
S3 throttle; rough for a handful of objects.

Data transfer is priced when the destination region differs from the source region (``source_region``);
storage is a month of S3 Standard for the bytes copied, shown apart from the one-time copy cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import cost
from lambdas.copying.engine import part_size_for
from lambdas.copying.results import FLUSH_EVERY_OBJECTS, FLUSH_EVERY_SECONDS
from lambdas.s3.limits import MAX_PUT_BYTES, MIB
from stacks.config import ConfigError, TeacopyConfig

STARTUP_SECONDS = 15.0
TEA_CREDENTIAL_SECONDS = 3600  # every TEA /s3credentials answer is a 1-hour STS session
REPO = Path(__file__).resolve().parents[1]
CDK_JSON = REPO / "cdk.json"


def deployed_config(path: Path = CDK_JSON) -> TeacopyConfig:
    """The stack's configuration as ``cdk synth`` reads it: cdk.json ``context.teacopy`` (ConfigError if invalid)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    context = document.get("context") if isinstance(document, dict) else None
    raw = context.get("teacopy") if isinstance(context, dict) else None
    return TeacopyConfig.from_context(raw)


@dataclass(frozen=True)
class CopyShape:
    """The stack settings that change requests, time and transfer (from ``TeacopyConfig``: one source)."""

    part_size: int
    multipart_threshold: int
    batch_max_objects: int
    batch_max_bytes: int
    max_concurrency: int
    copy_memory_mb: int
    safety_margin_seconds: int
    source_region: str

    @classmethod
    def from_config(cls, config: TeacopyConfig) -> CopyShape:
        return cls(
            part_size=config.part_size_mb * MIB,
            multipart_threshold=config.multipart_threshold_mb * MIB,
            batch_max_objects=config.batch_max_objects,
            batch_max_bytes=config.batch_max_bytes,
            max_concurrency=config.max_concurrency,
            copy_memory_mb=config.copy_memory_mb,
            safety_margin_seconds=config.safety_margin_seconds,
            source_region=config.source_region,
        )

    @classmethod
    def from_cdk_json(cls, path: Path = CDK_JSON) -> CopyShape:
        return cls.from_config(deployed_config(path))


def batches_of(sizes: Sequence[int], shape: CopyShape) -> list[tuple[int, int]]:
    """(objects, bytes) per batch: the Plan's greedy rule by count and known bytes (``staged.Batcher``).

    Batcher also bounds a batch's JSON size (128 KiB); with keys unknown here that bound is left out
    (it only matters for keys longer than ~1 KiB). tests/unit/test_estimate.py compares the two.
    """
    out: list[tuple[int, int]] = []
    count = total = 0
    for size in sizes:
        if count and (count >= shape.batch_max_objects or total + size > shape.batch_max_bytes):
            out.append((count, total))
            count = total = 0
        count += 1
        total += size
    if count:
        out.append((count, total))
    return out


def object_put_requests(size: int, shape: CopyShape) -> int:
    """PUT-class requests that write one object of ``size`` bytes (as ``lambdas.copying.engine`` does)."""
    if size < min(shape.multipart_threshold, MAX_PUT_BYTES):
        return 1
    return 2 + math.ceil(size / part_size_for(size, shape.part_size))


def request_counts(
    sizes: Sequence[int], shape: CopyShape, model: cost.ComputeModel | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """(data requests, staging requests) by price class ``put``/``get``/``free``."""
    model = model or cost.ComputeModel(lambda_memory_mb=shape.copy_memory_mb)
    data = {"put": 0, "get": 0, "free": 0}
    put_by_size: dict[int, int] = {}
    for size in sizes:
        data["get"] += 1  # source GetObject
        if size not in put_by_size:
            put_by_size[size] = object_put_requests(size, shape)
        data["put"] += put_by_size[size]
    batches = batches_of(sizes, shape)
    staging = {"put": 0, "get": 1, "free": 0}  # the map reads the staged manifest once
    for objects, size in batches:
        data["put"] += 1  # ListObjectsV2 of the destination keys
        by_time = math.ceil(model.lambda_seconds(size, objects) / FLUSH_EVERY_SECONDS)
        flushes = min(objects, max(math.ceil(objects / FLUSH_EVERY_OBJECTS), by_time))
        staging["put"] += 2 + flushes  # list results + list checkpoints + result files
        staging["get"] += flushes  # Summarize reads every result file
    staging["put"] += 1  # Summarize lists the result files
    return data, staging


def estimate(
    sizes: Sequence[int | None],
    shape: CopyShape,
    *,
    assume_size: int | None = None,
    dest_region: str | None = None,
    model: cost.ComputeModel | None = None,
    prices: cost.Prices | None = None,
) -> dict[str, Any]:
    """The estimate for objects of the given sizes (None: unknown, replaced by ``assume_size`` or the mean).

    ``dest_region``: where the destination bucket is (default: the source region, no transfer charge).
    """
    known = [s for s in sizes if s is not None]
    unknown = len(sizes) - len(known)
    if unknown and assume_size is None and not known:
        raise ValueError(
            f"the sizes of the {unknown} objects are unknown: pass --object-size, or run a dry run "
            "(teacopy start --dry-run ...) and estimate from it (teacopy estimate --execution <name>)"
        )
    fill = assume_size if assume_size is not None else (round(sum(known) / len(known)) if known else 0)
    filled = [s if s is not None else fill for s in sizes]
    objects, total_bytes = len(filled), sum(filled)
    model = replace(
        model or cost.ComputeModel(),
        lambda_memory_mb=shape.copy_memory_mb,
        batch_max_objects=shape.batch_max_objects,
        batch_max_bytes=shape.batch_max_bytes,
    )
    prices = prices or cost.Prices()
    destination_region = dest_region or shape.source_region
    cross_region = destination_region != shape.source_region
    batches = batches_of(filled, shape)
    data, staging = request_counts(filled, shape, model)
    result: dict[str, Any] = {
        "objects": objects,
        "bytes": total_bytes,
        "sizes_known": len(known),
        "assumed_size": fill if unknown else None,
        "batches": len(batches),
        "requests": {"data": data, "staging": staging},
        "source_region": shape.source_region,
        "destination_region": destination_region,
    }
    if objects == 0:
        return {
            **result,
            "usd": 0.0,
            "breakdown_usd": {},
            "storage_usd_per_month": 0.0,
            "seconds": 0.0,
            "tea_requests": 0,
        }
    priced = cost.estimate(
        data_requests=data,
        staging_requests=staging,
        objects=objects,
        total_bytes=total_bytes,
        model=model,
        prices=prices,
        transfer_bytes=total_bytes if cross_region else 0,
        batches=len(batches),
    )
    lambda_seconds = model.lambda_seconds(total_bytes, objects)
    workers = max(1, min(shape.max_concurrency, len(batches)))
    longest = max(model.lambda_seconds(b, n) for n, b in batches)
    seconds = STARTUP_SECONDS + max(lambda_seconds / workers, longest)
    credential_seconds = TEA_CREDENTIAL_SECONDS - shape.safety_margin_seconds
    return {
        **result,
        "usd": round(priced["usd"], 4),
        "breakdown_usd": {name: round(usd, 4) for name, usd in priced["breakdown_usd"].items()},
        "usd_per_tb": priced["usd_per_tb"],
        "storage_usd_per_month": round(cost.storage_per_month(total_bytes, prices), 4),
        "lambda_seconds": round(lambda_seconds, 1),
        "workers": workers,
        "seconds": round(seconds, 1),
        "tea_requests": 1 + int(seconds // credential_seconds),
        "assumptions": {**cost.assumptions(model, prices), "shape": asdict(shape)},
    }


def copied_sizes(rows: Sequence[Mapping[str, Any]], *, dry_run: bool) -> list[int | None]:
    """The sizes of what a run copied (a dry run: what it would copy), from its report.csv rows."""
    status = "would_copy" if dry_run else "copied"
    return [int(row.get("bytes") or 0) for row in rows if row.get("status") == status]


def run_cost(
    rows: Sequence[Mapping[str, Any]], *, dry_run: bool, shape: CopyShape | None = None, dest_region: str | None = None
) -> dict[str, Any]:
    """The estimate of a run's copies (the HTML report's cost): ``estimate`` of the objects it copied."""
    return estimate(copied_sizes(rows, dry_run=dry_run), shape or CopyShape.from_cdk_json(), dest_region=dest_region)
