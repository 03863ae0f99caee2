"""The OpenAPI 3.1 document, generated from the route table and the wire models.

Layer: api. ``Operation`` describes one route: the table in ``service.api.routes`` registers each with
aiohttp *and* documents it here, so a route cannot exist without its documentation. JSON schemas come
from the msgspec models themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp.typedefs import Handler

from service.wire import Problem

_PATH_PARAM = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_SCHEMA_REF = "#/components/schemas/{name}"

#: Statuses every operation with a body can answer, besides its own (503: the worker's body budget is full).
_BODY_ERRORS = (400, 408, 413, 415, 422, 503)


@dataclass(frozen=True, slots=True)
class Operation:
    """One route and its documentation."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    #: Success responses: status -> wire model class, or a media type string for non-JSON bodies.
    responses: Mapping[int, type | str | None]
    request: type | None = None
    #: ``application/json`` (the body is ``request``), or ``multipart/form-data``: a ``manifest`` part that is
    #: ``request`` as JSON, then binary ``file`` parts.
    request_media: str = "application/json"
    #: Error statuses this operation answers with a problem+json body.
    errors: tuple[int, ...] = ()
    description: str = ""
    parameters: tuple[dict[str, Any], ...] = field(default=())
    #: Whether the operation needs a bearer access token (documents the 401 and the security scheme).
    auth: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def openapi_path(self) -> str:
        """The path with aiohttp's ``{name:regex}`` turned into OpenAPI's ``{name}``."""
        return _PATH_PARAM.sub(lambda m: "{" + m.group("name") + "}", self.path)


def build_openapi(operations: Iterable[Operation], *, title: str, version: str) -> dict[str, Any]:
    operations = list(operations)
    models: list[type] = [Problem]
    for op in operations:
        candidates = [op.request, *op.responses.values()]
        models.extend(m for m in candidates if isinstance(m, type) and m not in models)
    _, schemas = msgspec.json.schema_components(models, ref_template=_SCHEMA_REF)

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Keeps files in sync between many clients. Errors are RFC 9457 "
            "`application/problem+json`; every response carries `X-Request-ID`.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /v1/auth/token.",
                }
            },
            "schemas": schemas,
            "responses": {
                "Problem": {
                    "description": "An error, as RFC 9457 problem details.",
                    "content": {"application/problem+json": {"schema": {"$ref": _ref(Problem)}}},
                }
            },
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {},
    }
    description = op.description or (op.handler.__doc__ or "").strip()
    if description:
        doc["description"] = description
    parameters = [
        {"name": m.group("name"), "in": "path", "required": True, "schema": {"type": "string"}}
        for m in _PATH_PARAM.finditer(op.path)
    ]
    parameters.extend(op.parameters)
    if parameters:
        doc["parameters"] = parameters
    if op.request is not None:
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": _ref(op.request)}}}
        if op.request_media == "multipart/form-data":
            content = {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["manifest"],
                        "properties": {
                            "manifest": {"$ref": _ref(op.request)},
                            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        },
                    },
                    "encoding": {"manifest": {"contentType": "application/json"}},
                }
            }
        doc["requestBody"] = {
            "required": op.request_media != "application/json"
            or any(f.required for f in msgspec.structs.fields(op.request)),
            "content": content,
        }
    for status, body in op.responses.items():
        doc["responses"][str(status)] = _success(status, body)
    error_statuses = set(op.errors) | (set(_BODY_ERRORS) if op.request is not None else set())
    if op.auth:
        doc["security"] = [{"bearer": []}]
        error_statuses.add(401)
    for status in sorted(error_statuses):
        doc["responses"][str(status)] = {"$ref": "#/components/responses/Problem"}
    return doc


def _success(status: int, body: type | str | None) -> dict[str, Any]:
    description = "Success" if status < 300 else "See the status code"
    if body is None:
        return {"description": "No content"}
    if isinstance(body, str):
        return {"description": description, "content": {body: {"schema": {"type": "string"}}}}
    return {
        "description": body.__doc__.strip().splitlines()[0] if body.__doc__ else description,
        "content": {"application/json": {"schema": {"$ref": _ref(body)}}},
    }


def _ref(model: type) -> str:
    return _SCHEMA_REF.format(name=model.__name__)
