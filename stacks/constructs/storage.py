"""Stateful resources: the staging bucket, the two secrets and the refresh-lease table (their logical ids, nag acks)."""

from __future__ import annotations

from aws_cdk import Acknowledgment as Ack
from aws_cdk import Duration, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from lambdas.contracts.staging import RUNS_PREFIX
from stacks.config import TeacopyConfig
from stacks.logical_ids import LOGICAL_IDS, endpoint_cache_logical_id, override_logical_id

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
        self.staging_bucket = self._staging_bucket(Duration.days(config.staging_retention_days))
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
        self.credentials_cache = self._credentials_cache(
            "CredentialsCacheSecret",
            "teacopy TEA credentials cache, written by the credentials Lambda (one version per refresh). Do not edit.",
        )
        # One cache per additional TEA endpoint (several DAACs in one job): each refreshed on its own.
        self.endpoint_caches: dict[str, secretsmanager.Secret] = {
            endpoint.name: self._credentials_cache(
                f"CredentialsCacheSecret-{endpoint.name}",
                f"teacopy TEA credentials cache for {endpoint.endpoint}, written by the credentials Lambda. "
                "Do not edit.",
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
        for key, construct in (
            ("staging_bucket", self.staging_bucket),
            ("token_secret", self.token_secret),
            ("credentials_cache", self.credentials_cache),
            ("lease_table", self.lease_table),
        ):
            override_logical_id(construct, LOGICAL_IDS[key])
        for name, cache in self.endpoint_caches.items():
            override_logical_id(cache, endpoint_cache_logical_id(name))
        self._acknowledge_findings()

    def _staging_bucket(self, retention: Duration) -> s3.Bucket:
        return s3.Bucket(
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

    def _credentials_cache(self, construct_id: str, description: str) -> secretsmanager.Secret:
        """A TEA credentials cache: a placeholder JSON value until the credentials Lambda writes a version."""
        return secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"placeholder": true}',  # noqa: S106 - a JSON template, not a password
                generate_string_key="nonce",
                exclude_punctuation=True,
                password_length=16,
            ),
        )

    def _acknowledge_findings(self) -> None:
        Validations.of(self.staging_bucket).acknowledge(
            Ack(
                id="AwsSolutions-S1",
                reason="Staging bucket holds only transient manifests/results (expired by lifecycle); every "
                "access is made by this stack's roles and recorded by CloudTrail; no separate access-log bucket.",
            )
        )
        Validations.of(self.token_secret).acknowledge(
            Ack(
                id="AwsSolutions-SMG4",
                reason="EDL tokens cannot be rotated by a Lambda: renewal needs the user's Earthdata password, "
                "so the user replaces the token (60-day lifetime) with put-secret-value.",
            )
        )
        for cache in (self.credentials_cache, *self.endpoint_caches.values()):
            Validations.of(cache).acknowledge(
                Ack(
                    id="AwsSolutions-SMG4",
                    reason="Cache of 1-hour TEA credentials: the credentials Lambda writes a new version on every "
                    "refresh, which is more frequent than any rotation schedule.",
                )
            )
