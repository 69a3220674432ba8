"""Step Functions status-change events, delivered locally the way the stack's EventBridge rules route them.

moto's Step Functions interpreter publishes no "Step Functions Execution Status Change" event to EventBridge, and
the local engine creates no SQS queue. What this module emulates, for each execution the engine waits for:

1. the event AWS publishes when the execution ends (``status_change_event``: source ``aws.states``, the detail
   fields ``executionArn``, ``stateMachineArn``, ``name``, ``status``, ``startDate``/``stopDate`` in epoch
   milliseconds, ``input``, ``output``, ``error``, ``cause``);
2. the routing: every ``AWS::Events::Rule`` of the synthesized template whose ``EventPattern`` matches it (moto's
   own EventBridge pattern matcher, on the pattern with its intrinsics resolved) reaches its target: a function
   directly (the event), or a queue through the template's ``AWS::Lambda::EventSourceMapping`` (an SQS batch of
   one record whose body is the event);
3. the queue's delivery delay, by what it is for: the target runs once no Lambda invocation of the engine is
   running anymore (an invocation the ended execution started runs to its end, as on AWS), bounded by the delay.

The target runs in-process like any other function (``LambdaRuntime.invoke``); ``deliveries`` records each one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moto.events.models import EventPattern

from stacks.template_tools import resolve_intrinsics

from .moto_adapters import LambdaRuntime

DETAIL_TYPE = "Step Functions Execution Status Change"


@dataclass(frozen=True)
class Route:
    rule: str  # logical id of the rule
    pattern: dict[str, Any]  # resolved
    function: str  # logical id (= the local function name)
    queue: str | None  # logical id of the queue in between, if any
    delay_seconds: float


@dataclass
class Delivery:
    rule: str
    function: str
    event: dict[str, Any]
    payload: dict[str, Any]
    errored: bool
    waited_seconds: float


def _millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def status_change_event(description: Mapping[str, Any], region: str, account: str) -> dict[str, Any]:
    """The EventBridge event AWS publishes for an execution that reached ``description['status']``."""
    detail = {
        "executionArn": description["executionArn"],
        "stateMachineArn": description["stateMachineArn"],
        "name": description.get("name"),
        "status": description["status"],
        "startDate": _millis(description.get("startDate")),
        "stopDate": _millis(description.get("stopDate")),
        "input": description.get("input"),
        "output": description.get("output"),
        "error": description.get("error"),
        "cause": description.get("cause"),
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.states",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [description["executionArn"]],
        "detail": detail,
    }


def _get_att(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
        value = node["Fn::GetAtt"]
        return str(value[0] if isinstance(value, list) else str(value).split(".")[0])
    return None


def routes(template: Mapping[str, Any], resolve: Callable[[str, str | None], str]) -> list[Route]:
    """The function each EventBridge rule of the template reaches (directly, or through a queue's mapping)."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    found: list[Route] = []
    for rule_id, rule in resources.items():
        if rule["Type"] != "AWS::Events::Rule" or "EventPattern" not in rule.get("Properties", {}):
            continue
        properties = rule["Properties"]
        if properties.get("State", "ENABLED") != "ENABLED":
            continue
        pattern = resolve_intrinsics(properties["EventPattern"], resolve)
        for target in properties.get("Targets", []):
            target_id = _get_att(target.get("Arn"))
            if target_id is None:
                continue
            kind = resources.get(target_id, {}).get("Type")
            if kind == "AWS::Lambda::Function":
                found.append(Route(rule_id, pattern, target_id, None, 0.0))
            elif kind == "AWS::SQS::Queue":
                delay = float(resources[target_id]["Properties"].get("DelaySeconds", 0))
                for mapping in resources.values():
                    props = mapping.get("Properties", {})
                    if (
                        mapping["Type"] == "AWS::Lambda::EventSourceMapping"
                        and _get_att(props.get("EventSourceArn")) == target_id
                    ):
                        function = props["FunctionName"]["Ref"]
                        found.append(Route(rule_id, pattern, str(function), target_id, delay))
    return found


class StatusEvents:
    """Delivers the status-change event of an ended execution to the functions the template's rules route it to."""

    def __init__(
        self,
        template: Mapping[str, Any],
        resolve: Callable[[str, str | None], str],
        runtime: LambdaRuntime,
        *,
        region: str,
        account: str,
        wait_limit_seconds: float = 120.0,
    ) -> None:
        self.routes = routes(template, resolve)
        self.runtime = runtime
        self.region, self.account = region, account
        self.wait_limit_seconds = wait_limit_seconds
        self.deliveries: list[Delivery] = []

    def deliver(self, description: Mapping[str, Any]) -> list[Delivery]:
        event = status_change_event(description, self.region, self.account)
        done: list[Delivery] = []
        for route in self.routes:
            if not EventPattern(None, route.pattern).matches_event(event):  # type: ignore[arg-type]
                continue
            waited = 0.0
            payload: dict[str, Any] = event
            if route.queue is not None:
                waited = self._until_no_invocation_runs(min(route.delay_seconds, self.wait_limit_seconds))
                payload = {
                    "Records": [
                        {
                            "messageId": str(uuid.uuid4()),
                            "body": json.dumps(event),
                            "eventSource": "aws:sqs",
                            "eventSourceARN": f"arn:aws:sqs:{self.region}:{self.account}:{route.queue}",
                            "attributes": {"ApproximateReceiveCount": "1"},
                        }
                    ]
                }
            _raw, errored = self.runtime.invoke(route.function, payload)
            done.append(Delivery(route.rule, route.function, event, payload, errored, waited))
        self.deliveries.extend(done)
        return done

    def _until_no_invocation_runs(self, limit: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if all(self.runtime.idle(name) for name in self.runtime.functions):
                break
            time.sleep(0.05)
        return round(time.monotonic() - started, 3)
