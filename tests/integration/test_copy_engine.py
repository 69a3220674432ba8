"""The copy engine against moto S3: clients are injected, nothing is patched.

Source bucket in us-west-2 (read with a client standing for the TEA credentials); destination and
staging buckets in us-east-1. Multipart tests use 5 MiB parts and ~12 MiB objects to stay fast.
"""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import CredentialsExpired, DestinationAccessDenied, TransientCopyError
from lambdas.contracts.models import (
    Batch,
    Checksum,
    CopyBatchEvent,
    CopyOptions,
    CredentialsRef,
    Destination,
    ObjectSpec,
    TeaCredentials,
)
from lambdas.contracts.settings import CopySettings
from lambdas.copying.digests import crc64nvme, crc64nvme_b64
from lambdas.copying.engine import META_SOURCE_ETAG, META_SOURCE_SIZE, META_VERIFIED, copy_batch, part_size_for
from teacopy_local.moto_adapters import LocalContext

MIB = 1024**2
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SRC, DEST, STAGING = "daac-archive", "my-dest", "my-staging"
PREFIX = "copied/"

SETTINGS = CopySettings(
    staging_bucket=STAGING,
    credentials_secret_id="teacopy/tea-credentials",
    source_region="us-west-2",
    safety_margin_seconds=300,
    part_size_bytes=5 * MIB,
    multipart_threshold_bytes=5 * MIB,
    inflight_parts=2,
    object_concurrency=2,
    deadline_reserve_seconds=10,
)
SERIAL = CopySettings(**{**SETTINGS.__dict__, "object_concurrency": 1})


def creds(expires_in: timedelta = timedelta(hours=1)) -> TeaCredentials:
    return TeaCredentials(
        access_key_id="ASIAFAKE",
        secret_access_key="fake-secret",
        session_token="fake-token",
        expiration=NOW + expires_in,
    )


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Env:
    def __init__(self) -> None:
        self.source = boto3.client("s3", region_name="us-west-2")
        self.dest = boto3.client("s3", region_name="us-east-1")
        self.staging = boto3.client("s3", region_name="us-east-1")
        self.source.create_bucket(Bucket=SRC, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        self.dest.create_bucket(Bucket=DEST)
        self.dest.create_bucket(Bucket=STAGING)
        self.admin = boto3.client("s3", region_name="us-east-1")  # setup and inspection: not counted
        self.dest_calls: Counter[str] = Counter()
        self.source_calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.dest.meta.events.register("before-call.s3", self._count(self.dest_calls))
        self.source.meta.events.register("before-call.s3", self._count(self.source_calls))
        self.data: dict[str, bytes] = {}

    def _count(self, counter: Counter[str]) -> Callable[..., None]:
        def hook(model: Any, **_: Any) -> None:
            with self._lock:
                counter[model.name] += 1

        return hook

    def put_source(self, key: str, data: bytes, **extra: Any) -> None:
        self.data[key] = data
        self.admin.put_object(Bucket=SRC, Key=key, Body=data, **extra)

    def event(
        self,
        keys: list[str],
        *,
        run_id: str = "run-1",
        batch_id: str = "b0001",
        overwrite: str = "skip-if-identical",
        checksums: dict[str, Checksum] | None = None,
    ) -> CopyBatchEvent:
        specs = tuple(ObjectSpec(key=k, checksum=(checksums or {}).get(k)) for k in keys)
        return CopyBatchEvent(
            run_id=run_id,
            batch=Batch(batch_id=batch_id, source_bucket=SRC, objects=specs),
            destination=Destination(bucket=DEST, prefix=PREFIX),
            credentials=CredentialsRef(version="v1", expiration=(NOW + timedelta(hours=1)).isoformat()),
            options=CopyOptions(overwrite=overwrite),
        )

    def run(
        self,
        event: CopyBatchEvent,
        *,
        settings: CopySettings = SETTINGS,
        source: Any = None,
        dest: Any = None,
        credentials: TeaCredentials | None = None,
        clock: Callable[[], datetime] = lambda: NOW,
        remaining_ms: Callable[[], int] = lambda: 900_000,
        stream: Any = None,
    ) -> dict[str, Any]:
        return copy_batch(
            event,
            settings=settings,
            source_s3=source or self.source,
            dest_s3=dest or self.dest,
            staging_s3=self.staging,
            dest_stream_s3=stream,
            credentials=credentials or creds(),
            clock=clock,
            remaining_ms=remaining_ms,
        )

    def result_files(self, run_id: str = "run-1", batch_id: str = "b0001") -> list[list[dict[str, Any]]]:
        prefix = staging.results_prefix(run_id, batch_id)
        return [
            staging.get_json(self.staging, STAGING, k) for k in sorted(staging.list_keys(self.staging, STAGING, prefix))
        ]

    def results(self, run_id: str = "run-1", batch_id: str = "b0001") -> dict[str, dict[str, Any]]:
        entries = [e for f in self.result_files(run_id, batch_id) for e in f]
        by_key = {e["key"]: e for e in entries}
        assert len(by_key) == len(entries), "an object was reported twice"
        return by_key

    def dest_body(self, key: str) -> bytes:
        body: bytes = self.admin.get_object(Bucket=DEST, Key=PREFIX + key)["Body"].read()
        return body

    def dest_exists(self, key: str) -> bool:
        try:
            self.admin.head_object(Bucket=DEST, Key=PREFIX + key)
            return True
        except ClientError:
            return False

    def uploads(self) -> list[Any]:
        return list(self.admin.list_multipart_uploads(Bucket=DEST).get("Uploads", []))


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class Wrapped:
    """A thin stand-in for an S3 client: overrides some methods, delegates the rest."""

    def __init__(self, client: Any, **overrides: Callable[..., Any]) -> None:
        self._client = client
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._client, name)


class FailingBody:
    """A GetObject body that raises a streaming error after ``fail_after`` bytes."""

    def __init__(self, body: Any, fail_after: int) -> None:
        self._body, self._left = body, fail_after

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            raise ResponseStreamingError(error="connection reset by peer")
        chunk: bytes = self._body.read(min(amt or self._left, self._left))
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._body.close()


# --- copies -----------------------------------------------------------------------------------------


def test_small_copy_is_identical_with_metadata_and_crc64nvme(env: Env) -> None:
    for i in range(3):
        env.put_source(f"g/{i}.nc", blob(1000 + i, i), ContentType="application/x-netcdf")

    out = env.run(env.event(["g/0.nc", "g/1.nc", "g/2.nc"]))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 3,
        "skipped": 0,
        "failed": 0,
        "bytes": 3003,
        "parts": 0,
        "refresh": False,
    }
    for i in range(3):
        key = f"g/{i}.nc"
        assert env.dest_body(key) == env.data[key]
        head = env.admin.head_object(Bucket=DEST, Key=PREFIX + key, ChecksumMode="ENABLED")
        source_etag = env.admin.head_object(Bucket=SRC, Key=key)["ETag"]
        assert head["Metadata"] == {META_SOURCE_ETAG: source_etag, META_SOURCE_SIZE: str(1000 + i)}
        assert source_etag.startswith('"')  # recorded exactly as S3 returns it
        # S3 stores (and verified) the full-object CRC64NVME the engine computed while streaming
        assert head["ChecksumCRC64NVME"] == crc64nvme_b64(crc64nvme(env.data[key]))
        assert head["ContentType"] == "application/x-netcdf"
    # GET + PUT per small object, and one LIST for the batch: the empty destination needs no HEAD
    assert env.dest_calls == {"ListObjectsV2": 1, "PutObject": 3}
    assert env.source_calls == {"GetObject": 3}
    files = env.result_files()
    assert len(files) == 1
    assert sorted(e["key"] for e in files[0]) == ["g/0.nc", "g/1.nc", "g/2.nc"]
    assert {e["status"] for e in files[0]} == {"copied"}
    assert files[0][0]["dest_key"].startswith(PREFIX)


def test_multipart_copy_is_identical_and_leaves_no_upload(env: Env) -> None:
    big = blob(12 * MIB + 123, 7)
    env.put_source("big.h5", big)
    env.put_source("small.txt", b"tiny")

    out = env.run(env.event(["big.h5", "small.txt"]))

    assert out["done"] and out["copied"] == 2 and out["bytes"] == len(big) + 4
    assert env.dest_body("big.h5") == big
    head = env.admin.head_object(Bucket=DEST, Key=PREFIX + "big.h5")
    assert head["ETag"].endswith('-3"')  # 5 + 5 + 2 MiB
    assert head["Metadata"][META_SOURCE_SIZE] == str(len(big))
    assert env.dest_calls["UploadPart"] == 3
    assert env.dest_calls["CompleteMultipartUpload"] == 1
    assert env.uploads() == []


def test_concurrent_mixed_batch_records_everything_once(env: Env) -> None:
    keys = [f"mix/{i}" for i in range(8)]
    for i, key in enumerate(keys):
        env.put_source(key, blob(11 * MIB if i in (1, 4) else 100 * i, i))
    settings = CopySettings(**{**SETTINGS.__dict__, "object_concurrency": 4})

    out = env.run(env.event(keys), settings=settings)

    assert out["done"] and out["copied"] == 8 and out["bytes"] == sum(len(env.data[k]) for k in keys)
    assert all(env.dest_body(k) == env.data[k] for k in keys)
    files = env.result_files()
    assert len(files) == 1 and sorted(e["key"] for e in files[0]) == keys
    assert env.uploads() == []


def test_long_batch_records_progress_while_running(env: Env) -> None:
    keys = [f"p/{i:03d}" for i in range(60)]
    for key in keys:
        env.put_source(key, key.encode())
    out = env.run(env.event(keys), settings=SERIAL)
    assert out["copied"] == 60
    files = env.result_files()
    # written while running (about every FLUSH_EVERY_OBJECTS objects, in the background), the rest on exit;
    # none twice
    assert len(files) >= 3 and all(files) and sum(len(f) for f in files) == 60
    assert sorted(env.results()) == keys


def test_expiry_wins_over_a_sibling_transient_error(env: Env) -> None:
    for key in ("a", "b", "c"):
        env.put_source(key, key.encode())
    ticks = iter(range(100))

    def clock() -> datetime:  # a and b start with time to spare, c would start too late
        return NOW + timedelta(minutes=30 * next(ticks))

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "b":
            raise client_error("ServiceUnavailable", 503, "GetObject")
        return env.source.get_object(**kw)

    out = env.run(env.event(["a", "b", "c"]), source=Wrapped(env.source, get_object=get_object), clock=clock)

    # progress was made (a): ask for fresh credentials without spending a counted refresh round
    assert out["refresh"] is True and out["done"] is False and out["copied"] == 1
    assert sorted(env.results()) == ["a"]


def test_part_size_grows_to_stay_within_10000_parts() -> None:
    assert part_size_for(12 * MIB, 5 * MIB) == 5 * MIB
    assert part_size_for(100 * MIB, 16 * MIB) == 16 * MIB
    assert part_size_for(10, 1) == 5 * MIB  # never below S3's minimum
    size = 5 * 1024**4  # 5 TiB, S3's largest object
    part = part_size_for(size, 16 * MIB)
    assert part % MIB == 0 and -(-size // part) <= 10_000 and part > 16 * MIB


# --- resume and overwrite policies ------------------------------------------------------------------


def test_rerun_of_the_same_run_does_nothing(env: Env) -> None:
    env.put_source("a", b"aaa")
    env.run(env.event(["a"]))
    env.dest_calls.clear()

    out = env.run(env.event(["a"]))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 0,
        "skipped": 0,
        "failed": 0,
        "bytes": 0,
        "parts": 0,
        "refresh": False,
    }
    assert env.dest_calls == {}
    assert len(env.result_files()) == 1  # never an empty result file


def test_new_run_skips_identical_objects_without_transfer(env: Env) -> None:
    env.put_source("a", b"aaa")
    env.put_source("big", blob(12 * MIB, 3))
    env.run(env.event(["a", "big"]))
    env.dest_calls.clear()
    env.source_calls.clear()

    out = env.run(env.event(["a", "big"], run_id="run-2"))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 0,
        "skipped": 2,
        "failed": 0,
        "bytes": 0,
        "parts": 0,
        "refresh": False,
    }
    assert env.dest_calls == {"ListObjectsV2": 1, "HeadObject": 2}  # no PutObject, no multipart
    assert env.source_calls == {"GetObject": 2}  # conditional GETs answered 304
    results = env.results("run-2")
    assert {r["status"] for r in results.values()} == {"skipped"}
    assert results["a"]["reason"] == "identical"


def test_changed_source_is_copied_again(env: Env) -> None:
    env.put_source("a", b"old")
    env.run(env.event(["a"]))
    env.put_source("a", b"new!")

    out = env.run(env.event(["a"], run_id="run-2"))

    assert out["copied"] == 1
    assert env.dest_body("a") == b"new!"


def test_never_policy_skips_existing_objects(env: Env) -> None:
    env.put_source("a", b"source a")
    env.put_source("b", b"source b")
    env.admin.put_object(Bucket=DEST, Key=PREFIX + "a", Body=b"theirs")

    out = env.run(env.event(["a", "b"], overwrite="never"))

    assert out["copied"] == 1 and out["skipped"] == 1
    assert env.dest_body("a") == b"theirs"
    assert env.dest_body("b") == b"source b"
    assert env.results()["a"]["reason"] == "exists"


def test_always_policy_copies_without_head(env: Env) -> None:
    env.put_source("a", b"source a")
    env.run(env.event(["a"]))
    env.dest_calls.clear()

    out = env.run(env.event(["a"], run_id="run-2", overwrite="always"))

    assert out["copied"] == 1
    assert env.dest_calls == {"PutObject": 1}


def test_skip_if_identical_overwrites_a_foreign_object(env: Env) -> None:
    env.put_source("a", b"source a")
    env.admin.put_object(Bucket=DEST, Key=PREFIX + "a", Body=b"source a")  # no teacopy metadata

    out = env.run(env.event(["a"]))

    assert out["copied"] == 1
    assert env.source_calls == {"GetObject": 1}


# --- per-object failures ----------------------------------------------------------------------------


def test_missing_source_key_fails_that_object_only(env: Env) -> None:
    env.put_source("a", b"a")
    env.put_source("c", b"c")

    out = env.run(env.event(["a", "missing", "c"]))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 2,
        "skipped": 0,
        "failed": 1,
        "bytes": 2,
        "parts": 0,
        "refresh": False,
    }
    failed = env.results()["missing"]
    assert failed["status"] == "failed"
    assert failed["reason"] == f"source NoSuchKey: s3://{SRC}/missing does not exist"
    assert not env.dest_exists("missing")


def test_source_access_denied_fails_that_object_only(env: Env) -> None:
    env.put_source("a", b"a")
    env.put_source("b", b"b")

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "b":
            raise client_error("AccessDenied", 403, "GetObject")
        return env.source.get_object(**kw)

    out = env.run(env.event(["a", "b"]), source=Wrapped(env.source, get_object=get_object))

    assert out["copied"] == 1 and out["failed"] == 1
    assert env.results()["b"]["reason"].startswith("source AccessDenied: ")


def test_persistent_size_mismatch_is_reported_failed(env: Env) -> None:
    env.put_source("a", b"0123456789")
    env.put_source("b", b"b")

    def get_object(**kw: Any) -> Any:
        response = env.source.get_object(**kw)
        if kw["Key"] == "a":
            response["ContentLength"] = 5  # the stream carries more than announced
        return response

    out = env.run(env.event(["a", "b"]), source=Wrapped(env.source, get_object=get_object))

    assert out["failed"] == 1 and out["copied"] == 1
    assert "size mismatch" in env.results()["a"]["reason"]
    assert env.source_calls["GetObject"] == 3  # "a" tried twice
    assert not env.dest_exists("a")


# --- credentials ------------------------------------------------------------------------------------


def test_credentials_within_margin_stop_before_any_copy(env: Env) -> None:
    env.put_source("a", b"a")

    with pytest.raises(CredentialsExpired) as info:
        env.run(env.event(["a"]), credentials=creds(timedelta(seconds=200)))

    assert "fake" not in str(info.value) and "ASIA" not in str(info.value)
    assert env.dest_calls == {} and env.source_calls == {}
    assert env.result_files() == []


def test_credentials_expiring_mid_batch_keep_finished_objects(env: Env) -> None:
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        env.put_source(key, key.encode())
    ticks = iter(range(100))

    def clock() -> datetime:  # 30 minutes per object started: the 3rd sees 0 s left
        return NOW + timedelta(minutes=30 * next(ticks))

    out = env.run(env.event(keys), clock=clock)

    assert out["refresh"] is True and out["done"] is False
    assert sorted(env.results()) == ["k0", "k1"]
    out = env.run(env.event(keys), credentials=creds(timedelta(hours=1)))
    assert out["copied"] == 2 and out["done"]
    assert sorted(env.results()) == keys


def test_expired_token_from_s3_then_resume_with_fresh_credentials(env: Env) -> None:
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        env.put_source(key, key.encode() * 10)
    calls = Counter[str]()

    def get_object(**kw: Any) -> Any:
        calls["get"] += 1
        if calls["get"] >= 3:
            raise client_error("ExpiredToken", 400, "GetObject")
        return env.source.get_object(**kw)

    first = env.run(env.event(keys), settings=SERIAL, source=Wrapped(env.source, get_object=get_object))

    assert first["refresh"] is True and first["copied"] == 2
    assert sorted(env.results()) == ["k0", "k1"]
    # without progress, S3's ExpiredToken is raised: a counted refresh round of the state machine
    with pytest.raises(CredentialsExpired) as info:
        env.run(env.event(keys), settings=SERIAL, source=Wrapped(env.source, get_object=get_object))
    assert "ExpiredToken" in str(info.value) and f"s3://{SRC}/k2" in str(info.value)
    env.source_calls.clear()

    out = env.run(env.event(keys))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 3,
        "skipped": 0,
        "failed": 0,
        "bytes": 60,
        "parts": 0,
        "refresh": False,
    }
    assert env.source_calls == {"GetObject": 3}
    assert sorted(env.results()) == keys
    assert len(env.result_files()) == 2


# --- deadline ---------------------------------------------------------------------------------------


def test_deadline_returns_not_done_then_continuation_finishes(env: Env) -> None:
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        env.put_source(key, b"x")

    # Below the 10 s reserve but above the hard floor: the first object still runs.
    first = env.run(env.event(keys), remaining_ms=lambda: 6_000)

    assert first["done"] is False and first["copied"] == 1
    second = env.run(env.event(keys))
    assert second["done"] is True and second["copied"] == 3
    assert sorted(env.results()) == keys


def test_hard_deadline_with_no_part_done_fails_the_object_and_never_loops(env: Env) -> None:
    env.put_source("big", blob(12 * MIB, 1))

    def failing_upload_part(**kw: Any) -> Any:
        time.sleep(0.4)
        raise client_error("RequestTimeout", 400, "UploadPart")

    out = env.run(
        env.event(["big"]),
        dest=Wrapped(env.dest, upload_part=failing_upload_part),
        remaining_ms=lambda: 1_000,
    )

    # Not one part could finish in a whole invocation: a continuation would only start over, forever.
    # The object is reported failed (bounded loop) and the upload is aborted: nothing half-written.
    assert out["done"] is True and out["failed"] == 1 and out["parts"] == 0
    assert env.uploads() == []
    assert not env.dest_exists("big")
    assert "too large for one invocation" in env.results()["big"]["reason"]


# --- objects spanning invocations (checkpointed multipart uploads) ---------------------------------

PART = 5 * MIB
BIG = 23 * MIB + 17  # 5 parts of 5 MiB: 5 + 5 + 5 + 5 + 3


def checkpoints(env: Env) -> list[dict[str, Any]]:
    prefix = staging.uploads_prefix("run-1")
    return [staging.get_json(env.staging, STAGING, k) for k in staging.list_keys(env.staging, STAGING, prefix)]


def counting_get(env: Env, ranges: list[str | None]) -> Callable[..., Any]:
    def get_object(**kw: Any) -> Any:
        ranges.append(kw.get("Range"))
        return env.source.get_object(**kw)

    return get_object


def test_object_too_large_for_one_invocation_continues_from_its_checkpoint(env: Env) -> None:
    data = blob(BIG, 11)
    env.put_source("huge.nc", data)
    ranges: list[str | None] = []
    source = Wrapped(env.source, get_object=counting_get(env, ranges))

    def slow_upload_part(**kw: Any) -> Any:
        time.sleep(0.15)
        return env.dest.upload_part(**kw)

    dest = Wrapped(env.dest, upload_part=slow_upload_part)
    outs = []
    for _ in range(10):  # bounded: each invocation may upload ~2 parts before its (shrunken) deadline
        budget = env.dest_calls["UploadPart"] + 2
        out = env.run(
            env.event(["huge.nc"]),
            source=source,
            dest=dest,
            remaining_ms=lambda b=budget: 900_000 if env.dest_calls["UploadPart"] < b else 1_000,  # type: ignore[misc]
        )
        outs.append(out)
        if out["done"]:
            break
        # between invocations the upload stays open and its checkpoint names the parts done so far
        (checkpoint,) = checkpoints(env)
        assert len(env.uploads()) == 1 and not env.dest_exists("huge.nc")
        assert [p["PartNumber"] for p in checkpoint["parts"]] == list(range(1, len(checkpoint["parts"]) + 1))

    assert len(outs) >= 2, "the test must really span invocations"
    assert all(not o["done"] and o["parts"] > 0 for o in outs[:-1])
    assert outs[-1]["copied"] == 1 and outs[-1]["bytes"] == BIG
    assert env.dest_body("huge.nc") == data
    head = env.admin.head_object(Bucket=DEST, Key=PREFIX + "huge.nc", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-5"')
    assert head["ChecksumCRC64NVME"] == crc64nvme_b64(crc64nvme(data))  # the running CRC survived the pauses
    # every part uploaded once, every byte downloaded once: each invocation resumed where the last stopped
    assert env.dest_calls["UploadPart"] == 5 and env.dest_calls["CreateMultipartUpload"] == 1
    assert ranges[0] is None and all(r is not None and r.startswith("bytes=") for r in ranges[1:])
    assert [int(r[6:-1]) % PART for r in ranges[1:] if r] == [0] * (len(ranges) - 1)
    assert env.uploads() == [] and checkpoints(env) == []
    assert env.results()["huge.nc"]["status"] == "copied"


def test_expiry_in_the_middle_of_an_object_resumes_from_the_last_part(env: Env) -> None:
    data = blob(BIG, 12)
    env.put_source("huge.nc", data)
    ranges: list[str | None] = []
    source = Wrapped(env.source, get_object=counting_get(env, ranges))

    def clock() -> datetime:  # the credentials near expiry once two parts are uploaded
        return NOW + (timedelta(minutes=56) if env.dest_calls["UploadPart"] >= 2 else timedelta(0))

    first = env.run(env.event(["huge.nc"]), settings=SERIAL, source=source, clock=clock)

    assert first["refresh"] is True and first["done"] is False and first["parts"] >= 2
    (checkpoint,) = checkpoints(env)
    done_parts = len(checkpoint["parts"])
    assert done_parts >= 2 and len(env.uploads()) == 1

    second = env.run(env.event(["huge.nc"]), settings=SERIAL, source=source, credentials=creds(timedelta(hours=2)))

    assert second["done"] is True and second["copied"] == 1
    assert ranges[-1] == f"bytes={done_parts * PART}-"  # from the last completed part, not from zero
    assert env.dest_calls["UploadPart"] == 5
    assert env.dest_body("huge.nc") == data
    assert env.uploads() == [] and checkpoints(env) == []


def test_expected_checksum_is_verified_across_invocations(env: Env) -> None:
    data = blob(BIG, 13)
    env.put_source("huge.nc", data)
    expected = Checksum("SHA-512", hashlib.sha512(data).hexdigest())
    event = env.event(["huge.nc"], checksums={"huge.nc": expected})

    def clock() -> datetime:
        return NOW + (timedelta(minutes=56) if env.dest_calls["UploadPart"] >= 2 else timedelta(0))

    assert env.run(event, settings=SERIAL, clock=clock)["refresh"] is True
    assert len(checkpoints(env)) == 1  # the SHA-512 state is in the checkpoint, not recomputed
    out = env.run(event, settings=SERIAL)

    assert out["copied"] == 1
    head = env.admin.head_object(Bucket=DEST, Key=PREFIX + "huge.nc")
    assert head["Metadata"][META_VERIFIED] == f"SHA-512:{expected.value}"


@pytest.mark.parametrize("size", [1000, BIG], ids=["single-put", "multipart"])
def test_checksum_mismatch_aborts_and_reports_the_object_failed(env: Env, size: int) -> None:
    data = blob(size, 14)
    env.put_source("bad.nc", data)
    env.put_source("good.nc", b"fine")
    wrong = Checksum("MD5", hashlib.md5(data + b"!", usedforsecurity=False).hexdigest())
    right = Checksum("SHA-256", hashlib.sha256(b"fine").hexdigest())

    out = env.run(env.event(["bad.nc", "good.nc"], checksums={"bad.nc": wrong, "good.nc": right}))

    assert out["failed"] == 1 and out["copied"] == 1
    reason = env.results()["bad.nc"]["reason"]
    assert "checksum mismatch" in reason and wrong.value in reason and "MD5" in reason
    assert not env.dest_exists("bad.nc")  # nothing at the destination key
    assert env.uploads() == [] and checkpoints(env) == []
    assert env.admin.head_object(Bucket=DEST, Key=PREFIX + "good.nc")["Metadata"][META_VERIFIED] == (
        f"SHA-256:{right.value}"
    )


def test_planned_size_mismatch_fails_the_object(env: Env) -> None:
    env.put_source("a.nc", b"12345")
    event = env.event(["a.nc"])
    event = CopyBatchEvent(
        run_id=event.run_id,
        batch=Batch("b0001", SRC, (ObjectSpec("a.nc", size=6),)),
        destination=event.destination,
        credentials=event.credentials,
    )

    out = env.run(event)

    assert out["failed"] == 1
    assert "size mismatch: the plan says 6 bytes, the source has 5" in env.results()["a.nc"]["reason"]
    assert not env.dest_exists("a.nc")


def test_source_changed_between_invocations_restarts_the_object(env: Env) -> None:
    env.put_source("huge.nc", blob(BIG, 15))

    def clock() -> datetime:
        return NOW + (timedelta(minutes=56) if env.dest_calls["UploadPart"] >= 2 else timedelta(0))

    assert env.run(env.event(["huge.nc"]), settings=SERIAL, clock=clock)["refresh"] is True
    new = blob(BIG - 1, 16)
    env.put_source("huge.nc", new)  # the DAAC reprocessed the granule meanwhile

    out = env.run(env.event(["huge.nc"]), settings=SERIAL)

    assert out["copied"] == 1 and out["bytes"] == BIG - 1
    assert env.dest_body("huge.nc") == new
    assert env.uploads() == [] and checkpoints(env) == []


# --- multipart failures -----------------------------------------------------------------------------


def test_broken_source_stream_is_reopened_at_the_current_part(env: Env) -> None:
    data = blob(12 * MIB, 2)
    env.put_source("big", data)
    ranges: list[str | None] = []

    def get_object(**kw: Any) -> Any:
        ranges.append(kw.get("Range"))
        response = env.source.get_object(**kw)
        if len(ranges) == 1:
            response["Body"] = FailingBody(response["Body"], 7 * MIB)  # connection reset inside part 2
        return response

    out = env.run(env.event(["big"]), source=Wrapped(env.source, get_object=get_object))

    assert out["copied"] == 1
    assert ranges == [None, f"bytes={5 * MIB}-"]
    assert env.dest_body("big") == data
    assert env.dest_calls["UploadPart"] == 3 and env.dest_calls["AbortMultipartUpload"] == 0


def test_part_upload_failure_pauses_and_the_retry_resumes(env: Env) -> None:
    data = blob(12 * MIB, 4)
    env.put_source("big", data)
    fail = {"on": True}

    def upload_part(**kw: Any) -> Any:
        if fail["on"] and kw["PartNumber"] == 2:
            raise client_error("InternalError", 500, "UploadPart")
        return env.dest.upload_part(**kw)

    with pytest.raises(TransientCopyError):
        env.run(env.event(["big"]), settings=SERIAL, dest=Wrapped(env.dest, upload_part=upload_part))

    # kept for the retry Step Functions makes: the upload with part 1, and its checkpoint
    assert len(env.uploads()) == 1 and not env.dest_exists("big")
    (checkpoint,) = checkpoints(env)
    assert [p["PartNumber"] for p in checkpoint["parts"]] == [1]
    assert env.result_files() == []

    fail["on"] = False
    env.dest_calls.clear()
    out = env.run(env.event(["big"]), settings=SERIAL, dest=Wrapped(env.dest, upload_part=upload_part))

    assert out["copied"] == 1 and env.dest_calls["UploadPart"] == 2  # parts 2 and 3 only
    assert env.dest_body("big") == data
    assert env.uploads() == [] and checkpoints(env) == []


def test_part_that_never_uploads_fails_the_object_after_bounded_invocations(env: Env) -> None:
    env.put_source("big", blob(12 * MIB, 5))
    env.put_source("small", b"ok")

    def upload_part(**kw: Any) -> Any:
        if kw["PartNumber"] == 2:
            raise client_error("InternalError", 500, "UploadPart")
        return env.dest.upload_part(**kw)

    dest = Wrapped(env.dest, upload_part=upload_part)
    attempts = 0
    while attempts < 10:  # what Step Functions' bounded retries would do
        attempts += 1
        try:
            out = env.run(env.event(["big", "small"]), settings=SERIAL, dest=dest)
            break
        except TransientCopyError:
            continue

    assert attempts == 4  # progress once (part 1), then 3 invocations without a new part
    assert out["failed"] == 1 and out["copied"] == 1
    assert "no part of 5242880 bytes completed in 3 consecutive invocations" in env.results()["big"]["reason"]
    assert env.uploads() == [] and checkpoints(env) == [] and not env.dest_exists("big")


def test_truncated_small_body_is_transient(env: Env) -> None:
    env.put_source("a", b"0123456789")

    def get_object(**kw: Any) -> Any:
        response = env.source.get_object(**kw)
        response["ContentLength"] = 20  # the stream ends before the announced length
        return response

    with pytest.raises(TransientCopyError, match="ended after 10 of 20 bytes"):
        env.run(env.event(["a"]), source=Wrapped(env.source, get_object=get_object))

    assert not env.dest_exists("a")


def test_source_throttling_is_transient_and_keeps_finished_objects(env: Env) -> None:
    env.put_source("a", b"a")
    env.put_source("b", b"b")

    def get_object(**kw: Any) -> Any:
        if kw["Key"] == "b":
            raise client_error("SlowDown", 503, "GetObject")
        return env.source.get_object(**kw)

    with pytest.raises(TransientCopyError):
        env.run(env.event(["a", "b"]), settings=SERIAL, source=Wrapped(env.source, get_object=get_object))

    assert sorted(env.results()) == ["a"]


# --- destination access -----------------------------------------------------------------------------


def test_destination_head_forbidden_is_access_denied(env: Env) -> None:
    env.put_source("a", b"a")
    env.admin.put_object(Bucket=DEST, Key=PREFIX + "a", Body=b"older")  # listed: so it is HEADed

    def head_object(**kw: Any) -> Any:
        raise client_error("403", 403, "HeadObject")

    with pytest.raises(DestinationAccessDenied) as info:
        env.run(env.event(["a"]), dest=Wrapped(env.dest, head_object=head_object))

    assert f"s3://{DEST}/{PREFIX}" in str(info.value)
    assert env.result_files() == []


def test_destination_put_denied_is_access_denied(env: Env) -> None:
    env.put_source("a", b"a")

    def put_object(**kw: Any) -> Any:
        raise client_error("AccessDenied", 403, "PutObject")

    with pytest.raises(DestinationAccessDenied, match="PutObject"):
        env.run(env.event(["a"], overwrite="always"), dest=Wrapped(env.dest, put_object=put_object))


# --- the thin handler (lambdas/handlers/copy_batch.py) ------------------------------------------------


def test_handler_wires_settings_credentials_and_clients(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEACOPY_STAGING_BUCKET", STAGING)
    monkeypatch.setenv("TEACOPY_CREDENTIALS_SECRET_ID", "teacopy/tea-credentials")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # A fresh import reads this environment; teardown restores sys.modules as it was.
    monkeypatch.setitem(sys.modules, "lambdas.handlers.copy_batch", types.ModuleType("placeholder"))
    del sys.modules["lambdas.handlers.copy_batch"]
    handler = importlib.import_module("lambdas.handlers.copy_batch")
    requested: list[str] = []

    class FakeCache:
        def get(self, version: str) -> TeaCredentials:
            requested.append(version)
            return TeaCredentials("ASIAFAKE", "fake-secret", "fake-token", datetime.now(UTC) + timedelta(hours=1))

    monkeypatch.setattr(handler, "_CACHES", {"default": FakeCache()})
    env.put_source("a", b"abc")
    event = env.event(["a"])
    payload = {
        "run_id": event.run_id,
        "batch": event.batch.to_dict(),
        "destination": event.destination.to_dict(),
        "credentials": event.credentials.to_dict(),
    }

    out = handler.lambda_handler(payload, LocalContext("copy-batch", 600, 1024))

    assert out == {
        "batch_id": "b0001",
        "done": True,
        "copied": 1,
        "skipped": 0,
        "failed": 0,
        "bytes": 3,
        "parts": 0,
        "refresh": False,
    }
    assert requested == ["v1"]
    assert env.dest_body("a") == b"abc"
    assert handler._SOURCE_CLIENTS[("default", "v1")].meta.region_name == "us-west-2"


# --- dry run ------------------------------------------------------------------------------------------


def test_dry_run_heads_only_and_writes_nothing_to_the_destination(env: Env) -> None:
    env.put_source("new.nc", b"new data")
    env.put_source("same.nc", b"same")
    env.put_source("changed.nc", b"v1")
    env.put_source("gone-wrong.nc", b"12345")
    env.run(env.event(["same.nc", "changed.nc"], run_id="earlier"))
    env.put_source("changed.nc", b"v2 is longer")
    env.dest_calls.clear()
    env.source_calls.clear()
    event = env.event(["new.nc", "same.nc", "changed.nc", "gone-wrong.nc", "missing.nc"])
    specs = tuple(ObjectSpec(o.key, size=6 if o.key == "gone-wrong.nc" else None) for o in event.batch.objects)
    event = CopyBatchEvent(
        run_id="dry",
        batch=Batch("b0001", SRC, specs),
        destination=event.destination,
        credentials=event.credentials,
        options=CopyOptions(dry_run=True),
    )

    out = env.run(event)

    assert (out["would_copy"], out["would_skip"], out["failed"], out["copied"]) == (2, 1, 2, 0)
    assert out["bytes_to_copy"] == len(b"new data") + len(b"v2 is longer")
    results = env.results("dry")
    assert {k: r["status"] for k, r in results.items()} == {
        "new.nc": "would_copy",
        "same.nc": "would_skip",
        "changed.nc": "would_copy",
        "gone-wrong.nc": "failed",
        "missing.nc": "failed",
    }
    assert "size mismatch" in results["gone-wrong.nc"]["reason"]
    assert "does not exist" in results["missing.nc"]["reason"]
    # only HEADs: nothing read, nothing written
    assert set(env.dest_calls) == {"ListObjectsV2", "HeadObject"} and set(env.source_calls) == {"HeadObject"}
    assert env.admin.get_object(Bucket=DEST, Key=PREFIX + "changed.nc")["Body"].read() == b"v1"
    assert not env.dest_exists("new.nc")


def test_listing_failure_or_a_crowded_prefix_falls_back_to_head(env: Env) -> None:
    env.put_source("a", b"a")

    def denied_paginator(name: str) -> Any:
        raise client_error("AccessDenied", 403, "ListObjectsV2")

    out = env.run(env.event(["a"]), dest=Wrapped(env.dest, get_paginator=denied_paginator))

    assert out["copied"] == 1 and env.dest_calls["HeadObject"] == 1  # HEAD per object, as without a listing
    for i in range(2001):  # more than LIST_MAX_PAGES pages of keys under the batch's common prefix
        env.admin.put_object(Bucket=DEST, Key=f"{PREFIX}crowd/{i:05d}", Body=b"")
    env.put_source("crowd/a-new", b"n")
    env.put_source("crowd/b-new", b"m")
    env.dest_calls.clear()

    out = env.run(env.event(["crowd/a-new", "crowd/b-new"], run_id="run-2"))  # common prefix: copied/crowd/

    assert out["copied"] == 2 and env.dest_calls["HeadObject"] == 2 and env.dest_calls["ListObjectsV2"] == 2
