"""Named exceptions: the contract between the Lambdas and the Step Functions definition.

The Lambda runtime reports an unhandled exception as ``errorType`` = the class name, and the state
machine routes on that name (``add_catch``/``add_retry``). Renaming a class here is an API change:
``tests/infrastructure/test_workflow_asl.py`` asserts the ASL routes every name listed in the sets below.
"""

from __future__ import annotations


class TeacopyError(Exception):
    """Base class. ``str(exc)`` is shown to the operator: it must never contain a secret."""


class InvalidInput(TeacopyError):
    """The execution input (or a manifest it names) is malformed. Nothing was copied.

    The message always starts with the offending field, e.g. ``destination.bucket: ...``.
    """

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class ConfigurationError(TeacopyError):
    """The Lambda environment (set by the stack) is missing or malformed."""


class CredentialsExpired(TeacopyError):
    """The TEA credentials a worker holds are expired or within the safety margin.

    Routed by the map child to RefreshCredentials, then back to CopyBatch (bounded rounds).
    """


class CredentialsUnusable(TeacopyError):
    """TEA returned credentials that are already expired or expire within the safety margin.

    Not retried: refreshing again would loop. Usually a clock problem on the TEA side or ours.
    """


class EdlTokenRejected(TeacopyError):
    """TEA redirected to Earthdata Login (302) or answered 401: the EDL token is invalid or expired."""


class EulaNotAccepted(TeacopyError):
    """TEA answered 403 with a ``resolution_url``: the EDL user must accept a EULA first."""


class TeaForbidden(TeacopyError):
    """TEA answered 403 without a resolution URL (e.g. no permitted bucket for this user)."""


class TeaUnavailable(TeacopyError):
    """TEA timed out, refused the connection, answered 429 or 5xx after bounded retries. Transient."""


class TeaBadResponse(TeacopyError):
    """TEA answered 2xx with something that is not a credentials document."""


class RefreshInProgress(TeacopyError):
    """Another worker holds the refresh lease and did not finish in time. Transient: retried."""


class DestinationAccessDenied(TeacopyError):
    """The copy role may not write to the destination bucket/prefix. Not retried."""


class TransientCopyError(TeacopyError):
    """S3 kept failing (throttling, 5xx, connection resets) past the SDK's retries. Retried."""


class CmrUnavailable(TeacopyError):
    """CMR kept answering 429/5xx/partial results, or did not finish paging, within the bounded retries."""


class CopyJobFailed(TeacopyError):
    """Raised by Summarize when failures exceed the tolerated threshold (the report is written)."""


class AwsServiceUnavailable(TeacopyError):
    """An AWS call (Secrets Manager, DynamoDB, S3, SSM, Lambda, Step Functions) was throttled, timed out, could not
    connect or failed with a server error past the SDK's own retries. Transient: every Lambda task retries it."""


class AwsCallFailed(TeacopyError):
    """An AWS call was refused for a reason retrying cannot fix (access denied, a missing resource, a rejected
    request). Not retried; the message names the service, the operation, the error code and what to check."""


# Errors the map child routes to RefreshCredentials.
REFRESH_ERRORS: tuple[str, ...] = ("CredentialsExpired",)
# Errors Step Functions retries with backoff (besides the Lambda service errors).
RETRYABLE_ERRORS: tuple[str, ...] = (
    "TeaUnavailable",
    "RefreshInProgress",
    "TransientCopyError",
    "CmrUnavailable",
    "AwsServiceUnavailable",
)
# Errors that must fail fast: retrying cannot help, the operator must act.
FATAL_ERRORS: tuple[str, ...] = (
    "InvalidInput",
    "ConfigurationError",
    "CredentialsUnusable",
    "EdlTokenRejected",
    "EulaNotAccepted",
    "TeaForbidden",
    "TeaBadResponse",
    "DestinationAccessDenied",
    "AwsCallFailed",
)
# The run's own verdict (Summarize, after writing the report): it fails the execution on purpose.
VERDICT_ERRORS: tuple[str, ...] = ("CopyJobFailed",)
