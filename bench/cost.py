"""The bench's USD cost model: the core's (``lambdas.reporting.cost``: prices, pricing function, request model),
with the compute model's memory and batch bounds defaulting to what the stack deploys, and the pricing of
requests the bench's S3 server counted (``requests_by_class``).

``estimate`` (the core's ``price``) serves ``make bench`` (requests counted by the server); ``teacopy estimate``
and Summarize price requests modelled from the object sizes with the same function, so a bench figure and an
estimate of the same objects differ only by how the requests were obtained.

Everything is per set, then also scaled to one TB (10^12 bytes) and to one million objects of that
set's shape. The same compute and orchestration model is applied to every tool, so tools differ
only by the requests they were counted making.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.s3ops import price_class
from lambdas.reporting import cost as core
from lambdas.reporting.cost import TB, Prices, assumptions, idle_per_month, storage_per_month
from lambdas.reporting.cost import price as estimate
from stacks.config import TeacopyConfig

__all__ = [
    "DEPLOYED_COPY_MEMORY_MB",
    "TB",
    "ComputeModel",
    "Prices",
    "assumptions",
    "estimate",
    "idle_per_month",
    "requests_by_class",
    "storage_per_month",
]


def _deployed(name: str) -> int:
    """A setting's default as the stack deploys it (stacks/config.py): the model prices what is deployed."""
    value = TeacopyConfig.__dataclass_fields__[name].default
    assert isinstance(value, int)
    return value


# The CopyBatch memory the stack deploys by default (cdk.json may override it): what the model prices.
DEPLOYED_COPY_MEMORY_MB: int = _deployed("copy_memory_mb")


@dataclass(frozen=True)
class ComputeModel(core.ComputeModel):
    """The core's compute model with the stack's default CopyBatch memory and batch bounds."""

    lambda_memory_mb: int = DEPLOYED_COPY_MEMORY_MB
    batch_max_objects: int = _deployed("batch_max_objects")
    batch_max_bytes: int = _deployed("batch_max_bytes")


def requests_by_class(counts: dict[str, dict[str, dict[str, Any]]], buckets: list[str]) -> dict[str, int]:
    """{"put": n, "get": n, "free": n} over the given buckets of a counts snapshot."""
    out = dict.fromkeys(core.PRICE_CLASSES, 0)
    for bucket in buckets:
        for operation, entry in counts.get(bucket, {}).items():
            out[price_class(operation)] += int(entry["n"])
    return out
