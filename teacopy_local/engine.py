"""The local engine: the synthesized stack, deployed into an in-process emulated AWS.

moto provides S3, Secrets Manager, DynamoDB, IAM, Lambda and its Step Functions interpreter; the
TEA emulator (``tea_emulator.py``) serves ``/s3credentials`` on 127.0.0.1. ``LocalEngine`` reads
the CloudFormation template that ``cdk synth`` wrote, creates each resource the workflow needs in
moto, and registers the state machine with the **synthesized** definition (intrinsics resolved
to the local physical names). Lambda handlers run in this process (``moto_adapters``).

Local-only overrides (documented in docs/local-engine.md): the TEA endpoint (the emulator's URL),
and optionally timing knobs such as the safety margin, so that one-hour credentials can expire in
seconds.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from lambdas.contracts import env_names
from lambdas.observability.logs import local_sink
from stacks.template_tools import PSEUDO_DEFAULTS, resolve_intrinsics, state_machine_definition

from .iam import function_policies
from .moto_adapters import (
    FunctionSpec,
    LambdaRuntime,
    S3AccessPolicy,
    atomic_backends,
    fresh_handler_modules,
    inprocess_lambda,
    map_child_records,
    s3_access_checks,
)
from .tea_emulator import TeaEmulator

logger = logging.getLogger(__name__)
REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCAL_PSEUDO = {**PSEUDO_DEFAULTS, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class CapturedLogs(logging.Handler):
    """Keeps every log record emitted while the engine runs (the Lambdas' logs, locally).

    ``lines``: each record at the root logger as ``LEVEL logger message``; ``json_lines``: each record of the
    Lambdas (``lambdas.…``) as the JSON line it would be in CloudWatch, with its structured keys
    (``lambdas.observability.logs.local_sink``). Neither is printed: ``make demo``'s output stays readable.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.json_lines: list[str] = []

    def add_json(self, line: str) -> None:
        self.json_lines.append(line)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.levelname} {record.name} {record.getMessage()}")
        except (TypeError, ValueError):
            self.lines.append(f"{record.levelname} {record.name} {record.msg!r}")


@dataclass
class RunResult:
    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    seconds: float
    report: dict[str, Any] | None = None


@dataclass
class Deployment:
    staging_bucket: str = ""
    destination_buckets: list[str] = field(default_factory=list)
    token_secret_id: str = ""
    credentials_secret_id: str = ""
    lock_table: str = ""
    state_machine_arn: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    physical: dict[str, dict[str | None, str]] = field(default_factory=dict)


def _zip_placeholder() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "code runs in-process: see teacopy_local/moto_adapters.py")
    return buffer.getvalue()


class LocalEngine:
    def __init__(
        self,
        template: dict[str, Any],
        *,
        tea: TeaEmulator,
        edl_token: str,
        source_buckets: set[str],
        env_overrides: dict[str, str] | None = None,
        function_timeouts: dict[str, float] | None = None,
        extra_teas: dict[str, tuple[TeaEmulator, set[str]]] | None = None,
        enforce_iam: bool = True,
    ) -> None:
        """``tea`` serves ``source_buckets`` (the "default" endpoint); ``extra_teas`` maps each other
        configured endpoint (config ``tea_endpoints``) to its emulator and buckets: keys issued by one
        emulator are refused on another's buckets, as a DAAC's keys are on another DAAC's buckets.

        ``function_timeouts`` (function logical id -> seconds) replaces a function's configured timeout: an
        invocation running longer is cut off (``Sandbox.Timedout``). ``enforce_iam``: each function's S3
        requests are decided by its role's policies in ``template`` (docs/local-engine.md); False only for a
        template without roles."""
        self.template = template
        self.tea = tea
        self.extra_teas = dict(extra_teas or {})
        self.edl_token = edl_token
        self.source_buckets = source_buckets
        self.env_overrides = dict(env_overrides or {})
        self.function_timeouts = dict(function_timeouts or {})  # function logical id -> seconds
        self.runtime = LambdaRuntime()
        self.deployment = Deployment()
        self.logs = CapturedLogs()
        self.enforce_iam = enforce_iam
        self.policy = S3AccessPolicy(
            expiration_of=self._expiration_of,
            source_buckets=set(source_buckets).union(*(b for _e, b in self.extra_teas.values())),
            buckets_of=self._buckets_of,
            account=ACCOUNT,
        )
        self.child_io: list[str] = []  # each map child's input and output (or error), as JSON
        self._saved_env: dict[str, str | None] = {}
        self._stack: list[Any] = []

    def _emulators(self) -> list[tuple[TeaEmulator, set[str]]]:
        return [(self.tea, self.source_buckets), *self.extra_teas.values()]

    def _expiration_of(self, access_key_id: str) -> Any:
        for emulator, _buckets in self._emulators():
            expiration = emulator.expiration_of(access_key_id)
            if expiration is not None:
                return expiration
        return None

    def _buckets_of(self, access_key_id: str) -> set[str]:
        for emulator, buckets in self._emulators():
            if emulator.expiration_of(access_key_id) is not None:
                return buckets
        return set()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalEngine:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            self._set_env(name, value)
        self._set_env(env_names.AWS_ENDPOINT_URL, None)
        mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        mock.start()
        self._stack.append(mock)
        lambda_cm = inprocess_lambda(self.runtime)
        lambda_cm.__enter__()
        self._stack.append(lambda_cm)
        s3_cm = s3_access_checks(self.policy)
        s3_cm.__enter__()
        self._stack.append(s3_cm)
        children_cm = map_child_records(lambda kind, text: self.child_io.append(f"{kind} {text}"))
        children_cm.__enter__()
        self._stack.append(children_cm)
        atomic_cm = atomic_backends()
        atomic_cm.__enter__()
        self._stack.append(atomic_cm)
        logging.getLogger().addHandler(self.logs)
        sink_cm = local_sink(self.logs.add_json)
        sink_cm.__enter__()
        self._stack.append(sink_cm)
        if logging.getLogger().level > logging.INFO:
            logging.getLogger().setLevel(logging.INFO)
        self.deploy()
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.logs)
        while self._stack:
            item = self._stack.pop()
            if hasattr(item, "stop"):
                item.stop()
            else:
                item.__exit__(None, None, None)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        fresh_handler_modules()

    def _set_env(self, name: str, value: str | None) -> None:
        if name not in self._saved_env:
            self._saved_env[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(service, region_name=region)

    # -- deploy ------------------------------------------------------------------------------
    def resources(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.template["Resources"].items():
            if resource["Type"] == kind:
                yield logical_id, resource.get("Properties", {})

    def resolve(self, logical_id: str, attribute: str | None) -> str:
        if logical_id in LOCAL_PSEUDO:
            return LOCAL_PSEUDO[logical_id]
        try:
            return self.deployment.physical[logical_id][attribute]
        except KeyError as exc:
            raise KeyError(f"local engine cannot resolve {logical_id}.{attribute or 'Ref'}") from exc

    def deploy(self) -> Deployment:
        d = self.deployment
        s3, sm, ddb, iam, lam, sfn = (
            self.client(s) for s in ("s3", "secretsmanager", "dynamodb", "iam", "lambda", "stepfunctions")
        )
        for logical_id, _props in self.resources("AWS::S3::Bucket"):
            name = f"teacopy-{logical_id.lower()[:40]}"
            s3.create_bucket(Bucket=name)
            d.physical[logical_id] = {None: name, "Arn": f"arn:aws:s3:::{name}"}
        for logical_id, props in self.resources("AWS::SecretsManager::Secret"):
            name = props.get("Name") or f"teacopy/{logical_id}"
            arn = sm.create_secret(Name=name, SecretString="placeholder-set-by-stack")["ARN"]
            d.physical[logical_id] = {None: arn, "Id": arn}
        for logical_id, props in self.resources("AWS::DynamoDB::Table"):
            name = f"teacopy-{logical_id}"
            ddb.create_table(
                TableName=name,
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
            )
            d.physical[logical_id] = {None: name, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
        role_arn = iam.create_role(
            RoleName="teacopy-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        functions = list(self.resources("AWS::Lambda::Function"))
        for logical_id, _props in functions:  # names first: environments may reference each other
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
            d.physical[logical_id] = {None: logical_id, "Arn": arn}
        merged: dict[str, str] = {}
        for logical_id, props in functions:
            env = {
                k: str(v)
                for k, v in resolve_intrinsics(props.get("Environment", {}).get("Variables", {}), self.resolve).items()
            }
            env.update({k: v for k, v in self.env_overrides.items() if k in env})
            if env_names.TEA_ENDPOINTS in env and self.extra_teas:  # point each endpoint at its emulator
                endpoints = json.loads(env[env_names.TEA_ENDPOINTS])
                for name, (emulator, _buckets) in self.extra_teas.items():
                    endpoints[name]["url"] = emulator.url
                env[env_names.TEA_ENDPOINTS] = json.dumps(endpoints, sort_keys=True)
            for key, value in env.items():
                if merged.get(key, value) != value:
                    raise RuntimeError(f"functions disagree on {key}; the local engine shares one process environment")
                merged[key] = value
            handler = props["Handler"]
            timeout = float(self.function_timeouts.get(logical_id, props.get("Timeout", 3)))
            lam.create_function(
                FunctionName=logical_id,
                Runtime="python3.12",
                Role=role_arn,
                Handler=handler,
                Code={"ZipFile": _zip_placeholder()},
                Timeout=int(props.get("Timeout", 3)),
                MemorySize=int(props.get("MemorySize", 128)),
                Environment={"Variables": env},
            )
            self.runtime.functions[logical_id] = FunctionSpec(handler, timeout, int(props.get("MemorySize", 128)))
        d.environment = merged
        if self.enforce_iam:
            self.policy.roles = function_policies(self.template, self.resolve)
        for key, value in merged.items():
            self._set_env(key, value)
        fresh_handler_modules()
        d.token_secret_id = merged[env_names.TOKEN_SECRET_ID]
        d.credentials_secret_id = merged[env_names.CREDENTIALS_SECRET_ID]
        d.lock_table = merged[env_names.LOCK_TABLE]
        d.staging_bucket = merged[env_names.STAGING_BUCKET]
        sm.put_secret_value(SecretId=d.token_secret_id, SecretString=self.edl_token)
        for dest in json.loads(merged[env_names.DESTINATIONS]):
            if dest["bucket"] not in d.destination_buckets:
                s3.create_bucket(Bucket=dest["bucket"])
                d.destination_buckets.append(dest["bucket"])
        for bucket in sorted(self.source_buckets.union(*(b for _e, b in self.extra_teas.values()))):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        machines = list(self.resources("AWS::StepFunctions::StateMachine"))
        if len(machines) != 1:
            raise RuntimeError(f"expected one state machine in the template, found {len(machines)}")
        definition = state_machine_definition(self.template, self.resolve)
        d.state_machine_arn = sfn.create_state_machine(
            name="teacopy-local", definition=json.dumps(definition), roleArn=role_arn
        )["stateMachineArn"]
        return d

    # -- run ---------------------------------------------------------------------------------
    def start(self, job_input: dict[str, Any], name: str | None = None) -> str:
        name = name or f"run-{int(time.time() * 1000)}"
        sfn = self.client("stepfunctions")
        return str(
            sfn.start_execution(
                stateMachineArn=self.deployment.state_machine_arn, name=name, input=json.dumps(job_input)
            )["executionArn"]
        )

    def wait(
        self, execution_arn: str, timeout: float = 600, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> RunResult:
        sfn = self.client("stepfunctions")
        started = time.monotonic()
        run_id = execution_arn.rsplit(":", 1)[-1]
        tracker = ProgressTracker(self.client("s3"), self.deployment.staging_bucket, run_id)
        while True:
            desc = sfn.describe_execution(executionArn=execution_arn)
            if on_progress is not None:
                on_progress(tracker.poll())
            if desc["status"] in TERMINAL:
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"execution {run_id} still {desc['status']} after {timeout:.0f} s")
            time.sleep(0.25)
        seconds = time.monotonic() - started
        output = json.loads(desc["output"]) if desc.get("output") else None
        return RunResult(
            execution_arn=execution_arn,
            status=desc["status"],
            output=output,
            error=desc.get("error"),
            cause=desc.get("cause"),
            seconds=seconds,
            report=self.report(run_id),
        )

    def run(self, job_input: dict[str, Any], name: str | None = None, timeout: float = 600, **kwargs: Any) -> RunResult:
        return self.wait(self.start(job_input, name), timeout=timeout, **kwargs)

    def report(self, run_id: str) -> dict[str, Any] | None:
        s3 = self.client("s3")
        try:
            body = s3.get_object(Bucket=self.deployment.staging_bucket, Key=f"runs/{run_id}/report.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return dict(json.loads(body))

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                return events

    def staging_dump(self) -> Iterator[tuple[str, bytes]]:
        s3 = self.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.deployment.staging_bucket):
            for item in page.get("Contents", []):
                yield item["Key"], s3.get_object(Bucket=self.deployment.staging_bucket, Key=item["Key"])["Body"].read()

    def scan_for_secrets(self, secrets: list[str], execution_arns: list[str]) -> list[str]:
        return scan_for_secrets(self, secrets, execution_arns)


class ProgressTracker:
    """Reads a run's result log incrementally: what the operator watches while a job runs."""

    def __init__(self, s3: Any, bucket: str, run_id: str) -> None:
        self.s3, self.bucket, self.run_id = s3, bucket, run_id
        self.seen: set[str] = set()
        self.counts: dict[str, int] = {"copied": 0, "skipped": 0, "failed": 0, "bytes": 0, "done": 0}
        self.objects: int | None = None

    def poll(self) -> dict[str, Any]:
        prefix = f"runs/{self.run_id}/"
        if self.objects is None:
            try:
                plan = json.loads(self.s3.get_object(Bucket=self.bucket, Key=f"{prefix}plan.json")["Body"].read())
                self.objects = int(plan["objects"])
            except self.s3.exceptions.NoSuchKey:
                pass
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}results/"):
            for item in page.get("Contents", []):
                if item["Key"] in self.seen:
                    continue
                self.seen.add(item["Key"])
                for record in json.loads(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()):
                    # copied, skipped, failed; a dry run's would_copy / would_skip too
                    self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
                    self.counts["done"] += 1
                    if record["status"] == "copied":
                        self.counts["bytes"] += int(record.get("bytes", 0))
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{prefix}events/refresh/")
        self.counts["refresh_calls"] = listing.get("KeyCount", 0)
        return {**self.counts, "objects": self.objects}


def load_template(path: str | Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _scan(text: str, secrets: list[str]) -> bool:
    return any(secret and secret in text for secret in secrets)


def scan_for_secrets(engine: LocalEngine, secrets: list[str], execution_arns: list[str]) -> list[str]:
    """Where any secret appears: execution input/output/history, every map child's input and output, every
    Lambda event and answer, the runtime errors recorded, staging objects, captured logs."""
    found: list[str] = []
    sfn = engine.client("stepfunctions")
    for arn in execution_arns:
        desc = sfn.describe_execution(executionArn=arn)
        if _scan(json.dumps(desc, default=str), secrets):
            found.append(f"execution {arn} input/output")
        for event in engine.history(arn):
            if _scan(json.dumps(event, default=str), secrets):
                found.append(f"history event {event.get('id')} of {arn}")
    for key, body in engine.staging_dump():
        if _scan(body.decode("utf-8", "replace"), secrets):
            found.append(f"staging object {key}")
    for line in [*engine.logs.lines, *engine.logs.json_lines]:
        if _scan(line, secrets):
            found.append(f"log line {line[:60]!r}")
    for text in list(engine.child_io):
        if _scan(text, secrets):
            found.append(f"map child {text[:60]!r}")
    for record in list(engine.runtime.records):
        if _scan(record.event, secrets):
            found.append(f"event of {record.function} invocation {record.request_id}")
        if _scan(record.answer, secrets):
            found.append(f"answer of {record.function} invocation {record.request_id}")
    for function, kind, message in list(engine.runtime.errors):
        if _scan(f"{kind} {message}", secrets):
            found.append(f"runtime error {kind} of {function}")
    return found
