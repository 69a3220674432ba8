"""AWS error codes, grouped by what teacopy does about them (the one place each group is written).

``error_code`` reads any botocore ``ClientError`` (S3, DynamoDB, Secrets Manager, Lambda, SSM).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

# The credentials that signed the request have expired: refresh them and try again.
EXPIRED_CODES = frozenset({"ExpiredToken", "TokenRefreshRequired", "InvalidToken", "ExpiredTokenException"})
NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
        "NoSuchUpload",  # the upload vanished under us (e.g. a lifecycle rule): redo the object
        # the other services teacopy calls (DynamoDB, Secrets Manager, Lambda, SSM, Step Functions)
        "ProvisionedThroughputExceededException",
        "ThrottledException",
        "InternalServerError",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailableException",
        "ServiceException",
        "EC2ThrottledException",
        "TransactionConflictException",
    }
)
INTEGRITY_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"})


def error_code(exc: ClientError) -> str:
    """The error code of an AWS answer ('' when it has none)."""
    return str((exc.response.get("Error", {}) or {}).get("Code", "") or "")


def error_status(exc: ClientError) -> tuple[str, int]:
    """(code, HTTP status); the code falls back to the status for answers without a body (HEAD)."""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return error_code(exc) or (str(status) if status else ""), status


def error_message(exc: ClientError, limit: int = 200) -> str:
    return str((exc.response.get("Error", {}) or {}).get("Message", "") or "")[:limit]


def is_transient(code: str, status: int) -> bool:
    return code in TRANSIENT_CODES or status >= 500 or status == 429
