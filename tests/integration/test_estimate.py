"""`teacopy estimate` and the bench's cost model are one model: the same pricing function (lambdas/reporting/cost.py,
which bench/cost.py re-exports), the settings the stack deploys (stacks/config.py defaults / cdk.json), and a
request count that matches what the bench's counting S3 server sees teacopy's copy engine make."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import cost
from bench.runner import MIB, Options, SetSpec, run_bench
from lambdas.contracts.models import ObjectSpec
from lambdas.planning.staged import batches_in_memory
from stacks.config import ConfigError, TeacopyConfig
from teacopy_cli.estimate import CopyShape, batches_of, deployed_config, estimate, object_put_requests, request_counts

MB = 1000**2


def test_the_shape_is_the_deployed_configuration() -> None:
    config = deployed_config()
    shape = CopyShape.from_config(config)
    assert shape.multipart_threshold == config.multipart_threshold_mb * MIB == 64 * MIB  # not a copy of 16 MiB
    assert shape.part_size == config.part_size_mb * MIB
    assert (shape.batch_max_objects, shape.batch_max_bytes) == (config.batch_max_objects, config.batch_max_bytes)
    assert (shape.max_concurrency, shape.copy_memory_mb) == (config.max_concurrency, config.copy_memory_mb)
    assert cost.ComputeModel().lambda_memory_mb == TeacopyConfig.__dataclass_fields__["copy_memory_mb"].default


def test_cdk_json_overrides_reach_the_estimate(tmp_path: Path) -> None:
    path = tmp_path / "cdk.json"
    context = {"tea_endpoint": "https://tea.example", "destinations": ["my-bucket"], "multipart_threshold_mb": 16}
    path.write_text(json.dumps({"context": {"teacopy": context}}))
    shape = CopyShape.from_cdk_json(path)
    assert shape.multipart_threshold == 16 * MIB
    # 50 MB in 16 MiB parts: create + 3 parts + complete
    assert object_put_requests(50 * MB, shape) == 5
    path.write_text(json.dumps({"context": {"teacopy": {**context, "part_size_mb": 1}}}))
    with pytest.raises(ConfigError, match=r"teacopy\.part_size_mb"):
        CopyShape.from_cdk_json(path)


def test_requests_per_object_follow_the_copy_engine() -> None:
    shape = CopyShape.from_config(deployed_config())
    assert object_put_requests(50 * MB, shape) == 1  # below the 64 MiB threshold: one PutObject
    assert object_put_requests(64 * MIB, shape) == 2 + 4
    # 200 GiB: parts grow to 21 MiB so that there are at most 10,000 of them (copying.engine.part_size_for)
    assert object_put_requests(200 * 1024 * MIB, shape) == 2 + -(-200 * 1024 // 21)
    data, staging = request_counts([50 * MB] * 250, shape)
    # + one LIST of the destination per batch: 250 x 50 MB = 12.5 GB, two batches of at most 8 GiB
    assert data == {"put": 250 + 2, "get": 250, "free": 0}
    assert staging["put"] > 2 * 2 and staging["get"] > 1


def test_batches_are_the_plans() -> None:
    rng = random.Random(14)
    sizes = [rng.choice([1, 10 * MIB, 700 * MIB, 3 * 1024 * MIB]) for _ in range(900)]
    for max_objects, max_bytes in ((100, 8 * 1024 * MIB), (7, 1024 * MIB), (1000, 5 * MIB)):
        shape = replace(
            CopyShape.from_config(deployed_config()), batch_max_objects=max_objects, batch_max_bytes=max_bytes
        )
        staged = batches_in_memory(
            (ObjectSpec(f"k{i}", size) for i, size in enumerate(sizes)), "bucket", max_objects, max_bytes
        )
        assert batches_of(sizes, shape) == [(len(b.objects), sum(o.size or 0 for o in b.objects)) for b in staged]


def test_transfer_to_another_region_and_a_month_of_storage() -> None:
    shape = CopyShape.from_config(deployed_config())
    same = estimate([50 * MB] * 1000, shape)
    other = estimate([50 * MB] * 1000, shape, dest_region="eu-west-1")
    assert same["destination_region"] == shape.source_region == "us-west-2"
    assert "data_transfer" not in same["breakdown_usd"]
    transfer = 1000 * 50 * MB / 1024**3 * cost.Prices().inter_region_transfer_per_gb
    assert other["breakdown_usd"]["data_transfer"] == pytest.approx(transfer, abs=1e-4)
    assert other["usd"] == pytest.approx(same["usd"] + transfer, abs=1e-3)
    assert same["storage_usd_per_month"] == pytest.approx(1000 * 50 * MB / 1024**3 * 0.023, abs=1e-4)


def test_one_million_objects_of_50_mb() -> None:
    result = estimate([50 * MB] * 1_000_000, CopyShape.from_config(deployed_config()))
    per_batch = 8 * 1024 * MIB // (50 * MB)  # batch_max_bytes bounds a batch of 50 MB objects: 171 of them
    assert result["requests"]["data"]["put"] == 1_000_000 + -(-1_000_000 // per_batch)  # a PUT each, a LIST a batch
    assert 15 < result["usd"] < 18  # about $16 (issue 14: it said $37 with a 16 MiB threshold)


@pytest.mark.slow
def test_estimate_agrees_with_the_bench_cost_model(tmp_path: Path) -> None:
    """The bench counts teacopy's requests on its S3 server; priced by the bench's model, they give the
    estimate's figure for 1,000,000 objects of 50 MB within 5 %.

    The counted set is 100 small objects (one batch, as deployed) and one multipart object; objects below
    the multipart threshold cost the same requests whatever their size, so the small set's requests per
    object are those of 50 MB objects. Bench and estimate run with the same 5 MiB part size and threshold
    here, so the multipart object (11 MiB: 3 parts) is small enough to copy in a test.
    """
    part = 5 * MIB
    options = Options(
        sets=[SetSpec("small", 100, 16 * 1024), SetSpec("large", 1, 11 * MIB, lean_server=True)],
        tools=("teacopy",),
        settings={"PART_SIZE_BYTES": part, "MULTIPART_THRESHOLD_BYTES": part},
        out_dir=tmp_path,
        tool_timeout_s=180,
        progress=lambda _message: None,
    )
    rows = {row["set"]: row for row in run_bench(options)["rows"]}
    config = deployed_config()
    shape = replace(CopyShape.from_config(config), part_size=part, multipart_threshold=part)
    for name, spec in (("small", options.sets[0]), ("large", options.sets[1])):
        row = rows[name]
        assert row["verified"]["ok"] and row["errors"] == [], row
        modelled, _staging = request_counts([spec.size] * spec.count, shape)
        assert {k: modelled[k] for k in ("put", "get")} == {k: row["by_class"][k] for k in ("put", "get")}, name

    small = rows["small"]
    scale = 1_000_000 / small["objects"]
    model = cost.ComputeModel(
        lambda_memory_mb=config.copy_memory_mb,
        batch_max_objects=config.batch_max_objects,
        batch_max_bytes=config.batch_max_bytes,
    )
    bench_figure = cost.estimate(
        data_requests={k: round(v * scale) for k, v in small["by_class"].items()},
        staging_requests={k: round(v * scale) for k, v in small["staging_by_class"].items()},
        objects=1_000_000,
        total_bytes=1_000_000 * 50 * MB,
        model=model,
    )["usd"]
    estimated = estimate([50 * MB] * 1_000_000, CopyShape.from_config(config))["usd"]
    assert estimated == pytest.approx(bench_figure, rel=0.05), (estimated, bench_figure)


def test_a_run_is_priced_from_its_rows_as_summarize_prices_it() -> None:
    """``RequestTally.add_rows`` (Summarize) and ``run_cost`` (teacopy report --html, local runs) give one figure;
    a dry run's would-be copies and skips are priced as the real run's; failures are not priced."""
    from lambdas.reporting import cost as core
    from teacopy_cli.estimate import run_cost

    shape = CopyShape.from_config(deployed_config())
    sizes = [3 * MB, 200 * MB, 0, 70 * MB]
    real: list[dict[str, Any]] = [{"status": "copied", "bytes": s} for s in sizes] + [
        {"status": "skipped", "bytes": 0},
        {"status": "failed", "bytes": 0, "reason": "source NoSuchKey: x"},
    ]
    renamed = {"copied": "would_copy", "skipped": "would_skip"}
    dry = [{**row, "status": renamed.get(str(row["status"]), row["status"])} for row in real]
    model = core.ComputeModel.for_shape(shape)
    tally = core.RequestTally()
    tally.add_rows(real, shape, model)
    priced = core.run_cost(tally.finished(model), shape)
    assert priced["requests"]["data"] == {
        "put": 1 + (2 + 12) + 1 + (2 + 5) + 1,  # 200 MB in 16 MiB parts: 12 parts, 70 MB: 5 parts; one LIST
        "get": 4 + 1,  # a GET per copied object, a HEAD for the skipped one
        "free": 0,
    }
    assert {k: run_cost(real, dry_run=False, shape=shape)[k] for k in priced} == priced
    assert {k: run_cost(dry, dry_run=True, shape=shape)[k] for k in priced} == priced
