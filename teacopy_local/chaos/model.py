"""Scenario, expectation and outcome types, the registry, and running one scenario."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..engine import RunResult
from . import invariants
from .world import World, WorldSpec

logger = logging.getLogger(__name__)
COUNT_NAMES = ("objects", "copied", "skipped", "failed", "not_attempted", "credential_refreshes")
# Short names in the table (the legend is printed above it).
SHORT = {
    "objects": "obj",
    "copied": "cp",
    "skipped": "skip",
    "failed": "fail",
    "not_attempted": "todo",
    "credential_refreshes": "refresh",
}


def _counts(counts: Mapping[str, int], always: tuple[str, ...] = ()) -> list[str]:
    return [f"{SHORT.get(k, k)}={v}" for k, v in counts.items() if v or k in always]


@dataclass(frozen=True)
class Expected:
    """What the issue demands of a scenario: final status, error name, message fragments, counts, TEA calls."""

    status: str = "SUCCEEDED"
    error: str | None = None
    message: tuple[str, ...] = ()  # fragments of the message the operator sees (all must appear)
    counts: Mapping[str, int] = field(default_factory=dict)  # report/output counts that must match exactly
    tea_max: int = 1  # TEA calls at most (the bound)
    tea_min: int = 0

    def describe(self) -> str:
        parts = [self.status]
        if self.error:
            parts.append(self.error)
        parts += _counts(self.counts, tuple(self.counts))
        tea = f"TEA={self.tea_max}" if self.tea_min == self.tea_max else f"TEA<={self.tea_max}"
        parts.append(tea)
        parts += [repr(m) for m in self.message]
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    name: str
    category: str  # credentials | tea | s3 | workers | input | load
    fault: str  # what is injected, in words
    expected: Expected
    body: Callable[[World], RunResult | None]
    world: WorldSpec = field(default_factory=WorldSpec)
    slow: bool = False  # not in `make test` by default (make chaos runs it)
    load: bool = False  # the load scenario: make chaos only

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass
class Observed:
    status: str
    error: str | None
    message: str
    counts: dict[str, int]
    tea: int

    def describe(self) -> str:
        parts = [self.status]
        if self.error:
            parts.append(self.error)
        parts += _counts(self.counts, ("copied", "failed"))
        parts.append(f"TEA={self.tea}")
        return " ".join(parts)


@dataclass
class Outcome:
    scenario_id: str
    category: str
    name: str
    fault: str
    expected: str
    observed: str
    message: str  # what the operator saw (error message), if anything
    notes: list[str]
    problems: list[str]
    invariants: invariants.InvariantReport
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.problems


SCENARIOS: list[Scenario] = []


def scenario(
    name: str,
    category: str,
    fault: str,
    expected: Expected,
    world: WorldSpec | None = None,
    slow: bool = False,
    load: bool = False,
) -> Callable[[Callable[[World], RunResult | None]], Callable[[World], RunResult | None]]:
    """Register a scenario (decorator). The body sets up faults and data, runs, and returns the run."""

    def register(body: Callable[[World], RunResult | None]) -> Callable[[World], RunResult | None]:
        if any(s.name == name for s in SCENARIOS):
            raise ValueError(f"duplicate scenario name {name!r}")
        SCENARIOS.append(Scenario(name, category, fault, expected, body, world or WorldSpec(), slow, load))
        return body

    return register


def operator_message(result: RunResult | None) -> str:
    """The message an operator sees for a failed execution (the error's message, else the cause)."""
    if result is None or not result.cause:
        return ""
    try:
        cause = json.loads(result.cause)
    except json.JSONDecodeError:
        return result.cause
    if isinstance(cause, dict) and isinstance(cause.get("errorMessage"), str):
        return str(cause["errorMessage"])
    return result.cause


def observe(result: RunResult | None, world: World) -> Observed:
    if result is None:
        return Observed("NOT-RUN", None, "", {}, world.tea.requests)
    source = result.report or result.output or {}
    counts = {k: int(source[k]) for k in COUNT_NAMES if isinstance(source.get(k), int)}
    return Observed(result.status, result.error, operator_message(result), counts, world.tea.requests)


def compare(expected: Expected, observed: Observed) -> list[str]:
    problems = []
    if observed.status != expected.status:
        problems.append(f"status {observed.status}, expected {expected.status}")
    if observed.error != expected.error:
        problems.append(f"error {observed.error}, expected {expected.error}")
    for fragment in expected.message:
        if fragment not in observed.message:
            problems.append(f"message lacks {fragment!r}")
    for name, value in expected.counts.items():
        if observed.counts.get(name) != value:
            problems.append(f"{name}={observed.counts.get(name)}, expected {value}")
    if not expected.tea_min <= observed.tea <= expected.tea_max:
        bound = f"{expected.tea_min}..{expected.tea_max}" if expected.tea_min else f"<= {expected.tea_max}"
        problems.append(f"TEA calls {observed.tea}, expected {bound}")
    return problems


def run_scenario(scenario: Scenario, template: dict[str, Any]) -> Outcome:
    """Build the scenario's world, run it, compare with the expectation, check every invariant."""
    started = time.monotonic()
    problems: list[str] = []
    result: RunResult | None = None
    with World(template, scenario.world, name=scenario.name) as world:
        try:
            result = scenario.body(world)
        except (ClientError, BotoCoreError, TimeoutError, RuntimeError, KeyError, ValueError, OSError) as exc:
            problems.append(f"scenario crashed: {type(exc).__name__}: {exc}")
            logger.exception("scenario %s crashed", scenario.id)
        observed = observe(result, world)
        problems += compare(scenario.expected, observed)
        problems += world.problems
        report = invariants.check(world, None, [observed.message])  # the TEA bound is part of `compare`
        problems += report.problems
        return Outcome(
            scenario_id=scenario.id,
            category=scenario.category,
            name=scenario.name,
            fault=scenario.fault,
            expected=scenario.expected.describe(),
            observed=observed.describe(),
            message=observed.message,
            notes=list(world.notes),
            problems=problems,
            invariants=report,
            seconds=time.monotonic() - started,
        )
