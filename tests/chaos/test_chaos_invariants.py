"""The invariant checks are not vacuous: each one reports a planted violation."""

from __future__ import annotations

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

        s3, dest = world.s3(), world.dest
        s3.put_object(Bucket=dest, Key="chaos/p/a.nc", Body=b"not the source bytes")  # corrupt
        s3.put_object(Bucket=dest, Key="chaos/p/extra.nc", Body=b"nobody asked")  # unexpected
        s3.delete_object(Bucket=dest, Key="chaos/p/b.nc")  # lost
        s3.create_multipart_upload(Bucket=dest, Key="chaos/p/half.nc")  # orphan
        secret = world.secrets()[-1]  # the last session token TEA issued
        logging.getLogger("planted").warning("oops %s", secret)  # leaked (a captured log line)

        report = invariants.check(world, tea_bound=0)
        assert (report.corrupt, report.lost, report.orphan_uploads) == (2, 1, 1)
        assert report.leaked >= 1
        joined = "\n".join(report.problems)
        for fragment in ("differs from its source", "unexpected object", "absent", "incomplete multipart", "secrets"):
            assert fragment in joined
        assert "more than the bound 0" in joined
