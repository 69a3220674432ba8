"""Plan Lambda: parse the event, build the source-mode clients, call the planning logic. No logic here."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from lambdas.contracts.models import TeaCredentials
from lambdas.contracts.settings import PlanSettings
from lambdas.credentials.cache import CredentialCache
from lambdas.credentials.invoked import InvokedCredentials
from lambdas.earthdata.cmr import CmrClient
from lambdas.handlers.boundary import named_errors
from lambdas.lifecycle.overlap import skip_if_overlapping
from lambdas.observability import logs
from lambdas.observability.metrics import SERVICE_PLAN, for_lambda, observed
from lambdas.planning import checkpoint as checkpoints
from lambdas.planning.plan import SourceDeps, plan_job
from lambdas.reporting.schedule_state import read_last_success

LOGGER = logs.function_logger(logs.PLAN)  # level from the function's configuration; see logs.py
SETTINGS = PlanSettings.from_env()
S3 = boto3.client(
    "s3", config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
)
# The Credentials function may wait for TEA (bounded retries) and for a concurrent refresher's lease.
LAMBDA = boto3.client("lambda", config=Config(connect_timeout=5, read_timeout=150, retries={"max_attempts": 2}))
SECRETS = boto3.client("secretsmanager")
_CACHES: dict[str, CredentialCache] = {}  # TEA endpoint name -> its credentials cache


def _cache_for(endpoint: str) -> CredentialCache:
    if endpoint not in _CACHES:
        _CACHES[endpoint] = CredentialCache(SECRETS, SETTINGS.cache_secret_id(endpoint))
    return _CACHES[endpoint]


SSM = boto3.client("ssm", config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))


def _source_client(credentials: TeaCredentials) -> Any:
    return boto3.client(
        "s3",
        region_name=SETTINGS.source_region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        config=Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5}),
    )


# Step Functions: a scheduled run first checks that its schedule's previous run has ended (lifecycle/overlap.py).
SFN = boto3.client("stepfunctions", config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))


def _overlapping(event: dict[str, Any]) -> dict[str, Any] | None:
    """The skipped output when this execution's schedule still runs its previous execution, else None
    (asked on the run's first invocation only: a continuation has a planning checkpoint)."""
    run_id = str(event.get("run_id", ""))
    with observed(for_lambda(SERVICE_PLAN)) as metrics:
        return skip_if_overlapping(
            SFN,
            event.get("input"),
            event.get("execution_arn"),
            metrics,
            continuing=lambda: checkpoints.exists(S3, SETTINGS.staging_bucket, run_id),
        )


@LOGGER.inject_lambda_context(clear_state=True)
@named_errors("Plan")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    LOGGER.append_keys(**logs.invocation_keys(event))  # run_id on every record
    skipped = _overlapping(event)
    if skipped is not None:
        return skipped
    run_id = event.get("run_id", "")
    deps = SourceDeps(
        clients=(
            InvokedCredentials(
                LAMBDA, SETTINGS.credentials_function, _cache_for, _source_client, run_id, SETTINGS.endpoint_for
            )
            if SETTINGS.credentials_function
            else None
        ),
        cmr=CmrClient(SETTINGS.cmr_url, page_size=SETTINGS.cmr_page_size, max_granules=SETTINGS.cmr_max_granules),
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        schedule_state=(
            (lambda name: read_last_success(SSM, SETTINGS.schedule_state_prefix, name))
            if SETTINGS.schedule_state_prefix
            else None
        ),
    )
    return plan_job(event.get("input"), run_id, settings=SETTINGS, s3=S3, deps=deps)
