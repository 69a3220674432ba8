"""`make chaos`: run every fault scenario and the bad-input matrix against the synthesized workflow.

Prints one line per scenario as it finishes (stderr), then the table of scenarios with expected vs
observed outcome, the details of any failure, and as the LAST line one JSON object:
``{"scenarios": N, "passed": N, "lost": 0, "corrupt": 0, "leaked": 0, "orphan_uploads": 0,
"missing_vs_expected": 0}``.
Exit status 0 only if every scenario passed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lambdas.observability.logs import PACKAGE, local_sink

from ..engine import load_template
from . import bad_inputs, report
from .bad_inputs import BadInput
from .catalog import SCENARIOS
from .model import Outcome, Scenario, run_scenario
from .world import CHAOS_CONTEXT, World, WorldSpec


def synthesize() -> dict[str, Any]:
    """The stack synthesized in-process with the chaos context (cdk.json + CHAOS_CONTEXT), cdk-nag on."""
    import json

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

    from stacks.teacopy_stack import STACK_ID, build_app

    outdir = tempfile.mkdtemp(prefix="teacopy-chaos-cdk-")
    app = build_app(CHAOS_CONTEXT, outdir=outdir, cfn_validation=False)
    assembly = app.synth()
    path = Path(assembly.get_stack_by_name(STACK_ID).template_full_path)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m teacopy_local.chaos", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--template",
        help="a synthesized template to use (default: synthesize in-process with the chaos context; "
        "scenarios needing a prefixed destination or a manifest bucket assume it)",
    )
    parser.add_argument("--only", help="run only scenarios whose id (category/name) matches this regex")
    parser.add_argument("--fast", action="store_true", help="skip the slow scenarios (and the load run)")
    parser.add_argument("--no-load", action="store_true", help="skip the 10,000-object load scenario")
    parser.add_argument("--no-inputs", action="store_true", help="skip the bad-input matrix")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--details", action="store_true", help="print every scenario in full, not only failures")
    parser.add_argument("--verbose", action="store_true", help="show the Lambdas' log lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pattern = re.compile(args.only) if args.only else None
    scenarios = [
        s
        for s in SCENARIOS
        if (pattern is None or pattern.search(s.id))
        and not (args.fast and s.slow)
        and not ((args.no_load or args.fast) and s.load)
    ]
    cases = [] if args.no_inputs else [c for c in bad_inputs.BAD_INPUTS if pattern is None or pattern.search(c.id)]
    if args.list:
        for s in scenarios:
            print(f"{s.id:50} {'slow ' if s.slow else ''}{s.fault}")
        for c in cases:
            print(f"{c.id:50} {c.expected()}")
        return 0
    with _log_output(args.verbose):
        return _run(args, scenarios, cases)


@contextmanager
def _log_output(verbose: bool) -> Iterator[None]:
    """``--verbose``: the Lambdas' log lines on stderr as CloudWatch would get them (JSON, with their run and
    batch ids), every other record as plain text. Otherwise nothing (not even Python's last-resort output)."""
    if not verbose:
        logging.getLogger().addHandler(logging.NullHandler())
        yield
        return
    plain = logging.StreamHandler(sys.stderr)
    plain.addFilter(lambda record: not (record.name == PACKAGE or record.name.startswith(PACKAGE + ".")))
    logging.getLogger().addHandler(plain)
    with local_sink(lambda line: print(line, file=sys.stderr)):
        yield


def _run(args: argparse.Namespace, scenarios: list[Scenario], cases: list[BadInput]) -> int:
    started = time.monotonic()
    template = load_template(args.template) if args.template else synthesize()
    print(f"teacopy chaos: {len(scenarios)} fault scenarios, {len(cases)} bad inputs", file=sys.stderr)
    outcomes: list[Outcome] = []

    def progress(outcome: Outcome) -> None:
        verdict = "PASS" if outcome.passed else "FAIL"
        print(f"  {verdict} {outcome.scenario_id} ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)

    for scenario in scenarios:
        outcomes.append(run_scenario(scenario, template))
        progress(outcomes[-1])
    if cases:
        with World(template, WorldSpec(), name="inputs") as world:
            bad_inputs.prepare(world)
            for case in cases:
                outcomes.append(bad_inputs.run_bad_input(case, world))
                progress(outcomes[-1])
    print(report.table(outcomes))
    failures = report.details(outcomes, everything=args.details)
    if failures:
        print()
        print(failures)
    print(f"\n{len(outcomes)} scenarios in {time.monotonic() - started:.0f} s")
    print(report.last_line(outcomes))
    totals = report.totals(outcomes)
    return 0 if totals["passed"] == totals["scenarios"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
