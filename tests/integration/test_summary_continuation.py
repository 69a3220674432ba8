"""Summarize across invocations: the same report and the same report.csv as one invocation, whatever the
number of invocations and wherever one crashes; each object counted once (its last word), checked against
the outcomes the test seeded, not against Summarize's own bookkeeping."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import CopyJobFailed
from lambdas.contracts.settings import SummarySettings
from lambdas.reporting import render as reports
from lambdas.reporting.summary import summarize

T0 = 1_790_000_000.0
VOLATILE = ("generated_at", "summary_invocations", "report_csv", "report_html", "run_id")


class Crash(BaseException):
    """The Lambda dies (nothing in the handler can catch it)."""


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="staging")
        yield client


def put_file(s3: Any, run: str, batch: str, when: float, records: list[dict[str, Any]]) -> None:
    name = f"{int(when * 1e9):020d}-00000000.json"
    staging.put_json(s3, "staging", staging.results_prefix(run, batch) + name, records)


def seed(
    s3: Any, run: str, batches: int, per_batch: int, key_pad: int = 0, unrecorded: bool = True
) -> dict[tuple[str, str], dict[str, Any]]:
    """A run whose truth the test knows: (batch, key) -> the object's last record.

    Every batch records its objects in two files; the second records again a fifth of them (a retried
    invocation): some failed first and copied then, some copied twice. The last object of every batch is never
    recorded (not attempted). Batches 1 and 2 hold the same keys (two source buckets): two objects each.
    """
    truth: dict[tuple[str, str], dict[str, Any]] = {}
    objects = 0
    for b in range(1, batches + 1):
        batch = f"b{b:06d}"
        shared = 1 if b == 2 else b
        keys = [f"k/{shared:05d}/{i:05d}{'x' * key_pad}.nc" for i in range(per_batch)]
        objects += len(keys)
        first: list[dict[str, Any]] = []
        second: list[dict[str, Any]] = []
        for i, key in enumerate(keys[:-1] if unrecorded else keys):
            if i % 5 == 0:
                first.append(
                    {"key": key, "dest_key": key, "status": "failed", "bytes": 0, "reason": "source SlowDown: x"}
                )
                second.append({"key": key, "dest_key": key, "status": "copied", "bytes": 10 + i})
            elif i % 5 == 1:
                first.append({"key": key, "dest_key": key, "status": "copied", "bytes": 10 + i})
                second.append({"key": key, "dest_key": key, "status": "skipped", "bytes": 0})
            elif i % 7 == 3:
                first.append(
                    {"key": key, "dest_key": key, "status": "failed", "bytes": 0, "reason": "source NoSuchKey: y"}
                )
            else:
                first.append({"key": key, "dest_key": key, "status": "copied", "bytes": 10 + i})
        put_file(s3, run, batch, T0 + b, first)
        put_file(s3, run, batch, T0 + b + 0.5, second)
        for record in first + second:
            truth[(batch, str(record["key"]))] = record
    plan = {"objects": objects, "destination": {"bucket": "dest"}, "options": {}, "planned_at": reports.iso(T0)}
    staging.put_json(s3, "staging", staging.plan_key(run), plan)
    return truth


def summarize_until_done(s3: Any, run: str, budget: int, client: Any = None) -> tuple[dict[str, Any], int]:
    settings = SummarySettings("staging", 100, summary_budget_seconds=budget)
    event = {"run_id": run, "outcome": {"map_failed": False}}
    for invocation in range(1, 200):
        answer = summarize(event, settings=settings, s3=client or s3)
        if "continuation" not in answer:
            return answer, invocation
        assert answer["run_id"] == run and answer["outcome"] == event["outcome"]  # what the next invocation reads
        assert answer["continuation"]["invocation"] == invocation
        event = {k: v for k, v in answer.items() if k != "continuation"}
    raise AssertionError("summarizing never ended")


def csv_rows(s3: Any, run: str) -> list[dict[str, str]]:
    body = s3.get_object(Bucket="staging", Key=reports.csv_key(run))["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


def stable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in VOLATILE}


def test_one_batch_per_invocation_gives_the_report_of_one_invocation(s3: Any) -> None:
    truth = seed(s3, "once", 7, 23, unrecorded=False)
    seed(s3, "loop", 7, 23, unrecorded=False)
    summary_once, invocations_once = summarize_until_done(s3, "once", 600)
    summary_loop, invocations_loop = summarize_until_done(s3, "loop", 0)
    assert (invocations_once, invocations_loop) == (1, 8)  # 7 batches, one each, and the one that finds no more
    once = staging.get_json(s3, "staging", staging.report_key("once"))
    loop = staging.get_json(s3, "staging", staging.report_key("loop"))
    assert stable(loop) == stable(once) and loop["summary_invocations"] == 8
    # the estimated cost is carried in the checkpoint: eight invocations price each object once, as one does
    assert loop["cost"] == once["cost"]
    assert (loop["cost"]["objects"], loop["cost"]["skipped"]) == (loop["copied"], loop["skipped"])
    assert loop["cost"]["bytes"] == loop["bytes"]
    # the counts are the seeded truth: each (batch, key) once, with its last status
    statuses = [record["status"] for record in truth.values()]
    assert loop["copied"] == statuses.count("copied") and loop["failed"] == statuses.count("failed")
    assert loop["skipped"] == statuses.count("skipped") and loop["not_attempted"] == 0
    assert loop["objects"] == len(truth) == 7 * 23  # batches 1 and 2 share their keys: still 46 objects
    assert loop["bytes"] == sum(r["bytes"] for r in truth.values() if r["status"] == "copied")
    assert summary_loop == {**summary_once, **{k: summary_loop[k] for k in ("report", "report_csv", "report_html")}}
    rows = csv_rows(s3, "loop")
    assert [(r["batch"], r["key"]) for r in rows] == sorted(truth)  # each object once, by batch then key
    assert all(r["status"] == truth[(r["batch"], r["key"])]["status"] for r in rows)
    assert csv_rows(s3, "once") == rows
    assert list(staging.list_keys(s3, "staging", staging.summary_prefix("loop"))) == []


class CrashingS3:
    def __init__(self, s3: Any, operation: str, at: int) -> None:
        self._s3, self.operation, self.at, self.calls = s3, operation, at, 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._s3, name)
        if name != self.operation:
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            result = attribute(**kwargs)
            if self.calls == self.at:
                raise Crash(f"the Lambda died after {name}")
            return result

        return call


@pytest.mark.slow
@pytest.mark.parametrize(("operation", "at"), [("upload_part", 2), ("complete_multipart_upload", 1)])
def test_report_csv_in_parts_across_invocations_survives_a_crash(s3: Any, operation: str, at: int) -> None:
    """~17 MB of report.csv (two 8 MiB parts and a tail) over 26 invocations; one crashes; its retry resumes."""
    truth = seed(s3, "whole", 25, 1000, key_pad=600)
    seed(s3, "parts", 25, 1000, key_pad=600)
    with pytest.raises(CopyJobFailed):  # failures over max_failed_percent 0: the report is written first
        summarize({"run_id": "whole", "outcome": {}}, settings=SummarySettings("staging", 0), s3=s3)
    crashing = CrashingS3(s3, operation, at)
    settings = SummarySettings("staging", 0, summary_budget_seconds=0)
    event: dict[str, Any] = {"run_id": "parts", "outcome": {}}
    crashes = 0
    for _ in range(100):
        try:
            answer = summarize(event, settings=settings, s3=crashing if crashes == 0 else s3)
        except Crash:
            crashes += 1
            continue
        except CopyJobFailed:
            break
        event = {k: v for k, v in answer.items() if k != "continuation"}
    assert crashes == 1
    whole = staging.get_json(s3, "staging", staging.report_key("whole"))
    parts = staging.get_json(s3, "staging", staging.report_key("parts"))
    assert stable(parts) == stable(whole)
    body = s3.get_object(Bucket="staging", Key=reports.csv_key("parts"))["Body"].read()
    assert (
        len(body) > 16 * 1024**2
        and body == s3.get_object(Bucket="staging", Key=reports.csv_key("whole"))["Body"].read()
    )
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(r["batch"], r["key"]) for r in rows] == sorted(truth)
    assert s3.list_multipart_uploads(Bucket="staging").get("Uploads", []) == []
    assert list(staging.list_keys(s3, "staging", staging.summary_prefix("parts"))) == []


def test_a_result_file_that_is_not_json_is_set_aside_and_the_report_is_written(s3: Any) -> None:
    truth = seed(s3, "poisoned", 3, 10, unrecorded=False)
    damaged = staging.results_prefix("poisoned", "b000002") + f"{int((T0 + 2) * 1e9):020d}-00000000.json"
    s3.put_object(Bucket="staging", Key=damaged, Body=b'[{"key": "k/00001/0000')  # truncated
    lost = {key for (batch, key), record in truth.items() if batch == "b000002"}
    with pytest.raises(CopyJobFailed, match="1 result files were not JSON"):
        summarize_until_done(s3, "poisoned", 0)
    report = staging.get_json(s3, "staging", staging.report_key("poisoned"))
    assert report["unreadable_result_files"] == 1
    # the damaged file is kept for the operator, out of the result log; batch 2's second file still counts
    assert s3.get_object(Bucket="staging", Key=staging.set_aside_key(damaged))["Body"].read().startswith(b"[{")
    assert damaged not in set(staging.list_keys(s3, "staging", staging.results_prefix("poisoned")))
    second = {key for key in lost if int(key[-8:-3]) % 5 in (0, 1)}  # what batch 2's second file records
    rows = csv_rows(s3, "poisoned")
    assert {r["key"] for r in rows if r["batch"] == "b000002"} == second & lost
    assert report["not_attempted"] == len(lost - second)
