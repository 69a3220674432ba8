"""The USD cost model of a copy: the one place for the prices and the pricing functions.

S3 requests by price class at list prices, modelled Lambda time (GB-seconds), Step Functions transitions, data
transfer when the destination is in another region than the source, and a month of S3 Standard storage. Three
users, one model:

- Summarize prices the run it summarizes (``RequestTally`` fed with each copied object; ``run_cost``): the
  report's ``cost``, shown on report.html (``lambdas.reporting.render``);
- ``teacopy estimate`` (``teacopy_cli.estimate``) prices a job from its object sizes, or a run from its
  report.csv rows, through the same ``RequestTally`` and ``run_cost`` (it adds a duration);
- ``make bench`` (``bench/cost.py`` re-exports this module) prices the requests its S3 server counted with
  ``price``, the function ``run_cost`` uses.

The request pattern is the copy engine's (``lambdas.copying``) for a first copy into an empty destination prefix:

- per copied object: a source GetObject (GET class), then one PutObject below the multipart threshold, else
  CreateMultipartUpload + one UploadPart per part + CompleteMultipartUpload (PUT class);
- per skipped object (it exists in the destination): one HeadObject (GET class), which the overwrite policy
  needs to compare it; a copied object that replaced an existing one made one too, not counted here;
- per batch (the Plan's greedy batching of the copied objects by count and bytes): one ListObjectsV2 of the
  destination (PUT class); on the staging bucket a listing of its result files and of its upload checkpoints
  (PUT class) and a result file every FLUSH_EVERY_OBJECTS objects or FLUSH_EVERY_SECONDS of copying, whichever
  comes first (PUT class), which Summarize reads (GET class);
- per run: the map reads the staged manifest, Summarize lists the result files.

Lambda seconds: bytes at ``network_mib_s`` plus ``floor_ms_per_object`` per object, at the CopyBatch memory;
transitions: ``transitions_per_batch`` per batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas.contracts.models import COPIED, SKIPPED, WOULD_COPY, WOULD_SKIP
from lambdas.contracts.units import MIB
from lambdas.copying.engine import part_size_for
from lambdas.copying.results import FLUSH_EVERY_OBJECTS, FLUSH_EVERY_SECONDS
from lambdas.s3.limits import MAX_PUT_BYTES

TB = 10**12
GB = 1024**3  # AWS bills data transfer and storage per "GB" of 2^30 bytes
PRICE_CLASSES = ("put", "get", "free")


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
class CopyShape:
    """The deployed settings that change a copy's requests and cost. From the stack's configuration
    (``teacopy_cli.estimate.shape_of``: stacks/config.py, cdk.json) or, in Summarize, from its environment
    (``SummarySettings``: the stack passes the same configuration)."""

    part_size: int
    multipart_threshold: int
    batch_max_objects: int
    batch_max_bytes: int
    copy_memory_mb: int
    source_region: str


@dataclass(frozen=True)
class ComputeModel:
    """How Lambda seconds and state transitions are modelled (stated assumptions, printed with the bench's table).

    ``lambda_memory_mb`` and the batch bounds are the deployed ones (``for_shape``); the bench's ``ComputeModel``
    (bench/cost.py) defaults them to the stack's defaults."""

    lambda_memory_mb: int
    batch_max_objects: int
    batch_max_bytes: int
    network_mib_s: float = 75.0  # per-function baseline after the burst (Bodner et al. 2025)
    floor_ms_per_object: float = 50.0  # HEAD + GET + PUT round trips in-region, not overlapped
    transitions_per_batch: float = 6.0  # map iteration start + CopyBatch task + choice/pass states

    @classmethod
    def for_shape(cls, shape: CopyShape) -> ComputeModel:
        return cls(
            lambda_memory_mb=shape.copy_memory_mb,
            batch_max_objects=shape.batch_max_objects,
            batch_max_bytes=shape.batch_max_bytes,
        )

    def objects_per_batch(self, object_size: float) -> float:
        by_bytes = self.batch_max_bytes // max(1, int(object_size)) if object_size > 0 else self.batch_max_objects
        return float(max(1, min(self.batch_max_objects, by_bytes)))

    def lambda_seconds(self, total_bytes: int, objects: int) -> float:
        return total_bytes / (self.network_mib_s * MIB) + objects * self.floor_ms_per_object / 1000


def price(
    *,
    data_requests: Mapping[str, int],
    staging_requests: Mapping[str, int],
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
    requests = {k: data_requests.get(k, 0) + staging_requests.get(k, 0) for k in PRICE_CLASSES}
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


# --- the requests of teacopy's copy path --------------------------------------------------------------------


def object_put_requests(size: int, shape: CopyShape) -> int:
    """PUT-class requests that write one object of ``size`` bytes (as ``lambdas.copying`` does)."""
    if size < min(shape.multipart_threshold, MAX_PUT_BYTES):
        return 1
    return 2 + math.ceil(size / part_size_for(size, shape.part_size))


def _classes() -> dict[str, int]:
    return dict.fromkeys(PRICE_CLASSES, 0)


@dataclass
class RequestTally:
    """The requests, bytes and batches of a copy, counted object by object in the run's order (bounded: a few
    numbers whatever the number of objects; ``state``/``from_state`` carry it across Summarize invocations).

    Copied objects are batched as the Plan batches (``planning.staged.Batcher``'s rule by count and known bytes;
    its 128 KiB JSON bound is left out: it only matters for keys longer than ~1 KiB)."""

    objects: int = 0  # copied objects
    bytes: int = 0
    skipped: int = 0
    batches: int = 0  # closed batches
    data: dict[str, int] = field(default_factory=_classes)
    staging: dict[str, int] = field(default_factory=lambda: {**_classes(), "get": 1})  # the map reads the manifest
    batch_objects: int = 0  # the open batch
    batch_bytes: int = 0
    longest_batch_seconds: float = 0.0

    def add_copied(self, size: int, shape: CopyShape, model: ComputeModel) -> None:
        if self.batch_objects and (
            self.batch_objects >= shape.batch_max_objects or self.batch_bytes + size > shape.batch_max_bytes
        ):
            self._close_batch(model)
        self.batch_objects += 1
        self.batch_bytes += size
        self.objects += 1
        self.bytes += size
        self.data["get"] += 1  # source GetObject
        self.data["put"] += object_put_requests(size, shape)

    def add_skipped(self) -> None:
        self.skipped += 1
        self.data["get"] += 1  # HeadObject of the destination

    def add_rows(self, rows: Iterable[Mapping[str, Any]], shape: CopyShape, model: ComputeModel) -> None:
        """Objects' outcomes (report.csv rows: ``status``, ``bytes``) in the run's order: a dry run's would-be
        copies and skips count as what the real run would do; failed and not attempted objects are not priced."""
        for row in rows:
            status = row.get("status")
            if status in (COPIED, WOULD_COPY):
                self.add_copied(int(row.get("bytes") or 0), shape, model)
            elif status in (SKIPPED, WOULD_SKIP):
                self.add_skipped()

    def _close_batch(self, model: ComputeModel) -> None:
        objects, size = self.batch_objects, self.batch_bytes
        seconds = model.lambda_seconds(size, objects)
        flushes = min(objects, max(math.ceil(objects / FLUSH_EVERY_OBJECTS), math.ceil(seconds / FLUSH_EVERY_SECONDS)))
        self.data["put"] += 1  # ListObjectsV2 of the destination keys
        self.staging["put"] += 2 + flushes  # list results + list checkpoints + result files
        self.staging["get"] += flushes  # Summarize reads every result file
        self.longest_batch_seconds = max(self.longest_batch_seconds, seconds)
        self.batches += 1
        self.batch_objects = self.batch_bytes = 0

    def finished(self, model: ComputeModel) -> RequestTally:
        """A copy with the open batch closed and Summarize's listing counted (this tally goes on unchanged)."""
        done = RequestTally.from_state(self.state())
        if done.batch_objects:
            done._close_batch(model)
        done.staging["put"] += 1  # Summarize lists the result files
        return done

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RequestTally:
        values = dict(state)
        values["data"], values["staging"] = dict(values["data"]), dict(values["staging"])
        return cls(**values)


def tally_sizes(sizes: Iterable[int], shape: CopyShape, model: ComputeModel) -> RequestTally:
    """The tally of copying objects of these sizes (in this order), finished."""
    tally = RequestTally()
    for size in sizes:
        tally.add_copied(size, shape, model)
    return tally.finished(model)


def run_cost(
    tally: RequestTally,
    shape: CopyShape,
    *,
    model: ComputeModel | None = None,
    prices: Prices | None = None,
    dest_region: str | None = None,
) -> dict[str, Any]:
    """The estimated cost of a copy (a finished ``tally``): USD in total and by part, a month of storage of the
    bytes copied, the requests counted; ``dest_region`` (default: the source region) prices data transfer.
    What Summarize puts in the report (``lambdas.contracts.report.CostEstimate``) and ``teacopy estimate`` shows."""
    model = model or ComputeModel.for_shape(shape)
    prices = prices or Prices()
    destination = dest_region or shape.source_region
    result: dict[str, Any] = {
        "objects": tally.objects,
        "bytes": tally.bytes,
        "skipped": tally.skipped,
        "batches": tally.batches,
        "requests": {"data": dict(tally.data), "staging": dict(tally.staging)},
        "source_region": shape.source_region,
        "destination_region": destination,
    }
    if tally.objects == 0 and tally.skipped == 0:
        return {**result, "usd": 0.0, "breakdown_usd": {}, "usd_per_tb": 0.0, "storage_usd_per_month": 0.0}
    priced = price(
        data_requests=tally.data,
        staging_requests=tally.staging,
        objects=tally.objects,
        total_bytes=tally.bytes,
        model=model,
        prices=prices,
        transfer_bytes=tally.bytes if destination != shape.source_region else 0,
        batches=tally.batches,
    )
    return {
        **result,
        "usd": round(priced["usd"], 4),
        "breakdown_usd": {name: round(usd, 4) for name, usd in priced["breakdown_usd"].items()},
        "usd_per_tb": priced["usd_per_tb"],
        "storage_usd_per_month": round(storage_per_month(tally.bytes, prices), 4),
    }
