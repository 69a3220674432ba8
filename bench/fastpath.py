"""The data path of the bench server: GetObject, HeadObject, PutObject and UploadPart on moto's own storage.

moto's Flask routing costs ~4-6 ms of CPU per request on this machine (its domain dispatcher alone stats
~180 files per request): ~150 small GETs per second on one core, far below what the modelled link
carries (768 objects of 100 KiB per second). These four operations, the ones whose count scales with
the data, are answered here, against moto's backend (the same ``FakeKey`` objects, ETags, metadata and
checksums), in well under a millisecond. Everything else, and every case this module does not handle
exactly like S3 (errors, conditional requests that fail, special headers or query parameters,
aws-chunked bodies), goes to moto unchanged: ``handle`` returns None for it.

Like S3 (and unlike moto, which leaves it as a TODO) a PUT whose ``Content-MD5`` or
``x-amz-checksum-<algorithm>`` does not match its bytes is rejected (400 BadDigest), so a client that
sends wrong bytes cannot pass the bench's verification by luck.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from bench.s3ops import split_path

READ_CHUNK = 1024 * 1024
# Request headers that change what a GET/HEAD/PUT means: such requests go to moto.
_SPECIAL = (
    "x-amz-copy-source",
    "x-amz-server-side-encryption",
    "x-amz-object-lock",
    "x-amz-tagging",
    "x-amz-acl",
    "x-amz-grant",
    "x-amz-website-redirect-location",
    "x-amz-request-payer",
    "x-amz-expected-bucket-owner",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-version-id",
)
_QUERY_OK = {"x-id"}

Environ = dict[str, Any]
Answer = tuple[str, list[tuple[str, str]], Iterable[bytes]]


class _Running:
    """One checksum S3 computes, updated piece by piece (``algorithm`` one this module knows)."""

    _WIDTH = {"crc64nvme": 8, "crc32": 4, "crc32c": 4}

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc = 0
        self._hash = hashlib.new(algorithm) if algorithm in ("sha1", "sha256") else None

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self.algorithm == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        else:
            from awscrt import checksums

            crc = checksums.crc64nvme if self.algorithm == "crc64nvme" else checksums.crc32c
            self._crc = crc(data, self._crc)

    def b64(self) -> str:
        raw = self._hash.digest() if self._hash is not None else self._crc.to_bytes(self._WIDTH[self.algorithm], "big")
        return base64.b64encode(raw).decode()


KNOWN_CHECKSUMS = ("crc64nvme", "crc32", "crc32c", "sha1", "sha256")


def _checksum(algorithm: str, data: bytes) -> str | None:
    """base64 of the checksum S3 would compute, or None for an algorithm this module does not know."""
    if algorithm not in KNOWN_CHECKSUMS:
        return None
    running = _Running(algorithm)
    running.update(data)
    return running.b64()


def _content_encodings(headers: dict[str, str]) -> list[str]:
    return [e.strip() for e in headers.get("content-encoding", "").split(",") if e.strip()]


def _is_aws_chunked(headers: dict[str, str]) -> bool:
    """The body is SigV4-streaming framed (``aws-chunked``): chunk headers, payload, trailers."""
    return "aws-chunked" in _content_encodings(headers) or headers.get("x-amz-content-sha256", "").startswith(
        "STREAMING"
    )


def _named_checksums(headers: dict[str, str]) -> list[str]:
    """The algorithms of the ``x-amz-checksum-<algorithm>`` headers a PUT carries."""
    return [
        name[len("x-amz-checksum-") :]
        for name in headers
        if name.startswith("x-amz-checksum-") and name not in ("x-amz-checksum-type", "x-amz-checksum-algorithm")
    ]


class BodyDigest:
    """The MD5 and the named checksums of a PUT body, computed while it arrives (``update`` per piece).

    S3 hashes a body as it streams in; hashing it only after the last byte would add a pass over the
    whole body (~0.1 s per 50 MiB here) to every PutObject and UploadPart the bench answers. The server
    feeds each received piece here; ``_verify`` then uses the results instead of hashing the body again.
    Only for a plain body: an ``aws-chunked`` one carries framing, and is hashed after decoding.
    """

    @classmethod
    def for_put(cls, headers: dict[str, str]) -> BodyDigest | None:
        """A digest for a PUT's body, or None for an ``aws-chunked`` one (hashed after decoding instead)."""
        return None if _is_aws_chunked(headers) else cls(headers)

    def __init__(self, headers: dict[str, str]) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._checksums = {a: _Running(a) for a in _named_checksums(headers) if a in KNOWN_CHECKSUMS}

    def update(self, piece: bytes) -> None:
        self._md5.update(piece)
        for running in self._checksums.values():
            running.update(piece)

    def md5(self) -> bytes:
        return self._md5.digest()

    def checksum(self, algorithm: str) -> str | None:
        running = self._checksums.get(algorithm)
        return running.b64() if running is not None else None


def _error(code: str, message: str, status: str = "400 Bad Request") -> Answer:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    ).encode()
    return status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], [body]


def _backend(bucket: str) -> Any | None:
    from moto.s3.models import s3_backends

    located = s3_backends.bucket_accounts.get(bucket)
    if located is None:
        return None
    partition, account_id = located
    return s3_backends[account_id][partition]


def _range(spec: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> (first, last) inclusive; None: let moto answer."""
    if not spec.startswith("bytes=") or "," in spec or size == 0:
        return None
    first_s, _, last_s = spec[6:].strip().partition("-")
    try:
        if first_s == "":
            n = int(last_s)
            return (max(0, size - n), size - 1) if n > 0 else None
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


def _stream(key: Any, first: int, last: int) -> Iterator[bytes]:
    """Bytes first..last of a stored key, read in chunks under its lock (never the whole object at once)."""
    position = first
    while position <= last:
        with key.lock:
            key._value_buffer.seek(position)
            chunk = key._value_buffer.read(min(READ_CHUNK, last - position + 1))
        if not chunk:
            return
        position += len(chunk)
        yield chunk


def handle(
    environ: Environ, headers: dict[str, str], body: bytes | None, digest: BodyDigest | None = None
) -> Answer | None:
    """Answer a data-path request, or None to let moto answer it.

    ``body``: the request body, read; ``digest``: its digests, computed while it was read (or None).
    """
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    if method not in ("GET", "HEAD", "PUT"):
        return None
    bucket, key_name = split_path(str(environ.get("PATH_INFO", "")))
    if not bucket or not key_name or any(h.startswith(_SPECIAL) for h in headers):
        return None
    if headers.get("x-amz-storage-class", "STANDARD") != "STANDARD":
        return None
    query = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
    backend = _backend(bucket)
    if backend is None:
        return None
    if method == "PUT":
        if _is_aws_chunked(headers):
            if _content_encodings(headers) not in ([], ["aws-chunked"]):
                return None
            decoded = _decode_aws_chunked(body or b"")
            if decoded is None:
                return None
            body, trailers = decoded
            digest = None  # none was made for a framed body (BodyDigest.for_put): hash the decoded payload
            headers = {k: v for k, v in headers.items() if k != "content-encoding"} | trailers
        if set(query) - _QUERY_OK == {"partNumber", "uploadId"}:
            return _upload_part(backend, bucket, query, headers, body or b"", digest)
        if set(query) - _QUERY_OK or "if-match" in headers or "if-none-match" in headers:
            return None
        return _put_object(backend, bucket, key_name, headers, body or b"", digest)
    if set(query) - _QUERY_OK:
        return None
    return _get_object(backend, bucket, key_name, headers, head=method == "HEAD")


def _decode_aws_chunked(raw: bytes) -> tuple[bytes, dict[str, str]] | None:
    """The payload and trailers of an ``aws-chunked`` body (SigV4 streaming); None if malformed.

    Chunk signatures are not checked (the bench checks no signature at all, like moto).
    """
    pieces: list[bytes] = []
    position = 0
    while True:
        end = raw.find(b"\r\n", position)
        if end < 0:
            return None
        try:
            size = int(raw[position:end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return None
        position = end + 2
        if size == 0:
            break
        pieces.append(raw[position : position + size])
        position += size + 2  # the data and its CRLF
    trailers: dict[str, str] = {}
    for line in raw[position:].split(b"\r\n"):
        name, sep, value = line.decode("latin-1").partition(":")
        if sep and not name.lower().startswith("x-amz-trailer-signature"):
            trailers[name.strip().lower()] = value.strip()
    return b"".join(pieces), trailers


def _verify(
    headers: dict[str, str], body: bytes, digest: BodyDigest | None
) -> tuple[Answer | None, str | None, str | None, str]:
    """(an error answer or None, checksum algorithm, its value, the MD5 hex of the body).

    ``digest``: the body's digests computed while it arrived, or None to compute them from ``body``.
    """
    md5 = digest.md5() if digest is not None else hashlib.md5(body, usedforsecurity=False).digest()
    sent_md5 = headers.get("content-md5")
    if sent_md5 and sent_md5 != base64.b64encode(md5).decode():
        return _error("BadDigest", "The Content-MD5 you specified did not match what we received."), None, None, ""
    algorithm, value = None, None
    for algorithm in _named_checksums(headers):
        value = digest.checksum(algorithm) if digest is not None else _checksum(algorithm, body)
        if value is None:
            return None, None, None, ""  # unknown algorithm: moto's business
        if value != headers[f"x-amz-checksum-{algorithm}"]:
            message = f"The {algorithm.upper()} you specified did not match the calculated checksum."
            return _error("BadDigest", message), None, None, ""
    return None, algorithm, value, md5.hex()


def _keep(key: Any, body: bytes) -> None:
    """Make ``body`` the bytes of a key moto just created empty: held in memory, not copied.

    moto would write the body into a spooled file that spills to disk above 5 MiB (~0.15-0.3 s per
    50 MiB after the last byte, with the request still open); S3 has no such step. A ``BytesIO`` over
    ``bytes`` shares them. The key's ETag and checksum are set by the caller from the digests.
    """
    with key.lock:
        key._value_buffer.close()
        key._value_buffer = io.BytesIO(body)
        key.contentsize = len(body)


def _put_object(
    backend: Any, bucket: str, key_name: str, headers: dict[str, str], body: bytes, digest: BodyDigest | None
) -> Answer | None:
    from moto.s3.utils import metadata_from_headers

    error, algorithm, value, md5_hex = _verify(headers, body, digest)
    if error is not None:
        return error
    if not md5_hex:
        return None
    key = backend.put_object(bucket, key_name, b"", etag=md5_hex, checksum_value=value)
    _keep(key, bytes(body))
    key.set_metadata(metadata_from_headers(headers))
    key.set_acl(backend.get_bucket(bucket).acl)
    out = [("ETag", key.etag), ("Content-Length", "0")]
    if algorithm:
        key.checksum_algorithm = algorithm.upper()
        out.append((f"x-amz-checksum-{algorithm}", str(value)))
    return "200 OK", out, [b""]


def _upload_part(
    backend: Any, bucket: str, query: dict[str, str], headers: dict[str, str], body: bytes, digest: BodyDigest | None
) -> Answer | None:
    try:
        number = int(query["partNumber"])
        multipart = backend.get_bucket(bucket).multiparts[query["uploadId"]]
    except (KeyError, ValueError):
        return None
    if not 1 <= number <= 10000:
        return None
    error, algorithm, value, md5_hex = _verify(headers, body, digest)
    if error is not None:
        return error
    if not md5_hex:
        return None
    part = multipart.set_part(number, b"")
    _keep(part, bytes(body))
    part._etag = md5_hex
    out = [("ETag", part.etag), ("Content-Length", "0")]
    if algorithm:
        out.append((f"x-amz-checksum-{algorithm}", str(value)))
    return "200 OK", out, [b""]


def _get_object(backend: Any, bucket: str, key_name: str, headers: dict[str, str], *, head: bool) -> Answer | None:
    key = backend.get_object(bucket, key_name)
    if key is None or getattr(key, "storage_class", "STANDARD") not in ("STANDARD", None):
        return None
    etag = key.etag
    if_match, if_none_match = headers.get("if-match"), headers.get("if-none-match")
    if if_match is not None and if_match.strip('"') != etag.strip('"'):
        return None  # 412 from moto
    if if_none_match is not None and if_none_match.strip('"') == etag.strip('"'):
        return None  # 304 from moto
    size = key.size
    out: list[tuple[str, str]] = [
        ("ETag", etag),
        ("Last-Modified", key.last_modified_RFC1123),
        ("Accept-Ranges", "bytes"),
    ]
    if headers.get("x-amz-checksum-mode") == "ENABLED" and key.checksum_algorithm:
        value = key.checksum_value
        if key.checksum_type == "COMPOSITE":
            value = f"{value}-{key.checksum_parts}"
        out.append((f"x-amz-checksum-{key.checksum_algorithm.lower()}", str(value)))
        if key.checksum_type:
            out.append(("x-amz-checksum-type", key.checksum_type))
    for name, value in key.metadata.items():
        out.append((name, str(value)))
    if not any(name.lower() == "content-type" for name, _ in out):
        out.append(("Content-Type", "binary/octet-stream"))
    status, first, last = "200 OK", 0, size - 1
    if "range" in headers and not head:
        span = _range(headers["range"], size)
        if span is None:
            return None
        first, last = span
        status = "206 Partial Content"
        out.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    out.append(("Content-Length", str(max(0, last - first + 1))))
    if head or size == 0:
        return status, out, [b""]
    return status, out, _stream(key, first, last)


def make_fast(app: Callable[[Environ, Any], Iterable[bytes]]) -> Callable[[Environ, Any], Iterable[bytes]]:
    """A WSGI app answering the data path itself and passing everything else to ``app`` (moto)."""

    def fast_app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        headers = environ.get("bench.headers") or {}
        answer = handle(environ, headers, environ.get("bench.body"), environ.get("bench.digest"))
        if answer is None:
            environ["bench.moto"] = True  # counted as answered by moto (bench/server.py)
            return app(environ, start_response)
        status, out, body = answer
        start_response(status, out)
        return body

    return fast_app
