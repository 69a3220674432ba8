"""Checksums computed while streaming, whose state survives the end of a Lambda invocation.

An object too large for one invocation is copied by several: the running checksums must be carried
in the upload checkpoint (staging bucket) and resumed by the next invocation, not recomputed.

- **CRC64NVME** (S3's own full-object checksum) via ``awscrt`` (shipped in the CopyBatch Lambda
  layer): the running state is the 64-bit CRC itself, ``crc64nvme(data, previous)`` continues it.
- **MD5 / SHA-1 / SHA-256 / SHA-384 / SHA-512** (what CMR publishes): ``hashlib`` cannot export its
  state, so these use OpenSSL's one-shot context structs through ``ctypes`` (the ``libcrypto`` that
  Python's own ``hashlib`` links): the struct is plain memory, saved as bytes and restored. When that
  library is not loadable, ``hashlib`` is used and the state cannot be saved (``NotResumable``): the
  copy engine then reports such an object failed rather than skipping the verification.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
from functools import lru_cache
from typing import Any, Protocol

from awscrt import checksums

from lambdas.contracts.models import Checksum


class NotResumable(Exception):
    """This digest's state cannot be exported (no usable libcrypto): it must finish in one invocation."""


class _Hash(Protocol):
    def update(self, data: bytes) -> None: ...
    def hexdigest(self) -> str: ...


# OpenSSL ≥ 1.1 / 3.x struct sizes (unchanged for two decades; OpenSSL 3 keeps these functions exported).
# name -> (Init, Update, Final, context bytes, digest bytes)
_OPENSSL: dict[str, tuple[str, str, str, int, int]] = {
    "MD5": ("MD5_Init", "MD5_Update", "MD5_Final", 92, 16),
    "SHA-1": ("SHA1_Init", "SHA1_Update", "SHA1_Final", 96, 20),
    "SHA-256": ("SHA256_Init", "SHA256_Update", "SHA256_Final", 112, 32),
    "SHA-384": ("SHA384_Init", "SHA384_Update", "SHA384_Final", 216, 48),
    "SHA-512": ("SHA512_Init", "SHA512_Update", "SHA512_Final", 216, 64),
}
_HASHLIB = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_CTX_BUFFER = 512  # generous: never smaller than any real context struct


@lru_cache(maxsize=1)
def _libcrypto() -> Any | None:
    """OpenSSL's libcrypto with the low-level digest API, checked against hashlib, or None."""
    name = ctypes.util.find_library("crypto")
    candidates = [name] if name else []
    candidates += ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"]
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        try:
            for init, update, final, _, _ in _OPENSSL.values():
                for fn in (getattr(lib, init), getattr(lib, update), getattr(lib, final)):
                    fn.restype = ctypes.c_int
            if _selftest(lib):
                return lib
        except AttributeError:
            continue
    return None


def _selftest(lib: Any) -> bool:
    sample = b"teacopy resumable digest self-test" * 3
    for algorithm in _OPENSSL:
        first = _OpenSslHash(algorithm, lib)
        first.update(sample[:50])
        resumed = _OpenSslHash(algorithm, lib, first.state())
        resumed.update(sample[50:])
        if resumed.hexdigest() != hashlib.new(_HASHLIB[algorithm], sample, usedforsecurity=False).hexdigest():
            return False
    return True


class _OpenSslHash:
    def __init__(self, algorithm: str, lib: Any, state: bytes | None = None) -> None:
        init, update, final, self._ctx_size, self._digest_size = _OPENSSL[algorithm]
        self._update, self._final = getattr(lib, update), getattr(lib, final)
        self._ctx = ctypes.create_string_buffer(_CTX_BUFFER)
        if state is None:
            if getattr(lib, init)(self._ctx) != 1:
                raise RuntimeError(f"{init} failed")
        else:
            if len(state) != self._ctx_size:
                raise ValueError("digest state of the wrong size")
            ctypes.memmove(self._ctx, state, len(state))

    def update(self, data: bytes) -> None:
        if data and self._update(self._ctx, data, ctypes.c_size_t(len(data))) != 1:
            raise RuntimeError("digest update failed")

    def state(self) -> bytes:
        return self._ctx.raw[: self._ctx_size]

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._ctx.raw, _CTX_BUFFER)  # Final must not consume our state
        out = ctypes.create_string_buffer(self._digest_size)
        if self._final(out, copy) != 1:
            raise RuntimeError("digest final failed")
        return out.raw.hex()


def crc64nvme(data: bytes, previous: int = 0) -> int:
    return int(checksums.crc64nvme(data, previous))


def crc64nvme_b64(value: int) -> str:
    """The form S3 uses in ``x-amz-checksum-crc64nvme``: base64 of the 8 big-endian bytes."""
    return base64.b64encode(value.to_bytes(8, "big")).decode("ascii")


class StreamDigest:
    """The running full-object CRC64NVME of an object, plus its expected checksum's digest if any.

    ``update`` must see the object's bytes in order. ``state()`` is JSON-able and ``resume`` continues
    from it, so an upload checkpoint can carry the digests from one invocation to the next.
    """

    def __init__(self, expected: Checksum | None = None, *, crc: int = 0, hash_state: bytes | None = None) -> None:
        self.expected = expected
        self.crc = crc
        self._hash: _Hash | None = None
        self._resumable = True
        if expected is not None:
            lib = _libcrypto()
            if lib is not None:
                self._hash = _OpenSslHash(expected.algorithm, lib, hash_state)
            elif hash_state is not None:
                raise NotResumable(f"no libcrypto here to resume a {expected.algorithm} digest")
            else:
                self._hash = hashlib.new(_HASHLIB[expected.algorithm], usedforsecurity=False)
                self._resumable = False

    def update(self, data: bytes) -> None:
        self.crc = crc64nvme(data, self.crc)
        if self._hash is not None:
            self._hash.update(data)

    @property
    def resumable(self) -> bool:
        return self._resumable

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"crc64nvme": self.crc}
        if self.expected is not None:
            if not self._resumable or not isinstance(self._hash, _OpenSslHash):
                raise NotResumable(f"the {self.expected.algorithm} digest state cannot be saved on this runtime")
            out["hash"] = base64.b64encode(self._hash.state()).decode("ascii")
        return out

    @classmethod
    def resume(cls, expected: Checksum | None, state: dict[str, Any]) -> StreamDigest:
        crc = state.get("crc64nvme")
        if not isinstance(crc, int) or not 0 <= crc < 2**64:
            raise ValueError("checkpoint digest state lacks a valid crc64nvme")
        raw = state.get("hash")
        if (expected is None) != (raw is None):
            raise ValueError("checkpoint digest state does not match the expected checksum")
        hash_state = base64.b64decode(raw) if isinstance(raw, str) else None
        return cls(expected, crc=crc, hash_state=hash_state)

    def crc_b64(self) -> str:
        return crc64nvme_b64(self.crc)

    def mismatch(self) -> str | None:
        """A reason when the expected checksum does not match what was streamed, else None."""
        if self.expected is None or self._hash is None:
            return None
        actual = self._hash.hexdigest()
        if actual == self.expected.value:
            return None
        return f"checksum mismatch: expected {self.expected.algorithm} {self.expected.value}, streamed {actual}"
