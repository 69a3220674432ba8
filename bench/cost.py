"""USD cost model: counted S3 requests at list prices + modelled Lambda time + Step Functions transitions.

Everything is per set, then scaled to one TB (10^12 bytes) and to one million objects of that
set's shape. The same compute and orchestration model is applied to every tool, so tools differ
only by the requests they were counted making.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.s3ops import price_class
from stacks.config import TeacopyConfig

# The CopyBatch memory the stack deploys by default (cdk.json may override it): what the model prices.
DEPLOYED_COPY_MEMORY_MB: int = TeacopyConfig.__dataclass_fields__["copy_memory_mb"].default  # type: ignore[assignment]

MIB = 1024**2
TB = 10**12


@dataclass(frozen=True)
class Prices:
    """us-west-2 list prices (research.md, "AWS limits and prices")."""

    s3_put_per_1000: float = 0.005  # PUT, COPY, POST, LIST (CreateMultipartUpload, UploadPart, Complete, List*)
    s3_get_per_1000: float = 0.0004  # GET, HEAD and all other requests (DELETE and abort are free)
    lambda_arm64_per_gb_s: float = 0.0000133334
    sfn_standard_per_1000_transitions: float = 0.025


@dataclass(frozen=True)
class ComputeModel:
    """How Lambda seconds and state transitions are modelled (stated assumptions, printed with the table)."""

    lambda_memory_mb: int = DEPLOYED_COPY_MEMORY_MB  # what the stack deploys (stacks/config.py default)
    network_mib_s: float = 75.0  # per-function baseline after the burst (Bodner et al. 2025)
    floor_ms_per_object: float = 50.0  # HEAD + GET + PUT round trips in-region, not overlapped
    transitions_per_batch: float = 6.0  # map iteration start + CopyBatch task + choice/pass states
    batch_max_objects: int = 100  # the Plan's defaults (PlanSettings)
    batch_max_bytes: int = 8 * 1024**3

    def objects_per_batch(self, object_size: float) -> float:
        by_bytes = self.batch_max_bytes // max(1, int(object_size)) if object_size > 0 else self.batch_max_objects
        return float(max(1, min(self.batch_max_objects, by_bytes)))

    def lambda_seconds(self, total_bytes: int, objects: int) -> float:
        return total_bytes / (self.network_mib_s * MIB) + objects * self.floor_ms_per_object / 1000


def requests_by_class(counts: dict[str, dict[str, dict[str, Any]]], buckets: list[str]) -> dict[str, int]:
    """{"put": n, "get": n, "free": n} over the given buckets of a counts snapshot."""
    out = {"put": 0, "get": 0, "free": 0}
    for bucket in buckets:
        for operation, entry in counts.get(bucket, {}).items():
            out[price_class(operation)] += int(entry["n"])
    return out


def estimate(
    *,
    data_requests: dict[str, int],
    staging_requests: dict[str, int],
    objects: int,
    total_bytes: int,
    model: ComputeModel,
    prices: Prices | None = None,
) -> dict[str, Any]:
    """Cost of one measured copy of ``objects`` objects / ``total_bytes`` bytes, and scaled per TB / per 1M objects."""
    prices = prices or Prices()
    requests = {k: data_requests.get(k, 0) + staging_requests.get(k, 0) for k in ("put", "get", "free")}
    s3_usd = requests["put"] * prices.s3_put_per_1000 / 1000 + requests["get"] * prices.s3_get_per_1000 / 1000
    seconds = model.lambda_seconds(total_bytes, objects)
    lambda_usd = seconds * model.lambda_memory_mb / 1024 * prices.lambda_arm64_per_gb_s
    batches = objects / model.objects_per_batch(total_bytes / max(1, objects))
    sfn_usd = batches * model.transitions_per_batch * prices.sfn_standard_per_1000_transitions / 1000
    total = s3_usd + lambda_usd + sfn_usd
    per_tb = TB / total_bytes if total_bytes else 0.0
    per_million = 1_000_000 / objects if objects else 0.0
    return {
        "usd_per_tb": round(total * per_tb, 4),
        "usd_per_million_objects": round(total * per_million, 2),
        "breakdown_usd_per_tb": {
            "s3_requests": round(s3_usd * per_tb, 4),
            "lambda": round(lambda_usd * per_tb, 4),
            "step_functions": round(sfn_usd * per_tb, 4),
        },
        "lambda_seconds_modelled": round(seconds, 3),
    }


def assumptions(model: ComputeModel, prices: Prices | None = None) -> dict[str, Any]:
    return {"prices": asdict(prices or Prices()), "compute": asdict(model), "tb_bytes": TB}
