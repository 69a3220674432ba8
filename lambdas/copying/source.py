"""The source bucket, read with the TEA credentials: GetObject / HeadObject, and what their errors mean.

A source error is either the batch's business (``CredentialsExpired``: refresh; ``TransientCopyError``:
retry the batch) or this object's alone (``ObjectFailed``: recorded, the batch goes on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import CredentialsExpired, TransientCopyError
from lambdas.copying.signals import IntegrityError, ObjectFailed
from lambdas.s3.codes import (
    CHANGED_CODES,
    DENIED_CODES,
    EXPIRED_CODES,
    NOT_FOUND_CODES,
    NOT_MODIFIED_CODES,
    error_message,
    error_status,
    is_transient,
)


@dataclass(frozen=True)
class SourceBucket:
    """The batch's source bucket and the S3 client signed with the TEA credentials (GetObject only)."""

    client: Any
    bucket: str

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str, **params: Any) -> dict[str, Any] | None:
        """GetObject; None when ``IfNoneMatch`` matched (304). ``IfMatch`` failing (412): IntegrityError."""
        return self._get(self.client.get_object, key, params)

    def get_small(self, key: str, window: int, **params: Any) -> dict[str, Any] | None:
        """``get`` of an object the plan says is smaller than ``window`` bytes, read whole into memory.

        With a client that has a small-object path (``crt.CrtS3.get_small``: the CRT, at most ``window``
        bytes buffered) it is used; otherwise this is ``get``. The body reads like ``get``'s.
        """
        small = getattr(self.client, "get_small", None)
        if small is None:
            return self.get(key, **params)
        return self._get(lambda **kw: small(window=window, **kw), key, params)

    def _get(self, call: Any, key: str, params: dict[str, Any]) -> dict[str, Any] | None:
        url = self.url(key)
        try:
            response: dict[str, Any] = call(Bucket=self.bucket, Key=key, **params)
            return response
        except ClientError as exc:
            code, status = error_status(exc)
            if "IfNoneMatch" in params and (code in NOT_MODIFIED_CODES or status == 304):
                return None
            if "IfMatch" in params and (code in CHANGED_CODES or status == 412):
                raise IntegrityError(
                    f"{url} changed while being copied (its ETag is no longer {params['IfMatch']})"
                ) from exc
            raise self.error(exc, url) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"GetObject {url} failed: {type(exc).__name__}") from exc

    def head(self, key: str) -> dict[str, Any]:
        """HeadObject (dry runs: what a real run would read, without reading it)."""
        url = self.url(key)
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
            return head
        except ClientError as exc:
            raise self.error(exc, url) from exc
        except BotoCoreError as exc:
            raise TransientCopyError(f"HeadObject {url} failed: {type(exc).__name__}") from exc

    @staticmethod
    def error(exc: ClientError, url: str) -> Exception:
        """What a source error means for the batch (raise the returned exception)."""
        code, status = error_status(exc)
        if code in EXPIRED_CODES:
            return CredentialsExpired(f"S3 rejected the TEA credentials ({code}) reading {url}")
        if code in NOT_FOUND_CODES or status == 404:
            return ObjectFailed(f"source {code}: {url} does not exist")
        if code in DENIED_CODES or status == 403:
            return ObjectFailed(
                f"source {code}: {url} is not readable with these TEA credentials (no permission, or wrong endpoint)"
            )
        if is_transient(code, status):
            return TransientCopyError(f"source {code} (HTTP {status}) reading {url}")
        return ObjectFailed(f"source {code} (HTTP {status}) reading {url}: {error_message(exc)}")
