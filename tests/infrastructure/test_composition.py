"""The stack is a composition: each workflow step's construct owns its function and the task state(s) invoking it.

Read from the construct tree (no synth): a Lambda task created by the workflow, or a function created
outside a step, would put a step's parts back into the wiring.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import IConstruct

from stacks.constructs.steps.base import LambdaStep
from stacks.teacopy_stack import STACK_ID, TeacopyStack, build_app
from tests.conftest import SYNTH_CONTEXT_OVERRIDES

# step construct id -> the states whose Lambda task it owns
STEP_STATES = {
    "Plan": {"Plan"},
    "Credentials": {"FetchCredentials", "RefreshCredentials"},
    "CopyBatch": {"CopyBatch"},
    "Summarize": {"Summarize"},
}
# Lambda steps outside the state machine (no task state): the clean-up after a run that ended without Summarize
OUTSIDE_STEPS = {"Cleanup"}


@pytest.fixture(scope="module")
def stack() -> TeacopyStack:
    app = build_app(SYNTH_CONTEXT_OVERRIDES, nag=False, cfn_validation=False)
    built = app.node.find_child(STACK_ID)
    assert isinstance(built, TeacopyStack)
    return built


def of_kind(scope: IConstruct, kind: type) -> list[Any]:
    return [c for c in scope.node.find_all() if isinstance(c, kind)]


def test_one_step_construct_per_lambda_step(stack: TeacopyStack) -> None:
    steps = [c for c in stack.node.children if isinstance(c, LambdaStep)]
    assert {step.node.id for step in steps} == set(STEP_STATES) | OUTSIDE_STEPS
    functions = of_kind(stack, lambda_.Function)
    assert len(functions) == len(STEP_STATES) + len(OUTSIDE_STEPS)
    for step in steps:
        owned = of_kind(step, lambda_.Function)
        assert owned == [step.function], step.node.id


def test_each_step_owns_the_tasks_that_invoke_its_function(stack: TeacopyStack) -> None:
    all_tasks = of_kind(stack, tasks.LambdaInvoke)
    assert {task.state_id for task in all_tasks} == set().union(*STEP_STATES.values())
    for step_id, states in STEP_STATES.items():
        step = stack.node.find_child(step_id)
        owned = of_kind(step, tasks.LambdaInvoke)
        assert {task.state_id for task in owned} == states, step_id


def test_the_workflow_only_wires(stack: TeacopyStack) -> None:
    assert of_kind(stack.workflow, tasks.LambdaInvoke) == []
    assert of_kind(stack.workflow, lambda_.Function) == []
