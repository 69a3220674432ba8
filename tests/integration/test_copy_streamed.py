"""Streamed PutObjects (lambdas/copying/objects.py ``_put_streamed``) against moto S3.

An object from ``stream_min_bytes`` up to the multipart threshold whose source ETag is its MD5 goes out as
one PutObject whose body is the GET's, read while it is sent; the ETag's MD5 and the plan's checksum are
checked before the last byte is handed over, and ``Content-MD5`` lets S3 check it too.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts.models import FAILED, Checksum
from lambdas.contracts.settings import CopySettings
from lambdas.copying.clients import s3_config
from lambdas.copying.engine import META_VERIFIED, copy_batch
from tests.integration.test_copy_engine import DEST, MIB, NOW, PREFIX, SETTINGS, SRC, STAGING, Env, blob, creds


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


STREAMING = CopySettings(**{**SETTINGS.__dict__, "multipart_threshold_bytes": 16 * MIB, "stream_min_bytes": MIB})


def stream_client(calls: Counter[str]) -> Any:
    client = boto3.client("s3", region_name="us-east-1", config=s3_config(4, streamed_puts=True))

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.s3", count)
    return client


class _Flipped:
    """A source client whose GetObject bodies have one byte changed (corrupted in transit), else boto3's."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_object(self, **params: Any) -> dict[str, Any]:
        response: dict[str, Any] = self._client.get_object(**params)
        data = bytearray(response["Body"].read())
        data[len(data) // 2] ^= 0xFF
        response["Body"] = io.BytesIO(bytes(data))
        return response


def test_objects_above_the_stream_size_are_streamed_into_one_put(env: Env) -> None:
    calls: Counter[str] = Counter()
    for i in range(3):
        env.put_source(f"g{i}.nc", blob(3 * MIB + i, i), ContentType="application/x-netcdf")
    env.put_source("small.txt", b"tiny")
    keys = [f"g{i}.nc" for i in range(3)] + ["small.txt"]
    result = env.run(env.event(keys), settings=STREAMING, stream=stream_client(calls))
    assert (result["copied"], result["failed"]) == (4, 0)
    for key in keys:
        assert env.dest_body(key) == env.data[key]
    assert calls["PutObject"] == 3  # the three 3 MiB objects, streamed
    assert env.dest_calls["PutObject"] == 1  # the small one, buffered, on the ordinary client
    assert env.dest_calls["CreateMultipartUpload"] == 0
    head = env.admin.head_object(Bucket=DEST, Key=PREFIX + "g0.nc")
    assert head["ContentType"] == "application/x-netcdf"


def test_a_streamed_object_is_verified_against_the_plans_checksum(env: Env) -> None:
    data = blob(2 * MIB, 7)
    env.put_source("a.nc", data)
    good = Checksum(algorithm="SHA-256", value=hashlib.sha256(data).hexdigest())
    result = env.run(env.event(["a.nc"], checksums={"a.nc": good}), settings=STREAMING, stream=stream_client(Counter()))
    assert result["copied"] == 1
    head = env.admin.head_object(Bucket=DEST, Key=PREFIX + "a.nc")
    assert head["Metadata"][META_VERIFIED] == f"SHA-256:{good.value}"


def test_a_plan_checksum_mismatch_stores_nothing(env: Env) -> None:
    env.put_source("a.nc", blob(2 * MIB, 7))
    wrong = Checksum(algorithm="SHA-256", value="0" * 64)
    calls: Counter[str] = Counter()
    env.run(env.event(["a.nc"], checksums={"a.nc": wrong}), settings=STREAMING, stream=stream_client(calls))
    entry = env.results()["a.nc"]
    assert entry["status"] == FAILED
    assert "checksum mismatch" in entry["reason"]
    assert calls["PutObject"] == 2  # tried, retried once, each abandoned before its last byte
    assert not env.dest_exists("a.nc")


def test_bytes_corrupted_in_transit_never_reach_the_destination(env: Env) -> None:
    """The ETag is the source's MD5: a changed byte fails the object before its last byte is sent."""
    env.put_source("a.nc", blob(2 * MIB, 3))
    env.run(env.event(["a.nc"]), settings=STREAMING, source=_Flipped(env.source), stream=stream_client(Counter()))
    entry = env.results()["a.nc"]
    assert entry["status"] == FAILED
    assert "MD5" in entry["reason"]
    assert not env.dest_exists("a.nc")


def test_a_source_whose_etag_is_not_its_md5_is_buffered(env: Env) -> None:
    """A multipart-uploaded source ("<hex>-2"): no MD5 to check while streaming, so the whole body is read first."""
    data = blob(10 * MIB, 5)
    upload = env.admin.create_multipart_upload(Bucket=SRC, Key="mp.nc")["UploadId"]
    parts = []
    for number, piece in enumerate((data[: 5 * MIB], data[5 * MIB :]), start=1):
        etag = env.admin.upload_part(Bucket=SRC, Key="mp.nc", UploadId=upload, PartNumber=number, Body=piece)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    env.admin.complete_multipart_upload(Bucket=SRC, Key="mp.nc", UploadId=upload, MultipartUpload={"Parts": parts})
    env.data["mp.nc"] = data
    calls: Counter[str] = Counter()
    result = env.run(env.event(["mp.nc"]), settings=STREAMING, stream=stream_client(calls))
    assert result["copied"] == 1
    assert env.dest_body("mp.nc") == data
    assert calls["PutObject"] == 0
    assert env.dest_calls["PutObject"] == 1


@pytest.mark.parametrize("size", [MIB - 1, 16 * MIB])
def test_objects_outside_the_streamed_sizes_are_not_streamed(env: Env, size: int) -> None:
    env.put_source("a.nc", blob(size, 1))
    calls: Counter[str] = Counter()
    result = env.run(env.event(["a.nc"]), settings=STREAMING, stream=stream_client(calls))
    assert result["copied"] == 1
    assert env.dest_body("a.nc") == env.data["a.nc"]
    assert calls["PutObject"] == 0


def test_over_http_a_corrupt_body_is_abandoned_mid_request_and_a_good_one_stored(tmp_path: Path) -> None:
    """Through a real socket (the bench's local S3): botocore sends the body while the source is read, and a
    mismatch found before the last byte abandons the request, so the server stores nothing of it."""
    from bench.drivers import ROLE_LIKE
    from bench.model import S3Model
    from bench.runner import REGION, running_server

    model = S3Model(first_byte_ms=1, jitter_ms=0, connection_mbps=2000, link_mibps=2000)
    good, bad = blob(3 * MIB + 5, 1), blob(3 * MIB + 7, 2)
    with running_server(tmp_path / "server.log", model=model) as server:
        admin = server.client()
        for bucket in (SRC, DEST, STAGING):
            admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        admin.put_object(Bucket=SRC, Key="good.nc", Body=good)
        admin.put_object(Bucket=SRC, Key="bad.nc", Body=bad)

        def client(**config: Any) -> Any:
            return boto3.client("s3", endpoint_url=server.url, region_name=REGION, **ROLE_LIKE, **config)

        calls: Counter[str] = Counter()
        streamer = client(config=s3_config(4, streamed_puts=True))
        streamer.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))

        class _FlipBad(_Flipped):
            def get_object(self, **params: Any) -> dict[str, Any]:
                return super().get_object(**params) if params["Key"] == "bad.nc" else self._client.get_object(**params)

        event = Env.event(cast(Env, None), ["good.nc", "bad.nc"])
        dest = client(config=s3_config(4))
        copy_batch(
            event,
            settings=replace(STREAMING, source_region=REGION),
            source_s3=_FlipBad(client(config=s3_config(4))),
            dest_s3=dest,
            staging_s3=dest,
            dest_stream_s3=streamer,
            credentials=creds(),
            clock=lambda: NOW,
            remaining_ms=lambda: 900_000,
        )
        stored = {o["Key"]: o["Size"] for o in admin.list_objects_v2(Bucket=DEST).get("Contents", [])}
        copied = admin.get_object(Bucket=DEST, Key=PREFIX + "good.nc")["Body"].read()
    assert calls["PutObject"] == 3  # good.nc once; bad.nc tried and retried, each abandoned mid-body
    assert stored == {PREFIX + "good.nc": len(good)}
    assert copied == good
