"""The JSON codec: malformed input vs wrong shape, and field paths in errors."""

from __future__ import annotations

import pytest

from service import codec
from service.codec import WireModel
from service.core.errors import BadRequest, ValidationFailed


class Inner(WireModel):
    size: int


class Outer(WireModel):
    items: list[Inner]
    name: str = "default"


def test_round_trip():
    value = codec.decode(b'{"items": [{"size": 3}]}', Outer)
    assert value == Outer(items=[Inner(size=3)])
    assert codec.loads(codec.dumps(value)) == {"items": [{"size": 3}], "name": "default"}


def test_malformed_json_is_bad_request():
    with pytest.raises(BadRequest, match="not valid JSON"):
        codec.decode(b"{nope", Outer)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"items": [{"size": "3"}]}', "$.items[0].size"),
        (b'{"items": [{"size": 3, "extra": 1}]}', "$.items[0].extra"),
        (b'{"items": [{}]}', "$.items[0].size"),
        (b'{"items": 5}', "$.items"),
        (b"[]", "$"),
    ],
)
def test_shape_errors_name_the_field(body: bytes, path: str):
    with pytest.raises(ValidationFailed) as info:
        codec.decode(body, Outer)
    assert [e.path for e in info.value.errors] == [path]
    assert path in info.value.detail


def test_strict_mode_does_not_coerce_strings_to_numbers():
    with pytest.raises(ValidationFailed):
        codec.convert({"items": [{"size": "1"}]}, Outer)


def test_unencodable_values_fail_loudly():
    with pytest.raises(TypeError):
        codec.dumps({"x": object()})
