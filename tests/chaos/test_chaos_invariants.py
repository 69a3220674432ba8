"""The invariant checks are not vacuous: each one reports a planted violation."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from teacopy_local.chaos import invariants
from teacopy_local.chaos.world import World, WorldSpec

pytestmark = pytest.mark.e2e


def test_each_invariant_reports_a_planted_violation(synth: Any) -> None:
    with World(synth.template, WorldSpec(), name="planted") as world:
        keys = ["p/a.nc", "p/b.nc", "p/c.nc"]
        world.seed(keys, 1000)
        result = world.run(world.job(keys))
        assert result.status == "SUCCEEDED"
        clean = invariants.check(world, tea_bound=1)
        assert clean.ok, clean.problems
        (run,) = world.runs
        assert run.asked == 3 and len(run.expected) == 3 and set(run.expected) <= run.written

        s3, dest = world.s3(), world.dest
        s3.put_object(Bucket=dest, Key="chaos/p/a.nc", Body=b"not the source bytes")  # corrupt
        s3.put_object(Bucket=dest, Key="chaos/p/extra.nc", Body=b"nobody asked")  # unexpected
        s3.delete_object(Bucket=dest, Key="chaos/p/b.nc")  # lost
        s3.create_multipart_upload(Bucket=dest, Key="chaos/p/half.nc")  # orphan
        secret = world.secrets()[-1]  # the last session token TEA issued
        logging.getLogger("planted").warning("oops %s", secret)  # leaked (a captured log line)
        assert result.report is not None
        result.report["objects"] = 4  # a report that does not count what the job asked for

        report = invariants.check(world, tea_bound=0)
        assert (report.corrupt, report.lost, report.missing_vs_expected, report.orphan_uploads) == (2, 1, 2, 1)
        assert report.leaked >= 1
        joined = "\n".join(report.problems)
        for fragment in (
            "differs from its source",
            "unexpected object",
            "expected objects absent",
            "expected objects differ",
            "copied or skipped, 1 are at the destination",
            "report counts 4 objects, the job asked for 3",
            "incomplete multipart",
            "secrets",
            "more than the bound 0",
        ):
            assert fragment in joined, fragment


def test_the_secret_scan_covers_lambda_events_answers_map_children_and_runtime_errors(synth: Any) -> None:
    with World(synth.template, WorldSpec(), name="scan") as world:
        keys = ["s/a.nc", "s/b.nc"]
        world.seed(keys, 500)
        result = world.run(world.job(keys))
        assert result.status == "SUCCEEDED"
        engine = world.engine
        # what the scan reads is really recorded: every invocation, every map child
        assert {r.function for r in engine.runtime.records} >= {"PlanFunction", "CopyBatchFunction"}
        assert any(text.startswith("input ") and '"objects"' in text for text in engine.child_io)
        assert any(text.startswith("output ") for text in engine.child_io)
        assert invariants.check(world, tea_bound=1).ok

        secret = world.secrets()[-1]
        response = engine.client("lambda").invoke(
            FunctionName="PlanFunction", Payload=json.dumps({"input": {"source": {"bucket": secret}}, "run_id": "x"})
        )
        assert response["FunctionError"] == "Unhandled"
        engine.child_io.append(f"output {json.dumps({'credentials': secret})}")
        engine.runtime.errors.append(("CopyBatchFunction", "Sandbox.Timedout", f"dump {secret}"))
        found = engine.scan_for_secrets([secret], [result.execution_arn])
        assert any(f.startswith("event of PlanFunction") for f in found), found
        assert any(f.startswith("map child") for f in found), found
        assert any(f.startswith("runtime error Sandbox.Timedout") for f in found), found
