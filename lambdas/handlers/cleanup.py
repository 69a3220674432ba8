"""Cleanup Lambda: a run's execution ended ABORTED, TIMED_OUT or FAILED; clean up after it. No logic here.

Events: an SQS batch (the stack's clean-up queue delays each EventBridge event; ``Records[].body`` is the
event) or the EventBridge event itself. Each record is cleaned up on its own; a failed record is reported in
``batchItemFailures``, so SQS redelivers only that one (then its dead-letter queue). The logic is
``lambdas.lifecycle.cleanup``.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import TeacopyError
from lambdas.contracts.settings import CleanupSettings
from lambdas.handlers.boundary import from_botocore, named_errors
from lambdas.lifecycle.cleanup import clean_up_run
from lambdas.observability import logs

LOGGER = logs.function_logger(logs.CLEANUP)  # level from the function's configuration; see logs.py
SETTINGS = CleanupSettings.from_env()
S3 = boto3.client(
    "s3", config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
)


def _clean_up(event: Any) -> dict[str, Any]:
    detail = event.get("detail") if isinstance(event, dict) else None
    LOGGER.append_keys(run_id=str((detail or {}).get("name", ""))[:200])
    return clean_up_run(detail, staging_bucket=SETTINGS.staging_bucket, s3=S3)


@LOGGER.inject_lambda_context(clear_state=True)
@named_errors("Cleanup")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    if records is None:  # the EventBridge event itself
        return _clean_up(event)
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            _clean_up(json.loads(record["body"]))
        except (ClientError, BotoCoreError) as exc:
            named = from_botocore(exc, "Cleanup")
            LOGGER.error(
                "clean-up failed; SQS redelivers it", extra={"error": type(named).__name__, "reason": str(named)}
            )
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
        except (TeacopyError, ValueError, KeyError) as exc:
            LOGGER.error("clean-up failed; SQS redelivers it", extra={"error": type(exc).__name__, "reason": str(exc)})
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
    return {"batchItemFailures": failures}
