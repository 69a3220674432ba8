"""S3 names: bucket names, keys and prefixes, validated as S3 itself would (one rule each, used everywhere)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from lambdas.contracts.errors import InvalidInput
from lambdas.s3.limits import MAX_KEY_BYTES

BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUCKET_RULE = "is not a valid S3 bucket name (3-63 chars: a-z 0-9 . -)"


def is_bucket_name(value: Any) -> bool:
    """S3's bucket naming rules (general purpose buckets): the CDK config and Plan both ask this."""
    return isinstance(value, str) and BUCKET_RE.match(value) is not None


def validate_bucket(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (an S3 bucket name)")
    if not is_bucket_name(value):
        raise InvalidInput(field, f"{value[:80]!r} {BUCKET_RULE}")
    return value


def split_s3_url(url: str) -> tuple[str, str] | None:
    """(bucket, key) of ``s3://bucket/key``; None when it is not such a URL (no bucket, no key)."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key or any(ch.isspace() for ch in bucket):
        return None
    return bucket, key


def validate_key(value: Any, field: str) -> str:
    """Keys are used verbatim as S3 keys and, prefixed, as destination keys: reject surprises."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (an S3 key)")
    if value.strip() == "":
        raise InvalidInput(field, "must not be empty")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(field, f"is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    if value.startswith("/"):
        raise InvalidInput(field, f"{value[:80]!r} must not start with '/' (S3 keys are relative to the bucket)")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
        raise InvalidInput(field, f"{value[:80]!r} contains a control or invisible character")
    if ".." in value.split("/"):
        raise InvalidInput(field, f"{value[:80]!r} contains a '..' path segment")
    if value.startswith("s3://"):
        raise InvalidInput(field, "give the key without s3://bucket/ (the bucket is source.bucket)")
    return value


def normalize_prefix(value: Any, field: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if value.startswith("/"):
        raise InvalidInput(field, "must not start with '/'")
    if ".." in value.split("/") or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise InvalidInput(field, "must not contain '..' segments or control characters")
    return value if value.endswith("/") else value + "/"


def parse_s3_url(value: Any, field: str) -> tuple[str, str]:
    """A validated (bucket, key) from ``s3://bucket/key`` or ``{"bucket": ..., "key": ...}``."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"bucket", "key"})
        if unknown:
            raise InvalidInput(f"{field}.{unknown[0]}", "unknown field; allowed: bucket, key")
        return validate_bucket(value.get("bucket"), f"{field}.bucket"), validate_key(value.get("key"), f"{field}.key")
    parts = split_s3_url(value) if isinstance(value, str) else None
    if parts is None:
        raise InvalidInput(field, "must be an s3://bucket/key URL or {'bucket': ..., 'key': ...}")
    return validate_bucket(parts[0], f"{field} (bucket)"), validate_key(parts[1], f"{field} (key)")


def validate_source_prefix(value: Any, field_name: str) -> str:
    """A listing prefix, used as S3 uses it (no '/' is appended: 'a/b' also lists 'a/bc')."""
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string (a key prefix of the source bucket; '' for all)")
    if value.startswith("/"):
        raise InvalidInput(field_name, "must not start with '/' (S3 keys are relative to the bucket)")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(field_name, f"is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value) or ".." in value.split("/"):
        raise InvalidInput(field_name, "must not contain control characters or '..' segments")
    if value.startswith("s3://"):
        raise InvalidInput(field_name, "give the prefix without s3://bucket/ (the bucket is source.bucket)")
    return value
