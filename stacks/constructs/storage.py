"""Stateful resources: the staging bucket, the two secrets and the refresh-lease table."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from lambdas.contracts.staging import RUNS_PREFIX

from ..config import TeacopyConfig

MAP_RESULTS_PREFIX = "map-results"  # the Distributed Map's ResultWriter writes under map-results/
LEASE_PARTITION_KEY = "lease_id"
LEASE_TTL_ATTRIBUTE = "expires_at"


class Storage(Construct):
    """The staging bucket, the EDL token secret, the TEA credentials cache and the refresh-lease table.

    Why the TEA credentials cache is a Secrets Manager secret (and not an SSM parameter):

    - Throughput: every CopyBatch invocation reads the cache. GetSecretValue allows 10,000 requests
      per second per account and Region; SSM GetParameter allows 40 per second on the standard tier
      (higher throughput is a paid account-wide setting). With ``max_concurrency`` children
      starting together, 40 TPS would throttle the very first wave.
    - Versions: each refresh is a PutSecretValue creating a new VersionId. The state machine carries
      only ``{"version", "expiration"}``; a worker reads exactly the version it was handed and a
      refresh can tell "someone already refreshed past my version" apart from "my version expired"
      (``ListSecretVersionIds``/``DescribeSecret``). Credentials never travel through the execution
      history or the logs.
    - Encryption at rest with KMS (the AWS managed ``aws/secretsmanager`` key) and CloudTrail audit of
      every read, without extra configuration.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: TeacopyConfig) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.days(config.staging_retention_days)

        self.staging_bucket = s3.Bucket(
            self,
            "StagingBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(id="expire-runs", prefix=RUNS_PREFIX, expiration=retention),
                s3.LifecycleRule(id="expire-map-results", prefix=f"{MAP_RESULTS_PREFIX}/", expiration=retention),
            ],
        )

        self.token_secret = secretsmanager.Secret(
            self,
            "EdlTokenSecret",
            secret_name=config.token_secret_name,
            description=(
                "Earthdata Login bearer token used by teacopy to call TEA /s3credentials. The deployed value is a "
                "placeholder: store your EDL token with `aws secretsmanager put-secret-value --secret-id "
                f"{config.token_secret_name} --secret-string <token>`."
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=32),
        )

        self.credentials_cache = secretsmanager.Secret(
            self,
            "CredentialsCacheSecret",
            description=(
                "teacopy TEA credentials cache, written by the credentials Lambda (one version per refresh). "
                "Do not edit."
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"placeholder": true}',  # noqa: S106 - a JSON template, not a password
                generate_string_key="nonce",
                exclude_punctuation=True,
                password_length=16,
            ),
        )

        # One cache per additional TEA endpoint (several DAACs in one job): each refreshed on its own.
        self.endpoint_caches: dict[str, secretsmanager.Secret] = {
            endpoint.name: secretsmanager.Secret(
                self,
                f"CredentialsCacheSecret-{endpoint.name}",
                description=f"teacopy TEA credentials cache for {endpoint.endpoint}, written by the credentials "
                "Lambda. Do not edit.",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template='{"placeholder": true}',  # noqa: S106 - a JSON template, not a password
                    generate_string_key="nonce",
                    exclude_punctuation=True,
                    password_length=16,
                ),
            )
            for endpoint in config.tea_endpoints
        }

        self.lease_table = dynamodb.Table(
            self,
            "LeaseTable",
            partition_key=dynamodb.Attribute(name=LEASE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=LEASE_TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def staging_objects_arn(self, prefix: str) -> str:
        """ARN of the staging objects under ``prefix`` (e.g. ``runs/``), with the trailing ``*``."""
        return self.staging_bucket.arn_for_objects(f"{prefix}*")
