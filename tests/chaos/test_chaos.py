"""The chaos suite's fault scenarios, run by pytest over the same table `make chaos` prints.

Fast scenarios run in `make test`; the slow ones (Step Functions retry intervals, long waits) are
marked ``slow`` and skipped unless TEACOPY_CHAOS_SLOW=1 — `make chaos` runs them all, plus the
10,000-object load scenario, which never runs under pytest.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from teacopy_local.chaos import report
from teacopy_local.chaos.model import run_scenario
from teacopy_local.chaos.scenarios import SCENARIOS
from teacopy_local.chaos.world import CHAOS_CONTEXT

pytestmark = pytest.mark.e2e
RUN_SLOW = os.environ.get("TEACOPY_CHAOS_SLOW") == "1"
SKIP_SLOW = pytest.mark.skipif(not RUN_SLOW, reason="slow: `make chaos` runs it (or TEACOPY_CHAOS_SLOW=1)")


def _params() -> list[Any]:
    params = []
    for scenario in SCENARIOS:
        if scenario.load:
            continue  # make chaos only
        marks = [pytest.mark.slow, SKIP_SLOW] if scenario.slow else []
        params.append(pytest.param(scenario, id=scenario.id, marks=marks))
    return params


def test_the_table_is_big_enough_and_covers_every_category() -> None:
    from teacopy_local.chaos.bad_inputs import BAD_INPUTS

    categories = {s.category for s in SCENARIOS}
    assert categories == {"credentials", "tea", "s3", "workers", "load"}
    assert len(BAD_INPUTS) >= 25
    assert len(SCENARIOS) + len(BAD_INPUTS) >= 40
    assert len({s.id for s in SCENARIOS} | {c.id for c in BAD_INPUTS}) == len(SCENARIOS) + len(BAD_INPUTS)


def test_the_test_synth_has_the_chaos_context(synth: Any) -> None:
    """The scenarios assume the chaos context (a prefixed destination, a manifest bucket): same as conftest's."""
    destinations = [{"bucket": d.bucket, "prefix": d.prefix} for d in synth.config.destinations]
    assert destinations == CHAOS_CONTEXT["destinations"]
    assert list(synth.config.manifest_buckets) == CHAOS_CONTEXT["manifest_buckets"]


@pytest.mark.parametrize("scenario", _params())
def test_scenario(synth: Any, scenario: Any) -> None:
    outcome = run_scenario(scenario, synth.template)
    assert outcome.passed, "\n" + report.details([outcome])
    assert outcome.invariants.ok
