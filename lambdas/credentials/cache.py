"""The credentials cache: one Secrets Manager secret, one version per TEA credential set."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from lambdas.contracts.errors import (
    ConfigurationError,
    CredentialsExpired,
)
from lambdas.contracts.models import (
    CredentialsRef,
    TeaCredentials,
    format_time,
)
from lambdas.s3.codes import error_code

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CredentialCache:
    """TEA credentials kept in a Secrets Manager secret; one version per credential set.

    Parsed versions are memoised per instance (i.e. per warm Lambda container when the instance is
    module-level): a version's content never changes, so a hit needs no API call.
    """

    MEMO_SIZE = 16

    def __init__(self, secrets_client: Any, secret_id: str) -> None:
        self._client = secrets_client
        self.secret_id = secret_id
        self._memo: OrderedDict[str, TeaCredentials] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CredentialCache(secret_id={self.secret_id!r})"

    def current(self) -> tuple[CredentialsRef, TeaCredentials] | None:
        """The AWSCURRENT credentials, or None while the secret holds the placeholder/anything unparsable."""
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                # The secret exists (the stack creates it) but has no AWSCURRENT value yet, or is missing.
                logger.warning(
                    "credentials cache has no current value", extra={"secret_id": self.secret_id, "error": code}
                )
                return None
            if code in ("AccessDeniedException", "DecryptionFailure"):
                raise ConfigurationError(
                    f"cannot read the credentials cache secret {self.secret_id} ({code}): check the role/KMS policy"
                ) from None
            raise
        version = response["VersionId"]
        creds = self._parse(version, response.get("SecretString"))
        if creds is None:
            return None
        return CredentialsRef(version=version, expiration=format_time(creds.expiration)), creds

    def get(self, version: str) -> TeaCredentials:
        """The credentials stored as ``version``. CredentialsExpired if it is gone or unparsable."""
        with self._lock:
            hit = self._memo.get(version)
            if hit is not None:
                self._memo.move_to_end(version)
                return hit
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id, VersionId=version)
        except ParamValidationError:
            raise CredentialsExpired(f"credentials version {version!r} is not a valid cache version") from None
        except ClientError as exc:
            code = error_code(exc)
            if code in ("ResourceNotFoundException", "InvalidParameterException", "ValidationException"):
                raise CredentialsExpired(
                    f"credentials version {version} is no longer in the cache {self.secret_id}; refresh"
                ) from None
            if code in ("AccessDeniedException", "DecryptionFailure"):
                raise ConfigurationError(
                    f"cannot read the credentials cache secret {self.secret_id} ({code}): check the role/KMS policy"
                ) from None
            raise
        creds = self._parse(version, response.get("SecretString"))
        if creds is None:
            raise CredentialsExpired(f"credentials version {version} does not hold credentials; refresh")
        return creds

    def put(self, creds: TeaCredentials) -> CredentialsRef:
        """Store a new version; it becomes AWSCURRENT. Returns its reference."""
        try:
            response = self._client.put_secret_value(
                SecretId=self.secret_id, SecretString=json.dumps(creds.to_secret_payload())
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in ("ResourceNotFoundException", "AccessDeniedException"):
                raise ConfigurationError(
                    f"cannot write the credentials cache secret {self.secret_id} ({code}): check the stack"
                ) from None
            raise
        version = response["VersionId"]
        self._remember(version, creds)
        return CredentialsRef(version=version, expiration=format_time(creds.expiration))

    def _parse(self, version: str, secret_string: str | None) -> TeaCredentials | None:
        with self._lock:
            hit = self._memo.get(version)
        if hit is not None:
            return hit
        if not secret_string:
            return None
        try:
            creds = TeaCredentials.from_tea_json(json.loads(secret_string))
        except (json.JSONDecodeError, ValueError):
            logger.info(
                "credentials cache version holds no credentials (placeholder?)",
                extra={"secret_id": self.secret_id, "version": version},
            )
            return None
        self._remember(version, creds)
        return creds

    def _remember(self, version: str, creds: TeaCredentials) -> None:
        with self._lock:
            self._memo[version] = creds
            self._memo.move_to_end(version)
            while len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)
