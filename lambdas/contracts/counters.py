"""The run's counters: one name, one label and one meaning each, used everywhere a run is counted.

``name`` is the key in report.json, the execution output (``RunSummary``) and the last JSON line of
``make demo`` / ``teacopy local``; ``label`` is how the live progress lines (``teacopy local``,
``teacopy watch``), the ``teacopy report`` table and the HTML report write it; ``metric`` is the
CloudWatch metric that counts the same thing (``lambdas/observability/metrics.py``), if any.
docs/counters.md has the same table for people (tests/unit/test_counters.py keeps the two equal).

How the credential counters add up (per run):

- ``refresh_requests = credential_refreshes + coalesced_refreshes``: every time a worker asks for newer
  credentials, either its request fetches a new set from TEA, or it is served the set another worker's
  request just fetched;
- ``tea_requests = credential_fetches + credential_refreshes + tea_errors``: every HTTP request to TEA either
  answered a fetch (the run's first set per endpoint, for Plan's listing and for FetchCredentials: a fetch
  reuses cached credentials only while they have more than the safety margin left), or answered a refresh,
  or failed (and was retried);
- ``expired_token_answers`` (local runs only: the local engine counts S3's answers) is not a count of
  refreshes: several requests of one batch in flight can meet ExpiredToken together (one refresh request),
  and workers also refresh ahead of expiry (``safety_margin_seconds``) without any ExpiredToken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Counter:
    name: str
    label: str
    meaning: str
    metric: str | None = None
    local_only: bool = False  # only local runs know it (the local engine's own count)


# objects
OBJECTS = Counter("objects", "objects", "objects the plan staged (after include/exclude and duplicate removal)")
COPIED = Counter(
    "copied",
    "copied",
    "objects written to the destination and verified (S3 checked the full-object CRC64NVME; a published checksum "
    "and the planned size too, when known)",
    "ObjectsCopied",
)
SKIPPED = Counter(
    "skipped",
    "skipped",
    "objects the destination already had, not written: identical to the source (reason identical), or present "
    "with overwrite never (reason exists)",
    "ObjectsSkipped",
)
FAILED = Counter("failed", "failed", "objects that failed (each with its reason in report.csv)", "ObjectsFailed")
NOT_ATTEMPTED = Counter(
    "not_attempted", "not attempted", "planned objects with no recorded outcome (their batch stopped)"
)
BYTES = Counter("bytes", "bytes copied", "bytes written by the copied objects", "BytesCopied")
VERIFIED = Counter(
    "verified",
    "verified",
    "copied objects whose destination bytes were compared with their source byte for byte after the run",
    local_only=True,
)
# dry runs
WOULD_COPY = Counter("would_copy", "would copy", "dry run: objects a real run would copy")
WOULD_SKIP = Counter("would_skip", "would skip", "dry run: objects a real run would skip")
BYTES_TO_COPY = Counter("bytes_to_copy", "bytes to copy", "dry run: bytes a real run would copy")
# credentials
TEA_REQUESTS = Counter(
    "tea_requests",
    "TEA requests",
    "HTTP requests to TEA /s3credentials: credential_fetches + credential_refreshes + tea_errors",
    "TeaRequests",
)
CREDENTIAL_FETCHES = Counter(
    "credential_fetches",
    "credential fetches",
    "TEA requests that answered a fetch: the run's first credential set per endpoint (Plan's listing and "
    "FetchCredentials each fetch one unless the cached set has time left)",
)
TEA_ERRORS = Counter(
    "tea_errors", "TEA errors", "TEA requests that did not answer credentials (timeouts, 5xx, 401, 403)", "TeaErrors"
)
REFRESH_REQUESTS = Counter(
    "refresh_requests",
    "refresh requests",
    "requests of workers for newer credentials (after ExpiredToken, or ahead of expiry): "
    "credential_refreshes + coalesced_refreshes",
)
CREDENTIAL_REFRESHES = Counter(
    "credential_refreshes",
    "credential refreshes",
    "refresh requests that fetched a new credential set from TEA (each one TEA request)",
    "CredentialRefreshes",
)
COALESCED_REFRESHES = Counter(
    "coalesced_refreshes",
    "coalesced refreshes",
    "refresh requests served the set another worker's refresh had just fetched (no TEA request)",
    "CoalescedRefreshes",
)
EXPIRED_TOKEN_ANSWERS = Counter(
    "expired_token_answers",
    "ExpiredToken answers",
    "S3 requests answered ExpiredToken (the local engine counts them)",
    local_only=True,
)

OBJECT_COUNTERS = (OBJECTS, COPIED, SKIPPED, FAILED, NOT_ATTEMPTED, BYTES)
DRY_RUN_COUNTERS = (WOULD_COPY, WOULD_SKIP, BYTES_TO_COPY)
CREDENTIAL_COUNTERS = (
    TEA_REQUESTS,
    CREDENTIAL_FETCHES,
    CREDENTIAL_REFRESHES,
    TEA_ERRORS,
    REFRESH_REQUESTS,
    COALESCED_REFRESHES,
)
LOCAL_COUNTERS = (VERIFIED, EXPIRED_TOKEN_ANSWERS)
ALL = (*OBJECT_COUNTERS, *DRY_RUN_COUNTERS, *CREDENTIAL_COUNTERS, *LOCAL_COUNTERS)
BY_NAME = {counter.name: counter for counter in ALL}

# the counts of the execution output (RunSummary), and of the summary line of local runs
SUMMARY_COUNTERS = (*OBJECT_COUNTERS, TEA_REQUESTS, CREDENTIAL_REFRESHES)


def label(name: str) -> str:
    return BY_NAME[name].label


def with_label(name: str, value: object) -> str:
    """``"<label> <value>"``: how progress lines write a counter."""
    return f"{BY_NAME[name].label} {value}"


def progress_text(values: Mapping[str, object], names: Iterable[str]) -> str:
    """``"<label> <value>  <label> <value> ..."`` of ``names`` (missing values: 0): the progress lines' counters."""
    return "  ".join(with_label(name, values.get(name, 0)) for name in names)


# the credential counters the live progress lines show (teacopy local, teacopy watch)
PROGRESS_CREDENTIALS = (TEA_REQUESTS.name, CREDENTIAL_REFRESHES.name, REFRESH_REQUESTS.name)
