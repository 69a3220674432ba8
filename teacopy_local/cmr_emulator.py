"""A local CMR granule search (``/search/granules.umm_json``) on 127.0.0.1, for tests and the demo.

It answers like CMR (nasa/Common-Metadata-Repository search API; UMM-G 1.6.x records):

- query parameters ``collection_concept_id`` or ``short_name`` + ``version``, ``provider``,
  ``temporal[]=start,end`` (overlap), ``bounding_box[]=W,S,E,N`` (intersection, antimeridian aware),
  ``updated_since`` (revision date >= it) and ``page_size`` (1..2000, default 10; more is a 400);
- paging with ``CMR-Search-After``: every non-empty page carries the header (the last one too, as CMR
  does, unless ``search_after_on_last_page=False``); a value that does not belong to the query is a 400;
- ``CMR-Hits``, ``CMR-Took``, ``CMR-Request-Id`` headers; body ``{"hits", "took", "items": [{"meta", "umm"}]}``
  with UMM-G records: ``GranuleUR``, ``CollectionReference``, ``TemporalExtent.RangeDateTime``,
  ``SpatialExtent``, ``DataGranule.ArchiveAndDistributionInformation`` (``Name``, ``SizeInBytes``,
  ``Size``/``SizeUnit``, ``Checksum``) and ``RelatedUrls`` (``GET DATA`` https, ``GET DATA VIA DIRECT
  ACCESS`` s3, and the ``/s3credentials`` endpoint).

Fault hooks: ``script(status, body, headers, delay)`` queues canned answers consumed one per request;
``script_at(n, ...)`` answers the n-th request (1-based) that way; ``throttle(times, retry_after)``
queues 429s with ``Retry-After``; ``time_out_next()`` makes the next page partial with ``CMR-Time-Out: true``.
``requests`` records every request (path, parameters, the CMR-Search-After it sent).

**Synthetic collections** (``add_synthetic_collection``): millions of granules that are never held. Granule
``i`` is made from its index when a page needs it (``SyntheticCollection.granule``), so a page costs the same
at granule 10 as at granule 9,999,999 and the emulator's memory does not grow with the collection (``make
scale`` pages through 1,000,000 of them). A query with only the collection (and ``provider``, ``page_size``)
jumps straight to its page; a query with temporal, bounding-box or updated_since filters scans the generated
granules up to its page (fine for tests, slow for millions).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .loopback import LoopbackServer

GRANULES_PATH = "/search/granules.umm_json"
COLLECTIONS_PATH = "/search/collections.umm_json"
UMM_G_VERSION = "1.6.5"
MAX_PAGE_SIZE = 2000
DEFAULT_PAGE_SIZE = 10


@dataclass(frozen=True)
class EmulatedFile:
    bucket: str
    key: str
    size: int
    checksum: tuple[str, str] | None = None  # (algorithm, value) as UMM-G spells it, e.g. ("MD5", "...")
    size_in_bytes: bool = True  # False: publish only Size + SizeUnit (approximate), as some providers do


@dataclass
class EmulatedGranule:
    concept_id: str
    collection_concept_id: str
    granule_ur: str
    begin: datetime
    end: datetime
    bbox: tuple[float, float, float, float]  # W, S, E, N
    files: tuple[EmulatedFile, ...]
    revision_date: datetime
    revision_id: int = 1
    lean: bool = False  # answer with a minimal UMM-G record (synthetic collections)


@dataclass(frozen=True)
class SyntheticCollection:
    """``count`` granules of one collection, each made from its index on demand (never all held).

    Granule ``i``: GranuleUR ``<prefix>-<i:09d>``, begins ``start + i * step``, one day long, updated
    ``updated``; ``files_per_granule`` files ``<key_prefix><i // 1000:06d>/<i:09d>-<n>.nc`` in ``bucket`` of
    ``size_of(i, n)`` bytes (default ``1024 + i % 4096``), with an MD5 checksum of that many zero bytes'
    length written as hex of the index (a stand-in: make scale never reads the objects).
    """

    concept_id: str
    count: int
    bucket: str
    key_prefix: str = "granules/"
    files_per_granule: int = 1
    start: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    step: timedelta = timedelta(minutes=5)
    updated: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    granule_prefix: str = "SYNTH"

    def key(self, index: int, file: int) -> str:
        return f"{self.key_prefix}{index // 1000:06d}/{index:09d}-{file}.nc"

    def size(self, index: int, file: int) -> int:
        return 1024 + (index * 7 + file) % 4096

    def granule(self, index: int, provider: str) -> EmulatedGranule:
        begin = self.start + index * self.step
        files = tuple(
            EmulatedFile(self.bucket, self.key(index, n), self.size(index, n), ("MD5", f"{index:032x}"))
            for n in range(self.files_per_granule)
        )
        return EmulatedGranule(
            concept_id=f"G{3_000_000_000 + index}-{provider}",
            collection_concept_id=self.concept_id,
            granule_ur=f"{self.granule_prefix}-{index:09d}",
            begin=begin,
            end=begin + timedelta(days=1),
            bbox=(-180.0, -90.0, 180.0, 90.0),
            files=files,
            revision_date=self.updated,
            lean=True,
        )


@dataclass(frozen=True)
class EmulatedCollection:
    concept_id: str
    short_name: str
    version: str
    provider: str
    tea_endpoint: str


@dataclass(frozen=True)
class Scripted:
    status: int
    body: bytes
    headers: dict[str, str]
    delay: float


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    params: list[tuple[str, str]]
    search_after: str | None
    client_id: str | None
    status: int = 0


def _iso(value: datetime) -> str:
    v = value.astimezone(UTC)  # (an f-string: strftime was a third of a synthetic page's cost)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.000Z"


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _lon_ranges(west: float, east: float) -> list[tuple[float, float]]:
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def _bbox_intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(x0 <= y1 and y0 <= x1 for x0, x1 in _lon_ranges(a[0], a[2]) for y0, y1 in _lon_ranges(b[0], b[2]))


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class CmrEmulator:
    """A CMR granule search in a daemon thread. Use as a context manager or start()/stop()."""

    host: str = "127.0.0.1"
    port: int = 0
    search_after_on_last_page: bool = True
    collections: dict[str, EmulatedCollection] = field(default_factory=dict)
    granules: list[EmulatedGranule] = field(default_factory=list)
    synthetic: dict[str, SyntheticCollection] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _script: deque[Scripted] = field(default_factory=deque, repr=False)
    _script_at: dict[int, Scripted] = field(default_factory=dict, repr=False)
    _time_outs: int = 0
    _count: int = 0
    _received: list[ReceivedRequest] = field(default_factory=list, repr=False)
    _http: LoopbackServer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = LoopbackServer("CMR emulator", self.host, self.port, lambda: _make_handler(self))

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> CmrEmulator:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> CmrEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._http.url

    # -- catalogue -------------------------------------------------------------------------------

    def add_collection(
        self,
        short_name: str,
        version: str,
        provider: str = "POCLOUD",
        tea_endpoint: str = "https://archive.podaac.earthdata.nasa.gov",
        concept_id: str | None = None,
    ) -> str:
        """A collection; its concept id is made up unless given (e.g. a real one a job input names)."""
        with self._lock:
            concept_id = concept_id or f"C{1_000_000_000 + len(self.collections) + 1}-{provider}"
            self.collections[concept_id] = EmulatedCollection(concept_id, short_name, version, provider, tea_endpoint)
        return concept_id

    def add_granule(
        self,
        collection_concept_id: str,
        granule_ur: str,
        files: list[EmulatedFile],
        begin: datetime,
        end: datetime | None = None,
        bbox: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0),
        updated: datetime | None = None,
    ) -> str:
        collection = self.collections[collection_concept_id]
        with self._lock:
            concept_id = f"G{2_000_000_000 + len(self.granules) + 1}-{collection.provider}"
            self.granules.append(
                EmulatedGranule(
                    concept_id=concept_id,
                    collection_concept_id=collection_concept_id,
                    granule_ur=granule_ur,
                    begin=begin,
                    end=end or begin + timedelta(days=1),
                    bbox=bbox,
                    files=tuple(files),
                    revision_date=updated or datetime(2024, 1, 1, tzinfo=UTC),
                )
            )
        return concept_id

    def add_synthetic_collection(
        self,
        short_name: str,
        version: str,
        count: int,
        bucket: str,
        *,
        provider: str = "POCLOUD",
        tea_endpoint: str = "https://archive.podaac.earthdata.nasa.gov",
        concept_id: str | None = None,
        **options: Any,
    ) -> SyntheticCollection:
        """A collection of ``count`` granules generated on demand (``SyntheticCollection``; ``options`` are its
        other fields: key_prefix, files_per_granule, start, step, updated, granule_prefix)."""
        concept = self.add_collection(short_name, version, provider, tea_endpoint, concept_id)
        collection = SyntheticCollection(concept_id=concept, count=count, bucket=bucket, **options)
        with self._lock:
            self.synthetic[concept] = collection
        return collection

    def collection_search(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``collections.umm_json`` by concept_id, or short_name + version: DirectDistributionInformation."""
        single = dict(params)
        with self._lock:
            found = [
                c
                for c in self.collections.values()
                if c.concept_id == single.get("concept_id")
                or (c.short_name == single.get("short_name") and c.version == single.get("version"))
            ]
        items = [
            {
                "meta": {"concept-type": "collection", "concept-id": c.concept_id, "provider-id": c.provider},
                "umm": {
                    "ShortName": c.short_name,
                    "Version": c.version,
                    "DirectDistributionInformation": {
                        "Region": "us-west-2",
                        "S3CredentialsAPIEndpoint": f"{c.tea_endpoint}/s3credentials",
                        "S3CredentialsAPIDocumentationURL": f"{c.tea_endpoint}/s3credentialsREADME",
                    },
                },
            }
            for c in found[:1]
        ]
        return {"hits": len(found), "took": 1, "items": items}

    # -- fault hooks and inspection ----------------------------------------------------------------

    def script(self, status: int, body: Any = b"", headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self._lock:
            self._script.append(_scripted(status, body, headers, delay))

    def script_at(
        self, request_number: int, status: int, body: Any = b"", headers: dict[str, str] | None = None
    ) -> None:
        with self._lock:
            self._script_at[request_number] = _scripted(status, body, headers, 0.0)

    def throttle(self, times: int = 1, retry_after: float = 1, at_request: int | None = None) -> None:
        body = {"errors": ["Too many requests, please try again later."]}
        headers = {"Retry-After": f"{retry_after:g}"}
        for index in range(times):
            if at_request is None:
                self.script(429, body, headers)
            else:
                self.script_at(at_request + index, 429, body, headers)

    def time_out_next(self, times: int = 1) -> None:
        with self._lock:
            self._time_outs += times

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    # -- search ----------------------------------------------------------------------------------

    def search(self, params: list[tuple[str, str]], search_after: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        single = {k: v for k, v in params}
        unknown = {k for k, _ in params} - {
            "collection_concept_id",
            "short_name",
            "version",
            "provider",
            "temporal[]",
            "bounding_box[]",
            "updated_since",
            "page_size",
        }
        if unknown:
            raise QueryError(400, f"Parameter [{sorted(unknown)[0]}] was not recognized.")
        try:
            page_size = int(single.get("page_size", DEFAULT_PAGE_SIZE))
        except ValueError:
            raise QueryError(400, "page_size must be a number between 0 and 2000") from None
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise QueryError(400, "page_size must be a number between 0 and 2000")
        identity = json.dumps(sorted(p for p in params if p[0] != "page_size")).encode()
        query_hash = hashlib.sha256(identity).hexdigest()[:12]
        start = 0
        if search_after is not None:
            try:
                token = json.loads(search_after)
                assert isinstance(token, list) and len(token) == 3 and token[2] == query_hash
                start = int(token[1]) + 1
            except (ValueError, AssertionError, TypeError):
                raise QueryError(400, "The search-after header value is invalid for this query.") from None
        hits, page = self._page_of(params, single, start, page_size)
        with self._lock:
            time_out = self._time_outs > 0
            if time_out:
                self._time_outs -= 1
        if time_out:
            page = page[: len(page) // 2]
        headers = {
            "CMR-Hits": str(hits),
            "CMR-Took": "7",
            "CMR-Request-Id": str(uuid.uuid4()),
            "Content-Type": f"application/vnd.nasa.cmr.umm_results+json;version={UMM_G_VERSION}; charset=utf-8",
        }
        last = start + len(page) >= hits
        if page and (self.search_after_on_last_page or not last):
            headers["CMR-Search-After"] = json.dumps(["emu", start + len(page) - 1, query_hash])
        if time_out:
            headers["CMR-Time-Out"] = "true"
        body = {"hits": hits, "took": 7, "items": [self._item(g) for g in page]}
        return body, headers

    def _page_of(
        self, params: list[tuple[str, str]], single: dict[str, str], start: int, page_size: int
    ) -> tuple[int, list[EmulatedGranule]]:
        """(hits, the granules of the page starting at match ``start``): stored granules, then synthetic ones."""
        matches = [g for g in self._snapshot() if self._matches(g, params, single)]
        with self._lock:
            synthetic = [
                c for c in self.synthetic.values() if self._collection_matches(self.collections[c.concept_id], single)
            ]
        hits = len(matches)
        page = matches[start : start + page_size]
        offset = max(0, start - len(matches))  # where the page starts inside the synthetic granules
        filtered = any(name in ("temporal[]", "bounding_box[]", "updated_since") for name, _ in params)
        for collection in synthetic:
            provider = self.collections[collection.concept_id].provider
            if not filtered:
                count = collection.count
                wanted = range(offset, min(count, offset + page_size - len(page)))
                page += [collection.granule(i, provider) for i in wanted]
            else:  # scan: every generated granule up to the page is checked against the filters
                count = 0
                for index in range(collection.count):
                    granule = collection.granule(index, provider)
                    if not self._matches(granule, params, single):
                        continue
                    if offset <= count and len(page) < page_size:
                        page.append(granule)
                    count += 1
            hits += count
            offset = max(0, offset - count)
        return hits, page

    def _snapshot(self) -> list[EmulatedGranule]:
        with self._lock:
            return list(self.granules)

    def _matches(self, granule: EmulatedGranule, params: list[tuple[str, str]], single: dict[str, str]) -> bool:
        if not self._collection_matches(self.collections[granule.collection_concept_id], single):
            return False
        for name, value in params:
            if name == "temporal[]":
                start_text, _, end_text = value.partition(",")
                try:
                    start = _parse_time(start_text) if start_text else None
                    end = _parse_time(end_text) if end_text else None
                except ValueError:
                    raise QueryError(400, f"temporal datetime is invalid: {value}") from None
                if (start is not None and granule.end < start) or (end is not None and granule.begin > end):
                    return False
            elif name == "bounding_box[]":
                try:
                    west, south, east, north = (float(v) for v in value.split(","))
                except ValueError:
                    raise QueryError(400, f"[{value}] is not a valid URL encoded bounding_box") from None
                if not _bbox_intersects((west, south, east, north), granule.bbox):
                    return False
            elif name == "updated_since":
                try:
                    since = _parse_time(value)
                except ValueError:
                    raise QueryError(400, f"updated_since [{value}] is not a valid datetime") from None
                if granule.revision_date < since:
                    return False
        return True

    @staticmethod
    def _collection_matches(collection: EmulatedCollection, single: dict[str, str]) -> bool:
        if "collection_concept_id" in single and single["collection_concept_id"] != collection.concept_id:
            return False
        if "collection_concept_id" not in single:
            if "short_name" not in single:
                raise QueryError(400, "The CMR does not allow querying across granules in all collections.")
            if single["short_name"] != collection.short_name:
                return False
            if "version" in single and single["version"] != collection.version:
                return False
        return "provider" not in single or single["provider"] == collection.provider

    def _lean_item(self, g: EmulatedGranule, c: EmulatedCollection) -> dict[str, Any]:
        """A minimal UMM-G record: only what a granule search client reads (GranuleUR, CollectionReference,
        TemporalExtent, ArchiveAndDistributionInformation, the direct-access RelatedUrls). A fifth of a full
        record's bytes: a synthetic page of 2,000 costs the emulator and the client less than real CMR's."""
        archive, related = [], []
        for f in g.files:
            entry: dict[str, Any] = {"Name": f.key.rsplit("/", 1)[-1], "SizeInBytes": f.size}
            if f.checksum is not None:
                entry["Checksum"] = {"Value": f.checksum[1], "Algorithm": f.checksum[0]}
            archive.append(entry)
            related.append({"URL": f"s3://{f.bucket}/{f.key}", "Type": "GET DATA VIA DIRECT ACCESS"})
        return {
            "meta": {"concept-id": g.concept_id, "provider-id": c.provider, "revision-date": _iso(g.revision_date)},
            "umm": {
                "GranuleUR": g.granule_ur,
                "CollectionReference": {"ShortName": c.short_name, "Version": c.version},
                "TemporalExtent": {
                    "RangeDateTime": {"BeginningDateTime": _iso(g.begin), "EndingDateTime": _iso(g.end)}
                },
                "DataGranule": {"ArchiveAndDistributionInformation": archive},
                "RelatedUrls": related,
            },
        }

    def _item(self, g: EmulatedGranule) -> dict[str, Any]:
        c = self.collections[g.collection_concept_id]
        if g.lean:
            return self._lean_item(g, c)
        archive = []
        related: list[dict[str, Any]] = []
        for f in g.files:
            name = f.key.rsplit("/", 1)[-1]
            entry: dict[str, Any] = {"Name": name, "Format": "netCDF-4"}
            if f.size_in_bytes:
                entry["SizeInBytes"] = f.size
            entry["Size"] = round(f.size / 1024**2, 3)
            entry["SizeUnit"] = "MB"
            if f.checksum is not None:
                entry["Checksum"] = {"Value": f.checksum[1], "Algorithm": f.checksum[0]}
            archive.append(entry)
            related += [
                {
                    "URL": f"{c.tea_endpoint}/{f.bucket}/{f.key}",
                    "Type": "GET DATA",
                    "Description": "Download " + name,
                },
                {
                    "URL": f"s3://{f.bucket}/{f.key}",
                    "Type": "GET DATA VIA DIRECT ACCESS",
                    "Description": "This link provides direct download access via S3 to the granule",
                },
            ]
        related.append(
            {
                "URL": f"{c.tea_endpoint}/s3credentials",
                "Type": "VIEW RELATED INFORMATION",
                "Description": "api endpoint to retrieve temporary credentials valid for same-region direct s3 access",
            }
        )
        west, south, east, north = g.bbox
        return {
            "meta": {
                "concept-type": "granule",
                "concept-id": g.concept_id,
                "revision-id": g.revision_id,
                "native-id": g.granule_ur,
                "collection-concept-id": c.concept_id,
                "provider-id": c.provider,
                "format": "application/vnd.nasa.cmr.umm+json",
                "revision-date": _iso(g.revision_date),
            },
            "umm": {
                "GranuleUR": g.granule_ur,
                "CollectionReference": {"ShortName": c.short_name, "Version": c.version},
                "TemporalExtent": {
                    "RangeDateTime": {"BeginningDateTime": _iso(g.begin), "EndingDateTime": _iso(g.end)}
                },
                "SpatialExtent": {
                    "HorizontalSpatialDomain": {
                        "Geometry": {
                            "BoundingRectangles": [
                                {
                                    "WestBoundingCoordinate": west,
                                    "SouthBoundingCoordinate": south,
                                    "EastBoundingCoordinate": east,
                                    "NorthBoundingCoordinate": north,
                                }
                            ]
                        }
                    }
                },
                "DataGranule": {
                    "ArchiveAndDistributionInformation": archive,
                    "DayNightFlag": "Unspecified",
                    "ProductionDateTime": _iso(g.revision_date),
                },
                "RelatedUrls": related,
                "ProviderDates": [{"Date": _iso(g.revision_date), "Type": "Update"}],
                "MetadataSpecification": {
                    "URL": f"https://cdn.earthdata.nasa.gov/umm/granule/v{UMM_G_VERSION}",
                    "Name": "UMM-G",
                    "Version": UMM_G_VERSION,
                },
            },
        }

    # -- request handling ------------------------------------------------------------------------

    def _next_script(self) -> tuple[int, Scripted | None]:
        with self._lock:
            self._count += 1
            number = self._count
            if number in self._script_at:
                return number, self._script_at.pop(number)
            return number, self._script.popleft() if self._script else None

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(request)


def _scripted(status: int, body: Any, headers: dict[str, str] | None, delay: float) -> Scripted:
    if isinstance(body, dict | list):
        payload = json.dumps(body).encode()
        default_type = "application/json"
    else:
        payload = body.encode() if isinstance(body, str) else bytes(body)
        default_type = "text/plain"
    return Scripted(status, payload, {"Content-Type": default_type, **(headers or {})}, float(delay))


JSON = {"Content-Type": "application/json"}


def _errors(message: str) -> bytes:
    return json.dumps({"errors": [message]}).encode()


def _make_handler(emulator: CmrEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "CMR-emulator/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            """Silenced."""

        def do_GET(self) -> None:
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            params = parse_qsl(parts.query, keep_blank_values=True)
            search_after = self.headers.get("CMR-Search-After")
            _number, scripted = emulator._next_script()
            if scripted is not None:
                if scripted.delay:
                    emulator._http.stopping.wait(scripted.delay)
                status, body, headers = scripted.status, scripted.body, scripted.headers
            elif parts.path == COLLECTIONS_PATH:
                document = emulator.collection_search(params)
                status, body, headers = 200, json.dumps(document).encode(), {**JSON, "CMR-Hits": str(document["hits"])}
            elif parts.path != GRANULES_PATH:
                status, body, headers = 404, _errors(f"The resource {parts.path} was not found."), JSON
            else:
                try:
                    document, headers = emulator.search(params, search_after)
                    status, body = 200, json.dumps(document, separators=(",", ":")).encode()
                except QueryError as exc:
                    status, body, headers = exc.status, _errors(exc.message), JSON
            # Recorded before answering: a client that has its answer finds its request in ``requests``.
            emulator._record(ReceivedRequest(parts.path, params, search_after, self.headers.get("Client-Id"), status))
            self._send(status, body, headers)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

    return Handler
