"""One Lambda invocation of ``make scale``, in a process of its own: ``python -m teacopy_local.scale_worker SPEC OUT``.

The spec names the handler (``plan`` or ``summarize``), the environment the stack would give its function (the
staging bucket, the budget, the CMR URL, ...), the S3 endpoint (a moto server on loopback) and the event. The
worker sets the environment, imports the real handler module (``lambdas.handlers.<name>``: its settings, its
boto3 clients, Powertools), calls ``lambda_handler(event, context)`` with a Lambda-like context whose deadline is
the function's timeout, and writes the answer (or the error), the handler's seconds and this process's peak RSS
(``ru_maxrss``) to OUT. The parent reads the kernel's view of the same peak with ``os.wait4``.

It imports nothing of the local engine (no moto, no emulators): its RSS is the Lambda's code and data alone.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any


class Context:
    """The parts of the Lambda context object the handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-west-2:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "scale"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.environ.update({str(k): str(v) for k, v in spec["environment"].items()})
    started = time.monotonic()
    module = importlib.import_module(f"lambdas.handlers.{spec['handler']}")
    imported = time.monotonic()
    context = Context(spec["function_name"], float(spec["timeout_seconds"]), int(spec["memory_mb"]))
    out: dict[str, Any] = {}
    try:
        out["answer"] = module.lambda_handler(spec["event"], context)
    except Exception as exc:  # noqa: BLE001 — the Lambda runtime boundary: any error becomes the invocation's error
        out["error"] = {"errorType": type(exc).__name__, "errorMessage": str(exc)[:2000]}
    finished = time.monotonic()
    out["import_seconds"] = round(imported - started, 3)
    out["handler_seconds"] = round(finished - imported, 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(argv[1]).write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
