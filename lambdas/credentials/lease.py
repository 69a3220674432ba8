"""The refresh lease: a DynamoDB conditional put with a TTL, so one worker calls TEA at a time."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.s3.codes import error_code

logger = logging.getLogger(__name__)

# The stack initialises the cache secret with a placeholder (``{"placeholder": true, "nonce": ...}``).
# Any value that is not a credentials document means "no credentials yet", so its form is not load-bearing.
# DynamoDB lease table: partition key (string) and the expiry attribute (epoch seconds, usable as TTL).
LEASE_KEY_ATTRIBUTE = "lease_id"
LEASE_EXPIRY_ATTRIBUTE = "expires_at"
DEFAULT_LEASE_TTL_SECONDS = 60


class RefreshLease:
    """A DynamoDB lease: at most one refresher calls TEA at a time; an abandoned lease expires.

    Item: ``{lease_id: S, owner: S, expires_at: N (epoch seconds)}``. After a failed ``acquire``,
    ``holder_expires_at`` tells when the current holder's lease runs out (None if unknown).
    """

    def __init__(self, dynamodb_client: Any, table_name: str, lease_id: str) -> None:
        self._client = dynamodb_client
        self.table_name = table_name
        self.lease_id = lease_id
        self.holder_expires_at: float | None = None

    def __repr__(self) -> str:
        return f"RefreshLease(table_name={self.table_name!r}, lease_id={self.lease_id!r})"

    def acquire(self, owner: str, ttl_seconds: int, now: float) -> bool:
        expires_at = now + ttl_seconds
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    LEASE_KEY_ATTRIBUTE: {"S": self.lease_id},
                    "owner": {"S": owner},
                    LEASE_EXPIRY_ATTRIBUTE: {"N": f"{expires_at:.3f}"},
                },
                ConditionExpression="attribute_not_exists(#key) OR #exp < :now",
                ExpressionAttributeNames={"#key": LEASE_KEY_ATTRIBUTE, "#exp": LEASE_EXPIRY_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            held = exc.response.get("Item", {}).get(LEASE_EXPIRY_ATTRIBUTE, {}).get("N")
            try:
                self.holder_expires_at = float(held) if held is not None else None
            except ValueError:
                self.holder_expires_at = None
            return False
        self.holder_expires_at = None
        return True

    def release(self, owner: str) -> None:
        """Delete the lease if ``owner`` still holds it (it may have expired and been taken over)."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={LEASE_KEY_ATTRIBUTE: {"S": self.lease_id}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                logger.warning(
                    "refresh lease no longer held by this caller when released", extra={"lease_id": self.lease_id}
                )
            else:
                # Never mask the caller's own outcome (release runs in a finally); the lease expires anyway.
                logger.warning(
                    "could not release the refresh lease", extra={"lease_id": self.lease_id, "error": error_code(exc)}
                )
        except BotoCoreError as exc:
            logger.warning(
                "could not release the refresh lease", extra={"lease_id": self.lease_id, "error": type(exc).__name__}
            )
