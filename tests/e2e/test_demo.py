"""The demo (`make demo`) as a test: its summary meets the bar, and nothing secret leaks."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from teacopy_local.demo import build_parser, run_demo

pytestmark = pytest.mark.e2e


def test_demo_run_meets_the_bar_and_leaks_no_secret(synth: Any) -> None:
    args = build_parser().parse_args(
        ["--template", str(synth.template_path), "--objects", "120", "--sizes", "1KiB,300KiB,1MiB", "--large", "12MiB"]
    )
    out, err = io.StringIO(), io.StringIO()
    summary = run_demo(args, out=out, err=err)
    last_line = out.getvalue().strip().splitlines()[-1]
    assert json.loads(last_line) == summary
    assert summary["status"] == "SUCCEEDED"
    assert summary["failed"] == 0
    assert summary["verified"] == summary["objects"] == 120
    assert summary["copied"] == 120
    assert summary["credential_refreshes"] >= 1
    assert summary["tea_requests"] <= summary["credential_refreshes"] + 1
    # the scan covers execution input/output/history, every staging object and every log line
    assert summary["leaked_secrets"] == 0
    assert "120/120 objects" in err.getvalue()  # live progress was shown
    assert summary["refresh_requests"] >= summary["credential_refreshes"]  # some may be coalesced
    assert "credential refreshes" in err.getvalue() and "refresh requests" in err.getvalue()
    report = Path(summary["report"])  # the local HTML report the summary points to: in the run directory
    page = report.read_text(encoding="utf-8")
    assert report.is_file() and "120" in page
    # its links work: report.csv and report.json are beside it; a local run's page has the cost and says local
    assert "href='report.csv'" in page and "href='report.json'" in page
    assert (report.parent / "report.csv").is_file() and (report.parent / "report.json").is_file()
    assert "id='cost-usd'" in page and "in the local engine" in page
    assert "data-verify='bytes' data-value='120'" in page


def test_lambda_errors_surface_as_named_function_errors(synth: Any) -> None:
    """The in-process invoke seam returns what Lambda returns for an unhandled exception."""
    from tests.e2e.test_e2e import engine_for

    with engine_for(synth) as (engine, _tea):
        response = engine.client("lambda").invoke(
            FunctionName="PlanFunction", Payload=json.dumps({"input": {"source": {}}, "run_id": "x"})
        )
        assert response["FunctionError"] == "Unhandled"
        payload = json.loads(response["Payload"].read())
        assert payload["errorType"] == "InvalidInput"
        assert payload["errorMessage"].startswith("destination: is required") or payload["errorMessage"].startswith(
            "source."
        )
