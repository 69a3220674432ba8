"""The modelled S3 of the bench server: first-byte latency, a per-connection bandwidth cap, a shared link.

What it stands for (research.md, "Realistic S3 and the peers to beat"):

- **first byte**: S3 answers every request after tens of milliseconds, whatever its size (~20 ms p90
  measured from EC2); modelled as ``first_byte_ms`` plus a uniform jitter of +/- ``jitter_ms``, slept
  once per request after its body was received and before the response starts;
- **one connection** carries about 85-90 MB/s (AWS's guidance: one concurrent request per 85-90 MB/s);
  modelled as ``connection_mbps`` (10^6 bytes/s) per request, in either direction (a keep-alive
  connection carries one request at a time);
- **the link**: a Lambda function's network sustains ~75 MiB/s after a short burst; modelled as
  ``link_mibps`` shared by every connection of the machine, per direction (client -> S3 and S3 -> client
  are separate budgets). The burst is not modelled (it favours nobody over a 10 s copy).

Bytes are paced in ``CHUNK`` pieces: a piece may go when its connection's pace allows it and the link has
a free slot for it (slots are handed out in arrival order, so concurrent connections share the link
fairly; a slot missed by a late wake-up can be caught up within ``CATCH_UP_S``). Pacing sleeps; it costs
the server almost no CPU. ``S3Model.loopback()`` disables all three.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

MIB = 1024**2
CHUNK = 256 * 1024  # bytes per paced piece (3.3 ms of link at 75 MiB/s)
CATCH_UP_S = 0.02  # a link slot not used because a thread woke late may be used up to 20 ms later


@dataclass(frozen=True)
class S3Model:
    first_byte_ms: float = 20.0
    jitter_ms: float = 10.0  # uniform +/- around first_byte_ms
    connection_mbps: float = 90.0  # MB/s (10^6 bytes) per connection
    link_mibps: float = 75.0  # MiB/s per direction, shared by all connections

    @classmethod
    def loopback(cls) -> S3Model:
        return cls(first_byte_ms=0.0, jitter_ms=0.0, connection_mbps=0.0, link_mibps=0.0)

    @property
    def is_loopback(self) -> bool:
        return not (self.first_byte_ms or self.connection_mbps or self.link_mibps)

    @property
    def link_bytes_per_s(self) -> float:
        return self.link_mibps * MIB

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def describe(self) -> str:
        if self.is_loopback:
            return "loopback (no latency, no bandwidth caps)"
        return (
            f"first byte {self.first_byte_ms:g} +/- {self.jitter_ms:g} ms, {self.connection_mbps:g} MB/s per "
            f"connection, {self.link_mibps:g} MiB/s link per direction"
        )


class Link:
    """One direction of the shared link: slots of ``n / rate`` seconds handed out in arrival order."""

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self, n: int, earliest: float = 0.0) -> float:
        """The time at which ``n`` bytes, sent no earlier than ``earliest``, have crossed the link."""
        with self._lock:
            # Sleeping threads wake late (more so on a loaded machine): without this allowance every late
            # wake-up would lose link time for good, and the link would carry less than its rate.
            start = max(time.monotonic() - CATCH_UP_S, self._next, earliest)
            self._next = start + n / self.rate
            return self._next


class Pacer:
    """One request's bytes in one direction: the connection's cap and the link's slots.

    ``reserve(n)`` books the next ``n`` bytes and returns when they have crossed; the caller moves them
    (reads or sends the piece) and then sleeps until that time, so moving a piece overlaps its own slot
    instead of adding to it.
    """

    def __init__(self, connection_bytes_per_s: float, link: Link | None) -> None:
        self.rate = connection_bytes_per_s
        self.link = link
        self.started = time.monotonic()
        self.sent = 0

    def reserve(self, n: int) -> float:
        """The time by which the next ``n`` bytes have crossed (0: no limit)."""
        begin = self.started + self.sent / self.rate if self.rate > 0 else 0.0
        done = self.started + (self.sent + n) / self.rate if self.rate > 0 else 0.0
        if self.link is not None:
            done = max(done, self.link.reserve(n, begin))
        self.sent += n
        return done


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class Shaper:
    """The model applied to requests: latency, and paced request and response bodies."""

    def __init__(self, model: S3Model, seed: int = 13) -> None:
        self.model = model
        self.upload = Link(model.link_bytes_per_s) if model.link_mibps > 0 else None  # client -> S3
        self.download = Link(model.link_bytes_per_s) if model.link_mibps > 0 else None  # S3 -> client
        self._random = random.Random(seed)  # noqa: S311 — modelled jitter, not security
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return not self.model.is_loopback

    def first_byte_delay(self) -> None:
        model = self.model
        if model.first_byte_ms <= 0:
            return
        with self._lock:
            jitter = self._random.uniform(-model.jitter_ms, model.jitter_ms) if model.jitter_ms > 0 else 0.0
        time.sleep(max(0.0, model.first_byte_ms + jitter) / 1000)

    def read_body(self, stream: BinaryIO, length: int | None, on_piece: Callable[[bytes], None] | None = None) -> bytes:
        """The whole request body, paced (``length`` None: until the end of the stream).

        ``on_piece``: called with each piece as it arrives (the server hashes the body while it is paced).
        """
        pacer = Pacer(self.model.connection_mbps * 1e6, self.upload)
        pieces: list[bytes] = []
        left = length
        while left is None or left > 0:
            want = CHUNK if left is None else min(CHUNK, left)
            crossed = pacer.reserve(want)
            piece = stream.read(want)
            if not piece:
                break
            pieces.append(piece)
            if on_piece is not None:
                on_piece(piece)
            if left is not None:
                left -= len(piece)
            _sleep_until(crossed)
        return b"".join(pieces)

    def paced(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """The response body in paced pieces."""
        pacer = Pacer(self.model.connection_mbps * 1e6, self.download)
        for block in body:
            view = memoryview(block)
            for start in range(0, len(view), CHUNK):
                piece = view[start : start + CHUNK]
                crossed = pacer.reserve(len(piece))
                yield bytes(piece)
                _sleep_until(crossed)


def model_from(values: dict[str, Any]) -> S3Model:
    return S3Model(**{k: float(v) for k, v in values.items() if k in S3Model.__dataclass_fields__})
