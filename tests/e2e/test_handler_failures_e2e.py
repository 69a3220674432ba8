"""No unclassified error escapes a handler: each handler's failure paths, walked in the local engine.

For every function, a real invocation (the event the state machine gave it in a successful run) is repeated
with one of the AWS operations it made failing: throttled, a server error, access denied, a dropped connection.
The failure is injected at the client's ``before-call`` event, i.e. after the SDK's own retries would have given
up (no retry, no sleep). Whatever leaves the handler (the ``errorType`` Step Functions sees) must be routed by
the synthesized state machine at every state invoking that function: retried (a transient failure must be), or a
deliberate fatal error of the contract (with a message), or Summarize's verdict. The Cleanup function, which no
state invokes, must report a failed record to SQS (``batchItemFailures``) instead of raising.

Then, end to end: a Secrets Manager throttle in the credentials path is retried by the state machine and the run
succeeds; a DynamoDB AccessDenied fails it with AwsCallFailed naming the operation.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from lambdas.contracts import errors
from stacks.teacopy_stack import LOGICAL_IDS
from stacks.template_tools import iter_states, state_machine_definition
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile
from teacopy_local.engine import LocalEngine
from teacopy_local.moto_adapters import fresh_handler_modules
from tests.e2e.test_sources_e2e import DEST, MANIFESTS, SOURCE, engine_for, put_manifest, seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


# --- failures at the client's before-call event ------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str
    transient: bool

    def response(self, service: str) -> tuple[Any, dict[str, Any]]:
        code, status = {
            "throttled": ("ThrottlingException", 400),
            "server-error": ("InternalError", 500),
            "access-denied": ("AccessDenied" if service == "s3" else "AccessDeniedException", 403),
        }[self.kind]
        parsed = {
            "Error": {"Code": code, "Message": f"injected {self.kind}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return _Http(status), parsed


@dataclass(frozen=True)
class _Http:
    status_code: int


FAULTS = [
    Fault("throttled", True),
    Fault("server-error", True),
    Fault("access-denied", False),
    Fault("connection", True),
]


class Calls:
    """Records the operations of the hooked clients, and fails one operation with one fault."""

    def __init__(
        self, fail: tuple[str, str] | None = None, fault: Fault | None = None, times: int | None = None
    ) -> None:
        self.fail, self.fault, self.times = fail, fault, times
        self.seen: list[tuple[str, str]] = []
        self.fired = 0

    def hook(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()

        def before_call(model: Any, **_: Any) -> Any:
            operation = (service, model.name)
            self.seen.append(operation)
            if self.fault is None or operation != self.fail or (self.times is not None and self.fired >= self.times):
                return None
            self.fired += 1
            if self.fault.kind == "connection":
                raise EndpointConnectionError(endpoint_url=f"https://{service}.injected")
            return self.fault.response(service)

        client.meta.events.register("before-call", before_call)


@dataclass
class Step:
    """One function, the event it got in the baseline run, and the clients of its handler module."""

    name: str
    function: str
    module: str
    clients: Callable[[Any], list[Any]]
    event: dict[str, Any]


def invoke(engine: LocalEngine, step: Step, calls: Calls) -> tuple[str | None, str]:
    """A cold start of ``step``'s handler with its clients hooked; (errorType or None, errorMessage or output)."""
    fresh_handler_modules()
    module = importlib.import_module(step.module)
    for client in step.clients(module):
        calls.hook(client)
    raw, errored = engine.runtime.invoke(step.function, step.event)
    payload = json.loads(raw)
    if errored:
        return str(payload["errorType"]), str(payload["errorMessage"])
    return None, json.dumps(payload)[:300]


def routing(synth: Any) -> dict[str, list[dict[str, set[str]]]]:
    """Per function logical id: for each state invoking it, the error names it retries and catches."""
    definition = state_machine_definition(synth.template)
    out: dict[str, list[dict[str, set[str]]]] = {}
    for _path, state in iter_states(definition):
        resource = str(state.get("Resource", ""))
        if state.get("Type") != "Task" or ":lambda:" not in resource:
            continue
        function = next(fid for fid in LOGICAL_IDS.values() if resource.endswith(f":function:{fid.lower()}"))
        out.setdefault(function, []).append(
            {
                "retried": {n for r in state.get("Retry", []) for n in r["ErrorEquals"]},
                "caught": {n for c in state.get("Catch", []) for n in c["ErrorEquals"]},
            }
        )
    return out


# --- the baseline run: a scheduled, incremental CMR job (every function, every client) --------------------------


@contextmanager
def walked_engine(synth: Any) -> Iterator[tuple[LocalEngine, CmrEmulator, dict[str, dict[str, Any]], dict[str, Any]]]:
    with engine_for(synth) as (engine, _tea, cmr):
        keys = [f"walk/{i}.nc" for i in range(3)]
        bodies = seed(engine, keys)
        concept = cmr.add_collection("WALK", "1")
        day = datetime(2024, 1, 1, tzinfo=UTC)
        for key, body in bodies.items():
            cmr.add_granule(concept, key.rsplit("/", 1)[-1], [EmulatedFile(SOURCE, key, len(body), None)], begin=day)
        job = {
            "source": {"cmr": {"collection_concept_id": concept}},
            "destination": {"bucket": DEST, "prefix": "walk/"},
            "schedule": {"name": "nightly-mur", "incremental": True},
        }
        put_manifest(engine, "walk.txt", "\n".join(keys) + "\n")
        events: dict[str, dict[str, Any]] = {}

        def record(name: str, event: dict[str, Any]) -> None:
            events.setdefault(name, event)  # the first event each function got

        engine.runtime.fault = record
        result = engine.run(job, name="walk-baseline", timeout=120)
        engine.runtime.fault = None
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        yield engine, cmr, events, job


def steps_of(events: dict[str, dict[str, Any]], job: dict[str, Any]) -> list[Step]:
    credentials = events[LOGICAL_IDS["copy_batch"]]["credentials"]
    return [
        Step(
            "Plan (CMR, incremental schedule: first checks its previous run has ended)",
            LOGICAL_IDS["plan"],
            "lambdas.handlers.plan",
            lambda m: [m.S3, m.SSM, m.SECRETS, m.LAMBDA, m.SFN],
            {"input": job, "run_id": "walk-plan-cmr", "execution_arn": events[LOGICAL_IDS["plan"]]["execution_arn"]},
        ),
        Step(
            "Plan (prefix listing: invokes Credentials, reads the cache)",
            LOGICAL_IDS["plan"],
            "lambdas.handlers.plan",
            lambda m: [m.S3, m.SSM, m.SECRETS, m.LAMBDA],
            {
                "input": {"source": {"bucket": SOURCE, "prefix": "walk/"}, "destination": {"bucket": DEST}},
                "run_id": "walk-plan-prefix",
            },
        ),
        Step(
            "Plan (a manifest in the manifest bucket)",
            LOGICAL_IDS["plan"],
            "lambdas.handlers.plan",
            lambda m: [m.S3, m.SSM, m.SECRETS, m.LAMBDA],
            {
                "input": {
                    "source": {"bucket": SOURCE, "manifest": f"s3://{MANIFESTS}/walk.txt"},
                    "destination": {"bucket": DEST},
                },
                "run_id": "walk-plan-manifest",
            },
        ),
        Step(
            "Credentials (refresh: cache, lease, TEA, events)",
            LOGICAL_IDS["credentials"],
            "lambdas.handlers.credentials",
            lambda m: [m.default_deps().secrets, m.default_deps().dynamodb, m.default_deps().s3],
            {"action": "refresh", "run_id": "walk-baseline", "endpoint": "default", "credentials": credentials},
        ),
        Step(
            "CopyBatch (overwrite always)",
            LOGICAL_IDS["copy_batch"],
            "lambdas.handlers.copy_batch",
            lambda m: [m.S3, m.SECRETS],
            {
                **events[LOGICAL_IDS["copy_batch"]],
                "run_id": "walk-copy",
                "options": {"overwrite": "always", "dry_run": False},
            },
        ),
        Step(
            "Summarize (incremental schedule: writes its state)",
            LOGICAL_IDS["summarize"],
            "lambdas.handlers.summarize",
            lambda m: [m.S3, m.SSM],
            events[LOGICAL_IDS["summarize"]],
        ),
    ]


def test_every_error_leaving_a_handler_is_routed_by_the_state_machine(synth: Any) -> None:
    routes = routing(synth)
    routed_anywhere = {*errors.FATAL_ERRORS, *errors.VERDICT_ERRORS}
    checked: list[str] = []
    unrouted: list[str] = []
    with walked_engine(synth) as (engine, _cmr, events, job):
        for step in steps_of(events, job):
            baseline = Calls()
            error, detail = invoke(engine, step, baseline)
            assert error is None, (step.name, error, detail)
            operations = sorted(set(baseline.seen))
            assert operations, step.name
            for operation in operations:
                for fault in FAULTS:
                    error, detail = invoke(engine, step, Calls(operation, fault))
                    where = f"{step.name}: {operation[0]} {operation[1]} {fault.kind} -> {error}: {detail[:160]}"
                    checked.append(where)
                    if error is None:
                        continue  # handled inside (telemetry, a listing that falls back, ...)
                    states = routes[step.function]
                    retried_everywhere = all(error in s["retried"] for s in states)
                    handled_everywhere = all(error in s["retried"] | s["caught"] for s in states)
                    if fault.transient and not retried_everywhere:
                        unrouted.append("transient but not retried: " + where)
                    elif not (handled_everywhere or error in routed_anywhere):
                        unrouted.append("not routed: " + where)
                    elif not detail.strip():
                        unrouted.append("no message: " + where)
    assert unrouted == [], "\n".join(unrouted)
    assert len(checked) >= 60, len(checked)  # the walk really went through the handlers' calls
    assert any(": sfn ListExecutions " in c for c in checked)  # a scheduled Plan's overlap check was walked too


def test_the_cleanup_reports_a_failed_record_instead_of_raising(synth: Any) -> None:
    with walked_engine(synth) as (engine, _cmr, _events, _job):
        detail = {"name": "walk-baseline", "status": "ABORTED", "executionArn": "arn:x", "startDate": 0}
        body = json.dumps({"detail-type": "Step Functions Execution Status Change", "detail": detail})
        step = Step(
            "Cleanup",
            LOGICAL_IDS["cleanup"],
            "lambdas.handlers.cleanup",
            lambda m: [m.S3],
            {"Records": [{"messageId": "m-1", "body": body}]},
        )
        baseline = Calls()
        assert invoke(engine, step, baseline)[0] is None
        for operation in sorted(set(baseline.seen)):
            for fault in FAULTS:
                error, output = invoke(engine, step, Calls(operation, fault))
                assert error is None, (operation, fault, error, output)
                assert json.loads(output) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}, (operation, fault)


# --- end to end: the state machine retries a throttle, and fails clearly on a refusal --------------------------


def hooked_credentials(engine: LocalEngine, calls: Calls) -> None:
    """Hook the clients the Credentials function will use (its module is imported once per engine)."""
    module = importlib.import_module("lambdas.handlers.credentials")
    deps = module.default_deps()
    for client in (deps.secrets, deps.dynamodb, deps.s3):
        calls.hook(client)


def test_a_secrets_manager_throttle_in_the_credentials_path_is_retried_and_the_run_succeeds(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, _cmr):
        seed(engine, ["throttle/a.nc"])
        calls = Calls(("secrets-manager", "GetSecretValue"), Fault("throttled", True), times=1)
        hooked_credentials(engine, calls)
        job = {"source": {"bucket": SOURCE, "keys": ["throttle/a.nc"]}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="sm-throttle", timeout=120)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        assert calls.fired == 1
        # FetchCredentials failed once with the named, retried error, then the state machine's retry succeeded
        assert ("CredentialsFunction", "AwsServiceUnavailable") in [(n, e) for n, e, _ in engine.runtime.errors]
        assert engine.runtime.invocations["CredentialsFunction"] == 2


def test_a_dynamodb_refusal_fails_the_run_with_a_named_error_and_the_operation(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, _cmr):
        seed(engine, ["denied/a.nc"])
        calls = Calls(("dynamodb", "PutItem"), Fault("access-denied", False))
        hooked_credentials(engine, calls)
        job = {"source": {"bucket": SOURCE, "keys": ["denied/a.nc"]}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="ddb-denied", timeout=120)
        assert (result.status, result.error) == ("FAILED", "AwsCallFailed")
        message = json.loads(result.cause or "{}")["errorMessage"]
        assert message.startswith("Credentials: PutItem failed with AccessDeniedException (HTTP 403)")
        assert "IAM role" in message
        assert engine.runtime.invocations["CredentialsFunction"] == 1  # fatal: not retried
        # the clean-up reported the run that never reached Summarize
        assert result.report is not None and result.report["execution_status"] == "FAILED"
        assert result.report["errors"][0]["error"] == "AwsCallFailed"
