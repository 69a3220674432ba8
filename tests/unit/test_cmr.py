"""CMR client: query validation, paging with CMR-Search-After, 429/time-out handling, UMM-G parsing.

Most tests talk HTTP to the CMR emulator on 127.0.0.1; waits go through an injected sleep (recorded,
never slept) and an injected clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.contracts.errors import ConfigurationError, InvalidInput
from lambdas.contracts.models import Checksum
from lambdas.earthdata.cmr import (
    CmrClient,
    CmrQuery,
    CmrUnavailable,
    ParseStats,
    check_cmr_url,
    parse_granule,
)
from lambdas.earthdata.http import HttpResponse, HttpTransportError
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile

T0 = datetime(2023, 1, 1, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def cmr() -> Iterator[CmrEmulator]:
    with CmrEmulator() as emulator:
        yield emulator


def populate(emulator: CmrEmulator, count: int, *, files_per_granule: int = 1) -> str:
    concept = emulator.add_collection("MUR-JPL-L4-GLOB-v4.1", "4.1")
    for index in range(count):
        day = T0 + timedelta(days=index)
        files = [
            EmulatedFile(
                "podaac-ops-cumulus-protected",
                f"MUR/{day:%Y%m%d}-{part}.nc",
                1000 + index,
                ("MD5", f"{index:032x}"),
            )
            for part in range(files_per_granule)
        ]
        emulator.add_granule(concept, f"{day:%Y%m%d}-MUR", files, begin=day, updated=day)
    return concept


def client_for(emulator: CmrEmulator, fake: FakeTime, **kwargs: Any) -> CmrClient:
    kwargs.setdefault("page_size", 4)
    return CmrClient(emulator.url, clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.5, **kwargs)


# --- query validation ------------------------------------------------------------------------------------

BAD_QUERIES = [
    ("not an object", "source.cmr", "C1-P"),
    ("no collection", "source.cmr", {"temporal": {"start": "2023-01-01T00:00:00Z"}}),
    ("short name without version", "source.cmr", {"short_name": "MUR"}),
    ("concept id and short name", "source.cmr", {"collection_concept_id": "C1-P", "short_name": "MUR", "version": "1"}),
    ("granule concept id", "source.cmr.collection_concept_id", {"collection_concept_id": "G1-P"}),
    ("unknown field", "source.cmr.colour", {"collection_concept_id": "C1-P", "colour": 1}),
    ("bad time", "source.cmr.temporal.start", {"collection_concept_id": "C1-P", "temporal": {"start": "yesterday"}}),
    (
        "start after end",
        "source.cmr.temporal",
        {"collection_concept_id": "C1-P", "temporal": {"start": "2024-01-01T00:00:00Z", "end": "2023-01-01T00:00:00Z"}},
    ),
    ("empty temporal", "source.cmr.temporal", {"collection_concept_id": "C1-P", "temporal": {}}),
    ("bbox 3 numbers", "source.cmr.bounding_box", {"collection_concept_id": "C1-P", "bounding_box": [1, 2, 3]}),
    (
        "bbox latitude",
        "source.cmr.bounding_box.north",
        {"collection_concept_id": "C1-P", "bounding_box": [-10, -10, 10, 91]},
    ),
    (
        "bbox south>north",
        "source.cmr.bounding_box",
        {"collection_concept_id": "C1-P", "bounding_box": {"west": 0, "south": 10, "east": 1, "north": 0}},
    ),
    (
        "bbox not number",
        "source.cmr.bounding_box.west",
        {"collection_concept_id": "C1-P", "bounding_box": ["a", 0, 1, 1]},
    ),
    ("updated_since", "source.cmr.updated_since", {"collection_concept_id": "C1-P", "updated_since": 5}),
]


@pytest.mark.parametrize(("case", "field", "raw"), BAD_QUERIES, ids=[c[0] for c in BAD_QUERIES])
def test_bad_query_is_rejected_naming_the_field(case: str, field: str, raw: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        CmrQuery.from_input(raw)
    assert info.value.field == field, str(info.value)


def test_query_parameters() -> None:
    query = CmrQuery.from_input(
        {
            "short_name": "MUR-JPL-L4-GLOB-v4.1",
            "version": "4.1",
            "provider": "POCLOUD",
            "temporal": {"start": "2023-01-01", "end": "2023-01-31T23:59:59+00:00"},
            "bounding_box": [170, -10, -170, 10],  # crosses the antimeridian: allowed
            "updated_since": "2024-05-01T00:00:00Z",
        }
    )
    assert query.params(2000) == [
        ("short_name", "MUR-JPL-L4-GLOB-v4.1"),
        ("version", "4.1"),
        ("provider", "POCLOUD"),
        ("temporal[]", "2023-01-01T00:00:00Z,2023-01-31T23:59:59Z"),
        ("bounding_box[]", "170,-10,-170,10"),
        ("updated_since", "2024-05-01T00:00:00Z"),
        ("page_size", "2000"),
    ]
    narrowed = query.with_updated_since(datetime(2024, 6, 1, 12, tzinfo=UTC))
    assert narrowed.updated_since == "2024-06-01T12:00:00Z"
    open_ended = CmrQuery.from_input({"collection_concept_id": "C1-P", "temporal": {"start": "2023-01-01T00:00:00Z"}})
    assert ("temporal[]", "2023-01-01T00:00:00Z,") in open_ended.params(10)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cmr.earthdata.nasa.gov", True),
        ("https://cmr.uat.earthdata.nasa.gov/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:1", True),
        ("http://cmr.earthdata.nasa.gov", False),
        ("ftp://cmr.earthdata.nasa.gov", False),
        ("cmr.earthdata.nasa.gov", False),
    ],
)
def test_cmr_url_is_https_except_loopback(url: str, ok: bool) -> None:
    if ok:
        assert check_cmr_url(url).startswith(("https://", "http://"))
    else:
        with pytest.raises(ConfigurationError):
            CmrClient(url)


# --- paging ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header_on_last_page", [True, False])
def test_three_pages_with_a_429_in_between_yield_every_granule_once(
    cmr: CmrEmulator, header_on_last_page: bool
) -> None:
    cmr.search_after_on_last_page = header_on_last_page
    concept = populate(cmr, 11)  # page size 4: pages of 4, 4, 3
    cmr.throttle(times=1, retry_after=3, at_request=2)  # the second page is throttled once
    fake = FakeTime()
    client = client_for(cmr, fake)
    granules = list(client.granules(CmrQuery(collection_concept_id=concept)))
    urs = [g.granule_ur for g in granules]
    assert urs == [f"{T0 + timedelta(days=i):%Y%m%d}-MUR" for i in range(11)]
    assert len(set(urs)) == 11
    assert fake.sleeps == [3.0]  # Retry-After honoured, once
    assert client.stats.pages == 3 and client.stats.throttled == 1 and client.stats.requests == 4
    sent = [r.search_after for r in cmr.requests]
    assert sent[0] is None
    assert sent[1] is not None and sent[2] == sent[1]  # the throttled page is asked again with the same token
    assert sent[3] is not None and sent[3] != sent[1]
    assert all(r.client_id == "teacopy" for r in cmr.requests)


def test_partial_page_with_cmr_time_out_is_requested_again(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 9)
    cmr.time_out_next()
    fake = FakeTime()
    client = client_for(cmr, fake)
    granules = list(client.granules(CmrQuery(collection_concept_id=concept)))
    assert len(granules) == len({g.granule_ur for g in granules}) == 9
    assert client.stats.timed_out_pages == 1
    assert len(fake.sleeps) == 1  # backoff before asking again


def test_throttling_beyond_the_attempts_fails_bounded(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 3)
    cmr.throttle(times=10, retry_after=1)
    fake = FakeTime()
    client = client_for(cmr, fake, max_attempts=3)
    with pytest.raises(CmrUnavailable, match="429"):
        list(client.granules(CmrQuery(collection_concept_id=concept)))
    assert len(cmr.requests) == 3
    assert fake.sleeps == [1.0, 1.0]


def test_retry_after_longer_than_allowed_fails_instead_of_waiting_less(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 3)
    cmr.throttle(times=1, retry_after=600)
    fake = FakeTime()
    with pytest.raises(CmrUnavailable, match="600 s"):
        list(client_for(cmr, fake, max_retry_after_seconds=60).granules(CmrQuery(collection_concept_id=concept)))
    assert fake.sleeps == []


def test_deadline_stops_the_retries(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 3)
    cmr.throttle(times=10, retry_after=20)
    fake = FakeTime()
    client = client_for(cmr, fake, max_attempts=10, deadline_seconds=50)
    with pytest.raises(CmrUnavailable, match="deadline"):
        list(client.granules(CmrQuery(collection_concept_id=concept)))
    assert sum(fake.sleeps) <= 50
    assert fake.sleeps == [20.0, 20.0]


def test_rejected_query_is_invalid_input(cmr: CmrEmulator) -> None:
    cmr.script(400, {"errors": ["Collection concept id [C9-X] is not valid."]})
    with pytest.raises(InvalidInput) as info:
        list(client_for(cmr, FakeTime()).granules(CmrQuery(collection_concept_id="C9-X")))
    assert info.value.field == "source.cmr"
    assert "C9-X" in info.value.rule


def test_server_errors_are_retried_then_fail(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 2)
    cmr.script(503, "Service Unavailable")
    fake = FakeTime()
    client = client_for(cmr, fake)
    assert len(list(client.granules(CmrQuery(collection_concept_id=concept)))) == 2
    assert client.stats.server_errors == 1 and len(fake.sleeps) == 1


def test_too_many_hits_is_refused_before_paging(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 12)
    with pytest.raises(InvalidInput, match="matches 12 granules; at most 10"):
        list(client_for(cmr, FakeTime(), max_granules=10).granules(CmrQuery(collection_concept_id=concept)))
    assert len(cmr.requests) == 1


def test_filters_reach_cmr(cmr: CmrEmulator) -> None:
    concept = cmr.add_collection("SHORT", "1", provider="NSIDC_CPRD")
    for index in range(6):
        west = -170 + 60 * index
        cmr.add_granule(
            concept,
            f"g{index}",
            [EmulatedFile("nsidc-bucket", f"g{index}.h5", 10)],
            begin=T0 + timedelta(days=10 * index),
            bbox=(west, -10, west + 10, 10),
            updated=T0 + timedelta(days=index),
        )
    client = client_for(cmr, FakeTime())

    def urs(**query: Any) -> list[str]:
        return [
            g.granule_ur for g in client.granules(CmrQuery.from_input({"short_name": "SHORT", "version": "1", **query}))
        ]

    assert urs() == [f"g{i}" for i in range(6)]
    assert urs(temporal={"start": "2023-01-12T12:00:00Z", "end": "2023-02-05T00:00:00Z"}) == ["g2", "g3"]
    assert urs(temporal={"start": "2023-01-11T12:00:00Z", "end": "2023-01-21T00:00:00Z"}) == ["g1", "g2"]
    assert urs(bounding_box=[-180, -5, -120, 5]) == ["g0"]
    assert urs(bounding_box={"west": 175, "south": -5, "east": -165, "north": 5}) == ["g0"]  # antimeridian
    assert urs(updated_since="2023-01-05T00:00:00Z") == ["g4", "g5"]
    assert urs(provider="OTHER") == []


class ScriptedSession:
    def __init__(self, answers: list[HttpResponse | Exception]) -> None:
        self.answers = answers
        self.calls: list[Mapping[str, str]] = []

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        self.calls.append(dict(headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def page(items: list[dict[str, Any]], hits: int, after: str | None) -> HttpResponse:
    headers = {"cmr-hits": str(hits)}
    if after:
        headers["cmr-search-after"] = after
    return HttpResponse(200, headers, json.dumps({"hits": hits, "items": items}).encode())


def item(ur: str) -> dict[str, Any]:
    return {
        "meta": {"concept-id": f"G-{ur}", "provider-id": "P"},
        "umm": {
            "GranuleUR": ur,
            "RelatedUrls": [{"URL": f"s3://b/{ur}.nc", "Type": "GET DATA VIA DIRECT ACCESS"}],
        },
    }


def test_network_errors_are_retried_and_retry_after_http_date_is_honoured() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    session = ScriptedSession(
        [
            HttpTransportError("ConnectionResetError: reset"),
            HttpResponse(429, {"retry-after": "Mon, 01 Jan 2024 12:00:07 GMT"}, b""),
            page([item("a")], 2, '["x", 1]'),
            page([item("b")], 2, '["x", 2]'),
        ]
    )
    fake = FakeTime()
    client = CmrClient(
        "https://cmr.example.org", session, clock=fake.clock, sleep=fake.sleep, wall_clock=lambda: now, jitter=lambda: 0
    )
    assert [g.granule_ur for g in client.granules(CmrQuery(collection_concept_id="C1-P"))] == ["a", "b"]
    assert fake.sleeps == [0.5, 7.0]
    assert session.calls[3]["CMR-Search-After"] == '["x", 1]'
    assert client.stats.transport_errors == 1


def test_paging_that_does_not_progress_is_an_error() -> None:
    session = ScriptedSession([page([item("a")], 5, '["same"]'), page([item("b")], 5, '["same"]')])
    with pytest.raises(CmrUnavailable, match="same CMR-Search-After"):
        list(CmrClient("https://cmr.example.org", session).granules(CmrQuery(collection_concept_id="C1-P")))


def test_paging_is_bounded_by_the_hits() -> None:
    # A server that keeps sending new tokens but fewer items than CMR-Hits announced: at most
    # ceil(hits / page_size) + 2 pages are requested.
    session = ScriptedSession([page([item(f"g{i}")], 5, f'["t{i}"]') for i in range(20)])
    client = CmrClient("https://cmr.example.org", session, page_size=2000)
    with pytest.raises(CmrUnavailable, match="did not end after 3 pages"):
        list(client.granules(CmrQuery(collection_concept_id="C1-P")))
    assert len(session.calls) == 3


# --- UMM-G parsing ---------------------------------------------------------------------------------------


def test_granule_sizes_and_checksums_are_matched_by_basename() -> None:
    md5 = "0" * 31 + "a"
    sha = "ab" * 32
    record = {
        "meta": {"concept-id": "G1-POCLOUD", "provider-id": "POCLOUD"},
        "umm": {
            "GranuleUR": "20230101-MUR",
            "CollectionReference": {"ShortName": "MUR", "Version": "4.1"},
            "TemporalExtent": {"RangeDateTime": {"BeginningDateTime": "2023-02-03T09:00:00.000Z"}},
            "DataGranule": {
                "ArchiveAndDistributionInformation": [
                    {"Name": "a.nc", "SizeInBytes": 123, "Checksum": {"Value": md5.upper(), "Algorithm": "MD5"}},
                    {
                        "Name": "b.nc",
                        "Size": 1.5,
                        "SizeUnit": "MB",
                        "Checksum": {"Value": "1", "Algorithm": "Adler-32"},
                    },
                    {
                        "Name": "pkg.zip",
                        "Files": [
                            {"Name": "c.h5", "SizeInBytes": 7, "Checksum": {"Value": sha, "Algorithm": "SHA256"}}
                        ],
                    },
                ]
            },
            "RelatedUrls": [
                {"URL": "https://archive/a.nc", "Type": "GET DATA"},
                {"URL": "s3://bucket-1/dir/a.nc", "Type": "GET DATA VIA DIRECT ACCESS"},
                {"URL": "s3://bucket-1/dir/a.nc", "Type": "GET DATA VIA DIRECT ACCESS"},  # listed twice
                {"URL": "s3://bucket-2/b.nc", "Type": "GET DATA VIA DIRECT ACCESS"},
                {"URL": "s3://bucket-2/x/c.h5", "Type": "GET DATA VIA DIRECT ACCESS"},
                {"URL": "s3:///no-bucket", "Type": "GET DATA VIA DIRECT ACCESS"},
            ],
        },
    }
    stats = ParseStats()
    granule = parse_granule(record, stats)
    assert granule is not None
    files = {(f.bucket, f.key): (f.size, f.checksum) for f in granule.files}
    assert files == {
        ("bucket-1", "dir/a.nc"): (123, Checksum("MD5", md5)),
        ("bucket-2", "b.nc"): (None, None),  # Size+SizeUnit is approximate; Adler-32 is not verified
        ("bucket-2", "x/c.h5"): (7, Checksum("SHA-256", sha)),
    }
    assert stats.bad_urls == 1 and stats.unsupported_checksums == 1 and stats.without_size == 1
    assert granule.template_fields() == {
        "collection": "MUR",
        "version": "4.1",
        "granule": "20230101-MUR",
        "provider": "POCLOUD",
        "concept_id": "G1-POCLOUD",
        "year": "2023",
        "month": "02",
        "day": "03",
        "doy": "034",
    }


def test_granule_without_direct_access_url_is_counted() -> None:
    stats = ParseStats()
    granule = parse_granule(
        {"umm": {"GranuleUR": "x", "RelatedUrls": [{"URL": "https://a", "Type": "GET DATA"}]}}, stats
    )
    assert granule is not None and granule.files == ()
    assert stats.without_s3_url == 1
    assert parse_granule("not a record", stats) is None


def test_emulator_records_look_like_umm_g(cmr: CmrEmulator) -> None:
    concept = populate(cmr, 1)
    fake = FakeTime()
    (granule,) = list(client_for(cmr, fake).granules(CmrQuery(collection_concept_id=concept)))
    assert granule.files[0].bucket == "podaac-ops-cumulus-protected"
    assert granule.files[0].size == 1000
    assert granule.files[0].checksum == Checksum("MD5", "0" * 32)
    assert granule.short_name == "MUR-JPL-L4-GLOB-v4.1" and granule.begin == T0
