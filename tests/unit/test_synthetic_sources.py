"""The synthetic sources of `teacopy local --input` (teacopy_local/synthetic.py): for every documented
console example they make up exactly what the input names, in a form the Plan step's own code accepts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lambdas.contracts.models import Destination
from lambdas.contracts.settings import PlanSettings
from lambdas.planning.manifests import format_for, parse_manifest_stream
from lambdas.planning.request import JobRequest, parse_request
from teacopy_local.cmr_emulator import CmrEmulator
from teacopy_local.synthetic import (
    DEFAULT_SOURCE_BUCKET,
    SyntheticSourceError,
    body_of,
    build_world,
    sha256_of,
)

REPO = Path(__file__).resolve().parents[2]
CONSOLE = (REPO / "docs" / "console.md").read_text(encoding="utf-8")
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", CONSOLE, flags=re.DOTALL)]
SETTINGS = PlanSettings(
    staging_bucket="staging",
    destinations=(Destination("my-earthdata-copy", ""),),
    manifest_buckets=("my-earthdata-copy",),
    batch_max_objects=100,
    batch_max_bytes=8 * 1024**3,
    max_inline_keys=1000,
)


def request_of(job: dict[str, Any]) -> JobRequest:
    return parse_request(job, SETTINGS)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_console_example_gets_the_objects_it_names(index: int) -> None:
    request = request_of(EXAMPLES[index])
    world = build_world(request, count=9, sizes=[10, 20, 30], bucket_endpoints={"nsidc-bucket": "nsidc"})
    assert world.objects and not world.absent
    if request.keys is not None:
        assert set(world.objects) == {(request.source_bucket, spec.key) for spec in request.keys}
    if request.manifest is not None:
        (bucket, key), body = next(iter(world.manifests.items()))
        assert (bucket, key) == request.manifest
        entries = list(parse_manifest_stream([body.decode()], format_for(key, request.manifest_format)))
        assert len(entries) == 9
        if request.source_bucket is None:  # URLs over one bucket per configured DAAC
            assert {bucket for bucket, _ in world.objects} == {DEFAULT_SOURCE_BUCKET, "nsidc-bucket"}
        for entry in entries:  # sizes and checksums, where the format carries them, are the objects' own
            if entry.checksum is not None:
                bucket = entry.bucket or request.source_bucket or ""
                assert entry.checksum.value == sha256_of(bucket, entry.key, world.objects[(bucket, entry.key)])
    if request.prefix is not None:
        kept = [k for _, k in world.objects if request.key_filter.accepts(k[len(request.prefix) :])]
        assert len(kept) == 9 and world.filtered_out == len(world.objects) - 9 > 0
        assert all(key.startswith(request.prefix) for _, key in world.objects)
    if request.cmr is not None:
        assert len(world.granules) == 9 and all(request.key_filter.accepts(g.file[1]) for g in world.granules)


def test_cmr_granules_match_the_query_in_the_emulator() -> None:
    cmr_example = next(e for e in EXAMPLES if "cmr" in e["source"] and "temporal" in e["source"]["cmr"])
    world = build_world(request_of(cmr_example), count=6)
    emulator = CmrEmulator()
    world.seed_cmr(emulator, "http://127.0.0.1:1")
    query = cmr_example["source"]["cmr"]
    params = [
        ("collection_concept_id", query["collection_concept_id"]),
        ("temporal[]", f"{query['temporal']['start']},{query['temporal']['end']}"),
        ("bounding_box[]", ",".join(str(v) for v in query["bounding_box"])),
        ("page_size", "2000"),
    ]
    body, headers = emulator.search(params, None)
    assert headers["CMR-Hits"] == "6" and len(body["items"]) == 6
    since = next(e for e in EXAMPLES if "updated_since" in e["source"].get("cmr", {}))
    world = build_world(request_of(since), count=4)
    assert all(g.updated > datetime(2024, 6, 1, tzinfo=UTC) for g in world.granules)


def test_missing_objects_are_named_but_absent_and_bodies_are_stable() -> None:
    job = {"source": {"bucket": "b-b-b", "keys": ["a", "b", "c"]}, "destination": {"bucket": "my-earthdata-copy"}}
    world = build_world(request_of(job), sizes=[5], missing=2)
    assert list(world.objects) == [("b-b-b", "a")] and world.absent == [("b-b-b", "b"), ("b-b-b", "c")]
    assert body_of("b-b-b", "a", 5) == body_of("b-b-b", "a", 5) != body_of("b-b-b", "b", 5)
    assert "missing at the source" in world.description


def test_a_retry_manifest_is_used_as_given() -> None:
    url = "s3://my-earthdata-copy/teacopy-retries/r.json"
    given = json.dumps([{"url": "s3://x-daac/k1.nc", "size": 7}]).encode()
    job = {"source": {"manifest": url, "format": "json"}, "destination": {"bucket": "my-earthdata-copy"}}
    world = build_world(request_of(job), manifests={url: given})
    assert world.manifests == {("my-earthdata-copy", "teacopy-retries/r.json"): given}
    assert world.objects == {("x-daac", "k1.nc"): 7}


def test_patterns_no_name_can_pass_are_refused() -> None:
    job = {
        "source": {"bucket": "b-b-b", "prefix": "p/", "include": ["*.nc"], "exclude": ["*"]},
        "destination": {"bucket": "my-earthdata-copy"},
    }
    with pytest.raises(SyntheticSourceError, match="include/exclude"):
        build_world(request_of(job))
