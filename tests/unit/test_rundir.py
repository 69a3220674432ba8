"""The run directory mirror (teacopy_local/rundir.py): staging objects copied while a local run goes on."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from teacopy_local.rundir import EXECUTION_FILE, RunMirror

RUN_ID = "run-1"
ARN = f"arn:aws:states:us-west-2:123456789012:execution:teacopy:{RUN_ID}"
PREFIX = f"runs/{RUN_ID}/"


class _Pages:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Contents": [{"Key": key, "ETag": f'"{key}"'} for key in self.keys]}]


class _S3:
    """Lists ``listed``; answers GetObject only for ``stored`` (the others were deleted meanwhile)."""

    def __init__(self, listed: list[str], stored: dict[str, bytes], denied: tuple[str, ...] = ()) -> None:
        self.listed, self.stored, self.denied = listed, stored, denied

    def get_paginator(self, name: str) -> _Pages:
        assert name == "list_objects_v2"
        return _Pages(self.listed)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key in self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": ""}}, "GetObject")
        if Key not in self.stored:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": ""}}, "GetObject")
        return {"Body": io.BytesIO(self.stored[Key])}


class _Sfn:
    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"executionArn": executionArn, "status": "RUNNING", "ResponseMetadata": {}}


def test_an_object_deleted_between_listing_and_reading_is_skipped(tmp_path: Path) -> None:
    """A finished object's upload checkpoint is deleted while the run goes on: the mirror skips it."""
    listed = [f"{PREFIX}plan.json", f"{PREFIX}checkpoints/gone.json", f"{PREFIX}results/b1.json"]
    stored = {listed[0]: b'{"plan": 1}', listed[2]: b'{"results": []}'}
    directory = RunMirror(_S3(listed, stored), _Sfn(), "staging", ARN, tmp_path).sync()
    assert (directory / "plan.json").read_bytes() == b'{"plan": 1}'
    assert (directory / "results" / "b1.json").read_bytes() == b'{"results": []}'
    assert not (directory / "checkpoints" / "gone.json").exists()
    assert json.loads((directory / EXECUTION_FILE).read_text())["status"] == "RUNNING"


def test_other_read_errors_still_stop_the_mirror(tmp_path: Path) -> None:
    key = f"{PREFIX}plan.json"
    with pytest.raises(ClientError, match="AccessDenied"):
        RunMirror(_S3([key], {key: b"{}"}, denied=(key,)), _Sfn(), "staging", ARN, tmp_path).sync()


class _EndingSfn:
    """The run ends (Summarize writes its report) while the mirror is syncing: at its first DescribeExecution."""

    def __init__(self, s3: _S3, report_key: str) -> None:
        self.s3, self.report_key = s3, report_key

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if self.report_key not in self.s3.listed:
            self.s3.listed.append(self.report_key)
            self.s3.stored[self.report_key] = b'{"report": 1}'
        return {"executionArn": executionArn, "status": "SUCCEEDED"}


def test_a_terminal_status_is_never_mirrored_without_what_the_run_wrote_before_it(tmp_path: Path) -> None:
    """`teacopy watch --local` stops at the first terminal status it reads: the report must already be there."""
    plan = f"{PREFIX}plan.json"
    s3 = _S3([plan], {plan: b"{}"})
    directory = RunMirror(s3, _EndingSfn(s3, f"{PREFIX}report.json"), "staging", ARN, tmp_path).sync()
    assert json.loads((directory / EXECUTION_FILE).read_text())["status"] == "SUCCEEDED"
    assert (directory / "report.json").read_bytes() == b'{"report": 1}'
