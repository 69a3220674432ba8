"""Run reports: report.csv and report.html next to report.json, the progress curve, and the page as a
browser renders it (headless Chromium: the counts are read back from the rendered DOM, and a screenshot
is saved under artifacts/ for people to look at)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.contracts import staging
from lambdas.contracts.errors import CopyJobFailed
from lambdas.contracts.settings import SummarySettings
from lambdas.reporting import render as reports
from lambdas.reporting.summary import collect_run, summarize

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="staging")
        yield client


def rec(key: str, status: str, size: int = 0, reason: str = "") -> dict[str, Any]:
    return {"key": key, "dest_key": key, "status": status, "bytes": size, **({"reason": reason} if reason else {})}


def put_results(s3: Any, run: str, batch: str, when: float, records: list[dict[str, Any]]) -> None:
    name = f"{int(when * 1e9):020d}-abcdef01.json"
    staging.put_json(s3, "staging", staging.results_prefix(run, batch) + name, records)


def seed_run(s3: Any, run: str = "r") -> float:
    """A run of 10 objects over 8 seconds: 6 copied, 1 skipped, 2 failed (two reasons), 1 not attempted."""
    t0 = 1_790_000_000.0
    staging.put_json(
        s3,
        "staging",
        staging.plan_key(run),
        {
            "objects": 10,
            "source": {"mode": "keys", "bucket": "podaac-ops-cumulus-protected"},
            "destination": {"bucket": "my-copy", "prefix": "mur/", "key_mapping": "keep"},
            "options": {"overwrite": "skip-if-identical"},
            "sizes_known": 10,
            "checksums_known": 4,
        },
    )
    tea = staging.events_prefix(run, "tea")
    staging.put_json(s3, "staging", tea + "a.json", {"at": t0, "outcome": "ok", "action": "fetch"})
    staging.put_json(s3, "staging", tea + "b.json", {"at": t0 + 4, "outcome": "ok", "action": "refresh"})
    for i, used in enumerate(("v1", "v1")):  # two workers asked, one new version adopted at t0+4
        staging.put_json(
            s3,
            "staging",
            staging.events_prefix(run, "refresh") + f"{i}.json",
            {"at": t0 + 4 + i, "used_version": used, "new_version": "v2", "fetched": i == 0},
        )
    mib = 1024**2
    put_results(s3, run, "b000001", t0 + 2, [rec("a.nc", "copied", 3 * mib), rec("b.nc", "copied", mib)])
    put_results(s3, run, "b000002", t0 + 3, [rec("c.nc", "skipped"), rec("=cmd|' /C calc'!A0", "copied", mib)])
    put_results(
        s3,
        run,
        "b000001",
        t0 + 6,
        [rec("d.nc", "copied", mib), rec("e<script>.nc", "failed", reason="source NoSuchKey: s3://x/e does not exist")],
    )
    put_results(
        s3,
        run,
        "b000002",
        t0 + 8,
        [
            rec("f.nc", "copied", 2 * mib),
            rec("g.nc", "failed", reason="source AccessDenied: no"),
            rec("h.nc", "copied"),
        ],
    )
    return t0


def test_summarize_writes_csv_and_html_next_to_the_json_and_links_them(s3: Any) -> None:
    t0 = seed_run(s3)
    with pytest.raises(CopyJobFailed):
        summarize({"run_id": "r", "outcome": {}}, settings=SummarySettings("staging", 0), s3=s3)
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    assert report["report_csv"] == "s3://staging/runs/r/report.csv"
    assert report["report_html"] == "s3://staging/runs/r/report.html"
    assert (report["copied"], report["skipped"], report["failed"], report["not_attempted"]) == (6, 1, 2, 1)
    # timing: from the first TEA request to the last result file; throughput over that span
    assert report["started_at"] == reports.iso(t0)
    assert report["duration_seconds"] == pytest.approx(8.0)
    assert report["throughput_bytes_per_second"] == round(8 * 1024**2 / 8.0)
    assert report["refresh_offsets"] == [4.0]
    assert report["timeline"] == [[2.0, 2, 4 * 1024**2, 0], [3.0, 4, 5 * 1024**2, 0], [6.0, 6, 6 * 1024**2, 1],
                                  [8.0, 9, 8 * 1024**2, 2]]  # fmt: skip

    head = s3.head_object(Bucket="staging", Key="runs/r/report.csv")
    assert head["ContentType"].startswith("text/csv")
    rows = list(
        csv.DictReader(io.StringIO(s3.get_object(Bucket="staging", Key="runs/r/report.csv")["Body"].read().decode()))
    )
    # by batch, then by key (Summarize streams report.csv one batch at a time)
    assert len(rows) == 9 and [(r["batch"], r["key"]) for r in rows] == sorted((r["batch"], r["key"]) for r in rows)
    by_key = {r["key"]: r for r in rows}
    assert by_key["a.nc"]["batch"] == "b000001" and by_key["a.nc"]["bytes"] == str(3 * 1024**2)
    assert by_key["g.nc"]["reason"] == "source AccessDenied: no"
    assert by_key["a.nc"]["recorded_at"] == reports.iso(t0 + 2)
    # a key that looks like a spreadsheet formula is written as text
    assert "'=cmd|' /C calc'!A0" in by_key

    page = s3.get_object(Bucket="staging", Key="runs/r/report.html")
    assert page["ContentType"].startswith("text/html")
    html = page["Body"].read().decode()
    assert "<script>" not in html and "e&lt;script&gt;.nc" in html  # keys are escaped
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


def test_execution_start_time_is_used_when_the_state_machine_passes_it(s3: Any) -> None:
    t0 = seed_run(s3)
    event: dict[str, Any] = {"run_id": "r", "outcome": {}, "execution_started": reports.iso(t0 - 2)}
    with pytest.raises(CopyJobFailed):
        summarize(event, settings=SummarySettings("staging", 100), s3=s3)
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    assert report["duration_seconds"] == pytest.approx(10.0)


def test_progress_timeline_counts_each_object_once_with_its_last_status() -> None:
    files = [
        (100.0, [rec("a", "failed"), rec("b", "copied", 5)]),
        (101.0, [rec("a", "copied", 7)]),  # a retried object: its last word
        (None, [rec("zz", "copied", 1)]),  # not a sequence name: ignored on the curve
    ]
    assert reports.progress_timeline(files, 99.0) == [[1.0, 2, 5, 1], [2.0, 2, 12, 0]]
    many = [(float(i), [rec(f"k{i}", "copied", 1)]) for i in range(1000)]
    thinned = reports.progress_timeline(many, 0.0)
    # fixed bins whose width doubles: between half and all of MAX_TIMELINE_POINTS points, the last one exact
    assert reports.MAX_TIMELINE_POINTS // 2 <= len(thinned) <= reports.MAX_TIMELINE_POINTS
    assert thinned[-1] == [999.0, 1000, 1000, 0]
    assert [p[1] for p in thinned] == sorted(p[1] for p in thinned)


def test_timeline_is_bounded_and_the_order_of_additions_does_not_matter() -> None:
    changes = [(1_000.0 + (i * 7919) % 5_000 + (i % 10) / 10, 1, i, i % 3 == 0) for i in range(20_000)]
    forward, backward = reports.Timeline(1_000.0), reports.Timeline(1_000.0)
    for when, done, size, failed in changes:
        forward.add(when, done, size, int(failed))
    for when, done, size, failed in reversed(changes):
        backward.add(when, done, size, int(failed))
    points = forward.points()
    assert points == backward.points() and len(points) <= reports.MAX_TIMELINE_POINTS
    assert points[-1][1:] == [20_000, sum(range(20_000)), sum(1 for c in changes if c[3])]
    restored = reports.Timeline.from_state(json.loads(json.dumps(forward.state())))
    restored.add(7_000.0, 1, 1, 0)  # past the span: the bins merge again
    assert len(restored.points()) <= reports.MAX_TIMELINE_POINTS and restored.points()[-1][:2] == [6_000.0, 20_001]


def test_sequence_names_are_times() -> None:
    name = staging.sequence_name()
    recorded = reports.sequence_time(f"runs/r/results/b1/{name}")
    assert recorded is not None and abs(recorded - time.time()) < 5
    assert reports.sequence_time("runs/r/results/b1/not-a-sequence.json") is None
    assert reports.batch_of("runs/r/results/b000042/x.json") == "b000042"


def test_dry_run_page_says_nothing_was_copied() -> None:
    page = reports.render_html(
        {"run_id": "d", "objects": 3, "dry_run": True, "would_copy": 2, "would_skip": 1, "bytes_to_copy": 2048}
    )
    assert "dry run: nothing was copied" in page
    assert 'id="count-would_copy" data-count="would_copy" data-value="2"' in page
    assert "count-copied" not in page


# --- rendered in a real browser ---------------------------------------------------------------------------


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed for this test: `make chromium` installs the Debian package")


def run_chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # running as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False, env=env)  # noqa: S603


class CountsParser(HTMLParser):
    """Reads ``data-count``/``data-value`` tiles, failure-reason counts, verification and credential counts,
    links, the text of each element with an id, and the chart's lines from the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, str] = {}
        self.reasons: dict[str, int] = {}
        self.verify: dict[str, str] = {}
        self.credentials: dict[str, int] = {}
        self.links: dict[str, str] = {}  # id -> href
        self.ids: set[str] = set()
        self.text: dict[str, str] = {}  # id -> its text (elements with an id, nested ones included)
        self._reason: str | None = None
        self._credential: str | None = None
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of the open elements

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        ident = attributes.get("id")
        if ident:
            self.ids.add(str(ident))
            self.text.setdefault(str(ident), "")
        if tag == "a" and ident:
            self.links[str(ident)] = str(attributes.get("href"))
        if "data-count" in attributes:
            self.counts[str(attributes["data-count"])] = str(attributes.get("data-value"))
        if "data-verify" in attributes:
            self.verify[str(attributes["data-verify"])] = str(attributes.get("data-value"))
        self._reason = attributes.get("data-reason-count")
        self._credential = attributes.get("data-credential")
        if tag not in ("br", "meta", "img", "input", "hr", "link", "line"):
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _tag, ident in self._open:
            if ident:
                self.text[ident] += data
        if self._reason is not None and data.strip():
            self.reasons[self._reason] = int(data.replace(",", ""))
            self._reason = None
        if self._credential is not None and data.strip():
            self.credentials[self._credential] = int(data.replace(",", ""))
            self._credential = None


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


ARN = "arn:aws:states:us-west-2:123456789012:execution:TeacopyStateMachine-AbC123:r"


def test_html_report_renders_in_headless_chromium(s3: Any, tmp_path: Path) -> None:
    """The page Summarize writes (in Lambda), as a browser renders it: the counts, verification, the execution's
    ARN and the run's estimated cost among them."""
    from teacopy_cli.estimate import CopyShape, run_cost

    t0 = seed_run(s3)
    with pytest.raises(CopyJobFailed):
        summarize({"run_id": "r", "outcome": {}, "execution_arn": ARN}, settings=SummarySettings("staging", 0), s3=s3)
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report-test.html"
    page.write_bytes(s3.get_object(Bucket="staging", Key="runs/r/report.html")["Body"].read())
    url = page.resolve().as_uri()

    dumped = run_chromium("--dump-dom", url, profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = CountsParser()
    dom.feed(dumped.stdout)
    assert {k: dom.counts[k] for k in ("objects", "copied", "skipped", "failed", "not_attempted")} == {
        "objects": "10",
        "copied": "6",
        "skipped": "1",
        "failed": "2",
        "not_attempted": "1",
    }
    assert dom.counts["bytes"] == str(8 * 1024**2)
    assert dom.counts["tea_requests"] == "2" and dom.counts["credential_refreshes"] == "1"
    assert float(dom.counts["duration"]) == pytest.approx(8.0)
    assert dom.reasons == {"source NoSuchKey": 1, "source AccessDenied": 1}
    assert {"progress-chart", "objects-line", "bytes-line", "failures", "run-state"} <= dom.ids
    # start, end, the execution, links to the CSV and the JSON (relative: the three files sit side by side)
    assert dom.text["started"].endswith(str(reports.iso(t0))) and dom.text["finished"].endswith(
        str(reports.iso(t0 + 8))
    )
    assert dom.text["execution-arn"] == ARN  # the state machine passes $$.Execution.Id
    assert dom.links == {"csv-link": "report.csv", "json-link": "report.json"}
    # verification: every copied object by CRC64NVME; checksums and sizes as the plan knew them; no mismatch
    assert dom.verify == {"crc64nvme": "6", "checksums": "4", "sizes": "10", "failed": "0"}
    # the credential counters add up: 2 TEA requests = 1 fetch + 1 refresh; 2 refresh requests = 1 + 1 coalesced
    assert dom.credentials == {
        "tea_requests": 2,
        "credential_fetches": 1,
        "credential_refreshes": 1,
        "tea_errors": 0,
        "refresh_requests": 2,
        "coalesced_refreshes": 1,
    }
    assert "refresh requests 2 = credential refreshes 1 + coalesced refreshes 1" in dom.text["refresh-sum"]
    # something failed and one object was not attempted: the exact retry command
    assert dom.text["retry-command"] == "teacopy retry-failed r --include-not-attempted"
    # Summarize priced the run: the 6 copied objects (8 MiB) and the skipped one, labelled an estimate; the figure
    # is the one teacopy estimate gives for the same rows with the same (deployed) settings
    report = staging.get_json(s3, "staging", "runs/r/report.json")
    cost = report["cost"]
    assert (cost["objects"], cost["bytes"], cost["skipped"], cost["batches"]) == (6, 8 * 1024**2, 1, 1)
    assert cost["requests"]["data"] == {"put": 6 + 1, "get": 6 + 1, "free": 0}  # PUT each, LIST; GET each, HEAD
    assert cost["usd"] > 0 and set(cost["breakdown_usd"]) == {"s3_requests", "lambda", "step_functions"}
    _, rows = collect_run(s3, "staging", "r")
    local = run_cost(rows, dry_run=False, shape=CopyShape.from_cdk_json())
    assert {k: local[k] for k in cost} == cost
    assert dom.text["cost"].startswith("Estimated: the 6 objects cost about $")
    assert float(dom.text["cost-usd"].lstrip("$")) == pytest.approx(cost["usd"], abs=5e-5)
    assert dom.text["cost-model"].startswith("An estimate, not a bill")

    shot = ARTIFACTS / "report-test.png"
    shot.unlink(missing_ok=True)
    taken = run_chromium(f"--screenshot={shot}", "--window-size=1100,1400", url, profile=tmp_path / "profile-shot")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert png_size(shot) == (1100, 1400)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_local_page_with_execution_and_cost_renders_in_headless_chromium(s3: Any, tmp_path: Path) -> None:
    """What ``teacopy report --html`` and local runs add: the execution, the byte-for-byte comparison, the cost of
    the run from the cost model of ``teacopy estimate`` (the same figure)."""
    from teacopy_cli.estimate import CopyShape, run_cost

    seed_run(s3)
    with pytest.raises(CopyJobFailed):
        summarize({"run_id": "r", "outcome": {}}, settings=SummarySettings("staging", 0), s3=s3)
    report, rows = collect_run(s3, "staging", "r")
    cost = run_cost(rows, dry_run=False, shape=CopyShape.from_cdk_json())
    arn = "arn:aws:states:us-east-1:123456789012:execution:teacopy-local:r"
    execution = {"arn": arn, "status": "FAILED", "local": True, "verified": 6}
    page = reports.write_html_file(report, tmp_path / "page" / "report.html", execution=execution, cost=cost)
    dumped = run_chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = CountsParser()
    dom.feed(dumped.stdout)
    assert "in the local engine" in dom.text["execution"] and "FAILED" in dom.text["execution"]
    assert dom.verify["bytes"] == "6"
    assert cost["objects"] == 6 and cost["bytes"] == 8 * 1024**2 and cost["usd"] > 0
    assert float(dom.text["cost-usd"].lstrip("$")) == pytest.approx(cost["usd"], abs=5e-5)
    assert dom.text["retry-command"] == "teacopy retry-failed r --include-not-attempted --local"
    assert dom.links == {"csv-link": "report.csv", "json-link": "report.json"}
