"""The CopyBatch result the engine returns is the declared CopyBatchResult (the map child routes on done/refresh)."""

from __future__ import annotations

import dataclasses

from lambdas.contracts.models import CopyBatchResult, CopyOptions
from tests.integration.test_copy_engine import Env, env  # noqa: F401  (the fixture)


def test_copy_and_dry_run_results_are_copy_batch_results(env: Env) -> None:  # noqa: F811
    env.put_source("a.nc", b"abc")
    env.put_source("b.nc", b"defg")
    dry = dataclasses.replace(env.event(["a.nc", "b.nc"], batch_id="b0002"), options=CopyOptions(dry_run=True))
    dry_result = env.run(dry)
    assert CopyBatchResult.from_dict(dry_result).to_dict() == dry_result
    assert CopyBatchResult.from_dict(dry_result).would_copy == 2
    result = env.run(env.event(["a.nc", "b.nc"]))
    parsed = CopyBatchResult.from_dict(result)
    assert parsed.to_dict() == result
    assert (parsed.copied, parsed.bytes, parsed.done, parsed.refresh, parsed.would_copy) == (2, 7, True, False, None)
