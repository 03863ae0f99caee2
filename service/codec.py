"""The project's JSON codec: orjson for bytes, msgspec ``Struct``s for typed, strict wire models.

Layer: leaf, shared with the client in ``tools/``. Imports only ``service.core.errors``.
Decoding is two steps so the two failure kinds stay distinct: bytes that are not JSON are a
``BadRequest`` (400); JSON of the wrong shape is a ``ValidationFailed`` (422) naming the JSON path of
the offending field. Request models (``WireModel``) set ``forbid_unknown_fields=True`` so a misspelt field is
an error, not a silently ignored one. Response models (``ResponseModel``) do not: the service only encodes
them, and a client reading one ignores fields it does not know, so a newer server may add fields without
breaking deployed clients. Strict requests, tolerant responses.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import orjson

from service.core.errors import BadRequest, FieldError, ValidationFailed

T = TypeVar("T")

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<field>[^`]+)`$")


class WireModel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are rejected (422 naming the field)."""


class ResponseModel(msgspec.Struct, kw_only=True):
    """Base of every response body: unknown fields are ignored when a client decodes one."""


def _default(obj: object) -> Any:
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: object) -> bytes:
    """Encode ``obj`` (builtins, dataclasses, datetimes, UUIDs or wire models) as compact JSON."""
    return orjson.dumps(obj, default=_default)


def loads(raw: bytes | bytearray | str) -> Any:
    """Parse JSON text; anything that is not valid JSON is a ``BadRequest``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None


def convert(obj: Any, model: type[T]) -> T:
    """Check already-parsed JSON against ``model``; a mismatch is a ``ValidationFailed``."""
    try:
        return msgspec.convert(obj, model, strict=True)
    except msgspec.ValidationError as exc:
        error = field_error(str(exc))
        raise ValidationFailed(f"{error.message} at {error.path}", (error,)) from None


def decode(raw: bytes | bytearray | str, model: type[T]) -> T:
    """Parse and check a JSON body in one call."""
    return convert(loads(raw), model)


def field_error(message: str) -> FieldError:
    """Turn msgspec's ``"<message> - at `$.a.b`"`` into a ``FieldError`` whose path names the field.

    msgspec reports an unknown or missing field at the enclosing object; the path is extended by the
    field's name, so a client sees ``$.entries[0].zz`` rather than ``$.entries[0]``.
    """
    match = _AT_PATH.match(message)
    text = match.group("message") if match else message
    path = (match.group("path") if match else None) or "$"
    named = _NAMED_FIELD.match(text)
    if named:
        path = f"{path}.{named.group('field')}"
    return FieldError(path=path, message=text)
