"""The source object's body as a stream of exact reads; a broken stream is re-opened with a ranged GET.

``VerifiedBody`` hands that stream to a streamed PutObject as its body, verified before its last byte.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, FlexibleChecksumError, IncompleteReadError

from lambdas.contracts.errors import TransientCopyError
from lambdas.copying.digests import StreamDigest
from lambdas.copying.signals import IntegrityError
from lambdas.copying.source import SourceBucket

logger = logging.getLogger(__name__)

MAX_STREAM_REOPENS = 3  # ranged re-GETs of one source object after its stream broke (per invocation)
STREAM_PIECE_BYTES = 256 * 1024  # at most this much per read of a streamed PutObject's body


def read_exact(body: Any, amount: int, url: str) -> bytes:
    """Read exactly ``amount`` bytes (fewer only at end of stream). Stream failures are transient."""
    try:
        first = body.read(amount)
        if len(first) >= amount or not first:
            return bytes(first)
        pieces = [first]
        got = len(first)
        while got < amount:
            piece = body.read(amount - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)
    except FlexibleChecksumError as exc:
        raise IntegrityError(f"source checksum mismatch reading {url}") from exc
    except IncompleteReadError as exc:
        raise TransientCopyError(f"source stream of {url} ended early") from exc
    except (BotoCoreError, OSError) as exc:
        raise TransientCopyError(f"reading {url} failed: {type(exc).__name__}") from exc


class SourceStream:
    """The source body from ``offset`` on; a broken stream is re-opened with a ranged GET (bounded)."""

    def __init__(self, source: SourceBucket, key: str, body: Any, etag: str, offset: int) -> None:
        self._source, self._key, self._body, self._etag = source, key, body, etag
        self.offset = offset
        self.reopens = 0
        self.url = source.url(key)

    def read_exact(self, amount: int, total: int) -> bytes:
        """Exactly ``amount`` bytes (the object is ``total`` bytes long), or raise."""
        while True:
            try:
                data = read_exact(self._body, amount, self.url)
                if len(data) < amount:
                    raise TransientCopyError(
                        f"source stream of {self.url} ended after {self.offset + len(data)} of {total} bytes"
                    )
            except TransientCopyError:
                if self.reopens >= MAX_STREAM_REOPENS or not self._etag:
                    raise
                self.reopens += 1
                logger.warning("source stream broke: re-opening it", extra={"key": self._key, "offset": self.offset})
                self._reopen()
                continue
            self.offset += len(data)
            return data

    def expect_end(self, size: int) -> None:
        """After ``size`` bytes the stream must be at its end (this also runs botocore's checksum check)."""
        if read_exact(self._body, 1, self.url):
            raise IntegrityError(f"size mismatch: {self.url} returned more than its ContentLength ({size} bytes)")

    def _reopen(self) -> None:
        self.close()
        response = self._source.get(self._key, Range=f"bytes={self.offset}-", IfMatch=self._etag)
        assert response is not None  # no IfNoneMatch: never 304
        self._body = response["Body"]

    def close(self) -> None:
        try:
            self._body.close()
        except (BotoCoreError, OSError) as exc:
            logger.debug("closing the source stream failed", extra={"key": self._key, "error": type(exc).__name__})


class VerifiedBody(io.RawIOBase):
    """The body of a streamed PutObject: ``size`` bytes of ``stream``, checked before the last one is handed over.

    botocore reads it piece by piece while it sends the request. The source is read in pieces of at most
    ``STREAM_PIECE_BYTES`` (whatever size the HTTP client asks for). When the piece that completes the object
    has been read, the source must end exactly there and every digest in ``checks`` (the ETag's MD5, the
    plan's checksum) must match, before any byte of that piece is handed over; otherwise ``read`` raises
    (``IntegrityError``, or ``TransientCopyError`` for a stream that broke beyond its re-opens), botocore
    abandons the request mid-body, and S3 stores nothing. It cannot be rewound: a PutObject botocore would
    retry fails instead (``UnseekableStreamError``), and the engine retries the object. botocore treats an
    error raised here as a failed send and reports that instead, so the error is also kept in ``failure``.
    """

    def __init__(self, stream: SourceStream, size: int, checks: Sequence[StreamDigest]) -> None:
        super().__init__()
        self._stream, self._size, self._checks = stream, size, tuple(checks)
        self._read = 0  # bytes read from the source (and digested)
        self._piece, self._at = b"", 0  # the piece being handed over, and how much of it was
        self.failure: IntegrityError | TransientCopyError | None = None  # what stopped the body, if anything

    def readable(self) -> bool:
        return True

    def read(self, amount: int | None = -1) -> bytes:
        if amount is None or amount < 0:  # everything left (an in-process S3 such as moto reads it so)
            return b"".join(iter(lambda: self.read(STREAM_PIECE_BYTES), b""))
        if self._at >= len(self._piece):
            try:
                self._piece, self._at = self._next_piece(), 0
            except (IntegrityError, TransientCopyError) as exc:
                self.failure = exc
                raise
        out = self._piece[self._at : self._at + amount]
        self._at += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _next_piece(self) -> bytes:
        left = self._size - self._read
        if left <= 0:
            return b""
        data = self._stream.read_exact(min(left, STREAM_PIECE_BYTES), self._size)
        for check in self._checks:
            check.update(data)
        self._read += len(data)
        if self._read == self._size:
            self._stream.expect_end(self._size)
            for check in self._checks:
                mismatch = check.mismatch()
                if mismatch:
                    raise IntegrityError(f"{mismatch} ({self._stream.url})")
        return data
