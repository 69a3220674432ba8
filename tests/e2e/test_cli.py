"""The `teacopy` CLI driven against the local engine (the synthesized stack in moto, Lambdas in-process).

One engine serves the module (deploying costs seconds); every test uses its own run names and
destination prefix. The CLI gets the engine through ``local_backend`` — the same Backend the AWS
path builds from the stack's outputs — so every command runs its real code path.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.contracts import env_names
from teacopy_cli.backend import Backend, local_backend
from teacopy_cli.cli import main
from teacopy_local.engine import LocalEngine
from tests.e2e.test_e2e import DEST, SOURCE, engine_for, seed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local(synth: Any) -> Iterator[tuple[LocalEngine, Backend]]:
    with engine_for(synth, env={env_names.BATCH_MAX_OBJECTS: "3"}) as (engine, _tea):
        yield engine, local_backend(engine)


def run_cli(backend: Backend, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), backend=backend, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def executions(engine: LocalEngine) -> list[dict[str, Any]]:
    sfn = engine.client("stepfunctions")
    return list(sfn.list_executions(stateMachineArn=engine.deployment.state_machine_arn)["executions"])


def execution_input(engine: LocalEngine, name: str) -> dict[str, Any]:
    arn = local_backend(engine).execution_arn(name)
    return dict(json.loads(engine.client("stepfunctions").describe_execution(executionArn=arn)["input"]))


def dest_keys(engine: LocalEngine, prefix: str) -> list[str]:
    listing = engine.client("s3").list_objects_v2(Bucket=DEST, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_start_validates_locally_then_starts_and_watches(local: tuple[LocalEngine, Backend]) -> None:
    engine, backend = local
    keys = [f"cli/start/{i:02d}.nc" for i in range(7)]
    seed(engine, keys)
    before = len(executions(engine))

    # an input the Plan step would reject is refused before anything is started
    code, out, err = run_cli(
        backend, "start", "--source-bucket", SOURCE, "--keys", *keys, "--dest-bucket", "not-a-destination"
    )
    assert code == 2
    assert "invalid input: destination.bucket: 'not-a-destination' is not an allowed destination" in err
    assert len(executions(engine)) == before

    code, out, err = run_cli(
        backend,
        "start",
        "--source-bucket",
        SOURCE,
        "--keys",
        *keys,
        "--dest-bucket",
        DEST,
        "--dest-prefix",
        "cli-start/",
        "--name",
        "cli-start",
        "--watch",
        "--interval",
        "0.1",
    )
    assert code == 0, err
    assert "started   cli-start" in out
    assert "console   (local engine: no console) arn:aws:states:" in out
    assert "7/7 objects" in err  # the progress bar's last line
    assert "SUCCEEDED" in err
    assert "run cli-start: SUCCEEDED" in out
    assert "  copied                7" in out
    assert execution_input(engine, "cli-start") == {
        "source": {"bucket": SOURCE, "keys": keys},
        "destination": {"bucket": DEST, "prefix": "cli-start/"},
    }
    assert dest_keys(engine, "cli-start/") == sorted(f"cli-start/{k}" for k in keys)


def test_watch_follows_a_run_started_elsewhere(local: tuple[LocalEngine, Backend]) -> None:
    engine, backend = local
    keys = [f"cli/watch/{i:02d}.nc" for i in range(12)]
    seed(engine, keys)
    gate = threading.Lock()

    def slow_batches(name: str, event: dict[str, Any]) -> None:  # one batch at a time, 0.3 s each
        if "batch" in event:
            with gate:
                time.sleep(0.3)

    engine.runtime.fault = slow_batches
    try:
        # started like the console or a schedule would: not through the CLI
        engine.start({"source": {"bucket": SOURCE, "keys": keys}, "destination": {"bucket": DEST}}, name="elsewhere")
        code, out, err = run_cli(backend, "watch", "elsewhere", "--interval", "0.1")
    finally:
        engine.runtime.fault = None
    assert code == 0, err
    lines = [line for line in err.splitlines() if "objects" in line]
    done = [int(line.split("/", 1)[0].rsplit(" ", 1)[-1]) for line in lines if "/12 objects" in line]
    assert done[-1] == 12
    assert any(0 < d < 12 for d in done), lines  # intermediate progress was shown
    assert done == sorted(done)
    last = lines[-1]
    assert "100%" in last and "failed 0" in last and "credential refreshes 0" in last and "SUCCEEDED" in last
    assert "/s" in last and "ETA" in last
    assert "run elsewhere: SUCCEEDED" in out


def test_report_table_json_csv_and_retry_only_the_failures(local: tuple[LocalEngine, Backend]) -> None:
    engine, backend = local
    present = [f"cli/retry/{i:02d}.nc" for i in range(5)]
    missing = ["cli/retry/late-a.nc", "cli/retry/late-b.nc"]
    seed(engine, present)
    keys = [*present[:2], missing[0], *present[2:], missing[1]]
    result = engine.run(
        {"source": {"bucket": SOURCE, "keys": keys}, "destination": {"bucket": DEST, "prefix": "cli-retry/"}},
        name="first-try",
        timeout=120,
    )
    assert result.status == "FAILED"  # two objects failed: over max_failed_percent 0

    code, out, _ = run_cli(backend, "report", "first-try")
    assert code == 1
    assert "run first-try: FAILED" in out
    assert "  failed                2" in out
    assert "failures by reason" in out
    assert "       2  source NoSuchKey" in out
    assert f"e.g. source NoSuchKey: s3://{SOURCE}/cli/retry/late-a.nc does not exist" in out
    assert "          cli/retry/late-a.nc\n          cli/retry/late-b.nc\n" in out

    code, out, _ = run_cli(backend, "report", "first-try", "--json")
    report = json.loads(out)
    assert (report["copied"], report["failed"], report["failures_by_reason"]) == (5, 2, {"source NoSuchKey": 2})

    code, out, _ = run_cli(backend, "report", "first-try", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert {r["key"]: r["status"] for r in rows if r["status"] == "failed"} == dict.fromkeys(missing, "failed")
    assert all(r["batch"].startswith("b") and r["recorded_at"].endswith("Z") for r in rows)

    seed(engine, missing)  # the missing objects appear at the source
    code, out, err = run_cli(
        backend, "retry-failed", "first-try", "--name", "second-try", "--watch", "--interval", "0.1"
    )
    assert code == 0, err
    assert "retrying 2 objects of run first-try (2 source NoSuchKey)" in out
    assert "run second-try: SUCCEEDED" in out
    # only the failures were rerun, into the same destination
    assert execution_input(engine, "second-try") == {
        "source": {"bucket": SOURCE, "keys": missing},
        "destination": {"bucket": DEST, "prefix": "cli-retry/"},
        "options": {"overwrite": "skip-if-identical"},
    }
    retried = json.loads(run_cli(backend, "report", "second-try", "--json")[1])
    assert (retried["objects"], retried["copied"], retried["failed"]) == (2, 2, 0)
    assert dest_keys(engine, "cli-retry/") == sorted(f"cli-retry/{k}" for k in keys)

    code, _, err = run_cli(backend, "retry-failed", "second-try")
    assert code == 4 and "nothing to retry" in err


def test_dry_run_writes_nothing_and_estimates_the_real_run(local: tuple[LocalEngine, Backend]) -> None:
    engine, backend = local
    keys = [f"cli/dry/{i:02d}.nc" for i in range(6)]
    seed(engine, keys, size=4096)
    s3 = engine.client("s3")
    before = {item["Key"] for item in s3.list_objects_v2(Bucket=DEST).get("Contents", [])}
    code, out, err = run_cli(
        backend,
        "start",
        "--source-bucket",
        SOURCE,
        "--keys",
        *keys,
        "--dest-bucket",
        DEST,
        "--dest-prefix",
        "cli-dry/",
        "--dry-run",
        "--name",
        "cli-dry",
        "--watch",
        "--interval",
        "0.1",
    )
    assert code == 0, err
    assert execution_input(engine, "cli-dry")["options"] == {"dry_run": True}
    assert "run cli-dry: SUCCEEDED  (dry run: nothing was copied)" in out
    assert "  would copy            6" in out
    assert "estimate for the real run" in out and "cost" in out
    assert "24.0 KiB" in out  # 6 x 4 KiB would be copied
    after = {item["Key"] for item in s3.list_objects_v2(Bucket=DEST).get("Contents", [])}
    assert after == before  # nothing written to the destination
    assert s3.list_multipart_uploads(Bucket=DEST).get("Uploads", []) == []

    code, out, _ = run_cli(backend, "report", "cli-dry")
    assert code == 0 and "would copy            6" in out and "estimate for the real run" in out

    code, out, _ = run_cli(backend, "estimate", "--execution", "cli-dry", "--json")
    estimate = json.loads(out)
    assert (estimate["objects"], estimate["bytes"], estimate["sizes_known"]) == (6, 6 * 4096, 6)
    assert estimate["usd"] > 0 and estimate["seconds"] > 0


def test_estimate_from_an_input_file_and_a_local_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "list.json"
    manifest.write_text(json.dumps([{"key": f"k{i}", "size": 50_000_000} for i in range(1000)]))
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "source": {"bucket": SOURCE, "manifest": "s3://my-earthdata-copy/list.json"},
                "destination": {"bucket": DEST},
            }
        )
    )
    out, err = io.StringIO(), io.StringIO()
    # no backend is needed: the sizes come from the local copy of the manifest
    code = main(["estimate", "--input", str(job), "--manifest-file", str(manifest), "--json"], out=out, err=err)
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    # batches of at most 8 GiB: 171 objects of 50 MB each
    assert (result["objects"], result["bytes"], result["batches"]) == (1000, 50_000_000_000, 6)
    # 50 MB objects are below the deployed 64 MiB threshold: one GET and one PUT each, one LIST per batch
    assert result["requests"]["data"] == {"put": 1000 + 6, "get": 1000, "free": 0}
    assert 0.01 < result["usd"] < 0.03
    assert result["storage_usd_per_month"] == pytest.approx(50e9 / 1024**3 * 0.023, rel=1e-3)

    out = io.StringIO()
    code = main(["estimate", "--source-bucket", SOURCE, "--keys", "a", "b", "--dest-bucket", DEST], out=out, err=err)
    assert code == 2 and "sizes of the 2 objects are unknown" in err.getvalue()
    code = main(["estimate", "--objects", "1000000", "--object-size", "50MB"], out=out, err=err)
    assert code == 0 and "1,000,000 (all known)" in out.getvalue()
