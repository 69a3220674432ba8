"""Source modes in Plan: streamed manifests, prefix listings, CMR queries, key mapping, staged manifest."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import lambdas.planning.plan as plan_module
from lambdas.contracts import staging
from lambdas.contracts.errors import (
    ConfigurationError,
    CredentialsExpired,
    EdlTokenRejected,
    InvalidInput,
    TeaUnavailable,
)
from lambdas.contracts.models import Checksum, Destination, ObjectSpec, TeaCredentials
from lambdas.contracts.settings import PlanSettings
from lambdas.credentials.invoked import InvokedCredentials
from lambdas.earthdata.cmr import CmrClient
from lambdas.planning.keys import KeyFilter, KeyMapping
from lambdas.planning.listing import list_prefix
from lambdas.planning.manifests import decode_chunks, format_for, parse_manifest, parse_manifest_stream
from lambdas.planning.plan import SourceDeps, plan_job
from lambdas.planning.staged import StagedManifest
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile

SETTINGS = PlanSettings(
    staging_bucket="staging",
    destinations=(Destination("dest"),),
    manifest_buckets=("lists", "dest"),
    batch_max_objects=3,
    batch_max_bytes=10**9,
    max_inline_keys=10,
)
DAAC = "daac-bucket"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("staging", "dest", "lists", DAAC, "other-daac"):
            client.create_bucket(Bucket=bucket)
        yield client


def staged(s3: Any, run_id: str) -> list[dict[str, Any]]:
    return list(staging.get_json(s3, "staging", staging.manifest_key(run_id)))


def objects_of(batches: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(b["source_bucket"], o) for b in batches for o in b["objects"]]


def manifest_job(url: str, **source: Any) -> dict[str, Any]:
    return {"source": {"manifest": url, **source}, "destination": {"bucket": "dest"}}


def chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- manifest formats ------------------------------------------------------------------------------------


def entries(text: str, fmt: str | None = None, chunk: int = 7) -> list[tuple[str | None, Any, int | None, Any]]:
    return [(e.bucket, e.key, e.size, e.checksum) for e in parse_manifest_stream(chunked(text, chunk), fmt)]


def test_json_array_is_streamed_element_by_element() -> None:
    text = json.dumps(
        [
            "a/1.nc",
            "s3://b1/a/2.nc",
            {"key": "a/3.nc", "size": 123456789, "checksum": MD5, "checksum_algorithm": "md5"},
            {"url": "s3://b2/x y.nc", "checksum": {"algorithm": "SHA256", "value": SHA256.upper()}},
        ],
        indent=1,
    )
    for chunk in (1, 3, 7, 1000):  # element boundaries fall anywhere, numbers split across chunks
        assert entries(text, chunk=chunk) == [
            (None, "a/1.nc", None, None),
            ("b1", "a/2.nc", None, None),
            (None, "a/3.nc", 123456789, Checksum("MD5", MD5)),
            ("b2", "x y.nc", None, Checksum("SHA-256", SHA256)),
        ]


def test_json_lines_csv_and_plain_lines() -> None:
    jsonl = '{"key": "a/1", "size": 5}\n\n"s3://b/a/2"\n'
    jsonl += '{"url": "s3://b/a/3", "checksum": "%s", "checksum_algorithm": "MD5"}\n'
    assert entries(jsonl % MD5) == [
        (None, "a/1", 5, None),
        ("b", "a/2", None, None),
        ("b", "a/3", None, Checksum("MD5", MD5)),
    ]
    csv_text = (
        f'Key,size,checksum,checksum_algorithm\r\na/1,10,{MD5},MD5\r\n"a/with, comma",,,\r\n\r\n"s3://b/a/3",3,,\r\n'
    )
    assert entries(csv_text, "csv") == [
        (None, "a/1", 10, Checksum("MD5", MD5)),
        (None, "a/with, comma", None, None),
        ("b", "a/3", 3, None),
    ]
    assert entries("url\ns3://b/k1\ns3://c/k2\n", "csv") == [("b", "k1", None, None), ("c", "k2", None, None)]
    assert entries("\ufeff# comment\na/1\ns3://b/a 2\n\n") == [(None, "a/1", None, None), ("b", "a 2", None, None)]
    # keys verbatim: plain lines keep whitespace at either end, so does a CSV key cell (other cells are trimmed)
    assert entries(" a/1 \n\ts3://b/x\n") == [(None, " a/1 ", None, None), (None, "\ts3://b/x", None, None)]
    assert entries('key,size\n" a/1 ", 7 \n', "csv") == [(None, " a/1 ", 7, None)]


def test_format_from_extension_or_content() -> None:
    assert format_for("lists/x.CSV", None) == "csv"
    assert format_for("lists/x.jsonl", None) == "jsonl"
    assert format_for("lists/x.ndjson", None) == "jsonl"
    assert format_for("lists/x.json", None) == "json"
    assert format_for("lists/x.txt", None) is None
    assert format_for("lists/x.txt", "csv") == "csv"
    assert entries('{"key": "a"}\n{"key": "b"}\n') == [(None, "a", None, None), (None, "b", None, None)]


BAD_MANIFESTS = [
    ("csv unknown column", "csv", "key,colour\na,red\n", "source.manifest line 1"),
    ("csv key and url", "csv", "key,url\na,s3://b/a\n", "source.manifest line 1"),
    ("csv no key column", "csv", "size\n1\n", "source.manifest line 1"),
    ("csv wrong column count", "csv", "key,size\na,1,2\n", "source.manifest line 2"),
    ("csv bad size", "csv", "key,size\na,big\n", "source.manifest line 2.size"),
    ("csv checksum without algorithm", "csv", f"key,checksum\na,{MD5}\n", "source.manifest line 2.checksum_algorithm"),
    (
        "csv bad checksum",
        "csv",
        "key,checksum,checksum_algorithm\na,xyz,MD5\n",
        "source.manifest line 2.checksum.value",
    ),
    (
        "csv unknown algorithm",
        "csv",
        "key,checksum,checksum_algorithm\na,1,CRC9\n",
        "source.manifest line 2.checksum.algorithm",
    ),
    ("csv unterminated quote", "csv", 'key\n"a\n', "source.manifest line 2"),
    ("jsonl not json", "jsonl", '{"key": "a"}\n{"key": \n', "source.manifest line 2"),
    ("jsonl number", "jsonl", "5\n", "source.manifest line 1"),
    ("json trailing content", "json", '["a"] x', "source.manifest"),
    ("json missing comma", "json", '["a" "b"]', "source.manifest"),
    ("json unterminated", "json", '["a", "b"', "source.manifest"),
    ("json not an array", "json", '{"key": "a"}', "source.manifest"),
    ("json key and url", None, '[{"key": "a", "url": "s3://b/a"}]', "source.manifest[0]"),
    ("json unknown field", None, '[{"key": "a", "etag": "x"}]', "source.manifest[0].etag"),
    ("json negative size", None, '[{"key": "a", "size": -1}]', "source.manifest[0].size"),
    ("bad s3 url", None, "s3://bucket-only\n", "source.manifest line 1"),
    ("json element too long", None, '["' + "x" * 70_000 + '"]', "source.manifest"),
    ("line too long", None, "x" * 70_000, "source.manifest line 1"),
]


@pytest.mark.parametrize(("case", "fmt", "text", "field"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_bad_manifest_entries_name_the_line(case: str, fmt: str | None, text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        list(parse_manifest_stream(chunked(text, 4096), fmt))
    assert info.value.field == field, str(info.value)


def test_manifest_decoding_is_bounded_and_strict() -> None:
    with pytest.raises(InvalidInput, match="larger than 1 MiB"):
        list(decode_chunks([b"a\n" * 400_000, b"b\n" * 400_000], "source.manifest", 1024**2))
    with pytest.raises(InvalidInput, match="not UTF-8"):
        list(decode_chunks([b"a\n\xff\n"], "source.manifest", 1024))
    # a multi-byte character split between two chunks
    assert "".join(decode_chunks([b"caf\xc3", b"\xa9\n"], "f", 100)) == "café\n"


def test_parse_manifest_keeps_its_api() -> None:
    assert list(parse_manifest('["a/1", "s3://daac/a/2"]', "daac")) == [ObjectSpec("a/1"), ObjectSpec("a/2")]
    with pytest.raises(InvalidInput, match="names bucket 'other'"):
        list(parse_manifest("s3://other/a\n", "daac"))


# --- manifest jobs ----------------------------------------------------------------------------------------


def test_csv_manifest_carries_size_and_checksum_into_the_staged_batches(s3: Any) -> None:
    body = f"key,size,checksum,checksum_algorithm\nMUR/a.nc,100,{MD5},MD5\nMUR/b.nc,200,{SHA256},SHA-256\nMUR/c.nc,,,\n"
    s3.put_object(Bucket="lists", Key="mur.csv", Body=body.encode())
    state = plan_job(
        {"source": {"bucket": DAAC, "manifest": "s3://lists/mur.csv"}, "destination": {"bucket": "dest"}},
        "run-csv",
        settings=SETTINGS,
        s3=s3,
    )
    assert (state["objects"], state["batches"]) == (3, 1)
    assert objects_of(staged(s3, "run-csv")) == [
        (DAAC, {"key": "MUR/a.nc", "size": 100, "checksum": {"algorithm": "MD5", "value": MD5}}),
        (DAAC, {"key": "MUR/b.nc", "size": 200, "checksum": {"algorithm": "SHA-256", "value": SHA256}}),
        (DAAC, {"key": "MUR/c.nc"}),
    ]
    plan = staging.get_json(s3, "staging", staging.plan_key("run-csv"))
    assert plan["source"]["mode"] == "manifest" and plan["bytes_known"] is None


def test_url_manifest_without_source_bucket_batches_per_bucket(s3: Any) -> None:
    lines = [f"s3://{DAAC}/a/{i}.nc" if i % 2 else f"s3://other-daac/b/{i}.nc" for i in range(7)]
    s3.put_object(Bucket="lists", Key="mixed.txt", Body="\n".join(lines).encode())
    state = plan_job(manifest_job("s3://lists/mixed.txt"), "run-mixed", settings=SETTINGS, s3=s3)
    batches = staged(s3, "run-mixed")
    assert state["objects"] == 7
    for batch in batches:  # a batch never mixes buckets (each bucket may need its own credentials)
        prefix = "a/" if batch["source_bucket"] == DAAC else "b/"
        assert all(o["key"].startswith(prefix) for o in batch["objects"])
    assert sorted(f"s3://{b}/{o['key']}" for b, o in objects_of(batches)) == sorted(lines)
    plan = staging.get_json(s3, "staging", staging.plan_key("run-mixed"))
    assert plan["source"]["buckets"] == [DAAC, "other-daac"]


@pytest.mark.parametrize(
    ("body", "source", "field", "rule"),
    [
        ("a/1\n", {}, "source.manifest line 1", "bare key"),
        (f"s3://{DAAC}/a\ns3://{DAAC}/a\n", {}, "source.manifest line 2", "duplicate entry"),
        (f"s3://{DAAC}/x/a.nc\ns3://other-daac/y/a.nc\n", {}, "source.manifest line 2", "earlier object also maps"),
        ("a\nb\n", {"bucket": DAAC, "include": ["zzz*"]}, "source.manifest", "lists no keys (after include/exclude)"),
        ("a\n", {"bucket": DAAC, "format": "xml"}, "source.format", "must be one of"),
    ],
)
def test_bad_manifest_jobs(s3: Any, body: str, source: dict[str, Any], field: str, rule: str) -> None:
    s3.put_object(Bucket="lists", Key="m.txt", Body=body.encode())
    raw = manifest_job("s3://lists/m.txt", **source)
    if field == "source.manifest line 2" and "maps" in rule:
        raw["destination"]["key_mapping"] = "basename"
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-bad", settings=SETTINGS, s3=s3)
    assert info.value.field == field and rule in info.value.rule, str(info.value)
    assert list(staging.list_keys(s3, "staging", "runs/")) == []


def test_same_key_in_two_buckets_collides_even_when_kept(s3: Any) -> None:
    s3.put_object(Bucket="lists", Key="m.txt", Body=f"s3://{DAAC}/k\ns3://other-daac/k\n".encode())
    with pytest.raises(InvalidInput, match="earlier object also maps"):
        plan_job(manifest_job("s3://lists/m.txt"), "run-k", settings=SETTINGS, s3=s3)


# --- the staged manifest ----------------------------------------------------------------------------------


def test_large_staged_manifest_is_a_multipart_upload_of_one_json_array(s3: Any) -> None:
    writer = StagedManifest(s3, "staging", "runs/r/manifest.json", part_bytes=5 * 1024**2)
    items = [
        {"id": f"b{i:06d}", "source_bucket": DAAC, "objects": [{"key": f"k/{i}/" + "x" * 200}]} for i in range(60_000)
    ]
    for item in items:
        writer.add(item)
    writer.close()
    assert len(writer._parts) >= 2
    assert writer.peak_buffer < 5 * 1024**2 + 1024
    assert staging.get_json(s3, "staging", "runs/r/manifest.json") == items


def test_failed_plan_aborts_the_staged_upload(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "STAGED_PART_BYTES", 5 * 1024**2)
    created: list[str] = []
    original = s3.create_multipart_upload

    def spy(**kwargs: Any) -> Any:
        created.append(kwargs["Key"])
        return original(**kwargs)

    monkeypatch.setattr(s3, "create_multipart_upload", spy)
    lines = [f"s3://{DAAC}/{i:07d}/" + "k" * 150 for i in range(30_000)] + [f"s3://{DAAC}/{0:07d}/" + "k" * 150]
    s3.put_object(Bucket="lists", Key="dup.txt", Body="\n".join(lines).encode())
    settings = PlanSettings(**{**SETTINGS.__dict__, "batch_max_objects": 1})  # ~6 MiB of batches
    with pytest.raises(InvalidInput, match="duplicate entry"):
        plan_job(manifest_job("s3://lists/dup.txt"), "run-dup", settings=settings, s3=s3)
    assert created == ["runs/run-dup/manifest.json"]  # a part was uploaded before the duplicate was met
    assert list(staging.list_keys(s3, "staging", "runs/")) == []
    assert s3.list_multipart_uploads(Bucket="staging").get("Uploads", []) == []


# --- key mapping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "key", "extra", "expected"),
    [
        ("keep", "a/b/c.nc", None, "a/b/c.nc"),
        ("basename", "a/b/c.nc", None, "c.nc"),
        ({"strip_prefix": "a/"}, "a/b/c.nc", None, "b/c.nc"),
        ({"template": "{bucket}/{dirname}/{stem}-copy.{ext}"}, "a/b/c.nc", None, "src/a/b/c-copy.nc"),
        ({"template": "{dirname}/{basename}"}, "c.nc", None, "c.nc"),  # empty segments dropped
        (
            {"template": "{collection}/{year}/{doy}/{basename}"},
            "x/g.nc",
            {"collection": "MUR", "year": "2023", "doy": "034"},
            "MUR/2023/034/g.nc",
        ),
    ],
)
def test_key_mapping(mapping: Any, key: str, extra: dict[str, str] | None, expected: str) -> None:
    assert KeyMapping.from_input(mapping, cmr=True).map("src", key, extra, "where") == expected


@pytest.mark.parametrize(
    ("mapping", "cmr", "field", "rule"),
    [
        ("flat", False, "destination.key_mapping", "must be 'keep'"),
        ({"strip_prefix": "a/", "template": "x"}, False, "destination.key_mapping", "must be 'keep'"),
        ({"template": "{collection}/{basename}"}, False, "destination.key_mapping.template", "only for a 'cmr'"),
        ({"template": "{nope}/{basename}"}, True, "destination.key_mapping.template", "unknown field {nope}"),
        ({"template": "{year}/x.nc"}, True, "destination.key_mapping.template", "same key"),
        ({"template": "{basename:>10}"}, False, "destination.key_mapping.template", "format specs"),
        ({"template": "{basename"}, False, "destination.key_mapping.template", "not a valid template"),
        ({"template": "../{basename}"}, False, "destination.key_mapping.template", "'..'"),
        ({"strip_prefix": ""}, False, "destination.key_mapping.strip_prefix", "non-empty"),
    ],
)
def test_bad_key_mapping(mapping: Any, cmr: bool, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        KeyMapping.from_input(mapping, cmr=cmr)
    assert info.value.field == field and rule in info.value.rule, str(info.value)


def test_inline_keys_mapping_is_checked_at_validation(s3: Any) -> None:
    raw: dict[str, Any] = {
        "source": {"bucket": DAAC, "keys": ["2023/a.nc", "2024/a.nc"]},
        "destination": {"bucket": "dest", "key_mapping": "basename"},
    }
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-map", settings=SETTINGS, s3=s3)
    assert info.value.field == "source.keys[1]" and "'a.nc'" in info.value.rule
    raw["destination"]["key_mapping"] = {"strip_prefix": "2023/"}
    with pytest.raises(InvalidInput, match=r"source.keys\[1\]: key '2024/a.nc' does not start with"):
        plan_job(raw, "run-map", settings=SETTINGS, s3=s3)


def test_mapped_destination_keys_are_staged_per_object(s3: Any) -> None:
    raw: dict[str, Any] = {
        "source": {"bucket": DAAC, "keys": ["MUR/2023/a.nc", "MUR/2024/b.nc"]},
        "destination": {"bucket": "dest", "prefix": "copy", "key_mapping": {"strip_prefix": "MUR/"}},
    }
    plan_job(raw, "run-strip", settings=SETTINGS, s3=s3)
    assert objects_of(staged(s3, "run-strip")) == [
        (DAAC, {"key": "MUR/2023/a.nc", "dest_key": "copy/2023/a.nc"}),
        (DAAC, {"key": "MUR/2024/b.nc", "dest_key": "copy/2024/b.nc"}),
    ]
    raw["destination"]["key_mapping"] = "keep"  # the default: no dest_key, the engine uses prefix + key
    plan_job(raw, "run-keep", settings=SETTINGS, s3=s3)
    assert [o for _, o in objects_of(staged(s3, "run-keep"))] == [{"key": "MUR/2023/a.nc"}, {"key": "MUR/2024/b.nc"}]


# --- prefix listings -----------------------------------------------------------------------------------------


class MotoClients:
    """SourceClients backed by the moto S3 client; counts how often credentials were asked for."""

    def __init__(self, client: Any, expire_on_calls: tuple[int, ...] = ()) -> None:
        self.client = client
        self.fetches = 0
        self.refreshes = 0
        self.calls = 0
        self.expire_on_calls = expire_on_calls

    def s3_for(self, bucket: str) -> Any:
        self.fetches += 1
        return self

    def refreshed(self, bucket: str) -> Any:
        self.refreshes += 1
        return self

    def list_objects_v2(self, **params: Any) -> Any:
        self.calls += 1
        if self.calls in self.expire_on_calls:
            raise ClientError({"Error": {"Code": "ExpiredToken", "Message": "expired"}}, "ListObjectsV2")
        return self.client.list_objects_v2(**params)


def seed_keys(s3: Any, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=DAAC, Key=key, Body=key.encode())


def prefix_job(prefix: str, **source: Any) -> dict[str, Any]:
    return {"source": {"bucket": DAAC, "prefix": prefix, **source}, "destination": {"bucket": "dest"}}


def test_prefix_listing_with_include_exclude_and_expiry(s3: Any) -> None:
    keys = [f"MUR/2023/{d:02d}/g{d}.nc" for d in range(1, 13)]
    keys += [f"MUR/2023/{d:02d}/g{d}.nc.md5" for d in range(1, 13)]
    keys += ["MUR/2023/", "MUR/2022/old.nc", "MUR/2023/README.txt"]
    seed_keys(s3, keys)
    clients = MotoClients(s3, expire_on_calls=(1,))  # the first page meets ExpiredToken
    state = plan_job(
        prefix_job("MUR/2023/", include=["*.nc", "*.txt"], exclude=["12/*", "README*"]),
        "run-prefix",
        settings=SETTINGS,
        s3=s3,
        deps=SourceDeps(clients=clients),
    )
    assert state["objects"] == 11
    listed = [o["key"] for _, o in objects_of(staged(s3, "run-prefix"))]
    assert listed == [f"MUR/2023/{d:02d}/g{d}.nc" for d in range(1, 12)]
    assert all(o["size"] == len(o["key"]) for _, o in objects_of(staged(s3, "run-prefix")))
    assert clients.fetches == 1 and clients.refreshes == 1  # the ExpiredToken page was asked again


def test_list_prefix_pages_and_refreshes_bounded(s3: Any) -> None:
    seed_keys(s3, [f"p/{i:03d}" for i in range(25)])
    clients = MotoClients(s3, expire_on_calls=(3,))
    listed = list(list_prefix(clients, DAAC, "p/", KeyFilter(), page_size=10))
    assert [o.key for o in listed] == [f"p/{i:03d}" for i in range(25)]
    assert clients.calls == 4 and clients.refreshes == 1
    always = MotoClients(s3, expire_on_calls=tuple(range(1, 100)))
    with pytest.raises(CredentialsExpired):
        list(list_prefix(always, DAAC, "p/", KeyFilter(), page_size=10, max_refreshes=3))
    assert always.refreshes == 3


def test_prefix_listing_errors(s3: Any) -> None:
    with pytest.raises(InvalidInput, match="lists no objects in s3://daac-bucket/none/"):
        plan_job(prefix_job("none/"), "run-empty", settings=SETTINGS, s3=s3, deps=SourceDeps(clients=MotoClients(s3)))

    class Denied(MotoClients):
        def list_objects_v2(self, **params: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    with pytest.raises(InvalidInput) as info:
        plan_job(prefix_job("x/"), "run-denied", settings=SETTINGS, s3=s3, deps=SourceDeps(clients=Denied(s3)))
    assert info.value.field == "source.bucket" and "AccessDenied" in info.value.rule
    with pytest.raises(ConfigurationError, match="TEACOPY_CREDENTIALS_FUNCTION"):
        plan_job(prefix_job("x/"), "run-noconf", settings=SETTINGS, s3=s3, deps=SourceDeps())


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (prefix_job("s3://daac-bucket/x/"), "source.prefix"),
        (prefix_job("p" * 1025), "source.prefix"),
        (prefix_job(5), "source.prefix"),  # type: ignore[arg-type]  # a number where a string belongs
        ({"source": {"prefix": "x/"}, "destination": {"bucket": "dest"}}, "source.bucket"),
        (prefix_job("x/", include=[]), "source.include"),
        (prefix_job("x/", exclude=[""]), "source.exclude[0]"),
        (prefix_job("x/", format="csv"), "source.format"),
        (prefix_job("x/", keys=["a"]), "source"),
        (
            {"source": {"bucket": DAAC, "keys": ["a"], "include": ["*"]}, "destination": {"bucket": "dest"}},
            "source.include",
        ),
        ({**prefix_job("x/"), "destination": {"bucket": "not-allowed"}}, "destination.bucket"),
        (
            {**prefix_job("x/"), "destination": {"bucket": "dest", "key_mapping": {"template": "{year}/{basename}"}}},
            "destination.key_mapping.template",
        ),
        (
            {"source": {"bucket": DAAC, "cmr": {"collection_concept_id": "C1-P"}}, "destination": {"bucket": "dest"}},
            "source.bucket",
        ),
    ],
)
def test_bad_input_never_asks_for_tea_credentials(s3: Any, raw: dict[str, Any], field: str) -> None:
    clients = MotoClients(s3)
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-x", settings=SETTINGS, s3=s3, deps=SourceDeps(clients=clients))
    assert info.value.field == field, str(info.value)
    assert clients.fetches == 0 and clients.calls == 0
    assert list(staging.list_keys(s3, "staging", "runs/")) == []


def test_basename_collision_in_a_listing_is_input_error(s3: Any) -> None:
    seed_keys(s3, ["d/2023/a.nc", "d/2024/a.nc"])
    raw = prefix_job("d/")
    raw["destination"]["key_mapping"] = "basename"
    with pytest.raises(InvalidInput) as info:
        plan_job(raw, "run-coll", settings=SETTINGS, s3=s3, deps=SourceDeps(clients=MotoClients(s3)))
    assert "d/2024/a.nc" in info.value.field and "'a.nc'" in info.value.rule


# --- bounded memory: 50,000 keys -----------------------------------------------------------------------------


class SyntheticListing:
    """A ListObjectsV2 that generates pages on the fly (the S3 side costs no memory)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pages = 0

    def s3_for(self, bucket: str) -> Any:
        return self

    def refreshed(self, bucket: str) -> Any:
        return self

    def list_objects_v2(
        self, *, Bucket: str, Prefix: str, MaxKeys: int, ContinuationToken: str = "0", EncodingType: str = ""
    ) -> Any:
        start = int(ContinuationToken)
        end = min(start + MaxKeys, self.total)
        self.pages += 1
        page: dict[str, Any] = {
            "Contents": [
                {"Key": f"{Prefix}{i // 1000:04d}/granule-{i:08d}.nc", "Size": 1_000_000 + i} for i in range(start, end)
            ],
            "IsTruncated": end < self.total,
        }
        if end < self.total:
            page["NextContinuationToken"] = str(end)
        return page


class CountingStaging:
    """The staging bucket's S3 API, keeping only sizes and digests of what is written (no bodies)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.parts: list[int] = []
        self.objects: dict[str, int] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: Any, ContentType: str = "") -> None:
        data = Body if isinstance(Body, bytes | bytearray) else Body.encode()
        if Key.endswith("manifest.json"):
            self.digest.update(data)
        self.objects[Key] = len(data)

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u1"}

    def upload_part(self, *, Body: Any, PartNumber: int, **_: Any) -> dict[str, str]:
        self.digest.update(Body)
        self.parts.append(len(Body))
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, *, Key: str, **_: Any) -> None:
        self.objects[Key] = sum(self.parts)

    def abort_multipart_upload(self, **_: Any) -> None:
        raise AssertionError("no abort expected")

    def get_object(self, *, Bucket: str, Key: str) -> Any:  # no plan.json nor checkpoint: a first invocation
        raise ClientError({"Error": {"Code": "NoSuchKey", "Message": Key}}, "GetObject")

    def get_paginator(self, _name: str) -> Any:  # the planning scratch folder, listed when it is cleaned up
        return self

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Contents": []}]


def plan_listing(total: int, settings: PlanSettings) -> tuple[int, CountingStaging, dict[str, Any]]:
    listing = SyntheticListing(total)
    sink = CountingStaging()
    tracemalloc.start()
    try:
        state = plan_job(
            prefix_job("MUR/2023/", include=["*.nc"]),
            f"run-{total}",
            settings=settings,
            s3=sink,
            deps=SourceDeps(clients=listing),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state["objects"] == total and listing.pages == -(-total // 1000)
    return peak, sink, state


@pytest.mark.slow
def test_prefix_listing_of_50000_keys_plans_with_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracemalloc peak of the whole plan_job (listing, filtering, batching, staging) stays one part + a page."""
    settings = PlanSettings(**{**SETTINGS.__dict__, "batch_max_objects": 100})
    peak_50k, sink, state = plan_listing(50_000, settings)
    staged_50k = sink.objects["runs/run-50000/manifest.json"]
    assert state["batches"] == 500
    # With the smallest part S3 allows, three times the keys: the staged manifest outgrows what is held.
    monkeypatch.setattr(plan_module, "STAGED_PART_BYTES", 5 * 1024**2)
    peak_150k, sink_150k, _ = plan_listing(150_000, settings)
    staged_150k = sink_150k.objects["runs/run-150000/manifest.json"]
    print(
        f"\nprefix listing plan: 50,000 keys -> peak {peak_50k / 1024**2:.1f} MiB traced "
        f"(staged manifest {staged_50k / 1024**2:.1f} MiB, one PutObject); "
        f"150,000 keys with 5 MiB parts -> peak {peak_150k / 1024**2:.1f} MiB "
        f"(staged {staged_150k / 1024**2:.1f} MiB in {len(sink_150k.parts)} parts)"
    )
    assert peak_50k < staged_50k + 2 * 1024**2  # the manifest (below one 8 MiB part) + one listing page
    assert len(sink_150k.parts) >= 2
    assert peak_150k < 5 * 1024**2 + 2 * 1024**2  # one part + one page, whatever the number of keys
    assert staged_150k > peak_150k


# --- the Credentials function, invoked by Plan ---------------------------------------------------------------


class FakeLambda:
    def __init__(self, answers: list[tuple[bool, dict[str, Any]]]) -> None:
        self.answers = answers
        self.events: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        self.events.append(json.loads(Payload))
        errored, payload = self.answers.pop(0)
        out: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(payload).encode())}
        if errored:
            out["FunctionError"] = "Unhandled"
        return out


class FakeCache:
    def get(self, version: str) -> TeaCredentials:
        return TeaCredentials("ASIA" + version, "secret", "token", datetime.now(UTC) + timedelta(hours=1))


def test_invoked_credentials_fetch_then_refresh_with_the_used_version() -> None:
    expiration = "2030-01-01T00:00:00+00:00"
    fake = FakeLambda(
        [(False, {"version": "v1", "expiration": expiration}), (False, {"version": "v2", "expiration": expiration})]
    )
    made: list[str] = []
    clients = InvokedCredentials(fake, "creds-fn", FakeCache(), lambda c: made.append(c.access_key_id), "run-9")
    clients.s3_for(DAAC)
    clients.s3_for(DAAC)  # cached: no second invocation
    clients.refreshed(DAAC)
    assert fake.events == [
        {"action": "fetch", "run_id": "run-9"},
        {"action": "refresh", "used_version": "v1", "run_id": "run-9"},
    ]
    assert made == ["ASIAv1", "ASIAv2"]


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("EdlTokenRejected", EdlTokenRejected),
        ("TeaUnavailable", TeaUnavailable),
        ("Sandbox.Timedout", TeaUnavailable),
        ("InvalidInput", ConfigurationError),
    ],
)
def test_invoked_credentials_errors_keep_their_names(error_type: str, expected: type[Exception]) -> None:
    fake = FakeLambda([(True, {"errorType": error_type, "errorMessage": "the token expired"})])
    clients = InvokedCredentials(fake, "creds-fn", FakeCache(), lambda c: c, None)
    with pytest.raises(expected):
        clients.s3_for(DAAC)


# --- CMR jobs ------------------------------------------------------------------------------------------------


@pytest.fixture
def cmr() -> Iterator[CmrEmulator]:
    with CmrEmulator() as emulator:
        yield emulator


def test_cmr_job_stages_every_file_with_size_checksum_and_templated_key(s3: Any, cmr: CmrEmulator) -> None:
    concept = cmr.add_collection("MUR-JPL-L4-GLOB-v4.1", "4.1")
    start = datetime(2023, 12, 30, tzinfo=UTC)
    for index in range(5):
        day = start + timedelta(days=index)
        files = [EmulatedFile("podaac-protected", f"MUR/{day:%Y%m%d}-sst.nc", 10 + index, ("MD5", f"{index:032x}"))]
        if index == 2:
            files.append(EmulatedFile("podaac-public", f"MUR/{day:%Y%m%d}-sst.nc.md5", 32, None, size_in_bytes=False))
        cmr.add_granule(concept, f"{day:%Y%m%d}-MUR", files, begin=day)
    raw = {
        "source": {"cmr": {"collection_concept_id": concept}},
        "destination": {
            "bucket": "dest",
            "prefix": "mur/",
            "key_mapping": {"template": "{collection}/{year}/{basename}"},
        },
    }
    deps = SourceDeps(cmr=CmrClient(cmr.url, page_size=2, sleep=lambda s: None))
    state = plan_job(raw, "run-cmr", settings=SETTINGS, s3=s3, deps=deps)
    assert state["objects"] == 6
    objects = objects_of(staged(s3, "run-cmr"))
    by_key = {o["key"]: (bucket, o) for bucket, o in objects}
    assert by_key["MUR/20231230-sst.nc"] == (
        "podaac-protected",
        {
            "key": "MUR/20231230-sst.nc",
            "size": 10,
            "checksum": {"algorithm": "MD5", "value": "0" * 32},
            "dest_key": "mur/MUR-JPL-L4-GLOB-v4.1/2023/20231230-sst.nc",
        },
    )
    assert by_key["MUR/20240101-sst.nc.md5"] == (
        "podaac-public",
        {"key": "MUR/20240101-sst.nc.md5", "dest_key": "mur/MUR-JPL-L4-GLOB-v4.1/2024/20240101-sst.nc.md5"},
    )
    plan = staging.get_json(s3, "staging", staging.plan_key("run-cmr"))
    assert plan["source"]["mode"] == "cmr" and plan["source"]["buckets"] == ["podaac-protected", "podaac-public"]
    assert plan["source_stats"]["granules"] == 5 and plan["source_stats"]["pages"] == 3


def test_cmr_job_with_no_s3_urls_is_input_error(s3: Any, cmr: CmrEmulator) -> None:
    concept = cmr.add_collection("EMPTY", "1")
    raw = {"source": {"cmr": {"collection_concept_id": concept}}, "destination": {"bucket": "dest"}}
    with pytest.raises(InvalidInput, match="matched no granules"):
        plan_job(raw, "run-none", settings=SETTINGS, s3=s3, deps=SourceDeps(cmr=CmrClient(cmr.url)))
