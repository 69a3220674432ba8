"""The keys a plan has seen, for duplicate and collision checks: exact, in flat memory, across invocations.

Where two entries of a job could be the same source object (a manifest, CMR granules sharing a file) or map to
one destination key (a non-injective ``key_mapping``, several source buckets), Plan must remember every key it
staged. For ten million objects a Python set of 16-byte digests would take ~1 GB; a plan that continues across
Lambda invocations would also have to carry it from one to the next.

``DigestFile`` keeps the digests in a SQLite file (``/tmp`` in Lambda): one ``WITHOUT ROWID`` table whose
primary key is the 16-byte digest, a page cache of ``CACHE_KIB`` (memory does not grow with the keys; the file
does, ~45-60 bytes per digest with B-tree overhead), inserts in one open transaction. At a plan checkpoint
the file is committed and uploaded to the staging bucket next to the checkpoint
(``runs/<run>/planning/seen-<generation>.sqlite``); the next invocation downloads it. ``InMemoryDigests``
is the same interface over a set, for what is small by construction (the inline keys of an input).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import time
from typing import Any, Protocol

from lambdas.s3.limits import MIB
from lambdas.s3.writer import StagedWriter

logger = logging.getLogger(__name__)

CACHE_KIB = 8 * 1024  # SQLite page cache: RSS stays flat whatever the number of keys
READ_BYTES = MIB  # the file is copied to and from the staging bucket in chunks of this size (memory: one part)


class DigestSet(Protocol):
    def add(self, digest: bytes) -> bool:
        """True when ``digest`` was not there yet (it is now)."""
        ...

    def __len__(self) -> int: ...


class InMemoryDigests:
    def __init__(self) -> None:
        self._digests: set[bytes] = set()

    def add(self, digest: bytes) -> bool:
        if digest in self._digests:
            return False
        self._digests.add(digest)
        return True

    def __len__(self) -> int:
        return len(self._digests)


class DigestFile:
    """A set of digests in a SQLite file; ``flush`` commits, ``close`` commits and closes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # The durable copy is the uploaded file of the last checkpoint: no journal, no fsync here.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute("PRAGMA temp_store=FILE")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (d BLOB PRIMARY KEY) WITHOUT ROWID")
        self._count = int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])
        self._db.execute("BEGIN")

    @classmethod
    def fresh(cls) -> DigestFile:
        handle, path = tempfile.mkstemp(prefix="teacopy-seen-", suffix=".sqlite")
        os.close(handle)
        os.unlink(path)
        return cls(path)

    def add(self, digest: bytes) -> bool:
        if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (digest,)).rowcount == 1:
            self._count += 1
            return True
        return False

    def __len__(self) -> int:
        return self._count

    def flush(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()

    def discard(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # -- the staged copy -----------------------------------------------------------------------------

    def upload(self, s3: Any, bucket: str, key: str) -> int:
        """Commit and upload the file (read in chunks, one multipart part in memory); returns its size."""
        self.flush()
        started = time.monotonic()
        writer = StagedWriter(s3, bucket, key)
        with open(self.path, "rb") as source:
            while chunk := source.read(READ_BYTES):
                writer.write(chunk)
        writer.close()
        logger.info(
            "staged the seen-keys file",
            extra={
                "key": key,
                "entries": self._count,
                "bytes": writer.bytes_written,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return writer.bytes_written

    @classmethod
    def download(cls, s3: Any, bucket: str, key: str) -> DigestFile:
        handle, path = tempfile.mkstemp(prefix="teacopy-seen-", suffix=".sqlite")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with os.fdopen(handle, "wb") as target:
                while chunk := body.read(READ_BYTES):
                    target.write(chunk)
        finally:
            body.close()
        return cls(path)
