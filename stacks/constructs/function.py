"""One teacopy Lambda function with its own role, log group and least-privilege grant helpers."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Acknowledgment as Ack
from aws_cdk import Aws, Duration, RemovalPolicy, Size, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.logical_ids import override_logical_id

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
# The function code asset: a copy of the ``lambdas`` package (its .py files) under a folder of its own, so
# that inside Lambda the package resolves under the same name as everywhere else (``lambdas.…``).
ASSET_ROOT = REPO_ROOT / "build" / "lambda-asset"
# Third-party wheels for the Lambdas (arm64, python3.12), installed by `make setup` from requirements-layer.txt.
LAYER_DIR = REPO_ROOT / "build" / "lambda-layer"
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache"]

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention_days(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention that keeps logs at least ``days`` days."""
    for allowed in sorted(_RETENTION):
        if allowed >= days:
            return _RETENTION[allowed]
    return logs.RetentionDays.TEN_YEARS


def s3_object_arn(bucket: str, prefix: str = "") -> str:
    """ARN of the objects of a bucket we do not own in this stack, under ``prefix`` (``*`` appended)."""
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"


def s3_bucket_arn(bucket: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}"


def lambda_code_dir() -> Path:
    """A folder holding ``lambdas/`` (Python sources only): the asset every teacopy function is built from.

    Named by the hash of its content and written atomically (a temporary folder, then a rename), so
    concurrent synths (pytest workers) never see a half-written copy and a stale copy is never used.
    No Docker, no pip: the third-party code is in the layer.
    """
    sources = sorted(p for p in LAMBDAS_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    target = ASSET_ROOT / digest.hexdigest()[:16]
    if not target.is_dir():
        ASSET_ROOT.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=ASSET_ROOT))
        for path in sources:
            copy = staging / path.relative_to(REPO_ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        try:
            staging.rename(target)
        except OSError:  # another process renamed the same content first
            shutil.rmtree(staging, ignore_errors=True)
    stale = time.time() - 3600  # copies of older sources, unused for an hour (a concurrent synth may hold a newer one)
    for other in ASSET_ROOT.iterdir():
        if other != target and other.stat().st_mtime < stale:
            shutil.rmtree(other, ignore_errors=True)
    return target


def dependencies_layer(scope: Construct, construct_id: str) -> lambda_.LayerVersion:
    """The layer with ``requirements-layer.txt`` (awscrt, Powertools), built by ``make setup`` (no Docker).

    Every teacopy function gets it (stacks/constructs/steps/base.py).
    """
    if not all((LAYER_DIR / "python" / package).is_dir() for package in ("awscrt", "aws_lambda_powertools")):
        raise FileNotFoundError(
            f"{LAYER_DIR} is missing or incomplete: run `make setup` (it pip-installs the arm64 wheels of "
            "requirements-layer.txt there) before synthesizing"
        )
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(str(LAYER_DIR), exclude=[*ASSET_EXCLUDES, ".installed"]),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="teacopy: awscrt (CRC64NVME checksums), aws-lambda-powertools (EMF metrics)",
    )


class TeacopyFunction(Construct):
    """A Python 3.12 arm64 Lambda built from the ``lambdas`` package, with its own role and log group.

    ``name`` is the step it runs (``Plan``: the role's description), ``logical_id`` the function's fixed
    logical id (``stacks/logical_ids.py``). The role starts with nothing but writing to its own log group
    and X-Ray; every other permission is added through the ``grant_*``/``allow_*`` helpers, each one
    action list on named resources.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        logical_id: str,
        handler: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        layers: Sequence[lambda_.ILayerVersion],
        ephemeral_storage_mb: int | None = None,  # /tmp (Lambda's default: 512 MB)
        environment: Mapping[str, str],
        log_retention_days: int,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"teacopy {name} Lambda",
        )
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=retention_days(log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            code=lambda_.Code.from_asset(str(lambda_code_dir()), exclude=ASSET_EXCLUDES),
            handler=handler,
            layers=list(layers),
            description=description,
            memory_size=memory_mb,
            timeout=timeout,
            ephemeral_storage_size=None if ephemeral_storage_mb is None else Size.mebibytes(ephemeral_storage_mb),
            environment=dict(environment),
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.INFO,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency or None,  # 0: no reservation
        )
        override_logical_id(self.function, logical_id)
        # Only CreateLogStream/PutLogEvents on this function's own log group (no AWSLambdaBasicExecutionRole).
        self.log_group.grant_write(self.role)
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        Validations.of(self.function).acknowledge(
            Ack(
                id="AwsSolutions-L1",
                reason="Pinned to python3.12 on purpose: the handlers (stdlib, the runtime's boto3, the layer's "
                "python3.12 wheels) are tested locally on CPython 3.11 with no newer-only features; moving "
                "runtimes is a deliberate change (and a rebuild of the layer).",
            )
        )
        Validations.of(self.role).acknowledge(
            Ack(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Active X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords do not support "
                "resource-level permissions.",
            )
        )

    # --- grant helpers: explicit actions on explicit resources, never wildcard actions ---------------

    def allow(
        self,
        actions: Sequence[str],
        resources: Sequence[str],
        conditions: Mapping[str, Mapping[str, object]] | None = None,
        sid: str | None = None,
    ) -> None:
        for action in actions:
            if "*" in action:
                raise ValueError(f"wildcard action {action!r} is not allowed")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid=sid,
                actions=list(actions),
                resources=list(resources),
                conditions=dict(conditions) if conditions else None,
            )
        )

    def acknowledge_object_wildcards(self, finding_resources: Sequence[str], reason: str) -> None:
        """Acknowledge cdk-nag IAM5 for exactly these prefix-scoped object ARNs (as cdk-nag prints them)."""
        Validations.of(self.role).acknowledge(
            *(Ack(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason) for resource in finding_resources)
        )

    def grant_secret_read(self, secret: secretsmanager.ISecret) -> None:
        self.allow(["secretsmanager:GetSecretValue"], [secret.secret_arn])

    def grant_secret_versions(self, secret: secretsmanager.ISecret) -> None:
        """Read, write new versions of, and list the versions of one secret (the credentials cache)."""
        self.allow(
            [
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:ListSecretVersionIds",
            ],
            [secret.secret_arn],
        )

    def grant_lease_table(self, table: dynamodb.ITable) -> None:
        self.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"],
            [table.table_arn],
        )

    def grant_objects(self, actions: Sequence[str], bucket: s3.IBucket, prefix: str) -> None:
        """``actions`` on the objects of a bucket of this stack under ``prefix``."""
        self.allow(actions, [bucket.arn_for_objects(f"{prefix}*")])

    def grant_list_prefix(self, bucket: s3.IBucket, prefix: str) -> None:
        """s3:ListBucket on a bucket of this stack, only for keys under ``prefix``."""
        self.allow(["s3:ListBucket"], [bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{prefix}*"]}})

    def grant_destination(self, bucket: str, prefix: str) -> None:
        """Write (multipart included) and read back objects under ``bucket/prefix`` of a bucket we do not own."""
        self.allow(
            ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            [s3_object_arn(bucket, prefix)],
        )
        # s3:ListBucket without an s3:prefix condition: S3 answers a HEAD of a missing key with 404 only to a
        # caller allowed to list the bucket, and a HEAD carries no s3:prefix, so a prefix-conditioned grant makes
        # every missing key a 403 (what the copy would have to take for "access denied"). Listing reveals key
        # names only, of a bucket the operator configured as a destination.
        self.allow(["s3:ListBucket"], [s3_bucket_arn(bucket)])
        self.allow(["s3:ListBucketMultipartUploads"], [s3_bucket_arn(bucket)])
