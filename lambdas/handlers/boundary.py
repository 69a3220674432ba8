"""The handlers' error boundary: no botocore error leaves a handler unclassified.

Step Functions routes a failed Lambda task on the error's *name* (``errorType``, the exception class). A raw
``ClientError`` or ``BotoCoreError`` matches no Retry or Catch of the state machine, so a single Secrets Manager
or DynamoDB throttle would fail the run. Every handler is therefore wrapped in ``named_errors``: a botocore error
that escapes the logic becomes

- ``AwsServiceUnavailable`` when retrying can help (throttling, a 5xx, a timeout, a dropped connection: the
  groups of ``lambdas/s3/codes.py``), which every Lambda task of the state machine retries with backoff;
- ``AwsCallFailed`` otherwise (access denied, a missing resource, a rejected request), a deliberate fatal error
  whose message names the operation, the code and what to check.

Named errors (``lambdas/contracts/errors.py``) and every other exception pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from lambdas.contracts.errors import AwsCallFailed, AwsServiceUnavailable, TeacopyError
from lambdas.s3.codes import DENIED_CODES, EXPIRED_CODES, error_message, error_status, is_transient

Handler = TypeVar("Handler", bound=Callable[..., Any])
_TRANSIENT_BOTOCORE = (BotoConnectionError, HTTPClientError, IncompleteReadError, CredentialRetrievalError)
_NOT_FOUND_SUFFIXES = ("NotFoundException", "NotFound", "NoSuchBucket", "NoSuchKey", "ParameterNotFound")


def from_botocore(exc: ClientError | BotoCoreError, function: str) -> TeacopyError:
    """The named error a botocore error that reached ``function``'s handler stands for."""
    if isinstance(exc, ClientError):
        code, status = error_status(exc)
        operation = exc.operation_name or "an AWS call"
        if is_transient(code, status) or code in EXPIRED_CODES:
            return AwsServiceUnavailable(
                f"{function}: {operation} answered {code or 'an error'} (HTTP {status}) past the SDK's retries; "
                "the state machine retries the step"
            )
        if code in DENIED_CODES or code.endswith("AccessDeniedException") or status == 403:
            what = "the function's IAM role may not make this call (was a policy or a KMS key policy changed?)"
        elif code.endswith(_NOT_FOUND_SUFFIXES) or status == 404:
            what = "a resource the stack created or the job names is missing (deleted, or another region?)"
        else:
            what = "the request was rejected; this is not transient"
        detail = error_message(exc)
        return AwsCallFailed(f"{function}: {operation} failed with {code} (HTTP {status}): {what}. {detail}".strip())
    name = type(exc).__name__
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return AwsServiceUnavailable(f"{function}: an AWS call failed ({name}) past the SDK's retries; retried")
    return AwsCallFailed(f"{function}: an AWS call could not be made ({name}); this is a configuration problem")


def named_errors(function: str) -> Callable[[Handler], Handler]:
    """Wrap a handler so that a botocore error leaving it becomes a named contract error (see the module doc)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise from_botocore(exc, function) from exc

        return wrapper  # type: ignore[return-value]

    return decorate
