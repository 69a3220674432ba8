"""The bad-input matrix: each malformed execution is rejected before any copy, naming field and rule.

One world (one deployment) per worker serves every case: a rejected input must change nothing, which
``run_bad_input`` checks after each case (no TEA call, nothing staged, nothing written, no leak).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from teacopy_local.chaos import bad_inputs, report
from teacopy_local.chaos.world import World, WorldSpec

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def input_world(synth: Any) -> Iterator[World]:
    with World(synth.template, WorldSpec(), name="inputs") as world:
        bad_inputs.prepare(world)
        yield world


@pytest.mark.parametrize("case", bad_inputs.BAD_INPUTS, ids=lambda case: case.id)
def test_bad_input_is_rejected_before_any_copy(input_world: World, case: bad_inputs.BadInput) -> None:
    outcome = bad_inputs.run_bad_input(case, input_world)
    assert outcome.passed, "\n" + report.details([outcome])
    assert outcome.message.startswith(f"{case.field}: ") and case.rule in outcome.message
