"""The copy engine's S3 client configuration and process set-up, in ONE place.

Used by the CopyBatch handler (lambdas/handlers/copy_batch.py) and by the bench's teacopy driver
(bench/drivers.py), so what the bench measures is what the Lambda runs.

- ``s3_config``: botocore's ``Config`` for every S3 client of the copy engine. ``payload_signing_enabled``
  is False explicitly, so a request's SigV4 signature covers ``UNSIGNED-PAYLOAD`` instead of a SHA-256 of
  the body, on HTTP and HTTPS alike. On real S3 (HTTPS) botocore already does this whenever a checksum
  header is sent; on a plain-HTTP endpoint (local runs, the bench) it would otherwise hash every body in
  Python-called OpenSSL — a cost production never pays, which made the bench measure the wrong thing.
  The body's integrity is still checked by S3: every PutObject/UploadPart of copied data carries our
  CRC64NVME (lambdas/copying/destination.py) and the other writes (staging JSON, Complete) carry botocore's
  default flexible checksum (``request_checksum_calculation`` left at ``when_supported``).
- ``s3_config(pool, streamed_puts=True)``: the client of streamed PutObjects (objects/``_put_streamed``), whose
  body is the source's GET body as it arrives: it cannot be read twice, so botocore must not add a checksum
  of its own (on plain HTTP it would read the whole body first to put it in a header). Such a PUT carries
  ``Content-MD5`` = the source ETag instead, which S3 verifies, and the engine checks the same MD5 (and the
  plan's checksum) before it hands over the last byte.
- ``settle_heap``: after a cold start's imports and clients, move every object alive so far into the
  garbage collector's permanent generation (``gc.freeze``). botocore's service models, pydantic's
  validators and Powertools make a few hundred thousand long-lived objects; without this, each of the
  collector's full passes re-scans them all, and with many small objects in flight those passes were
  half of the copy's CPU (py-spy of the 100 KiB bench set). Nothing frozen is garbage: it lives as long
  as the process does.
"""

from __future__ import annotations

import gc

from botocore.config import Config

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_ATTEMPTS = 8  # botocore's standard retry mode, per request


def s3_config(pool: int, *, streamed_puts: bool = False) -> Config:
    """Config of an S3 client with ``pool`` connections (see the module docstring)."""
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=pool,
        s3={"payload_signing_enabled": False},
        request_checksum_calculation="when_required" if streamed_puts else "when_supported",
    )


def settle_heap() -> None:
    """Freeze the objects alive after start-up out of the garbage collector's scans (module docstring)."""
    gc.collect()
    gc.freeze()
