"""Every CLI verb on a machine with no AWS configuration, and with the wrong inputs users type.

Each command runs as its own process (the installed ``teacopy`` console script) with an empty
environment and a HOME without ~/.aws. Every failure must be exactly one line on stderr, saying what is
wrong and what to do, with the documented exit code (2 usage or input, 4 AWS not configured or not
reachable, or nothing found), and never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

TEACOPY = Path(sys.executable).with_name("teacopy")
GOOD = ["--source-bucket", "podaac-ops-cumulus-protected", "--keys", "a.nc", "--dest-bucket", "my-earthdata-copy"]
NO_REGION = "no AWS region: pass --region"
NO_CREDENTIALS = "no AWS credentials found: a credentials problem"


def run(argv: list[str], home: Path, **env: str) -> tuple[int, str, str]:
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), **env}
    done = subprocess.run(  # noqa: S603 — our own console script, fixed arguments
        [str(TEACOPY), *argv], capture_output=True, text=True, env=environment, cwd=home, timeout=300, check=False
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-errors")
    home = root / "home"
    home.mkdir()
    manifest_job = root / "manifest-job.json"
    manifest_job.write_text(
        json.dumps(
            {
                "source": {"bucket": "podaac-ops-cumulus-protected", "manifest": "s3://my-earthdata-copy/m.csv"},
                "destination": {"bucket": "my-earthdata-copy"},
            }
        )
    )
    bad_job = root / "bad-job.json"
    bad_job.write_text(json.dumps({"source": {"keys": ["a.nc"]}, "destination": {"bucket": "my-earthdata-copy"}}))
    good_job = root / "good-job.json"
    good_job.write_text(
        json.dumps({"source": {"bucket": "b-b-b", "keys": ["a.nc"]}, "destination": {"bucket": "my-earthdata-copy"}})
    )
    not_json = root / "not-json.json"
    not_json.write_text("{source: ")
    empty_runs = root / "no-runs"
    empty_runs.mkdir()
    return {
        "home": home,
        "manifest_job": manifest_job,
        "bad_job": bad_job,
        "good_job": good_job,
        "not_json": not_json,
        "empty_runs": empty_runs,
    }


def cases(files: dict[str, Path], template: str) -> list[tuple[list[str], dict[str, str], int, str]]:
    """(argv, extra environment, expected exit code, expected part of the one error line)."""
    fake_keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}
    return [
        # every verb that talks to AWS, with no AWS configuration at all
        (["report"], {}, 4, NO_REGION),
        (["watch"], {}, 4, NO_REGION),
        (["retry-failed"], {}, 4, NO_REGION),
        (["start", "--validate-only", *GOOD], {}, 4, NO_REGION),
        (["start", *GOOD], {}, 4, NO_REGION),
        (["estimate", "--execution", "run-1"], {}, 4, NO_REGION),
        (["estimate", "--input", str(files["manifest_job"])], {}, 4, "--manifest-file FILE"),
        # a region, but no credentials: a credentials problem, said so
        (["report", "--region", "us-west-2"], {}, 4, NO_CREDENTIALS),
        (["watch"], {"AWS_REGION": "us-west-2"}, 4, NO_CREDENTIALS),
        (["retry-failed"], {"AWS_DEFAULT_REGION": "us-west-2"}, 4, NO_CREDENTIALS),
        (["report", "--profile", "nosuch"], {}, 4, "nosuch"),
        # credentials, but AWS cannot be reached
        (
            ["report"],
            {"AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", **fake_keys},
            4,
            "cannot reach AWS",
        ),
        # the wrong inputs of issue 14
        (
            [
                "start",
                "--source-bucket",
                "b-b-b",
                "--manifest",
                "my-bucket/m.csv",
                "--dest-bucket",
                "my-earthdata-copy",
            ],
            {},
            2,
            "invalid input: source.manifest: must be an s3://bucket/key URL",
        ),
        (
            ["estimate", "--input", str(files["manifest_job"]), "--manifest-file", "missing.csv"],
            {},
            2,
            "--manifest-file: cannot read missing.csv: No such file or directory",
        ),
        (
            [
                "estimate",
                "--source-bucket",
                "s3://podaac-ops-cumulus-protected",
                "--keys",
                "a",
                "--dest-bucket",
                "my-earthdata-copy",
                "--object-size",
                "5MB",
            ],
            {},
            2,
            "invalid input: source.bucket: 's3://podaac-ops-cumulus-protected' is not a valid S3 bucket name",
        ),
        (
            [
                "estimate",
                "--source-bucket",
                "b-b-b",
                "--keys",
                "a",
                "--dest-bucket",
                "s3://my-earthdata-copy",
                "--object-size",
                "5MB",
            ],
            {},
            2,
            "invalid input: destination.bucket:",
        ),
        (
            ["estimate", "--keys", "a", "b", "--dest-bucket", "my-earthdata-copy", "--object-size", "5MB"],
            {},
            2,
            "invalid input: source.bucket: is required with 'keys'",
        ),
        (
            ["estimate", "--manifest", "my-bucket/m.csv", "--dest-bucket", "my-earthdata-copy"],
            {},
            2,
            "invalid input: source.manifest",
        ),
        (["estimate", "--objects", "1000"], {}, 2, "--objects needs --object-size"),
        (["estimate", "--objects", "10", "--object-size", "fifty"], {}, 2, "bad size 'fifty'"),
        (["start", "--keys", "a.nc"], {}, 2, "--dest-bucket is required"),
        (["start", "--input", str(files["not_json"])], {}, 2, "is not JSON"),
        # offline validation and local runs
        (["validate", "missing.json"], {}, 2, "cannot read missing.json: No such file or directory"),
        (
            ["validate", str(files["bad_job"]), "--template", template],
            {},
            2,
            "invalid input: source.bucket: is required",
        ),
        (["local", "--input", "missing.json"], {}, 2, "cannot read missing.json"),
        (["local", "--input", str(files["bad_job"]), "--template", template], {}, 2, "invalid input: source.bucket"),
        (["local", "--input", str(files["good_job"]), "--template", "missing.template.json"], {}, 2, "make synth"),
        (["local", "--input", str(files["good_job"]), "--source", "prefix"], {}, 2, "--source chooses one of the demo"),
        (["local", "--objects", "0"], {}, 2, "--objects must be at least 1"),
        (["local", "--bogus"], {}, 2, "unrecognized arguments: --bogus"),
        (["report", "--local", "--runs-dir", str(files["empty_runs"])], {}, 4, "no local runs in"),
        (["watch", "nope", "--runs-dir", str(files["empty_runs"])], {}, 4, "no local run 'nope'"),
        (["start", "--local", *GOOD], {}, 2, "unrecognized arguments: --local"),
        # usage
        ([], {}, 2, "the following arguments are required: COMMAND"),
        (["bogus"], {}, 2, "invalid choice: 'bogus'"),
        (["report", "--nope"], {}, 2, "unrecognized arguments: --nope"),
    ]


def test_every_verb_fails_in_one_line_with_its_exit_code_and_no_traceback(files: dict[str, Path], synth: Any) -> None:
    table = cases(files, str(synth.template_path))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: run(case[0], files["home"], **case[1]), table))
    problems = []
    for (argv, env, code, expected), (got, out, err) in zip(table, results, strict=True):
        lines = err.splitlines()
        if got != code or len(lines) != 1 or expected not in err or "Traceback" in err + out:
            problems.append(f"teacopy {' '.join(argv)} {env or ''}: exit {got}, stderr {err!r}")
    assert problems == []


def test_validate_accepts_a_good_input_offline(files: dict[str, Path], synth: Any) -> None:
    code, out, err = run(["validate", str(files["good_job"]), "--template", str(synth.template_path)], files["home"])
    assert code == 0, err
    assert out == "valid: 1 inline keys of b-b-b -> s3://my-earthdata-copy/ (overwrite skip-if-identical)\n"
    assert "Traceback" not in err


def test_help_lists_the_exit_codes(files: dict[str, Path]) -> None:
    code, out, _ = run(["--help"], files["home"])
    out = " ".join(out.split())
    assert code == 0
    assert "2 bad usage or invalid input" in out and "4 AWS not configured or not reachable" in out
