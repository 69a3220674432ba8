"""moto's S3 in server mode on loopback, wrapped in a request-counting, S3-modelling WSGI middleware.

Run as ``python -m bench.server [--port 0] [--first-byte-ms 20 --connection-mbps 90 --link-mibps 75 |
--loopback]``: prints one JSON line ``{"port": N, ...}`` once it listens. Every S3 request is counted per
bucket and per operation (with status codes and body bytes) BEFORE moto sees it, then shaped by the
S3 model (``bench.model``: first-byte latency, per-connection and link bandwidth), then answered by the
data path (``bench.fastpath``: Get/Head/PutObject and UploadPart on moto's storage) or by moto itself.
The bench reads and resets the counters through loopback admin endpoints that moto
never sees (paths under ``/__bench__/``, which no S3 bucket name can spell):

- ``GET  /__bench__/counts``                     counters + this process's CPU seconds and peak RSS
- ``POST /__bench__/reset``                      zero the counters
- ``GET  /__bench__/digest?bucket=B&key=K``      size and SHA-256 of the stored object (read in chunks)
- ``POST /__bench__/put-random?bucket=B&key=K&size=N``  store N random bytes as a plain object (setup only)
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import io
import json
import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from bench.fastpath import BodyDigest, make_fast
from bench.model import S3Model, Shaper, model_from
from bench.s3ops import classify

ADMIN_PREFIX = "/__bench__/"
CHUNK = 8 * 1024**2

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Counter:
    """Thread-safe counters: bucket -> operation -> {n, status{code: n}, bytes_in, bytes_out, seconds}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, dict[str, Any]]] = {}

    def add(
        self,
        bucket: str,
        operation: str,
        status: str,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        moto: bool = False,
    ) -> None:
        with self._lock:
            entry = self._counts.setdefault(bucket, {}).setdefault(
                operation, {"n": 0, "status": {}, "bytes_in": 0, "bytes_out": 0, "seconds": 0.0, "moto": 0}
            )
            entry["n"] += 1
            entry["moto"] += int(moto)  # answered by moto itself, not the data path (bench/fastpath.py)
            entry["seconds"] += seconds
            entry["status"][status] = entry["status"].get(status, 0) + 1
            entry["bytes_in"] += bytes_in
            entry["bytes_out"] += bytes_out

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            return json.loads(json.dumps(self._counts))

    def reset(self) -> None:
        with self._lock:
            self._counts = {}


def _request_headers(environ: Environ) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = str(environ["CONTENT_LENGTH"])
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


class CountingMiddleware:
    """Counts each request by (bucket, S3 operation), applies the S3 model, answers the admin endpoints.

    Per request: the body is read (paced by the model's upload link and connection cap) and handed on
    as ``environ["bench.body"]``, the first-byte latency is slept, the app answers, and its response
    body is paced by the download link and the connection cap.
    """

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        counter: Counter,
        model: S3Model | None = None,
    ) -> None:
        self.app = app
        self.counter = counter
        self.model = model or S3Model.loopback()
        self.shaper = Shaper(self.model)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "") or "/")
        if path.startswith(ADMIN_PREFIX):
            return self._admin(path[len(ADMIN_PREFIX) :], environ, start_response)
        headers = _request_headers(environ)
        bucket, operation = classify(
            str(environ.get("REQUEST_METHOD", "GET")), path, str(environ.get("QUERY_STRING", "")), headers
        )
        # aws-chunked bodies carry framing and trailers: the decoded length is the payload.
        bytes_in = int(headers.get("x-amz-decoded-content-length") or headers.get("content-length") or 0)
        seen: dict[str, Any] = {"status": "000", "length": 0}

        def counting_start_response(status: str, response_headers: list[tuple[str, str]], *args: Any) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            for name, value in response_headers:
                if name.lower() == "content-length" and value.isdigit():
                    seen["length"] = int(value)
            return start_response(status, response_headers, *args)

        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        length = str(environ.get("CONTENT_LENGTH") or "")
        body: bytes | None = None
        digest: BodyDigest | None = None
        if method in ("PUT", "POST") and (length.isdigit() or environ.get("wsgi.input_terminated")):
            digest = BodyDigest.for_put(headers) if method == "PUT" else None
            on_piece = digest.update if digest is not None else None
            body = self.shaper.read_body(environ["wsgi.input"], int(length) if length.isdigit() else None, on_piece)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        environ["bench.headers"], environ["bench.body"], environ["bench.digest"] = headers, body, digest
        self.shaper.first_byte_delay()
        started = time.perf_counter()
        try:
            result = self.app(environ, counting_start_response)
        finally:
            self.counter.add(
                bucket,
                operation,
                seen["status"],
                bytes_in,
                0 if method == "HEAD" else seen["length"],
                time.perf_counter() - started,  # the server's handling (not the model's waits)
                bool(environ.get("bench.moto")),
            )
        if self.shaper.active and method != "HEAD":
            return _closing(self.shaper.paced(result), result)
        return result

    # -- admin endpoints (never reach moto, never counted)

    def _admin(self, name: str, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            if name == "counts" and method == "GET":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                body: Any = {
                    "counts": self.counter.snapshot(),
                    "server_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                    "server_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                }
            elif name == "model" and method == "POST":
                self.model = model_from(query)
                self.shaper = Shaper(self.model)
                body = {"model": self.model.as_dict()}
            elif name == "reset" and method == "POST":
                self.counter.reset()
                body = {"ok": True}
            elif name == "digest" and method == "GET":
                body = digest_object(query["bucket"], query["key"])
            elif name == "put-random" and method == "POST":
                body = put_random_object(query["bucket"], query["key"], int(query["size"]))
            else:
                return _reply(start_response, "404 Not Found", {"error": f"no admin endpoint {method} {name}"})
        except KeyError as exc:
            return _reply(start_response, "404 Not Found", {"error": f"not found: {exc}"})
        return _reply(start_response, "200 OK", body)


def _closing(body: Iterable[bytes], original: Iterable[bytes]) -> Iterator[bytes]:
    """``body``, then close the app's own iterable (WSGI requires it)."""
    try:
        yield from body
    finally:
        close = getattr(original, "close", None)
        if close is not None:
            close()


def _reply(start_response: StartResponse, status: str, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _backend(bucket: str) -> Any:
    from moto.s3.models import s3_backends

    partition, account_id = s3_backends.bucket_accounts[bucket]
    return s3_backends[account_id][partition]


def digest_object(bucket: str, key: str) -> dict[str, Any]:
    """Size and SHA-256 of what the server stores (moto's FakeKey buffer, read in chunks under its lock)."""
    stored = _backend(bucket).get_object(bucket, key)
    if stored is None:
        raise KeyError(f"{bucket}/{key}")
    sha = hashlib.sha256()
    size = 0
    with stored.lock:
        buffer = stored._value_buffer
        buffer.seek(0)
        while chunk := buffer.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest(), "etag": stored.etag}


def put_random_object(bucket: str, key: str, size: int) -> dict[str, Any]:
    """Store ``size`` random bytes as a plain (single-PUT) object, streamed into moto's spooled buffer.

    Setup only: big source objects uploaded through the API would make moto hold several copies in
    memory at CompleteMultipartUpload. The object is an ordinary moto key: ETag = MD5 of the bytes.
    """
    backend = _backend(bucket)
    stored = backend.put_object(bucket, key, b"")
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with stored.lock:
        buffer = stored._value_buffer
        buffer.seek(0)
        buffer.truncate()
        left = size
        while left > 0:
            chunk = os.urandom(min(CHUNK, left))
            buffer.write(chunk)
            sha.update(chunk)
            md5.update(chunk)
            left -= len(chunk)
        stored.contentsize = size
        stored._etag = md5.hexdigest()
    return {"size": size, "sha256": sha.hexdigest(), "etag": stored.etag}


class PartsView:
    """A completed multipart object's bytes: its parts' buffers end to end, read-only (``--lean-complete``).

    moto reads a key through its ``_value_buffer`` (``seek``/``read``/``tell``/``close``): this answers those
    from the parts' buffers, which it takes over (moto disposes of a completed upload's parts), without
    copying them into one buffer.
    """

    def __init__(self, buffers: list[tuple[Any, int]]) -> None:
        self._buffers = buffers  # (part buffer, part size)
        self._starts: list[int] = []
        total = 0
        for _, size in buffers:
            self._starts.append(total)
            total += size
        self._size, self._position, self.closed = total, 0, False
        self._lock = threading.Lock()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        pieces: list[bytes] = []
        with self._lock:
            while self._position < end:
                index = bisect.bisect_right(self._starts, self._position) - 1
                (buffer, part_size), start = self._buffers[index], self._starts[index]
                buffer.seek(self._position - start)
                piece = buffer.read(min(end, start + part_size) - self._position)
                if not piece:
                    break
                pieces.append(piece)
                self._position += len(piece)
        return b"".join(pieces)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for buffer, _ in self._buffers:
                buffer.close()


def install_lean_complete() -> None:
    """Make moto's CompleteMultipartUpload memory-bounded (``--lean-complete``).

    Stock moto 5.2.5 concatenates every part in memory, twice for a FULL_OBJECT checksum, then copies
    the result again (a 1 GiB object peaks at ~5-7 GB of server RSS, a 4 GiB one would not fit this
    machine). This version keeps the parts where they are: the new key's buffer is a read-only view of
    its parts end to end (``PartsView``), as S3 does not copy them either; a FULL_OBJECT CRC is updated
    over the parts (S3 combines the part CRCs); COMPOSITE checksums are computed per part as moto does.
    Same bytes, ETag and checksum, bounded memory, and no copy of every part into a spooled file at
    Complete (that took ~3.7 s per GiB here and left the link idle for every tool at the end of each
    large object: ``make bench``, 1 GiB set).
    """
    import base64
    import zlib

    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML

    try:
        from awscrt import checksums as crt
    except ImportError:  # moto itself falls back to CRC32 without awscrt
        crt = None

    def crc_update(algorithm: str) -> tuple[Callable[[bytes, int], int], int]:
        """The incremental form of exactly what moto computes (moto.s3.utils.compute_checksum)."""
        if algorithm == "CRC64NVME" and crt is not None:
            return crt.crc64nvme, 8
        if algorithm == "CRC32C":
            try:
                import crc32c

                return crc32c.crc32c, 4
            except ImportError:  # moto's fallback (a CRC32 labelled CRC32C): mirrored, not fixed
                return zlib.crc32, 4
        return zlib.crc32, 4

    def complete(self: Any, body: Iterable[tuple[int, str]]) -> tuple[bytes, str, Any]:
        builder = models.MultipartChecksumBuilder(
            self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
        )
        full_object = builder.checksum_type != "COMPOSITE"
        update, width = crc_update(builder.checksum_algorithm)
        crc, size, count = 0, 0, 0
        md5s = bytearray()
        buffers: list[tuple[Any, int]] = []
        listed: list[Any] = []
        last = None
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise InvalidPart()
            if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s.extend(bytes.fromhex(part.etag.replace('"', "")))
            listed.append(part)
            with part.lock:  # read for the CRC only: the bytes stay in the part
                part._value_buffer.seek(0)
                while chunk := part._value_buffer.read(CHUNK):
                    size += len(chunk)
                    if full_object:
                        crc = update(chunk, crc)
            if not full_object:
                builder.addPart(part.value)  # one part at a time: bounded by the part size
            last = part
            count += 1
        if count == 0:
            raise MalformedXML()
        etag = f"{hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()}-{count}"
        checksum: Any
        if full_object:
            checksum = (builder.checksum_type, base64.b64encode(crc.to_bytes(width, "big")).decode(), 1)
        else:
            checksum = builder.build()
        for part in listed:  # the key takes the parts' bytes over; moto then disposes of empty parts
            with part.lock:
                buffers.append((part._value_buffer, part.contentsize))
                part._value_buffer = io.BytesIO()
        self._bench_buffer, self._bench_size = PartsView(buffers), size
        return b"", etag, checksum  # the bytes are attached to the key below, not returned

    original = models.S3Backend.complete_multipart_upload

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        multipart = self.get_bucket(bucket_name).multiparts[multipart_id]
        key = original(self, bucket_name, multipart_id, body)
        buffer = getattr(multipart, "_bench_buffer", None)
        if key is not None and buffer is not None:
            with key.lock:
                key._value_buffer.close()
                key._value_buffer = buffer
                key.contentsize = multipart._bench_size
            multipart._bench_buffer = None
        return key

    models.FakeMultipart.complete = complete  # type: ignore[method-assign]
    models.S3Backend.complete_multipart_upload = complete_multipart_upload  # type: ignore[method-assign]


def make_app(counter: Counter, model: S3Model | None = None) -> CountingMiddleware:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return CountingMiddleware(make_fast(DomainDispatcherApplication(create_backend_app)), counter, model)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The S3 model's options (the server's and ``python -m bench``'s)."""
    default = S3Model()
    parser.add_argument("--first-byte-ms", type=float, default=default.first_byte_ms, help="S3 first-byte latency")
    parser.add_argument("--jitter-ms", type=float, default=default.jitter_ms, help="uniform +/- around it")
    parser.add_argument(
        "--connection-mbps", type=float, default=default.connection_mbps, help="MB/s per connection (0: no cap)"
    )
    parser.add_argument(
        "--link-mibps", type=float, default=default.link_mibps, help="MiB/s per direction, shared (0: no cap)"
    )


def model_from_args(args: argparse.Namespace) -> S3Model:
    return S3Model(
        first_byte_ms=max(0.0, args.first_byte_ms),
        jitter_ms=max(0.0, min(args.jitter_ms, args.first_byte_ms)),
        connection_mbps=max(0.0, args.connection_mbps),
        link_mibps=max(0.0, args.link_mibps),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lean-complete", action="store_true", help="memory-bounded CompleteMultipartUpload")
    parser.add_argument("--loopback", action="store_true", help="no S3 model: no latency, no bandwidth caps")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    model = S3Model.loopback() if args.loopback else model_from_args(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the bench server only listens on loopback")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    if args.lean_complete:
        install_lean_complete()
    from bench.http import Server

    server = Server(args.host, args.port, make_app(Counter(), model))
    ready = {"port": server.server_address[1], "pid": os.getpid(), "lean_complete": args.lean_complete}
    ready["model"] = model.as_dict()
    print(json.dumps(ready), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
