"""Internal signals of the copy engine: how one object tells its batch why it stopped.

None of them leaves ``lambdas.copying``: ``copy_batch`` turns them into an ``ObjectResult`` (FAILED),
a paused or cancelled object, or one of the named errors of ``lambdas.contracts.errors``.
"""

from __future__ import annotations

import threading

POLL_SECONDS = 0.25  # how often waiting loops look at the deadline, the stop signal and at failures


class ObjectFailed(Exception):
    """This object cannot be copied; record it FAILED with ``reason`` and go on with the batch."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IntegrityError(ObjectFailed):
    """Bytes read or written do not match (size/checksum/changed source). Retried once from zero."""


class Cancelled(Exception):
    """The coordinator asked in-flight work to stop (hard deadline or a batch-level error)."""


class Paused(Cancelled):
    """A multipart upload stopped at the deadline and was checkpointed: the next invocation continues it."""


class StopSignal:
    """The coordinator's stop signal for in-flight objects, with why (the first reason wins)."""

    DEADLINE, FATAL = "deadline", "fatal"

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()
