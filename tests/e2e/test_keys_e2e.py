"""End to end: every key S3 accepts is copied byte-exact, from inline keys, a manifest, a listing and CMR.

Keys with control characters (a tab, a line break, 0x01, 0x1f, DEL), whitespace at either end, '.' and '..'
segments, a leading '/', invisible characters (zero-width space, a bidi override, a BOM, a no-break space) and
multi-byte characters up to S3's 1,024-byte limit. A key whose destination would be longer than 1,024 bytes
(after the destination prefix) fails alone, with the reason, and the others are copied.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from teacopy_local.cmr_emulator import EmulatedFile
from tests.e2e.test_sources_e2e import (
    DEST,
    SOURCE,
    assert_no_secrets,
    dest_objects,
    engine_for,
    put_manifest,
    seed,
    succeeded,
)

pytestmark = pytest.mark.e2e

AT_THE_LIMIT = "odd/" + "é" * 508 + "x.nc"  # 1,024 bytes exactly: the longest key S3 takes
ODD_KEYS = [
    "odd/tab\there.nc",
    "odd/line\nbreak.nc",
    "odd/ctl\x01\x1f\x7f.nc",
    " odd/leading space.nc",
    "odd/trailing space.nc ",
    "\todd/leading tab.nc",
    "odd/trailing newline.nc\n",
    "odd/./dot/x.nc",
    "odd/../up.nc",
    "..",
    ".",
    "odd/..",
    "/odd/leading slash.nc",
    "//odd/two slashes.nc",
    "odd/zero\u200bwidth.nc",
    "odd/\u202ertl-override.nc",
    "odd/bom\ufeff.nc",
    "odd/no\u00a0break.nc",
    "odd/a+b c%20d?e#f.nc",
    "s3://not-a-url/odd.nc",
    AT_THE_LIMIT,
]


def test_the_odd_keys_are_what_the_test_claims() -> None:
    assert len(AT_THE_LIMIT.encode("utf-8")) == 1024
    assert len(set(ODD_KEYS)) == len(ODD_KEYS)


def test_inline_keys_s3_accepts_are_copied_byte_exact(synth: Any) -> None:
    with engine_for(synth) as (engine, tea, _cmr):
        bodies = seed(engine, ODD_KEYS)
        job = {"source": {"bucket": SOURCE, "keys": ODD_KEYS}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="odd-inline", timeout=180)
        succeeded(result, len(ODD_KEYS))
        assert dest_objects(engine) == bodies  # same keys, same bytes
        report_csv = (
            engine.client("s3")
            .get_object(Bucket=engine.deployment.staging_bucket, Key="runs/odd-inline/report.csv")["Body"]
            .read()
        )
        rows = list(csv.DictReader(io.StringIO(report_csv.decode("utf-8"), newline="")))
        assert sorted(row["key"] for row in rows) == sorted(ODD_KEYS)  # the report names them exactly too
        assert_no_secrets(engine, tea, result)


def test_a_manifest_of_odd_keys_copies_each_and_an_unwritable_destination_key_fails_alone(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, _cmr):
        bodies = seed(engine, ODD_KEYS)
        # a manifest reads "s3://..." as a URL: a key that starts so is given as one (s3://bucket/<key>)
        entries: list[dict[str, Any]] = [
            {"url": f"s3://{SOURCE}/{key}"} if key.startswith("s3://") else {"key": key, "size": len(body)}
            for key, body in bodies.items()
        ]
        entries[-1]["checksum"] = {"algorithm": "SHA-256", "value": hashlib.sha256(bodies[AT_THE_LIMIT]).hexdigest()}
        url = put_manifest(engine, "lists/odd.json", json.dumps(entries))
        # "m/" + a 1,024-byte key is 1,026 bytes: S3 cannot take it as a key
        job = {"source": {"bucket": SOURCE, "manifest": url}, "destination": {"bucket": DEST, "prefix": "m/"}}
        result = engine.run(job, name="odd-manifest", timeout=180)
        assert (result.status, result.error) == ("FAILED", "CopyJobFailed")
        report = result.report
        assert report is not None
        assert (report["objects"], report["copied"], report["failed"], report["not_attempted"]) == (
            len(ODD_KEYS),
            len(ODD_KEYS) - 1,
            1,
            0,
        )
        (failure,) = report["failures"]
        assert failure["key"] == AT_THE_LIMIT
        assert "destination key is longer than 1024 bytes (UTF-8): 1026 bytes" in failure["reason"]
        assert dest_objects(engine, "m/") == {f"m/{k}": v for k, v in bodies.items() if k != AT_THE_LIMIT}


def test_a_listing_returns_odd_keys_intact_and_they_are_copied(synth: Any) -> None:
    with engine_for(synth) as (engine, tea, _cmr):
        bodies = seed(engine, ODD_KEYS)
        job = {"source": {"bucket": SOURCE, "prefix": ""}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="odd-prefix", timeout=180)
        succeeded(result, len(ODD_KEYS))
        assert dest_objects(engine) == bodies
        assert_no_secrets(engine, tea, result)


def test_cmr_urls_with_odd_keys_are_copied_byte_exact(synth: Any) -> None:
    with engine_for(synth) as (engine, _tea, cmr):
        bodies = seed(engine, ODD_KEYS)
        concept = cmr.add_collection("ODD", "1")
        for index, (key, body) in enumerate(bodies.items()):
            md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
            files = [EmulatedFile(SOURCE, key, len(body), ("MD5", md5))]
            cmr.add_granule(concept, f"odd-{index:02d}", files, begin=datetime(2024, 1, 1, tzinfo=UTC))
        job = {"source": {"cmr": {"short_name": "ODD", "version": "1"}}, "destination": {"bucket": DEST}}
        result = engine.run(job, name="odd-cmr", timeout=180)
        succeeded(result, len(ODD_KEYS))
        assert dest_objects(engine) == bodies
