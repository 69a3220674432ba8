"""Plan and Summarize continuing across invocations, end to end: the synthesized state machine's PlanningDone
and SummaryDone loops in the local engine, with budgets shrunk to one page / one batch per invocation.

Nothing lost, nothing counted twice: the destination is compared byte for byte with what the test seeded,
and report.csv lists each seeded object exactly once.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.contracts import env_names, staging
from lambdas.reporting import render as reports
from stacks.logical_ids import LOGICAL_IDS
from teacopy_local.cmr_emulator import EmulatedFile
from tests.e2e.test_sources_e2e import DEST, PUBLIC, SOURCE, assert_no_secrets, dest_objects, engine_for, seed

pytestmark = pytest.mark.e2e

SHRUNK = {
    env_names.PLAN_BUDGET_SECONDS: "0",  # every Plan invocation stops after one CMR page (4 granules)
    env_names.SUMMARY_BUDGET_SECONDS: "0",  # every Summarize invocation stops after one batch
    env_names.BATCH_MAX_OBJECTS: "3",
}


def test_planning_and_summarizing_continue_and_lose_nothing(synth: Any) -> None:
    with engine_for(synth, SHRUNK) as (engine, tea, cmr):
        concept = cmr.add_collection("CONT-E2E", "1")
        expected: dict[str, bytes] = {}  # destination key -> the bytes seeded at the source
        day = datetime(2024, 3, 1, tzinfo=UTC)
        shared = seed(engine, ["ancillary/land-mask.nc"], PUBLIC)["ancillary/land-mask.nc"]
        expected["cont/ancillary/land-mask.nc"] = shared
        for index in range(13):
            key = f"granules/{index:03d}.nc"
            body = seed(engine, [key])[key]
            expected[f"cont/{key}"] = body
            files = [EmulatedFile(SOURCE, key, len(body))]
            if index % 4 == 1:  # one file named by several granules, on different pages: copied once
                files.append(EmulatedFile(PUBLIC, "ancillary/land-mask.nc", len(shared)))
            cmr.add_granule(concept, f"G{index}", files, begin=day + timedelta(days=index))
        job = {
            "source": {"cmr": {"collection_concept_id": concept}},
            "destination": {"bucket": DEST, "prefix": "cont/"},
        }
        result = engine.run(job, name="continued", timeout=300)

        assert result.status == "SUCCEEDED", (result.error, result.cause)
        invocations = engine.runtime.invocations
        assert invocations[LOGICAL_IDS["plan"]] == 4  # 13 granules, 4 per page
        s3 = engine.client("s3")
        bucket = engine.deployment.staging_bucket
        plan = staging.get_json(s3, bucket, staging.plan_key("continued"))
        assert plan["planning"]["invocations"] == 4 and plan["source_stats"]["duplicates_skipped"] == 2
        batches = plan["batches"]
        assert batches >= 5
        assert invocations[LOGICAL_IDS["summarize"]] == batches + 1  # one batch each, then the report
        states = [e["stateEnteredEventDetails"]["name"] for e in engine.history(result.execution_arn)
                  if e["type"].endswith("StateEntered")]  # fmt: skip
        assert states.count("Plan") == 4 and states.count("PlanningDone") == 4
        # the parent's history per loop round (README "Limits": 25,000 events per execution)
        events = engine.history(result.execution_arn)
        kinds = [e["type"] for e in events]
        # 7 events per Plan or Summarize round (Task entered, Lambda scheduled/started/succeeded, Task exited,
        # Choice entered/exited), a fixed dozen for the map and the ends: MAX_*_INVOCATIONS (1,000 each) fit
        assert len(kinds) == 7 * (4 + batches + 1) + 17, kinds
        assert kinds.count("MapRunStarted") == 1  # the children's events are not in the parent's history
        assert states.count("Summarize") == batches + 1 and states[-1] == "RunSummarized"

        # nothing lost: every seeded object is at the destination, byte for byte, and nothing else is
        assert dest_objects(engine, "cont/") == expected
        # nothing counted twice: the counts and report.csv against the seeded set
        out = result.output
        assert out is not None
        assert (out["objects"], out["copied"], out["failed"], out["not_attempted"]) == (14, 14, 0, 0), out
        assert out["bytes"] == sum(len(body) for body in expected.values())
        body = s3.get_object(Bucket=bucket, Key=reports.csv_key("continued"))["Body"].read().decode()
        rows = list(csv.DictReader(io.StringIO(body)))
        assert sorted(r["dest_key"] for r in rows) == sorted(expected)
        report = result.report
        assert report is not None and report["summary_invocations"] == batches + 1
        # the scratch files of both loops are gone
        assert list(staging.list_keys(s3, bucket, staging.planning_prefix("continued"))) == []
        assert list(staging.list_keys(s3, bucket, staging.summary_prefix("continued"))) == []
        assert_no_secrets(engine, tea, result)
