"""Source modes of a job: streamed manifests, prefix listings, key filters, destination key mapping,
and the staged manifest writer. Planning (``planning.py``) validates the input and orchestrates these.

Everything here streams: a manifest is decoded and parsed chunk by chunk, a prefix listing page by
page, and the staged manifest (the Distributed Map's JSON array of batches) is written as it is
produced — one ``PutObject`` when it is small, a multipart upload with parts of ``part_bytes`` when it
is not. Memory is bounded by a part, the open batch of each source bucket, and — only where two
entries could map to one destination key — a 16-byte digest per object.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import json
import logging
import posixpath
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import errors as named_errors
from .errors import ConfigurationError, CredentialsExpired, InvalidInput, TeacopyError, TeaUnavailable
from .models import DEFAULT_ENDPOINT, Checksum, CredentialsRef, ObjectSpec, TeaCredentials

logger = logging.getLogger(__name__)

MANIFEST_FORMATS = ("json", "jsonl", "csv", "lines")
MAX_ENTRY_CHARS = 64 * 1024  # one manifest line / JSON element; a key is at most 1024 bytes
MIB = 1024**2
STAGED_PART_BYTES = 8 * MIB  # multipart parts of the staged manifest (S3 minimum is 5 MiB)
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 256
MAX_SOURCE_BUCKETS = 100  # open batches are kept per source bucket
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})


def _validate_key(value: Any, where: str) -> str:
    from .planning import validate_key  # planning imports this module: import at call time

    return validate_key(value, where)


def _validate_bucket(value: Any, where: str) -> str:
    from .planning import validate_bucket

    return validate_bucket(value, where)


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
        for lineno, line in enumerate(split_lines(stream, field_name), start=1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
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
            data = {c: v.strip() for c, v in zip(columns, row, strict=True) if v.strip() != ""}
            yield _entry_from_object(data, where)
    except csv.Error as exc:
        raise InvalidInput(f"{field_name} line {reader.line_num}", f"is not valid CSV: {exc}") from exc


# --- include/exclude patterns ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFilter:
    """Shell-style patterns (``*``, ``?``, ``[abc]``; ``*`` also matches '/'), matched against a key.

    A key is accepted when it matches at least one include pattern (or there are none) and no exclude
    pattern.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _include_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _exclude_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_input(cls, include: Any, exclude: Any, field_prefix: str = "source") -> KeyFilter:
        inc = _patterns(include, f"{field_prefix}.include")
        exc = _patterns(exclude, f"{field_prefix}.exclude")
        return cls(
            include=inc,
            exclude=exc,
            _include_re=tuple(re.compile(fnmatch.translate(p)) for p in inc),
            _exclude_re=tuple(re.compile(fnmatch.translate(p)) for p in exc),
        )

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)

    def accepts(self, key: str) -> bool:
        if self._include_re and not any(p.match(key) for p in self._include_re):
            return False
        return not any(p.match(key) for p in self._exclude_re)


def _patterns(raw: Any, field_name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(field_name, "must be a non-empty list of patterns such as '*.nc'")
    if len(raw) > MAX_PATTERNS:
        raise InvalidInput(field_name, f"has {len(raw)} patterns; at most {MAX_PATTERNS}")
    for index, pattern in enumerate(raw):
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInput(f"{field_name}[{index}]", f"must be a pattern of 1-{MAX_PATTERN_CHARS} characters")
        if any(not ch.isprintable() for ch in pattern):
            raise InvalidInput(f"{field_name}[{index}]", "must not contain control characters")
    return tuple(raw)


# --- destination key mapping ---------------------------------------------------------------------------

KEY_MAPPING_MODES = ("keep", "basename", "strip_prefix", "template")
# Fields of a template; CMR_FIELDS only for a CMR source (from the granule's UMM-G record).
TEMPLATE_FIELDS = ("key", "basename", "dirname", "stem", "ext", "bucket")
CMR_FIELDS = ("collection", "version", "granule", "provider", "concept_id", "year", "month", "day", "doy")
VARYING_FIELDS = frozenset({"key", "basename", "stem"})
_SLASHES = re.compile(r"/{2,}")


@dataclass(frozen=True)
class KeyMapping:
    """Source key -> destination key (before the destination prefix).

    - ``keep`` (default): the source key;
    - ``basename``: the last path segment;
    - ``{"strip_prefix": "p/"}``: the key without ``p/`` (every key must start with it);
    - ``{"template": "{collection}/{year}/{basename}"}``: fields TEMPLATE_FIELDS, plus CMR_FIELDS for a
      CMR source. Empty path segments are dropped (``a//b`` -> ``a/b``).
    """

    mode: str = "keep"
    strip_prefix: str = ""
    template: str = ""
    fields: frozenset[str] = frozenset()

    @property
    def injective(self) -> bool:
        """Two different keys of one bucket can never map to the same destination key."""
        return self.mode in ("keep", "strip_prefix")

    def to_dict(self) -> Any:
        if self.mode == "keep" or self.mode == "basename":
            return self.mode
        return {"strip_prefix": self.strip_prefix} if self.mode == "strip_prefix" else {"template": self.template}

    @classmethod
    def from_input(cls, raw: Any, cmr: bool, field_name: str = "destination.key_mapping") -> KeyMapping:
        if raw is None or raw == "keep":
            return cls()
        if raw == "basename":
            return cls(mode="basename")
        if isinstance(raw, str):
            raise InvalidInput(
                field_name, "must be 'keep', 'basename', {'strip_prefix': 'dir/'} or {'template': '...'}"
            )
        if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("strip_prefix", "template"):
            raise InvalidInput(
                field_name, "must be 'keep', 'basename', {'strip_prefix': 'dir/'} or {'template': '...'}"
            )
        mode, value = next(iter(raw.items()))
        where = f"{field_name}.{mode}"
        if not isinstance(value, str) or not value:
            raise InvalidInput(where, "must be a non-empty string")
        if any(not ch.isprintable() for ch in value) or value.startswith("/"):
            raise InvalidInput(where, "must not start with '/' or contain control characters")
        if mode == "strip_prefix":
            return cls(mode="strip_prefix", strip_prefix=value)
        allowed = TEMPLATE_FIELDS + (CMR_FIELDS if cmr else ())
        names: set[str] = set()
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise InvalidInput(
                where, f"is not a valid template ({exc}); write literal braces as {{{{ and }}}}"
            ) from exc
        for _literal, name, spec, conversion in parsed:
            if name is None:
                continue
            if spec or conversion:
                raise InvalidInput(where, f"{{{name}}}: format specs and conversions are not supported")
            if name not in allowed:
                extra = "" if cmr else f" ({', '.join(CMR_FIELDS)} only for a 'cmr' source)"
                raise InvalidInput(
                    where, f"unknown field {{{name}}}; allowed: {', '.join('{' + f + '}' for f in allowed)}{extra}"
                )
            names.add(name)
        if not names & VARYING_FIELDS:
            raise InvalidInput(where, "must contain {basename}, {stem} or {key}, or every object gets the same key")
        if ".." in value.split("/"):
            raise InvalidInput(where, "must not contain '..' path segments")
        return cls(mode="template", template=value, fields=frozenset(names))

    def map(self, bucket: str, key: str, extra: Mapping[str, str] | None, where: str) -> str:
        """The mapped key, validated as an S3 key (``where`` names the entry in errors)."""
        if self.mode == "keep":
            return key
        if self.mode == "basename":
            mapped = posixpath.basename(key)
        elif self.mode == "strip_prefix":
            if not key.startswith(self.strip_prefix) or len(key) == len(self.strip_prefix):
                raise InvalidInput(
                    where,
                    f"key {key[:80]!r} does not start with destination.key_mapping.strip_prefix "
                    f"{self.strip_prefix!r} (or is only that prefix)",
                )
            mapped = key[len(self.strip_prefix) :]
        else:
            values = template_values(bucket, key, extra)
            missing = sorted(self.fields - set(values))
            if missing:
                raise InvalidInput(where, f"has no value for {{{missing[0]}}} in destination.key_mapping.template")
            mapped = _SLASHES.sub("/", self.template.format_map(values)).lstrip("/")
        return _validate_key(mapped, f"{where} (destination key)")


def template_values(bucket: str, key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    dirname, basename = posixpath.split(key)
    stem, dot, ext = basename.rpartition(".")
    if not dot or not stem:
        stem, ext = basename, ""
    values = {"key": key, "basename": basename, "dirname": dirname, "stem": stem, "ext": ext, "bucket": bucket}
    if extra:
        values.update(extra)
    return values


# --- prefix listing ------------------------------------------------------------------------------------


class SourceClients(Protocol):
    """S3 clients signed with TEA credentials for a source bucket (the endpoint is chosen per bucket)."""

    def s3_for(self, bucket: str) -> Any: ...

    def refreshed(self, bucket: str) -> Any:
        """A client with new credentials, after S3 answered ExpiredToken."""
        ...


def list_prefix(
    clients: SourceClients,
    bucket: str,
    prefix: str,
    key_filter: KeyFilter,
    *,
    check_deadline: Callable[[int], None] | None = None,
    page_size: int = 1000,
    max_refreshes: int = 3,
    stats: dict[str, int] | None = None,
) -> Iterator[ObjectSpec]:
    """Objects under ``prefix`` (sizes from the listing), filtered on the key relative to the prefix.

    Paged ListObjectsV2, one page in memory at a time. Folder markers (keys ending in '/') are skipped.
    ExpiredToken → new credentials and the same page again (at most ``max_refreshes`` times);
    AccessDenied / NoSuchBucket → InvalidInput. ``check_deadline(pages)`` runs after every page.
    ``stats`` (if given) counts pages, listed objects, kept objects and credential refreshes.
    """
    counts = stats if stats is not None else {}
    for name in ("pages", "listed", "kept", "refreshes"):
        counts.setdefault(name, 0)
    client = clients.s3_for(bucket)
    token: str | None = None
    refreshes = 0
    pages = 0
    while True:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if token is not None:
            params["ContinuationToken"] = token
        try:
            page = client.list_objects_v2(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in EXPIRED_CODES:
                refreshes += 1
                if refreshes > max_refreshes:
                    raise CredentialsExpired(
                        f"S3 kept answering {code} while listing s3://{bucket}/{prefix} after {max_refreshes} "
                        "credential refreshes; check the clocks and TEA"
                    ) from None
                logger.info("listing s3://%s/%s: %s, refreshing the TEA credentials", bucket, prefix, code)
                counts["refreshes"] += 1
                client = clients.refreshed(bucket)
                continue
            if code in ("AccessDenied", "AllAccessDisabled", "403"):
                raise InvalidInput(
                    "source.bucket",
                    f"the TEA credentials may not list s3://{bucket}/{prefix} (AccessDenied): check that the bucket "
                    "belongs to the configured TEA endpoint's DAAC",
                ) from None
            if code == "NoSuchBucket":
                raise InvalidInput("source.bucket", f"bucket {bucket!r} does not exist") from None
            raise
        pages += 1
        counts["pages"] += 1
        for item in page.get("Contents", []):
            key = str(item["Key"])
            if key.endswith("/"):
                continue
            counts["listed"] += 1
            if key_filter.accepts(key[len(prefix) :]):
                counts["kept"] += 1
                yield ObjectSpec(key, int(item.get("Size", 0)))
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise TeaUnavailable(f"S3 listing of s3://{bucket}/{prefix} is truncated without a continuation token")
        if check_deadline is not None:
            check_deadline(pages)


class InvokedCredentials:
    """SourceClients for the Plan Lambda: credentials come from the Credentials function (invoked).

    The Plan never reads the EDL token nor calls TEA itself: it invokes the Credentials function
    (``{"action": "fetch"|"refresh", "run_id", "endpoint"?, "used_version"?}``), which uses the
    coalesced cache and lease of the bucket's TEA endpoint, then reads the version it got from that
    endpoint's cache secret, like a CopyBatch worker.
    """

    def __init__(
        self,
        lambda_client: Any,
        function_name: str,
        cache: Any,  # credentials.CredentialCache of the default endpoint, or endpoint name -> cache
        make_client: Callable[[TeaCredentials], Any],
        run_id: str | None,
        endpoint_for: Callable[[str], str] = lambda _bucket: DEFAULT_ENDPOINT,
    ) -> None:
        if not function_name:
            raise ConfigurationError("prefix sources need the Credentials function (TEACOPY_CREDENTIALS_FUNCTION)")
        self._lambda = lambda_client
        self._function = function_name
        self._cache_for: Callable[[str], Any] = cache if callable(cache) else (lambda _endpoint: cache)
        self._make_client = make_client
        self._run_id = run_id
        self._endpoint_for = endpoint_for
        self._refs: dict[str, CredentialsRef] = {}
        self._clients: dict[str, Any] = {}
        self.invocations = 0

    def __repr__(self) -> str:
        return f"InvokedCredentials(function={self._function!r})"

    def s3_for(self, bucket: str) -> Any:
        endpoint = self._endpoint_for(bucket)
        if endpoint not in self._refs:
            self._use(endpoint, self._invoke({"action": "fetch", **self._named(endpoint)}))
        return self._clients[endpoint]

    def refreshed(self, bucket: str) -> Any:
        endpoint = self._endpoint_for(bucket)
        ref = self._refs.get(endpoint)
        used = {"used_version": ref.version} if ref is not None else {}
        self._use(endpoint, self._invoke({"action": "refresh", **self._named(endpoint), **used}))
        return self._clients[endpoint]

    @staticmethod
    def _named(endpoint: str) -> dict[str, str]:
        return {} if endpoint == DEFAULT_ENDPOINT else {"endpoint": endpoint}

    def _use(self, endpoint: str, ref: CredentialsRef) -> None:
        self._refs[endpoint] = ref
        self._clients[endpoint] = self._make_client(self._cache_for(endpoint).get(ref.version))

    def _invoke(self, event: dict[str, Any]) -> CredentialsRef:
        if self._run_id:
            event = {**event, "run_id": self._run_id}
        self.invocations += 1
        try:
            response = self._lambda.invoke(
                FunctionName=self._function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("TooManyRequestsException", "ServiceException", "ResourceConflictException"):
                raise TeaUnavailable(f"could not invoke the Credentials function ({code}); retried") from None
            raise ConfigurationError(f"cannot invoke the Credentials function {self._function} ({code})") from None
        except BotoCoreError as exc:
            raise TeaUnavailable(f"could not invoke the Credentials function ({type(exc).__name__})") from None
        raw = response["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = None
        if response.get("FunctionError"):
            error_type = str(payload.get("errorType", "")) if isinstance(payload, dict) else ""
            message = str(payload.get("errorMessage", ""))[:1000] if isinstance(payload, dict) else ""
            raise _named_error(error_type, message)
        return CredentialsRef.from_dict(payload, "credentials function answer")


def _named_error(error_type: str, message: str) -> TeacopyError:
    """Re-raise the Credentials function's named error under its own name (the workflow routes on it)."""
    cls = getattr(named_errors, error_type, None)
    if cls is InvalidInput:  # Plan sent a malformed request: a bug, not the operator's input
        return ConfigurationError(f"the Credentials function rejected Plan's request: {message[:300]}")
    if isinstance(cls, type) and issubclass(cls, TeacopyError):
        return cls(message)
    return TeaUnavailable(f"the Credentials function failed ({error_type or 'no error type'}): {message[:300]}")


# --- the staged manifest -------------------------------------------------------------------------------


class StagedManifest:
    """The Distributed Map's item list: a JSON array of batches, written as it is produced.

    Small manifests are one PutObject at ``close``; from ``part_bytes`` on, a multipart upload whose parts
    are uploaded as they fill (memory: one part). ``abort`` drops an unfinished upload (the staging
    bucket's lifecycle rule also aborts stale uploads after a day).
    """

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int = STAGED_PART_BYTES) -> None:
        if part_bytes < 5 * MIB:
            raise ValueError("multipart parts must be at least 5 MiB")
        self._s3, self.bucket, self.key, self._part_bytes = s3, bucket, key, part_bytes
        self._buffer = bytearray(b"[")
        self._items = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0
        self.peak_buffer = 0

    @property
    def items(self) -> int:
        return self._items

    def add(self, item: Mapping[str, Any]) -> None:
        if self._items:
            self._buffer += b","
        self._buffer += json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._items += 1
        self.peak_buffer = max(self.peak_buffer, len(self._buffer))
        if len(self._buffer) >= self._part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/json"
            )["UploadId"]
        number = len(self._parts) + 1
        body, self._buffer = self._buffer, bytearray()  # handed over, not copied
        response = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.bytes_written += len(body)

    def close(self) -> None:
        self._buffer += b"]"
        if self._upload_id is None:
            body, self._buffer = self._buffer, bytearray()
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json")
            self.bytes_written += len(body)
            return
        self._upload_part()
        self._s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None

    def abort(self) -> None:
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except ClientError as exc:
            logger.warning("could not abort the staged manifest upload %s (%s)", upload_id, exc)


class Batcher:
    """Greedy batches per source bucket, bounded by count, known bytes and the batch's JSON size.

    A batch only ever holds objects of one bucket (its credentials endpoint is chosen per bucket).
    """

    def __init__(
        self,
        sink: StagedManifest,
        max_objects: int,
        max_bytes: int,
        max_json_bytes: int,
        endpoint_for: Callable[[str], str] = lambda _bucket: DEFAULT_ENDPOINT,
    ) -> None:
        self._sink = sink
        self._max_objects, self._max_bytes, self._max_json = max_objects, max_bytes, max_json_bytes
        self._open: dict[str, tuple[list[dict[str, Any]], list[int]]] = {}  # bucket -> (objects, [bytes, json])
        self._endpoint_for = endpoint_for
        self.endpoints: set[str] = set()  # the TEA endpoints the staged batches need credentials from
        self.batches = 0

    def add(self, bucket: str, item: dict[str, Any], where: str) -> None:
        size = int(item.get("size") or 0)
        item_json = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 1
        current = self._open.get(bucket)
        if current is None:
            if len(self._open) >= MAX_SOURCE_BUCKETS:
                raise InvalidInput(where, f"names more than {MAX_SOURCE_BUCKETS} source buckets in one job")
            current = self._open[bucket] = ([], [0, 0])
        objects, totals = current
        if objects and (
            len(objects) >= self._max_objects
            or totals[0] + size > self._max_bytes
            or totals[1] + item_json > self._max_json
        ):
            self._flush(bucket)
            objects, totals = self._open[bucket] = ([], [0, 0])
        objects.append(item)
        totals[0] += size
        totals[1] += item_json

    def _flush(self, bucket: str) -> None:
        objects, _ = self._open.pop(bucket)
        if objects:
            self.batches += 1
            endpoint = self._endpoint_for(bucket)
            self.endpoints.add(endpoint)
            self._sink.add(
                {"id": f"b{self.batches:06d}", "source_bucket": bucket, "endpoint": endpoint, "objects": objects}
            )

    def finish(self) -> None:
        for bucket in list(self._open):
            self._flush(bucket)

    @property
    def buckets(self) -> int:
        return len(self._open)


class SeenKeys:
    """Duplicate sources and destination-key collisions, as 16-byte digests (only where they can occur)."""

    def __init__(self, sources: bool, destinations: bool) -> None:
        self._sources: set[bytes] | None = set() if sources else None
        self._destinations: set[bytes] | None = set() if destinations else None

    @staticmethod
    def _digest(*parts: str) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.digest()

    def is_duplicate_source(self, bucket: str, key: str) -> bool:
        if self._sources is None:
            return False
        digest = self._digest(bucket, key)
        if digest in self._sources:
            return True
        self._sources.add(digest)
        return False

    def claims_destination(self, dest_key: str) -> bool:
        """False when another source already maps to ``dest_key``."""
        if self._destinations is None:
            return True
        digest = self._digest(dest_key)
        if digest in self._destinations:
            return False
        self._destinations.add(digest)
        return True

    def __len__(self) -> int:
        return max(len(self._sources or ()), len(self._destinations or ()))


def validated_entry(entry: ManifestEntry, source_bucket: str | None) -> tuple[str, ObjectSpec]:
    """(bucket, ObjectSpec) of a manifest entry: bare keys need ``source_bucket``; URLs must match it."""
    if entry.bucket is None:
        if source_bucket is None:
            raise InvalidInput(
                entry.where, "is a bare key: give s3://bucket/key URLs, or set source.bucket for bare keys"
            )
        bucket = source_bucket
    else:
        bucket = _validate_bucket(entry.bucket, f"{entry.where} (bucket)")
        if source_bucket is not None and bucket != source_bucket:
            raise InvalidInput(entry.where, f"names bucket {bucket!r} but source.bucket is {source_bucket!r}")
    return bucket, ObjectSpec(_validate_key(entry.key, entry.where), entry.size, entry.checksum)


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
