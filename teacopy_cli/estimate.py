"""Cost and duration estimate of a job, from its object sizes where known.

Prices and the compute model (Lambda seconds per byte and per object, Step Functions transitions per
batch) are the benchmark's: ``bench/cost.py`` (one model for measured and estimated runs). What this
module adds is the request count of teacopy's copy path for a given size distribution:

- per object: a source GetObject, a destination check (HeadObject/conditional GET, GET class), and one
  PutObject below the multipart threshold, else CreateMultipartUpload + one UploadPart per part +
  CompleteMultipartUpload (PUT class);
- per batch (staging bucket): a ListObjectsV2 of its result files (resume), a result file every
  FLUSH_EVERY_OBJECTS objects (PutObject), the map's read of the staged manifest.

Duration: the modelled Lambda seconds spread over min(max_concurrency, batches) workers, never less than
the longest batch, plus a fixed start-up (Plan, FetchCredentials, map start). A lower bound when TEA or
S3 throttle; rough for a handful of objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import cost

MIB = 1024**2
FLUSH_EVERY_OBJECTS = 25  # copy_engine.FLUSH_EVERY_OBJECTS
STARTUP_SECONDS = 15.0
TEA_CREDENTIAL_SECONDS = 3600
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CopyShape:
    """The stack settings that change requests and time (cdk.json ``teacopy``; TeacopyConfig defaults)."""

    part_size: int = 16 * MIB
    multipart_threshold: int = 16 * MIB
    batch_max_objects: int = 100
    batch_max_bytes: int = 8 * 1024 * MIB
    max_concurrency: int = 40
    copy_memory_mb: int = 1024

    @classmethod
    def from_cdk_json(cls, path: Path = REPO / "cdk.json") -> CopyShape:
        try:
            raw = json.loads(path.read_text(encoding="utf-8")).get("context", {}).get("teacopy", {})
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()

        def number(name: str, default: int, scale: int = 1) -> int:
            value = raw.get(name)
            return value * scale if isinstance(value, int) and not isinstance(value, bool) else default

        base = cls()
        return cls(
            part_size=number("part_size_mb", base.part_size, MIB),
            multipart_threshold=number("multipart_threshold_mb", base.multipart_threshold, MIB),
            batch_max_objects=number("batch_max_objects", base.batch_max_objects),
            batch_max_bytes=number("batch_max_bytes", base.batch_max_bytes),
            max_concurrency=number("max_concurrency", base.max_concurrency),
            copy_memory_mb=number("copy_memory_mb", base.copy_memory_mb),
        )


def batches_of(sizes: Sequence[int], shape: CopyShape) -> list[tuple[int, int]]:
    """(objects, bytes) per batch, batched like the Plan step (greedy by count and by bytes)."""
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


def request_counts(sizes: Sequence[int], shape: CopyShape) -> tuple[dict[str, int], dict[str, int]]:
    """(data requests, staging requests) by price class ``put``/``get``/``free``."""
    data = {"put": 0, "get": 0, "free": 0}
    for size in sizes:
        data["get"] += 2  # source GetObject + destination check
        if size < shape.multipart_threshold:
            data["put"] += 1
        else:
            data["put"] += 2 + math.ceil(size / shape.part_size)
    batches = batches_of(sizes, shape)
    staging = {"put": 0, "get": 1, "free": 0}  # the map reads the staged manifest once
    for objects, _ in batches:
        staging["put"] += 1 + math.ceil(objects / FLUSH_EVERY_OBJECTS)  # LIST (PUT class) + result files
    return data, staging


def estimate(
    sizes: Sequence[int | None],
    shape: CopyShape,
    *,
    assume_size: int | None = None,
    model: cost.ComputeModel | None = None,
    prices: cost.Prices | None = None,
) -> dict[str, Any]:
    """The estimate for objects of the given sizes (None: unknown, replaced by ``assume_size`` or the mean)."""
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
    data, staging = request_counts(filled, shape)
    result: dict[str, Any] = {
        "objects": objects,
        "bytes": total_bytes,
        "sizes_known": len(known),
        "assumed_size": fill if unknown else None,
        "batches": len(batches_of(filled, shape)),
        "requests": {"data": data, "staging": staging},
    }
    if objects == 0:
        return {**result, "usd": 0.0, "breakdown_usd": {}, "seconds": 0.0, "tea_requests": 0}
    priced = cost.estimate(
        data_requests=data,
        staging_requests=staging,
        objects=objects,
        total_bytes=total_bytes,
        model=model,
        prices=prices,
    )
    if total_bytes:
        scale = total_bytes / cost.TB
        usd = priced["usd_per_tb"] * scale
        breakdown = {k: round(v * scale, 4) for k, v in priced["breakdown_usd_per_tb"].items()}
    else:
        usd = priced["usd_per_million_objects"] * objects / 1_000_000
        breakdown = {}
    lambda_seconds = model.lambda_seconds(total_bytes, objects)
    batches = batches_of(filled, shape)
    workers = max(1, min(shape.max_concurrency, len(batches)))
    longest = max(model.lambda_seconds(b, n) for n, b in batches)
    seconds = STARTUP_SECONDS + max(lambda_seconds / workers, longest)
    return {
        **result,
        "usd": round(usd, 4),
        "breakdown_usd": breakdown,
        "usd_per_tb": priced["usd_per_tb"],
        "lambda_seconds": round(lambda_seconds, 1),
        "workers": workers,
        "seconds": round(seconds, 1),
        "tea_requests": 1 + int(seconds // (TEA_CREDENTIAL_SECONDS - 300)),
        "assumptions": {**cost.assumptions(model, prices), "shape": asdict(shape)},
    }
