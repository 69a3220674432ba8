"""The copy engine's pieces on their own, with in-memory fakes (the whole engine against moto:
tests/integration/test_copy_engine.py): error classification of both buckets, the source stream's
re-open, checkpoints, the result log's flushing and the batch's choice among several errors."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError

from lambdas.contracts import env_names, staging
from lambdas.contracts.errors import CredentialsExpired, DestinationAccessDenied, TransientCopyError
from lambdas.contracts.models import COPIED, Checksum, ObjectResult, ObjectSpec
from lambdas.contracts.settings import CopySettings
from lambdas.copying.batch import (
    NETWORK_BYTES_PER_SECOND,
    STREAMS_IN_FLIGHT,
    DownloadGate,
    Pace,
    error_rank,
    is_fatal,
    unique,
)
from lambdas.copying.checkpoints import Checkpoint, CheckpointStore
from lambdas.copying.destination import DestinationBucket, ExistingKeys
from lambdas.copying.digests import StreamDigest
from lambdas.copying.objects import META_SOURCE_ETAG, META_SOURCE_SIZE, META_VERIFIED, etag_md5, recorded_etag
from lambdas.copying.results import FLUSH_EVERY_OBJECTS, ResultLog
from lambdas.copying.signals import IntegrityError, ObjectFailed
from lambdas.copying.source import SourceBucket
from lambdas.copying.stream import MAX_STREAM_REOPENS, STREAM_PIECE_BYTES, SourceStream, VerifiedBody

MIB = 1024**2
STAGING = "staging"


def client_error(code: str, status: int, operation: str = "Op") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} message"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


class FakeS3:
    """An in-memory S3 client: objects, a call log, and errors to raise per operation."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, ClientError] = {}

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append((operation, params))
        if operation in self.fail:
            raise self.fail[operation]

    def put_object(self, **params: Any) -> dict[str, Any]:
        self._call("PutObject", params)
        self.objects[params["Bucket"], params["Key"]] = params["Body"]
        return {}

    def get_object(self, **params: Any) -> dict[str, Any]:
        self._call("GetObject", params)
        return {"Body": io.BytesIO(self.objects[params["Bucket"], params["Key"]])}

    def delete_object(self, **params: Any) -> dict[str, Any]:
        self._call("DeleteObject", params)
        self.objects.pop((params["Bucket"], params["Key"]), None)
        return {}

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        self._call("AbortMultipartUpload", params)
        return {}

    def get_paginator(self, _name: str) -> FakeS3:
        return self

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        self._call("ListObjectsV2", params)
        keys = sorted(k for b, k in self.objects if b == params["Bucket"] and k.startswith(params["Prefix"]))
        yield {"Contents": [{"Key": k} for k in keys], "IsTruncated": False}

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]


# --- the two buckets' errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind", "words"),
    [
        ("ExpiredToken", 400, CredentialsExpired, "rejected the TEA credentials (ExpiredToken)"),
        ("InvalidToken", 400, CredentialsExpired, "rejected the TEA credentials"),
        ("NoSuchKey", 404, ObjectFailed, "source NoSuchKey: s3://daac/k does not exist"),
        ("AccessDenied", 403, ObjectFailed, "not readable with these TEA credentials"),
        ("SlowDown", 503, TransientCopyError, "source SlowDown (HTTP 503)"),
        ("Weird", 502, TransientCopyError, "source Weird (HTTP 502)"),
        ("InvalidRange", 416, ObjectFailed, "InvalidRange message"),
    ],
)
def test_source_errors_are_classified(code: str, status: int, kind: type[Exception], words: str) -> None:
    error = SourceBucket(FakeS3(), "daac").error(client_error(code, status), "s3://daac/k")
    assert type(error) is kind and words in str(error)


def test_conditional_source_gets_mean_identical_or_changed() -> None:
    client = FakeS3()
    source = SourceBucket(client, "daac")
    client.fail["GetObject"] = client_error("304", 304, "GetObject")
    assert source.get("k", IfNoneMatch='"e"') is None
    client.fail["GetObject"] = client_error("PreconditionFailed", 412, "GetObject")
    with pytest.raises(IntegrityError, match=r"changed while being copied \(its ETag is no longer \"e\"\)"):
        source.get("k", IfMatch='"e"')
    with pytest.raises(ObjectFailed) as info:  # without IfMatch a 412 is no change of the source
        source.get("k")
    assert type(info.value) is ObjectFailed


@pytest.mark.parametrize(
    ("code", "status", "kind", "words"),
    [
        ("AccessDenied", 403, DestinationAccessDenied, "may not write s3://dest/pre/ (PutObject: AccessDenied)"),
        ("NoSuchBucket", 404, DestinationAccessDenied, "destination bucket dest does not exist (PutObject)"),
        ("BadDigest", 400, IntegrityError, "destination rejected the bytes of s3://dest/pre/k (BadDigest)"),
        ("NoSuchUpload", 404, IntegrityError, "the multipart upload of s3://dest/pre/k vanished"),
        ("InternalError", 500, TransientCopyError, "destination InternalError (HTTP 500) on PutObject"),
        ("InvalidArgument", 400, ObjectFailed, "destination InvalidArgument on PutObject s3://dest/pre/k"),
    ],
)
def test_destination_errors_are_classified(code: str, status: int, kind: type[Exception], words: str) -> None:
    error = DestinationBucket(FakeS3(), "dest", "pre/").error(client_error(code, status), "PutObject", "pre/k")
    assert type(error) is kind and words in str(error)


class HeadClient:
    def __init__(self, error: ClientError) -> None:
        self.error = error

    def head_object(self, **_: Any) -> dict[str, Any]:
        raise self.error


def test_destination_head_tells_absent_from_a_missing_bucket() -> None:
    assert DestinationBucket(HeadClient(client_error("404", 404)), "dest", "").head("k") is None
    with pytest.raises(DestinationAccessDenied):
        DestinationBucket(HeadClient(client_error("NoSuchBucket", 404)), "dest", "").head("k")


def test_the_destination_is_listed_once_and_only_when_enabled() -> None:
    client = FakeS3()
    client.objects["dest", "pre/a"] = b""
    existing = ExistingKeys(DestinationBucket(client, "dest", "pre/"), ["pre/a", "pre/b"], enabled=True)
    assert existing.known() == {"pre/a"} and existing.known() == {"pre/a"}
    assert client.operations() == ["ListObjectsV2"]
    disabled = ExistingKeys(DestinationBucket(client, "dest", "pre/"), ["pre/a"], enabled=False)
    assert disabled.known() is None and client.operations() == ["ListObjectsV2"]


# --- skip-if-identical ------------------------------------------------------------------------------


def test_recorded_etag_only_from_a_complete_verified_teacopy_copy() -> None:
    meta = {META_SOURCE_ETAG: '"abc"', META_SOURCE_SIZE: "3"}
    head = {"ContentLength": 3, "Metadata": meta}
    assert recorded_etag(ObjectSpec("k"), head) == '"abc"'
    assert recorded_etag(ObjectSpec("k"), None) is None
    assert recorded_etag(ObjectSpec("k"), {"ContentLength": 4, "Metadata": meta}) is None  # truncated
    assert recorded_etag(ObjectSpec("k", size=5), head) is None  # the plan says the source differs
    checksum = Checksum("MD5", "0" * 32)
    assert recorded_etag(ObjectSpec("k", checksum=checksum), head) is None  # never verified against it
    verified = {"ContentLength": 3, "Metadata": {**meta, META_VERIFIED: f"MD5:{'0' * 32}"}}
    assert recorded_etag(ObjectSpec("k", checksum=checksum), verified) == '"abc"'


# --- the source stream --------------------------------------------------------------------------------


class BreakingBody:
    """A body that raises a streaming error after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self._data, self._left = io.BytesIO(data), fail_after

    def read(self, amount: int) -> bytes:
        if self._left <= 0:
            raise ResponseStreamingError(error="connection reset by peer")
        chunk = self._data.read(min(amount, self._left))
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        pass


class RangedSource:
    """Answers ranged GETs with bodies that break again after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data, self.fail_after = data, fail_after
        self.gets: list[dict[str, Any]] = []

    def get_object(self, **params: Any) -> dict[str, Any]:
        self.gets.append(params)
        start = int(params["Range"][len("bytes=") : -1])
        return {"Body": BreakingBody(self.data[start:], self.fail_after)}


def test_a_broken_stream_is_reopened_at_the_current_read_with_if_match() -> None:
    data = bytes(range(256)) * 40
    client = RangedSource(data, fail_after=len(data))
    stream = SourceStream(SourceBucket(client, "daac"), "k", BreakingBody(data, 4000), '"e"', 0)
    assert stream.read_exact(3000, len(data)) == data[:3000]
    assert client.gets == []
    assert stream.read_exact(3000, len(data)) == data[3000:6000]  # broke at byte 4000: read again from 3000
    assert client.gets == [{"Bucket": "daac", "Key": "k", "Range": "bytes=3000-", "IfMatch": '"e"'}]
    assert stream.read_exact(len(data) - 6000, len(data)) == data[6000:] and stream.reopens == 1


def test_stream_reopens_are_bounded_and_need_an_etag() -> None:
    data = b"x" * 100
    client = RangedSource(data, fail_after=1)
    stream = SourceStream(SourceBucket(client, "daac"), "k", BreakingBody(data, 1), '"e"', 0)
    with pytest.raises(TransientCopyError, match="reading s3://daac/k failed"):
        stream.read_exact(100, 100)
    assert len(client.gets) == MAX_STREAM_REOPENS
    no_etag = SourceStream(SourceBucket(client, "daac"), "k", BreakingBody(data, 1), "", 0)
    with pytest.raises(TransientCopyError):
        no_etag.read_exact(100, 100)
    assert len(client.gets) == MAX_STREAM_REOPENS


def test_a_longer_body_than_announced_is_an_integrity_error() -> None:
    stream = SourceStream(SourceBucket(FakeS3(), "daac"), "k", io.BytesIO(b"abcd"), '"e"', 0)
    assert stream.read_exact(3, 3) == b"abc"
    with pytest.raises(IntegrityError, match=r"returned more than its ContentLength \(3 bytes\)"):
        stream.expect_end(3)


# --- checkpoints -----------------------------------------------------------------------------------


def checkpoint(**changes: Any) -> Checkpoint:
    base = Checkpoint(
        key="big.nc",
        dest_bucket="dest",
        dest_key="pre/big.nc",
        upload_id="u-1",
        source_etag='"e"',
        size=12 * MIB,
        part_size=5 * MIB,
        parts=[{"PartNumber": 1, "ETag": '"p1"', "ChecksumCRC64NVME": "AAAAAAAAAAA="}],
        digest={"crc": 7},
    )
    return base.replace(**changes)


def test_checkpoint_json_round_trips_and_rejects_inconsistent_shapes() -> None:
    saved = checkpoint()
    assert Checkpoint.from_dict(json.loads(json.dumps(saved.to_dict()))) == saved
    assert saved.offset == 5 * MIB
    with pytest.raises(ValueError, match=r"not 1\.\.n"):
        Checkpoint.from_dict({**saved.to_dict(), "parts": [{"PartNumber": 2}]})
    with pytest.raises(ValueError, match="inconsistent"):
        Checkpoint.from_dict({**saved.to_dict(), "size": 5 * MIB})  # every byte uploaded: nothing to resume
    with pytest.raises(ValueError, match="inconsistent"):
        Checkpoint.from_dict({**saved.to_dict(), "part_size": MIB})


def store(client: FakeS3) -> CheckpointStore:
    destination = DestinationBucket(client, "dest", "pre/")
    return CheckpointStore(client, STAGING, run_id="r", batch_id="b1", destination=destination)


def test_checkpoints_are_saved_listed_loaded_and_discarded_with_their_upload() -> None:
    client = FakeS3()
    first = store(client)
    first.load_keys()
    assert first.load("big.nc", "pre/big.nc") is None and client.operations() == ["ListObjectsV2"]
    assert first.save(checkpoint())

    later = store(client)  # the next invocation
    later.load_keys()
    assert later.load("big.nc", "pre/big.nc") == checkpoint()
    assert later.load("big.nc", "pre/big.nc") == checkpoint()  # remembered: read once
    assert client.operations() == ["ListObjectsV2", "PutObject", "ListObjectsV2", "GetObject"]

    later.discard("big.nc", "pre/big.nc")
    abort = client.calls[-2]
    assert abort == ("AbortMultipartUpload", {"Bucket": "dest", "Key": "pre/big.nc", "UploadId": "u-1"})
    assert client.calls[-1][0] == "DeleteObject" and client.objects == {}
    later.discard("big.nc", "pre/big.nc")  # gone: no request
    assert client.operations()[-1] == "DeleteObject"


@pytest.mark.parametrize(
    "stored",
    [b"not json {", json.dumps({**checkpoint().to_dict(), "dest_key": "pre/other.nc"}).encode()],
    ids=["malformed", "another object"],
)
def test_a_checkpoint_that_cannot_be_used_is_deleted(stored: bytes) -> None:
    client = FakeS3()
    key = staging.upload_checkpoint_key("r", "b1", "big.nc")
    client.objects[STAGING, key] = stored
    checkpoints = store(client)
    checkpoints.load_keys()
    assert checkpoints.load("big.nc", "pre/big.nc") is None
    assert (STAGING, key) not in client.objects and key not in checkpoints.keys


def test_a_checkpoint_the_staging_bucket_refuses_is_reported_not_raised() -> None:
    client = FakeS3()
    client.fail["PutObject"] = client_error("InternalError", 500)
    checkpoints = store(client)
    assert not checkpoints.save(checkpoint())
    assert checkpoints.keys == set()


# --- the result log ----------------------------------------------------------------------------------


def results(count: int) -> list[ObjectResult]:
    return [ObjectResult(f"k{i}", f"pre/k{i}", COPIED, bytes=i) for i in range(count)]


class SlowStaging(FakeS3):
    """A staging bucket whose PutObject waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.started = threading.Event()

    def put_object(self, **params: Any) -> dict[str, Any]:
        self.started.set()
        assert self.release.wait(5), "the test never released the write"
        return super().put_object(**params)


def test_results_are_flushed_every_n_objects_in_the_background_then_the_rest_on_exit() -> None:
    client = SlowStaging()
    log = ResultLog(client, STAGING, "runs/r/results/b1/")
    assert log.flush_rest() is None and client.calls == []  # never an empty file
    for result in results(FLUSH_EVERY_OBJECTS - 1):
        log.add(result)
    assert log.flush_if_due() is None and not client.started.is_set()
    log.add(ObjectResult("last", "pre/last", COPIED, bytes=1))
    started = time.monotonic()
    assert log.flush_if_due() is None  # the write starts; the scheduler does not wait for it
    assert client.started.wait(5) and time.monotonic() - started < 1 and client.calls == []
    for result in results(FLUSH_EVERY_OBJECTS):  # due again, but one write at a time
        log.add(ObjectResult(f"more/{result.key}", f"pre/more/{result.key}", COPIED, bytes=1))
    assert log.flush_if_due() is None
    log.add(ObjectResult("after", "pre/after", COPIED, bytes=2))
    client.release.set()
    assert log.flush_rest() is None  # waits for the first write, then writes the rest
    assert client.operations() == ["PutObject", "PutObject"]
    files = [json.loads(body) for (_, key), body in sorted(client.objects.items())]
    assert [len(f) for f in files] == [FLUSH_EVERY_OBJECTS, FLUSH_EVERY_OBJECTS + 1] and files[1][-1]["key"] == "after"
    assert log.count(COPIED) == 2 * FLUSH_EVERY_OBJECTS + 1


def test_a_failed_background_write_is_reported_and_its_results_go_with_the_rest() -> None:
    client = FakeS3()
    client.fail["PutObject"] = client_error("SlowDown", 503)
    log = ResultLog(client, STAGING, "runs/r/results/b1/")
    for result in results(FLUSH_EVERY_OBJECTS):
        log.add(result)
    assert log.flush_if_due() is None  # started
    deadline = time.monotonic() + 5
    error = None
    while error is None and time.monotonic() < deadline:
        error = log.flush_if_due()
        time.sleep(0.01)
    assert isinstance(error, TransientCopyError) and f"could not record {FLUSH_EVERY_OBJECTS} results" in str(error)
    del client.fail["PutObject"]
    assert log.flush_rest() is None
    (body,) = client.objects.values()
    assert len(json.loads(body)) == FLUSH_EVERY_OBJECTS  # nothing lost, nothing twice


def test_a_result_file_that_cannot_be_written_is_a_transient_error() -> None:
    client = FakeS3()
    client.fail["PutObject"] = client_error("SlowDown", 503)
    log = ResultLog(client, STAGING, "runs/r/results/b1/")
    log.add(results(1)[0])
    error = log.flush_rest()
    assert isinstance(error, TransientCopyError) and "could not record 1 results" in str(error)


# --- the batch ----------------------------------------------------------------------------------------


def test_the_batch_reports_its_most_telling_error() -> None:
    errors = [
        TransientCopyError("throttled"),
        CredentialsExpired("expired"),
        DestinationAccessDenied("denied"),
        RuntimeError("a bug"),
    ]
    assert [type(e).__name__ for e in sorted(errors, key=error_rank)] == [
        "DestinationAccessDenied",
        "RuntimeError",
        "CredentialsExpired",
        "TransientCopyError",
    ]
    assert [is_fatal(e) for e in errors] == [False, False, True, True]


def test_each_source_key_is_copied_once_per_batch() -> None:
    specs = [ObjectSpec("a", size=1), ObjectSpec("b"), ObjectSpec("a", size=2)]
    assert unique(specs) == [ObjectSpec("a", size=1), ObjectSpec("b")]


def _pace(size: int, count: int, *, streaming: bool = False) -> Pace:
    """The Pace of a batch of ``count`` objects of ``size`` bytes under the deployed defaults."""
    settings = CopySettings.from_env({env_names.STAGING_BUCKET: STAGING, env_names.CREDENTIALS_SECRET_ID: "secret"})
    specs = [ObjectSpec(key=f"k{i}", size=size) for i in range(count)]
    return Pace(settings, specs, latency_s=0.02, streaming=streaming)


def _started(pace: Pace, specs: list[ObjectSpec]) -> int:
    """How many of ``specs`` the pace lets start before one must finish."""
    started = 0
    for spec in specs:
        if not pace.fits(spec, started):
            break
        pace.take(spec)
        started += 1
    return started


def test_streamed_objects_in_flight_are_bounded_by_the_stream_count_not_the_buffer_budget() -> None:
    specs = [ObjectSpec(key=f"k{i}", size=20 * MIB) for i in range(20)]
    streaming = _pace(20 * MIB, 20, streaming=True)
    assert _started(streaming, specs) == STREAMS_IN_FLIGHT
    streaming.release(specs[0])
    assert streaming.fits(specs[5], STREAMS_IN_FLIGHT - 1)  # one finished: the next one may start
    buffered = _pace(20 * MIB, 20)  # no streamed PutObjects: the byte budget bounds them (256 MiB / 20 MiB)
    assert _started(buffered, specs) == 12
    small = [ObjectSpec(key=f"s{i}", size=100 * 1024) for i in range(100)]  # below stream_min_bytes: not streams
    assert _started(_pace(100 * 1024, 100, streaming=True), small) == 64


def test_large_downloads_start_spaced_and_small_ones_do_not() -> None:
    """Objects that take a while to download start ``size / link / slots`` apart (so they do not all
    finish, and hand over their bodies, at once); 100 KiB objects are latency-bound and never wait."""
    large = _pace(50 * MIB, 20)
    gate = large.download_gate
    assert gate.slots == large.downloads >= 1
    assert gate.spacing_s == pytest.approx(50 * MIB / NETWORK_BYTES_PER_SECOND / gate.slots)
    small = _pace(100 * 1024, 1000)
    assert small.download_gate.slots > 10 and small.download_gate.spacing_s == 0.0


def test_download_gate_bounds_slots_and_spaces_only_the_first_starts() -> None:
    """3 slots, 0.2 s apart, downloads of 0.05 s: the first three start at +0, +0.2, +0.4 s; the others take
    slots as they free, without waiting for a spacing step (else the last would start at +1.0 s)."""
    gate = DownloadGate(3, 0.2)
    lock = threading.Lock()
    starts: list[float] = []
    held, most = [0], [0]

    def download() -> None:
        with gate:
            with lock:
                starts.append(time.monotonic())
                held[0] += 1
                most[0] = max(most[0], held[0])
            time.sleep(0.05)
            with lock:
                held[0] -= 1

    threads = [threading.Thread(target=download) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    starts.sort()
    assert len(starts) == 6 and most[0] <= 3
    assert 0.38 <= starts[-1] - starts[0] < 0.9


@pytest.mark.parametrize(
    ("response", "md5"),
    [
        ({"ETag": '"0123456789ABCDEF0123456789abcdef"'}, "0123456789abcdef0123456789abcdef"),
        ({"ETag": '"0123456789abcdef0123456789abcdef"', "ServerSideEncryption": "AES256"}, "0123456789abcdef" * 2),
        ({"ETag": '"0123456789abcdef0123456789abcdef-3"'}, None),  # multipart upload
        ({"ETag": '"0123456789abcdef0123456789abcdef"', "ServerSideEncryption": "aws:kms"}, None),
        ({"ETag": '"0123456789abcdef0123456789abcdef"', "SSECustomerAlgorithm": "AES256"}, None),
        ({}, None),
    ],
)
def test_etag_md5_only_where_s3_makes_the_etag_the_md5(response: dict[str, Any], md5: str | None) -> None:
    assert etag_md5(response) == md5


class _Source:
    """A SourceBucket stand-in for SourceStream: only its url."""

    def url(self, key: str) -> str:
        return f"s3://src/{key}"


def _verified(data: bytes, size: int, expected: bytes) -> VerifiedBody:
    import hashlib

    stream = SourceStream(_Source(), "k", io.BytesIO(data), "", 0)  # type: ignore[arg-type]
    check = StreamDigest(Checksum(algorithm="MD5", value=hashlib.md5(expected, usedforsecurity=False).hexdigest()))
    return VerifiedBody(stream, size, [check])


def test_a_verified_body_hands_over_every_byte_when_they_match() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: four pieces
    body = _verified(data, len(data), data)
    pieces = list(iter(lambda: body.read(100_000), b""))
    assert b"".join(pieces) == data and max(map(len, pieces)) <= 100_000
    assert body.read(10) == b""


def test_a_verified_body_never_hands_over_its_last_piece_when_the_digest_differs() -> None:
    data = bytes(range(256)) * 4096
    body = _verified(data, len(data), data[:-1] + b"x")
    handed = b""
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        while chunk := body.read(65536):
            handed += chunk
    assert len(handed) <= len(data) - STREAM_PIECE_BYTES  # the piece holding the last byte never left
    assert isinstance(body.failure, IntegrityError)


def test_a_verified_body_rejects_a_source_longer_than_its_size() -> None:
    data = b"a" * 1000
    body = _verified(data, 999, data[:999])
    with pytest.raises(IntegrityError, match="more than its ContentLength"):
        body.read()
