"""Prefix sources: a paged ListObjectsV2 of the DAAC bucket with TEA credentials (refreshed on ExpiredToken)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from lambdas.contracts.errors import CredentialsExpired, InvalidInput, TeaUnavailable
from lambdas.contracts.models import ObjectSpec
from lambdas.planning.keys import KeyFilter
from lambdas.s3.codes import DENIED_CODES, EXPIRED_CODES, error_status
from lambdas.s3.listing import list_page

logger = logging.getLogger(__name__)

# --- prefix listing ------------------------------------------------------------------------------------


class SourceClients(Protocol):
    """S3 clients signed with TEA credentials for a source bucket (the endpoint is chosen per bucket)."""

    def s3_for(self, bucket: str) -> Any: ...

    def refreshed(self, bucket: str) -> Any:
        """A client with new credentials, after S3 answered ExpiredToken."""
        ...


@dataclass(frozen=True)
class ListedPage:
    """One ListObjectsV2 page's kept objects, and the token that continues after it (None: the last page)."""

    objects: list[ObjectSpec]
    token: str | None


def list_prefix(
    clients: SourceClients,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    *,
    check_deadline: Callable[[int], None] | None = None,
    page_size: int = 1000,
    max_refreshes: int = 3,
    stats: dict[str, int] | None = None,
) -> Iterator[ObjectSpec]:
    """Objects under ``prefix`` (sizes from the listing), filtered on the key relative to the prefix.

    ``check_deadline(number)`` runs after every page but the last; see ``list_prefix_pages``.
    """
    pages = list_prefix_pages(
        clients, bucket, prefix, key_filter, page_size=page_size, max_refreshes=max_refreshes, stats=stats
    )
    for number, page in enumerate(pages, start=1):
        yield from page.objects
        if page.token is not None and check_deadline is not None:
            check_deadline(number)


def list_prefix_pages(
    clients: SourceClients,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    *,
    token: str | None = None,
    page_size: int = 1000,
    max_refreshes: int = 3,
    stats: dict[str, int] | None = None,
) -> Iterator[ListedPage]:
    """The listing under ``prefix``, page by page, from continuation ``token`` (None: the start).

    Paged ListObjectsV2, one page in memory at a time; each page carries the token of the next (Plan's loop
    checkpoints it). Folder markers (keys ending in '/') are skipped.
    ExpiredToken → new credentials and the same page again (at most ``max_refreshes`` times);
    AccessDenied / NoSuchBucket → InvalidInput.
    ``stats`` (if given) counts pages, listed objects (folder markers apart), kept objects and credential refreshes.
    """
    counts = stats if stats is not None else {}
    for name in ("pages", "listed", "kept", "refreshes", "folder_markers"):
        counts.setdefault(name, 0)
    client = clients.s3_for(bucket)
    refreshes = 0
    while True:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if token is not None:
            params["ContinuationToken"] = token
        try:
            page = list_page(client, **params)  # EncodingType=url: every key intact (lambdas/s3/listing.py)
        except ClientError as exc:
            code, _status = error_status(exc)
            if code in EXPIRED_CODES:
                refreshes += 1
                if refreshes > max_refreshes:
                    raise CredentialsExpired(
                        f"S3 kept answering {code} while listing s3://{bucket}/{prefix} after {max_refreshes} "
                        "credential refreshes; check the clocks and TEA"
                    ) from None
                logger.info(
                    "listing met expired credentials, refreshing them",
                    extra={"bucket": bucket, "prefix": prefix, "error": code},
                )
                counts["refreshes"] += 1
                client = clients.refreshed(bucket)
                continue
            if code in DENIED_CODES:
                raise InvalidInput(
                    "source.bucket",
                    f"the TEA credentials may not list s3://{bucket}/{prefix} (AccessDenied): check that the bucket "
                    "belongs to the configured TEA endpoint's DAAC",
                ) from None
            if code == "NoSuchBucket":
                raise InvalidInput("source.bucket", f"bucket {bucket!r} does not exist") from None
            raise
        counts["pages"] += 1
        kept: list[ObjectSpec] = []
        for item in page.get("Contents", []):
            key = str(item["Key"])
            if key.endswith("/"):
                counts["folder_markers"] += 1
                continue
            counts["listed"] += 1
            if key_filter.accepts(key[len(prefix) :]):
                counts["kept"] += 1
                kept.append(ObjectSpec(key, int(item.get("Size", 0))))
        if not page.get("IsTruncated"):
            yield ListedPage(kept, None)
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise TeaUnavailable(f"S3 listing of s3://{bucket}/{prefix} is truncated without a continuation token")
        yield ListedPage(kept, token)
