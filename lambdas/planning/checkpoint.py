"""Plan's progress between invocations: what a planning loop carries from one Lambda invocation to the next.

A plan that cannot finish within one invocation's budget stops after a source page, saves a checkpoint in
the staging bucket and returns ``{"continuation": ...}``; the state machine invokes Plan again (state
``PlanningDone`` loops back to ``Plan``), which resumes from the checkpoint. A crashed or retried invocation
resumes from the last checkpoint too: every part of the staged manifest uploaded after it is uploaded again,
with the same number and bytes, because the source continues deterministically from the saved cursor.

``runs/<run>/planning/``:

- ``checkpoint.json``        ``PlanProgress``: the source cursor (CMR-Search-After, an S3 continuation token,
                             or the number of entries read), the counters, the open batches, the staged
                             manifest's upload id and parts; ``state`` "completing" once the last part is up;
- ``tail-<generation>.json`` the staged manifest's bytes not uploaded yet (< one part);
- ``seen-<generation>.sqlite`` the seen-keys file (``planning.seen``), where duplicates are possible.

Files of a generation are written before the checkpoint that names them, and the previous generation's are
deleted after it: a checkpoint never names a missing file. Everything under ``planning/`` is deleted when
the plan is staged (or refused).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas.contracts import staging
from lambdas.planning.seen import DigestFile

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
PLANNING = "planning"
COMPLETING = "completing"


@dataclass
class PlanProgress:
    """What a planning invocation hands to the next one (checkpoint.json)."""

    generation: int = 0  # invocations that saved this progress
    state: str = PLANNING
    planned_at: str = ""
    since: str | None = None  # an incremental schedule's last success (the query was narrowed to it)
    collection_endpoint: str | None = None  # the TEA a CMR collection names, when it is a configured one
    endpoint_note: str | None = None
    cursor: dict[str, Any] | None = None  # where the source continues (None: at its start)
    objects: int = 0
    known_bytes: int = 0
    unknown_sizes: int = 0
    checksums: int = 0  # objects with a published checksum (the copy verifies it)
    duplicates: int = 0
    buckets: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)  # StagedManifest.state()
    batcher: dict[str, Any] = field(default_factory=dict)  # Batcher.state()
    tail_key: str | None = None
    seen_key: str | None = None
    seen_entries: int = 0
    seconds: float = 0.0  # planning time over all invocations
    plan: dict[str, Any] | None = None  # plan.json, once the state is "completing"

    def to_dict(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanProgress:
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"unknown plan checkpoint version {data.get('version')!r}")
        values = {k: v for k, v in data.items() if k != "version"}
        return cls(**values)


def checkpoint_key(run_id: str) -> str:
    return f"{staging.planning_prefix(run_id)}checkpoint.json"


def load(s3: Any, bucket: str, run_id: str) -> PlanProgress | None:
    data = staging.get_json_if_present(s3, bucket, checkpoint_key(run_id))
    return None if data is None else PlanProgress.from_dict(data)


def exists(s3: Any, bucket: str, run_id: str) -> bool:
    """Whether the run has a planning checkpoint: this Plan invocation continues the run's planning."""
    return staging.get_json_if_present(s3, bucket, checkpoint_key(run_id)) is not None


def load_tail(s3: Any, bucket: str, progress: PlanProgress) -> bytes:
    return b"" if progress.tail_key is None else staging.get_bytes(s3, bucket, progress.tail_key)


def load_seen(s3: Any, bucket: str, progress: PlanProgress) -> DigestFile:
    if progress.seen_key is None:
        return DigestFile.fresh()
    return DigestFile.download(s3, bucket, progress.seen_key)


def save(
    s3: Any, bucket: str, run_id: str, progress: PlanProgress, tail: bytes, seen: DigestFile | None
) -> PlanProgress:
    """Write the next generation: its tail and seen-keys file first, then the checkpoint naming them."""
    previous = (progress.tail_key, progress.seen_key)
    progress.generation += 1
    prefix = staging.planning_prefix(run_id)
    progress.tail_key = f"{prefix}tail-{progress.generation:05d}.json"
    s3.put_object(Bucket=bucket, Key=progress.tail_key, Body=tail, ContentType="application/octet-stream")
    if seen is not None:
        progress.seen_key = f"{prefix}seen-{progress.generation:05d}.sqlite"
        seen.upload(s3, bucket, progress.seen_key)
        progress.seen_entries = len(seen)
    staging.put_json(s3, bucket, checkpoint_key(run_id), progress.to_dict())
    for key in previous:
        if key is not None and key not in (progress.tail_key, progress.seen_key):
            staging.delete_key(s3, bucket, key)
    logger.info(
        "saved the plan checkpoint",
        extra={
            "generation": progress.generation,
            "objects": progress.objects,
            "tail_bytes": len(tail),
            "seen_entries": progress.seen_entries,
            "state": progress.state,
        },
    )
    return progress


def discard(s3: Any, bucket: str, run_id: str) -> None:
    """Delete the run's planning scratch files (checkpoint, tails, seen-keys files)."""
    staging.delete_prefix(s3, bucket, staging.planning_prefix(run_id))
