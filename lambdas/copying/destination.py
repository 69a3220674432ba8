"""The destination bucket, written with the Lambda's role: the S3 writes, and what their errors mean.

Every write carries the full-object CRC64NVME computed while streaming, so S3 itself rejects bytes that
differ from what was read. Errors are classified: ``DestinationAccessDenied`` (fatal for the batch),
``TransientCopyError`` (retry), ``IntegrityError`` (redo the object once), ``ObjectFailed`` (record it).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import DestinationAccessDenied, TransientCopyError
from lambdas.copying.signals import IntegrityError, ObjectFailed
from lambdas.s3.codes import DENIED_CODES, INTEGRITY_CODES, NOT_FOUND_CODES, error_message, error_status, is_transient
from lambdas.s3.listing import list_page, list_pages

logger = logging.getLogger(__name__)

CHECKSUM_ALGORITHM = "CRC64NVME"  # S3's full-object checksum, computed by us while streaming
LIST_MAX_PAGES = 2  # destination listing per batch: beyond 2,000 keys under the common prefix, HEAD instead


@dataclass(frozen=True)
class DestinationBucket:
    """The destination bucket and prefix, and the S3 client of the Lambda's role."""

    client: Any
    bucket: str
    prefix: str
    # boto3 client of streamed PutObjects (``s3_config(pool, streamed_puts=True)``); None: every body is buffered
    streamer: Any = None

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def head(self, dest_key: str) -> dict[str, Any] | None:
        """HeadObject; None when the key does not exist.

        S3 answers a HEAD of a missing key with 404 only to a caller allowed ``s3:ListBucket`` on the bucket, and
        with 403 to any other (a grant conditioned on ``s3:prefix`` does not count: a HEAD has no prefix). So a
        403 is not "denied" yet: one LIST of exactly this key tells a missing key (absent: copy it) from an
        existing one the role may not read (DestinationAccessDenied).
        """
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=dest_key)
            return head
        except ClientError as exc:
            code, status = error_status(exc)
            if code != "NoSuchBucket" and (code in NOT_FOUND_CODES or status == 404):
                return None
            if code in DENIED_CODES or status == 403:
                if not self.listed(dest_key):
                    logger.info("HEAD answered 403 for a key the listing shows absent", extra={"dest_key": dest_key})
                    return None
                raise DestinationAccessDenied(
                    f"the copy role may not read {self.url(dest_key)}, which exists (HeadObject: {code})"
                ) from exc
            raise self.error(exc, "HeadObject", dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"HeadObject on the destination failed: {type(exc).__name__}") from exc

    def listed(self, dest_key: str) -> bool:
        """Whether a LIST of the bucket shows ``dest_key`` (after a HEAD answered 403)."""
        try:
            page = list_page(self.client, Bucket=self.bucket, Prefix=dest_key, MaxKeys=1)
        except ClientError as exc:
            code, status = error_status(exc)
            if code in DENIED_CODES or status == 403:
                raise DestinationAccessDenied(
                    f"the copy role may neither HEAD {self.url(dest_key)} nor list {self.url(self.prefix)} "
                    f"({code}): without s3:ListBucket on bucket {self.bucket} (no s3:prefix condition), S3 answers "
                    "403 for a missing key, so a missing key cannot be told from a denied one"
                ) from exc
            raise self.error(exc, "ListObjectsV2", dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"ListObjectsV2 on the destination failed: {type(exc).__name__}") from exc
        return any(item.get("Key") == dest_key for item in page.get("Contents", []))

    def put_object(self, dest_key: str, data: bytes, crc_b64: str, extra: dict[str, Any]) -> None:
        # S3 verifies the bytes it stores against the CRC64NVME of what we read
        params = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM, "ChecksumCRC64NVME": crc_b64, **extra}
        self._put(self.client, dest_key, data, params)

    def put_stream(self, dest_key: str, body: Any, size: int, md5_b64: str, extra: dict[str, Any]) -> None:
        """PutObject of ``size`` bytes read from ``body`` while they are sent; S3 checks them against ``md5_b64``."""
        self._put(self.streamer, dest_key, body, {"ContentLength": size, "ContentMD5": md5_b64, **extra})

    def _put(self, client: Any, dest_key: str, body: Any, params: dict[str, Any]) -> None:
        self._call("PutObject", dest_key, client.put_object, Bucket=self.bucket, Key=dest_key, Body=body, **params)

    def create_multipart_upload(self, dest_key: str, extra: dict[str, Any]) -> str:
        """A new multipart upload with a full-object CRC64NVME; returns its upload id."""
        created = self._call(
            "CreateMultipartUpload",
            dest_key,
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=dest_key,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumType="FULL_OBJECT",
            **extra,
        )
        return str(created["UploadId"])

    def upload_part(self, dest_key: str, upload_id: str, part_number: int, data: bytes, crc_b64: str) -> str:
        """UploadPart with the part's own CRC64NVME; returns the part's ETag."""
        response = self._call(
            "UploadPart",
            dest_key,
            self.client.upload_part,
            Bucket=self.bucket,
            Key=dest_key,
            UploadId=upload_id,
            PartNumber=part_number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumCRC64NVME=crc_b64,
        )
        return str(response["ETag"])

    def complete_multipart_upload(
        self, dest_key: str, upload_id: str, parts: list[dict[str, Any]], crc_b64: str
    ) -> None:
        self._call(
            "CompleteMultipartUpload",
            dest_key,
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=dest_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            ChecksumCRC64NVME=crc_b64,  # S3 rejects the completion if the stored bytes differ
            ChecksumType="FULL_OBJECT",
        )

    def abort_multipart_upload(self, dest_key: str, upload_id: str) -> None:
        """Abort an upload; never raises (Summarize retries, a lifecycle rule is the backstop)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=dest_key, UploadId=upload_id)
            logger.info("aborted a multipart upload", extra={"upload_id": upload_id, "dest_key": dest_key})
        except ClientError as exc:
            if error_status(exc)[0] == "NoSuchUpload":
                return  # already completed or aborted
            logger.error(
                "could not abort a multipart upload; Summarize retries, a lifecycle rule is the backstop",
                extra={"upload_id": upload_id, "dest_key": dest_key, "error": error_status(exc)[0]},
            )
        except BotoCoreError as exc:
            logger.error(
                "could not abort a multipart upload; Summarize retries, a lifecycle rule is the backstop",
                extra={"upload_id": upload_id, "dest_key": dest_key, "error": type(exc).__name__},
            )

    def open_uploads(self, dest_key: str) -> list[str]:
        """The upload ids of the incomplete multipart uploads of exactly ``dest_key`` (ListMultipartUploads).

        For a checkpoint whose upload id cannot be read. Never raises: an empty list when listing fails
        (Summarize lists again, a lifecycle rule is the backstop).
        """
        found: list[str] = []
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=dest_key):
                found += [str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == dest_key]
        except (ClientError, BotoCoreError) as exc:
            logger.error(
                "could not list the open uploads of a destination key",
                extra={"dest_key": dest_key, "error": type(exc).__name__},
            )
        return found

    def error(self, exc: ClientError, operation: str, dest_key: str) -> Exception:
        """What a destination error means for the batch (raise the returned exception)."""
        code, status = error_status(exc)
        where = self.url(self.prefix)
        if code in DENIED_CODES or status == 403:
            return DestinationAccessDenied(f"the copy role may not write {where} ({operation}: {code})")
        if code == "NoSuchBucket":
            return DestinationAccessDenied(f"destination bucket {self.bucket} does not exist ({operation})")
        if code in INTEGRITY_CODES:
            return IntegrityError(f"destination rejected the bytes of {self.url(dest_key)} ({code})")
        if code == "NoSuchUpload":  # aborted under us (lifecycle rule, operator): start the object over
            return IntegrityError(f"the multipart upload of {self.url(dest_key)} vanished")
        if is_transient(code, status):
            return TransientCopyError(f"destination {code} (HTTP {status}) on {operation}")
        return ObjectFailed(f"destination {code} on {operation} {self.url(dest_key)}: {error_message(exc)}")

    def _call(self, operation: str, dest_key: str, method: Callable[..., Any], **params: Any) -> Any:
        try:
            return method(**params)
        except ClientError as exc:
            raise self.error(exc, operation, dest_key) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"{operation} on the destination failed: {type(exc).__name__}") from exc


def list_destination(dest_s3: Any, bucket: str, dest_keys: list[str]) -> set[str] | None:
    """Which of a batch's destination keys exist, from one LIST of their common prefix (bounded).

    Most first runs copy into an empty prefix: one LIST (a PUT-class request, ~12 HEADs' price) then
    saves a HEAD per object (3 → ~2 requests per small object). Objects the listing shows still get
    their HEAD (the recorded source ETag lives in their metadata). None when the common prefix holds
    more than LIST_MAX_PAGES pages of keys or the listing fails: every object is HEADed, as before.
    """
    wanted = set(dest_keys)
    prefix = os.path.commonprefix(dest_keys)  # noqa: RUF071 — S3 prefixes are strings, not paths
    found: set[str] = set()
    try:
        pages = list_pages(dest_s3, Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000})
        for number, page in enumerate(pages, start=1):
            found.update(item["Key"] for item in page.get("Contents", []) if item["Key"] in wanted)
            if page.get("IsTruncated") and number >= LIST_MAX_PAGES:
                return None
    except (ClientError, BotoCoreError) as exc:
        logger.info(
            "destination listing failed: HEAD each object instead",
            extra={"dest_bucket": bucket, "prefix": prefix, "error": type(exc).__name__},
        )
        return None
    return found


@dataclass
class ExistingKeys:
    """The batch's destination keys that exist: listed once, lazily (by the first object that asks).

    ``known()`` is None when there is no listing (disabled, too many keys, or it failed): HEAD each object.
    """

    destination: DestinationBucket
    dest_keys: list[str]
    enabled: bool
    _listing: set[str] | None = None
    _listed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self) -> set[str] | None:
        with self._lock:
            if not self._listed:
                self._listed = True
                if self.enabled and self.dest_keys:
                    self._listing = list_destination(self.destination.client, self.destination.bucket, self.dest_keys)
            return self._listing
