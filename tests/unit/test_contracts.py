"""Boundary shapes (Pydantic models): one conversion of validation errors into InvalidInput(field path, rule),
the CopyBatch event and result, the credentials request and answer, the report's keys."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.events import CREDENTIALS_ANSWER, CredentialsRequest
from lambdas.contracts.models import Batch, CopyBatchEvent, CopyBatchResult, CredentialsRef, ObjectSpec
from lambdas.contracts.report import MapError, RecordedError, Report, RunReport, RunSummary
from lambdas.contracts.validation import field_path, parse
from lambdas.planning.execution_input import EXECUTION_INPUT

REF = {"version": "v1", "expiration": "2030-01-01T00:00:00+00:00"}
EVENT: dict[str, Any] = {
    "run_id": "run-1",
    "batch": {"id": "b0001", "source_bucket": "daac", "endpoint": "nsidc", "objects": [{"key": "a.nc", "size": 3}]},
    "destination": {"bucket": "dest", "prefix": "p/"},
    "credentials": {"default": {"version": "v0", "expiration": REF["expiration"]}, "nsidc": REF},
    "options": {"overwrite": "never", "dry_run": False},
    "refresh_round": 2,  # the child's own loop state: not part of the event
}


def test_field_paths_name_list_indices_and_skip_union_tags() -> None:
    assert field_path("", ("source", "~keys", "keys", 7)) == "source.keys[7]"
    assert field_path("", ("source", "~manifest", "manifest"), " (bucket)") == "source.manifest (bucket)"
    assert field_path("", (), ".colour") == "colour"
    assert field_path("credentials.default", ("version",)) == "credentials.default.version"
    assert field_path("", ()) == ""


@pytest.mark.parametrize(
    ("raw", "field", "rule"),
    [
        (None, "input", "must be a JSON object like"),
        ({"source": {"bucket": "b-b-b", "keys": ["a", 5]}, "destination": {"bucket": "d-d-d"}}, "source.keys[1]", ""),
        ({"source": {"bucket": "b-b-b", "keys": ["a"]}}, "destination", "is required"),
        (
            {
                "source": {"cmr": {"collection_concept_id": "C1-P", "temporal": ["x", None]}},
                "destination": {"bucket": "d"},
            },
            "source.cmr.temporal.start",
            "is not an ISO-8601 time",
        ),
        (
            {"source": {"bucket": "b-b-b", "keys": ["a"]}, "destination": {"bucket": "dd-d", "key_mapping": {"x": 1}}},
            "destination.key_mapping",
            "must be 'keep', 'basename'",
        ),
        (
            {
                "source": {"bucket": "b-b-b", "prefix": "x/"},
                "destination": {"bucket": "dd-d", "key_mapping": {"template": "{granule}/{basename}"}},
            },
            "destination.key_mapping.template",
            "only for a 'cmr' source",
        ),
        (
            {"source": {"bucket": "b-b-b", "keys": ["a"]}, "destination": {"bucket": "dd-d"}, "schedule": {"name": ""}},
            "schedule.name",
            "1-40 characters",
        ),
    ],
)
def test_the_execution_input_model_names_the_field_and_the_rule(raw: Any, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(EXECUTION_INPUT, raw)
    assert info.value.field == field and rule in info.value.rule, str(info.value)
    assert str(info.value) == f"{field}: {info.value.rule}"


def test_a_cmr_template_is_accepted_for_a_cmr_source() -> None:
    raw = {
        "source": {"cmr": {"short_name": "MUR", "version": "4.1", "bounding_box": [170, -10, -170, 10]}},
        "destination": {"bucket": "dd-d", "key_mapping": {"template": "{collection}/{year}/{basename}"}},
    }
    body = parse(EXECUTION_INPUT, raw)
    assert body.destination.key_mapping.fields == {"collection", "year", "basename"}
    assert body.options.overwrite == "skip-if-identical" and body.schedule is None


def test_copy_batch_event_takes_the_batch_endpoints_credentials_and_ignores_loop_state() -> None:
    event = CopyBatchEvent.from_dict(EVENT)
    spec = event.batch.objects[0]
    assert spec.to_dict() == TypeAdapter(ObjectSpec).dump_python(spec, mode="json", exclude_none=True)
    assert event.credentials == CredentialsRef("v1", REF["expiration"])
    assert event.batch == Batch("b0001", "daac", (ObjectSpec("a.nc", 3),), endpoint="nsidc")
    assert event.batch.to_dict() == EVENT["batch"]
    assert event.options.overwrite == "never"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch": {**EVENT["batch"], "objects": [{"key": "a"}, {"key": "b", "size": -1}]}}, "batch.objects[1].size"),
        ({"batch": {**EVENT["batch"], "objects": [{"key": "a"}, {"size": 1}]}}, "batch.objects[1].key"),
        ({"batch": {**EVENT["batch"], "objects": [{"key": "a", "size": True}]}}, "batch.objects[0].size"),
        ({"batch": {**EVENT["batch"], "endpoint": "Not A Name"}}, "batch.endpoint"),
        ({"credentials": {"default": REF}}, "credentials"),
        ({"credentials": {"nsidc": {"version": "", "expiration": "x"}}}, "credentials.nsidc.version"),
        ({"run_id": ""}, "run_id"),
        ({"destination": {"prefix": "p/"}}, "destination"),
    ],
)
def test_bad_copy_batch_events_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CopyBatchEvent.from_dict({**EVENT, **change})
    assert info.value.field == field, str(info.value)


def test_copy_batch_result_round_trips_and_omits_dry_run_counts() -> None:
    raw = {"batch_id": "b1", "copied": 2, "skipped": 0, "failed": 0, "bytes": 9, "parts": 0, "done": True}
    result = CopyBatchResult.from_dict({**raw, "refresh": False})
    assert result.to_dict() == {**raw, "refresh": False}
    with pytest.raises(InvalidInput) as info:
        CopyBatchResult.from_dict({**raw, "refresh": "no"})
    assert info.value.field == "result.refresh"


def test_credentials_request_takes_the_used_version_from_the_state_map_and_answers_in_its_shape() -> None:
    state = {"default": {"version": "v0", "expiration": REF["expiration"]}, "nsidc": REF}
    request = CredentialsRequest.from_event({"action": "refresh", "endpoint": "nsidc", "credentials": state})
    assert request.used_version == "v1"
    renewed = CredentialsRef("v2", REF["expiration"])
    answer = request.answer({"nsidc": renewed})
    assert answer == {**state, "nsidc": renewed.to_dict()}
    assert CREDENTIALS_ANSWER.validate_python(answer) == {
        "default": CredentialsRef("v0", REF["expiration"]),
        "nsidc": renewed,
    }
    fetch = CredentialsRequest.from_event({"action": "fetch", "endpoints": ["default", "nsidc", "default"]})
    assert fetch.endpoints == ("default", "nsidc")
    assert CREDENTIALS_ANSWER.validate_python(fetch.answer({"default": renewed, "nsidc": renewed})) == {
        "default": renewed,
        "nsidc": renewed,
    }
    single = CredentialsRequest.from_event({"action": "refresh", "used_version": "v1"})
    assert single.answer({"default": renewed}) == renewed.to_dict()


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"action": "fetch", "endpoints": []}, "endpoints"),
        ({"action": "refresh", "endpoints": ["default"]}, "endpoints"),
        ({"action": "fetch", "endpoints": ["Bad Name"]}, "endpoints[0]"),
        ({"action": "fetch", "credentials": {}}, "credentials"),
        ({"action": "refresh", "endpoint": "nsidc", "credentials": {"default": REF}}, "credentials"),
        ({"action": "refresh", "endpoint": "x_y"}, "endpoint"),
    ],
)
def test_bad_credentials_requests_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CredentialsRequest.from_event(event)
    assert info.value.field == field, str(info.value)


def _run_report(**changes: Any) -> RunReport:
    counts = {"objects": 3, "copied": 2, "skipped": 0, "failed": 1, "not_attempted": 0, "bytes": 10}
    base: dict[str, Any] = {
        "run_id": "r",
        **counts,
        "dry_run": False,
        "would_copy": 0,
        "would_skip": 0,
        "bytes_to_copy": 0,
        "tea_requests": 1,
        "credential_fetches": 1,
        "tea_errors": 0,
        "credential_refreshes": 0,
        "refresh_requests": 0,
        "coalesced_refreshes": 0,
        "source": {"mode": "keys"},
        "destination": None,
        "schedule": None,
        "planned_at": None,
        "failures_by_reason": {"NoSuchKey": 1},
        "failures": [{"key": "c", "reason": "NoSuchKey: gone"}],
        "failures_truncated": False,
        "by_status": {"copied": 2, "failed": 1},
        "started_at": None,
        "finished_at": None,
        "duration_seconds": None,
        "throughput_bytes_per_second": None,
        "timeline": [[0.5, 1, 4, 0], [1.25, 3, 10, 1]],
        "refresh_offsets": [],
    }
    return RunReport(**{**base, **changes})


def test_report_keys_and_execution_output() -> None:
    run = _run_report()
    assert run.to_dict()["timeline"] == [[0.5, 1, 4, 0], [1.25, 3, 10, 1]]  # integers stay integers
    extra: dict[str, Any] = {
        "uploads_aborted": 0,
        "errors": [RecordedError(error="TeaUnavailable", message="down", count=2)],
        "map_failed": False,
        "report_csv": "s3://s/r.csv",
        "report_html": "s3://s/r.html",
        "generated_at": None,
    }
    report = Report(**run.to_dict(), **extra)
    document = report.to_dict()
    assert "map_error" not in document and list(document)[: len(run.to_dict())] == list(run.to_dict())
    failed = Report(**{**run.to_dict(), **extra, "map_failed": True, "map_error": MapError(error="E", cause="c")})
    assert failed.to_dict()["map_error"] == {"error": "E", "cause": "c"}
    summary = RunSummary.of(report, "s3://s/report.json").to_dict()
    assert list(summary) == [
        *("objects", "copied", "skipped", "failed", "not_attempted", "bytes", "tea_requests", "credential_refreshes"),
        *("report", "report_csv", "report_html"),
    ]
    dry = Report(**{**_run_report(dry_run=True, would_copy=2).to_dict(), **extra})
    assert RunSummary.of(dry, "x").to_dict()["would_copy"] == 2


def test_the_answer_type_refuses_a_secret_bearing_document() -> None:
    with pytest.raises(ValueError, match="version"):
        TypeAdapter(CredentialsRef).validate_python({"accessKeyId": "ASIA", "secretAccessKey": "s"})
