"""Live progress of a run, read from the staging bucket (works for runs started anywhere).

A run writes ``runs/<run>/plan.json`` (how many objects, bytes if known), then one result file per
CopyBatch flush under ``results/``, and an event file per TEA request / refresh call under ``events/``.
``RunProgress.poll`` reads only the files it has not seen yet; ``ProgressBar`` turns snapshots into
one line: objects and bytes done/total, rate, ETA, failures and the credential counters (TEA requests,
credential refreshes, refresh requests: the labels of ``lambdas.contracts.counters``).
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from lambdas.contracts import counters, staging
from lambdas.reporting.render import human_bytes, human_duration

DONE_BYTES_STATUSES = ("copied", "would_copy")
RATE_WINDOW_SECONDS = 30.0


@dataclass
class Snapshot:
    objects: int | None  # from plan.json (None until Plan has run)
    bytes_total: int | None  # known only when every object's size was in the plan
    done: int
    by_status: dict[str, int]
    bytes_done: int
    failed: int
    credential_refreshes: int  # the names of lambdas.contracts.counters
    refresh_requests: int
    tea_requests: int
    elapsed: float
    dry_run: bool = False


@dataclass
class RunProgress:
    s3: Any
    bucket: str
    run_id: str
    clock: Callable[[], float] = time.monotonic
    _seen: set[str] = field(default_factory=set)
    _status: dict[str, tuple[str, int]] = field(default_factory=dict)
    _refresh_seen: set[str] = field(default_factory=set)
    _adopted: set[str] = field(default_factory=set)
    _refresh_requests: int = 0
    plan: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    def _get(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def poll(self) -> Snapshot:
        if self.plan is None and self._exists(staging.plan_key(self.run_id)):
            self.plan = dict(self._get(staging.plan_key(self.run_id)))
        # result files sort by time within a batch; a later record of a key replaces the earlier one
        new = sorted(
            (
                k
                for k in staging.list_keys(self.s3, self.bucket, staging.results_prefix(self.run_id))
                if k not in self._seen
            ),
            key=lambda k: k.rsplit("/", 1)[-1],
        )
        for key in new:
            self._seen.add(key)
            for record in self._get(key):
                status = str(record.get("status"))
                counted = int(record.get("bytes", 0) or 0) if status in DONE_BYTES_STATUSES else 0
                self._status[str(record.get("key"))] = (status, counted)
        for key in staging.list_keys(self.s3, self.bucket, staging.events_prefix(self.run_id, "refresh")):
            if key in self._refresh_seen:
                continue
            self._refresh_seen.add(key)
            self._refresh_requests += 1
            event = self._get(key)
            if event.get("new_version") and event.get("new_version") != event.get("used_version"):
                self._adopted.add(str(event["new_version"]))
        tea = sum(1 for _ in staging.list_keys(self.s3, self.bucket, staging.events_prefix(self.run_id, "tea")))
        by_status = Counter(status for status, _ in self._status.values())
        plan = self.plan or {}
        return Snapshot(
            objects=int(plan["objects"]) if "objects" in plan else None,
            bytes_total=plan.get("bytes_known"),
            done=len(self._status),
            by_status=dict(by_status),
            bytes_done=sum(b for _, b in self._status.values()),
            failed=by_status.get("failed", 0),
            credential_refreshes=len(self._adopted),
            refresh_requests=self._refresh_requests,
            tea_requests=tea,
            elapsed=self.clock() - self.started,
            dry_run=bool((plan.get("options") or {}).get("dry_run")),
        )


class ProgressBar:
    """Renders snapshots: one line rewritten in place on a terminal, one line per change otherwise."""

    WIDTH = 28

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.samples: deque[tuple[float, int, int]] = deque()
        self.last = ""
        self.last_state: tuple[Any, ...] = ()
        self.lines = 0

    def rates(self, snap: Snapshot) -> tuple[float | None, float | None]:
        """Bytes/s and objects/s over the last RATE_WINDOW_SECONDS."""
        now = self.clock()
        self.samples.append((now, snap.bytes_done, snap.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_SECONDS:
            self.samples.popleft()
        t0, b0, d0 = self.samples[0]
        span = now - t0
        if span <= 0:
            return None, None
        return (snap.bytes_done - b0) / span, (snap.done - d0) / span

    @staticmethod
    def eta(snap: Snapshot, byte_rate: float | None, object_rate: float | None) -> float | None:
        if snap.objects is None:
            return None
        if snap.done >= snap.objects:
            return 0.0
        if snap.bytes_total and byte_rate and byte_rate > 0:
            return max(0.0, (snap.bytes_total - snap.bytes_done) / byte_rate)
        if object_rate and object_rate > 0:
            return (snap.objects - snap.done) / object_rate
        return None

    def line(self, snap: Snapshot, status: str) -> str:
        byte_rate, object_rate = self.rates(snap)
        total = snap.objects
        if total:
            filled = min(self.WIDTH, int(self.WIDTH * snap.done / total))
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * snap.done // total:3d}%"
            objects = f"{snap.done}/{total} objects"
        else:
            bar = f"[{'?' * self.WIDTH}]    "
            objects = f"{snap.done} objects (planning)" if total is None else "0/0 objects"
        data = human_bytes(snap.bytes_done)
        if snap.bytes_total:
            data += f"/{human_bytes(snap.bytes_total)}"
        parts = [bar, objects, data + (" to copy" if snap.dry_run else "")]
        parts.append(f"{human_bytes(byte_rate)}/s" if byte_rate else "-- /s")
        eta = self.eta(snap, byte_rate, object_rate)
        parts.append(f"ETA {human_duration(eta)}" if eta is not None else "ETA --")
        parts.append(counters.with_label("failed", snap.failed))
        parts.append(counters.progress_text(vars(snap), counters.PROGRESS_CREDENTIALS))
        parts.append(status)
        return "  ".join(parts)

    def update(self, snap: Snapshot, status: str) -> None:
        text = self.line(snap, status)
        # on a terminal the line is redrawn (rate and ETA move); in a log, a line per change of progress
        state = (snap.objects, snap.done, snap.bytes_done, snap.failed, snap.credential_refreshes, status)
        if text == self.last or (not self.tty and state == self.last_state):
            return
        self.last, self.last_state = text, state
        self.lines += 1
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
