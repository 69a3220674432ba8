"""`teacopy local --input`: the console examples of docs/console.md run in the local engine with synthetic
sources, and the local runs are inspected with the verbs of a deployed one (report, watch, retry-failed,
estimate --local), through the same ``main`` as the console script.

The template is the session's synthesized stack (cdk.json plus a second DAAC, ``nsidc``), so a manifest of
URLs spans two DAACs, each read with its own TEA's credentials.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from teacopy_cli.cli import main

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CONSOLE = (REPO / "docs" / "console.md").read_text(encoding="utf-8")
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", CONSOLE, flags=re.DOTALL)]


def example(predicate: Any) -> dict[str, Any]:
    return next(e for e in EXAMPLES if predicate(e))


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def local(synth: Any, runs: Path, job: dict[str, Any], name: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    path = runs.parent / f"{name}.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    code, out, err = cli(
        "local", "--input", str(path), "--template", str(synth.template_path), "--runs-dir", str(runs), "--name", name,
        "--objects", "12", "--sizes", "2KiB,40KiB", *extra,
    )  # fmt: skip
    return code, json.loads(out.strip().splitlines()[-1]), err


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def test_console_examples_run_locally_and_succeed(synth: Any, runs: Path) -> None:
    # the prefix example (include/exclude) and the CMR example (temporal range, bounding box, key template)
    prefix = example(lambda e: "prefix" in e["source"])
    code, summary, err = local(synth, runs, prefix, "console-prefix")
    assert code == 0, err
    assert summary["status"] == "SUCCEEDED"
    assert summary["objects"] == summary["copied"] == summary["verified"] == 12
    assert summary["failed"] == summary["leaked_secrets"] == 0
    assert "12/12 objects" in err  # the demo's live progress
    assert "kept by include/exclude" in err  # the listing also saw objects the patterns leave out
    assert Path(summary["report"]).is_file() and Path(summary["run_dir"], "execution.json").is_file()

    cmr = example(lambda e: "cmr" in e["source"] and "temporal" in e["source"]["cmr"])
    code, summary, err = local(synth, runs, cmr, "console-cmr")
    assert code == 0, err
    assert (summary["status"], summary["copied"], summary["verified"], summary["failed"]) == ("SUCCEEDED", 12, 12, 0)
    rows = list(csv.DictReader(io.StringIO(Path(summary["run_dir"], "report.csv").read_text(encoding="utf-8"))))
    # the destination keys follow the example's template {collection}/{year}/{doy}/{basename}
    assert len(rows) == 12
    assert all(re.fullmatch(r"cmr/SYNTHETIC-COLLECTION/2023/\d{3}/granule-\d{4}\.nc", r["dest_key"]) for r in rows), (
        rows[:2]
    )


def test_a_manifest_of_urls_spans_the_configured_daacs(synth: Any, runs: Path) -> None:
    job = example(lambda e: "manifest" in e["source"] and "bucket" not in e["source"])
    code, summary, err = local(synth, runs, job, "console-urls")
    assert code == 0, err
    assert summary["verified"] == summary["copied"] == 12
    # one bucket per configured DAAC: the default TEA's and nsidc's, each read with its own credentials
    assert set(summary["tea_requests_by_endpoint"]) == {"default", "nsidc"}
    assert all(n >= 1 for n in summary["tea_requests_by_endpoint"].values())
    assert summary["foreign_key_denials"] == 0


def test_local_runs_are_inspected_and_retried_with_the_same_verbs(synth: Any, runs: Path) -> None:
    job = example(lambda e: "keys" in e["source"] and not e.get("options"))
    keys = [
        f"MUR-JPL-L4-GLOB-v4.1/202301{day:02d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc"
        for day in range(1, 9)
    ]
    job = {**job, "source": {**job["source"], "keys": keys}}
    code, summary, err = local(synth, runs, job, "mur-local", "--missing", "2")
    assert code == 1 and summary["status"] == "FAILED" and summary["failed"] == 2
    assert "teacopy retry-failed mur-local --local" in err

    code, out, err = cli("report", "mur-local", "--runs-dir", str(runs))
    assert code == 1, err
    assert "run mur-local: FAILED" in out and "       2  source NoSuchKey" in out
    assert f"  report                {runs / 'mur-local' / 'report.html'}" in out  # a file, not s3://
    assert "retry only these: teacopy retry-failed mur-local --local" in out
    code, out, _ = cli("report", "--local", "--runs-dir", str(runs), "--json")  # the latest local run
    assert json.loads(out)["run_id"] == "mur-local"

    code, out, err = cli("retry-failed", "mur-local", "--runs-dir", str(runs), "--name", "mur-local-retry")
    assert code == 0, err
    assert "retrying 2 objects of run mur-local (2 source NoSuchKey)" in out
    retried = json.loads(out.strip().splitlines()[-1])
    assert (retried["status"], retried["objects"], retried["copied"], retried["verified"]) == ("SUCCEEDED", 2, 2, 2)
    description = json.loads((runs / "mur-local-retry" / "execution.json").read_text(encoding="utf-8"))
    assert json.loads(description["input"])["source"]["keys"] == keys[-2:]

    code, out, _ = cli("retry-failed", "mur-local-retry", "--local", "--runs-dir", str(runs))
    assert code == 4 and "nothing to retry" in _


def test_watch_follows_a_local_run_from_another_terminal(synth: Any, runs: Path) -> None:
    job = example(lambda e: e.get("options", {}).get("dry_run"))
    results: list[tuple[int, dict[str, Any], str]] = []
    runner = threading.Thread(target=lambda: results.append(local(synth, runs, job, "dry-local", "--objects", "3")))
    runner.start()
    deadline = time.monotonic() + 120
    while not (runs / "dry-local" / "execution.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    code, out, err = cli("watch", "dry-local", "--local", "--runs-dir", str(runs), "--interval", "0.1")
    runner.join(timeout=300)
    assert results and results[0][0] == 0, results
    assert code == 0, err
    assert "run dry-local: SUCCEEDED  (dry run: nothing was copied)" in out
    assert "estimate for the real run" in out
    assert "SUCCEEDED" in err.splitlines()[-1]
    code, out, _ = cli("estimate", "--execution", "dry-local", "--local", "--runs-dir", str(runs), "--json")
    assert code == 0 and json.loads(out)["objects"] == 1


def test_validate_and_local_runs_use_the_plan_settings_of_the_synthesized_stack(synth: Any) -> None:
    from teacopy_local.stack import plan_settings

    settings, config = plan_settings(synth.template), synth.config
    assert [(d.bucket, d.prefix) for d in settings.destinations] == [(d.bucket, d.prefix) for d in config.destinations]
    assert settings.manifest_buckets == config.readable_buckets
    assert (settings.max_inline_keys, settings.batch_max_objects) == (config.max_inline_keys, config.batch_max_objects)
    assert dict(settings.bucket_endpoints) == {b: e.name for e in config.tea_endpoints for b in e.buckets}


def test_idle_cost_of_the_stack(synth: Any) -> None:
    """README "Deploy": what the stack costs per month while idle; secrets, dashboard, alarms (and a KMS key
    when alarm_email makes the stack create a topic)."""
    from bench import cost

    idle = cost.idle_per_month(r["Type"] for r in synth.template["Resources"].values())
    # the test stack has a second DAAC (one more credentials cache secret) and no alarm_email
    assert idle == {
        "AWS::CloudWatch::Alarm": 0.2,
        "AWS::CloudWatch::Dashboard": 3.0,
        "AWS::SecretsManager::Secret": 1.2,
        "total": 4.4,
    }
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "$4.00 per month" in readme  # cdk.json's stack: two secrets, a dashboard, two alarms
