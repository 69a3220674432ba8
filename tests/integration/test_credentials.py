"""The credentials cache, the refresh lease, coalesced refreshes and the credentials Lambda (moto + TEA emulator)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import env_names
from lambdas.contracts.errors import (
    CredentialsExpired,
    CredentialsUnusable,
    EdlTokenRejected,
    InvalidInput,
    RefreshInProgress,
)
from lambdas.contracts.models import CredentialsRef
from lambdas.contracts.settings import CredentialSettings
from lambdas.contracts.staging import events_prefix, get_json, list_keys
from lambdas.credentials.cache import CredentialCache, utc_now
from lambdas.credentials.lease import RefreshLease
from lambdas.credentials.refresh import CredentialDeps, ensure_fresh, handle_credentials_request
from lambdas.earthdata.tea import TeaAuth, TeaClient
from teacopy_local.moto_adapters import LocalContext, atomic_backends
from teacopy_local.tea_emulator import DEFAULT_TOKEN, TeaEmulator

REGION = "us-west-2"
TOKEN_SECRET = "teacopy/edl-token"
CACHE_SECRET = "teacopy/credentials-cache"
TABLE = "teacopy-leases"
BUCKET = "teacopy-staging"
MARGIN = 300
PLACEHOLDER = '{"placeholder": true, "nonce": "Zx81nPq0aB3c"}'  # what the stack stores initially


class FakeClock:
    """An aware-UTC clock that only moves when told to (sleep advances it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@dataclass
class Aws:
    secrets: Any
    dynamodb: Any
    s3: Any


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _moto() -> Iterator[tuple[Any, Aws]]:
    """One moto mock and one set of clients per module (client creation dominates), reset per test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws() as mock:
            clients = Aws(
                boto3.client("secretsmanager", region_name=REGION),
                boto3.client("dynamodb", region_name=REGION),
                boto3.client("s3", region_name=REGION),
            )
            yield mock, clients


@pytest.fixture
def aws(_moto: tuple[Any, Aws], monkeypatch: pytest.MonkeyPatch) -> Aws:
    mock, clients = _moto
    mock.reset()
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    clients.secrets.create_secret(Name=TOKEN_SECRET, SecretString=DEFAULT_TOKEN)
    clients.secrets.create_secret(Name=CACHE_SECRET, SecretString=PLACEHOLDER)
    clients.dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    clients.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return clients


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tea(clock: FakeClock) -> Iterator[TeaEmulator]:
    with TeaEmulator(clock=clock) as emulator:
        yield emulator


class Loader:
    """auth_loader that counts how often the EDL token secret is read."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.calls = 0

    def __call__(self) -> TeaAuth:
        self.calls += 1
        secret = self.aws.secrets.get_secret_value(SecretId=TOKEN_SECRET)["SecretString"]
        return TeaAuth.from_secret_string(secret, secret_name=TOKEN_SECRET)


def tea_client(tea: TeaEmulator) -> TeaClient:
    return TeaClient(tea.url, "teacopy-tests", 2.0, sleep=lambda _s: None, token_secret_name=TOKEN_SECRET)


def lease_for(aws: Aws) -> RefreshLease:
    return RefreshLease(aws.dynamodb, TABLE, f"tea-refresh#{CACHE_SECRET}")


def fresh(
    aws: Aws,
    tea: TeaEmulator,
    clock: Callable[[], datetime],
    used_version: str | None = None,
    *,
    cache: CredentialCache | None = None,
    loader: Loader | None = None,
    sleep: Callable[[float], None] | None = None,
    **kwargs: Any,
) -> tuple[CredentialsRef, bool]:
    return ensure_fresh(
        cache=cache or CredentialCache(aws.secrets, CACHE_SECRET),
        lease=lease_for(aws),
        tea=tea_client(tea),
        auth_loader=loader or Loader(aws),
        used_version=used_version,
        margin_seconds=MARGIN,
        clock=clock,
        sleep=sleep if sleep is not None else getattr(clock, "sleep", time.sleep),
        **kwargs,
    )


def lease_items(aws: Aws) -> list[dict[str, Any]]:
    return list(aws.dynamodb.scan(TableName=TABLE)["Items"])


# -- ensure_fresh: when TEA is (not) called -----------------------------------------------------------


def test_initial_fetch_calls_tea_once_then_reuses(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    loader = Loader(aws)
    ref, fetched = fresh(aws, tea, clock, loader=loader)
    assert fetched is True and tea.requests == 1 and loader.calls == 1
    assert ref.expires_at == tea.issued[0][1]
    current = CredentialCache(aws.secrets, CACHE_SECRET).current()
    assert current is not None and current[0] == ref and current[1].access_key_id == tea.issued[0][0]

    again, fetched = fresh(aws, tea, clock, loader=loader)
    assert again == ref and fetched is False
    assert tea.requests == 1 and loader.calls == 1  # the token secret is read only when TEA is called
    assert lease_items(aws) == []


def test_refresh_of_the_current_version_calls_tea(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    first, _ = fresh(aws, tea, clock)
    clock.advance(600)  # still fresh by the clock, but S3 said ExpiredToken: the clock is not the final word
    second, fetched = fresh(aws, tea, clock, used_version=first.version)
    assert fetched is True and second.version != first.version and tea.requests == 2
    assert CredentialCache(aws.secrets, CACHE_SECRET).current()[0] == second  # type: ignore[index]


def test_refresh_with_an_older_version_reuses_fresh_current(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    first, _ = fresh(aws, tea, clock)
    second, _ = fresh(aws, tea, clock, used_version=first.version)
    assert tea.requests == 2
    third, fetched = fresh(aws, tea, clock, used_version=first.version)
    assert third == second and fetched is False and tea.requests == 2


def test_current_within_the_margin_is_refreshed(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    first, _ = fresh(aws, tea, clock)
    clock.advance(3600 - MARGIN)  # exactly at the margin: not usable any more
    second, fetched = fresh(aws, tea, clock)
    assert fetched is True and second.version != first.version and tea.requests == 2


def test_credentials_within_the_margin_from_tea_are_unusable_without_looping(
    aws: Aws, tea: TeaEmulator, clock: FakeClock
) -> None:
    tea.set_lifetime(MARGIN - 60)
    with pytest.raises(CredentialsUnusable) as info:
        fresh(aws, tea, clock)
    message = str(info.value)
    assert f"within the safety margin of {MARGIN} s" in message and "clock" in message
    assert tea.requests == 1  # exactly one TEA call, no loop
    assert CredentialCache(aws.secrets, CACHE_SECRET).current() is None  # nothing stored
    assert lease_items(aws) == []  # lease released


def test_tea_errors_release_the_lease(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    aws.secrets.put_secret_value(SecretId=TOKEN_SECRET, SecretString="an-expired-edl-token")
    with pytest.raises(EdlTokenRejected) as info:
        fresh(aws, tea, clock)
    assert "an-expired-edl-token" not in str(info.value) and TOKEN_SECRET in str(info.value)
    assert lease_items(aws) == [] and tea.requests == 1


def test_dead_lease_holder_blocks_until_the_lease_expires(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    first, _ = fresh(aws, tea, clock)
    assert lease_for(aws).acquire("crashed-worker", 60, clock().timestamp())

    started = clock()
    with pytest.raises(RefreshInProgress):
        fresh(aws, tea, clock, used_version=first.version, wait_seconds=5, poll_seconds=0.5)
    assert tea.requests == 1  # the loser never called TEA
    assert (clock() - started).total_seconds() == pytest.approx(5, abs=0.01)  # bounded by wait_seconds
    assert len(clock.sleeps) <= 11

    clock.advance(61)  # the crashed holder's lease has expired
    second, fetched = fresh(aws, tea, clock, used_version=first.version)
    assert fetched is True and second.version != first.version and tea.requests == 2
    assert lease_items(aws) == []


def test_waiting_loser_takes_over_an_expiring_lease(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    first, _ = fresh(aws, tea, clock)
    assert lease_for(aws).acquire("crashed-worker", 3, clock().timestamp())
    second, fetched = fresh(aws, tea, clock, used_version=first.version, wait_seconds=10, poll_seconds=0.5)
    assert fetched is True and second.version != first.version and tea.requests == 2
    assert 3 <= sum(clock.sleeps) <= 4


def test_loser_returns_the_winners_version(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    """A loser polling the cache picks up what the holder stored (simulated by a put during its sleep)."""
    first, _ = fresh(aws, tea, clock)
    assert lease_for(aws).acquire("other-worker", 60, clock().timestamp())
    stored: list[Any] = []

    def sleep_while_other_refreshes(seconds: float) -> None:
        clock.advance(seconds)
        if not stored:
            creds = tea_client(tea).fetch(TeaAuth(bearer_token=DEFAULT_TOKEN))
            stored.append(CredentialCache(aws.secrets, CACHE_SECRET).put(creds))

    ref, fetched = fresh(aws, tea, clock, used_version=first.version, sleep=sleep_while_other_refreshes)
    assert fetched is False and ref == stored[0] and tea.requests == 2


def test_lease_winner_double_checks_the_cache(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    """A caller that saw the old version, then won the lease after another refresh, must not call TEA."""
    first, _ = fresh(aws, tea, clock)
    second, _ = fresh(aws, tea, clock, used_version=first.version)
    stale_view = (first, CredentialCache(aws.secrets, CACHE_SECRET).get(first.version))

    class LateCache(CredentialCache):
        looks = 0

        def current(self) -> Any:
            self.looks += 1
            return stale_view if self.looks == 1 else super().current()

    loader = Loader(aws)
    cache = LateCache(aws.secrets, CACHE_SECRET)
    ref, fetched = fresh(aws, tea, clock, used_version=first.version, cache=cache, loader=loader)
    assert ref == second and fetched is False
    assert cache.looks == 2 and tea.requests == 2 and loader.calls == 0
    assert lease_items(aws) == []


@pytest.fixture
def atomic() -> Iterator[None]:
    """moto serves requests without locking; AWS is atomic per request (teacopy_local.moto_adapters)."""
    with atomic_backends():
        yield


def test_ten_concurrent_refreshes_make_exactly_one_tea_request(aws: Aws, atomic: None) -> None:
    with TeaEmulator() as tea:
        first, _ = fresh(aws, tea, utc_now, sleep=time.sleep)
        assert tea.requests == 1
        tea.script(None, delay=0.3)  # the winner's TEA call is slow: everyone else must wait for it
        barrier = threading.Barrier(10)
        results: list[tuple[Any, bool]] = []
        errors: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                results.append(
                    fresh(
                        aws,
                        tea,
                        utc_now,
                        used_version=first.version,
                        sleep=time.sleep,
                        wait_seconds=10,
                        poll_seconds=0.02,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - collected and re-raised by the test below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        assert errors == []
        assert len(results) == 10
        assert tea.requests == 2  # the initial fetch + exactly ONE refresh for ten callers
        assert sum(1 for _, fetched in results if fetched) == 1
        versions = {ref.version for ref, _ in results}
        assert len(versions) == 1 and first.version not in versions
        assert lease_items(aws) == []


# -- CredentialCache ---------------------------------------------------------------------------------


def test_cache_current_is_none_for_placeholder_or_garbage(aws: Aws) -> None:
    cache = CredentialCache(aws.secrets, CACHE_SECRET)
    assert cache.current() is None
    aws.secrets.put_secret_value(SecretId=CACHE_SECRET, SecretString="not json")
    assert cache.current() is None
    aws.secrets.put_secret_value(SecretId=CACHE_SECRET, SecretString='{"accessKeyId": "A"}')
    assert cache.current() is None


def test_cache_put_get_and_versions(aws: Aws, tea: TeaEmulator) -> None:
    cache = CredentialCache(aws.secrets, CACHE_SECRET)
    one = tea_client(tea).fetch(TeaAuth(bearer_token=DEFAULT_TOKEN))
    two = tea_client(tea).fetch(TeaAuth(bearer_token=DEFAULT_TOKEN))
    ref_one = cache.put(one)
    ref_two = cache.put(two)
    assert ref_one.version != ref_two.version
    assert ref_two.expiration == two.expiration.isoformat(timespec="seconds")

    other_container = CredentialCache(aws.secrets, CACHE_SECRET)
    assert other_container.current() == (ref_two, two)
    assert other_container.get(ref_one.version) == one  # superseded versions stay readable
    assert other_container.get(ref_two.version) == two
    stored = json.loads(aws.secrets.get_secret_value(SecretId=CACHE_SECRET)["SecretString"])
    assert set(stored) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}

    # Memoised per warm container: a known version needs no API call any more.
    aws.secrets.delete_secret(SecretId=CACHE_SECRET, ForceDeleteWithoutRecovery=True)
    assert other_container.get(ref_one.version) == one


@pytest.mark.parametrize("version", ["0b8e3d4c-5f6a-4b7c-8d9e-0f1a2b3c4d5e", "bogus"])
def test_cache_get_unknown_version_is_expired(aws: Aws, version: str) -> None:
    with pytest.raises(CredentialsExpired):
        CredentialCache(aws.secrets, CACHE_SECRET).get(version)


def test_cache_get_of_the_placeholder_version_is_expired(aws: Aws) -> None:
    version = aws.secrets.get_secret_value(SecretId=CACHE_SECRET)["VersionId"]
    with pytest.raises(CredentialsExpired):
        CredentialCache(aws.secrets, CACHE_SECRET).get(version)


def test_cache_repr_never_shows_credentials(aws: Aws, tea: TeaEmulator) -> None:
    creds = tea_client(tea).fetch(TeaAuth(bearer_token=DEFAULT_TOKEN))
    assert creds.secret_access_key not in repr(creds) and creds.session_token not in repr(creds)


# -- RefreshLease ------------------------------------------------------------------------------------


def test_lease_acquire_release_and_expiry(aws: Aws) -> None:
    lease = lease_for(aws)
    assert lease.acquire("a", 60, 1000.0)
    assert not lease.acquire("b", 60, 1010.0)
    assert lease.holder_expires_at == pytest.approx(1060.0)
    lease.release("b")  # not the owner: nothing happens
    assert not lease.acquire("b", 60, 1020.0)
    assert lease.acquire("b", 60, 1061.0)  # a's lease expired
    lease.release("a")  # a lost it: must not delete b's lease
    assert lease_items(aws)[0]["owner"] == {"S": "b"}
    lease.release("b")
    assert lease_items(aws) == []
    assert lease.acquire("c", 60, 1062.0)


# -- the credentials Lambda ---------------------------------------------------------------------------


def settings_for(tea: TeaEmulator) -> CredentialSettings:
    return CredentialSettings(
        token_secret_id=TOKEN_SECRET,
        credentials_secret_id=CACHE_SECRET,
        lock_table=TABLE,
        tea_endpoint=tea.url,
        app_name="teacopy",
        safety_margin_seconds=MARGIN,
        tea_timeout_seconds=2,
        staging_bucket=BUCKET,
    )


def deps_for(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> CredentialDeps:
    return CredentialDeps(
        settings=settings_for(tea),
        secrets=aws.secrets,
        dynamodb=aws.dynamodb,
        s3=aws.s3,
        tea=tea_client(tea),
        clock=clock,
        sleep=clock.sleep,
    )


def events(aws: Aws, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [get_json(aws.s3, BUCKET, key) for key in sorted(list_keys(aws.s3, BUCKET, events_prefix(run_id, kind)))]


def secret_values(tea: TeaEmulator) -> list[str]:
    values = [DEFAULT_TOKEN]
    for access_key_id, _ in tea.issued:
        issued = tea.credentials_of(access_key_id)
        assert issued is not None
        values += [issued.secret_access_key, issued.session_token]
    return values


def test_handler_returns_only_a_reference_and_records_events(
    aws: Aws, tea: TeaEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deps = deps_for(aws, tea, clock)
    run = "run-1"

    fetched = handle_credentials_request({"action": "fetch", "run_id": run}, deps)
    assert set(fetched) == {"version", "expiration"}
    assert events(aws, run, "refresh") == []
    tea_events = events(aws, run, "tea")
    assert len(tea_events) == 1
    assert {k: tea_events[0][k] for k in ("status", "outcome", "action")} == {
        "status": 200,
        "outcome": "ok",
        "action": "fetch",
    }
    assert isinstance(tea_events[0]["seconds"], float)

    again = handle_credentials_request({"action": "fetch", "run_id": run}, deps)
    assert again == fetched and len(events(aws, run, "tea")) == 1

    refreshed = handle_credentials_request(
        {"action": "refresh", "run_id": run, "used_version": fetched["version"]}, deps
    )
    assert refreshed["version"] != fetched["version"]
    coalesced = handle_credentials_request(
        {"action": "refresh", "run_id": run, "used_version": fetched["version"]}, deps
    )
    assert coalesced == refreshed
    refresh_events = [
        {k: e[k] for k in ("fetched", "used_version", "new_version")} for e in events(aws, run, "refresh")
    ]
    assert refresh_events == [
        {"fetched": True, "used_version": fetched["version"], "new_version": refreshed["version"]},
        {"fetched": False, "used_version": fetched["version"], "new_version": refreshed["version"]},
    ]
    assert [e["action"] for e in events(aws, run, "tea")] == ["fetch", "refresh"]
    assert tea.requests == 2

    # No secret anywhere: results, staging objects, our logs.
    secrets = secret_values(tea)
    assert len(secrets) == 5
    results_text = json.dumps([fetched, again, refreshed, coalesced])
    staging_text = "".join(
        aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode() for key in list_keys(aws.s3, BUCKET, "")
    )
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("lambdas"))
    assert ours  # we did log (versions, expirations, outcomes)
    for value in secrets:
        assert value not in results_text and value not in staging_text and value not in ours


def test_handler_without_run_id_records_nothing(aws: Aws, tea: TeaEmulator, clock: FakeClock) -> None:
    handle_credentials_request({"action": "fetch"}, deps_for(aws, tea, clock))
    assert list(list_keys(aws.s3, BUCKET, "")) == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (None, "event"),
        ({}, "action"),
        ({"action": "steal"}, "action"),
        ({"action": "fetch", "run_id": 5}, "run_id"),
        ({"action": "fetch", "run_id": ""}, "run_id"),
        ({"action": "refresh", "used_version": ""}, "used_version"),
        ({"action": "refresh", "used_version": 7}, "used_version"),
        ({"action": "fetch", "used_version": "abc"}, "used_version"),
    ],
)
def test_handler_rejects_bad_events(aws: Aws, tea: TeaEmulator, clock: FakeClock, event: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        handle_credentials_request(event, deps_for(aws, tea, clock))
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    assert tea.requests == 0


def test_lambda_handler_wiring_from_environment(aws: Aws, tea: TeaEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdas.handlers import credentials as handler

    for name, value in {
        env_names.TOKEN_SECRET_ID: TOKEN_SECRET,
        env_names.CREDENTIALS_SECRET_ID: CACHE_SECRET,
        env_names.LOCK_TABLE: TABLE,
        env_names.TEA_ENDPOINT: tea.url + "/",
        env_names.APP_NAME: "teacopy",
        env_names.SAFETY_MARGIN_SECONDS: str(MARGIN),
        env_names.TEA_TIMEOUT_SECONDS: "2",
        env_names.STAGING_BUCKET: BUCKET,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "_deps", None)

    context = LocalContext("credentials", 60, 256)
    result = handler.lambda_handler({"action": "fetch", "run_id": "run-2"}, context)
    assert set(result) == {"version", "expiration"} and tea.requests == 1
    assert handler.lambda_handler({"action": "fetch"}, context) == result and tea.requests == 1
    assert len(events(aws, "run-2", "tea")) == 1


# -- several TEA endpoints (one DAAC each) ------------------------------------------------------------


def test_fetch_for_the_plans_endpoints_and_refresh_one_endpoint_in_the_map(
    aws: Aws, tea: TeaEmulator, clock: FakeClock
) -> None:
    from lambdas.contracts.settings import TeaEndpoint

    with TeaEmulator(clock=clock) as other:
        aws.secrets.create_secret(Name="teacopy/cache-nsidc", SecretString=PLACEHOLDER)
        settings = dataclasses.replace(
            settings_for(tea), extra_endpoints=(TeaEndpoint("nsidc", other.url, "teacopy/cache-nsidc"),)
        )
        deps = CredentialDeps(
            settings=settings,
            secrets=aws.secrets,
            dynamodb=aws.dynamodb,
            s3=aws.s3,
            tea=tea_client(tea),
            teas={"nsidc": tea_client(other)},
            clock=clock,
            sleep=clock.sleep,
        )

        both = handle_credentials_request({"action": "fetch", "endpoints": ["default", "nsidc"]}, deps)

        assert set(both) == {"default", "nsidc"} and (tea.requests, other.requests) == (1, 1)
        assert set(both["nsidc"]) == {"version", "expiration"}
        # each endpoint's credentials are in its own cache: one DAAC's keys are never another's
        default_keys = CredentialCache(aws.secrets, CACHE_SECRET).get(both["default"]["version"])
        nsidc_keys = CredentialCache(aws.secrets, "teacopy/cache-nsidc").get(both["nsidc"]["version"])
        assert default_keys.access_key_id in {k for k, _ in tea.issued}
        assert nsidc_keys.access_key_id in {k for k, _ in other.issued}

        renewed = handle_credentials_request(
            {"action": "refresh", "endpoint": "nsidc", "credentials": both, "run_id": "r"}, deps
        )

        assert renewed["default"] == both["default"]  # passed through untouched
        assert renewed["nsidc"]["version"] != both["nsidc"]["version"]
        assert (tea.requests, other.requests) == (1, 2)
        (refresh,) = events(aws, "r", "refresh")
        assert refresh["endpoint"] == "nsidc" and refresh["used_version"] == both["nsidc"]["version"]

        with pytest.raises(InvalidInput) as info:
            handle_credentials_request({"action": "fetch", "endpoints": ["lpdaac"]}, deps)
        assert info.value.field == "endpoint" and "not a configured TEA endpoint" in info.value.rule
