"""Source modes of a job: streamed manifests, prefix listings, key filters, destination key mapping,
and the staged manifest writer. Planning (``planning.py``) validates the input and orchestrates these.

Everything here streams: a manifest is decoded and parsed chunk by chunk, a prefix listing page by
page, and the staged manifest (the Distributed Map's JSON array of batches) is written as it is
produced — one ``PutObject`` when it is small, a multipart upload with parts of ``part_bytes`` when it
is not. Memory is bounded by a part, the open batch of each source bucket, and — only where two
entries could map to one destination key — a 16-byte digest per object.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import DEFAULT_ENDPOINT, Batch, ObjectSpec
from lambdas.s3.codes import error_code
from lambdas.s3.limits import MIB, MIN_PART_BYTES

logger = logging.getLogger(__name__)

# A batch is one Distributed Map item: it must stay well below the 256 KiB state payload limit.
MAX_BATCH_JSON_BYTES = 128 * 1024
STAGED_PART_BYTES = 8 * MIB  # multipart parts of the staged manifest (S3 minimum is 5 MiB)
MAX_SOURCE_BUCKETS = 100  # open batches are kept per source bucket


# --- the staged manifest -------------------------------------------------------------------------------


class StagedManifest:
    """The Distributed Map's item list: a JSON array of batches, written as it is produced.

    Small manifests are one PutObject at ``close``; from ``part_bytes`` on, a multipart upload whose parts
    are uploaded as they fill (memory: one part). ``abort`` drops an unfinished upload (the staging
    bucket's lifecycle rule also aborts stale uploads after a day).
    """

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int = STAGED_PART_BYTES) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError("multipart parts must be at least 5 MiB")
        self._s3, self.bucket, self.key, self._part_bytes = s3, bucket, key, part_bytes
        self._buffer = bytearray(b"[")
        self._items = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0
        self.peak_buffer = 0

    @property
    def items(self) -> int:
        return self._items

    def add(self, item: Mapping[str, Any]) -> None:
        if self._items:
            self._buffer += b","
        self._buffer += json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._items += 1
        self.peak_buffer = max(self.peak_buffer, len(self._buffer))
        if len(self._buffer) >= self._part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/json"
            )["UploadId"]
        number = len(self._parts) + 1
        body, self._buffer = self._buffer, bytearray()  # handed over, not copied
        response = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.bytes_written += len(body)

    def close(self) -> None:
        self._buffer += b"]"
        if self._upload_id is None:
            body, self._buffer = self._buffer, bytearray()
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json")
            self.bytes_written += len(body)
            return
        self._upload_part()
        self._s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None

    def abort(self) -> None:
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except ClientError as exc:
            logger.warning(
                "could not abort the staged manifest upload",
                extra={"bucket": self.bucket, "key": self.key, "upload_id": upload_id, "error": error_code(exc)},
            )


class ItemSink(Protocol):
    """Where finished batches go: the staged manifest, or a list (``batches_in_memory``)."""

    def add(self, item: Mapping[str, Any]) -> None: ...


class _ListSink(list[Mapping[str, Any]]):
    def add(self, item: Mapping[str, Any]) -> None:
        self.append(item)


class Batcher:
    """Greedy batches per source bucket, bounded by count, known bytes and the batch's JSON size.

    A batch only ever holds objects of one bucket (its credentials endpoint is chosen per bucket).
    """

    def __init__(
        self,
        sink: ItemSink,
        max_objects: int,
        max_bytes: int,
        max_json_bytes: int,
        endpoint_for: Callable[[str], str] = lambda _bucket: DEFAULT_ENDPOINT,
    ) -> None:
        self._sink = sink
        self._max_objects, self._max_bytes, self._max_json = max_objects, max_bytes, max_json_bytes
        self._open: dict[str, tuple[list[dict[str, Any]], list[int]]] = {}  # bucket -> (objects, [bytes, json])
        self._endpoint_for = endpoint_for
        self.endpoints: set[str] = set()  # the TEA endpoints the staged batches need credentials from
        self.batches = 0

    def add(self, bucket: str, item: dict[str, Any], where: str) -> None:
        size = int(item.get("size") or 0)
        item_json = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 1
        current = self._open.get(bucket)
        if current is None:
            if len(self._open) >= MAX_SOURCE_BUCKETS:
                raise InvalidInput(where, f"names more than {MAX_SOURCE_BUCKETS} source buckets in one job")
            current = self._open[bucket] = ([], [0, 0])
        objects, totals = current
        if objects and (
            len(objects) >= self._max_objects
            or totals[0] + size > self._max_bytes
            or totals[1] + item_json > self._max_json
        ):
            self._flush(bucket)
            objects, totals = self._open[bucket] = ([], [0, 0])
        objects.append(item)
        totals[0] += size
        totals[1] += item_json

    def _flush(self, bucket: str) -> None:
        objects, _ = self._open.pop(bucket)
        if objects:
            self.batches += 1
            endpoint = self._endpoint_for(bucket)
            self.endpoints.add(endpoint)
            self._sink.add(
                {"id": f"b{self.batches:06d}", "source_bucket": bucket, "endpoint": endpoint, "objects": objects}
            )

    def finish(self) -> None:
        for bucket in list(self._open):
            self._flush(bucket)

    @property
    def buckets(self) -> int:
        return len(self._open)


def batches_in_memory(
    objects: Iterable[ObjectSpec], source_bucket: str, max_objects: int, max_bytes: int
) -> list[Batch]:
    """The batches Plan would stage for ``objects`` of one bucket, as a list (bench, tests): same rule."""
    items = _ListSink()
    batcher = Batcher(items, max_objects, max_bytes, MAX_BATCH_JSON_BYTES)
    for obj in objects:
        batcher.add(source_bucket, obj.to_dict(), obj.key)
    batcher.finish()
    return [Batch.from_dict(item) for item in items]
