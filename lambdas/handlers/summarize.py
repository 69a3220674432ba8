"""Summarize Lambda: parse the event, call the summary logic. No logic here."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config

from lambdas.contracts.settings import SummarySettings
from lambdas.reporting.summary import summarize

logging.getLogger().setLevel(logging.INFO)
SETTINGS = SummarySettings.from_env()
S3 = boto3.client(
    "s3", config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
)


SSM = boto3.client("ssm", config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return summarize(event, settings=SETTINGS, s3=S3, ssm=SSM)
