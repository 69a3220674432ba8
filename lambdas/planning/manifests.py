"""Manifests: streamed, chunk by chunk, in JSON, JSON Lines, CSV or plain lines; each entry validated."""

from __future__ import annotations

import codecs
import csv
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import Checksum, ObjectSpec
from lambdas.s3.limits import MIB
from lambdas.s3.names import validate_bucket, validate_key

logger = logging.getLogger(__name__)

ManifestFormat = Literal["json", "jsonl", "csv", "lines"]
MANIFEST_FORMATS: tuple[str, ...] = get_args(ManifestFormat)
MAX_ENTRY_CHARS = 64 * 1024  # one manifest line / JSON element; a key is at most 1024 bytes
# Plan refuses a larger manifest (it streams it, but one Plan invocation must be able to read it).
MAX_MANIFEST_BYTES = 256 * MIB


# --- manifests ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest entry, structurally valid; ``bucket`` is None for a bare key (the key is not yet
    validated as an S3 key: the caller does that, knowing the source bucket)."""

    where: str
    bucket: str | None
    key: Any
    size: int | None = None
    checksum: Checksum | None = None


def format_for(key: str, declared: str | None) -> str | None:
    """The declared format, else one implied by the manifest's extension, else None (sniff the content)."""
    if declared is not None:
        return declared
    lower = key.lower()
    for suffixes, fmt in (
        ((".jsonl", ".ndjson", ".jsonl.txt"), "jsonl"),
        ((".json",), "json"),
        ((".csv",), "csv"),
    ):
        if lower.endswith(suffixes):
            return fmt
    return None


def decode_chunks(chunks: Iterable[bytes], field_name: str, max_bytes: int) -> Iterator[str]:
    """UTF-8 text of a byte stream (a leading BOM dropped), refusing more than ``max_bytes``."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    total = 0
    first = True
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise InvalidInput(field_name, f"is larger than {max_bytes // MIB} MiB; split it")
            text = decoder.decode(chunk)
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise InvalidInput(field_name, f"is not UTF-8 text (invalid byte near offset {total})") from exc
    if tail:
        yield tail


def split_lines(texts: Iterable[str], field_name: str) -> Iterator[str]:
    """Lines (with their line endings) of a text stream; a line longer than MAX_ENTRY_CHARS is an error."""
    pending = ""
    lineno = 0
    for text in texts:
        pending += text
        start = 0
        while True:
            end = pending.find("\n", start)
            if end < 0:
                break
            lineno += 1
            if end - start > MAX_ENTRY_CHARS:
                raise InvalidInput(f"{field_name} line {lineno}", f"is longer than {MAX_ENTRY_CHARS} characters")
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
        if len(pending) > MAX_ENTRY_CHARS:
            raise InvalidInput(f"{field_name} line {lineno + 1}", f"is longer than {MAX_ENTRY_CHARS} characters")
    if pending:
        yield pending


def _peek(texts: Iterator[str]) -> tuple[str, Iterator[str]]:
    """The first non-whitespace character of the stream ('' if none), and the whole stream again."""
    seen: list[str] = []
    for text in texts:
        if not seen:
            text = text.removeprefix("\ufeff")  # a byte order mark, if the caller did not decode the bytes
        seen.append(text)
        stripped = text.lstrip()
        if stripped:
            return stripped[0], _chain(seen, texts)
        if sum(len(s) for s in seen) > MAX_ENTRY_CHARS:  # a manifest of blank space
            break
    return "", _chain(seen, texts)


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def parse_manifest_stream(
    texts: Iterable[str], fmt: str | None, field_name: str = "source.manifest"
) -> Iterator[ManifestEntry]:
    """Entries of a manifest in one of MANIFEST_FORMATS (None: '[' means JSON, '{' JSON Lines, else lines)."""
    head, stream = _peek(iter(texts))
    if fmt is None:
        fmt = {"[": "json", "{": "jsonl"}.get(head, "lines")
    if fmt == "json":
        if head and head != "[":
            raise InvalidInput(field_name, "is declared/named JSON but does not start with '[' (a JSON array)")
        yield from _json_array(stream, field_name)
    elif fmt == "jsonl":
        yield from _json_lines(stream, field_name)
    elif fmt == "csv":
        yield from _csv(stream, field_name)
    elif fmt == "lines":
        # One key per line, verbatim (whitespace at either end included): only the line ending is removed.
        # Blank lines and lines starting with '#' are skipped; such keys, and keys holding a line break, need
        # JSON, JSON Lines or CSV.
        for lineno, line in enumerate(split_lines(stream, field_name), start=1):
            entry = line.removesuffix("\n").removesuffix("\r")
            if entry.strip() and not entry.startswith("#"):
                yield _entry_from_string(entry, f"{field_name} line {lineno}")
    else:
        raise InvalidInput(f"{field_name}", f"unknown format {fmt!r}; one of {', '.join(MANIFEST_FORMATS)}")


def _entry_from_string(value: str, where: str) -> ManifestEntry:
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        if not bucket or not key:
            raise InvalidInput(where, f"{value[:80]!r} is not an s3://bucket/key URL")
        return ManifestEntry(where, bucket, key)
    return ManifestEntry(where, None, value)


ENTRY_FIELDS = ("key", "url", "size", "checksum", "checksum_algorithm")
VERBATIM_COLUMNS = ("key", "url")  # CSV cells taken as they are: a key may start or end with whitespace


def _size(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(where, "must be a non-negative integer (bytes)") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(where, "must be a non-negative integer (bytes)")
    return value


def _checksum(value: Any, algorithm: Any, where: str) -> Checksum | None:
    if value is None or value == "":
        if algorithm not in (None, ""):
            raise InvalidInput(f"{where}.checksum_algorithm", "is given without a checksum")
        return None
    if isinstance(value, dict):
        if algorithm not in (None, ""):
            raise InvalidInput(f"{where}.checksum_algorithm", "give the algorithm inside the checksum object")
        return Checksum.from_dict(value, f"{where}.checksum")
    if algorithm in (None, ""):
        raise InvalidInput(f"{where}.checksum_algorithm", "is required with a checksum (MD5, SHA-256, ...)")
    if not isinstance(value, str):
        raise InvalidInput(f"{where}.checksum", "must be a hex string or {'algorithm', 'value'}")
    return Checksum.from_dict({"algorithm": algorithm, "value": value.strip()}, f"{where}.checksum")


def _entry_from_object(data: dict[str, Any], where: str) -> ManifestEntry:
    unknown = sorted(set(data) - set(ENTRY_FIELDS))
    if unknown:
        raise InvalidInput(f"{where}.{unknown[0]}", f"unknown field; allowed: {', '.join(ENTRY_FIELDS)}")
    has_key, has_url = data.get("key") not in (None, ""), data.get("url") not in (None, "")
    if has_key == has_url:
        raise InvalidInput(where, "give exactly one of 'key' or 'url' (s3://bucket/key)")
    size = _size(data.get("size"), f"{where}.size")
    checksum = _checksum(data.get("checksum"), data.get("checksum_algorithm"), where)
    if has_url:
        url = data["url"]
        if not isinstance(url, str) or not url.startswith("s3://"):
            raise InvalidInput(f"{where}.url", "must be an s3://bucket/key URL")
        entry = _entry_from_string(url, f"{where}.url")
        return ManifestEntry(where, entry.bucket, entry.key, size, checksum)
    key = data["key"]
    if isinstance(key, str) and key.startswith("s3://"):
        entry = _entry_from_string(key, f"{where}.key")
        return ManifestEntry(where, entry.bucket, entry.key, size, checksum)
    return ManifestEntry(where, None, key, size, checksum)


def _entry_from_json(value: Any, where: str) -> ManifestEntry:
    if isinstance(value, str):
        return _entry_from_string(value, where)
    if isinstance(value, dict):
        return _entry_from_object(value, where)
    raise InvalidInput(where, "must be a key, an s3://bucket/key URL, or an object with 'key' or 'url'")


_WS = " \t\r\n"


def _json_array(texts: Iterator[str], field_name: str) -> Iterator[ManifestEntry]:
    """Elements of a JSON array, decoded one at a time from a rolling buffer (never the whole text)."""
    decoder = json.JSONDecoder()
    buffer, pos, eof = "", 0, False
    index = 0

    def fill() -> bool:
        nonlocal buffer, pos, eof
        if eof:
            return False
        for text in texts:
            buffer = buffer[pos:] + text
            pos = 0
            return True
        eof = True
        return False

    def skip_ws() -> str:
        """The next non-whitespace character ('' at the end of the stream), without consuming it."""
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in _WS:
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not fill():
                return ""

    def syntax_error(what: str) -> InvalidInput:
        return InvalidInput(field_name, f"looks like a JSON array but does not parse: {what} (element {index})")

    if skip_ws() != "[":
        raise syntax_error("expected '['")
    pos += 1
    if skip_ws() == "]":
        pos += 1
    else:
        while True:
            if not skip_ws():
                raise syntax_error("unexpected end of the manifest")
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as exc:
                    if len(buffer) - pos > MAX_ENTRY_CHARS:
                        raise syntax_error(
                            f"{exc.msg}, or an element longer than {MAX_ENTRY_CHARS} characters"
                        ) from exc
                    if fill():
                        continue
                    raise syntax_error(exc.msg) from exc
                if end == len(buffer) and not eof and fill():
                    continue  # a number or literal may continue in the next chunk: decode it again
                break
            pos = end
            yield _entry_from_json(value, f"{field_name}[{index}]")
            index += 1
            separator = skip_ws()
            if separator == ",":
                pos += 1
                continue
            if separator == "]":
                pos += 1
                break
            raise syntax_error(f"expected ',' or ']' but found {separator[:1]!r}" if separator else "missing ']'")
    if skip_ws():
        raise InvalidInput(field_name, "has content after the closing ']' of its JSON array")


def _json_lines(texts: Iterator[str], field_name: str) -> Iterator[ManifestEntry]:
    for lineno, line in enumerate(split_lines(texts, field_name), start=1):
        text = line.strip()
        if not text:
            continue
        where = f"{field_name} line {lineno}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(where, f"is not a JSON value: {exc.msg}") from exc
        yield _entry_from_json(value, where)


def _csv(texts: Iterator[str], field_name: str) -> Iterator[ManifestEntry]:
    reader = csv.reader(split_lines(texts, field_name), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            return
        columns = [cell.strip().lower() for cell in header]
        unknown = [c for c in columns if c not in ENTRY_FIELDS]
        if unknown:
            raise InvalidInput(
                f"{field_name} line {reader.line_num}",
                f"unknown CSV column {unknown[0]!r}; the header names columns among {', '.join(ENTRY_FIELDS)}",
            )
        if len(set(columns)) != len(columns):
            raise InvalidInput(f"{field_name} line {reader.line_num}", "the CSV header repeats a column")
        if ("key" in columns) == ("url" in columns):
            raise InvalidInput(
                f"{field_name} line {reader.line_num}", "the CSV header needs exactly one of the columns key or url"
            )
        for row in reader:
            where = f"{field_name} line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise InvalidInput(where, f"has {len(row)} columns; the header has {len(columns)}")
            # the key/url cell verbatim (quote it to keep a comma or a line break); the other cells trimmed
            cells = ((c, v if c in VERBATIM_COLUMNS else v.strip()) for c, v in zip(columns, row, strict=True))
            data = {c: v for c, v in cells if v != ""}
            yield _entry_from_object(data, where)
    except csv.Error as exc:
        raise InvalidInput(f"{field_name} line {reader.line_num}", f"is not valid CSV: {exc}") from exc


def validated_entry(entry: ManifestEntry, source_bucket: str | None) -> tuple[str, ObjectSpec]:
    """(bucket, ObjectSpec) of a manifest entry: bare keys need ``source_bucket``; URLs must match it."""
    if entry.bucket is None:
        if source_bucket is None:
            raise InvalidInput(
                entry.where, "is a bare key: give s3://bucket/key URLs, or set source.bucket for bare keys"
            )
        bucket = source_bucket
    else:
        bucket = validate_bucket(entry.bucket, f"{entry.where} (bucket)")
        if source_bucket is not None and bucket != source_bucket:
            raise InvalidInput(entry.where, f"names bucket {bucket!r} but source.bucket is {source_bucket!r}")
    return bucket, ObjectSpec(validate_key(entry.key, entry.where), entry.size, entry.checksum)


def read_chunks(body: Any, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """Chunks of a botocore StreamingBody (or any file-like object with ``read``)."""
    iter_chunks = getattr(body, "iter_chunks", None)
    if iter_chunks is not None:
        yield from iter_chunks(chunk_size)
        return
    while True:
        chunk = body.read(chunk_size)
        if not chunk:
            return
        yield chunk


def parse_manifest(text: str, source_bucket: str | None, fmt: str | None = None) -> Iterator[ObjectSpec]:
    """Parse a whole manifest text (see parse_manifest_stream for the formats).

    Entries may be ``s3://<source bucket>/<key>`` URLs. Used for small texts; jobs stream the manifest.
    """
    for entry in parse_manifest_stream([text], fmt):
        yield validated_entry(entry, source_bucket)[1]
