"""Name the S3 operation of a path-style HTTP request, and its price class.

Only what the bench's clients send needs to be right (boto3, s3transfer and the AWS CLI, all
path-style against an IP endpoint); anything else is still counted, under a generic name.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

# S3 Standard request pricing (us-west-2 list prices, research.md): PUT, COPY, POST and LIST requests
# are PUT-class; GET, HEAD and everything else are GET-class; DELETE and abort (cancel) are free.
PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "UploadPart",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListMultipartUploads",
        "ListParts",
        "ListBuckets",
        "CreateBucket",
        "PutObjectTagging",
        "PutObjectAcl",
        "PutBucketConfig",
        "RestoreObject",
    }
)
FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload", "DeleteBucket"})


def price_class(operation: str) -> str:
    """``put``, ``get`` or ``free``."""
    if operation in FREE:
        return "free"
    if operation in PUT_CLASS:
        return "put"
    return "get"


def split_path(path: str) -> tuple[str, str]:
    """``/bucket/some/key`` -> (``bucket``, ``some/key``); ``/`` -> (``""``, ``""``)."""
    trimmed = path.lstrip("/")
    bucket, _, key = trimmed.partition("/")
    return unquote(bucket), unquote(key)


def classify(method: str, path: str, query: str, headers: dict[str, str]) -> tuple[str, str]:
    """(bucket, operation) of one request. ``headers`` keys are lower-case."""
    method = method.upper()
    bucket, key = split_path(path)
    params = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    copy_source = "x-amz-copy-source" in headers
    if not bucket:
        return "", "ListBuckets" if method == "GET" else f"{method}Service"
    if not key:
        return bucket, _bucket_operation(method, params)
    if method == "HEAD":
        return bucket, "HeadObject"
    if method == "GET":
        if "uploadId" in params:
            return bucket, "ListParts"
        for sub, name in (
            ("tagging", "GetObjectTagging"),
            ("acl", "GetObjectAcl"),
            ("attributes", "GetObjectAttributes"),
        ):
            if sub in params:
                return bucket, name
        return bucket, "GetObject"
    if method == "PUT":
        if "uploadId" in params and "partNumber" in params:
            return bucket, "UploadPartCopy" if copy_source else "UploadPart"
        if "tagging" in params:
            return bucket, "PutObjectTagging"
        if "acl" in params:
            return bucket, "PutObjectAcl"
        return bucket, "CopyObject" if copy_source else "PutObject"
    if method == "POST":
        if "uploads" in params:
            return bucket, "CreateMultipartUpload"
        if "uploadId" in params:
            return bucket, "CompleteMultipartUpload"
        if "restore" in params:
            return bucket, "RestoreObject"
        return bucket, "PostObject"
    if method == "DELETE":
        return bucket, "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return bucket, f"{method}Object"


def _bucket_operation(method: str, params: set[str]) -> str:
    if method == "GET":
        if "list-type" in params:
            return "ListObjectsV2"
        if "uploads" in params:
            return "ListMultipartUploads"
        if "versions" in params:
            return "ListObjectVersions"
        if "location" in params:
            return "GetBucketLocation"
        return (
            "GetBucketConfig"
            if params - {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}
            else "ListObjects"
        )
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return "PutBucketConfig" if params else "CreateBucket"
    if method == "DELETE":
        return "DeleteBucket" if not params else "DeleteBucketConfig"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    return f"{method}Bucket"
