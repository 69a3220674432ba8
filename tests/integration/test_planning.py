"""Plan: input validation (InvalidInput names field and rule), manifests, batching, staging."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import Destination, ObjectSpec
from lambdas.contracts.settings import PlanSettings
from lambdas.planning.manifests import parse_manifest
from lambdas.planning.plan import plan_job
from lambdas.planning.staged import batches_in_memory

SETTINGS = PlanSettings(
    staging_bucket="staging",
    destinations=(Destination("dest"), Destination("scoped", "allowed/")),
    manifest_buckets=("dest", "lists"),
    batch_max_objects=3,
    batch_max_bytes=1000,
    max_inline_keys=10,
)
GOOD = {"source": {"bucket": "daac-bucket", "keys": ["a/1.nc", "a/2.nc"]}, "destination": {"bucket": "dest"}}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("staging", "dest", "lists", "other"):
            client.create_bucket(Bucket=bucket)
        yield client


def with_(path: str, value, base=GOOD):
    data = json.loads(json.dumps(base))
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is KeyError:
        node.pop(parts[-1])
    else:
        node[parts[-1]] = value
    return data


BAD_INPUTS = [
    ("not an object", "input", "[1, 2]"),
    ("missing source", "source", with_("source", KeyError)),
    ("missing destination", "destination", with_("destination", KeyError)),
    ("unknown top-level field", "colour", {**GOOD, "colour": "red"}),
    ("unknown source field", "source.colour", with_("source.colour", "red")),
    ("keys and prefix", "source", with_("source.prefix", "x/")),
    ("source not an object", "source", with_("source", "daac-bucket")),
    ("bucket wrong type", "source.bucket", with_("source.bucket", 5)),
    ("bucket invalid name", "source.bucket", with_("source.bucket", "Bad_Bucket")),
    ("keys and manifest", "source", with_("source.manifest", "s3://dest/m.txt")),
    ("neither keys nor manifest", "source", with_("source.keys", KeyError)),
    ("keys not a list", "source.keys", with_("source.keys", "a/1.nc")),
    ("empty keys", "source.keys", with_("source.keys", [])),
    ("key not a string", "source.keys[1]", with_("source.keys", ["a", 7])),
    ("empty key", "source.keys[0]", with_("source.keys", [""])),
    ("duplicate key", "source.keys[1]", with_("source.keys", ["a", "a"])),
    ("key too long", "source.keys[0]", with_("source.keys", ["é" * 600])),
    ("too many inline keys", "source.keys", with_("source.keys", [f"k{i}" for i in range(11)])),
    ("destination not allowed", "destination.bucket", with_("destination.bucket", "other")),
    (
        "destination prefix not allowed",
        "destination.prefix",
        with_("destination", {"bucket": "scoped", "prefix": "x/"}),
    ),
    ("destination prefix leading slash", "destination.prefix", with_("destination.prefix", "/x")),
    ("destination unknown field", "destination.region", with_("destination.region", "us-west-2")),
    ("bad overwrite option", "options.overwrite", {**GOOD, "options": {"overwrite": "sometimes"}}),
    (
        "manifest in unreadable bucket",
        "source.manifest",
        with_("source", {"bucket": "daac-bucket", "manifest": "s3://other/m"}),
    ),
    ("manifest not a URL", "source.manifest", with_("source", {"bucket": "daac-bucket", "manifest": "m.txt"})),
]


@pytest.mark.parametrize(("case", "field", "raw"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_rejected_naming_the_field(s3, case, field, raw):
    raw = json.loads(raw) if isinstance(raw, str) else raw
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-1", settings=SETTINGS, s3=s3)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.rule
    # nothing staged: no copy can start
    assert list(staging.list_keys(s3, "staging", "runs/")) == []


def test_plan_stages_batches_and_returns_small_state(s3):
    keys = [f"dir/ü {i}.nc" for i in range(7)]
    state = plan_job(with_("source.keys", keys), "run-7", settings=SETTINGS, s3=s3)
    assert state == {
        "run_id": "run-7",
        "manifest": {"bucket": "staging", "key": "runs/run-7/manifest.json"},
        "destination": {"bucket": "dest", "prefix": ""},
        "options": {"overwrite": "skip-if-identical", "dry_run": False},
        "objects": 7,
        "batches": 3,
        "endpoints": ["default"],
    }
    manifest = staging.get_json(s3, "staging", "runs/run-7/manifest.json")
    assert {b["endpoint"] for b in manifest} == {"default"}  # the bucket's TEA endpoint
    assert [len(b["objects"]) for b in manifest] == [3, 3, 1]
    assert [o["key"] for b in manifest for o in b["objects"]] == keys
    assert {b["source_bucket"] for b in manifest} == {"daac-bucket"}
    assert len({b["id"] for b in manifest}) == 3


def test_prefix_is_normalized_and_scoped(s3):
    state = plan_job(with_("destination", {"bucket": "scoped", "prefix": "allowed/sub"}), "r", settings=SETTINGS, s3=s3)
    assert state["destination"] == {"bucket": "scoped", "prefix": "allowed/sub/"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('["a/1", "s3://daac-bucket/a/2"]', [ObjectSpec("a/1"), ObjectSpec("a/2")]),
        ('[{"key": "a/1", "size": 5}, "a/2"]', [ObjectSpec("a/1", 5), ObjectSpec("a/2")]),
        ("# comment\na/1\n\ns3://daac-bucket/a 2\n", [ObjectSpec("a/1"), ObjectSpec("a 2")]),
        # plain lines are keys verbatim: whitespace at either end is part of the key (only the line ending is not)
        ("\t lead\r\ntrail  \n  \n", [ObjectSpec("\t lead"), ObjectSpec("trail  ")]),
    ],
)
def test_manifest_formats(body, expected):
    assert list(parse_manifest(body, "daac-bucket")) == expected


def test_manifest_job_reads_user_bucket(s3):
    s3.put_object(
        Bucket="lists", Key="m.json", Body=json.dumps([{"key": "x/1", "size": 600}, {"key": "x/2", "size": 600}])
    )
    raw = {"source": {"bucket": "daac-bucket", "manifest": "s3://lists/m.json"}, "destination": {"bucket": "dest"}}
    state = plan_job(raw, "run-m", settings=SETTINGS, s3=s3)
    assert state["objects"] == 2
    assert state["batches"] == 2  # 600 + 600 > batch_max_bytes 1000: byte-balanced


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('["a", "s3://elsewhere/b"]', "source.manifest[1]"),
        ('["a", "a"]', "source.manifest[1]"),
        ("[not json", "source.manifest"),
        ("", "source.manifest"),
        ('[{"key": "a", "size": -1}]', "source.manifest[0].size"),
    ],
)
def test_bad_manifest_is_rejected(s3, body, field):
    s3.put_object(Bucket="lists", Key="bad", Body=body.encode())
    raw = {"source": {"bucket": "daac-bucket", "manifest": "s3://lists/bad"}, "destination": {"bucket": "dest"}}
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-b", settings=SETTINGS, s3=s3)
    assert info.value.field == field


def test_missing_manifest_is_input_error(s3):
    raw = {"source": {"bucket": "daac-bucket", "manifest": "s3://lists/none"}, "destination": {"bucket": "dest"}}
    with pytest.raises(InvalidInput, match="NoSuchKey"):
        plan_job(raw, "run-x", settings=SETTINGS, s3=s3)


def test_batches_bounded_by_count_bytes_and_json_size():
    objects = [ObjectSpec(f"k{i}", 400) for i in range(5)]
    assert [len(b.objects) for b in batches_in_memory(objects, "b", 100, 1000)] == [2, 2, 1]
    long_keys = [ObjectSpec("x" * 1000 + str(i)) for i in range(300)]
    batches = list(batches_in_memory(long_keys, "b", 1000, 10**12))
    assert all(len(json.dumps(b.to_dict())) < 200 * 1024 for b in batches)
    assert sum(len(b.objects) for b in batches) == 300


def test_batches_name_the_tea_endpoint_of_their_bucket(s3):
    import dataclasses

    settings = dataclasses.replace(SETTINGS, bucket_endpoints=(("daac-bucket", "nsidc"),))
    state = plan_job(with_("source.keys", ["a.nc", "b.nc"]), "run-8", settings=settings, s3=s3)
    assert state["endpoints"] == ["nsidc"]
    manifest = staging.get_json(s3, "staging", "runs/run-8/manifest.json")
    assert {b["endpoint"] for b in manifest} == {"nsidc"}
