"""Plan across invocations: every source mode continues from its checkpoint, duplicates and collisions are
caught across invocations, and a crash at any point resumes to exactly the manifest one invocation stages.

Every check reads the staged manifest itself (the objects it holds, each once) against the set the test
seeded, not Plan's own counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import Destination
from lambdas.contracts.settings import PlanSettings
from lambdas.earthdata.cmr import CmrClient
from lambdas.planning import checkpoint as checkpoints
from lambdas.planning import plan as plan_module
from lambdas.planning.plan import SourceDeps, plan_job
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile

DAAC = "daac-bucket"
SETTINGS = PlanSettings(
    staging_bucket="staging",
    destinations=(Destination("dest"),),
    manifest_buckets=("lists",),
    batch_max_objects=3,
    batch_max_bytes=10**12,
    max_inline_keys=50,
    plan_budget_seconds=0,  # every invocation stops after its first page
)


class Crash(BaseException):
    """The Lambda dies (nothing in the handler can catch it)."""


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("staging", "dest", "lists", DAAC):
            client.create_bucket(Bucket=bucket)
        yield client


@pytest.fixture
def cmr() -> Iterator[CmrEmulator]:
    with CmrEmulator() as emulator:
        yield emulator


def plan_until_done(
    raw: Any, run_id: str, s3: Any, deps: SourceDeps | None = None, **settings: Any
) -> tuple[dict[str, Any], int]:
    """Invoke Plan as the state machine does (PlanningDone loops while there is a continuation)."""
    configured = PlanSettings(**{**SETTINGS.__dict__, **settings})
    for invocation in range(1, 500):
        answer = plan_job(raw, run_id, settings=configured, s3=s3, deps=deps)
        if "continuation" not in answer:
            return answer, invocation
        assert answer == {"run_id": run_id, "continuation": answer["continuation"]}
        assert answer["continuation"]["invocation"] == invocation
    raise AssertionError("planning never ended")


def staged_objects(s3: Any, run_id: str) -> list[tuple[str, str, str | None]]:
    """(bucket, key, dest_key) of every object of the staged manifest, in order (a list: repeats would show)."""
    batches = staging.get_json(s3, "staging", staging.manifest_key(run_id))
    return [(b["source_bucket"], o["key"], o.get("dest_key")) for b in batches for o in b["objects"]]


def assert_clean(s3: Any, run_id: str) -> None:
    """Nothing of the planning is left behind: no checkpoint files, no open upload in the staging bucket."""
    assert list(staging.list_keys(s3, "staging", staging.planning_prefix(run_id))) == []
    assert s3.list_multipart_uploads(Bucket="staging").get("Uploads", []) == []


def add_granules(cmr: CmrEmulator, count: int, shared_every: int = 0) -> tuple[str, set[tuple[str, str]]]:
    """``count`` granules with one file each; every ``shared_every``-th also names one shared file."""
    concept = cmr.add_collection("CONT", "1")
    expected: set[tuple[str, str]] = set()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for index in range(count):
        files = [EmulatedFile(DAAC, f"g/{index:04d}.nc", 100 + index)]
        if shared_every and index % shared_every == shared_every - 1:
            files.append(EmulatedFile(DAAC, "shared/land-mask.nc", 7))
        cmr.add_granule(concept, f"G{index}", files, begin=start + timedelta(hours=index))
        expected.update((f.bucket, f.key) for f in files)
    return concept, expected


def test_cmr_source_continues_page_by_page_and_copies_a_shared_file_once(s3: Any, cmr: CmrEmulator) -> None:
    concept, expected = add_granules(cmr, 23, shared_every=5)  # the shared file is named on pages 2, 3, 5, 6
    raw = {"source": {"cmr": {"collection_concept_id": concept}}, "destination": {"bucket": "dest"}}
    deps = SourceDeps(cmr=CmrClient(cmr.url, page_size=4, sleep=lambda _s: None))
    answer, invocations = plan_until_done(raw, "run-cmr", s3, deps)
    assert invocations == 6  # 23 granules, 4 per page, one page per invocation
    staged = staged_objects(s3, "run-cmr")
    assert len(staged) == len(set(staged)) == len(expected) == answer["objects"]
    assert {(b, k) for b, k, _d in staged} == expected
    plan = staging.get_json(s3, "staging", staging.plan_key("run-cmr"))
    assert plan["planning"]["invocations"] == 6
    assert plan["source_stats"]["duplicates_skipped"] == 3 and plan["source_stats"]["granules"] == 23
    assert plan["source_stats"]["pages"] == 6 and plan["source_stats"]["hits"] == 23
    # the CMR-Search-After of one invocation's last page is what the next one sent
    afters = [r.search_after for r in cmr.requests if r.path.endswith("granules.umm_json")]
    assert afters[0] is None and all(afters[1:]) and len(set(afters)) == 6
    assert_clean(s3, "run-cmr")
    # a retry of the last invocation (its answer lost) answers the same, from plan.json
    assert plan_job(raw, "run-cmr", settings=SETTINGS, s3=s3, deps=deps) == answer


def test_collision_met_in_a_later_invocation_refuses_the_job_and_leaves_nothing(s3: Any, cmr: CmrEmulator) -> None:
    concept = cmr.add_collection("COLL", "1")
    day = datetime(2024, 1, 1, tzinfo=UTC)
    for index in range(9):  # g/0008.nc and h/0008.nc map to the same basename, four pages apart
        cmr.add_granule(concept, f"G{index}", [EmulatedFile(DAAC, f"g/{index:04d}.nc", 1)], begin=day)
    cmr.add_granule(concept, "late", [EmulatedFile(DAAC, "h/0000.nc", 1)], begin=day)
    raw = {
        "source": {"cmr": {"collection_concept_id": concept}},
        "destination": {"bucket": "dest", "key_mapping": "basename"},
    }
    deps = SourceDeps(cmr=CmrClient(cmr.url, page_size=2, sleep=lambda _s: None))
    with pytest.raises(InvalidInput, match="which an earlier object also maps to"):
        plan_until_done(raw, "run-collide", s3, deps)
    assert checkpoints.load(s3, "staging", "run-collide") is None
    assert list(staging.list_keys(s3, "staging", "runs/")) == []
    assert_clean(s3, "run-collide")


@pytest.mark.parametrize("mode", ["keys", "manifest", "prefix"])
def test_every_source_mode_continues(s3: Any, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(plan_module, "ENTRIES_PER_PAGE", 4)
    monkeypatch.setattr(plan_module, "LIST_PAGE_SIZE", 4)
    keys = [f"p/{index:02d}.nc" for index in range(14)]
    deps = None
    if mode == "keys":
        source: dict[str, Any] = {"bucket": DAAC, "keys": keys}
    elif mode == "manifest":
        s3.put_object(Bucket="lists", Key="m.txt", Body="\n".join(keys + [f"q/{i}.nc" for i in range(3)]).encode())
        source = {"bucket": DAAC, "manifest": "s3://lists/m.txt", "exclude": ["q/*"]}
    else:
        for key in [*keys, "p/README.txt"]:
            s3.put_object(Bucket=DAAC, Key=key, Body=b"x")
        source = {"bucket": DAAC, "prefix": "p/", "include": ["*.nc"]}
        deps = SourceDeps(clients=_Clients(s3))
    raw = {"source": source, "destination": {"bucket": "dest", "prefix": "copy/"}}
    answer, invocations = plan_until_done(raw, f"run-{mode}", s3, deps)
    assert invocations == (5 if mode == "manifest" else 4)  # 14 (or 17) entries, 4 per page
    staged = staged_objects(s3, f"run-{mode}")
    assert [k for _b, k, _d in staged] == keys and answer["objects"] == 14
    assert answer["batches"] == 5 and len(staging.get_json(s3, "staging", staging.manifest_key(f"run-{mode}"))) == 5
    assert_clean(s3, f"run-{mode}")


class _Clients:
    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def s3_for(self, _bucket: str) -> Any:
        return self.s3

    def refreshed(self, _bucket: str) -> Any:
        return self.s3


class CrashingS3:
    """The staging client, dying at the ``at``-th call of ``operation`` (before it, or just after it)."""

    def __init__(self, s3: Any, operation: str, at: int, after: bool) -> None:
        self._s3, self.operation, self.at, self.after, self.calls = s3, operation, at, after, 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._s3, name)
        if name != self.operation:
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.at and not self.after:
                raise Crash(f"the Lambda died before {name}")
            result = attribute(**kwargs)
            if self.calls == self.at:
                raise Crash(f"the Lambda died after {name}")
            return result

        return call


@pytest.mark.slow
@pytest.mark.parametrize(
    ("operation", "at", "after"),
    [
        ("upload_part", 2, True),  # mid-planning: parts uploaded after the last checkpoint are uploaded again
        ("put_object", 4, False),  # while saving a checkpoint (its tail is written, the checkpoint is not)
        ("complete_multipart_upload", 1, True),  # completed: the retry finds it so (NoSuchUpload, the object)
    ],
)
def test_a_crash_anywhere_resumes_to_the_same_manifest(
    s3: Any, cmr: CmrEmulator, monkeypatch: pytest.MonkeyPatch, operation: str, at: int, after: bool
) -> None:
    """~11 MiB of staged manifest in 5 MiB parts, 9 invocations (one CMR page each), one crash."""
    monkeypatch.setattr(plan_module, "STAGED_PART_BYTES", 5 * 1024**2)
    count = 18_000
    collection = cmr.add_synthetic_collection("BIG", "1", count, DAAC, key_prefix="granules/" + "x" * 500 + "/")
    raw = {"source": {"cmr": {"collection_concept_id": collection.concept_id}}, "destination": {"bucket": "dest"}}
    deps = SourceDeps(cmr=CmrClient(cmr.url, page_size=2000, sleep=lambda _s: None))
    settings = PlanSettings(**{**SETTINGS.__dict__, "batch_max_objects": 100})
    crashing = CrashingS3(s3, operation, at, after)
    answers: list[dict[str, Any]] = []
    crashes = 0
    for _ in range(60):
        client = crashing if crashes == 0 else s3
        try:
            answer = plan_job(raw, "run-crash", settings=settings, s3=client, deps=deps)
        except Crash:
            crashes += 1
            continue
        answers.append(answer)
        if "continuation" not in answer:
            break
    assert crashes == 1, crashing.calls
    assert "continuation" not in answers[-1] and answers[-1]["objects"] == count
    staged = staged_objects(s3, "run-crash")
    assert staged == [(DAAC, collection.key(i, 0), None) for i in range(count)]
    manifest = s3.head_object(Bucket="staging", Key=staging.manifest_key("run-crash"))
    assert manifest["ContentLength"] > 10 * 1024**2
    assert_clean(s3, "run-crash")
    json.dumps(answers)  # every answer is a small JSON state
