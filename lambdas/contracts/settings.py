"""Typed Lambda settings, read from the environment once at cold start and validated.

Each Lambda builds only the settings it needs; a missing or malformed variable raises
ConfigurationError naming the variable, so a broken deployment fails loudly on the first call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.contracts import env_names as env
from lambdas.contracts.errors import ConfigurationError
from lambdas.contracts.models import DEFAULT_ENDPOINT, ENDPOINT_NAME_RE, Destination
from lambdas.contracts.units import GIB, MIB


def _str(environ: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = environ.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


def _json_env(environ: Mapping[str, str], name: str, expected: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """A JSON list/object from the environment (absent or empty: an empty one)."""
    kind = "list" if expected is list else "object"
    try:
        value = json.loads(environ.get(name) or ("[]" if expected is list else "{}"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"environment variable {name} must be a JSON {kind}") from exc
    if not isinstance(value, expected):
        raise ConfigurationError(f"environment variable {name} must be a JSON {kind}")
    return value


def _json_list(environ: Mapping[str, str], name: str) -> list[object]:
    value: list[object] = _json_env(environ, name, list)
    return value


def _bucket_endpoints(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    value: dict[str, Any] = _json_env(environ, env.BUCKET_ENDPOINTS, dict)
    if not all(isinstance(v, str) and ENDPOINT_NAME_RE.match(v) for v in value.values()):
        raise ConfigurationError(f"environment variable {env.BUCKET_ENDPOINTS} must map bucket names to endpoints")
    return tuple(sorted(value.items()))


@dataclass(frozen=True)
class TeaEndpoint:
    """One DAAC's TEA: where ``/s3credentials`` is, and the cache secret holding its credentials."""

    name: str
    url: str
    cache_secret_id: str


def _extra_endpoints(environ: Mapping[str, str]) -> tuple[TeaEndpoint, ...]:
    """The TEA endpoints named in TEA_ENDPOINTS (``default`` is TEA_ENDPOINT + CREDENTIALS_SECRET_ID)."""
    endpoints = []
    for name, item in _json_env(environ, env.TEA_ENDPOINTS, dict).items():
        if (
            not ENDPOINT_NAME_RE.match(name)
            or name == DEFAULT_ENDPOINT
            or not isinstance(item, dict)
            or not isinstance(item.get("url"), str)
            or not isinstance(item.get("cache"), str)
        ):
            raise ConfigurationError(f"{env.TEA_ENDPOINTS}: {name!r} must map to {{'url': ..., 'cache': ...}}")
        endpoints.append(TeaEndpoint(name, item["url"].rstrip("/"), item["cache"]))
    return tuple(endpoints)


def _cache_ids(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((e.name, e.cache_secret_id) for e in _extra_endpoints(environ))


@dataclass(frozen=True)
class CredentialSettings:
    token_secret_id: str
    credentials_secret_id: str
    lock_table: str
    tea_endpoint: str
    app_name: str
    safety_margin_seconds: int
    tea_timeout_seconds: int
    staging_bucket: str
    extra_endpoints: tuple[TeaEndpoint, ...] = ()  # besides "default" (tea_endpoint)

    def endpoint(self, name: str) -> TeaEndpoint:
        if name == DEFAULT_ENDPOINT:
            return TeaEndpoint(DEFAULT_ENDPOINT, self.tea_endpoint, self.credentials_secret_id)
        for endpoint in self.extra_endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    @property
    def endpoint_names(self) -> tuple[str, ...]:
        return (DEFAULT_ENDPOINT, *(e.name for e in self.extra_endpoints))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CredentialSettings:
        e = os.environ if environ is None else environ
        return cls(
            token_secret_id=_str(e, env.TOKEN_SECRET_ID),
            credentials_secret_id=_str(e, env.CREDENTIALS_SECRET_ID),
            lock_table=_str(e, env.LOCK_TABLE),
            tea_endpoint=_str(e, env.TEA_ENDPOINT).rstrip("/"),
            app_name=_str(e, env.APP_NAME, "teacopy"),
            safety_margin_seconds=_int(e, env.SAFETY_MARGIN_SECONDS, 300),
            tea_timeout_seconds=_int(e, env.TEA_TIMEOUT_SECONDS, 15, minimum=1),
            staging_bucket=_str(e, env.STAGING_BUCKET),
            extra_endpoints=_extra_endpoints(e),
        )


# Plan and Summarize: seconds of work per invocation before they checkpoint and continue in another one
# (their Lambdas time out at 900 s; the rest is margin for a slow last page and the checkpoint).
DEFAULT_BUDGET_SECONDS = 600


@dataclass(frozen=True)
class PlanSettings:
    staging_bucket: str
    destinations: tuple[Destination, ...]  # allowed destination buckets (and prefixes)
    manifest_buckets: tuple[str, ...]
    batch_max_objects: int
    batch_max_bytes: int
    max_inline_keys: int
    # Source modes (docs/sources.md): prefix listings get TEA credentials through the Credentials
    # function and read them from the cache; CMR queries go to cmr_url (https; http only to loopback).
    credentials_function: str = ""
    credentials_secret_id: str = ""
    source_region: str = "us-west-2"
    cmr_url: str = "https://cmr.earthdata.nasa.gov"
    cmr_page_size: int = 2000
    cmr_max_granules: int = 10_000_000
    schedule_state_prefix: str = ""  # SSM path of incremental schedules' state ("" = no incremental schedule)
    bucket_endpoints: tuple[tuple[str, str], ...] = ()  # (source bucket, TEA endpoint name); others: default
    extra_cache_secret_ids: tuple[tuple[str, str], ...] = ()  # (endpoint name, cache secret) besides default
    endpoint_urls: tuple[tuple[str, str], ...] = ()  # (endpoint name, TEA URL), "default" included when known
    # Plan pages through its source this long per invocation, then checkpoints and continues (planning.plan)
    plan_budget_seconds: int = DEFAULT_BUDGET_SECONDS

    def endpoint_for(self, bucket: str) -> str:
        """The TEA endpoint whose credentials read ``bucket`` (config ``tea_endpoints[].buckets``)."""
        return dict(self.bucket_endpoints).get(bucket, DEFAULT_ENDPOINT)

    def cache_secret_id(self, endpoint: str) -> str:
        if endpoint == DEFAULT_ENDPOINT:
            return self.credentials_secret_id
        return dict(self.extra_cache_secret_ids)[endpoint]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlanSettings:
        e = os.environ if environ is None else environ
        destinations = []
        for item in _json_list(e, env.DESTINATIONS):
            if not isinstance(item, dict) or not isinstance(item.get("bucket"), str):
                raise ConfigurationError(f"{env.DESTINATIONS} items must be objects with a 'bucket'")
            destinations.append(Destination(bucket=item["bucket"], prefix=str(item.get("prefix", ""))))
        manifest_buckets = [str(b) for b in _json_list(e, env.MANIFEST_BUCKETS)]
        return cls(
            staging_bucket=_str(e, env.STAGING_BUCKET),
            destinations=tuple(destinations),
            manifest_buckets=tuple(manifest_buckets),
            batch_max_objects=_int(e, env.BATCH_MAX_OBJECTS, DEFAULT_BATCH_MAX_OBJECTS, minimum=1),
            batch_max_bytes=_int(e, env.BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_BYTES, minimum=1),
            max_inline_keys=_int(e, env.MAX_INLINE_KEYS, 1000, minimum=1),
            credentials_function=e.get(env.CREDENTIALS_FUNCTION, ""),
            credentials_secret_id=e.get(env.CREDENTIALS_SECRET_ID, ""),
            source_region=_str(e, env.SOURCE_REGION, "us-west-2"),
            cmr_url=_str(e, env.CMR_URL, "https://cmr.earthdata.nasa.gov"),
            cmr_page_size=_int(e, env.CMR_PAGE_SIZE, 2000, minimum=1),
            cmr_max_granules=_int(e, env.CMR_MAX_GRANULES, 10_000_000, minimum=1),
            schedule_state_prefix=e.get(env.SCHEDULE_STATE_PREFIX, ""),
            bucket_endpoints=_bucket_endpoints(e),
            extra_cache_secret_ids=_cache_ids(e),
            endpoint_urls=(((DEFAULT_ENDPOINT, e[env.TEA_ENDPOINT].rstrip("/")),) if e.get(env.TEA_ENDPOINT) else ())
            + tuple((x.name, x.url) for x in _extra_endpoints(e)),
            plan_budget_seconds=_int(e, env.PLAN_BUDGET_SECONDS, DEFAULT_BUDGET_SECONDS),
        )


# The stack's config (stacks/config.py) takes its defaults from these and passes them in the environment, so
# `make bench` and local runs measure what is deployed. `make bench` under the modelled S3 (README "Performance
# and cost"): 16 MiB parts x 8 in flight fill a Lambda's ~75 MiB/s with 128 MiB of buffers; up to 64 objects in
# flight (how many actually are follows from their sizes, the measured latency and the buffer budget below:
# BatchRun's Pace); objects below 64 MiB go in one PutObject.
DEFAULT_PART_SIZE_BYTES = 16 * MIB
DEFAULT_INFLIGHT_PARTS = 8
DEFAULT_MULTIPART_THRESHOLD_BYTES = 64 * MIB
# From this size up, an object below the multipart threshold whose source ETag is its MD5 is streamed: its GET
# body goes out as the PutObject body while it arrives (Content-MD5 = the ETag), instead of being downloaded
# whole first. `make bench`, 20 x 50 MiB (2026-12-01, teacopy only): 64.5 -> 71.7-72.2 MiB/s, peak RSS 331 -> 71 MB
# (no download before each upload, no upload after the last download; one 256 KiB piece held per object).
# Small objects keep the CRT's whole-body GET and PUT (per-request CPU matters more there).
DEFAULT_STREAM_MIN_BYTES = 8 * MIB
DEFAULT_OBJECT_CONCURRENCY = 64
# CopyBatch's memory (cdk.json copy_memory_mb): CopyBatch reads it from LAMBDA_MEMORY_MB (Lambda sets it),
# Summarize from COPY_MEMORY_MB (it prices the run's Lambda time with it).
DEFAULT_COPY_MEMORY_MB = 1024
# Objects in flight may buffer up to a quarter of the function's memory (at least one multipart object's
# parts). `make bench`, 20 x 50 MiB: peak RSS ~2.2x the budget + ~60 MB (575 MB at 1,024 MB: a 256 MiB
# budget, five 50 MiB objects in flight, 2x the throughput of the old 128 MiB bound, which left the network
# idle while two objects took turns downloading and uploading).
BUFFER_SHARE_OF_MEMORY = 0.25
# Objects per CopyBatch invocation (one map item). `make bench`, 1,000 x 100 KiB: 1,000 per batch copies
# ~1.45x as many objects per second as 100 (each batch pays its LISTs, thread start and flushes once), and a
# tenth of the map's items and state transitions. Lower it (cdk.json) for more parallelism on small jobs.
DEFAULT_BATCH_MAX_OBJECTS = 1000
DEFAULT_BATCH_MAX_BYTES = 8 * GIB


@dataclass(frozen=True)
class CopySettings:
    staging_bucket: str
    credentials_secret_id: str
    source_region: str
    safety_margin_seconds: int
    part_size_bytes: int
    multipart_threshold_bytes: int
    inflight_parts: int
    object_concurrency: int
    deadline_reserve_seconds: int
    extra_cache_secret_ids: tuple[tuple[str, str], ...] = ()  # (endpoint name, cache secret) besides default
    memory_mb: int = DEFAULT_COPY_MEMORY_MB  # the function's memory (Lambda sets LAMBDA_MEMORY_MB)
    stream_min_bytes: int = DEFAULT_STREAM_MIN_BYTES  # see DEFAULT_STREAM_MIN_BYTES

    @property
    def buffer_budget_bytes(self) -> int:
        """Bytes the objects in flight may buffer: a share of the memory, at least one multipart object's parts."""
        parts = max(1, self.inflight_parts) * self.part_size_bytes
        return max(parts, int(self.memory_mb * MIB * BUFFER_SHARE_OF_MEMORY))

    def cache_secret_id(self, endpoint: str) -> str:
        """The credentials cache secret of a TEA endpoint (KeyError: not configured here)."""
        if endpoint == DEFAULT_ENDPOINT:
            return self.credentials_secret_id
        return dict(self.extra_cache_secret_ids)[endpoint]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CopySettings:
        e = os.environ if environ is None else environ
        part = _int(e, env.PART_SIZE_BYTES, DEFAULT_PART_SIZE_BYTES, minimum=5 * MIB)
        return cls(
            staging_bucket=_str(e, env.STAGING_BUCKET),
            credentials_secret_id=_str(e, env.CREDENTIALS_SECRET_ID),
            source_region=_str(e, env.SOURCE_REGION, "us-west-2"),
            safety_margin_seconds=_int(e, env.SAFETY_MARGIN_SECONDS, 300),
            part_size_bytes=part,
            multipart_threshold_bytes=_int(
                e, env.MULTIPART_THRESHOLD_BYTES, DEFAULT_MULTIPART_THRESHOLD_BYTES, minimum=1
            ),
            inflight_parts=_int(e, env.INFLIGHT_PARTS, DEFAULT_INFLIGHT_PARTS, minimum=1),
            object_concurrency=_int(e, env.OBJECT_CONCURRENCY, DEFAULT_OBJECT_CONCURRENCY, minimum=1),
            deadline_reserve_seconds=_int(e, env.DEADLINE_RESERVE_SECONDS, 60, minimum=1),
            extra_cache_secret_ids=_cache_ids(e),
            memory_mb=_int(e, env.LAMBDA_MEMORY_MB, DEFAULT_COPY_MEMORY_MB, minimum=128),
            stream_min_bytes=_int(e, env.STREAM_MIN_BYTES, DEFAULT_STREAM_MIN_BYTES, minimum=1),
        )


@dataclass(frozen=True)
class SummarySettings:
    staging_bucket: str
    max_failed_percent: int
    schedule_state_prefix: str = ""  # SSM path of incremental schedules' state ("" = none configured)
    # Summarize reads result files this long per invocation, then checkpoints and continues (reporting.summary)
    summary_budget_seconds: int = DEFAULT_BUDGET_SECONDS
    # The deployed copy settings Summarize prices the run's copies with (lambdas/reporting/cost.py): the stack
    # passes CopyBatch's and Plan's values (stacks/constructs/steps/summarize.py)
    part_size_bytes: int = DEFAULT_PART_SIZE_BYTES
    multipart_threshold_bytes: int = DEFAULT_MULTIPART_THRESHOLD_BYTES
    batch_max_objects: int = DEFAULT_BATCH_MAX_OBJECTS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    copy_memory_mb: int = DEFAULT_COPY_MEMORY_MB
    source_region: str = "us-west-2"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SummarySettings:
        e = os.environ if environ is None else environ
        return cls(
            staging_bucket=_str(e, env.STAGING_BUCKET),
            max_failed_percent=_int(e, env.MAX_FAILED_PERCENT, 0),
            schedule_state_prefix=e.get(env.SCHEDULE_STATE_PREFIX, ""),
            summary_budget_seconds=_int(e, env.SUMMARY_BUDGET_SECONDS, DEFAULT_BUDGET_SECONDS),
            part_size_bytes=_int(e, env.PART_SIZE_BYTES, DEFAULT_PART_SIZE_BYTES, minimum=5 * MIB),
            multipart_threshold_bytes=_int(
                e, env.MULTIPART_THRESHOLD_BYTES, DEFAULT_MULTIPART_THRESHOLD_BYTES, minimum=1
            ),
            batch_max_objects=_int(e, env.BATCH_MAX_OBJECTS, DEFAULT_BATCH_MAX_OBJECTS, minimum=1),
            batch_max_bytes=_int(e, env.BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_BYTES, minimum=1),
            copy_memory_mb=_int(e, env.COPY_MEMORY_MB, DEFAULT_COPY_MEMORY_MB, minimum=128),
            source_region=_str(e, env.SOURCE_REGION, "us-west-2"),
        )


@dataclass(frozen=True)
class CleanupSettings:
    """The Cleanup function (lambdas/lifecycle/cleanup.py): only the staging bucket."""

    staging_bucket: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CleanupSettings:
        e = os.environ if environ is None else environ
        return cls(staging_bucket=_str(e, env.STAGING_BUCKET))
