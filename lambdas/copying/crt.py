"""The small-object data path on the AWS Common Runtime's native S3 client (``awscrt.s3``).

Why: with many small objects in flight, a copy is bound by CPU per request. botocore spends ~1.5-2 ms of
Python per request (serializing, signing, parsing); the CRT does HTTP and SigV4 in C on its own event
loop, and its Python callbacks cost ~0.5 ms per object copied (``make bench``, 100 KiB set).

``CrtS3`` wraps a boto3 S3 client and answers, through the CRT, exactly two calls:

- ``get_small``: a GetObject of an object the plan says is small (below the multipart threshold), read
  whole into memory. It asks for ``Range: bytes=0-<window-1>``, so a plan that understated the size
  cannot make it buffer more than the window: the answer then carries the whole object's size and a
  body that ends early, and ``SourceStream`` re-opens the rest with a ranged GET (``IfMatch`` the ETag)
  on the boto3 client — or the size check fails the object. ``IfNoneMatch`` / ``IfMatch`` work as in
  boto3 (304 and 412 become the same ``ClientError``);
- ``put_object``: one PutObject with the caller's headers, the full-object CRC64NVME included, so S3
  still verifies every byte.

Everything else (HEAD, listings, multipart uploads, aborts, large GETs that stream) goes to the boto3
client unchanged (``__getattr__``). Errors are raised as botocore ``ClientError`` (code from S3's XML,
HTTP status) or ``HTTPClientError`` (no answer), so ``source.py`` and ``destination.py`` classify them
exactly as before: ``ExpiredToken`` still means refresh, 403 still means access denied.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from awscrt.exceptions import AwsCrtError
from botocore.exceptions import ClientError, HTTPClientError

CRT_TIMEOUT_SECONDS = 120.0  # one small GET or PUT; the CRT retries 5xx/throttling itself
_CODE_RE = re.compile(rb"<Code>([^<]+)</Code>")
_MESSAGE_RE = re.compile(rb"<Message>([^<]*)</Message>")
# boto3 parameter -> HTTP header, for what ``put_object`` is called with
_PUT_HEADERS = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "CacheControl": "Cache-Control",
    "ChecksumCRC64NVME": "x-amz-checksum-crc64nvme",
    "ChecksumAlgorithm": "x-amz-sdk-checksum-algorithm",
}
# response header -> boto3 response key, for what the engine reads from a GetObject answer
_GET_KEYS = {
    "etag": "ETag",
    "content-type": "ContentType",
    "content-encoding": "ContentEncoding",
    "content-disposition": "ContentDisposition",
    "cache-control": "CacheControl",
    "content-range": "ContentRange",
    "last-modified": "LastModified",
}


def available() -> bool:
    """True when awscrt's S3 client can be imported (the CopyBatch layer ships it)."""
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        return False
    return True


class _Body(io.BytesIO):
    """A GetObject body already in memory (``read``/``close`` like botocore's StreamingBody)."""


class CrtS3:
    """A boto3 S3 client whose small GETs and PutObjects go through the CRT (see the module docstring).

    ``credentials``: (access key id, secret, session token or None), or None for the default chain (the
    Lambda role's environment). ``endpoint_url``: None for AWS (virtual-hosted style over TLS), or an
    ``http(s)://host:port`` endpoint addressed path-style (the bench's local S3).
    """

    def __init__(
        self,
        client: Any,
        *,
        region: str,
        credentials: tuple[str, str, str | None] | None,
        endpoint_url: str | None = None,
        max_connections: int = 64,
    ) -> None:
        from awscrt import auth, s3
        from awscrt import io as crt_io

        self._client = client
        self._region = region
        self._endpoint = urlsplit(endpoint_url) if endpoint_url else None
        group = crt_io.EventLoopGroup(1)  # one event-loop thread: the Lambda has one vCPU
        bootstrap = crt_io.ClientBootstrap(group, crt_io.DefaultHostResolver(group))
        if credentials is None:
            provider = auth.AwsCredentialsProvider.new_default_chain(bootstrap)
        else:
            provider = auth.AwsCredentialsProvider.new_static(*credentials)
        tls = (
            s3.S3RequestTlsMode.DISABLED
            if self._endpoint is not None and self._endpoint.scheme == "http"
            else s3.S3RequestTlsMode.ENABLED
        )
        self._crt = s3.S3Client(
            bootstrap=bootstrap,
            region=region,
            credential_provider=provider,
            tls_mode=tls,
            throughput_target_gbps=10.0,
            max_active_connections_override=max(1, max_connections),
        )
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    # -- addressing

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host header, path) for an object."""
        quoted = quote(key, safe="/~")
        if self._endpoint is not None:
            return self._endpoint.netloc, f"/{bucket}/{quoted}"
        if "." in bucket:
            return f"s3.{self._region}.amazonaws.com", f"/{bucket}/{quoted}"
        return f"{bucket}.s3.{self._region}.amazonaws.com", f"/{quoted}"

    def _send(
        self, operation: str, method: str, bucket: str, key: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        """One signed request; (status, lower-case headers, body) of a 2xx answer, else raise."""
        from awscrt.http import HttpHeaders, HttpRequest

        host, path = self._target(bucket, key)
        all_headers = [("Host", host), *headers]
        if body is not None:
            all_headers.append(("Content-Length", str(len(body))))
        request = HttpRequest(method, path, HttpHeaders(all_headers), io.BytesIO(body) if body is not None else None)
        answer: dict[str, Any] = {"headers": {}, "chunks": [], "status": 0}
        lock = threading.Lock()

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            answer["status"] = status_code
            answer["headers"] = {name.lower(): value for name, value in headers}

        def on_body(chunk: bytes, **_: Any) -> None:
            with lock:
                answer["chunks"].append(bytes(chunk))

        def on_done(
            error: BaseException | None = None,
            error_headers: list[tuple[str, str]] | None = None,
            error_body: bytes | None = None,
            status_code: int | None = None,
            **_: Any,
        ) -> None:
            answer["error"], answer["error_body"] = error, error_body
            if error_headers:
                answer["headers"] = {name.lower(): value for name, value in error_headers}
            if status_code:
                answer["status"] = status_code

        made = self._crt.make_request(
            type=self._s3.S3RequestType.DEFAULT,
            operation_name=operation,
            request=request,
            on_headers=on_headers,
            on_body=on_body,
            on_done=on_done,
        )
        try:
            made.finished_future.result(timeout=CRT_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            made.cancel()
            raise HTTPClientError(error=f"{operation} timed out after {CRT_TIMEOUT_SECONDS:.0f} s") from exc
        except AwsCrtError as exc:  # the request failed: S3's answer (status, XML) or no answer at all
            status = int(answer.get("status") or 0)
            if not status:
                raise HTTPClientError(error=f"{operation}: {type(exc).__name__}") from exc
            raise _client_error(operation, status, answer.get("error_body") or b"", answer["headers"]) from exc
        return int(answer["status"]), answer["headers"], b"".join(answer["chunks"])

    # -- the two calls

    def get_small(
        self, *, Bucket: str, Key: str, window: int, IfNoneMatch: str | None = None, IfMatch: str | None = None
    ) -> dict[str, Any]:
        """GetObject of a small object into memory (at most ``window`` bytes); boto3's response shape."""
        headers = [("Range", f"bytes=0-{max(0, window - 1)}")]
        if IfNoneMatch is not None:
            headers.append(("If-None-Match", IfNoneMatch))
        if IfMatch is not None:
            headers.append(("If-Match", IfMatch))
        try:
            _, answer, data = self._send("GetObject", "GET", Bucket, Key, headers, None)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416:  # an empty object
                empty: dict[str, Any] = self._client.get_object(
                    Bucket=Bucket, Key=Key, **_conditions(IfNoneMatch, IfMatch)
                )
                return empty
            raise
        response: dict[str, Any] = {
            boto_key: answer[header] for header, boto_key in _GET_KEYS.items() if header in answer
        }
        total = len(data)
        content_range = answer.get("content-range", "")
        if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
            total = int(content_range.rsplit("/", 1)[1])
        response.pop("ContentRange", None)  # the engine asked for the whole object
        response["ContentLength"] = total
        response["Metadata"] = {k[len("x-amz-meta-") :]: v for k, v in answer.items() if k.startswith("x-amz-meta-")}
        response["Body"] = _Body(data)
        return response

    def put_object(
        self, *, Bucket: str, Key: str, Body: bytes, Metadata: Mapping[str, str] | None = None, **params: Any
    ) -> dict[str, Any]:
        """PutObject with the same parameters the engine gives boto3 (CRC64NVME included)."""
        headers = [(header, str(params[name])) for name, header in _PUT_HEADERS.items() if name in params]
        unknown = set(params) - set(_PUT_HEADERS)
        if unknown:
            raise TypeError(f"CrtS3.put_object does not send {sorted(unknown)}")
        headers += [(f"x-amz-meta-{name}", value) for name, value in (Metadata or {}).items()]
        _, answer, _ = self._send("PutObject", "PUT", Bucket, Key, headers, bytes(Body))
        return {"ETag": answer.get("etag", "")}


def _conditions(if_none_match: str | None, if_match: str | None) -> dict[str, str]:
    out = {}
    if if_none_match is not None:
        out["IfNoneMatch"] = if_none_match
    if if_match is not None:
        out["IfMatch"] = if_match
    return out


def _client_error(operation: str, status: int, body: bytes, headers: Mapping[str, str]) -> ClientError:
    """The botocore error a boto3 client would have raised for this answer."""
    code_match, message_match = _CODE_RE.search(body), _MESSAGE_RE.search(body)
    code = code_match.group(1).decode("utf-8", "replace") if code_match else ""
    if not code:
        code = {304: "304", 412: "PreconditionFailed", 404: "NoSuchKey", 403: "AccessDenied"}.get(status, str(status))
    message = message_match.group(1).decode("utf-8", "replace") if message_match else ""
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": dict(headers)},
    }
    return ClientError(response, operation)
