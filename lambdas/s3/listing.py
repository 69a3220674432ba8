"""Object listings that return every key intact: ``EncodingType=url``, decoded here.

S3 keys are any UTF-8 of at most 1,024 bytes, control characters included; an XML 1.0 listing cannot carry
some of them (``\\x01``, ``\\x1f``, ...), so S3 returns such keys only URL-encoded. Every listing of source or
destination keys asks for ``EncodingType=url`` itself and decodes the keys (form encoding, as botocore does),
rather than relying on botocore's implicit handling of an absent ``EncodingType``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

ENCODING = "url"
_TOP_LEVEL = ("Prefix", "StartAfter", "Delimiter")
_NESTED = (("Contents", "Key"), ("CommonPrefixes", "Prefix"))


def decoded(page: dict[str, Any]) -> dict[str, Any]:
    """A ListObjectsV2 answer with its keys and prefixes decoded (when S3 encoded them)."""
    if page.get("EncodingType") != ENCODING:
        return page
    for name in _TOP_LEVEL:
        if isinstance(page.get(name), str):
            page[name] = unquote_plus(page[name])
    for outer, inner in _NESTED:
        for member in page.get(outer) or []:
            if isinstance(member.get(inner), str):
                member[inner] = unquote_plus(member[inner])
    return page


def list_page(client: Any, **params: Any) -> dict[str, Any]:
    """One ListObjectsV2 call (``params`` as boto3 takes them), keys decoded."""
    return decoded(client.list_objects_v2(EncodingType=ENCODING, **params))


def list_pages(client: Any, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of a ListObjectsV2 listing (boto3's paginator), keys decoded."""
    for page in client.get_paginator("list_objects_v2").paginate(EncodingType=ENCODING, **params):
        yield decoded(page)
