"""Typed configuration, built once from the ``teacopy`` object in cdk.json context."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lambdas.contracts.models import ENDPOINT_NAME_RE
from lambdas.contracts.settings import (
    DEFAULT_BATCH_MAX_BYTES,
    DEFAULT_BATCH_MAX_OBJECTS,
    DEFAULT_COPY_MEMORY_MB,
    DEFAULT_INFLIGHT_PARTS,
    DEFAULT_MULTIPART_THRESHOLD_BYTES,
    DEFAULT_OBJECT_CONCURRENCY,
    DEFAULT_PART_SIZE_BYTES,
)
from lambdas.s3.limits import MIB
from lambdas.s3.names import is_bucket_name

_APP_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
_TOPIC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """cdk.json context is invalid; the message names the key."""


@dataclass(frozen=True)
class DestinationConfig:
    bucket: str
    prefix: str = ""  # empty: the whole bucket


_SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_SCHEDULE_EXPRESSION_RE = re.compile(r"^(cron|rate|at)\(.+\)$")


@dataclass(frozen=True)
class TeaEndpointConfig:
    """Another DAAC's TEA (besides ``tea_endpoint``, named ``default``) and the buckets it serves."""

    name: str
    endpoint: str
    buckets: tuple[str, ...]


@dataclass(frozen=True)
class ScheduleConfig:
    """One EventBridge Scheduler schedule: when, and the execution input it starts."""

    name: str
    expression: str  # cron(...), rate(...) or at(...)
    input: dict[str, Any]
    incremental: bool = False  # CMR sources: only what changed since the last successful run
    enabled: bool = True
    timezone: str | None = None
    retry_attempts: int = 5  # delivery retries by Scheduler (then the dead-letter queue)
    max_event_age_hours: int = 6


@dataclass(frozen=True)
class TeacopyConfig:
    tea_endpoint: str
    destinations: tuple[DestinationConfig, ...]
    token_secret_name: str = "teacopy/edl-token"  # noqa: S105 — the secret's name, not its value
    app_name: str = "teacopy"
    source_region: str = "us-west-2"
    manifest_buckets: tuple[str, ...] = ()  # the Plan may also read manifests from destination buckets
    max_concurrency: int = 40
    # Lambda concurrency: CopyBatch reserves max_concurrency (copy_reserved_concurrency; 0: no reservation), the
    # Credentials function keeps its own reserve, so copy workers can never starve a refresh; both must fit in
    # the account's concurrency limit (Service Quotas "Concurrent executions"), of which Lambda keeps 100 unreserved.
    copy_reserved_concurrency: int | None = None  # None: max_concurrency
    credentials_reserved_concurrency: int = 10
    account_concurrency_limit: int = 1000
    batch_max_objects: int = DEFAULT_BATCH_MAX_OBJECTS  # make bench: see lambdas/contracts/settings.py
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    max_inline_keys: int = 1000
    tolerated_failure_percentage: int = 0
    max_failed_percent: int = 0
    safety_margin_seconds: int = 300
    tea_timeout_seconds: int = 15
    max_refresh_rounds: int = 5
    copy_memory_mb: int = DEFAULT_COPY_MEMORY_MB  # objects in flight buffer up to a quarter of it
    copy_timeout_seconds: int = 900
    # the copy sizing comes from make bench (lambdas/contracts/settings.py DEFAULT_*, where the figures are):
    part_size_mb: int = DEFAULT_PART_SIZE_BYTES // MIB  # 16 MiB x 8 in flight fill the ~75 MiB/s link
    multipart_threshold_mb: int = DEFAULT_MULTIPART_THRESHOLD_BYTES // MIB  # below: one PutObject (2 requests)
    inflight_parts: int = DEFAULT_INFLIGHT_PARTS
    object_concurrency: int = DEFAULT_OBJECT_CONCURRENCY  # a bound: sizes and measured latency set how many
    log_retention_days: int = 30
    staging_retention_days: int = 30
    alarm_topic_arn: str = ""  # an existing SNS topic the alarms notify (stacks/constructs/observability.py)
    alarm_email: str = ""  # or: an email address; the stack creates a topic and subscribes it
    schedules: tuple[ScheduleConfig, ...] = ()
    tea_endpoints: tuple[TeaEndpointConfig, ...] = ()  # several DAACs in one job: bucket -> its TEA
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def copy_reserved(self) -> int:
        """The reserved concurrency of CopyBatch (0: none)."""
        return self.max_concurrency if self.copy_reserved_concurrency is None else self.copy_reserved_concurrency

    @property
    def readable_buckets(self) -> tuple[str, ...]:
        """Buckets the Plan may read manifests from: the configured ones plus the destinations."""
        seen: dict[str, None] = dict.fromkeys(self.manifest_buckets)
        seen.update(dict.fromkeys(d.bucket for d in self.destinations))
        return tuple(seen)

    @classmethod
    def from_context(cls, raw: Any) -> TeacopyConfig:
        if not isinstance(raw, dict):
            raise ConfigError("context 'teacopy' must be an object (see cdk.json)")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"teacopy: unknown keys {unknown}; known keys are {sorted(known)}")
        endpoint = raw.get("tea_endpoint")
        if not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint):
            raise ConfigError(
                "teacopy.tea_endpoint: must be an http(s) URL such as https://archive.podaac.earthdata.nasa.gov"
            )
        destinations = tuple(_destination(i, d) for i, d in enumerate(raw.get("destinations") or []))
        if not destinations:
            raise ConfigError("teacopy.destinations: list at least one destination bucket you own")
        values: dict[str, Any] = {"tea_endpoint": endpoint.rstrip("/"), "destinations": destinations}
        for name in ("token_secret_name", "app_name", "source_region"):
            if name in raw:
                if not isinstance(raw[name], str) or not raw[name]:
                    raise ConfigError(f"teacopy.{name}: must be a non-empty string")
                values[name] = raw[name]
        for name, pattern, example in (
            ("alarm_topic_arn", _TOPIC_ARN_RE, "arn:aws:sns:us-west-2:123456789012:ops-alerts"),
            ("alarm_email", _EMAIL_RE, "ops@example.org"),
        ):
            if name in raw:
                if not isinstance(raw[name], str) or (raw[name] and not pattern.match(raw[name])):
                    raise ConfigError(f"teacopy.{name}: must be empty or like {example}")
                values[name] = raw[name]
        if not _APP_NAME_RE.match(values.get("app_name", "teacopy")):
            raise ConfigError("teacopy.app_name: only letters, digits and +=,.@-_ (at most 64 characters)")
        if "manifest_buckets" in raw:
            buckets = raw["manifest_buckets"]
            if not isinstance(buckets, list) or not all(is_bucket_name(b) for b in buckets):
                raise ConfigError("teacopy.manifest_buckets: must be a list of bucket names")
            values["manifest_buckets"] = tuple(buckets)
        if "tea_endpoints" in raw:
            entries = raw["tea_endpoints"]
            if not isinstance(entries, list):
                raise ConfigError("teacopy.tea_endpoints: must be a list of {name, endpoint, buckets}")
            values["tea_endpoints"] = tuple(_tea_endpoint(i, e) for i, e in enumerate(entries))
            names = [e.name for e in values["tea_endpoints"]]
            buckets = [b for e in values["tea_endpoints"] for b in e.buckets]
            if len(set(names)) != len(names):
                raise ConfigError("teacopy.tea_endpoints: names must be unique")
            if len(set(buckets)) != len(buckets):
                raise ConfigError("teacopy.tea_endpoints: a bucket can belong to one endpoint only")
        if "schedules" in raw:
            entries = raw["schedules"]
            if not isinstance(entries, list):
                raise ConfigError("teacopy.schedules: must be a list of {name, expression, input}")
            values["schedules"] = tuple(_schedule(i, e) for i, e in enumerate(entries))
            names = [s.name for s in values["schedules"]]
            if len(set(names)) != len(names):
                raise ConfigError("teacopy.schedules: names must be unique")
        limits = {
            "max_concurrency": (1, 10_000),
            "copy_reserved_concurrency": (0, 10_000),
            "credentials_reserved_concurrency": (0, 1_000),
            "account_concurrency_limit": (100, 1_000_000),
            "batch_max_objects": (1, 1_000),
            "batch_max_bytes": (MIB, 5 * 1024**4),
            "max_inline_keys": (1, 5_000),
            "tolerated_failure_percentage": (0, 100),
            "max_failed_percent": (0, 100),
            "safety_margin_seconds": (30, 1_800),
            "tea_timeout_seconds": (1, 60),
            "max_refresh_rounds": (1, 20),
            "copy_memory_mb": (256, 10_240),
            "copy_timeout_seconds": (60, 900),
            "part_size_mb": (5, 5_120),
            "multipart_threshold_mb": (5, 5_120),
            "inflight_parts": (1, 32),
            "object_concurrency": (1, 256),
            "log_retention_days": (1, 3_653),
            "staging_retention_days": (1, 3_653),
        }
        for name, (low, high) in limits.items():
            if name in raw:
                value = raw[name]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ConfigError(f"teacopy.{name}: must be an integer from {low} to {high}, got {value!r}")
                values[name] = value
        config = cls(**values)
        _check_concurrency(config)
        return config


UNRESERVED_MINIMUM = 100  # Lambda keeps this much of the account's concurrency unreserved


def _check_concurrency(config: TeacopyConfig) -> None:
    """Refuse settings the account's Lambda concurrency cannot serve (cdk.json ``account_concurrency_limit``)."""
    limit = config.account_concurrency_limit
    if config.max_concurrency > limit:
        raise ConfigError(
            f"teacopy.max_concurrency: {config.max_concurrency} map children need as many concurrent CopyBatch "
            f"invocations, above the account's Lambda concurrency limit of {limit} "
            "(teacopy.account_concurrency_limit); lower max_concurrency, or ask AWS for a higher "
            "'Concurrent executions' quota (Service Quotas) and set account_concurrency_limit to it"
        )
    reserved = config.copy_reserved + config.credentials_reserved_concurrency
    if reserved > limit - UNRESERVED_MINIMUM:
        raise ConfigError(
            f"teacopy: CopyBatch ({config.copy_reserved}) and Credentials ({config.credentials_reserved_concurrency}) "
            f"would reserve {reserved} of the account's {limit} concurrent Lambda executions, but Lambda keeps "
            f"{UNRESERVED_MINIMUM} unreserved: lower max_concurrency (or copy_reserved_concurrency, "
            "credentials_reserved_concurrency), or raise account_concurrency_limit after raising the quota"
        )


def _destination(index: int, raw: Any) -> DestinationConfig:
    where = f"teacopy.destinations[{index}]"
    if isinstance(raw, str):
        raw = {"bucket": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("bucket"), str):
        raise ConfigError(f"{where}: must be a bucket name or {{'bucket': ..., 'prefix': ...}}")
    bucket, prefix = raw["bucket"], raw.get("prefix", "")
    if not is_bucket_name(bucket):
        raise ConfigError(f"{where}.bucket: {bucket!r} is not a valid S3 bucket name")
    if not isinstance(prefix, str) or prefix.startswith("/") or (prefix and not prefix.endswith("/")):
        raise ConfigError(f"{where}.prefix: must be empty or end with '/' and not start with '/'")
    return DestinationConfig(bucket=bucket, prefix=prefix)


def _schedule(index: int, raw: Any) -> ScheduleConfig:
    where = f"teacopy.schedules[{index}]"
    allowed = set(ScheduleConfig.__dataclass_fields__)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object with name, expression and input")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(allowed)}")
    name, expression, job = raw.get("name"), raw.get("expression"), raw.get("input")
    if not isinstance(name, str) or not _SCHEDULE_NAME_RE.match(name):
        raise ConfigError(f"{where}.name: 1-40 characters of letters, digits, '-' and '_'")
    if not isinstance(expression, str) or not _SCHEDULE_EXPRESSION_RE.match(expression):
        raise ConfigError(f"{where}.expression: must be cron(...), rate(...) or at(...), e.g. 'cron(0 3 * * ? *)'")
    if not isinstance(job, dict) or "schedule" in job:
        raise ConfigError(f"{where}.input: must be an execution input object (without 'schedule': teacopy adds it)")
    values: dict[str, Any] = {"name": name, "expression": expression, "input": job}
    for flag in ("incremental", "enabled"):
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise ConfigError(f"{where}.{flag}: must be true or false")
            values[flag] = raw[flag]
    if "timezone" in raw:
        if not isinstance(raw["timezone"], str) or not raw["timezone"]:
            raise ConfigError(f"{where}.timezone: must be an IANA time zone name such as 'UTC'")
        values["timezone"] = raw["timezone"]
    for name_, (low, high) in {"retry_attempts": (0, 185), "max_event_age_hours": (1, 24)}.items():
        if name_ in raw:
            value = raw[name_]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{where}.{name_}: must be an integer from {low} to {high}")
            values[name_] = value
    if values.get("incremental") and not (isinstance(job.get("source"), dict) and "cmr" in job["source"]):
        raise ConfigError(f"{where}.incremental: only a 'cmr' source can be narrowed to what changed")
    return ScheduleConfig(**values)


def _tea_endpoint(index: int, raw: Any) -> TeaEndpointConfig:
    where = f"teacopy.tea_endpoints[{index}]"
    if not isinstance(raw, dict) or set(raw) != {"name", "endpoint", "buckets"}:
        raise ConfigError(f"{where}: must be an object with exactly name, endpoint and buckets")
    name, endpoint, buckets = raw["name"], raw["endpoint"], raw["buckets"]
    if not isinstance(name, str) or not ENDPOINT_NAME_RE.match(name) or name == "default":
        raise ConfigError(f"{where}.name: lowercase letters, digits and '-' (not 'default', which is tea_endpoint)")
    if not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint):
        raise ConfigError(
            f"{where}.endpoint: must be an http(s) URL such as https://data.nsidc.earthdatacloud.nasa.gov"
        )
    if not isinstance(buckets, list) or not buckets or not all(is_bucket_name(b) for b in buckets):
        raise ConfigError(f"{where}.buckets: must be a non-empty list of the DAAC's bucket names")
    return TeaEndpointConfig(name=name, endpoint=endpoint.rstrip("/"), buckets=tuple(buckets))
