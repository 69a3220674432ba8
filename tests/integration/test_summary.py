"""Summarize: aggregation of the result log, TEA/refresh counts, failure threshold."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
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


# --- issue 15 #3: an incremental schedule never forgets failed granules ---------------------------------------


def seed_scheduled_run(s3, records):
    staging.put_json(
        s3,
        "staging",
        staging.plan_key("r"),
        {
            "objects": len(records),
            "destination": {"bucket": "d"},
            "planned_at": "2026-01-02T03:00:00+00:00",
            "schedule": {"name": "nightly", "incremental": True, "since": "2026-01-01T03:00:00+00:00"},
        },
    )
    staging.put_json(s3, "staging", staging.results_prefix("r", "b000001") + staging.sequence_name(), records)


@pytest.fixture
def ssm():
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def last_success(ssm):
    try:
        return ssm.get_parameter(Name="/teacopy/schedules/nightly/last-success")["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None


def test_incremental_run_with_failures_within_the_threshold_does_not_move_the_last_success(s3, ssm):
    """With max_failed_percent > 0 the run succeeds, but its failed granules must be asked for again: the last
    success stays where it was, so the next run's updated_since still covers them."""
    seed_scheduled_run(s3, [rec("a", "copied", 1), rec("b", "failed", reason="source NoSuchKey: gone")])
    settings = SummarySettings("staging", 50, schedule_state_prefix="/teacopy/schedules/")
    out = summarize({"run_id": "r", "outcome": {}}, settings=settings, s3=s3, ssm=ssm)
    assert out["failed"] == 1
    assert last_success(ssm) is None


def test_incremental_run_without_failures_records_its_plan_time(s3, ssm):
    seed_scheduled_run(s3, [rec("a", "copied", 1), rec("b", "skipped")])
    settings = SummarySettings("staging", 50, schedule_state_prefix="/teacopy/schedules/")
    summarize({"run_id": "r", "outcome": {}}, settings=settings, s3=s3, ssm=ssm)
    assert last_success(ssm) == "2026-01-02T03:00:00+00:00"


# --- issue 15 #4: the report is always written, clean-up failures listed -------------------------------------


class RefusingAborts:
    """The staging/destination client, answering AccessDenied to AbortMultipartUpload of one destination key."""

    def __init__(self, s3, refused_key):
        self._s3, self.refused_key = s3, refused_key

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def abort_multipart_upload(self, **kwargs):
        if kwargs["Key"] == self.refused_key:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "AbortMultipartUpload")
        return self._s3.abort_multipart_upload(**kwargs)


def test_report_is_written_when_an_abort_fails_and_lists_the_upload(s3):
    s3.create_bucket(Bucket="dest-bucket")
    uploads = {
        key: s3.create_multipart_upload(Bucket="dest-bucket", Key=key)["UploadId"] for key in ("big-1.nc", "big-2.nc")
    }
    for index, (key, upload_id) in enumerate(uploads.items()):
        staging.put_json(
            s3,
            "staging",
            staging.upload_checkpoint_key("r", "b000001", key),
            {"dest_bucket": "dest-bucket", "dest_key": key, "upload_id": upload_id, "index": index},
        )
    seed_run(s3, 3, [[rec("a", "copied", 1), rec("big-1.nc", "failed", reason="paused: refresh rounds ran out")]])
    with pytest.raises(CopyJobFailed):  # one failed, one not attempted: the run fails, after writing its report
        summarize(
            {"run_id": "r", "outcome": {}}, settings=SummarySettings("staging", 0), s3=RefusingAborts(s3, "big-2.nc")
        )
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    assert report["uploads_aborted"] == 1
    assert report["cleanup_failures"] == [
        {
            "dest_bucket": "dest-bucket",
            "dest_key": "big-2.nc",
            "upload_id": uploads["big-2.nc"],
            "error": "AccessDenied",
        }
    ]
    open_uploads = {u["Key"] for u in s3.list_multipart_uploads(Bucket="dest-bucket").get("Uploads", [])}
    assert open_uploads == {"big-2.nc"}  # the refused one stays open, and is said so
    # its checkpoint is kept (it names the upload); the aborted one's is gone
    assert list(staging.list_keys(s3, "staging", staging.uploads_prefix("r"))) == [
        staging.upload_checkpoint_key("r", "b000001", "big-2.nc")
    ]
    html = s3.get_object(Bucket="staging", Key="runs/r/report.html")["Body"].read().decode()
    assert "cleanup-failures" in html and uploads["big-2.nc"] in html
