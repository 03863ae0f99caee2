"""The JSON codec: malformed input vs wrong shape, and field paths in errors."""

from __future__ import annotations

import msgspec
import pytest

from service import codec
from service.api.routes import OPERATIONS
from service.codec import WireModel
from service.core.errors import BadRequest, ValidationFailed
from service.wire import Changes, CommitRequest, Problem


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


def _structs(model: type) -> set[type]:
    """``model`` and every Struct type reachable from its fields."""
    found: set[type] = set()

    def walk(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in found:
                return
            found.add(info.cls)
            for f in info.fields:
                walk(f.type)
        for name in ("item_type", "key_type", "value_type"):
            if (inner := getattr(info, name, None)) is not None:
                walk(inner)
        for inner in getattr(info, "types", ()):
            walk(inner)

    walk(msgspec.inspect.type_info(model))
    return found


def _forbids(model: type) -> bool:
    return bool(model.__struct_config__.forbid_unknown_fields)  # type: ignore[attr-defined]


def test_requests_are_strict_and_responses_tolerant_in_every_operation():
    requests = {s for op in OPERATIONS if isinstance(op.request, type) for s in _structs(op.request)}
    responses = {
        s for op in OPERATIONS for model in op.responses.values() if isinstance(model, type) for s in _structs(model)
    } | _structs(Problem)
    assert requests
    assert responses
    assert not requests & responses, "a model is either a request or a response"
    lax = sorted(s.__name__ for s in requests if not _forbids(s))
    assert not lax, f"request models must reject unknown fields: {lax}"
    strict = sorted(s.__name__ for s in responses if _forbids(s))
    assert not strict, f"response models must let clients ignore unknown fields: {strict}"


def test_a_response_with_fields_a_newer_server_added_decodes_and_a_request_with_them_does_not():
    newer = {
        "changes": [
            {
                "path": "a.txt",
                "file_id": "f1",
                "rev": 2,
                "content_hash": "0" * 64,
                "size": 1,
                "mtime": 1.0,
                "deleted": False,
                "committed_by": "alice",
                "committed_at": 2.0,
                "seq": 3,
                "block_size": 8,
                "labels": ["new"],
            }
        ],
        "cursor": "s3",
        "more": False,
        "backoff_seconds": 0.0,
        "region": "eu",
    }
    page = codec.decode(codec.dumps(newer), Changes)
    assert page.cursor == "s3"
    assert page.changes[0].rev == 2
    with pytest.raises(ValidationFailed, match="unknown field `owner`") as raised:
        codec.decode(b'{"entries": [{"path": "a", "owner": "x"}]}', CommitRequest)
    assert raised.value.errors[0].path == "$.entries[0].owner"
