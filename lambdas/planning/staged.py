"""The staged manifest writer and the batcher (Plan's output side).

The staged manifest (the Distributed Map's JSON array of batches) is written as it is produced — one
``PutObject`` when it is small, a multipart upload with parts of ``part_bytes`` when it is not. Memory is
bounded by a part and the open batch of each source bucket.

Both can stop and continue in another process (Plan's loop, ``planning.checkpoint``): ``state()`` is what
must be carried (the upload id and its parts, the unflushed tail, the open batches and the counters) and
``resume()`` rebuilds the writer from it. The tail is always shorter than a part, so every part uploaded is
at least ``part_bytes`` (>= 5 MiB) except the last, whichever invocation uploads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import DEFAULT_ENDPOINT, Batch, ObjectSpec
from lambdas.s3.writer import STAGED_PART_BYTES, StagedWriter

logger = logging.getLogger(__name__)

# A batch is one Distributed Map item: it must stay well below the 256 KiB state payload limit.
MAX_BATCH_JSON_BYTES = 128 * 1024
MAX_SOURCE_BUCKETS = 100  # open batches are kept per source bucket


# --- the staged manifest -------------------------------------------------------------------------------


class StagedManifest(StagedWriter):
    """The Distributed Map's item list: a JSON array of batches, written as it is produced (``StagedWriter``:
    one PutObject when small, else a multipart upload with parts as they fill; memory: one part)."""

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int = STAGED_PART_BYTES) -> None:
        super().__init__(s3, bucket, key, part_bytes, "application/json")
        self._buffer = bytearray(b"[")
        self._items = 0

    @property
    def items(self) -> int:
        return self._items

    def add(self, item: Mapping[str, Any]) -> None:
        self.add_json(json.dumps(item, separators=(",", ":"), ensure_ascii=False))

    def add_json(self, text: str) -> None:
        """One item, already JSON text."""
        comma = b"," if self._items else b""
        self._items += 1
        self.write(comma + text.encode("utf-8"))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "items": self._items}

    @classmethod
    def resume(cls, s3: Any, bucket: str, key: str, state: Mapping[str, Any], tail: bytes) -> StagedManifest:
        writer = cls(s3, bucket, key, int(state["part_bytes"]))
        writer.restore(state, tail)
        writer._items = int(state["items"])
        return writer

    def finish(self) -> None:
        """The closing bracket, then the last part or the whole manifest (``StagedWriter.finish``)."""
        self._buffer += b"]"
        super().finish()


class ItemSink(Protocol):
    """Where finished batches go, as JSON text: the staged manifest, or a list (``batches_in_memory``)."""

    def add_json(self, text: str) -> None: ...


class _ListSink(list[Mapping[str, Any]]):
    def add_json(self, text: str) -> None:
        self.append(json.loads(text))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Batcher:
    """Greedy batches per source bucket, bounded by count, known bytes and the batch's JSON size.

    A batch only ever holds objects of one bucket (its credentials endpoint is chosen per bucket). Each object is
    encoded once, when it is added: a batch's JSON is its objects' texts joined (millions of objects per plan).
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
        self._open: dict[str, tuple[list[str], list[int]]] = {}  # bucket -> (objects' JSON, [bytes, json bytes])
        self._endpoint_for = endpoint_for
        self.endpoints: set[str] = set()  # the TEA endpoints the staged batches need credentials from
        self.batches = 0

    def add(self, bucket: str, item: dict[str, Any], where: str) -> None:
        size = int(item.get("size") or 0)
        text = _dumps(item)
        item_json = len(text.encode("utf-8")) + 1
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
        objects.append(text)
        totals[0] += size
        totals[1] += item_json

    def _flush(self, bucket: str) -> None:
        objects, _ = self._open.pop(bucket)
        if objects:
            self.batches += 1
            endpoint = self._endpoint_for(bucket)
            self.endpoints.add(endpoint)
            # the same text as json.dumps of {"id", "source_bucket", "endpoint", "objects"}
            self._sink.add_json(
                f'{{"id":"b{self.batches:06d}","source_bucket":{_dumps(bucket)},"endpoint":{_dumps(endpoint)},'
                f'"objects":[{",".join(objects)}]}}'
            )

    def finish(self) -> None:
        for bucket in list(self._open):
            self._flush(bucket)

    def state(self) -> dict[str, Any]:
        """The open batches (their objects' JSON texts) and the counters: a continuation carries them."""
        return {
            "batches": self.batches,
            "endpoints": sorted(self.endpoints),
            "open": [
                {"bucket": bucket, "objects": objects, "bytes": totals[0], "json": totals[1]}
                for bucket, (objects, totals) in self._open.items()
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.batches = int(state["batches"])
        self.endpoints = set(state["endpoints"])
        self._open = {
            str(entry["bucket"]): ([str(text) for text in entry["objects"]], [int(entry["bytes"]), int(entry["json"])])
            for entry in state["open"]
        }

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
