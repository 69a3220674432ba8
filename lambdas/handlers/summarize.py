"""Summarize Lambda: parse the event, call the summary logic. No logic here."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from lambdas.contracts.settings import SummarySettings
from lambdas.handlers.boundary import named_errors
from lambdas.observability import logs
from lambdas.reporting.summary import summarize

LOGGER = logs.function_logger(logs.SUMMARIZE)  # level from the function's configuration; see logs.py
SETTINGS = SummarySettings.from_env()
S3 = boto3.client(
    "s3", config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
)


SSM = boto3.client("ssm", config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))


@LOGGER.inject_lambda_context(clear_state=True)
@named_errors("Summarize")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    LOGGER.append_keys(**logs.invocation_keys(event))  # run_id on every record
    return summarize(
        event,
        settings=SETTINGS,
        s3=S3,
        ssm=SSM,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
