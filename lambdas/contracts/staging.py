"""Layout of the staging bucket, and the small JSON reads/writes every Lambda does there.

Everything of one execution lives under ``runs/<run_id>/``:

- ``manifest.json``                 the pre-batched manifest the Distributed Map reads
- ``plan.json``                     what Plan resolved (counts, destination), no secrets
- ``results/<batch_id>/<seq>.json`` per-object outcomes, one file per CopyBatch invocation
- ``uploads/<batch_id>/<h>.json``   checkpoint of a multipart upload that continues in a later
                                    invocation (upload id, completed parts, running checksums);
                                    deleted when the object is recorded
- ``events/tea/<seq>.json``         one file per HTTP request made to TEA on behalf of this run
- ``events/refresh/<seq>.json``     one file per RefreshCredentials call (coalesced or not)
- ``report.json``                   Summarize's report
- ``set-aside/<path>``              a file that could not be read (e.g. a result file that is not JSON),
                                    moved out of the way and kept for the operator at its path under the run

(The Distributed Map's ResultWriter writes under ``map-results/<map run id>/``, outside ``runs/``.)

The files are the job's durable progress log: a retried CopyBatch reads its batch's result files
and resumes after the objects already done, and Summarize aggregates them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

RUNS_PREFIX = "runs/"


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/"


def manifest_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}manifest.json"


def plan_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}plan.json"


def results_prefix(run_id: str, batch_id: str | None = None) -> str:
    base = f"{run_prefix(run_id)}results/"
    return base if batch_id is None else f"{base}{batch_id}/"


def uploads_prefix(run_id: str, batch_id: str | None = None) -> str:
    base = f"{run_prefix(run_id)}uploads/"
    return base if batch_id is None else f"{base}{batch_id}/"


def upload_checkpoint_key(run_id: str, batch_id: str, source_key: str) -> str:
    """One checkpoint per source object of a batch (keys can be long and odd: the name is a hash)."""
    digest = hashlib.sha256(source_key.encode("utf-8")).hexdigest()[:40]
    return f"{uploads_prefix(run_id, batch_id)}{digest}.json"


def set_aside_key(key: str) -> str:
    """Where a staging file of a run that could not be read is kept: ``runs/<run>/set-aside/<its path>``."""
    if not key.startswith(RUNS_PREFIX) or "/" not in key[len(RUNS_PREFIX) :]:
        raise ValueError(f"not a file of a run: {key!r}")
    run_id, _, rest = key[len(RUNS_PREFIX) :].partition("/")
    return f"{run_prefix(run_id)}set-aside/{rest}"


def events_prefix(run_id: str, kind: str) -> str:
    return f"{run_prefix(run_id)}events/{kind}/"


def report_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}report.json"


def sequence_name() -> str:
    """A name that sorts by creation time and never collides between concurrent writers."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"


def put_json(s3: Any, bucket: str, key: str, payload: Any) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(get_body(s3, bucket, key))


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def delete_key(s3: Any, bucket: str, key: str) -> None:
    s3.delete_object(Bucket=bucket, Key=key)


def record_event(s3: Any, bucket: str, run_id: str | None, kind: str, detail: dict[str, Any]) -> None:
    """Append one event (never containing secrets) to the run's event log. No-op without a run."""
    if not run_id:
        return
    put_json(s3, bucket, f"{events_prefix(run_id, kind)}{sequence_name()}", {"at": time.time(), **detail})
