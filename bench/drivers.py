"""The copying processes. Each runs in its own subprocess so its peak RSS is its own.

``python -m bench.drivers teacopy|naive SPEC_JSON OUT_JSON``. The spec names the endpoint, the buckets
and the objects; the driver writes what it measured (copy wall clock, counts, errors) to OUT_JSON.
The parent reads the process's peak RSS from the kernel (``os.wait4``), the driver reports its own
``ru_maxrss`` as well.

- ``teacopy``: batches the objects as the Plan does (``lambdas.planning.staged.Batcher`` with the
  Plan's default limits) and calls ``lambdas.copying.engine.copy_batch`` for one batch at a time, as one
  map child's Lambda would: a fresh time budget per invocation, the same event again while the
  engine says ``done: false``, a bounded retry on ``CredentialsExpired``/``TransientCopyError``
  (what the state machine does). Clients are built like ``lambdas/handlers/copy_batch.py`` does.
- ``naive``: the loop of the TEA documentation, sequential, default boto3 clients::

      body = s3src.get_object(Bucket=src, Key=key)["Body"]
      s3dst.upload_fileobj(body, dst, key)
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Keys the source client signs with: shaped like TEA's temporary credentials (never checked by moto).
TEA_LIKE = {
    "aws_access_key_id": "ASIABENCHTEA0000000",
    "aws_secret_access_key": "bench-tea-secret",
    "aws_session_token": "bench-tea-session-token",
}
ROLE_LIKE = {"aws_access_key_id": "AKIABENCHROLE000000", "aws_secret_access_key": "bench-role-secret"}
MAX_ATTEMPTS_PER_BATCH = 8  # bound on invocations of one batch (continuations + retries)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_teacopy(spec: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from lambdas.contracts import env_names as env
    from lambdas.contracts.errors import CredentialsExpired, TransientCopyError
    from lambdas.contracts.models import (
        CopyBatchEvent,
        CopyOptions,
        CredentialsRef,
        Destination,
        ObjectSpec,
        TeaCredentials,
    )
    from lambdas.contracts.settings import DEFAULT_COPY_MEMORY_MB, CopySettings, PlanSettings
    from lambdas.copying import crt
    from lambdas.copying.clients import s3_config, settle_heap
    from lambdas.copying.engine import copy_batch
    from lambdas.planning.staged import batches_in_memory

    # Lambda logs at INFO (handler.py); botocore never below WARNING (it would log the session token).
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)

    environ = {
        env.STAGING_BUCKET: spec["staging_bucket"],
        env.CREDENTIALS_SECRET_ID: "bench/unused",
        env.SOURCE_REGION: spec["region"],
        env.LAMBDA_MEMORY_MB: str(spec.get("lambda_memory_mb", DEFAULT_COPY_MEMORY_MB)),  # as Lambda sets it
        **{getattr(env, name): str(value) for name, value in spec.get("settings", {}).items()},
    }
    settings = CopySettings.from_env(environ)
    plan = PlanSettings.from_env({env.STAGING_BUCKET: spec["staging_bucket"]})
    objects = [
        ObjectSpec(key=o["key"], size=o["size"] if spec.get("sizes_known", True) else None) for o in spec["objects"]
    ]
    batches = list(batches_in_memory(objects, spec["source_bucket"], plan.batch_max_objects, plan.batch_max_bytes))
    mine = batches[spec.get("worker_index", 0) :: spec.get("workers", 1)]

    endpoint, region = spec["endpoint"], spec["region"]
    role_pool = settings.object_concurrency + 2 * settings.inflight_parts + 4  # as the handler
    dest_s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=s3_config(role_pool), **ROLE_LIKE)
    staging_s3 = dest_s3  # the handler uses one client for destination and staging
    stream_config = s3_config(settings.object_concurrency + 2, streamed_puts=True)  # as the handler
    dest_stream_s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=stream_config, **ROLE_LIKE)
    source_s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, config=s3_config(settings.object_concurrency + 2), **TEA_LIKE
    )
    if spec.get("crt", True) and crt.available():  # as lambdas/handlers/copy_batch.py
        connections = 2 * settings.object_concurrency
        source_s3 = crt.CrtS3(
            source_s3,
            region=region,
            credentials=(
                TEA_LIKE["aws_access_key_id"],
                TEA_LIKE["aws_secret_access_key"],
                TEA_LIKE["aws_session_token"],
            ),
            endpoint_url=endpoint,
            max_connections=connections,
        )
        dest_s3 = crt.CrtS3(
            dest_s3,
            region=region,
            credentials=(ROLE_LIKE["aws_access_key_id"], ROLE_LIKE["aws_secret_access_key"], None),
            endpoint_url=endpoint,
            max_connections=connections,
        )
    settle_heap()  # as lambdas/handlers/copy_batch.py after its cold start
    now = datetime.now(UTC)
    credentials = TeaCredentials(
        access_key_id=TEA_LIKE["aws_access_key_id"],
        secret_access_key=TEA_LIKE["aws_secret_access_key"],
        session_token=TEA_LIKE["aws_session_token"],
        expiration=now + timedelta(hours=1),
    )
    ref = CredentialsRef(version="bench-v1", expiration=credentials.expiration.isoformat(timespec="seconds"))
    destination = Destination(bucket=spec["dest_bucket"], prefix=spec.get("dest_prefix", ""))
    timeout_ms = int(spec.get("lambda_timeout_s", 900) * 1000)

    totals = {"copied": 0, "skipped": 0, "failed": 0, "bytes": 0}
    invocations, retries = 0, 0
    errors: list[str] = []
    started = time.monotonic()
    for batch in mine:
        event = CopyBatchEvent(
            run_id=spec["run_id"], batch=batch, destination=destination, credentials=ref, options=CopyOptions()
        )
        for _attempt in range(MAX_ATTEMPTS_PER_BATCH):
            invocations += 1
            invoked = time.monotonic()
            try:
                result = copy_batch(
                    event,
                    settings=settings,
                    source_s3=source_s3,
                    dest_s3=dest_s3,
                    staging_s3=staging_s3,
                    dest_stream_s3=dest_stream_s3,
                    credentials=credentials,
                    clock=lambda: datetime.now(UTC),
                    remaining_ms=_budget(invoked, timeout_ms),
                )
            except (CredentialsExpired, TransientCopyError, ClientError, BotoCoreError) as exc:
                retries += 1
                errors.append(f"{batch.batch_id}: {type(exc).__name__}: {exc}"[:300])
                continue
            for name in totals:
                totals[name] += int(result.get(name, 0))
            if result.get("done", True):
                break
        else:
            errors.append(f"{batch.batch_id}: not done after {MAX_ATTEMPTS_PER_BATCH} invocations")
    copy_seconds = time.monotonic() - started
    return {
        "copy_seconds": copy_seconds,
        "batches": len(mine),
        "invocations": invocations,
        "retries": retries,
        "errors": errors,
        "settings": {
            "part_size_bytes": settings.part_size_bytes,
            "multipart_threshold_bytes": settings.multipart_threshold_bytes,
            "inflight_parts": settings.inflight_parts,
            "object_concurrency": settings.object_concurrency,
            "buffer_budget_bytes": settings.buffer_budget_bytes,
            "memory_mb": settings.memory_mb,
            "stream_min_bytes": settings.stream_min_bytes,
            "batch_max_objects": plan.batch_max_objects,
            "batch_max_bytes": plan.batch_max_bytes,
        },
        **totals,
    }


def _budget(invoked: float, timeout_ms: int) -> Callable[[], int]:
    """``context.get_remaining_time_in_millis`` of an invocation that started at ``invoked``."""

    def remaining_ms() -> int:
        return max(0, timeout_ms - int((time.monotonic() - invoked) * 1000))

    return remaining_ms


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint, region = spec["endpoint"], spec["region"]
    s3src = boto3.client("s3", endpoint_url=endpoint, region_name=region, **TEA_LIKE)
    s3dst = boto3.client("s3", endpoint_url=endpoint, region_name=region, **ROLE_LIKE)
    src, dst, prefix = spec["source_bucket"], spec["dest_bucket"], spec.get("dest_prefix", "")
    errors: list[str] = []
    copied = 0
    started = time.monotonic()
    for obj in spec["objects"]:
        key = obj["key"]
        try:
            body = s3src.get_object(Bucket=src, Key=key)["Body"]
            s3dst.upload_fileobj(body, dst, prefix + key)
            copied += 1
        except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:  # record it, go on
            errors.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
    return {"copy_seconds": time.monotonic() - started, "copied": copied, "errors": errors}


DRIVERS = {"teacopy": run_teacopy, "naive": run_naive}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in DRIVERS:
        print(f"usage: python -m bench.drivers {{{'|'.join(DRIVERS)}}} SPEC_JSON OUT_JSON", file=sys.stderr)
        return 2
    tool, spec_path, out_path = args
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    baseline = peak_rss_mb()
    result = DRIVERS[tool](spec)
    result["driver_peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["driver_start_rss_mb"] = round(baseline, 1)
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
