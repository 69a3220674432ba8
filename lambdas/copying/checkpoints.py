"""Checkpoints of paused multipart uploads: the ``Checkpoint`` shape and the store in the staging bucket.

A checkpoint (``runs/<run>/uploads/<batch>/<sha256(key)>.json``) says which parts of an open upload
are done and carries the running checksums after them, so the next invocation continues from there.
Summarize reads the same JSON to abort the uploads a failed run leaves behind.

A checkpoint that cannot be used (not JSON, a shape that does not parse, or one naming another object)
still stands for an open upload: it is never just deleted. Its upload is aborted by the upload id when
that can be read (``upload_ref``), else every open upload of the object's destination key is listed and
aborted, so no incomplete upload stays in the user's bucket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import staging
from lambdas.contracts.errors import TransientCopyError
from lambdas.copying.destination import DestinationBucket
from lambdas.s3.limits import MIN_PART_BYTES

logger = logging.getLogger(__name__)
UNREADABLE = object()  # a checkpoint file whose content is not JSON


@dataclass(frozen=True)
class UploadRef:
    """What can still be read from a checkpoint that does not parse: its upload id and where the upload is."""

    upload_id: str | None
    dest_bucket: str | None
    dest_key: str | None


def upload_ref(raw: Any) -> UploadRef:
    """The upload a checkpoint's JSON (``UNREADABLE`` if not JSON) names, as far as it can be read."""

    def text(name: str) -> str | None:
        value = raw.get(name) if isinstance(raw, dict) else None
        return value if isinstance(value, str) and value else None

    return UploadRef(text("upload_id"), text("dest_bucket"), text("dest_key"))


@dataclass
class Checkpoint:
    """A paused multipart upload: parts 1..len(parts) are uploaded, ``digest`` covers exactly their bytes."""

    key: str
    dest_bucket: str
    dest_key: str
    upload_id: str
    source_etag: str
    size: int
    part_size: int
    parts: list[dict[str, Any]]
    digest: dict[str, Any]
    stalled: int = 0

    @property
    def offset(self) -> int:
        return len(self.parts) * self.part_size

    def replace(self, **changes: Any) -> Checkpoint:
        return Checkpoint(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "dest_bucket": self.dest_bucket,
            "dest_key": self.dest_key,
            "upload_id": self.upload_id,
            "source_etag": self.source_etag,
            "size": self.size,
            "part_size": self.part_size,
            "parts": self.parts,
            "digest": self.digest,
            "stalled": self.stalled,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise ValueError("checkpoint is not an object")
        parts = data["parts"]
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise ValueError("checkpoint parts are not a list of parts")
        if [p.get("PartNumber") for p in parts] != list(range(1, len(parts) + 1)):
            raise ValueError("checkpoint parts are not 1..n")
        checkpoint = cls(
            key=str(data["key"]),
            dest_bucket=str(data["dest_bucket"]),
            dest_key=str(data["dest_key"]),
            upload_id=str(data["upload_id"]),
            source_etag=str(data["source_etag"]),
            size=int(data["size"]),
            part_size=int(data["part_size"]),
            parts=parts,
            digest=dict(data["digest"]),
            stalled=int(data.get("stalled", 0)),
        )
        if checkpoint.part_size < MIN_PART_BYTES or not 0 <= checkpoint.offset < checkpoint.size:
            raise ValueError("checkpoint sizes are inconsistent")
        return checkpoint


def list_checkpoints(staging_s3: Any, bucket: str, prefix: str) -> set[str]:
    """Staging keys of the batch's upload checkpoints (one LIST; usually empty)."""
    try:
        return set(staging.list_keys(staging_s3, bucket, prefix))
    except (ClientError, BotoCoreError) as exc:
        raise TransientCopyError(f"could not list upload checkpoints s3://{bucket}/{prefix}") from exc


class CheckpointStore:
    """One batch's checkpoints: load, save, forget (the file) and discard (the upload too).

    ``keys`` are the staging keys that exist (listed once per invocation by ``load_keys``, then kept up
    to date), so an object without a checkpoint costs no request. Checkpoints read or written are remembered.
    """

    def __init__(
        self,
        staging_s3: Any,
        bucket: str,
        *,
        run_id: str,
        batch_id: str,
        destination: DestinationBucket,
    ) -> None:
        self._staging_s3, self._bucket = staging_s3, bucket
        self._run_id, self._batch_id = run_id, batch_id
        self._destination = destination
        self.keys: set[str] = set()  # staging keys of this batch's upload checkpoints (load_keys)
        self._known: dict[str, Checkpoint] = {}  # source key -> checkpoint read or written

    def load_keys(self) -> None:
        """List the batch's checkpoints (one LIST, once per invocation before any object starts)."""
        self.keys = list_checkpoints(
            self._staging_s3, self._bucket, staging.uploads_prefix(self._run_id, self._batch_id)
        )

    def staging_key(self, key: str) -> str:
        return staging.upload_checkpoint_key(self._run_id, self._batch_id, key)

    def load(self, key: str, dest_key: str) -> Checkpoint | None:
        """The checkpoint of source ``key``; None: none, or an unusable one (its upload is then aborted)."""
        staging_key = self.staging_key(key)
        if staging_key not in self.keys:
            return None
        known = self._known.get(key)
        if known is not None:
            return known
        try:
            raw = staging.get_json(self._staging_s3, self._bucket, staging_key)
        except (ClientError, BotoCoreError) as exc:
            raise TransientCopyError(f"could not read the upload checkpoint of {key}") from exc
        except ValueError:  # json.JSONDecodeError, UnicodeDecodeError: the file is not JSON
            raw = UNREADABLE
        try:
            checkpoint = Checkpoint.from_dict(raw)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("abandoning a malformed upload checkpoint", extra={"key": key, "reason": str(exc)[:200]})
            self.abandon(key, dest_key, raw)
            return None
        if (
            checkpoint.key != key
            or checkpoint.dest_key != dest_key
            or checkpoint.dest_bucket != self._destination.bucket
        ):
            logger.warning("abandoning an upload checkpoint that names another object", extra={"key": key})
            self.abandon(key, dest_key, raw)
            return None
        self._known[key] = checkpoint
        return checkpoint

    def abandon(self, key: str, dest_key: str, raw: Any) -> None:
        """Abort the upload of an unusable checkpoint, then delete the checkpoint.

        By its upload id when that can be read (at the key it names and at the object's own); otherwise
        every open upload of the object's destination key is this batch's (one object per key): abort them.
        """
        ref = upload_ref(raw)
        if ref.upload_id is not None:
            for candidate in dict.fromkeys(k for k in (ref.dest_key, dest_key) if k is not None):
                self._destination.abort_multipart_upload(candidate, ref.upload_id)
        else:
            for upload_id in self._destination.open_uploads(dest_key):
                self._destination.abort_multipart_upload(dest_key, upload_id)
        self.forget(key)

    def save(self, checkpoint: Checkpoint) -> bool:
        """Write the checkpoint; False when the staging bucket refused it."""
        staging_key = self.staging_key(checkpoint.key)
        try:
            staging.put_json(self._staging_s3, self._bucket, staging_key, checkpoint.to_dict())
        except (ClientError, BotoCoreError) as exc:
            logger.error(
                "could not save an upload checkpoint", extra={"key": checkpoint.key, "error": type(exc).__name__}
            )
            return False
        self.keys.add(staging_key)
        self._known[checkpoint.key] = checkpoint
        return True

    def forget(self, key: str) -> None:
        """Delete the checkpoint file (its upload was completed or aborted)."""
        staging_key = self.staging_key(key)
        self._known.pop(key, None)
        if staging_key not in self.keys:
            return
        self.keys.discard(staging_key)
        try:
            staging.delete_key(self._staging_s3, self._bucket, staging_key)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not delete an upload checkpoint", extra={"key": key, "error": type(exc).__name__})

    def discard(self, key: str, dest_key: str) -> None:
        """Abort a checkpoint's upload and delete it (the object is final or starts over)."""
        if self.staging_key(key) not in self.keys:
            return
        checkpoint = self._known.get(key)
        if checkpoint is None:
            try:
                checkpoint = self.load(key, dest_key)  # an unusable one is abandoned (aborted) by load
            except TransientCopyError:
                # unread, so its upload is unknown: keep the file for the next invocation or Summarize
                logger.warning("could not read an upload checkpoint to discard it; kept", extra={"key": key})
                return
        if checkpoint is not None:
            self._destination.abort_multipart_upload(checkpoint.dest_key, checkpoint.upload_id)
        self.forget(key)
