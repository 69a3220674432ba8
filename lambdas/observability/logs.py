"""Logging of the Lambdas: Powertools for AWS Lambda's Logger, one JSON line per record, the invocation's ids as keys.

How it is wired
---------------
- Each handler module creates its function's Logger once, decorates its entry point and appends the
  invocation's ids first thing::

      LOGGER = logs.function_logger(logs.COPY_BATCH)

      @LOGGER.inject_lambda_context(clear_state=True)
      def lambda_handler(event, context):
          LOGGER.append_keys(**logs.invocation_keys(event))
          ...

- ``function_logger`` attaches the Logger's handler (Powertools' JSON formatter) to the package logger
  ``lambdas``. Every module logger ``lambdas.…`` propagates into it, so every record of the invocation, from
  any module and any thread, is one JSON line carrying the same keys: ``service``, ``level``, ``location``,
  ``name`` (the module logger), ``message``, ``timestamp``, the Lambda context (``function_name``,
  ``function_request_id``, ``cold_start``, …), the invocation's ``run_id`` / ``batch_id`` / ``endpoint`` /
  ``action`` (``invocation_keys``), and the record's own ``extra`` keys. ``clear_state=True`` drops the
  previous invocation's keys. (Not ``copy_config_to_registered_loggers``: it configures only the loggers
  that exist when it is called and turns their propagation off, which would hide the records from pytest's
  ``caplog`` and the local engine's capture, both at the root logger.)
- **Level**: only the function's configuration sets it. Powertools reads ``AWS_LAMBDA_LOG_LEVEL`` (Lambda's
  advanced logging controls; the stack sets the application log level to INFO), else
  ``POWERTOOLS_LOG_LEVEL``, else INFO; the package logger gets the same level. No code calls ``setLevel``
  on the root logger.
- **Library floor (a security rule)**: ``botocore``, ``boto3`` and ``urllib3`` never log below WARNING,
  whatever the configured level: botocore at DEBUG logs request headers, which carry the TEA session
  token of the source client. ``LIBRARY_FLOOR``, applied by ``function_logger``.
- **Where the lines go**: inside Lambda to stdout (CloudWatch Logs). Outside Lambda (the local engine and
  the tests run handlers in-process) never to stdout: to the sinks registered with ``local_sink`` (the
  local engine keeps them for its secret scan), else nowhere. The records also propagate to the root
  logger as plain records, where pytest's ``caplog`` and the local engine's capture read them; inside
  Lambda a filter on the root logger's handlers drops them there, or the runtime's own handler would
  write each a second time.
- **Service names** are ``teacopy-<function>`` (PLAN, CREDENTIALS, COPY_BATCH, SUMMARIZE), not the metrics'
  ``service`` dimension values: Powertools names a stdlib logger after the service and hides, at the root
  handlers, every record whose logger name *contains* it; "credentials" or "plan" would hide
  ``lambdas.credentials.…`` and ``lambdas.planning.…`` from the local engine's capture.
- Keys appended with ``append_keys`` belong to the process. That is exact in Lambda, where an execution
  environment runs one invocation at a time. The local engine runs several invocations at once in one
  process: there a record may carry the ids of another invocation running at the same time.

The convention for every module under ``lambdas/`` (the handlers included)
----------------------------------------------------------------------------
1. ``logger = logging.getLogger(__name__)``; never add handlers, set levels or call ``basicConfig``
   (``function_logger`` does it once per function).
2. The message says what happened, in words that do not change between records ("stored new TEA
   credentials", "TEA attempt failed, retrying"); the values go into ``extra={...}`` as structured keys,
   not into the text: ``logger.info("stored new TEA credentials", extra={"version": v, "expiration": e})``,
   not ``logger.info("stored version=%s expiration=%s", v, e)``.
3. Do not repeat the invocation's keys (``run_id``, ``batch_id``, ``endpoint``, ``action``): every record
   has them. Name a value only when it differs from the invocation's (``endpoint`` of one of several
   endpoints served in one call).
4. Key names are snake_case and mean the same everywhere: ``run_id``, ``batch_id``, ``endpoint``,
   ``version``, ``expiration``, ``bucket``, ``key``, ``dest_bucket``, ``dest_key``, ``upload_id``,
   ``schedule``, ``attempt``, ``max_attempts``, ``status``, ``outcome``, ``seconds``, ``reason``, ``error``
   (an exception's class name or an error code), ``bytes``, counts by what they count (``objects``,
   ``batches``). Values are str, int, float, bool, None, or a small dict/list of those.
5. Never a key the stdlib reserves (``name``, ``msg``, ``args``, ``message``, ``module``, ``filename``,
   ``lineno``, ``levelname``, ``process``, ``thread``, …: ``logging`` raises KeyError) nor one Powertools
   writes (``service``, ``level``, ``location``, ``timestamp``, ``cold_start``, ``function_*``,
   ``xray_trace_id``, ``exception``, ``stack_trace``: the record's value would silently replace it).
6. Never a secret, in the message or a key: no EDL token, no ``TeaAuth``, no ``TeaCredentials`` (secret key,
   session token), no secret string, no raw TEA body or request headers. Log an exception by its class name
   or error code (``type(exc).__name__``, ``error_code(exc)``); our named errors' messages are safe by
   contract (``lambdas.contracts.errors``).
7. Levels: DEBUG for developers; INFO one line per meaningful step (not per byte range); WARNING something
   went wrong and the work goes on; ERROR the operator must act. Raise the named errors the state machine
   routes on; do not log and re-raise the same error.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger

PACKAGE = "lambdas"  # the package logger every ``lambdas.…`` module logger propagates into

# Each function's ``service`` key (see the module docstring for why not "credentials" or "plan").
PLAN = "teacopy-plan"
CREDENTIALS = "teacopy-credentials"
COPY_BATCH = "teacopy-copy-batch"
SUMMARIZE = "teacopy-summarize"
CLEANUP = "teacopy-cleanup"

# SECURITY: botocore at DEBUG logs request headers, including the TEA session token of the source client.
# These loggers never go below WARNING, whatever level the function's configuration sets.
LIBRARY_FLOOR = {"botocore": logging.WARNING, "boto3": logging.WARNING, "urllib3": logging.WARNING}

INVOCATION_KEYS = ("run_id", "batch_id", "endpoint", "action")
_MAX_KEY_CHARS = 200  # event values are not validated yet when they become keys: bound them

_LOCAL_SINKS: list[Callable[[str], None]] = []


def running_in_lambda() -> bool:
    """True inside the Lambda runtime (which sets ``AWS_LAMBDA_FUNCTION_NAME``), not in the local engine or tests."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


class _Output:
    """The stream of the JSON lines: stdout inside Lambda; elsewhere the local sinks (none: discarded).

    Decided at each write, and ``sys.stdout`` looked up at each write: tests switch both while a process runs.
    """

    def write(self, text: str) -> int:
        if running_in_lambda():
            return sys.stdout.write(text)
        for sink in tuple(_LOCAL_SINKS):
            sink(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        if running_in_lambda():
            sys.stdout.flush()


# One handler per process, shared by every function's Logger: the package logger has exactly one.
_HANDLER = logging.StreamHandler(_Output())


class _NotPackageRecordsInLambda(logging.Filter):
    """On the root logger's handlers: inside Lambda, our records were already written as JSON by ``_HANDLER``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (running_in_lambda() and (record.name == PACKAGE or record.name.startswith(PACKAGE + ".")))


_ROOT_FILTER = _NotPackageRecordsInLambda()


def function_logger(service: str) -> Logger:
    """The Powertools Logger of one Lambda function, with every ``lambdas.…`` record routed through its
    formatter, the level from the function's configuration, and the library floor. Call it once per handler
    module, at import; calling it again (a re-imported handler) changes nothing."""
    logger = Logger(service=service, logger_handler=_HANDLER, name="%(name)s")
    # Powertools resolves the level when a service's Logger is first created in a process; resolve it again
    # (AWS_LAMBDA_LOG_LEVEL, else POWERTOOLS_LOG_LEVEL, else INFO) so a re-imported handler follows its environment.
    logger.setLevel(None)
    level = logger.log_level
    package = logging.getLogger(PACKAGE)
    if _HANDLER not in package.handlers:
        package.addHandler(_HANDLER)
    package.setLevel(level)
    for name, floor in LIBRARY_FLOOR.items():
        logging.getLogger(name).setLevel(max(floor, level))
    for handler in logging.getLogger().handlers:
        if _is_pytest_capture(handler) or _ROOT_FILTER in handler.filters:
            continue
        handler.addFilter(_ROOT_FILTER)
    return logger


def _is_pytest_capture(handler: logging.Handler) -> bool:
    # As Powertools' own root-handler filter does: leave pytest's caplog alone.
    return type(handler).__name__ == "LogCaptureHandler" and type(handler).__module__ == "_pytest.logging"


def invocation_keys(event: Any) -> dict[str, str]:
    """The ids of a Lambda event that every record of its invocation carries: ``run_id``, ``batch_id``
    (``batch.id``), ``endpoint`` (``batch.endpoint`` or ``endpoint``) and ``action``, where present.

    Read from the raw event, before validation, so that the records of an invalid event carry them too;
    only non-empty strings are taken, and cut to a bounded length.
    """
    if not isinstance(event, Mapping):
        return {}
    batch = event.get("batch")
    batch = batch if isinstance(batch, Mapping) else {}
    found = {
        "run_id": event.get("run_id"),
        "batch_id": batch.get("id"),
        "endpoint": batch.get("endpoint", event.get("endpoint")),
        "action": event.get("action"),
    }
    return {key: value[:_MAX_KEY_CHARS] for key, value in found.items() if isinstance(value, str) and value}


@contextmanager
def local_sink(sink: Callable[[str], None]) -> Iterator[None]:
    """Outside Lambda, hand every JSON log line (without its newline) to ``sink`` while the context lasts."""
    _LOCAL_SINKS.append(sink)
    try:
        yield
    finally:
        _LOCAL_SINKS.remove(sink)
