"""Shared fixtures. ``synth``: the app synthesized once per session, in-process, cdk-nag on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# cdk.json's teacopy context plus a prefixed destination and a manifest bucket, so the IAM scoping
# of prefixes and of Plan's manifest reads is exercised too.
SYNTH_CONTEXT_OVERRIDES: dict[str, Any] = {
    "destinations": [
        {"bucket": "my-earthdata-copy", "prefix": ""},
        {"bucket": "teacopy-archive", "prefix": "podaac/"},
    ],
    "manifest_buckets": ["teacopy-manifests"],
    # a second DAAC: its buckets are read with credentials from its own TEA (tests/e2e/test_multi_daac.py)
    "tea_endpoints": [
        {
            "name": "nsidc",
            "endpoint": "https://data.nsidc.earthdatacloud.nasa.gov",
            "buckets": ["nsidc-cumulus-prod-protected"],
        }
    ],
    # one incremental (CMR) and one plain schedule: the template tests check both
    "schedules": [
        {
            "name": "nightly-mur",
            "expression": "cron(0 3 * * ? *)",
            "timezone": "UTC",
            "incremental": True,
            "input": {
                "source": {"cmr": {"collection_concept_id": "C1996881146-POCLOUD"}},
                "destination": {"bucket": "my-earthdata-copy", "prefix": "mur/"},
            },
        },
        {
            "name": "weekly-list",
            "expression": "rate(7 days)",
            "enabled": False,
            "input": {
                "source": {"bucket": "podaac-ops-cumulus-protected", "manifest": "s3://teacopy-manifests/weekly.txt"},
                "destination": {"bucket": "teacopy-archive", "prefix": "podaac/weekly/"},
            },
        },
    ],
}


@dataclass(frozen=True)
class Synth:
    template: dict[str, Any]  # the TeacopyStack CloudFormation template
    template_path: Path
    outdir: Path  # the cloud assembly (validation-report.json, assets)
    config: Any  # stacks.config.TeacopyConfig the stack was built from


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from stacks.teacopy_stack import STACK_ID, build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    # CDK's built-in CloudFormation validation only warns and costs ~4 s: test_stack runs cfn-lint instead.
    app = build_app(SYNTH_CONTEXT_OVERRIDES, outdir=str(outdir), cfn_validation=False)
    config = app.node.find_child(STACK_ID).config  # type: ignore[attr-defined]
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged finding
    template_path = Path(assembly.get_stack_by_name(STACK_ID).template_full_path)
    template = json.loads(template_path.read_text(encoding="utf-8"))
    return Synth(template=template, template_path=template_path, outdir=outdir, config=config)
