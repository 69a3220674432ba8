"""USD cost model: counted S3 requests at list prices + modelled Lambda time + Step Functions transitions,
plus (for estimates) data transfer to another region and a month of storage.

One pricing function, ``estimate``, serves both ``make bench`` (requests counted by the server) and
``teacopy estimate`` (requests modelled from the object sizes and the deployed settings): a bench figure
and an estimate of the same objects differ only by how the requests were obtained.

Everything is per set, then also scaled to one TB (10^12 bytes) and to one million objects of that
set's shape. The same compute and orchestration model is applied to every tool, so tools differ
only by the requests they were counted making.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bench.s3ops import price_class
from stacks.config import TeacopyConfig


def _deployed(name: str) -> int:
    """A setting's default as the stack deploys it (stacks/config.py): the model prices what is deployed."""
    value = TeacopyConfig.__dataclass_fields__[name].default
    assert isinstance(value, int)
    return value


# The CopyBatch memory the stack deploys by default (cdk.json may override it): what the model prices.
DEPLOYED_COPY_MEMORY_MB: int = _deployed("copy_memory_mb")

MIB = 1024**2
TB = 10**12
GB = 1024**3  # AWS bills data transfer and storage per "GB" of 2^30 bytes


@dataclass(frozen=True)
class Prices:
    """us-west-2 list prices (research.md, "AWS limits and prices"; AWS price pages for the rest)."""

    s3_put_per_1000: float = 0.005  # PUT, COPY, POST, LIST (CreateMultipartUpload, UploadPart, Complete, List*)
    s3_get_per_1000: float = 0.0004  # GET, HEAD and all other requests (DELETE and abort are free)
    lambda_arm64_per_gb_s: float = 0.0000133334
    sfn_standard_per_1000_transitions: float = 0.025
    inter_region_transfer_per_gb: float = 0.02  # data transfer from us-west-2 to another AWS region
    s3_standard_per_gb_month: float = 0.023  # S3 Standard storage, first 50 TB/month
    # what a deployed stack costs per month while no job runs (README "What it costs while idle")
    secret_per_month: float = 0.40  # Secrets Manager, per secret
    kms_key_per_month: float = 1.00  # a customer managed KMS key
    dashboard_per_month: float = 3.00  # a CloudWatch dashboard (the first 3 of an account are free)
    alarm_per_month: float = 0.10  # a standard-resolution CloudWatch alarm (the first 10 are free)


@dataclass(frozen=True)
class ComputeModel:
    """How Lambda seconds and state transitions are modelled (stated assumptions, printed with the table)."""

    lambda_memory_mb: int = DEPLOYED_COPY_MEMORY_MB  # what the stack deploys (stacks/config.py default)
    network_mib_s: float = 75.0  # per-function baseline after the burst (Bodner et al. 2025)
    floor_ms_per_object: float = 50.0  # HEAD + GET + PUT round trips in-region, not overlapped
    transitions_per_batch: float = 6.0  # map iteration start + CopyBatch task + choice/pass states
    batch_max_objects: int = _deployed("batch_max_objects")  # the Plan's batch bounds as deployed
    batch_max_bytes: int = _deployed("batch_max_bytes")

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
    transfer_bytes: int = 0,
    batches: float | None = None,
) -> dict[str, Any]:
    """Cost of one copy of ``objects`` objects / ``total_bytes`` bytes, and scaled per TB / per 1M objects.

    ``transfer_bytes``: bytes that leave the source region (destination buckets in another region).
    ``batches``: how many batches (map children) the copy takes; default: the model's batching of
    objects of the mean size.
    """
    prices = prices or Prices()
    requests = {k: data_requests.get(k, 0) + staging_requests.get(k, 0) for k in ("put", "get", "free")}
    s3_usd = requests["put"] * prices.s3_put_per_1000 / 1000 + requests["get"] * prices.s3_get_per_1000 / 1000
    seconds = model.lambda_seconds(total_bytes, objects)
    lambda_usd = seconds * model.lambda_memory_mb / 1024 * prices.lambda_arm64_per_gb_s
    if batches is None:
        batches = objects / model.objects_per_batch(total_bytes / max(1, objects))
    sfn_usd = batches * model.transitions_per_batch * prices.sfn_standard_per_1000_transitions / 1000
    transfer_usd = transfer_bytes / GB * prices.inter_region_transfer_per_gb
    total = s3_usd + lambda_usd + sfn_usd + transfer_usd
    parts = {"s3_requests": s3_usd, "lambda": lambda_usd, "step_functions": sfn_usd}
    if transfer_bytes:
        parts["data_transfer"] = transfer_usd
    per_tb = TB / total_bytes if total_bytes else 0.0
    per_million = 1_000_000 / objects if objects else 0.0
    return {
        "usd": round(total, 6),
        "breakdown_usd": {name: round(usd, 6) for name, usd in parts.items()},
        "usd_per_tb": round(total * per_tb, 4),
        "usd_per_million_objects": round(total * per_million, 2),
        "breakdown_usd_per_tb": {name: round(usd * per_tb, 4) for name, usd in parts.items()},
        "lambda_seconds_modelled": round(seconds, 3),
    }


def storage_per_month(total_bytes: int, prices: Prices | None = None) -> float:
    """A month of S3 Standard storage for ``total_bytes`` (first-tier price)."""
    return total_bytes / GB * (prices or Prices()).s3_standard_per_gb_month


# What a deployed stack's resources cost per month while no job runs; everything else (Lambda, Step Functions,
# S3 requests, EventBridge Scheduler, SQS, logs ingested, DynamoDB on demand) is paid per use, and the staging
# bucket holds only reports that expire after staging_retention_days.
IDLE_RESOURCES = {
    "AWS::SecretsManager::Secret": "secret_per_month",
    "AWS::CloudWatch::Dashboard": "dashboard_per_month",
    "AWS::CloudWatch::Alarm": "alarm_per_month",
    "AWS::KMS::Key": "kms_key_per_month",
}


def idle_per_month(resource_types: Iterable[str], prices: Prices | None = None) -> dict[str, float]:
    """USD per month by resource type for a template's resources (``Resources[*].Type``), and ``total``."""
    prices = prices or Prices()
    counts = Counter(kind for kind in resource_types if kind in IDLE_RESOURCES)
    out = {kind: round(n * getattr(prices, IDLE_RESOURCES[kind]), 2) for kind, n in sorted(counts.items())}
    out["total"] = round(sum(out.values()), 2)
    return out


def assumptions(model: ComputeModel, prices: Prices | None = None) -> dict[str, Any]:
    return {"prices": asdict(prices or Prices()), "compute": asdict(model), "tb_bytes": TB}
