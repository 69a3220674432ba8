"""Summarize: aggregation of the result log, TEA/refresh counts, failure threshold."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import CopyJobFailed
from lambdas.contracts.settings import SummarySettings
from lambdas.reporting.summary import summarize


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="staging")
        yield client


def seed_run(s3, objects: int, results: list[list[dict]], tea: int = 2, refreshes=()):
    staging.put_json(s3, "staging", staging.plan_key("r"), {"objects": objects, "destination": {"bucket": "d"}})
    for records in results:
        staging.put_json(s3, "staging", staging.results_prefix("r", "b000001") + staging.sequence_name(), records)
    for _ in range(tea):
        staging.record_event(s3, "staging", "r", "tea", {"status": 200, "outcome": "ok"})
    for used, new in refreshes:
        staging.record_event(s3, "staging", "r", "refresh", {"used_version": used, "new_version": new, "fetched": True})


def rec(key, status, size=0, reason=""):
    return {"key": key, "dest_key": key, "status": status, "bytes": size, **({"reason": reason} if reason else {})}


def test_counts_and_report(s3):
    seed_run(
        s3,
        3,
        [[rec("a", "copied", 10), rec("b", "skipped")], [rec("c", "copied", 5)]],
        tea=2,
        refreshes=[("v1", "v2"), ("v1", "v2"), ("v1", "v2")],  # three workers adopted one new version
    )
    out = summarize({"run_id": "r", "outcome": {"map_failed": False}}, settings=SummarySettings("staging", 0), s3=s3)
    assert out == {
        "objects": 3,
        "copied": 2,
        "skipped": 1,
        "failed": 0,
        "not_attempted": 0,
        "bytes": 15,
        "tea_requests": 2,
        "credential_refreshes": 1,
        "report": "s3://staging/runs/r/report.json",
        "report_csv": "s3://staging/runs/r/report.csv",
        "report_html": "s3://staging/runs/r/report.html",
    }
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    assert report["failures"] == []


def test_failures_over_threshold_fail_after_writing_report(s3):
    seed_run(s3, 2, [[rec("a", "copied", 1), rec("b", "failed", reason="source NoSuchKey: s3://x/b does not exist")]])
    with pytest.raises(CopyJobFailed, match=r"1 of 2 objects failed.*Report: s3://staging/runs/r/report.json"):
        summarize({"run_id": "r", "outcome": {}}, settings=SummarySettings("staging", 0), s3=s3)
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    assert report["failures"] == [{"key": "b", "reason": "source NoSuchKey: s3://x/b does not exist"}]
    assert report["failures_by_reason"] == {"source NoSuchKey": 1}


def test_failures_within_threshold_succeed(s3):
    seed_run(s3, 2, [[rec("a", "copied", 1), rec("b", "failed", reason="source AccessDenied: no")]])
    out = summarize({"run_id": "r", "outcome": {}}, settings=SummarySettings("staging", 50), s3=s3)
    assert out["failed"] == 1


def test_map_failure_and_unattempted_objects_fail_the_job(s3):
    seed_run(s3, 3, [[rec("a", "copied", 1)]])
    outcome = {"map_failed": True, "error": "CredentialsRefreshExhausted", "cause": "expired 6 times"}
    with pytest.raises(CopyJobFailed, match=r"2 objects were not attempted.*CredentialsRefreshExhausted"):
        summarize({"run_id": "r", "outcome": outcome}, settings=SummarySettings("staging", 100), s3=s3)
