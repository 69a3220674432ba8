"""The `make chaos` table, the failure details, and the totals JSON (its last line)."""

from __future__ import annotations

import json
from typing import Any

from .model import Outcome

COLUMNS = (("#", 3), ("scenario", 44), ("fault", 44), ("expected", 48), ("observed", 50), ("result", 6))
LEGEND = (
    "counts: obj objects, cp copied, skip skipped, fail failed, todo not attempted, refresh credential refreshes; "
    "TEA = requests to /s3credentials (expected: exact or bound)"
)


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(outcomes: list[Outcome]) -> str:
    header = " ".join(name.ljust(width) for name, width in COLUMNS)
    lines = [LEGEND, header, "-" * len(header)]
    for index, outcome in enumerate(outcomes, start=1):
        observed = outcome.observed
        if outcome.notes:
            observed += " | " + "; ".join(outcome.notes)
        cells = (
            str(index),
            outcome.scenario_id,
            outcome.fault,
            outcome.expected,
            observed,
            "PASS" if outcome.passed else "FAIL",
        )
        lines.append(
            " ".join(_cut(cell, width).ljust(width) for cell, (_name, width) in zip(cells, COLUMNS, strict=True))
        )
    return "\n".join(lines)


def details(outcomes: list[Outcome], everything: bool = False) -> str:
    """Every failed scenario (every scenario if ``everything``) in full: what went wrong, what the operator saw."""
    lines: list[str] = []
    for outcome in outcomes:
        if outcome.passed and not everything:
            continue
        lines.append(f"{'PASS' if outcome.passed else 'FAIL'} {outcome.scenario_id} ({outcome.seconds:.1f} s)")
        lines.append(f"  fault:    {outcome.fault}")
        lines.append(f"  expected: {outcome.expected}")
        lines.append(f"  observed: {outcome.observed}")
        if outcome.message:
            lines.append(f"  message:  {outcome.message}")
        for note in outcome.notes:
            lines.append(f"  measured: {note}")
        for problem in outcome.problems:
            lines.append(f"  problem:  {problem}")
    return "\n".join(lines)


def totals(outcomes: list[Outcome]) -> dict[str, Any]:
    return {
        "scenarios": len(outcomes),
        "passed": sum(1 for o in outcomes if o.passed),
        "lost": sum(o.invariants.lost for o in outcomes),
        "corrupt": sum(o.invariants.corrupt for o in outcomes),
        "leaked": sum(o.invariants.leaked for o in outcomes),
        "orphan_uploads": sum(o.invariants.orphan_uploads for o in outcomes),
        "missing_vs_expected": sum(o.invariants.missing_vs_expected for o in outcomes),
    }


def last_line(outcomes: list[Outcome]) -> str:
    return json.dumps(totals(outcomes))
