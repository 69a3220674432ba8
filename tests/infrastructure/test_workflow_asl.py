"""The state machine definition honours the error contract of ``lambdas/contracts/errors.py``.

Parsed from the synthesized template with ``stacks.template_tools`` (what is deployed, not a copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambdas.contracts import errors
from stacks.constructs.steps.base import LAMBDA_SERVICE_ERRORS
from stacks.teacopy_stack import LOGICAL_IDS
from stacks.template_tools import dummy_resolver, iter_states, referenced, state_machine_definition

REPO_ROOT = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"

# Where each retryable error can be raised: the task states invoking the Lambda that raises it.
RETRYABLE_WHERE = {
    # Plan asks the credentials function for TEA credentials to list a prefix source
    "TeaUnavailable": ("Plan", "FetchCredentials", "RefreshCredentials"),
    "RefreshInProgress": ("Plan", "FetchCredentials", "RefreshCredentials"),
    "TransientCopyError": ("Plan", "CopyBatch"),
    "CmrUnavailable": ("Plan",),
}
# Catch-all error names: a Retry on them would retry the fatal errors too.
CATCH_ALL = {"States.ALL", "States.TaskFailed"}


@pytest.fixture(scope="module")
def definition(synth: Any) -> dict[str, Any]:
    return state_machine_definition(synth.template, dummy_resolver(synth.template))


@pytest.fixture(scope="module")
def states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name (names are unique across the top level and the map child)."""
    found: dict[str, dict[str, Any]] = {}
    for path, state in iter_states(definition):
        assert path[-1] not in found, f"duplicate state name {path[-1]}"
        found[path[-1]] = state
    return found


def retried(state: dict[str, Any]) -> set[str]:
    return {name for retrier in state.get("Retry", []) for name in retrier["ErrorEquals"]}


def caught(state: dict[str, Any]) -> dict[str, str]:
    return {name: catcher["Next"] for catcher in state.get("Catch", []) for name in catcher["ErrorEquals"]}


def successors(state: dict[str, Any]) -> set[str]:
    out = {state[key] for key in ("Next", "Default") if key in state}
    out.update(choice["Next"] for choice in state.get("Choices", []))
    out.update(catcher["Next"] for catcher in state.get("Catch", []))
    return out


def lambda_tasks(states: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in states.items()
        if state["Type"] == "Task" and ":lambda:" in str(state.get("Resource", ""))
    }


def test_error_sets_name_real_exception_classes() -> None:
    for name in (*errors.REFRESH_ERRORS, *errors.RETRYABLE_ERRORS, *errors.FATAL_ERRORS):
        assert issubclass(getattr(errors, name), errors.TeacopyError), name
    groups = [set(errors.REFRESH_ERRORS), set(errors.RETRYABLE_ERRORS), set(errors.FATAL_ERRORS)]
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "an error name is in two sets"


def test_every_refresh_error_is_caught_by_copy_batch_and_routed_to_refresh(
    states: dict[str, dict[str, Any]], synth: Any
) -> None:
    credentials_arn = dummy_resolver(synth.template)(LOGICAL_IDS["credentials"], "Arn")
    routes = caught(states["CopyBatch"])
    for name in errors.REFRESH_ERRORS:
        assert name in routes, f"CopyBatch does not catch {name}"
        # Follow the graph from the catch target: it must reach a refresh of the credentials and come
        # back to CopyBatch, through nothing but Pass/Choice states.
        path, current = [], routes[name]
        while current != "CopyBatch":
            path.append(current)
            assert len(path) < 10, f"no way back to CopyBatch from {name}: {path}"
            state = states[current]
            if state["Type"] == "Choice":
                current = state["Default"]
            else:
                assert state["Type"] in {"Pass", "Task"}, (current, state["Type"])
                current = state["Next"]
        assert path == ["CountRefreshRound", "CanRefresh", "RefreshCredentials"]
        refresh = states["RefreshCredentials"]
        assert refresh["Resource"] == credentials_arn
        assert refresh["Parameters"]["action"] == "refresh"
        assert name not in retried(states["CopyBatch"]), f"{name} must be refreshed, not retried"


def test_refresh_rounds_bounded(states: dict[str, dict[str, Any]], synth: Any) -> None:
    (choice,) = states["CanRefresh"]["Choices"]
    assert choice["Variable"] == "$.refresh_round"
    assert choice["NumericGreaterThan"] == synth.config.max_refresh_rounds
    assert states[choice["Next"]]["Type"] == "Fail"
    assert "States.MathAdd($.refresh_round, 1)" in states["CountRefreshRound"]["Parameters"].values()


def test_every_retryable_error_is_retried_where_it_can_occur(states: dict[str, dict[str, Any]]) -> None:
    assert set(RETRYABLE_WHERE) == set(errors.RETRYABLE_ERRORS), "decide where a new retryable error is retried"
    for name, where in RETRYABLE_WHERE.items():
        for state_name in where:
            assert name in retried(states[state_name]), f"{state_name} does not retry {name}"


def test_no_fatal_error_is_retried(states: dict[str, dict[str, Any]]) -> None:
    for state_name, state in states.items():
        names = retried(state)
        assert not names & set(errors.FATAL_ERRORS), (state_name, names & set(errors.FATAL_ERRORS))
        assert not names & CATCH_ALL, f"{state_name} retries a catch-all, which would retry fatal errors"
        # Fatal errors are not caught by name either: they fail the child (or the run) as they are.
        assert not set(caught(state)) & set(errors.FATAL_ERRORS), state_name


def test_lambda_service_errors_retried_on_every_lambda_task(states: dict[str, dict[str, Any]]) -> None:
    tasks = lambda_tasks(states)
    assert set(tasks) == {"Plan", "FetchCredentials", "CopyBatch", "RefreshCredentials", "Summarize"}
    for name, state in tasks.items():
        assert set(LAMBDA_SERVICE_ERRORS) <= retried(state), name
        for retrier in state["Retry"]:
            assert retrier["MaxAttempts"] <= 6 and retrier["BackoffRate"] >= 1, (name, retrier)


@pytest.mark.parametrize("state", ["CopyBatch", "Plan", "FetchCredentials", "RefreshCredentials"])
def test_crashed_invocations_are_retried_a_few_times(states: dict[str, dict[str, Any]], state: str) -> None:
    # a Lambda timeout/crash of one invocation must not fail the batch (or the run) outright
    retriers = {tuple(r["ErrorEquals"]): r for r in states[state]["Retry"]}
    crash = retriers[("Sandbox.Timedout", "Lambda.Unknown")]
    assert crash["MaxAttempts"] == 2


def test_max_concurrency_matches_config(states: dict[str, dict[str, Any]], synth: Any) -> None:
    assert states["CopyObjects"]["MaxConcurrency"] == synth.config.max_concurrency


def test_task_parameters_are_objects_and_transitions_exist(definition: dict[str, Any]) -> None:
    """asl-validator accepts `"Parameters": "$"`; Step Functions does not."""
    for path, state in iter_states(definition):
        if "Parameters" in state:
            assert isinstance(state["Parameters"], dict), path
    for scope in (definition, definition["States"]["CopyObjects"]["ItemProcessor"]):
        names = set(scope["States"])
        assert scope["StartAt"] in names
        for name, state in scope["States"].items():
            assert successors(state) <= names, (name, successors(state) - names)


def test_asl_validator_accepts_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    assert ASL_VALIDATOR.exists(), f"{ASL_VALIDATOR} missing: `make setup` installs it (npm ci)"
    definition_file = tmp_path / "definition.asl.json"
    definition_file.write_text(json.dumps(definition), encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - fixed executable from node_modules, our own file
        [str(ASL_VALIDATOR), "--json-path", str(definition_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_definition_refers_only_to_the_functions_and_the_staging_bucket(synth: Any) -> None:
    """What a resolver (the local engine's, scripts/validate_asl.py's) must be able to resolve."""
    raw = synth.template["Resources"][LOGICAL_IDS["state_machine"]]["Properties"]["DefinitionString"]
    functions = {LOGICAL_IDS[key] for key in ("plan", "credentials", "copy_batch", "summarize")}
    resources = {ref for ref in referenced(raw) if not ref[0].startswith("AWS::")}  # pseudo parameters aside
    assert resources == {(f, "Arn") for f in functions} | {(LOGICAL_IDS["staging_bucket"], None)}


def test_validate_asl_script(synth: Any, tmp_path: Path) -> None:
    assert ASL_VALIDATOR.exists(), f"{ASL_VALIDATOR} missing: `make setup` installs it (npm ci)"
    out = tmp_path / "definition.asl.json"
    result = subprocess.run(  # noqa: S603 - our interpreter running our script
        [sys.executable, "-m", "scripts.validate_asl", str(synth.template_path), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["StartAt"] == "Plan"
