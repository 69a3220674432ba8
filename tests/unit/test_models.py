"""Event models: what the console user types in ``options`` and what the plan carries per object."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import Checksum, CopyOptions, ObjectSpec


def test_options_defaults_and_dry_run() -> None:
    assert CopyOptions.from_dict(None) == CopyOptions("skip-if-identical", dry_run=False)
    assert CopyOptions.from_dict({"dry_run": True, "overwrite": "never"}) == CopyOptions("never", dry_run=True)


@pytest.mark.parametrize(
    ("raw", "field", "rule"),
    [
        ({"overwrite": "sometimes"}, "options.overwrite", "must be one of"),
        ({"dry_run": "yes"}, "options.dry_run", "true or false"),
        ({"dryrun": True}, "options.dryrun", "unknown field"),
        ([], "options", "must be an object"),
    ],
)
def test_bad_options_name_the_field_and_the_rule(raw: Any, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CopyOptions.from_dict(raw)
    assert info.value.field == field and rule in info.value.rule


def test_checksum_spellings_are_normalized() -> None:
    value = "A" * 64
    assert Checksum.from_dict({"algorithm": "sha256", "value": value}) == Checksum("SHA-256", "a" * 64)
    spec = ObjectSpec.from_dict({"key": "k", "size": 3, "checksum": {"algorithm": "MD5", "value": "0" * 32}})
    assert spec.to_dict() == {"key": "k", "size": 3, "checksum": {"algorithm": "MD5", "value": "0" * 32}}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"algorithm": "CRC32", "value": "00000000"}, "checksum.algorithm"),
        ({"algorithm": "SHA-256", "value": "abc"}, "checksum.value"),
        ({"algorithm": "MD5", "value": "z" * 32}, "checksum.value"),
        ({"algorithm": "MD5"}, "checksum"),
    ],
)
def test_bad_checksums_are_rejected(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Checksum.from_dict(raw)
    assert info.value.field == field
