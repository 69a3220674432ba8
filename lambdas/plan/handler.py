"""Plan Lambda: parse the event, call the planning logic. No logic here."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config
from shared.planning import plan_job
from shared.settings import PlanSettings

logging.getLogger().setLevel(logging.INFO)
SETTINGS = PlanSettings.from_env()
S3 = boto3.client(
    "s3", config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return plan_job(event.get("input"), event.get("run_id", ""), settings=SETTINGS, s3=S3)
