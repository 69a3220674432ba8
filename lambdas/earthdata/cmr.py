"""A client for NASA's Common Metadata Repository (CMR) granule search, and the CMR source's input.

What it relies on (nasa/Common-Metadata-Repository search API, UMM-G schema):

- ``GET <cmr>/search/granules.umm_json?collection_concept_id=...&page_size=N`` (N <= 2000). Paging: the
  response header ``CMR-Search-After`` is sent back as a request header for the next page; it is absent
  (or the page is empty) when the results are exhausted. ``CMR-Hits`` is the total.
- ``429 Too Many Requests`` carries ``Retry-After``; we wait at least that long (bounded: a limit per
  wait, a number of attempts per page and one deadline for the whole query).
- ``CMR-Time-Out: true`` means CMR returned partial results: the page is requested again (bounded).
- s3 URLs: ``umm.RelatedUrls[]`` with ``Type == "GET DATA VIA DIRECT ACCESS"``.
- Sizes and checksums: ``umm.DataGranule.ArchiveAndDistributionInformation[]`` (and their nested
  ``Files[]``) -> ``Name``, ``SizeInBytes``, ``Checksum {Value, Algorithm}``, matched to the s3 URL by
  basename. ``Size`` + ``SizeUnit`` is approximate and is not carried. Checksums are optional; only the
  algorithms the copy engine verifies (models.CHECKSUM_ALGORITHMS) are carried.

The HTTP basics are ``lambdas.earthdata.http``'s (stdlib only). The HTTP session, the clock and the sleep
are injected; the CMR URL must be https (plain http only to a loopback address: the emulator).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import posixpath
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from lambdas.contracts.errors import CmrUnavailable, ConfigurationError, InvalidInput
from lambdas.contracts.models import CHECKSUM_ALGORITHMS, Checksum, format_time, parse_time
from lambdas.contracts.validation import checked, known_fields, parse, rule_error
from lambdas.earthdata.http import (
    USER_AGENT,
    HttpResponse,
    HttpSession,
    HttpTransportError,
    UrllibSession,
    backoff_delay,
    base_url,
    retry_after_seconds,
)
from lambdas.s3.limits import MIB

logger = logging.getLogger(__name__)

DEFAULT_CMR_URL = "https://cmr.earthdata.nasa.gov"
GRANULES_PATH = "/search/granules.umm_json"
COLLECTIONS_PATH = "/search/collections.umm_json"
DIRECT_ACCESS = "GET DATA VIA DIRECT ACCESS"
MAX_PAGE_SIZE = 2000
MAX_PAGE_BYTES = 256 * MIB  # a UMM-JSON page of 2000 granules is typically 5-40 MB
CLIENT_ID = "teacopy"
# --- the query (validated execution input: ``source.cmr``) ----------------------------------------------

ISO_TIME_EXAMPLE = "2023-01-01T00:00:00Z"
# The JSON-Schema form of _time's rule, for editors (the rule itself is parse_time).
ISO_TIME_PATTERN = r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?\s*$"


def _time(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, f"must be an ISO-8601 time such as {ISO_TIME_EXAMPLE}")
    try:
        return format_time(parse_time(value)).replace("+00:00", "Z")
    except ValueError as exc:
        raise InvalidInput(field_name, f"{value[:40]!r} is not an ISO-8601 time such as {ISO_TIME_EXAMPLE}") from exc


def _number(value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise rule_error("must be a number")
    if not low <= value <= high:
        raise rule_error(f"must be between {low:g} and {high:g}")
    return float(value)


def _identifier(max_len: int) -> Callable[[Any], str | None]:
    def validate(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise rule_error("must be a non-empty string")
        if len(value) > max_len or any(not ch.isprintable() for ch in value):
            raise rule_error(f"must be at most {max_len} printable characters")
        return value.strip()

    return validate


def _concept_id(value: str) -> str:
    if not value.startswith("C") or "-" not in value:
        raise rule_error(f"{value!r} is not a collection concept id (C123-PROV)")
    return value


IsoTime = Annotated[
    str,
    BeforeValidator(checked(_time), json_schema_input_type=str),
    Field(description="An ISO-8601 time, e.g. 2023-01-01T00:00:00Z.", json_schema_extra={"pattern": ISO_TIME_PATTERN}),
]
Longitude = Annotated[
    float, BeforeValidator(lambda v: _number(v, -180, 180)), Field(json_schema_extra={"minimum": -180, "maximum": 180})
]
Latitude = Annotated[
    float, BeforeValidator(lambda v: _number(v, -90, 90)), Field(json_schema_extra={"minimum": -90, "maximum": 90})
]
TEMPORAL_RULE = "must be {'start': <ISO time>, 'end': <ISO time>} (either may be omitted)"
BBOX_NAMES = ("west", "south", "east", "north")


class TimeRange(BaseModel):
    """Granules overlapping [start, end]; either end may be open (left out)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="temporal range", json_schema_extra={"minProperties": 1}
    )

    start: IsoTime | None = None
    end: IsoTime | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw: Any) -> Any:
        if isinstance(raw, list) and len(raw) == 2:
            raw = {"start": raw[0], "end": raw[1]}
        if not isinstance(raw, dict) or set(raw) - {"start", "end"}:
            raise rule_error(TEMPORAL_RULE)
        return raw

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start is None and self.end is None:
            raise rule_error("give 'start', 'end' or both")
        if self.start is not None and self.end is not None and parse_time(self.start) > parse_time(self.end):
            raise rule_error(f"start {self.start} is after end {self.end}")
        return self


class BoundingBox(BaseModel):
    """West, south, east, north in degrees; west > east crosses the antimeridian."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="bounding box")

    west: Longitude
    south: Latitude
    east: Longitude
    north: Latitude

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw: Any) -> Any:
        if isinstance(raw, list):
            if len(raw) != 4:
                raise rule_error("must be [west, south, east, north] in degrees")
            raw = dict(zip(BBOX_NAMES, raw, strict=True))
        if not isinstance(raw, dict) or set(raw) != set(BBOX_NAMES):
            raise rule_error("must be {'west', 'south', 'east', 'north'} in degrees (or a list W,S,E,N)")
        return raw

    @model_validator(mode="after")
    def _south_of_north(self) -> BoundingBox:
        if self.south > self.north:
            raise rule_error("south must not be greater than north (west > east crosses the antimeridian)")
        return self

    def as_list(self) -> list[float]:
        return [self.west, self.south, self.east, self.north]


# The JSON-Schema form of CmrQuery._one_collection (for editors; the validator is the rule).
_ONE_COLLECTION: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["collection_concept_id"],
            "not": {"anyOf": [{"required": ["short_name"]}, {"required": ["version"]}]},
        },
        {"required": ["short_name", "version"], "not": {"required": ["collection_concept_id"]}},
    ]
}


def _identifier_schema(max_len: int, **extra: Any) -> dict[str, Any]:
    return {"minLength": 1, "maxLength": max_len, **extra}


@pydantic_dataclass(
    frozen=True, config=ConfigDict(extra="forbid", title="CMR query", json_schema_extra=_ONE_COLLECTION)
)
class CmrQuery:
    """A CMR granule search: one collection (concept id, or short_name + version), optional filters.

    The objects are the granules' 'GET DATA VIA DIRECT ACCESS' s3:// URLs.
    """

    collection_concept_id: Annotated[
        str | None,
        BeforeValidator(_identifier(100)),
        AfterValidator(lambda v: v if v is None else _concept_id(v)),
        Field(
            description="The collection's concept id (C<number>-<PROVIDER>).",
            examples=["C1996881146-POCLOUD"],
            json_schema_extra=_identifier_schema(100, pattern=r"^\s*C[^\s]*-[^\s]*\s*$"),
        ),
    ] = None
    short_name: Annotated[
        str | None,
        BeforeValidator(_identifier(1024)),
        Field(
            description="The collection's short name (with version).",
            examples=["MUR-JPL-L4-GLOB-v4.1"],
            json_schema_extra=_identifier_schema(1024),
        ),
    ] = None
    version: Annotated[
        str | None,
        BeforeValidator(_identifier(80)),
        Field(description="The collection's version.", examples=["4.1"], json_schema_extra=_identifier_schema(80)),
    ] = None
    provider: Annotated[
        str | None,
        BeforeValidator(_identifier(40)),
        Field(description="The CMR provider.", examples=["POCLOUD"], json_schema_extra=_identifier_schema(40)),
    ] = None
    temporal: Annotated[
        TimeRange | None,
        BeforeValidator(lambda v: v, json_schema_input_type=TimeRange | tuple[IsoTime | None, IsoTime | None]),
        Field(description="Granules overlapping this time range: {start, end} or [start, end]; either may be open."),
    ] = None
    bounding_box: Annotated[
        BoundingBox | None,
        BeforeValidator(
            lambda v: v, json_schema_input_type=BoundingBox | tuple[Longitude, Latitude, Longitude, Latitude]
        ),
        Field(description="West, south, east, north in degrees (west > east crosses the antimeridian)."),
    ] = None
    updated_since: Annotated[
        IsoTime | None,
        Field(description="Only granules created or changed at or after this time (incremental runs)."),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _one_collection(cls, raw: Any) -> Any:
        raw = known_fields(raw, QUERY_FIELDS, f"must be an object with fields {', '.join(QUERY_FIELDS)}")
        if isinstance(raw, dict):
            concept, short_name, version = (raw.get(k) for k in ("collection_concept_id", "short_name", "version"))
            if concept is not None and (short_name is not None or version is not None):
                raise rule_error("give either 'collection_concept_id' or 'short_name' + 'version'")
            if concept is None and (short_name is None or version is None):
                raise rule_error("name the collection: 'collection_concept_id', or both 'short_name' and 'version'")
        return raw

    @classmethod
    def from_input(cls, raw: Any, field_name: str = "source.cmr") -> CmrQuery:
        return parse(_CMR_QUERY, raw, root=field_name)

    def with_updated_since(self, when: datetime) -> CmrQuery:
        """The same query narrowed to what changed since ``when`` (incremental runs)."""
        return dataclasses.replace(self, updated_since=format_time(when).replace("+00:00", "Z"))

    def params(self, page_size: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.collection_concept_id:
            out.append(("collection_concept_id", self.collection_concept_id))
        else:
            assert self.short_name is not None and self.version is not None
            out += [("short_name", self.short_name), ("version", self.version)]
        if self.provider:
            out.append(("provider", self.provider))
        if self.temporal is not None:
            out.append(("temporal[]", f"{self.temporal.start or ''},{self.temporal.end or ''}"))
        if self.bounding_box is not None:
            out.append(("bounding_box[]", ",".join(f"{v:g}" for v in self.bounding_box.as_list())))
        if self.updated_since:
            out.append(("updated_since", self.updated_since))
        out.append(("page_size", str(page_size)))
        return out

    def describe(self) -> str:
        what = self.collection_concept_id or f"{self.short_name} {self.version}"
        return what + (f" ({self.provider})" if self.provider else "")

    def to_dict(self) -> dict[str, Any]:
        """The query as plan.json records it (temporal as [start, end], bounding_box as [W, S, E, N])."""
        out: dict[str, Any] = {}
        for name in QUERY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, TimeRange):
                value = [value.start, value.end]
            elif isinstance(value, BoundingBox):
                value = value.as_list()
            if value is not None:
                out[name] = value
        return out


QUERY_FIELDS: tuple[str, ...] = tuple(CmrQuery.__dataclass_fields__)
_CMR_QUERY = TypeAdapter(CmrQuery)


# --- granules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmrFile:
    bucket: str
    key: str
    size: int | None = None
    checksum: Checksum | None = None


@dataclass(frozen=True)
class CmrGranule:
    concept_id: str
    granule_ur: str
    provider: str
    short_name: str
    version: str
    begin: datetime | None
    files: tuple[CmrFile, ...]

    def template_fields(self) -> dict[str, str]:
        """The CMR-only fields of a destination key template (see sources.TEMPLATE_FIELDS)."""
        out = {
            "collection": self.short_name,
            "version": self.version,
            "granule": self.granule_ur,
            "provider": self.provider,
            "concept_id": self.concept_id,
        }
        if self.begin is not None:
            out.update(
                year=f"{self.begin.year:04d}",
                month=f"{self.begin.month:02d}",
                day=f"{self.begin.day:02d}",
                doy=f"{self.begin.timetuple().tm_yday:03d}",
            )
        return out


@dataclass
class ParseStats:
    granules: int = 0
    files: int = 0
    without_s3_url: int = 0
    bad_urls: int = 0
    without_size: int = 0
    without_checksum: int = 0
    unsupported_checksums: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def split_s3_url(url: str) -> tuple[str, str] | None:
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key or any(ch.isspace() for ch in bucket):
        return None
    return bucket, key


def _begin_time(umm: Mapping[str, Any]) -> datetime | None:
    extent = umm.get("TemporalExtent")
    if not isinstance(extent, dict):
        return None
    candidates = []
    range_ = extent.get("RangeDateTime")
    if isinstance(range_, dict):
        candidates.append(range_.get("BeginningDateTime"))
    candidates.append(extent.get("SingleDateTime"))
    for value in candidates:
        if isinstance(value, str):
            try:
                return parse_time(value)
            except ValueError:
                continue
    return None


def _archive_info(umm: Mapping[str, Any], stats: ParseStats) -> dict[str, tuple[int | None, Checksum | None]]:
    """Name -> (exact size, checksum) from ArchiveAndDistributionInformation (and nested Files)."""
    data = umm.get("DataGranule")
    entries = data.get("ArchiveAndDistributionInformation") if isinstance(data, dict) else None
    found: dict[str, tuple[int | None, Checksum | None]] = {}
    ambiguous: set[str] = set()
    pending = list(entries) if isinstance(entries, list) else []
    seen = 0
    while pending and seen < 10_000:  # bounded: nested Files lists are small
        seen += 1
        entry = pending.pop(0)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("Files"), list):
            pending.extend(entry["Files"])
        name = entry.get("Name")
        if not isinstance(name, str) or not name:
            continue
        size = entry.get("SizeInBytes")
        exact = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
        checksum = None
        raw = entry.get("Checksum")
        if isinstance(raw, dict) and isinstance(raw.get("Algorithm"), str) and isinstance(raw.get("Value"), str):
            try:
                checksum = Checksum.from_dict({"algorithm": raw["Algorithm"], "value": raw["Value"].strip()})
            except InvalidInput:
                stats.unsupported_checksums += 1
                logger.info("ignoring checksum of %s: %s is not one of %s", name, raw["Algorithm"], CHECKSUM_ALGORITHMS)
        base = posixpath.basename(name)
        if base in found and found[base] != (exact, checksum):
            ambiguous.add(base)
        found[base] = (exact, checksum)
    for base in ambiguous:
        found[base] = (None, None)
    return found


def parse_granule(item: Any, stats: ParseStats) -> CmrGranule | None:
    """One ``items[]`` entry of a granules.umm_json answer. None (counted) when it is not usable."""
    if not isinstance(item, dict) or not isinstance(item.get("umm"), dict):
        return None
    meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
    umm = item["umm"]
    stats.granules += 1
    reference: dict[str, Any] = umm["CollectionReference"] if isinstance(umm.get("CollectionReference"), dict) else {}
    info = _archive_info(umm, stats)
    files: list[CmrFile] = []
    seen: set[str] = set()
    for related in umm.get("RelatedUrls") or []:
        if not isinstance(related, dict) or related.get("Type") != DIRECT_ACCESS:
            continue
        url = related.get("URL")
        if not isinstance(url, str) or url in seen:
            continue
        seen.add(url)
        parts = split_s3_url(url.strip())
        if parts is None:
            stats.bad_urls += 1
            continue
        size, checksum = info.get(posixpath.basename(parts[1]), (None, None))
        stats.without_size += size is None
        stats.without_checksum += checksum is None
        files.append(CmrFile(bucket=parts[0], key=parts[1], size=size, checksum=checksum))
    if not files:
        stats.without_s3_url += 1
    stats.files += len(files)
    return CmrGranule(
        concept_id=str(meta.get("concept-id", "")),
        granule_ur=str(umm.get("GranuleUR", "")),
        provider=str(meta.get("provider-id", "")),
        short_name=str(reference.get("ShortName") or reference.get("EntryTitle") or ""),
        version=str(reference.get("Version") or ""),
        begin=_begin_time(umm),
        files=tuple(files),
    )


# --- the client -----------------------------------------------------------------------------------------


def check_cmr_url(url: str) -> str:
    return base_url(url, "the CMR URL", "plain http only to a loopback address")[0]


@dataclass
class QueryStats:
    requests: int = 0
    pages: int = 0
    throttled: int = 0
    timed_out_pages: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    waited_seconds: float = 0.0
    hits: int | None = None
    parse: ParseStats = field(default_factory=ParseStats)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "parse"}
        out["waited_seconds"] = round(self.waited_seconds, 3)
        return {**out, **self.parse.to_dict()}


class CmrClient:
    """Pages through a granule search. Every wait is bounded; the whole query has one deadline.

    - ``max_attempts``: requests per page (429, 5xx, ``CMR-Time-Out: true`` and network errors retried);
    - ``max_retry_after_seconds``: a 429 asking for a longer wait fails the query (CmrUnavailable) rather
      than waiting less than CMR asked;
    - ``deadline_seconds``: measured on the injected monotonic ``clock`` from the start of ``granules()``
      (a caller may pass a shorter ``time_limit_seconds``, e.g. the Lambda's remaining time).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_CMR_URL,
        session: HttpSession | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        timeout_seconds: float = 60,
        max_attempts: int = 6,
        max_retry_after_seconds: float = 120,
        deadline_seconds: float = 600,
        max_granules: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"CMR page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if max_attempts < 1:
            raise ConfigurationError("CMR max_attempts must be >= 1")
        self.base_url = check_cmr_url(base_url)
        self.url = self.base_url + GRANULES_PATH
        self.session: HttpSession = session or UrllibSession(MAX_PAGE_BYTES)
        self.page_size = page_size
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.max_retry_after_seconds = max_retry_after_seconds
        self.deadline_seconds = deadline_seconds
        self.max_granules = max_granules
        self._clock, self._sleep, self._wall_clock, self._jitter = clock, sleep, wall_clock, jitter
        self._backoff_base, self._backoff_max = backoff_base_seconds, backoff_max_seconds
        self.stats = QueryStats()

    def __repr__(self) -> str:
        return f"CmrClient(url={self.url!r}, page_size={self.page_size})"

    def granules(self, query: CmrQuery, time_limit_seconds: float | None = None) -> Iterator[CmrGranule]:
        """Every granule of the query, each exactly once, in CMR's order. Lazily, page by page.

        The query ends (CmrUnavailable) at ``deadline_seconds`` or ``time_limit_seconds``, whichever is first.
        """
        stats = self.stats = QueryStats()
        limit = self.deadline_seconds if time_limit_seconds is None else min(time_limit_seconds, self.deadline_seconds)
        deadline = self._clock() + limit
        url = f"{self.url}?{urllib.parse.urlencode(query.params(self.page_size))}"
        search_after: str | None = None
        fetched = 0
        max_pages = 2  # raised after the first page, from CMR-Hits
        while True:
            if stats.pages >= max_pages:
                raise CmrUnavailable(
                    f"CMR paging of {query.describe()} did not end after {stats.pages} pages "
                    f"({fetched} granules of {stats.hits} hits); try again later"
                )
            headers, document = self._page(url, search_after, deadline, query)
            stats.pages += 1
            hits = _int_header(headers, "cmr-hits")
            if hits is None:
                hits = document.get("hits") if isinstance(document.get("hits"), int) else None
            if hits is None:
                raise CmrUnavailable(f"CMR answered {query.describe()} without CMR-Hits")
            if stats.hits is None:
                if hits > self.max_granules:
                    raise InvalidInput(
                        "source.cmr",
                        f"matches {hits} granules; at most {self.max_granules} per job: narrow 'temporal' or "
                        "'bounding_box', or split the job",
                    )
                max_pages = math.ceil(max(hits, 1) / self.page_size) + 2
            stats.hits = hits
            items = document.get("items")
            if not isinstance(items, list):
                raise CmrUnavailable(f"CMR answered {query.describe()} without an 'items' list")
            for item in items:
                granule = parse_granule(item, stats.parse)
                if granule is not None:
                    yield granule
            fetched += len(items)
            next_after = headers.get("cmr-search-after")
            logger.info(
                "CMR page read",
                extra={
                    "cmr_query": query.describe(),
                    "page": stats.pages,
                    "granules": len(items),
                    "fetched": fetched,
                    "hits": hits,
                },
            )
            if not items or not next_after or fetched >= hits:
                return
            if next_after == search_after:
                raise CmrUnavailable("CMR returned the same CMR-Search-After twice; paging would not progress")
            search_after = next_after

    def credentials_endpoint(self, query: CmrQuery) -> str | None:
        """The collection's TEA: ``DirectDistributionInformation.S3CredentialsAPIEndpoint`` (without the
        ``/s3credentials`` path), or None when the collection record does not name one."""
        params: list[tuple[str, str]] = (
            [("concept_id", query.collection_concept_id)]
            if query.collection_concept_id
            else [("short_name", query.short_name or ""), ("version", query.version or "")]
        )
        if query.provider:
            params.append(("provider", query.provider))
        url = f"{self.base_url}{COLLECTIONS_PATH}?{urllib.parse.urlencode([*params, ('page_size', '1')])}"
        _headers, document = self._page(url, None, self._clock() + self.deadline_seconds, query)
        items = document.get("items")
        if not isinstance(items, list) or not items:
            raise InvalidInput("source.cmr", f"CMR knows no collection {query.describe()}")
        umm = items[0].get("umm") if isinstance(items[0], dict) else None
        direct = umm.get("DirectDistributionInformation") if isinstance(umm, dict) else None
        endpoint = direct.get("S3CredentialsAPIEndpoint") if isinstance(direct, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        return normalize_tea_url(endpoint)

    # -- one page, with bounded retries

    def _page(
        self, url: str, search_after: str | None, deadline: float, query: CmrQuery
    ) -> tuple[Mapping[str, str], dict[str, Any]]:
        stats = self.stats
        headers = {"User-Agent": USER_AGENT, "Client-Id": CLIENT_ID, "Accept": "application/json"}
        if search_after is not None:
            headers["CMR-Search-After"] = search_after
        last = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            stats.requests += 1
            wait: float | None = None
            try:
                response = self.session.get(url, headers, min(self.timeout_seconds, remaining))
            except HttpTransportError as exc:
                stats.transport_errors += 1
                last = f"network error ({exc})"
            else:
                status = response.status
                if status == 200:
                    if response.headers.get("cmr-time-out", "").strip().lower() == "true":
                        stats.timed_out_pages += 1
                        last = "CMR timed out and returned partial results (CMR-Time-Out: true)"
                    else:
                        return response.headers, self._document(response, query)
                elif status == 429:
                    stats.throttled += 1
                    wait = self._retry_after(response.headers)
                    last = "429 Too Many Requests"
                    if wait is not None and wait > self.max_retry_after_seconds:
                        raise CmrUnavailable(
                            f"CMR throttled the query and asked to wait {wait:.0f} s (more than "
                            f"{self.max_retry_after_seconds:.0f} s); try again later"
                        )
                elif status >= 500:
                    stats.server_errors += 1
                    last = f"HTTP {status}"
                elif status in (400, 422):
                    raise InvalidInput("source.cmr", f"CMR rejected the query: {_cmr_errors(response.body)}")
                elif status == 404:
                    raise ConfigurationError(f"{self.url} does not exist (HTTP 404): check TEACOPY_CMR_URL")
                else:
                    raise CmrUnavailable(f"CMR answered unexpected HTTP {status} for {query.describe()}")
            if attempt >= self.max_attempts:
                break
            delay = self._backoff(attempt) if wait is None else max(wait, 0.0)
            if self._clock() + delay > deadline:
                last += f"; the next attempt (in {delay:.1f} s) would pass the deadline"
                break
            logger.warning(
                "CMR attempt failed, retrying",
                extra={
                    "cmr_query": query.describe(),
                    "attempt": attempt,
                    "max_attempts": self.max_attempts,
                    "reason": last,
                    "retry_in_seconds": round(delay, 3),
                },
            )
            stats.waited_seconds += delay
            self._sleep(delay)
        raise CmrUnavailable(
            f"CMR search for {query.describe()} failed after {stats.requests} request(s) on page {stats.pages + 1}: "
            f"{last}"
        )

    def _document(self, response: HttpResponse, query: CmrQuery) -> dict[str, Any]:
        if len(response.body) > MAX_PAGE_BYTES:
            raise CmrUnavailable(f"a CMR page is larger than {MAX_PAGE_BYTES // MIB} MiB: lower the page size")
        try:
            document = json.loads(response.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CmrUnavailable(f"CMR answered {query.describe()} with a body that is not JSON") from exc
        if not isinstance(document, dict):
            raise CmrUnavailable(f"CMR answered {query.describe()} with JSON that is not an object")
        return document

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self._backoff_base, self._backoff_max, self._jitter)

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        return retry_after_seconds(headers, self._wall_clock)


def normalize_tea_url(url: str) -> str:
    """``https://host/s3credentials/`` and ``https://HOST`` compare equal (scheme + lowercase host + path)."""
    parts = urllib.parse.urlsplit(url.strip())
    path = parts.path.rstrip("/").removesuffix("/s3credentials").rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _cmr_errors(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace")
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list):
        return "; ".join(str(e)[:200] for e in errors[:5])
    return str(document)[:200]
