"""The stack as ``cdk synth`` builds it from cdk.json: what the local engine deploys and what
``teacopy validate`` checks an input against.

One source of truth: the synthesized CloudFormation template. ``cdk.out/TeacopyStack.template.json`` is
used when it is newer than cdk.json and the code that builds it (``stacks/``, ``lambdas/``); otherwise the
app is synthesized in-process (``stacks.teacopy_stack.build_app``, about 5-10 s, once per process). The
Plan step's settings are then ``PlanSettings.from_env`` of the Plan function's environment in that
template — exactly what the deployed function reads at cold start (its resource names faked offline).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from lambdas.contracts.settings import PlanSettings
from stacks.template_tools import dummy_resolver, resolve_intrinsics

from .errors import LocalRunError

REPO = Path(__file__).resolve().parents[1]
CDK_JSON = REPO / "cdk.json"
DEFAULT_TEMPLATE = REPO / "cdk.out" / "TeacopyStack.template.json"
PLAN_FUNCTION = "PlanFunction"  # stacks.teacopy_stack.LOGICAL_IDS["plan"]
_SOURCES = (REPO / "stacks", REPO / "lambdas")


class TemplateUnavailable(LocalRunError):
    """No template can be read or synthesized (the message says what to do)."""


def _newest_source() -> float:
    newest = CDK_JSON.stat().st_mtime if CDK_JSON.exists() else 0.0
    for root in _SOURCES:
        for path in root.rglob("*.py"):
            newest = max(newest, path.stat().st_mtime)
    return newest


def is_current(path: Path = DEFAULT_TEMPLATE) -> bool:
    """The template exists and is newer than cdk.json and every file under stacks/ and lambdas/."""
    return path.is_file() and path.stat().st_mtime >= _newest_source()


def load_template(path: str | Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise TemplateUnavailable(
            f"cannot read the template {path}: {exc.strerror} (run `make synth`, or leave out --template)"
        ) from exc
    except ValueError as exc:
        raise TemplateUnavailable(f"{path} is not a CloudFormation template (JSON): {exc}") from exc


@cache
def synthesize() -> dict[str, Any]:
    """The app of cdk.json, synthesized in-process (cdk-nag on, like ``cdk synth``)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from jsii.errors import JSIIError

    from stacks.teacopy_stack import STACK_ID, build_app

    with tempfile.TemporaryDirectory(prefix="teacopy-synth-") as outdir:
        try:
            assembly = build_app(outdir=outdir, cfn_validation=False).synth()
        except (OSError, RuntimeError, JSIIError) as exc:  # node missing, a jsii failure, a cdk-nag finding
            raise TemplateUnavailable(f"cannot synthesize the stack from cdk.json: {exc}".splitlines()[0]) from exc
        return load_template(assembly.get_stack_by_name(STACK_ID).template_full_path)


def current_template(path: str | Path | None = None, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``path`` if given; else cdk.out's template when current; else the app synthesized in-process."""
    if path is not None:
        return load_template(path)
    if is_current(DEFAULT_TEMPLATE):
        return load_template(DEFAULT_TEMPLATE)
    if note is not None:
        why = "is older than cdk.json or the code" if DEFAULT_TEMPLATE.exists() else "does not exist"
        note(f"{DEFAULT_TEMPLATE.relative_to(REPO)} {why}: synthesizing the stack from cdk.json (about 10 s)")
    return synthesize()


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    """A function's environment in the template, references resolved to offline stand-ins."""
    try:
        props = template["Resources"][logical_id]["Properties"]
    except KeyError as exc:
        raise TemplateUnavailable(f"the template has no function {logical_id}: is it a teacopy template?") from exc
    variables = props.get("Environment", {}).get("Variables", {})
    resolved = resolve_intrinsics(variables, dummy_resolver(template))
    return {str(k): str(v) for k, v in resolved.items()}


def plan_settings(template: dict[str, Any]) -> PlanSettings:
    """The Plan step's settings, as its Lambda reads them from its environment."""
    return PlanSettings.from_env(function_environment(template, PLAN_FUNCTION))
