"""The bench harness (bench/): operation names, the counting middleware, the cost model, and a tiny
end-to-end run (KiB/MiB-sized sets, teacopy and the naive loop) against the counting moto server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import cost
from bench.__main__ import build_parser as bench_parser
from bench.__main__ import options_from_args, parse_size
from bench.runner import MIB, Options, SetSpec, format_report, run_bench, running_server, summarize
from bench.s3ops import classify, price_class
from bench.server import Counter, CountingMiddleware


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", "/", "", {}, ("", "ListBuckets")),
        ("PUT", "/bkt", "", {}, ("bkt", "CreateBucket")),
        ("GET", "/bkt", "list-type=2&prefix=runs%2F", {}, ("bkt", "ListObjectsV2")),
        ("GET", "/bkt/", "uploads", {}, ("bkt", "ListMultipartUploads")),
        ("POST", "/bkt", "delete", {}, ("bkt", "DeleteObjects")),
        ("HEAD", "/bkt/a/b.nc", "", {}, ("bkt", "HeadObject")),
        ("GET", "/bkt/a/b.nc", "", {}, ("bkt", "GetObject")),
        ("GET", "/bkt/a/b.nc", "uploadId=u", {}, ("bkt", "ListParts")),
        ("PUT", "/bkt/a/b.nc", "", {}, ("bkt", "PutObject")),
        ("PUT", "/bkt/a/b.nc", "", {"x-amz-copy-source": "/src/k"}, ("bkt", "CopyObject")),
        ("PUT", "/bkt/a/b.nc", "partNumber=3&uploadId=u", {}, ("bkt", "UploadPart")),
        ("POST", "/bkt/a/b.nc", "uploads", {}, ("bkt", "CreateMultipartUpload")),
        ("POST", "/bkt/a/b.nc", "uploadId=u", {}, ("bkt", "CompleteMultipartUpload")),
        ("DELETE", "/bkt/a/b.nc", "uploadId=u", {}, ("bkt", "AbortMultipartUpload")),
        ("DELETE", "/bkt/a/b.nc", "", {}, ("bkt", "DeleteObject")),
    ],
)
def test_classify_names_the_s3_operation(
    method: str, path: str, query: str, headers: dict[str, str], expected: tuple[str, str]
) -> None:
    assert classify(method, path, query, headers) == expected


def test_price_classes_follow_the_list_prices() -> None:
    for op in ("PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "ListObjectsV2"):
        assert price_class(op) == "put", op
    for op in ("GetObject", "HeadObject", "GetBucketLocation"):
        assert price_class(op) == "get", op
    for op in ("DeleteObject", "AbortMultipartUpload"):
        assert price_class(op) == "free", op


def _call(app: CountingMiddleware, method: str, path: str, body: bytes = b"") -> bytes:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    return b"".join(app(environ, lambda *args: None))


def test_middleware_counts_each_request_and_serves_counts_and_reset() -> None:
    def fake_s3(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status = "404 Not Found" if environ["REQUEST_METHOD"] == "HEAD" else "200 OK"
        start_response(status, [("Content-Length", "5")])
        return [b"hello"]

    app = CountingMiddleware(fake_s3, Counter())
    _call(app, "HEAD", "/dst/k1")
    _call(app, "GET", "/src/k1")
    _call(app, "GET", "/src/k2")
    _call(app, "PUT", "/dst/k1", body=b"12345678")
    counts = json.loads(_call(app, "GET", "/__bench__/counts"))
    src, dst = counts["counts"]["src"], counts["counts"]["dst"]
    assert src["GetObject"]["n"] == 2 and src["GetObject"]["bytes_out"] == 10
    assert dst["HeadObject"] == {**dst["HeadObject"], "n": 1, "status": {"404": 1}, "bytes_out": 0}
    assert dst["PutObject"]["n"] == 1 and dst["PutObject"]["bytes_in"] == 8
    assert counts["server_cpu_s"] >= 0 and counts["server_peak_rss_mb"] > 0
    _call(app, "POST", "/__bench__/reset")
    after = json.loads(_call(app, "GET", "/__bench__/counts"))
    assert after["counts"] == {}  # admin calls themselves are never counted


def test_cost_model_arithmetic() -> None:
    model = cost.ComputeModel(lambda_memory_mb=1024, network_mib_s=100.0, floor_ms_per_object=0.0)
    # 10 objects of 100 MiB: 30 PUT-class + 20 GET-class requests, no staging.
    priced = cost.estimate(
        data_requests={"put": 30, "get": 20},
        staging_requests={},
        objects=10,
        total_bytes=1000 * MIB,
        model=model,
    )
    s3 = 30 * 0.005 / 1000 + 20 * 0.0004 / 1000
    lam = 10.0 * 1.0 * 0.0000133334  # 1000 MiB at 100 MiB/s, 1 GB
    sfn = (10 / 81) * 6 * 0.025 / 1000  # 8 GiB per batch -> 81 objects of 100 MiB per batch
    expected_per_tb = (s3 + lam + sfn) * cost.TB / (1000 * MIB)
    assert priced["usd_per_tb"] == pytest.approx(expected_per_tb, abs=1e-4)
    assert priced["usd_per_million_objects"] == pytest.approx((s3 + lam + sfn) * 100_000, abs=0.01)
    assert cost.requests_by_class(
        {
            "b": {"GetObject": {"n": 2}, "PutObject": {"n": 1}, "DeleteObject": {"n": 4}},
            "other": {"PutObject": {"n": 9}},
        },
        ["b"],
    ) == {"put": 1, "get": 2, "free": 4}


def test_command_line_options() -> None:
    assert parse_size("16MiB") == 16 * MIB and parse_size("5m") == 5 * MIB and parse_size("1024") == 1024
    options = options_from_args(
        bench_parser().parse_args(["--quick", "--sets", "1gib,100kib", "--part-size", "32MiB", "--inflight-parts", "8"])
    )
    assert [(s.name, s.count, s.size) for s in options.sets] == [("1gib", 1, 16 * MIB), ("100kib", 100, 1600)]
    assert options.settings == {"PART_SIZE_BYTES": 32 * MIB, "INFLIGHT_PARTS": 8}
    assert options.workers == 1 and options.model.lambda_memory_mb == 1024  # the stack's CopyBatch memory


def test_lean_complete_stores_what_stock_moto_would(tmp_path: Path) -> None:
    """The memory-bounded CompleteMultipartUpload: same bytes, ETag and full-object CRC64NVME."""
    from awscrt import checksums

    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)]
    whole = b"".join(parts)
    with running_server(tmp_path / "server.log", lean_complete=True) as server:
        s3 = server.client()
        s3.create_bucket(Bucket="lean-test", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        upload = s3.create_multipart_upload(
            Bucket="lean-test", Key="k", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        done = []
        for number, data in enumerate(parts, start=1):
            response = s3.upload_part(
                Bucket="lean-test",
                Key="k",
                UploadId=upload,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm="CRC64NVME",
            )
            done.append({"PartNumber": number, "ETag": response["ETag"]})
        s3.complete_multipart_upload(Bucket="lean-test", Key="k", UploadId=upload, MultipartUpload={"Parts": done})
        head = s3.head_object(Bucket="lean-test", Key="k", ChecksumMode="ENABLED")
        digest = server.admin("GET", "digest", bucket="lean-test", key="k")
    md5s = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    assert head["ETag"] == f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-3"'
    assert head["ChecksumCRC64NVME"] == base64.b64encode(checksums.crc64nvme(whole).to_bytes(8, "big")).decode()
    assert digest == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "etag": head["ETag"]}


def _raw_put(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A plain (not aws-chunked) PUT, as the CRT and most SDKs send one: the data path's own answer."""
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        connection.request("PUT", path, body=body, headers={"Content-Length": str(len(body)), **headers})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_data_path_hashes_plain_puts_while_receiving_them(tmp_path: Path) -> None:
    """PutObject and UploadPart bodies are hashed as they arrive (bench/fastpath.BodyDigest): the same
    ETag and checksums S3 gives, wrong ones rejected with BadDigest and nothing stored."""
    from awscrt import checksums

    from bench.model import S3Model

    data = os.urandom(3 * MIB + 17)  # several paced pieces
    b64 = base64.b64encode
    sums = {
        "crc64nvme": b64(checksums.crc64nvme(data).to_bytes(8, "big")).decode(),
        "crc32c": b64(checksums.crc32c(data).to_bytes(4, "big")).decode(),
        "sha256": b64(hashlib.sha256(data).digest()).decode(),
    }
    md5 = hashlib.md5(data, usedforsecurity=False)
    model = S3Model(first_byte_ms=1, jitter_ms=0, connection_mbps=2000, link_mibps=2000)
    with running_server(tmp_path / "server.log", model=model) as server:
        s3 = server.client()
        s3.create_bucket(Bucket="hash-test", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        for algorithm, value in sums.items():
            headers = {f"x-amz-checksum-{algorithm}": value, "Content-MD5": b64(md5.digest()).decode()}
            status, answer, _ = _raw_put(server.url, f"/hash-test/{algorithm}", data, headers)
            assert (status, answer["etag"], answer[f"x-amz-checksum-{algorithm}"]) == (
                200,
                f'"{md5.hexdigest()}"',
                value,
            )
            head = s3.head_object(Bucket="hash-test", Key=algorithm, ChecksumMode="ENABLED")
            assert head[f"Checksum{algorithm.upper()}"] == value
            assert s3.get_object(Bucket="hash-test", Key=algorithm)["Body"].read() == data
        wrong = {"x-amz-checksum-crc64nvme": sums["crc32c"] + "AAAA"}
        for path, headers in (("/hash-test/bad-crc", wrong), ("/hash-test/bad-md5", {"Content-MD5": "AAAA"})):
            status, _, text = _raw_put(server.url, path, data, headers)
            assert (status, b"<Code>BadDigest</Code>" in text) == (400, True)
        # an aws-chunked body (SigV4 streaming, checksum in the trailer) is hashed after decoding its framing
        framed = b"%x\r\n" % len(data) + data + b"\r\n0\r\nx-amz-checksum-crc64nvme:" + sums["crc64nvme"].encode()
        chunked = {
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc64nvme",
        }
        status, answer, _ = _raw_put(server.url, "/hash-test/chunked", framed + b"\r\n\r\n", chunked)
        assert (status, answer["etag"]) == (200, f'"{md5.hexdigest()}"')
        assert s3.get_object(Bucket="hash-test", Key="chunked")["Body"].read() == data
        listed = s3.list_objects_v2(Bucket="hash-test")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted([*sums, "chunked"])  # nothing stored by a rejected PUT

        upload = s3.create_multipart_upload(Bucket="hash-test", Key="mp")["UploadId"]
        part_headers = {"x-amz-checksum-sha256": sums["sha256"]}
        status, answer, _ = _raw_put(server.url, f"/hash-test/mp?partNumber=1&uploadId={upload}", data, part_headers)
        assert (status, answer["etag"]) == (200, f'"{md5.hexdigest()}"')
        s3.complete_multipart_upload(
            Bucket="hash-test",
            Key="mp",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": answer["etag"]}]},
        )
        assert server.admin("GET", "digest", bucket="hash-test", key="mp")["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_tiny_bench_run_counts_verifies_and_reports(tmp_path: Path) -> None:
    options = Options(
        sets=[SetSpec("100kib", 4, 8 * 1024), SetSpec("1gib", 1, 11 * MIB, lean_server=True)],
        tools=("teacopy", "naive"),
        settings={"PART_SIZE_BYTES": 5 * MIB, "MULTIPART_THRESHOLD_BYTES": 5 * MIB},
        out_dir=tmp_path,
        tool_timeout_s=120,
        progress=lambda _message: None,
    )
    result = run_bench(options)
    rows = {(r["set"], r["tool"]): r for r in result["rows"]}
    assert set(rows) == {("100kib", "teacopy"), ("100kib", "naive"), ("1gib", "teacopy"), ("1gib", "naive")}
    for row in rows.values():
        assert row["verified"] == {"ok": True, "checked": row["objects"], "bad": [], "incomplete_uploads": 0}, row
        assert row["errors"] == [] and row["mib_s"] > 0 and row["peak_rss_mb"] > 20
        assert row["requests"]["source"].get("GetObject", 0) >= row["objects"]  # counted on the server
    # The naive loop is boto3 itself: one GET + one PUT per small object, nothing on staging.
    naive = rows[("100kib", "naive")]
    assert naive["requests"]["source"] == {"GetObject": 4} and naive["requests"]["dest"] == {"PutObject": 4}
    assert naive["requests_per_object"] == 2 and naive["staging_requests_per_object"] == 0
    # teacopy writes its result log to the staging bucket; 11 MiB in 5 MiB parts is a multipart upload.
    assert rows[("100kib", "teacopy")]["requests"]["staging"].get("PutObject", 0) >= 1
    assert rows[("1gib", "teacopy")]["requests"]["dest"].get("UploadPart", 0) == 3
    summary = summarize(result["rows"])
    assert summary["all_verified"] is True
    assert summary["requests_per_small_object"] == rows[("100kib", "teacopy")]["requests_per_object"]
    assert summary["throughput_ratio_vs_best_peer"] == min(summary["throughput_ratio_by_set"].values())
    assert "assumptions:" in format_report(result)
