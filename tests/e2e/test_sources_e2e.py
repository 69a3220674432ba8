"""End to end, every source mode: the synthesized state machine in the local engine (moto), Lambdas
in-process, the TEA emulator and the CMR emulator on 127.0.0.1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.contracts import env_names
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile
from teacopy_local.demo import secrets_of
from teacopy_local.engine import LocalEngine, RunResult
from teacopy_local.tea_emulator import TeaEmulator

pytestmark = pytest.mark.e2e

SOURCE = "daac-e2e-protected"
PUBLIC = "daac-e2e-public"
TOKEN = "e2e-sources-token-0123456789abcdef"
DEST = "my-earthdata-copy"  # first destination of the test synth (tests/conftest.py)
MANIFESTS = "teacopy-manifests"  # the manifest bucket of the test synth


@contextmanager
def engine_for(synth: Any, env: dict[str, str] | None = None) -> Iterator[tuple[LocalEngine, TeaEmulator, CmrEmulator]]:
    with TeaEmulator(valid_tokens={TOKEN}) as tea, CmrEmulator() as cmr:
        overrides = {
            env_names.TEA_ENDPOINT: tea.url,
            env_names.SAFETY_MARGIN_SECONDS: "1",
            env_names.CMR_URL: cmr.url,
            env_names.CMR_PAGE_SIZE: "4",
            **(env or {}),
        }
        with LocalEngine(
            synth.template, tea=tea, edl_token=TOKEN, source_buckets={SOURCE, PUBLIC}, env_overrides=overrides
        ) as engine:
            engine.client("s3").create_bucket(Bucket=MANIFESTS)
            yield engine, tea, cmr


def seed(engine: LocalEngine, keys: list[str], bucket: str = SOURCE) -> dict[str, bytes]:
    s3 = engine.client("s3", region="us-west-2")
    rng = random.Random(len(keys))
    bodies = {}
    for key in keys:
        body = rng.randbytes(1024 + len(key))
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        bodies[key] = body
    return bodies


def dest_objects(engine: LocalEngine, prefix: str = "") -> dict[str, bytes]:
    s3 = engine.client("s3")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DEST, Prefix=prefix):
        for item in page.get("Contents", []):
            out[item["Key"]] = s3.get_object(Bucket=DEST, Key=item["Key"])["Body"].read()
    return out


def succeeded(result: RunResult, objects: int) -> dict[str, Any]:
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    out = result.output
    assert out is not None
    assert (out["objects"], out["copied"], out["failed"], out["not_attempted"]) == (objects, objects, 0, 0), out
    return out


def assert_no_secrets(engine: LocalEngine, tea: TeaEmulator, *results: RunResult) -> None:
    assert engine.scan_for_secrets(secrets_of(tea, TOKEN), [r.execution_arn for r in results]) == []


def put_manifest(engine: LocalEngine, key: str, body: str) -> str:
    engine.client("s3").put_object(Bucket=MANIFESTS, Key=key, Body=body.encode("utf-8"))
    return f"s3://{MANIFESTS}/{key}"


def test_csv_manifest_with_sizes_and_checksums(synth: Any) -> None:
    keys = [f"csv/é {i:02d}.nc" for i in range(9)]
    with engine_for(synth) as (engine, tea, _cmr):
        bodies = seed(engine, keys)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["key", "size", "checksum", "checksum_algorithm"])
        for index, key in enumerate(keys):
            if index % 2:
                algorithm, hexdigest = "SHA-256", hashlib.sha256(bodies[key]).hexdigest()
            else:
                algorithm, hexdigest = "MD5", hashlib.md5(bodies[key], usedforsecurity=False).hexdigest()
            writer.writerow([key, len(bodies[key]), hexdigest, algorithm])
        url = put_manifest(engine, "lists/granules.csv", buffer.getvalue())
        job = {"source": {"bucket": SOURCE, "manifest": url}, "destination": {"bucket": DEST, "prefix": "csv-copy/"}}
        result = engine.run(job, name="manifest-csv", timeout=120)
        succeeded(result, 9)
        assert dest_objects(engine, "csv-copy/") == {f"csv-copy/{k}": v for k, v in bodies.items()}
        assert_no_secrets(engine, tea, result)


def test_jsonl_manifest_of_urls_without_source_bucket(synth: Any) -> None:
    keys = [f"jsonl/{i}.h5" for i in range(6)]
    with engine_for(synth) as (engine, _tea, _cmr):
        bodies = seed(engine, keys)
        lines = [json.dumps({"url": f"s3://{SOURCE}/{k}", "size": len(bodies[k])}) for k in keys]
        url = put_manifest(engine, "lists/granules.jsonl", "\n".join(lines) + "\n")
        job = {"source": {"manifest": url, "exclude": ["*/5.h5"]}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="manifest-jsonl", timeout=120)
        succeeded(result, 5)
        assert dest_objects(engine) == {k: v for k, v in bodies.items() if k != "jsonl/5.h5"}


def test_prefix_listing_with_include_exclude(synth: Any) -> None:
    wanted = [f"MUR/2023/{m:02d}/sst-{m}.nc" for m in range(1, 11)]
    unwanted = ["MUR/2023/01/sst-1.nc.md5", "MUR/2023/README.txt", "MUR/2022/12/sst-12.nc", "MUR/2023/10/skip.nc"]
    with engine_for(synth, env={env_names.BATCH_MAX_OBJECTS: "3"}) as (engine, tea, _cmr):
        bodies = seed(engine, wanted + unwanted)
        job = {
            "source": {"bucket": SOURCE, "prefix": "MUR/2023/", "include": ["*.nc"], "exclude": ["*/skip*"]},
            "destination": {"bucket": DEST, "prefix": "mur/"},
        }
        result = engine.run(job, name="prefix", timeout=120)
        out = succeeded(result, 10)
        assert dest_objects(engine, "mur/") == {f"mur/{k}": bodies[k] for k in wanted}
        # Plan asked the Credentials function (TEA once); FetchCredentials then found them cached.
        assert tea.requests == 1 and out["tea_requests"] == 1
        assert engine.runtime.invocations["CredentialsFunction"] == 2
        plan = json.loads(
            engine.client("s3")
            .get_object(Bucket=engine.deployment.staging_bucket, Key="runs/prefix/plan.json")["Body"]
            .read()
        )
        assert plan["source"]["mode"] == "prefix" and plan["batches"] == 4
        assert (plan["source_stats"]["listed"], plan["source_stats"]["kept"]) == (13, 10)
        assert_no_secrets(engine, tea, result)


def test_prefix_input_error_makes_no_tea_call(synth: Any) -> None:
    with engine_for(synth) as (engine, tea, _cmr):
        job = {"source": {"bucket": SOURCE, "prefix": "MUR/", "include": []}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="prefix-bad", timeout=60)
        assert (result.status, result.error) == ("FAILED", "InvalidInput")
        assert json.loads(result.cause or "{}")["errorMessage"].startswith("source.include: ")
        assert tea.requests == 0 and engine.runtime.invocations["CredentialsFunction"] == 0


def cmr_catalogue(cmr: CmrEmulator, engine: LocalEngine, count: int) -> tuple[str, dict[str, bytes]]:
    """``count`` daily granules: a .nc in the protected bucket (size + MD5/SHA-256), every third with a
    .md5 sidecar in the public bucket (no checksum, approximate size only)."""
    concept = cmr.add_collection("MUR-JPL-L4-GLOB-v4.1", "4.1")
    start = datetime(2023, 12, 28, tzinfo=UTC)
    bodies: dict[str, bytes] = {}
    for index in range(count):
        day = start + timedelta(days=index)
        key = f"MUR-JPL-L4-GLOB-v4.1/{day:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc"
        body = seed(engine, [key])[key]
        bodies[f"{SOURCE}/{key}"] = body
        checksum = (
            ("SHA-256", hashlib.sha256(body).hexdigest())
            if index % 2
            else ("MD5", hashlib.md5(body, usedforsecurity=False).hexdigest())
        )
        files = [EmulatedFile(SOURCE, key, len(body), checksum)]
        if index % 3 == 0:
            sidecar = seed(engine, [key + ".md5"], PUBLIC)[key + ".md5"]
            bodies[f"{PUBLIC}/{key}.md5"] = sidecar
            files.append(EmulatedFile(PUBLIC, key + ".md5", len(sidecar), None, size_in_bytes=False))
        cmr.add_granule(concept, f"{day:%Y%m%d}090000-MUR", files, begin=day)
    return concept, bodies


def test_cmr_query_three_pages_and_a_429_copies_every_granule_once(synth: Any) -> None:
    with engine_for(synth) as (engine, tea, cmr):
        concept, bodies = cmr_catalogue(cmr, engine, 11)  # 15 files; page size 4: 3 pages
        cmr.throttle(times=1, retry_after=0.2, at_request=3)  # 1: the collection (its TEA), 2: page 1, 3: page 2
        job = {
            "source": {"cmr": {"collection_concept_id": concept, "temporal": {"start": "2023-12-01T00:00:00Z"}}},
            "destination": {"bucket": DEST, "prefix": "cmr/"},
        }
        result = engine.run(job, name="cmr", timeout=180)
        succeeded(result, len(bodies))
        assert len(bodies) == 15
        copied = dest_objects(engine, "cmr/")
        assert copied == {f"cmr/{path.split('/', 1)[1]}": body for path, body in bodies.items()}
        statuses = [r.status for r in cmr.requests if r.path.endswith("/granules.umm_json")]
        assert statuses == [200, 429, 200, 200]  # three pages, the second asked twice
        plan = json.loads(
            engine.client("s3")
            .get_object(Bucket=engine.deployment.staging_bucket, Key="runs/cmr/plan.json")["Body"]
            .read()
        )
        assert plan["source_stats"]["pages"] == 3 and plan["source_stats"]["throttled"] == 1
        assert plan["source"]["buckets"] == sorted([PUBLIC, SOURCE])
        # the copy engine verified the expected checksums CMR published
        head = engine.client("s3").head_object(Bucket=DEST, Key=next(k for k in copied if k.endswith(".nc")))
        assert head["Metadata"].get("teacopy-verified", "").startswith(("MD5:", "SHA-256:"))
        assert_no_secrets(engine, tea, result)


def test_cmr_wrong_checksum_is_reported_failed(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, cmr):
        concept = cmr.add_collection("SMALL", "1")
        good, bad = "small/good.nc", "small/bad.nc"
        bodies = seed(engine, [good, bad])
        day = datetime(2024, 1, 1, tzinfo=UTC)
        cmr.add_granule(
            concept,
            "good",
            [
                EmulatedFile(
                    SOURCE,
                    good,
                    len(bodies[good]),
                    ("MD5", hashlib.md5(bodies[good], usedforsecurity=False).hexdigest()),
                )
            ],
            begin=day,
        )
        wrong = hashlib.md5(b"not the bytes", usedforsecurity=False).hexdigest()
        cmr.add_granule(concept, "bad", [EmulatedFile(SOURCE, bad, len(bodies[bad]), ("MD5", wrong))], begin=day)
        job = {"source": {"cmr": {"short_name": "SMALL", "version": "1"}}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="cmr-bad-checksum", timeout=120)
        assert (result.status, result.error) == ("FAILED", "CopyJobFailed")
        report = result.report
        assert report is not None and (report["copied"], report["failed"]) == (1, 1)
        (failure,) = report["failures"]
        assert failure["key"] == bad and "MD5" in failure["reason"]
        assert set(dest_objects(engine)) == {good}


def test_cmr_template_key_mapping(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, cmr):
        concept, _bodies = cmr_catalogue(cmr, engine, 5)
        job = {
            "source": {"cmr": {"collection_concept_id": concept}, "include": ["*.nc"]},
            "destination": {
                "bucket": DEST,
                "prefix": "by-year/",
                "key_mapping": {"template": "{collection}/{year}/{doy}/{basename}"},
            },
        }
        result = engine.run(job, name="cmr-template", timeout=120)
        succeeded(result, 5)
        names = sorted(dest_objects(engine, "by-year/"))
        assert names[0] == (
            "by-year/MUR-JPL-L4-GLOB-v4.1/2023/362/20231228090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc"
        )
        assert names[-1].startswith("by-year/MUR-JPL-L4-GLOB-v4.1/2024/001/")
        assert len(names) == 5


@pytest.mark.parametrize("mode", ["manifest", "prefix", "cmr"])
def test_demo_source_modes_meet_the_bar(synth: Any, mode: str) -> None:
    from teacopy_local.demo import build_parser, run_demo

    argv = ["--template", str(synth.template_path), "--objects", "45", "--sizes", "1KiB,64KiB", "--large", "6MiB"]
    args = build_parser().parse_args([*argv, "--source", mode])
    out, err = io.StringIO(), io.StringIO()
    summary = run_demo(args, out=out, err=err)
    assert json.loads(out.getvalue().strip().splitlines()[-1]) == summary
    assert summary["status"] == "SUCCEEDED"
    assert summary["failed"] == 0 and summary["verified"] == summary["objects"] == summary["copied"] == 45
    assert summary["leaked_secrets"] == 0
    assert f"objects in 1 batches from {mode}" in err.getvalue()
