"""Summarize's clean-up: abort the multipart uploads a run left open, found through its checkpoints.

Each paused object of a run has a checkpoint (``runs/<run>/uploads/<batch>/<h>.json``, see
``lambdas.copying.checkpoints``) naming its open upload. When the run ends with such checkpoints left (a
batch failed, refresh rounds ran out), the uploads are aborted so none stays billed and invisible in the
user's bucket. A checkpoint that cannot be read in full still stands for an upload:

- its upload id and destination readable: abort by them (whatever else in it is wrong);
- otherwise the object is found in the run's staged manifest (the checkpoint's name is the hash of its
  source key in that batch), its destination key mapped as the copy did, and the upload aborted by its id
  if readable, else every open upload of exactly that key (ListMultipartUploads): within a run only this
  object writes that key (Plan refuses two objects mapped onto one key).

A checkpoint whose object cannot be found is kept (logged) for the operator.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import staging
from lambdas.contracts.models import Batch, Destination
from lambdas.copying.checkpoints import UNREADABLE, UploadRef, upload_ref
from lambdas.s3.codes import error_code

logger = logging.getLogger(__name__)


def locate(run_id: str, checkpoint_key: str, destination: Destination, batches: list[Any]) -> str | None:
    """The destination key of the object whose checkpoint is ``checkpoint_key`` (from the staged manifest)."""
    batch_id = checkpoint_key[len(staging.uploads_prefix(run_id)) :].partition("/")[0]
    for item in batches:
        if isinstance(item, dict) and item.get("id") == batch_id:
            for spec in Batch.from_dict(item).objects:
                if staging.upload_checkpoint_key(run_id, batch_id, spec.key) == checkpoint_key:
                    return destination.key_for_object(spec)
    return None


def abort_upload(s3: Any, dest_bucket: str, dest_key: str, upload_id: str) -> int:
    """Abort one upload: 1 if aborted, 0 if it was already gone. Other errors are raised."""
    try:
        s3.abort_multipart_upload(Bucket=dest_bucket, Key=dest_key, UploadId=upload_id)
    except ClientError as exc:
        if error_code(exc) != "NoSuchUpload":
            raise
        return 0
    logger.info(
        "aborted a leftover upload", extra={"upload_id": upload_id, "dest_bucket": dest_bucket, "dest_key": dest_key}
    )
    return 1


def open_uploads(s3: Any, dest_bucket: str, dest_key: str) -> list[str]:
    """Upload ids of the open uploads of exactly ``dest_key``."""
    found: list[str] = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=dest_bucket, Prefix=dest_key):
        found += [str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == dest_key]
    return found


def abort_run_uploads(s3: Any, bucket: str, run_id: str) -> int:
    """Abort the uploads every checkpoint of the run names (see the module docstring); how many were aborted."""
    aborted = 0
    partial: list[tuple[str, UploadRef]] = []
    for key in list(staging.list_keys(s3, bucket, staging.uploads_prefix(run_id))):
        try:
            raw = staging.get_json(s3, bucket, key)
        except ValueError:  # not JSON
            raw = UNREADABLE
        ref = upload_ref(raw)
        if ref.upload_id is None or ref.dest_bucket is None or ref.dest_key is None:
            logger.warning("a leftover upload checkpoint is malformed: finding its upload", extra={"key": key})
            partial.append((key, ref))
            continue
        aborted += abort_upload(s3, ref.dest_bucket, ref.dest_key, ref.upload_id)
        staging.delete_key(s3, bucket, key)
    if partial:
        aborted += _abort_located(s3, bucket, run_id, partial)
    return aborted


def _abort_located(s3: Any, bucket: str, run_id: str, partial: list[tuple[str, UploadRef]]) -> int:
    """The uploads of checkpoints that do not say where they are: located through the staged manifest."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    destination = Destination.from_dict(plan["destination"])
    manifest = plan.get("manifest") or {}
    batches = staging.get_json(s3, manifest.get("bucket", bucket), manifest["key"]) if "key" in manifest else []
    aborted = 0
    for key, ref in partial:
        dest_key = locate(run_id, key, destination, batches if isinstance(batches, list) else [])
        if dest_key is None:
            logger.error("kept a leftover upload checkpoint: its object is not in the manifest", extra={"key": key})
            continue
        known = [ref.upload_id] if ref.upload_id is not None else None
        for upload_id in known or open_uploads(s3, destination.bucket, dest_key):
            aborted += abort_upload(s3, destination.bucket, dest_key, upload_id)
        staging.delete_key(s3, bucket, key)
    return aborted
