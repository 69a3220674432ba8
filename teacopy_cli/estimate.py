"""Cost and duration estimate of a job, from its object sizes where known.

The cost model is the core's (``lambdas.reporting.cost``: the prices, the pricing function and the request
count of teacopy's copy path, which Summarize and ``make bench`` use too). The settings are the ones the stack
deploys: ``stacks.config.TeacopyConfig`` read from cdk.json (its defaults where cdk.json is silent), so part
size, single-PUT threshold, batch bounds, concurrency and memory exist only there.

What this module adds is reading those settings, filling in unknown sizes, and the duration: the modelled
Lambda seconds spread over min(max_concurrency, batches) workers, never less than the longest batch, plus a
fixed start-up (Plan, FetchCredentials, map start). A lower bound when TEA or S3 throttle; rough for a handful
of objects.

Data transfer is priced when the destination region differs from the source region (``source_region``);
storage is a month of S3 Standard for the bytes copied, shown apart from the one-time copy cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lambdas.contracts.models import COPIED, SKIPPED, WOULD_COPY, WOULD_SKIP
from lambdas.reporting import cost
from lambdas.reporting.cost import object_put_requests
from lambdas.s3.limits import MIB
from stacks.config import ConfigError, TeacopyConfig

__all__ = ["CopyShape", "batches_of", "deployed_config", "estimate", "object_put_requests", "request_counts"]

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
class CopyShape(cost.CopyShape):
    """The stack settings that change requests, time and transfer (from ``TeacopyConfig``: one source): the
    core's ``CopyShape`` plus what the duration needs."""

    max_concurrency: int
    safety_margin_seconds: int

    @classmethod
    def from_config(cls, config: TeacopyConfig) -> CopyShape:
        return cls(
            part_size=config.part_size_mb * MIB,
            multipart_threshold=config.multipart_threshold_mb * MIB,
            batch_max_objects=config.batch_max_objects,
            batch_max_bytes=config.batch_max_bytes,
            copy_memory_mb=config.copy_memory_mb,
            source_region=config.source_region,
            max_concurrency=config.max_concurrency,
            safety_margin_seconds=config.safety_margin_seconds,
        )

    @classmethod
    def from_cdk_json(cls, path: Path = CDK_JSON) -> CopyShape:
        return cls.from_config(deployed_config(path))


def batches_of(sizes: Sequence[int], shape: cost.CopyShape) -> list[tuple[int, int]]:
    """(objects, bytes) per batch: the Plan's greedy rule by count and known bytes (``staged.Batcher``), as the
    core's ``RequestTally`` applies it. tests/integration/test_estimate.py compares the two."""
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


def request_counts(
    sizes: Sequence[int], shape: cost.CopyShape, model: cost.ComputeModel | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """(data requests, staging requests) by price class ``put``/``get``/``free`` (the core's request model)."""
    tally = cost.tally_sizes(sizes, shape, model or cost.ComputeModel.for_shape(shape))
    return tally.data, tally.staging


def estimate(
    sizes: Sequence[int | None],
    shape: CopyShape,
    *,
    assume_size: int | None = None,
    dest_region: str | None = None,
    skipped: int = 0,
    model: cost.ComputeModel | None = None,
    prices: cost.Prices | None = None,
) -> dict[str, Any]:
    """The estimate for objects of the given sizes (None: unknown, replaced by ``assume_size`` or the mean).

    ``dest_region``: where the destination bucket is (default: the source region, no transfer charge).
    ``skipped``: objects found in the destination and not copied (one HeadObject each).
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
    model = replace(
        model or cost.ComputeModel.for_shape(shape),
        lambda_memory_mb=shape.copy_memory_mb,
        batch_max_objects=shape.batch_max_objects,
        batch_max_bytes=shape.batch_max_bytes,
    )
    prices = prices or cost.Prices()
    tally = cost.tally_sizes(filled, shape, model)
    for _ in range(skipped):
        tally.add_skipped()
    priced = cost.run_cost(tally, shape, model=model, prices=prices, dest_region=dest_region)
    result: dict[str, Any] = {**priced, "sizes_known": len(known), "assumed_size": fill if unknown else None}
    if tally.objects == 0:
        return {**result, "seconds": 0.0, "tea_requests": 0}
    lambda_seconds = model.lambda_seconds(tally.bytes, tally.objects)
    workers = max(1, min(shape.max_concurrency, tally.batches))
    seconds = STARTUP_SECONDS + max(lambda_seconds / workers, tally.longest_batch_seconds)
    credential_seconds = TEA_CREDENTIAL_SECONDS - shape.safety_margin_seconds
    return {
        **result,
        "lambda_seconds": round(lambda_seconds, 1),
        "workers": workers,
        "seconds": round(seconds, 1),
        "tea_requests": 1 + int(seconds // credential_seconds),
        "assumptions": {**cost.assumptions(model, prices), "shape": asdict(shape)},
    }


def copied_sizes(rows: Sequence[Mapping[str, Any]], *, dry_run: bool) -> list[int | None]:
    """The sizes of what a run copied (a dry run: what it would copy), from its report.csv rows."""
    status = WOULD_COPY if dry_run else COPIED
    return [int(row.get("bytes") or 0) for row in rows if row.get("status") == status]


def run_cost(
    rows: Sequence[Mapping[str, Any]], *, dry_run: bool, shape: CopyShape | None = None, dest_region: str | None = None
) -> dict[str, Any]:
    """The estimate of a run's copies (the HTML report's cost): ``estimate`` of the objects it copied, in the
    run's order, and of those it skipped; for a run Summarize priced, the same figure as its report's ``cost``."""
    skipped = sum(1 for row in rows if row.get("status") == (WOULD_SKIP if dry_run else SKIPPED))
    return estimate(
        copied_sizes(rows, dry_run=dry_run),
        shape or CopyShape.from_cdk_json(),
        dest_region=dest_region,
        skipped=skipped,
    )
