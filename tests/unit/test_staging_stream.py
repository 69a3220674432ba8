"""staging.iter_json_array: the items of a large JSON array, decoded from the object in chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.contracts import staging


class Body:
    def __init__(self, data: bytes) -> None:
        self.data, self.closed = data, False

    def read(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def close(self) -> None:
        self.closed = True


class S3:
    def __init__(self, data: bytes) -> None:
        self.body = Body(data)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": self.body}


ITEMS = [{"id": f"b{i:06d}", "objects": [{"key": f"é/{i}/{'x' * i}", "size": i}]} for i in range(40)]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_items_come_out_whole_whatever_the_chunk_boundaries(chunk: int, indent: int | None) -> None:
    s3 = S3(json.dumps(ITEMS, ensure_ascii=False, indent=indent).encode("utf-8"))
    assert list(staging.iter_json_array(s3, "b", "k", chunk_bytes=chunk)) == ITEMS
    assert s3.body.closed


@pytest.mark.parametrize("data", [b'{"a": 1}', b'[{"a": 1}, {"b"', b""])
def test_not_an_array_or_not_closed_is_an_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        list(staging.iter_json_array(S3(data), "b", "k", chunk_bytes=3))


def test_an_empty_array_has_no_items() -> None:
    assert list(staging.iter_json_array(S3(b" [ ] "), "b", "k")) == []
