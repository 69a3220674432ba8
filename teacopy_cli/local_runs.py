"""The runs of ``teacopy local``, read from their run directories as if they were a deployed stack.

``teacopy report|watch|retry-failed|estimate --local`` use a ``LocalRunsBackend``: its S3 client serves
the run directories as the staging bucket (``runs/<run id>/...`` = ``<runs dir>/<run id>/...``) and its
Step Functions client answers DescribeExecution and ListExecutions from each ``execution.json``
(``teacopy_local/rundir.py`` writes both). Everything else is the code the AWS path runs. Writing is
not possible: ``retry-failed --local`` runs the retry in a new local engine instead of starting an
execution (``Cli.cmd_retry_failed``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import staging
from teacopy_local.rundir import EXECUTION_FILE, run_directory

from .backend import Backend, BackendError

STAGING_NAME = "local-runs"  # the bucket name the commands see


def _missing(code: str, operation: str, message: str) -> ClientError:
    status = 404 if code in ("NoSuchKey", "404") else 400
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class DirectoryS3:
    """The S3 calls the read paths make (get, head, list), answered from the run directories."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path | None:
        if not key.startswith(staging.RUNS_PREFIX):
            return None
        run_id, _, rest = key[len(staging.RUNS_PREFIX) :].partition("/")
        if not rest or any(part in ("", ".", "..") for part in rest.split("/")):
            return None
        try:
            return run_directory(self.root, run_id) / rest
        except ValueError:
            return None

    def _file(self, key: str, operation: str) -> Path:
        path = self.path_of(key)
        if path is None or not path.is_file():
            raise _missing("NoSuchKey" if operation == "GetObject" else "404", operation, f"no local file for {key}")
        return path

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        path = self._file(Key, "GetObject")
        data = path.read_bytes()
        return {"Body": io.BytesIO(data), "ContentLength": len(data), "LastModified": _mtime(path)}

    def head_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        path = self._file(Key, "HeadObject")
        return {"ContentLength": path.stat().st_size, "LastModified": _mtime(path)}

    def list_objects_v2(self, *, Bucket: str, Prefix: str = "", **_: Any) -> dict[str, Any]:
        contents = [
            {"Key": key, "Size": path.stat().st_size, "LastModified": _mtime(path)} for key, path in self._walk(Prefix)
        ]
        return {"Contents": contents, "KeyCount": len(contents), "IsTruncated": False, "Prefix": Prefix}

    def _walk(self, prefix: str) -> Iterator[tuple[str, Path]]:
        if not prefix.startswith(staging.RUNS_PREFIX) or "/" not in prefix[len(staging.RUNS_PREFIX) :]:
            return
        run_id = prefix[len(staging.RUNS_PREFIX) :].split("/", 1)[0]
        try:
            base = run_directory(self.root, run_id)
        except ValueError:
            return
        if not base.is_dir():
            return
        run_prefix = staging.run_prefix(run_id)
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            key = run_prefix + path.relative_to(base).as_posix()
            if key.startswith(prefix):
                yield key, path

    def get_paginator(self, name: str) -> _Paginator:
        if name != "list_objects_v2":
            raise NotImplementedError(name)
        return _Paginator(self)

    def put_object(self, **_: Any) -> dict[str, Any]:
        raise BackendError("a local run directory is read-only")


@dataclass
class _Paginator:
    s3: DirectoryS3

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        params.pop("PaginationConfig", None)
        yield self.s3.list_objects_v2(**params)


class DirectorySfn:
    """DescribeExecution and ListExecutions of the local runs (their execution.json)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _descriptions(self) -> list[dict[str, Any]]:
        found = []
        for path in self.root.glob(f"*/{EXECUTION_FILE}") if self.root.is_dir() else ():
            try:
                found.append(dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda d: str(d.get("startDate", "")), reverse=True)

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        run_id = executionArn.rsplit(":", 1)[-1]
        try:
            path = run_directory(self.root, run_id) / EXECUTION_FILE
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise _missing("ExecutionDoesNotExist", "DescribeExecution", f"no local run {run_id}") from exc

    def list_executions(self, *, maxResults: int = 100, **_: Any) -> dict[str, Any]:
        return {"executions": self._descriptions()[:maxResults]}

    def start_execution(self, **_: Any) -> dict[str, Any]:
        raise BackendError("local runs are started with `teacopy local --input FILE`, not by `start`")


@dataclass
class LocalRunsBackend(Backend):
    """A Backend over the run directories under ``run_directory``."""

    def execution_arn(self, ref: str) -> str:
        run_id = ref.rsplit(":", 1)[-1] if ref.startswith("arn:") else ref
        try:
            description = self.sfn.describe_execution(executionArn=run_id)
        except ClientError as exc:
            known = [str(d.get("name")) for d in self.sfn.list_executions(maxResults=5)["executions"]]
            hint = f" (latest: {', '.join(known)})" if known else ""
            raise BackendError(
                f"no local run {run_id!r} in {self.run_directory}{hint}: check the name, or --runs-dir"
            ) from exc
        return str(description["executionArn"])

    def latest_execution(self) -> str:
        executions = self.sfn.list_executions(maxResults=1)["executions"]
        if not executions:
            raise BackendError(
                f"no local runs in {self.run_directory}: run one first (teacopy local --input job.json, or make demo)"
            )
        return str(executions[0]["executionArn"])

    def console_url(self, execution_arn: str) -> str:
        assert self.run_directory is not None
        return f"(local run) {run_directory(self.run_directory, execution_arn.rsplit(':', 1)[-1])}"

    def locate(self, url: str) -> str:
        """A staging URL of a local run (s3://<local staging>/runs/<run>/<name>) as the path of its file."""
        assert self.run_directory is not None
        bucket_and_key = url.removeprefix("s3://")
        _bucket, _, key = bucket_and_key.partition("/")
        path = DirectoryS3(self.run_directory).path_of(key) if url.startswith("s3://") else None
        return str(path) if path is not None and path.exists() else url


def directory_backend(root: Path) -> LocalRunsBackend:
    return LocalRunsBackend(
        sfn=DirectorySfn(root),
        s3=DirectoryS3(root),
        state_machine_arn="arn:aws:states:local:000000000000:stateMachine:teacopy-local-runs",
        staging_bucket=STAGING_NAME,
        region="local",
        local=True,
        run_directory=root,
    )


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
