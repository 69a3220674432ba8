"""The source object's body as a stream of exact reads; a broken stream is re-opened with a ranged GET."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, FlexibleChecksumError, IncompleteReadError

from lambdas.contracts.errors import TransientCopyError
from lambdas.copying.signals import IntegrityError
from lambdas.copying.source import SourceBucket

logger = logging.getLogger(__name__)

MAX_STREAM_REOPENS = 3  # ranged re-GETs of one source object after its stream broke (per invocation)


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
