"""Synthetic sources for any execution input: what the DAAC buckets, the manifest and CMR hold in a local run.

``teacopy local --input job.json`` runs a real execution input in the local engine. Nothing of the
DAACs exists here, so this module makes up, deterministically, the objects the input names:

- ``keys``: each key, in ``source.bucket``;
- ``manifest``: the manifest itself, created at the URL the input names (in the input's format: lines,
  JSON, JSON Lines or CSV; with sizes and SHA-256 checksums where the format carries them), and its
  entries: bare keys of ``source.bucket``, or ``s3://`` URLs spread over one bucket per configured DAAC
  (``tea_endpoints``: each bucket then is read with its own TEA's credentials);
- ``prefix``: objects under the prefix whose names pass ``include``/``exclude``, and a few that do not
  (the listing shows them; the filters leave them out);
- ``cmr``: a collection with the input's concept id (or short name and version) in the CMR emulator,
  granules inside the temporal range and bounding box and updated after ``updated_since``, each with
  one data file (size and SHA-256 published in UMM-G).

Object bodies are pseudo-random bytes derived from the bucket, key and size, so a later local run (a
retry) makes up the same bytes and the same checksums. ``missing`` leaves the last objects of the
input out of the source (they fail with NoSuchKey: a way to try ``teacopy retry-failed --local``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.earthdata.cmr import CmrQuery
from lambdas.planning.keys import KeyFilter
from lambdas.planning.manifests import format_for, parse_manifest_stream, validated_entry
from lambdas.planning.request import JobRequest

from .cmr_emulator import CmrEmulator, EmulatedFile
from .errors import LocalRunError

DEFAULT_SOURCE_BUCKET = "local-daac-protected"  # stands for the default TEA's DAAC when the input names none
DEFAULT_COUNT = 30
DEFAULT_SIZES = (1024, 100 * 1024, 700 * 1024, 2 * 1024**2)
CMR_START = datetime(2023, 1, 1, tzinfo=UTC)
SYNTHETIC_SHORT_NAME = "SYNTHETIC-COLLECTION"  # a collection named by concept id only gets this short name


class SyntheticSourceError(LocalRunError):
    """The input names something no synthetic object can stand for (the message says what)."""


def body_of(bucket: str, key: str, size: int) -> bytes:
    """The bytes of a synthetic object: the same for the same bucket, key and size, in every run."""
    seed = int.from_bytes(hashlib.sha256(f"{bucket}\0{key}\0{size}".encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(size)


def sha256_of(bucket: str, key: str, size: int) -> str:
    return hashlib.sha256(body_of(bucket, key, size)).hexdigest()


@dataclass(frozen=True)
class Granule:
    granule_ur: str
    begin: datetime
    bbox: tuple[float, float, float, float]
    updated: datetime
    file: tuple[str, str, int]  # bucket, key, size


@dataclass
class SyntheticWorld:
    mode: str
    objects: dict[tuple[str, str], int] = field(default_factory=dict)  # (bucket, key) -> size, at the source
    absent: list[tuple[str, str]] = field(default_factory=list)  # named by the input, left out (``missing``)
    filtered_out: int = 0  # objects at the source that the input's include/exclude leave out
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (bucket, key) -> manifest body
    collection: tuple[str, str | None, str | None] | None = None  # (concept id or "", short name, version)
    granules: list[Granule] = field(default_factory=list)
    description: str = ""

    @property
    def source_buckets(self) -> set[str]:
        return {bucket for bucket, _ in self.objects} | {bucket for bucket, _ in self.absent}

    def seed(self, s3: Any, existing_buckets: set[str]) -> None:
        """Put the source objects and the manifests (creating the buckets the engine did not create)."""
        needed = self.source_buckets | {bucket for bucket, _ in self.manifests}
        for bucket in sorted(needed - existing_buckets):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
            existing_buckets.add(bucket)
        for (bucket, key), size in self.objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body_of(bucket, key, size))
        for (bucket, key), body in self.manifests.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    def seed_cmr(self, cmr: CmrEmulator, tea_url: str) -> None:
        """The collection and its granules, in the CMR emulator; the collection names the default TEA."""
        if self.collection is None:
            return
        concept_id, short_name, version = self.collection
        concept = cmr.add_collection(
            short_name or SYNTHETIC_SHORT_NAME,
            version or "1.0",
            provider=concept_id.rsplit("-", 1)[-1] if concept_id else "LOCAL",
            tea_endpoint=tea_url,
            concept_id=concept_id or None,
        )
        for granule in self.granules:
            bucket, key, size = granule.file
            cmr.add_granule(
                concept,
                granule.granule_ur,
                [EmulatedFile(bucket, key, size, ("SHA-256", sha256_of(bucket, key, size)))],
                begin=granule.begin,
                bbox=granule.bbox,
                updated=granule.updated,
            )


# --- names that pass (or fail) include/exclude --------------------------------------------------------


def _instantiate(pattern: str, stem: str) -> str | None:
    """A string the shell pattern matches: the first ``*`` becomes ``stem``, other ``*`` nothing, ``?`` 'x'."""
    if "[" in pattern:
        return None
    out: list[str] = []
    used = False
    for char in pattern:
        if char == "*":
            out.append("" if used else stem)
            used = True
        elif char == "?":
            out.append("x")
        else:
            out.append(char)
    return "".join(out)


def _names(count: int, key_filter: KeyFilter, root: str, strip: int = 0) -> list[str]:
    """``count`` keys under ``root`` that the filter keeps; the filter sees each key without its first
    ``strip`` characters (a prefix listing matches the part after the prefix; manifests and CMR the key)."""
    patterns = list(key_filter.include) or ["*.nc"]
    names: list[str] = []
    for index in range(count):
        stem = f"granule-{index + 1:04d}"
        candidates = [_instantiate(p, stem) for p in (patterns[index % len(patterns)], *patterns)]
        tries = [root + c.lstrip("/") for c in candidates if c is not None and "/" not in c.lstrip("/")]
        tries += [root + stem + ".nc", *(c for c in candidates if c is not None)]
        found = next(
            (k for k in tries if k and not k.endswith("/") and k not in names and key_filter.accepts(k[strip:])),
            None,
        )
        if found is None:
            raise SyntheticSourceError(
                "cannot make up object names that pass the input's include/exclude patterns "
                f"{list(key_filter.include)}/{list(key_filter.exclude)}: run it against the real source instead"
            )
        names.append(found)
    return names


def _noise(names: Sequence[str], key_filter: KeyFilter, root: str, strip: int = 0) -> list[str]:
    """Keys next to the kept ones that the filter leaves out: checksum sidecars, excluded names."""
    candidates = [f"{name}.md5" for name in names[::5]] + [f"{root}README.txt"]
    for index, pattern in enumerate(key_filter.exclude):
        value = _instantiate(pattern, f"old-{index + 1:02d}")
        if value is not None:
            candidates.append(root + value.lstrip("/"))
    return [k for k in dict.fromkeys(candidates) if not k.endswith("/") and not key_filter.accepts(k[strip:])]


def _directory_of(request: JobRequest, fallback: str) -> str:
    mapping = request.key_mapping
    if mapping.mode == "strip_prefix":
        return mapping.strip_prefix
    return fallback


def _manifest_body(fmt: str, entries: list[dict[str, Any]]) -> bytes:
    if fmt == "lines":
        lines = ["# synthetic manifest written by teacopy local"]
        lines += [str(entry.get("url") or entry["key"]) for entry in entries]
        return ("\n".join(lines) + "\n").encode("utf-8")
    if fmt == "json":
        return json.dumps(entries, indent=1, ensure_ascii=False).encode("utf-8")
    if fmt == "jsonl":
        return "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries).encode("utf-8")
    column = "url" if entries and "url" in entries[0] else "key"
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([column, "size", "checksum", "checksum_algorithm"])
    for entry in entries:
        writer.writerow([entry[column], entry["size"], entry["checksum"]["value"], "SHA-256"])
    return text.getvalue().encode("utf-8")


# --- the world for one input ------------------------------------------------------------------------------


def build_world(
    request: JobRequest,
    *,
    count: int = DEFAULT_COUNT,
    sizes: Sequence[int] = DEFAULT_SIZES,
    missing: int = 0,
    bucket_endpoints: Mapping[str, str] | None = None,
    manifests: Mapping[str, bytes] | None = None,
) -> SyntheticWorld:
    """What the sources hold for ``request`` (a parsed, valid input). ``bucket_endpoints``: the buckets the
    configuration assigns to other TEA endpoints (one of each is used by a manifest of URLs);
    ``manifests``: given manifest bodies by s3:// URL (a retry's), used instead of made-up ones."""
    if count < 1:
        raise SyntheticSourceError("--objects must be at least 1")
    sizes = list(sizes) or list(DEFAULT_SIZES)
    world = SyntheticWorld(mode=request.mode)
    named: list[tuple[str, str, int | None]] = []  # (bucket, key, size if the input states it)

    if request.mode == "keys":
        assert request.keys is not None and request.source_bucket is not None
        named = [(request.source_bucket, spec.key, None) for spec in request.keys]
        world.description = f"{len(named)} inline keys in s3://{request.source_bucket}/"
    elif request.mode == "manifest":
        assert request.manifest is not None
        bucket, key = request.manifest
        url = f"s3://{bucket}/{key}"
        fmt = format_for(key, request.manifest_format) or "lines"
        given = (manifests or {}).get(url)
        if given is not None:
            body = given
        else:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", key.rsplit("/", 1)[-1].rsplit(".", 1)[0]) or "manifest"
            root = _directory_of(request, f"{stem}/")
            names = _names(count, request.key_filter, root)
            if request.source_bucket is not None:
                targets = [request.source_bucket]
            else:  # one bucket per configured DAAC: the default TEA's and each of tea_endpoints
                per_endpoint: dict[str, str] = {}
                for source_bucket, endpoint in sorted((bucket_endpoints or {}).items()):
                    per_endpoint.setdefault(endpoint, source_bucket)
                targets = [DEFAULT_SOURCE_BUCKET, *per_endpoint.values()]
            entries: list[dict[str, Any]] = []
            for index, name in enumerate(names):
                target, size = targets[index % len(targets)], sizes[index % len(sizes)]
                entry: dict[str, Any] = (
                    {"key": name} if request.source_bucket is not None else {"url": f"s3://{target}/{name}"}
                )
                entry["size"] = size
                entry["checksum"] = {"algorithm": "SHA-256", "value": sha256_of(target, name, size)}
                entries.append(entry)
            body = _manifest_body(fmt, entries)
        world.manifests[(bucket, key)] = body
        for parsed in parse_manifest_stream([body.decode("utf-8")], fmt):
            source_bucket, spec = validated_entry(parsed, request.source_bucket)
            if request.key_filter.accepts(spec.key):
                named.append((source_bucket, spec.key, spec.size))
        buckets = sorted({b for b, _, _ in named})
        world.description = (
            f"a {fmt} manifest at {url} ({'given' if given is not None else 'made up'}), {len(named)} entries in "
            + ", ".join(buckets)
        )
    elif request.mode == "prefix":
        assert request.prefix is not None and request.source_bucket is not None
        prefix = request.prefix
        root = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        names = _names(count, request.key_filter, root, strip=len(prefix))
        noise = _noise(names, request.key_filter, root, strip=len(prefix))
        named = [(request.source_bucket, name, None) for name in names]
        for key in noise:
            world.objects[(request.source_bucket, key)] = 64
        world.filtered_out = len(noise)
        world.description = (
            f"{len(named)} objects under s3://{request.source_bucket}/{prefix}, and {len(noise)} more there that "
            "include/exclude leave out"
        )
    else:
        assert request.cmr is not None
        named = _cmr_granules(world, request, request.cmr, count, sizes)

    for index, (bucket, key, stated) in enumerate(named):
        actual = stated if stated is not None else sizes[index % len(sizes)]
        if index >= len(named) - missing:
            world.absent.append((bucket, key))
        else:
            world.objects[(bucket, key)] = actual
    if missing:
        world.description += f"; the last {min(missing, len(named))} are missing at the source (NoSuchKey)"
    return world


def _cmr_granules(
    world: SyntheticWorld, request: JobRequest, query: CmrQuery, count: int, sizes: Sequence[int]
) -> list[tuple[str, str, int | None]]:
    world.collection = (query.collection_concept_id or "", query.short_name, query.version)
    temporal = query.temporal
    start = _time(temporal.start if temporal else None) or CMR_START
    end = _time(temporal.end if temporal else None) or start + timedelta(days=count)
    step = (end - start) / max(count, 1)
    updated = (_time(query.updated_since) or datetime(2024, 1, 1, tzinfo=UTC)) + timedelta(hours=1)
    box = query.bounding_box
    bbox = (box.west, box.south, box.east, box.north) if box else (-180.0, -90.0, 180.0, 90.0)
    name = query.short_name or SYNTHETIC_SHORT_NAME
    root = _directory_of(request, f"{name}/")
    names = _names(count, request.key_filter, root)
    named: list[tuple[str, str, int | None]] = []
    for index, key in enumerate(names):
        size = sizes[index % len(sizes)]
        begin = start + step * index
        world.granules.append(
            Granule(
                f"{name}.{begin:%Y%m%dT%H%M%S}.{index + 1:04d}",
                begin,
                bbox,
                updated,
                (DEFAULT_SOURCE_BUCKET, key, size),
            )
        )
        named.append((DEFAULT_SOURCE_BUCKET, key, size))
    label = query.collection_concept_id or f"{query.short_name} {query.version}"
    world.description = f"a CMR collection {label} with {len(named)} granules in the CMR emulator"
    return named


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
