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


def key_rule_violation(value: str) -> str | None:
    """What S3 itself would reject in a key, or None: S3 takes any UTF-8 string of 1 to 1,024 bytes.

    Nothing else is refused: control characters, a tab, whitespace at either end, '.' and '..' segments, a leading
    '/', invisible characters are all keys S3 stores, and teacopy copies them byte-exact. (A '..' segment matters
    only to whoever maps keys to local paths later: see docs/sources.md.)
    """
    if value == "":
        return "must not be empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8 text (an unpaired surrogate)"
    if size > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes (UTF-8): {size} bytes"
    return None


def validate_key(value: Any, field: str) -> str:
    """A source key, used verbatim: only what S3 rejects is refused (``key_rule_violation``)."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (an S3 key)")
    violation = key_rule_violation(value)
    if violation is not None:
        raise InvalidInput(field, violation)
    return value


def unwritable_destination_key(dest_key: str) -> str | None:
    """Why S3 would refuse to write ``dest_key`` (a source key after the destination prefix and key mapping), or
    None. CopyBatch records such an object failed with this reason, and the job goes on."""
    violation = key_rule_violation(dest_key)
    return None if violation is None else f"destination key {violation}; shorten destination.prefix or the mapping"


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
    """A listing prefix, used as S3 uses it (no '/' is appended: 'a/b' also lists 'a/bc'). Any key's prefix is one."""
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string (a key prefix of the source bucket; '' for all)")
    if value.startswith("s3://"):
        raise InvalidInput(field_name, "give the prefix without s3://bucket/ (the bucket is source.bucket)")
    violation = key_rule_violation(value) if value else None
    if violation is not None:
        raise InvalidInput(field_name, violation)
    return value
