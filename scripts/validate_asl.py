#!/usr/bin/env python3
"""Validate the synthesized state machine definition with the npm ``asl-validator``.

cfn-lint does not check a definition built with ``Fn::Join``; this script extracts it from the
template, resolves ``Ref``/``Fn::GetAtt``/``Fn::Join`` into dummy ARNs, writes the JSON definition to
a file and runs ``node_modules/.bin/asl-validator --json-path <file>``.

Usage::

    python -m scripts.validate_asl                       # cdk.out/TeacopyStack.template.json
    python -m scripts.validate_asl path/to/template.json --out artifacts/definition.asl.json

Exit status: 0 valid, 1 invalid, 2 cannot run (no template, no validator, bad template).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from stacks.template_tools import TemplateError, dummy_resolver, state_machine_definition

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_TEMPLATE = REPO_ROOT / "cdk.out" / "TeacopyStack.template.json"
VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"


def write_definition(template_path: Path, out: Path) -> dict:
    template = json.loads(template_path.read_text(encoding="utf-8"))
    definition = state_machine_definition(template, dummy_resolver(template))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(definition, indent=2) + "\n", encoding="utf-8")
    return definition


def run_validator(definition_file: Path, validator: Path = VALIDATOR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed executable from node_modules, our own file argument
        [str(validator), "--json-path", str(definition_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE, help="CloudFormation template")
    parser.add_argument("--out", type=Path, help="where to write the resolved definition (default: a temp file)")
    args = parser.parse_args(argv)

    if not args.template.is_file():
        print(f"no template at {args.template}: run `npx cdk synth -q` first or pass a path", file=sys.stderr)
        return 2
    if not VALIDATOR.exists():
        print(f"{VALIDATOR} is missing: run `npm ci`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "definition.asl.json"
        try:
            write_definition(args.template, out)
        except (TemplateError, ValueError, KeyError) as exc:
            print(f"{args.template}: {exc}", file=sys.stderr)
            return 2
        result = run_validator(out)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
