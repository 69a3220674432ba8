"""Environment variable names: defined once, used by the CDK stack and by the Lambdas."""

from __future__ import annotations

STAGING_BUCKET = "TEACOPY_STAGING_BUCKET"
TOKEN_SECRET_ID = "TEACOPY_TOKEN_SECRET_ID"  # noqa: S105 — a variable name, not a secret; EDL bearer token (or asf-urs cookie), read-only for us
CREDENTIALS_SECRET_ID = "TEACOPY_CREDENTIALS_SECRET_ID"  # noqa: S105 — a name; the TEA credentials cache
LOCK_TABLE = "TEACOPY_LOCK_TABLE"  # DynamoDB table holding the refresh lease
TEA_ENDPOINT = "TEACOPY_TEA_ENDPOINT"  # e.g. https://archive.podaac.earthdata.nasa.gov
APP_NAME = "TEACOPY_APP_NAME"
SOURCE_REGION = "TEACOPY_SOURCE_REGION"
SAFETY_MARGIN_SECONDS = "TEACOPY_SAFETY_MARGIN_SECONDS"
TEA_TIMEOUT_SECONDS = "TEACOPY_TEA_TIMEOUT_SECONDS"
DESTINATIONS = "TEACOPY_DESTINATIONS"  # JSON list of {"bucket": ..., "prefix": ...}
MANIFEST_BUCKETS = "TEACOPY_MANIFEST_BUCKETS"  # JSON list of bucket names the Plan may read
BATCH_MAX_OBJECTS = "TEACOPY_BATCH_MAX_OBJECTS"
BATCH_MAX_BYTES = "TEACOPY_BATCH_MAX_BYTES"
MAX_INLINE_KEYS = "TEACOPY_MAX_INLINE_KEYS"
MAX_FAILED_PERCENT = "TEACOPY_MAX_FAILED_PERCENT"
PART_SIZE_BYTES = "TEACOPY_PART_SIZE_BYTES"
MULTIPART_THRESHOLD_BYTES = "TEACOPY_MULTIPART_THRESHOLD_BYTES"
STREAM_MIN_BYTES = "TEACOPY_STREAM_MIN_BYTES"  # objects this size and up (below the threshold) stream GET -> PUT
INFLIGHT_PARTS = "TEACOPY_INFLIGHT_PARTS"
OBJECT_CONCURRENCY = "TEACOPY_OBJECT_CONCURRENCY"
DEADLINE_RESERVE_SECONDS = "TEACOPY_DEADLINE_RESERVE_SECONDS"
COPY_MEMORY_MB = "TEACOPY_COPY_MEMORY_MB"  # CopyBatch's memory: Summarize prices the run's Lambda time with it
# SSM parameter path prefix where incremental schedules keep their last successful run time.
SCHEDULE_STATE_PREFIX = "TEACOPY_SCHEDULE_STATE_PREFIX"
CREDENTIALS_FUNCTION = "TEACOPY_CREDENTIALS_FUNCTION"  # Plan invokes it for TEA credentials (prefix listings)
CMR_URL = "TEACOPY_CMR_URL"  # e.g. https://cmr.earthdata.nasa.gov (https; http only to a loopback address)
CMR_PAGE_SIZE = "TEACOPY_CMR_PAGE_SIZE"  # granules per CMR page, 1..2000
CMR_MAX_GRANULES = "TEACOPY_CMR_MAX_GRANULES"  # a CMR source matching more granules is refused
# More TEA endpoints than TEA_ENDPOINT (named "default"): JSON {name: {"url": ..., "cache": <secret id>}}
# Plan and Summarize work this many seconds per invocation, then checkpoint and continue in another one.
PLAN_BUDGET_SECONDS = "TEACOPY_PLAN_BUDGET_SECONDS"
SUMMARY_BUDGET_SECONDS = "TEACOPY_SUMMARY_BUDGET_SECONDS"
TEA_ENDPOINTS = "TEACOPY_TEA_ENDPOINTS"
BUCKET_ENDPOINTS = "TEACOPY_BUCKET_ENDPOINTS"  # JSON {source bucket: endpoint name}; others use "default"
# Set by Lambda itself (the function's configured memory, MB): CopyBatch sizes its buffers from it.
LAMBDA_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# Local engine only: where S3 / Secrets Manager / DynamoDB live (unset on AWS).
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
