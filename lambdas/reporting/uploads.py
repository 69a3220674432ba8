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
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import staging
from lambdas.contracts.models import Batch, Destination
from lambdas.contracts.report import CleanupFailure
from lambdas.copying.checkpoints import UNREADABLE, UploadRef, upload_ref
from lambdas.s3.codes import error_code

logger = logging.getLogger(__name__)


def locate(run_id: str, checkpoint_key: str, destination: Destination, batches: Iterable[Any]) -> str | None:
    """The destination key of the object whose checkpoint is ``checkpoint_key`` (from the staged manifest)."""
    return locate_all(run_id, [checkpoint_key], destination, batches).get(checkpoint_key)


def locate_all(
    run_id: str, checkpoint_keys: Iterable[str], destination: Destination, batches: Iterable[Any]
) -> dict[str, str]:
    """checkpoint key -> the destination key of its object, in one pass over the staged manifest's batches
    (streamed: only the batches named by a checkpoint are decoded into objects)."""
    wanted: dict[str, set[str]] = {}
    for key in checkpoint_keys:
        wanted.setdefault(key[len(staging.uploads_prefix(run_id)) :].partition("/")[0], set()).add(key)
    found: dict[str, str] = {}
    for item in batches:
        if not isinstance(item, dict) or item.get("id") not in wanted:
            continue
        batch_id = str(item["id"])
        for spec in Batch.from_dict(item).objects:
            checkpoint = staging.upload_checkpoint_key(run_id, batch_id, spec.key)
            if checkpoint in wanted[batch_id]:
                found[checkpoint] = destination.key_for_object(spec)
    return found


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


def abort_run_uploads(s3: Any, bucket: str, run_id: str, failures: list[CleanupFailure] | None = None) -> int:
    """Abort the uploads every checkpoint of the run names (see the module docstring); how many were aborted.

    With ``failures``, an abort that fails with anything but NoSuchUpload is appended there (its checkpoint is
    kept) and the others go on; without, it raises.
    """
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
        done = _try_abort(s3, ref.dest_bucket, ref.dest_key, ref.upload_id, failures)
        if done is None:
            continue
        aborted += done
        staging.delete_key(s3, bucket, key)
    if partial:
        aborted += _abort_located(s3, bucket, run_id, partial, failures)
    return aborted


def _try_abort(
    s3: Any, dest_bucket: str, dest_key: str, upload_id: str, failures: list[CleanupFailure] | None
) -> int | None:
    """``abort_upload``; with ``failures``, a failed abort is recorded there and None returned instead of raised."""
    try:
        return abort_upload(s3, dest_bucket, dest_key, upload_id)
    except (ClientError, BotoCoreError) as exc:
        if failures is None:
            raise
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        logger.warning(
            "could not abort a leftover upload",
            extra={"upload_id": upload_id, "dest_bucket": dest_bucket, "dest_key": dest_key, "error": code},
        )
        failures.append(CleanupFailure(dest_bucket=dest_bucket, dest_key=dest_key, upload_id=upload_id, error=code))
        return None


def _abort_located(
    s3: Any, bucket: str, run_id: str, partial: list[tuple[str, UploadRef]], failures: list[CleanupFailure] | None
) -> int:
    """The uploads of checkpoints that do not say where they are: located through the staged manifest."""
    plan = staging.get_json(s3, bucket, staging.plan_key(run_id))
    destination = Destination.from_dict(plan["destination"])
    manifest = plan.get("manifest") or {}
    # the staged manifest is streamed (one batch at a time): it can hold millions of objects
    batches = staging.iter_json_array(s3, manifest.get("bucket", bucket), manifest["key"]) if "key" in manifest else []
    located = locate_all(run_id, [key for key, _ in partial], destination, batches)
    aborted = 0
    for key, ref in partial:
        dest_key = located.get(key)
        if dest_key is None:
            logger.error("kept a leftover upload checkpoint: its object is not in the manifest", extra={"key": key})
            continue
        known = [ref.upload_id] if ref.upload_id is not None else None
        kept = False
        for upload_id in known or open_uploads(s3, destination.bucket, dest_key):
            done = _try_abort(s3, destination.bucket, dest_key, upload_id, failures)
            kept = kept or done is None
            aborted += done or 0
        if not kept:
            staging.delete_key(s3, bucket, key)
    return aborted
