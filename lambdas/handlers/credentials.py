"""Credentials Lambda (FetchCredentials / RefreshCredentials): wiring only; the logic is lambdas.credentials.refresh.

Event: ``{"action": "fetch" | "refresh", "run_id"?: str, "used_version"?: str}`` (``used_version``
only with ``refresh``). Returns only ``{"version", "expiration"}``: the credentials stay in the cache
secret. Errors are the named exceptions of lambdas.contracts.errors (the state machine routes on their names).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from lambdas.contracts.settings import CredentialSettings
from lambdas.credentials.refresh import CredentialDeps, handle_credentials_request
from lambdas.handlers.boundary import named_errors
from lambdas.observability import logs
from lambdas.observability.metrics import SERVICE_CREDENTIALS, for_lambda, observed

LOGGER = logs.function_logger(logs.CREDENTIALS)  # level from the function's configuration; see logs.py

_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard", "max_attempts": 5})
# Leave this much of the invocation for storing the result and returning, when waiting on a refresher.
_RETURN_RESERVE_SECONDS = 5.0

_deps: CredentialDeps | None = None


def default_deps() -> CredentialDeps:
    """Settings and clients, built once per container (on the first invocation, so imports stay cheap)."""
    global _deps
    if _deps is None:
        settings = CredentialSettings.from_env()
        session = boto3.session.Session()
        _deps = CredentialDeps(
            settings=settings,
            secrets=session.client("secretsmanager", config=_CLIENT_CONFIG),
            dynamodb=session.client("dynamodb", config=_CLIENT_CONFIG),
            s3=session.client("s3", config=_CLIENT_CONFIG),
        )
    return _deps


@LOGGER.inject_lambda_context(clear_state=True)
@named_errors("Credentials")
def lambda_handler(event: Any, context: Any) -> dict[str, str]:
    LOGGER.append_keys(**logs.invocation_keys(event))  # run_id, action, endpoint on every record
    deps = default_deps()
    wait_seconds = deps.wait_seconds
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        budget = remaining_ms() / 1000.0 - _RETURN_RESERVE_SECONDS
        wait_seconds = max(0.0, min(wait_seconds, budget))
    with observed(for_lambda(SERVICE_CREDENTIALS)) as metrics:
        return handle_credentials_request(event, deps, wait_seconds=wait_seconds, metrics=metrics)
