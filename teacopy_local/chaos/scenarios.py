"""The fault scenarios: credentials, the TEA endpoint, S3, workers, and the load run.

Each scenario is one row of the `make chaos` table: a name, the fault injected, the outcome the issue
demands (status, error name, message fragments, counts, TEA-call bound) and the body that builds the
situation and runs the synthesized workflow. Bodies may add scenario-specific expectations with
``world.expect``; the invariants (invariants.py) are checked after every scenario by the runner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.contracts import env_names
from stacks.teacopy_stack import LOGICAL_IDS

from ..engine import RunResult
from ..moto_adapters import S3Request, lambda_error
from .model import SCENARIOS, Expected, scenario
from .world import MIB, PART, PREFIXED_DESTINATION, SOURCE, World, WorldSpec

__all__ = ["SCENARIOS"]  # the table, filled by the @scenario definitions below

ONE_AT_A_TIME = {env_names.OBJECT_CONCURRENCY: "1", env_names.INFLIGHT_PARTS: "1"}
EULA_URL = "https://urs.earthdata.nasa.gov/approve_app?client_id=chaosDAACclient"
TOKEN_HINT = ("Generate Token", "EDL token")  # what every token-rejected message tells the operator


def keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/granule-{i:03d}.nc" for i in range(count)]


def simple_run(world: World, count: int = 6, size: int = 2048, prefix: str = "chaos/") -> RunResult:
    names = keys("g", count)
    world.seed(names, size)
    return world.run(world.job(names, prefix=prefix))


def fake_credentials_document(world: World, **drop: bool) -> dict[str, str]:
    """A TEA-shaped credentials document whose secret parts are tracked by the leak scan."""
    secret, token = "chaosSecretKey0123456789abcdefXYZ", "chaosSessionToken" + "Q" * 60
    world.extra_secrets += [secret, token]
    doc = {
        "accessKeyId": "ASIACHAOSFAKEKEY0001",
        "secretAccessKey": secret,
        "sessionToken": token,
        "expiration": str(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)),
    }
    return {k: v for k, v in doc.items() if not drop.get(k)}


def wait_until_within_margin(world: World, extra: float = 0.05) -> None:
    """Block until the newest credentials have no more than the safety margin left (by the workers' clock)."""
    _key, expiration = world.tea.issued[-1]
    deadline = expiration - timedelta(seconds=world.spec.margin) + timedelta(seconds=extra)
    delay = (deadline - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(min(delay, 10.0))


def on_first_copy_batch(world: World, action: Callable[[], object]) -> None:
    """Run ``action()`` just before the first CopyBatch invocation."""
    done = [False]

    def fault(name: str, event: dict[str, Any]) -> None:
        if "batch" in event and not done[0]:
            done[0] = True
            action()

    world.engine.runtime.fault = fault


def each_put_once(world: World, bucket: str, dest_keys: list[str]) -> None:
    """Nothing duplicated: S3 stored each object exactly once (a request that never reached S3 does not count)."""
    counts = {k: world.faults.writes[(bucket, k)] for k in dest_keys}
    most = max(counts.values(), default=0)
    world.expect(most == 1 and min(counts.values(), default=1) == 1, f"objects stored per key = {most} (exactly 1)")


def copy_batch_invocations(world: World) -> int:
    return world.engine.runtime.invocations[LOGICAL_IDS["copy_batch"]]


def reread_in_invocation(world: World, key: str) -> None:
    """A broken small-object GET is re-read with a ranged GET inside the same CopyBatch invocation (no batch retry)."""
    ranges = world.faults.get_ranges.get((SOURCE, key), [])
    invocations = copy_batch_invocations(world)
    world.expect(
        invocations == 1 and len(ranges) == 2 and ranges[1].startswith("bytes="),
        f"GETs of the object {ranges}, CopyBatch invocations {invocations} (re-read in place, no batch retry)",
    )


def resumed_ranges(world: World, key: str, after: int) -> None:
    """The broken GET was resumed with a ranged GET from where it broke, not restarted from byte 0."""
    ranges = world.faults.get_ranges.get((SOURCE, key), [])
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges if r.startswith("bytes=")]
    world.expect(
        any(start >= after for start in starts), f"re-GET Range starts {starts} (one >= {after}: resumed in place)"
    )


# --- credentials --------------------------------------------------------------------------------------


@scenario(
    "expiry-by-clock-before-first-object",
    "credentials",
    "first credentials reach the safety margin before CopyBatch starts",
    Expected(counts={"copied": 6, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(lifetime=3, later_lifetime=3600, margin=2),
    slow=True,
)
def expiry_by_clock_before_first_object(world: World) -> RunResult:
    on_first_copy_batch(world, lambda: wait_until_within_margin(world))
    result = simple_run(world)
    world.expect(world.source_gets() == 6, f"source GETs {world.source_gets()} (none with the expiring keys wasted)")
    return result


@scenario(
    "expiry-by-s3-before-first-object",
    "credentials",
    "S3 answers ExpiredToken from the first GET (the session ended early)",
    Expected(counts={"copied": 6, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
)
def expiry_by_s3_before_first_object(world: World) -> RunResult:
    on_first_copy_batch(world, world.tea.expire)
    result = simple_run(world)
    world.expect(
        world.engine.policy.expired_answers >= 1, f"ExpiredToken answers {world.engine.policy.expired_answers}"
    )
    return result


@scenario(
    "expiry-between-objects",
    "credentials",
    "credentials expire after the 3rd of 8 objects (one object at a time)",
    Expected(counts={"copied": 8, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def expiry_between_objects(world: World) -> RunResult:
    names = keys("between", 8)
    world.seed(names, 4096)
    world.expire_at_source_gets([4])
    result = world.run(world.job(names))
    each_put_once(world, world.dest, [f"chaos/{k}" for k in names])
    return result


@scenario(
    "expiry-mid-multipart",
    "credentials",
    "credentials expire while part 2 of a 4-part object uploads; its GET then breaks at 12 MiB",
    Expected(counts={"copied": 3, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def expiry_mid_multipart(world: World) -> RunResult:
    big = "multi/big-20MiB.nc"
    names = ["multi/a.nc", big, "multi/b.nc"]
    world.seed(names, lambda i: 4 * PART if i == 1 else 1000)
    world.expire_when(lambda r: r.operation == "UploadPart" and world.faults.count("UploadPart") == 2)
    world.faults.add("reset", bucket=SOURCE, key=big, after_bytes=12 * MIB)
    result = world.run(world.job(names))
    parts = world.faults.count("UploadPart", world.dest, f"chaos/{big}")
    world.expect(parts <= 5, f"UploadPart calls {parts} for 4 parts (<= 5: resumed from the last part, not from 0)")
    return result


@scenario(
    "expiry-during-refresh-tea-timeout",
    "credentials",
    "credentials expire mid-batch and TEA's first answer to the refresh times out",
    Expected(counts={"copied": 6, "failed": 0, "credential_refreshes": 1}, tea_min=3, tea_max=3),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def expiry_during_refresh(world: World) -> RunResult:
    def hook(request: S3Request) -> None:
        if request.bucket == SOURCE and request.operation == "GetObject" and world.source_gets() == 3:
            world.tea.script(None, delay=2.6)  # the refresh's first TEA request: slower than the 2 s timeout
            world.tea.expire()

    world.faults.on_request(hook)
    return simple_run(world)


@scenario(
    "refresh-lambda-killed",
    "credentials",
    "credentials expire, then the RefreshCredentials Lambda (timeout 4 s) hangs 5 s on its first call",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=2, tea_max=2),
    world=WorldSpec(function_timeouts={LOGICAL_IDS["credentials"]: 4}),
    slow=True,
)
def refresh_lambda_killed(world: World) -> RunResult:
    hung = [False]

    def fault(name: str, event: dict[str, Any]) -> None:
        if "batch" in event and not world.tea.early_expiries:
            world.tea.expire()  # the first CopyBatch meets ExpiredToken and asks for a refresh
        if event.get("action") == "refresh" and not hung[0]:
            hung[0] = True
            time.sleep(5)  # past its timeout: Lambda reports Sandbox.Timedout, Step Functions retries

    world.engine.runtime.fault = fault
    result = simple_run(world)
    timeouts = world.engine.runtime.timeouts[LOGICAL_IDS["credentials"]]
    world.expect(timeouts == 1, f"RefreshCredentials invocations cut off at their timeout: {timeouts} (1)")
    return result


@scenario(
    "tea-issues-expired-credentials",
    "credentials",
    "TEA returns credentials that expired 30 s ago",
    Expected("FAILED", "CredentialsUnusable", ("within the safety margin", "check clocks"), tea_min=1, tea_max=1),
    world=WorldSpec(lifetime=-30),
)
def tea_issues_expired(world: World) -> RunResult:
    return simple_run(world)


@scenario(
    "tea-issues-credentials-within-margin",
    "credentials",
    "TEA returns credentials living 60 s with a 120 s safety margin",
    Expected("FAILED", "CredentialsUnusable", ("safety margin of 120 s", "Not retried"), tea_min=1, tea_max=1),
    world=WorldSpec(lifetime=60, margin=120),
)
def tea_issues_within_margin(world: World) -> RunResult:
    return simple_run(world)


@scenario(
    "refresh-gets-credentials-within-margin",
    "credentials",
    "after the first expiry TEA only hands out 1 s credentials (margin 2 s): must not loop",
    Expected("FAILED", "CopyJobFailed", ("CredentialsUnusable",), tea_max=3),
    world=WorldSpec(lifetime=4, later_lifetime=1, margin=2, env={env_names.BATCH_MAX_OBJECTS: "3"}),
    slow=True,
)
def refresh_within_margin(world: World) -> RunResult:
    on_first_copy_batch(world, lambda: wait_until_within_margin(world))
    return simple_run(world)


@scenario(
    "clock-skew-worker-behind",
    "credentials",
    "the workers' clock is 120 s behind AWS: credentials die while they look valid",
    Expected(counts={"copied": 6, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(lifetime=1.5, later_lifetime=3600, aws_clock_offset=120),
    slow=True,
)
def clock_skew_behind(world: World) -> RunResult:
    def wait_for_real_expiry() -> None:
        _key, expiration = world.tea.issued[-1]
        time.sleep(max(0.0, min(5.0, (expiration - world.aws_clock()).total_seconds() + 0.1)))

    on_first_copy_batch(world, wait_for_real_expiry)
    result = simple_run(world)
    world.expect(
        world.engine.policy.expired_answers >= 1, f"ExpiredToken answers {world.engine.policy.expired_answers}"
    )
    return result


@scenario(
    "clock-skew-worker-ahead",
    "credentials",
    "the workers' clock is 3500 s ahead of AWS: fresh 1 h credentials look 100 s from expiry (margin 300 s)",
    Expected("FAILED", "CredentialsUnusable", ("check clocks",), tea_min=1, tea_max=1),
    world=WorldSpec(aws_clock_offset=-3500, margin=300),
)
def clock_skew_ahead(world: World) -> RunResult:
    return simple_run(world)


@scenario(
    "expiry-storm-coalesced",
    "credentials",
    "12 concurrent workers meet ExpiredToken at once (credentials expire at the 13th GET)",
    Expected(counts={"copied": 24, "failed": 0, "credential_refreshes": 1}, tea_min=2, tea_max=2),
    world=WorldSpec(env={env_names.BATCH_MAX_OBJECTS: "2"}),
    slow=True,
)
def expiry_storm(world: World) -> RunResult:
    world.expire_at_source_gets([13])
    result = simple_run(world, count=24)
    refresh_calls = (result.report or {}).get("refresh_calls", 0)
    world.expect(refresh_calls >= 2, f"RefreshCredentials calls {refresh_calls} served by 1 TEA refresh (coalesced)")
    return result


# --- TEA endpoint ---------------------------------------------------------------------------------------


@scenario(
    "tea-5xx-burst-then-recovery",
    "tea",
    "TEA answers 503, 502 then recovers",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=3, tea_max=3),
    slow=True,
)
def tea_5xx_burst(world: World) -> RunResult:
    world.tea.script(503, "Service Unavailable")
    world.tea.script(502, "<html><body>Bad Gateway</body></html>")
    return simple_run(world)


@scenario(
    "tea-5xx-longer-than-client-retries",
    "tea",
    "TEA answers 500, 502, 503 (all client attempts), then recovers: Step Functions retries",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=4, tea_max=4),
    slow=True,
)
def tea_5xx_long(world: World) -> RunResult:
    for status in (500, 502, 503):
        world.tea.script(status, {"message": "Internal server error"})
    return simple_run(world)


@scenario(
    "tea-down",
    "tea",
    "TEA answers 503 to every request",
    Expected("FAILED", "TeaUnavailable", ("unavailable after 3 attempt(s)", "HTTP 503"), tea_min=15, tea_max=15),
    slow=True,
)
def tea_down(world: World) -> RunResult:
    for _ in range(40):
        world.tea.script(503, "Service Unavailable")
    return simple_run(world)


@scenario(
    "tea-hangs",
    "tea",
    "TEA never answers within the client timeout (every request takes 2.6 s, timeout 2 s)",
    Expected("FAILED", "TeaUnavailable", ("unavailable after 3 attempt(s)", "timed out"), tea_min=15, tea_max=15),
    slow=True,
)
def tea_hangs(world: World) -> RunResult:
    for _ in range(40):
        world.tea.script(None, delay=2.6)
    return simple_run(world)


@scenario(
    "tea-timeout-then-recovery",
    "tea",
    "TEA's first answer takes 2.6 s (client timeout 2 s)",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=2, tea_max=2),
    slow=True,
)
def tea_timeout(world: World) -> RunResult:
    world.tea.script(None, delay=2.6)
    return simple_run(world)


@scenario(
    "tea-connection-dropped",
    "tea",
    "TEA closes the connection without answering, once",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=2, tea_max=2),
)
def tea_dropped(world: World) -> RunResult:
    world.tea.script_drop()
    return simple_run(world)


@scenario(
    "tea-429-retry-after",
    "tea",
    "TEA answers 429 Too Many Requests with Retry-After: 1",
    Expected(counts={"copied": 6, "failed": 0}, tea_min=2, tea_max=2),
    slow=True,
)
def tea_429(world: World) -> RunResult:
    world.tea.script(429, {"message": "Too Many Requests"}, headers={"Retry-After": "1"})
    started = time.monotonic()
    result = simple_run(world)
    world.expect(time.monotonic() - started >= 1.0, "Retry-After honoured (>= 1 s)")
    return result


@scenario(
    "edl-token-rejected-302",
    "tea",
    "the EDL token is expired: TEA redirects to Earthdata Login (302)",
    Expected("FAILED", "EdlTokenRejected", ("redirected to Earthdata Login", *TOKEN_HINT), tea_min=1, tea_max=1),
    world=WorldSpec(token="expired-edl-token-0000000000000000"),  # noqa: S106 — a test value
)
def edl_302(world: World) -> RunResult:
    return simple_run(world)


@scenario(
    "edl-token-rejected-401",
    "tea",
    "TEA answers 401 Unauthorized",
    Expected("FAILED", "EdlTokenRejected", ("401 Unauthorized", *TOKEN_HINT), tea_min=1, tea_max=1),
)
def edl_401(world: World) -> RunResult:
    world.tea.script(401, {"error": "invalid_token", "error_description": "token expired"})
    return simple_run(world)


@scenario(
    "tea-400-malformed-authorization",
    "tea",
    "TEA answers 400 (malformed Authorization header)",
    Expected("FAILED", "EdlTokenRejected", ("malformed (HTTP 400)", *TOKEN_HINT), tea_min=1, tea_max=1),
)
def tea_400(world: World) -> RunResult:
    world.tea.script(400, {"error": "invalid_request", "error_description": "Malformed Authorization header"})
    return simple_run(world)


@scenario(
    "edl-token-secret-malformed",
    "tea",
    "the EDL token secret holds text with spaces (a pasted sentence, not a token)",
    Expected("FAILED", "EdlTokenRejected", ("does not hold a usable EDL token", *TOKEN_HINT), tea_max=0),
    world=WorldSpec(token="paste your EDL token here"),  # noqa: S106 — a test value
)
def token_secret_malformed(world: World) -> RunResult:
    return simple_run(world)


@scenario(
    "tea-403-eula",
    "tea",
    "TEA answers 403 JSON with a resolution_url (EULA not accepted)",
    Expected("FAILED", "EulaNotAccepted", (EULA_URL, "accept the EULA"), tea_min=1, tea_max=1),
)
def tea_eula(world: World) -> RunResult:
    world.tea.script(
        403,
        {
            "status_code": 403,
            "error_description": "EULA Acceptance Failure",
            "resolution_url": EULA_URL,
        },
    )
    return simple_run(world)


@scenario(
    "tea-403-html",
    "tea",
    "TEA answers 403 HTML (the user may not access any of this DAAC's buckets)",
    Expected("FAILED", "TeaForbidden", ("403 Forbidden", "no access to this DAAC"), tea_min=1, tea_max=1),
)
def tea_403_html(world: World) -> RunResult:
    world.tea.script(403, "<html><head><title>Forbidden</title></head><body>Access denied</body></html>")
    return simple_run(world)


@scenario(
    "tea-malformed-json",
    "tea",
    "TEA answers 200 with a truncated JSON document (secret included)",
    Expected("FAILED", "TeaBadResponse", ("not JSON",), tea_min=1, tea_max=1),
)
def tea_malformed_json(world: World) -> RunResult:
    body = json.dumps(fake_credentials_document(world))[:-40]
    world.tea.script(200, body, headers={"Content-Type": "application/json"})
    return simple_run(world)


@scenario(
    "tea-missing-fields",
    "tea",
    "TEA answers 200 JSON without sessionToken",
    Expected("FAILED", "TeaBadResponse", ("lacks sessionToken",), tea_min=1, tea_max=1),
)
def tea_missing_fields(world: World) -> RunResult:
    world.tea.script(200, fake_credentials_document(world, sessionToken=True))
    return simple_run(world)


@scenario(
    "tea-html-for-browser-user-agent",
    "tea",
    "TEA answers HTML as it does for a browser User-Agent",
    Expected("FAILED", "TeaBadResponse", ("HTML instead of a credentials document",), tea_min=1, tea_max=1),
)
def tea_browser_html(world: World) -> RunResult:
    page = f"<html><body><pre>{json.dumps(fake_credentials_document(world))}</pre></body></html>"
    world.tea.script(200, page)
    result = simple_run(world)
    agents = [h.get("User-Agent", "") for h in world.tea.received_headers]
    world.expect(
        bool(agents) and not any(a.startswith("Mozilla") for a in agents), f"teacopy's User-Agent {agents[:1]}"
    )
    return result


# --- S3 -------------------------------------------------------------------------------------------------


@scenario(
    "s3-slowdown-on-source-get",
    "s3",
    "SlowDown 503 on 4 source GETs",
    Expected(counts={"copied": 6, "failed": 0}),
    slow=True,
)
def s3_slowdown_get(world: World) -> RunResult:
    rule = world.faults.add("slowdown", bucket=SOURCE, times=4)
    result = simple_run(world)
    world.expect(rule.fired == 4, f"SlowDown answered {rule.fired} times")
    return result


@scenario(
    "s3-internal-error-on-source-get",
    "s3",
    "InternalError 500 on 3 source GETs",
    Expected(counts={"copied": 6, "failed": 0}),
)
def s3_500_get(world: World) -> RunResult:
    rule = world.faults.add("internal_error", bucket=SOURCE, times=3)
    result = simple_run(world)
    world.expect(rule.fired == 3, f"InternalError answered {rule.fired} times")
    return result


@scenario(
    "s3-internal-error-on-destination-put",
    "s3",
    "InternalError 500 on 3 destination PUTs",
    Expected(counts={"copied": 6, "failed": 0}),
)
def s3_500_put(world: World) -> RunResult:
    rule = world.faults.add("internal_error", operations=("PutObject",), bucket=world.dest, times=3)
    result = simple_run(world)
    world.expect(rule.fired == 3, f"InternalError answered {rule.fired} times")
    return result


@scenario(
    "s3-slowdown-on-destination-head",
    "s3",
    "SlowDown 503 on 3 destination HEADs (older copies exist, so each object is HEADed)",
    Expected(counts={"copied": 6, "failed": 0}),
)
def s3_slowdown_head(world: World) -> RunResult:
    names = keys("g", 6)
    world.seed(names, 2048)
    dest = world.engine.client("s3")
    for name in names:  # an older copy at each destination key: the batch's listing shows it, HEAD follows
        dest.put_object(Bucket=world.dest, Key=f"chaos/{name}", Body=b"an older version")
    rule = world.faults.add("slowdown", operations=("HeadObject",), bucket=world.dest, times=3)
    result = world.run(world.job(names, prefix="chaos/"))
    world.expect(rule.fired == 3, f"SlowDown answered {rule.fired} times")
    return result


@scenario(
    "s3-slowdown-on-upload-part",
    "s3",
    "SlowDown 503 on 2 UploadPart requests of a 3-part object",
    Expected(counts={"copied": 2, "failed": 0}),
    slow=True,
)
def s3_slowdown_part(world: World) -> RunResult:
    names = ["parts/small.nc", "parts/big-12MiB.nc"]
    world.seed(names, lambda i: 12 * MIB if i else 512)
    rule = world.faults.add("slowdown", operations=("UploadPart",), bucket=world.dest, times=2)
    result = world.run(world.job(names))
    world.expect(rule.fired == 2, f"SlowDown answered {rule.fired} times")
    return result


@scenario(
    "s3-staging-write-errors",
    "s3",
    "InternalError 500 on 2 writes to the staging bucket (manifest/results)",
    Expected(counts={"copied": 6, "failed": 0}),
)
def s3_staging_500(world: World) -> RunResult:
    staging_bucket = world.engine.deployment.staging_bucket
    rule = world.faults.add("internal_error", operations=("PutObject",), bucket=staging_bucket, times=2)
    result = simple_run(world)
    world.expect(rule.fired == 2, f"InternalError answered {rule.fired} times")
    return result


@scenario(
    "s3-connection-reset-mid-get",
    "s3",
    "the connection resets after 100 KiB of a 256 KiB GET",
    Expected(counts={"copied": 3, "failed": 0}),
)
def s3_reset(world: World) -> RunResult:
    names = keys("reset", 3)
    world.seed(names, 256 * 1024)
    world.faults.add("reset", bucket=SOURCE, key=names[1], after_bytes=100 * 1024)
    result = world.run(world.job(names))
    reread_in_invocation(world, names[1])
    return result


@scenario(
    "s3-truncated-body-mid-get",
    "s3",
    "a GET body ends after 50 KiB of 256 KiB (no error, just short)",
    Expected(counts={"copied": 3, "failed": 0}),
)
def s3_truncated(world: World) -> RunResult:
    names = keys("short", 3)
    world.seed(names, 256 * 1024)
    world.faults.add("truncate", bucket=SOURCE, key=names[0], after_bytes=50 * 1024)
    result = world.run(world.job(names))
    reread_in_invocation(world, names[0])
    return result


@scenario(
    "s3-reset-mid-multipart-get",
    "s3",
    "the GET of a 12 MiB (3-part) object resets at 7 MiB",
    Expected(counts={"copied": 1, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_reset_multipart(world: World) -> RunResult:
    big = "reset/big-12MiB.nc"
    world.seed([big], 12 * MIB)
    world.faults.add("reset", bucket=SOURCE, key=big, after_bytes=7 * MIB)
    result = world.run(world.job([big]))
    parts = world.faults.count("UploadPart", world.dest, f"chaos/{big}")
    world.expect(parts <= 4, f"UploadPart calls {parts} for 3 parts (<= 4)")
    resumed_ranges(world, big, PART)
    return result


@scenario(
    "s3-source-no-such-key",
    "s3",
    "one of 5 keys does not exist in the source bucket",
    Expected("FAILED", "CopyJobFailed", ("1 of 5 objects failed", "NoSuchKey"), {"copied": 4, "failed": 1}),
)
def s3_missing(world: World) -> RunResult:
    names = keys("missing", 5)
    world.seed([k for i, k in enumerate(names) if i != 2], 1024)
    world.expect_present([k for i, k in enumerate(names) if i != 2], world.dest, "chaos/")
    result = world.run(world.job(names))
    failures = (result.report or {}).get("failures", [])
    world.expect(
        [f["key"] for f in failures] == [names[2]] and "NoSuchKey" in failures[0]["reason"],
        f"report failure: {failures[:1]}",
    )
    return result


@scenario(
    "s3-source-access-denied-one-key",
    "s3",
    "AccessDenied on one source key",
    Expected("FAILED", "CopyJobFailed", ("1 of 5 objects failed", "AccessDenied"), {"copied": 4, "failed": 1}),
)
def s3_denied_key(world: World) -> RunResult:
    names = keys("denied", 5)
    world.seed(names, 1024)
    world.faults.add("access_denied", bucket=SOURCE, key=names[3], times=None)
    world.expect_present([k for i, k in enumerate(names) if i != 3], world.dest, "chaos/")
    result = world.run(world.job(names))
    failures = (result.report or {}).get("failures", [])
    world.expect(
        [f["key"] for f in failures] == [names[3]] and "not readable" in failures[0]["reason"],
        f"report failure: {failures[:1]}",
    )
    return result


@scenario(
    "s3-source-access-denied-bucket",
    "s3",
    "AccessDenied on every GET of the source bucket (wrong DAAC endpoint)",
    Expected("FAILED", "CopyJobFailed", ("3 of 3 objects failed", "AccessDenied"), {"copied": 0, "failed": 3}),
)
def s3_denied_bucket(world: World) -> RunResult:
    names = keys("denied-all", 3)
    world.seed(names, 1024)
    world.faults.add("access_denied", bucket=SOURCE, times=None)
    return world.run(world.job(names))


@scenario(
    "s3-destination-access-denied",
    "s3",
    "AccessDenied on every write to the prefixed destination",
    Expected(
        "FAILED",
        "CopyJobFailed",
        ("DestinationAccessDenied", f"s3://{PREFIXED_DESTINATION['bucket']}/{PREFIXED_DESTINATION['prefix']}"),
        {"copied": 0},
    ),
)
def s3_dest_denied(world: World) -> RunResult:
    target = world.prefixed_destination() or world.destinations[0]
    names = keys("dest-denied", 3)
    world.seed(names, 1024)
    world.faults.add(
        "access_denied",
        operations=("PutObject", "CreateMultipartUpload", "UploadPart"),
        bucket=target["bucket"],
        times=None,
    )
    return world.run(world.job(names, prefix=f"{target['prefix']}runs/", bucket=target["bucket"]))


@scenario(
    "s3-destination-denied-mid-multipart",
    "s3",
    "AccessDenied on UploadPart of a 12 MiB object (upload already created)",
    Expected("FAILED", "CopyJobFailed", ("DestinationAccessDenied",), {"copied": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
)
def s3_dest_denied_multipart(world: World) -> RunResult:
    big = "denied/big-12MiB.nc"
    world.seed([big], 12 * MIB)
    world.faults.add("access_denied", operations=("UploadPart",), bucket=world.dest, times=None)
    result = world.run(world.job([big]))
    world.expect(world.faults.count("CreateMultipartUpload", world.dest) >= 1, "a multipart upload was created")
    return result


# --- workers --------------------------------------------------------------------------------------------


@scenario(
    "copybatch-killed-mid-multipart",
    "workers",
    "the CopyBatch sandbox dies at part 2 of a 3-part object, 2 small objects already written",
    Expected(counts={"objects": 5, "failed": 0}),
    world=WorldSpec(env=ONE_AT_A_TIME),
    slow=True,
)
def killed_mid_batch(world: World) -> RunResult:
    big = "killed/big-12MiB.nc"
    names = ["killed/a.nc", "killed/b.nc", big, "killed/c.nc", "killed/d.nc"]
    world.seed(names, lambda i: 12 * MIB if i == 2 else 2000)
    world.faults.add("kill", operations=("UploadPart",), bucket=world.dest, skip=1)
    result = world.run(world.job(names))
    kills = world.engine.runtime.kills[LOGICAL_IDS["copy_batch"]]
    world.expect(kills == 1, f"CopyBatch invocations killed {kills}")
    each_put_once(world, world.dest, [f"chaos/{k}" for k in names if k != big])
    return result


@scenario(
    "copybatch-killed-before-recording",
    "workers",
    "the CopyBatch sandbox dies while writing its results (every object already copied)",
    Expected(counts={"objects": 6, "failed": 0}),
    slow=True,
)
def killed_before_recording(world: World) -> RunResult:
    staging_bucket = world.engine.deployment.staging_bucket
    world.faults.add("kill", operations=("PutObject",), bucket=staging_bucket, key_contains="/results/")
    names = keys("g", 6)
    world.seed(names, 2048)
    result = world.run(world.job(names))
    kills = world.engine.runtime.kills[LOGICAL_IDS["copy_batch"]]
    world.expect(kills == 1, f"CopyBatch invocations killed {kills}")
    each_put_once(world, world.dest, [f"chaos/{k}" for k in names])
    return result


@scenario(
    "copybatch-crash-at-start",
    "workers",
    "the first CopyBatch invocation crashes (Lambda.Unknown) before doing anything",
    Expected(counts={"copied": 6, "failed": 0}),
    slow=True,
)
def crash_at_start(world: World) -> RunResult:
    def crash() -> None:
        raise lambda_error("Lambda.Unknown", "Process exited before completing request")

    on_first_copy_batch(world, crash)
    return simple_run(world)


# --- load -----------------------------------------------------------------------------------------------

LOAD_OBJECTS = 10_000


@scenario(
    "load-10k-3-expiries-1pct-faults",
    "load",
    f"{LOAD_OBJECTS} objects, credentials expire 3 times, 1 % of source GETs/destination PUTs fail transiently",
    Expected(counts={"objects": LOAD_OBJECTS, "failed": 0, "credential_refreshes": 3}, tea_min=4, tea_max=4),
    slow=True,
    load=True,
)
def load(world: World) -> RunResult:
    names = [f"load/{i // 1000:02d}/granule-{i:05d}.nc" for i in range(LOAD_OBJECTS)]
    started = time.monotonic()
    world.seed(names, lambda i: 64 + i % 193)
    world.note(f"seeded in {time.monotonic() - started:.0f} s")
    manifest = world.put_input(world.manifest_bucket, "lists/load.txt", "\n".join(names))
    world.expect_copies(names, world.dest, "load/")
    world.faults.add("slowdown", bucket=SOURCE, times=None, probability=0.004)
    world.faults.add("reset", bucket=SOURCE, times=None, probability=0.003, after_bytes=16)
    put_rule = world.faults.add("internal_error", operations=("PutObject",), times=None, probability=0.003)
    put_rule.bucket = world.dest
    expiries = world.expire_at_source_gets([LOAD_OBJECTS // 4, LOAD_OBJECTS // 2, 3 * LOAD_OBJECTS // 4])
    job = {"source": {"bucket": SOURCE, "manifest": manifest}, "destination": {"bucket": world.dest, "prefix": "load/"}}
    result = world.run(job, timeout=1200)
    world.note(f"run {result.seconds:.0f} s")
    world.note(f"faults fired {dict(world.faults.fired)}")
    world.expect(expiries() == 3, f"credential expiries injected {expiries()} (3)")
    return result
