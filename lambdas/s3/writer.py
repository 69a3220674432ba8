"""Large objects written as they are produced: the staged manifest (Plan) and report.csv (Summarize)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from lambdas.s3.codes import error_code
from lambdas.s3.limits import MAX_PARTS, MIB, MIN_PART_BYTES

logger = logging.getLogger(__name__)

STAGED_PART_BYTES = 8 * MIB  # multipart parts of the staged manifest and of report.csv (S3 minimum: 5 MiB)


class StagedWriter:
    """An object of the staging bucket written as it is produced, in bounded memory, by one or more invocations.

    Bytes are appended to a buffer; small objects are one PutObject at ``finish``, larger ones a multipart
    upload whose parts are uploaded as the buffer reaches ``part_bytes`` (memory: one part). The writer can stop
    and continue in another process: ``state()`` (the upload id and the parts) and ``tail()`` (the bytes not
    uploaded yet, always shorter than a part) are what a checkpoint carries, ``resume`` rebuilds it. Every part
    but the last is therefore at least ``part_bytes``, whichever invocation uploads it, and a part uploaded again
    after a crash (the same number, the same bytes: the producer continues from its checkpoint) replaces the
    first. ``finish`` then ``complete`` (``close`` does both); ``abort`` drops an unfinished upload (the staging
    bucket's lifecycle rule also aborts uploads older than a day).
    """

    def __init__(
        self, s3: Any, bucket: str, key: str, part_bytes: int = STAGED_PART_BYTES, content_type: str = ""
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError("multipart parts must be at least 5 MiB")
        self._s3, self.bucket, self.key, self._part_bytes = s3, bucket, key, part_bytes
        self.content_type = content_type or "application/octet-stream"
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0
        self.peak_buffer = 0

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.peak_buffer = max(self.peak_buffer, len(self._buffer))
        if len(self._buffer) >= self._part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise RuntimeError(f"s3://{self.bucket}/{self.key} would need more than {MAX_PARTS} parts")
        body, self._buffer = self._buffer, bytearray()  # handed over, not copied
        response = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.bytes_written += len(body)

    # -- continuation

    def state(self) -> dict[str, Any]:
        """What a later invocation needs to go on (the tail, ``tail()``, is carried separately: it is large)."""
        return {
            "upload_id": self._upload_id,
            "parts": list(self._parts),
            "bytes_written": self.bytes_written,
            "part_bytes": self._part_bytes,
        }

    def tail(self) -> bytes:
        """The bytes not uploaded yet (shorter than a part)."""
        return bytes(self._buffer)

    def restore(self, state: Mapping[str, Any], tail: bytes) -> None:
        self._part_bytes = int(state["part_bytes"])
        self._upload_id = state["upload_id"]
        self._parts = [dict(part) for part in state["parts"]]
        self.bytes_written = int(state["bytes_written"])
        self._buffer = bytearray(tail)

    # -- the end

    def finish(self) -> None:
        """The last part (a multipart upload: ``complete`` it next), or the whole object in one PutObject."""
        if self._upload_id is None:
            body, self._buffer = self._buffer, bytearray()
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type)
            self.bytes_written += len(body)
            return
        self._upload_part()

    def complete(self) -> None:
        if self._upload_id is not None:
            complete_staged_upload(self._s3, self.bucket, self.key, self._upload_id, self._parts)
            self._upload_id = None

    def close(self) -> None:
        self.finish()
        self.complete()

    def abort(self) -> None:
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            abort_staged_upload(self._s3, self.bucket, self.key, upload_id)


def complete_staged_upload(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
    """Complete a staged multipart upload; a retry that finds it completed already (NoSuchUpload, and the
    object is there) is fine. An upload that vanished otherwise (the staging bucket aborts uploads older than
    a day) cannot be recovered: the error says to start again."""
    try:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except ClientError as exc:
        if error_code(exc) != "NoSuchUpload":
            raise
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            raise RuntimeError(
                f"the staged upload of s3://{bucket}/{key} vanished before it was completed (the staging bucket "
                "aborts uploads after a day): start the job again"
            ) from exc
        logger.info("the staged upload was completed already", extra={"bucket": bucket, "key": key})


def abort_staged_upload(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        logger.warning(
            "could not abort a staged upload",
            extra={"bucket": bucket, "key": key, "upload_id": upload_id, "error": error_code(exc)},
        )
