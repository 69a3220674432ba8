"""The chaos suite's fault scenarios, run by pytest over the same table `make chaos` prints.

Every fault scenario runs in `make test` (and so in CI); only the 10,000-object load run is left to
`make chaos`. The ``slow`` ones (Step Functions retry intervals, Lambda timeouts, an expiring lease) are
marked ``slow``: `make test-fast` (``-m "not slow"``) leaves them out.
"""

from __future__ import annotations

from typing import Any

import pytest

from teacopy_local.chaos import report
from teacopy_local.chaos.catalog import SCENARIOS
from teacopy_local.chaos.model import run_scenario
from teacopy_local.chaos.world import CHAOS_CONTEXT

pytestmark = pytest.mark.e2e


def _params() -> list[Any]:
    params = []
    for scenario in SCENARIOS:
        if scenario.load:
            continue  # make chaos only
        marks = [pytest.mark.slow] if scenario.slow else []
        params.append(pytest.param(scenario, id=scenario.id, marks=marks))
    return params


def test_the_table_is_big_enough_and_covers_every_category() -> None:
    from teacopy_local.chaos.bad_inputs import BAD_INPUTS

    categories = {s.category for s in SCENARIOS}
    assert categories == {"credentials", "tea", "s3", "workers", "staging", "limits", "load"}
    assert len(SCENARIOS) >= 60  # fault scenarios, the bad inputs aside
    assert [s.id for s in SCENARIOS if s.load] == ["load/load-10k-3-expiries-1pct-faults"]
    assert len(BAD_INPUTS) >= 25
    assert len({s.id for s in SCENARIOS} | {c.id for c in BAD_INPUTS}) == len(SCENARIOS) + len(BAD_INPUTS)


def test_every_fault_scenario_but_the_load_run_is_a_test() -> None:
    """`make test` runs them all: no scenario is skipped, only the load run is left out."""
    ids = [p.id for p in _params()]
    assert ids == [s.id for s in SCENARIOS if not s.load]
    assert all(not any(m.name == "skip" or m.name == "skipif" for m in p.marks) for p in _params())


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
