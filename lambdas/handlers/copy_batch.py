"""CopyBatch Lambda: parse the event, fetch the cached TEA credentials, call the copy engine. No logic here."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import ConfigurationError, TransientCopyError
from lambdas.contracts.models import CopyBatchEvent, TeaCredentials
from lambdas.contracts.settings import CopySettings
from lambdas.copying import crt
from lambdas.copying.clients import s3_config, settle_heap
from lambdas.copying.engine import copy_batch
from lambdas.credentials.cache import CredentialCache
from lambdas.handlers.boundary import named_errors
from lambdas.observability import logs
from lambdas.observability.metrics import SERVICE_COPY, for_lambda, observed, record_copy_result

LOGGER = logs.function_logger(logs.COPY_BATCH)  # level from the function's configuration; see logs.py
SETTINGS = CopySettings.from_env()
_POOL = SETTINGS.object_concurrency + 2 * SETTINGS.inflight_parts + 4  # objects in flight, parts of two objects


# One client for the destination and the staging bucket (both written with the Lambda's role).
S3 = boto3.client("s3", config=s3_config(_POOL))
# Streamed PutObjects (lambdas/copying/objects.py): bodies read while sent, so no checksum of botocore's own.
STREAM_S3 = boto3.client("s3", config=s3_config(SETTINGS.object_concurrency + 2, streamed_puts=True))
# In the Lambda runtime (never in local runs or tests, whose S3 is moto in this process), small objects'
# GETs and PutObjects go through the AWS CRT's native S3 client (lambdas/copying/crt.py; make bench).
NATIVE = crt.available() and "AWS_LAMBDA_RUNTIME_API" in os.environ
_CRT_CONNECTIONS = 2 * SETTINGS.object_concurrency
DEST_S3: Any = (
    crt.CrtS3(S3, region=S3.meta.region_name, credentials=None, max_connections=_CRT_CONNECTIONS) if NATIVE else S3
)
SECRETS = boto3.client("secretsmanager")
_CACHES: dict[str, CredentialCache] = {}  # TEA endpoint name -> its credentials cache
_SOURCE_CLIENTS: dict[tuple[str, str], Any] = {}  # (endpoint, version) -> S3 client signed with those credentials


def _source_client(endpoint: str, version: str) -> tuple[Any, TeaCredentials]:
    cache = _CACHES.get(endpoint)
    if cache is None:
        try:
            cache = _CACHES[endpoint] = CredentialCache(SECRETS, SETTINGS.cache_secret_id(endpoint))
        except KeyError:
            raise ConfigurationError(f"TEA endpoint {endpoint!r} is not configured for this function") from None
    try:
        credentials = cache.get(version)  # CredentialsExpired when the version is gone
    except (ClientError, BotoCoreError) as exc:  # throttled / unreachable Secrets Manager: retry the batch
        raise TransientCopyError(f"could not read the credentials cache ({type(exc).__name__})") from exc
    client = _SOURCE_CLIENTS.get((endpoint, version))
    if client is None:
        for key in [k for k in _SOURCE_CLIENTS if k[0] == endpoint]:
            del _SOURCE_CLIENTS[key]  # this endpoint's older versions are expired or about to be
        client = boto3.client(
            "s3",
            region_name=SETTINGS.source_region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=s3_config(SETTINGS.object_concurrency + 2),
        )
        if NATIVE:
            client = crt.CrtS3(
                client,
                region=SETTINGS.source_region,
                credentials=(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
                max_connections=_CRT_CONNECTIONS,
            )
        _SOURCE_CLIENTS[(endpoint, version)] = client
    return client, credentials


@LOGGER.inject_lambda_context(clear_state=True)
@named_errors("CopyBatch")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    LOGGER.append_keys(**logs.invocation_keys(event))  # run_id, batch_id, endpoint on every record
    with observed(for_lambda(SERVICE_COPY)) as metrics:
        request = CopyBatchEvent.from_dict(event)
        source_s3, credentials = _source_client(request.batch.endpoint, request.credentials.version)
        result = copy_batch(
            request,
            settings=SETTINGS,
            source_s3=source_s3,
            dest_s3=DEST_S3,
            staging_s3=S3,
            dest_stream_s3=STREAM_S3,
            credentials=credentials,
            clock=lambda: datetime.now(UTC),
            remaining_ms=context.get_remaining_time_in_millis,
        )
        record_copy_result(metrics, result)
        return result


settle_heap()  # the cold start's long-lived objects out of the collector's scans (lambdas/copying/clients.py)
