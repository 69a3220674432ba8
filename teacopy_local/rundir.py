"""Run directories: what a local run leaves behind, so that the CLI can read it like a deployed run.

The local engine lives in one process (moto in memory): when ``teacopy local`` ends, its buckets are
gone. So every local run (the demo and ``--input`` runs) copies, while it runs and when it ends::

    <runs dir>/<run id>/execution.json   the execution as DescribeExecution gives it (status, input,
                                         output, error, cause, start and stop dates)
    <runs dir>/<run id>/plan.json, manifest.json, results/..., events/..., report.json, report.csv,
                        report.html      the staging bucket's runs/<run id>/ objects, same names

``teacopy report|watch|retry-failed|estimate --local`` read these files through the same code as on
AWS (``teacopy_cli/local_runs.py`` serves them as a read-only S3 and Step Functions). Files are
replaced atomically, so ``teacopy watch --local`` can follow a run another terminal is running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import staging
from lambdas.s3.codes import NOT_FOUND_CODES, error_status

REPO = Path(__file__).resolve().parents[1]
RUNS_DIR = REPO / "artifacts" / "local-runs"
EXECUTION_FILE = "execution.json"
RUNS_DIR_VARIABLE = "TEACOPY_LOCAL_RUNS"  # overrides RUNS_DIR (tests, several checkouts)


def runs_dir(override: str | Path | None = None) -> Path:
    """Where local runs are kept: ``override``, else $TEACOPY_LOCAL_RUNS, else artifacts/local-runs."""
    if override:
        return Path(override)
    return Path(os.environ.get(RUNS_DIR_VARIABLE) or RUNS_DIR)


def run_directory(root: Path, run_id: str) -> Path:
    if not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id:
        raise ValueError(f"{run_id!r} is not a run id")
    return root / run_id


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class RunMirror:
    """Copies one local run's staging objects and execution status into its run directory."""

    def __init__(self, s3: Any, sfn: Any, staging_bucket: str, execution_arn: str, root: Path) -> None:
        self.s3, self.sfn, self.bucket, self.execution_arn = s3, sfn, staging_bucket, execution_arn
        self.run_id = execution_arn.rsplit(":", 1)[-1]
        self.directory = run_directory(root, self.run_id)
        self._copied: dict[str, str] = {}  # staging key -> ETag written

    def sync(self) -> Path:
        # The status is read before the objects are copied and written after them: a terminal status in the
        # run directory then implies that everything the run wrote before it ended (its report) is there too.
        description = self.sfn.describe_execution(executionArn=self.execution_arn)
        description.pop("ResponseMetadata", None)
        prefix = staging.run_prefix(self.run_id)
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key, etag = str(item["Key"]), str(item.get("ETag", ""))
                if self._copied.get(key) == etag:
                    continue
                try:
                    body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                except ClientError as exc:
                    if error_status(exc)[0] in NOT_FOUND_CODES:
                        continue  # deleted since the listing (a finished object's upload checkpoint)
                    raise
                write_atomically(self.directory / key[len(prefix) :], body)
                self._copied[key] = etag
        document = json.dumps(description, default=_iso, indent=1, ensure_ascii=False)
        write_atomically(self.directory / EXECUTION_FILE, document.encode("utf-8"))
        return self.directory


def _iso(value: Any) -> str:
    isoformat = getattr(value, "isoformat", None)
    return str(isoformat()) if callable(isoformat) else str(value)
