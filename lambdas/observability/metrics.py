"""Operational metrics: CloudWatch Embedded Metric Format (EMF) through Powertools for AWS Lambda.

The logic records into a ``MetricsSink`` it is given (tests pass a ``RecordingMetrics``); the handlers
create one ``EmfMetrics`` per invocation (``observed``) and flush it when the invocation ends, also when
it raises. In Lambda the EMF document goes to stdout, where CloudWatch turns it into metrics; anywhere
else (the local engine runs handlers in-process) it is logged at INFO on ``teacopy.metrics`` instead,
so local runs keep a clean stdout and tests can still read what would have been published.

The names below are the contract with the dashboard and alarms (``stacks/constructs/observability.py``):
namespace NAMESPACE, one ``service`` dimension per function (SERVICE_*), no other dimension.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from lambdas.observability.logs import running_in_lambda

logger = logging.getLogger(__name__)
emf_logger = logging.getLogger("teacopy.metrics")

NAMESPACE = "Teacopy"
SERVICE_COPY = "copy-batch"
SERVICE_CREDENTIALS = "credentials"

COUNT, BYTES, MILLISECONDS = "Count", "Bytes", "Milliseconds"

# CopyBatch (per invocation: what it recorded in the result log)
OBJECTS_COPIED = "ObjectsCopied"
OBJECTS_SKIPPED = "ObjectsSkipped"
OBJECTS_FAILED = "ObjectsFailed"
BYTES_COPIED = "BytesCopied"
# Credentials
TEA_REQUESTS = "TeaRequests"  # every HTTP attempt to /s3credentials
TEA_LATENCY = "TeaLatency"  # per attempt, milliseconds
TEA_ERRORS = "TeaErrors"  # attempts whose outcome was not "ok" (timeouts, 5xx, 401, 403, ...)
TEA_AUTH_FAILURES = "TeaAuthFailures"  # credentials calls that failed with EdlTokenRejected (expired EDL token)
CREDENTIAL_REFRESHES = "CredentialRefreshes"  # refresh calls that fetched new credentials from TEA
COALESCED_REFRESHES = "CoalescedRefreshes"  # refresh calls served by credentials another worker fetched
# Both
ERRORS = "Errors"  # invocations that raised (besides the routine CredentialsExpired of CopyBatch)

# Errors that are part of the normal flow (the state machine routes them): not counted in ERRORS.
ROUTINE_ERRORS = frozenset({"CredentialsExpired"})
AUTH_ERRORS = frozenset({"EdlTokenRejected"})


class MetricsSink(Protocol):
    def add(self, name: str, value: float, unit: str = COUNT) -> None: ...


class RecordingMetrics:
    """Keeps what was recorded (tests, and anything that wants the numbers in-process)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, str]] = []

    def add(self, name: str, value: float, unit: str = COUNT) -> None:
        self.records.append((name, float(value), unit))

    def total(self, name: str) -> float:
        return sum(value for n, value, _ in self.records if n == name)

    def names(self) -> set[str]:
        return {n for n, _, _ in self.records}


def _emit(document: str) -> None:
    if running_in_lambda():
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
    else:
        emf_logger.info("EMF %s", document)


class EmfMetrics:
    """One invocation's metrics, serialized by Powertools' CloudWatch EMF provider.

    A provider per instance (not Powertools' ``Metrics`` class, whose state is shared by every instance
    in the process: the local engine runs several handlers at once in one process).
    """

    def __init__(self, service: str, namespace: str = NAMESPACE, emit: Callable[[str], None] = _emit) -> None:
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

        self._provider = AmazonCloudWatchEMFProvider(namespace=namespace, service=service)
        self._emit = emit

    def add(self, name: str, value: float, unit: str = COUNT) -> None:
        self._provider.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        if not self._provider.metric_set:
            return
        document = json.dumps(self._provider.serialize_metric_set(), separators=(",", ":"))
        self._provider.clear_metrics()
        self._emit(document)


class _NoMetrics:
    def add(self, name: str, value: float, unit: str = COUNT) -> None:
        return None

    def flush(self) -> None:
        return None


def for_lambda(service: str) -> EmfMetrics | _NoMetrics:
    """The sink a handler uses for one invocation. Telemetry never breaks a copy: without the
    Powertools layer it logs an error and records nothing."""
    try:
        return EmfMetrics(service)
    except ImportError as exc:
        logger.error("metrics disabled: aws-lambda-powertools is not importable (%s); attach the layer", exc)
        return _NoMetrics()


@contextmanager
def observed(sink: EmfMetrics | _NoMetrics) -> Iterator[EmfMetrics | _NoMetrics]:
    """Yield the invocation's sink; count a raised error (by kind) and flush, whatever the outcome."""
    try:
        yield sink
    except Exception as exc:
        record_error(sink, exc)
        raise
    finally:
        try:
            sink.flush()
        except (ValueError, TypeError) as exc:  # Powertools' schema/validation errors are ValueErrors
            logger.warning("could not publish metrics: %s", exc)


# --- what is recorded (logic level, sink injected) ---------------------------------------------------------


def record_error(sink: MetricsSink, exc: BaseException) -> None:
    name = type(exc).__name__
    if name in AUTH_ERRORS:
        sink.add(TEA_AUTH_FAILURES, 1)
    if name not in ROUTINE_ERRORS:
        sink.add(ERRORS, 1)


def record_copy_result(sink: MetricsSink, result: Mapping[str, Any]) -> None:
    """The counts a CopyBatch invocation returns (``lambdas.copying.batch.copy_batch``)."""
    for metric, field in ((OBJECTS_COPIED, "copied"), (OBJECTS_SKIPPED, "skipped"), (OBJECTS_FAILED, "failed")):
        sink.add(metric, int(result.get(field) or 0))
    sink.add(BYTES_COPIED, int(result.get("bytes") or 0), BYTES)


def record_tea_request(sink: MetricsSink, detail: Mapping[str, Any]) -> None:
    """One HTTP attempt to TEA (``TeaClient``'s ``on_request`` detail: status, outcome, seconds)."""
    sink.add(TEA_REQUESTS, 1)
    seconds = detail.get("seconds")
    if isinstance(seconds, int | float):
        sink.add(TEA_LATENCY, round(float(seconds) * 1000, 3), MILLISECONDS)
    if detail.get("outcome") != "ok":
        sink.add(TEA_ERRORS, 1)


def record_refresh(sink: MetricsSink, fetched: bool) -> None:
    sink.add(CREDENTIAL_REFRESHES if fetched else COALESCED_REFRESHES, 1)
