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
import orjson
from aiohttp.typedefs import Handler

from service.wire import Problem

_PATH_PARAM = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_SCHEMA_REF = "#/components/schemas/{name}"
#: reST literals in docstrings (double backticks) become CommonMark's, which OpenAPI descriptions use.
_REST_LITERAL = re.compile(r"``(.+?)``", re.S)

#: What each path parameter is, and an example value for the generated example requests.
PATH_PARAMETERS: Mapping[str, tuple[str, str]] = {
    "ns": ("A namespace id, as `GET /v1/namespaces` lists them.", "q3kx7v2m9dp4wz1a"),
    "username": ("An account's username.", "bob"),
    "path": ("A file's (or folder's) path in the namespace: relative, `/`-separated, portable.", "docs/hello.txt"),
    "upload_id": ("The `upload_id` of the ticket `POST /v1/ns/{ns}/uploads` answered.", "2~abc123"),
}

#: Example values by field name, for the example request bodies (anything else: by its schema's type). The
#: example file, ``hello.txt``, holds ``hello`` and a newline: its size and content hash are these.
_EXAMPLE_VALUES: Mapping[str, Any] = {
    "username": "alice",
    "password": "correct horse battery",
    "current_password": "correct horse battery",
    "new_password": "another horse battery",
    "email": "alice@example.com",
    "name": "Team docs",
    "role": "editor",
    "path": "docs/hello.txt",
    "from": "docs/hello.txt",
    "to": "old/hello.txt",
    "content_hash": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    "size": 6,
    "mtime": 1764417600.0,
    "refresh_token": "<refresh token>",
    "body_pack": "0123456789abcdef0123456789abcdef",
    "body_offset": 8,
    "parent_rev": 1,
    "hashes": ["5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"],
    "namespaces": ["q3kx7v2m9dp4wz1a"],
    "paths": ["docs/hello.txt"],
    "etag": '"<ETag of the part>"',
}

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
    schemas = _markdown(schemas)

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation(op, schemas)
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


def _markdown(value: Any) -> Any:
    """Every ``description`` in a schema tree as CommonMark: single backticks, paragraphs unwrapped."""
    if isinstance(value, dict):
        return {
            k: _describe(v) if k == "description" and isinstance(v, str) else _markdown(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_markdown(v) for v in value]
    return value


def _describe(docstring: str) -> str:
    """A docstring as an OpenAPI description: CommonMark literals, each paragraph on one line."""
    paragraphs = re.split(r"\n\s*\n", _REST_LITERAL.sub(r"`\1`", docstring.strip()))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _operation(op: Operation, schemas: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {},
    }
    description = op.description or (op.handler.__doc__ or "").strip()
    if description:
        doc["description"] = _describe(description)
    parameters = [
        {
            "name": m.group("name"),
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS[m.group("name")][0],
            "schema": {"type": "string"},
        }
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
    doc["x-codeSamples"] = [{"lang": "Shell", "label": "curl", "source": _curl(op, schemas)}]
    return doc


def _curl(op: Operation, schemas: Mapping[str, Any]) -> str:
    """An example request for ``op``: curl against the embedded default, path parameters filled in, and a
    request body of the schema's required fields."""
    path = _PATH_PARAM.sub(lambda m: PATH_PARAMETERS[m.group("name")][1], op.path)
    required = [p for p in op.parameters if p.get("required") and p["in"] == "query"]
    if required:
        path += "?" + "&".join(f"{p['name']}=<{p['name']}>" for p in required)
    words = ["curl -s"]
    upload = op.method == "PUT" and op.request is None and op.tag == "files"
    if op.method != "GET" and not upload:
        words.append(f"-X{op.method}")
    words.append(f"'localhost:8080{path}'")
    if op.auth:
        words.append('-H "Authorization: Bearer $TOKEN"')
    if upload:  # curl -T sends the file as a PUT
        words.append("-T hello.txt")
    if op.request is not None:
        body = orjson.dumps(_example(schemas, schemas[op.request.__name__])).decode()
        if op.request_media == "multipart/form-data":
            words.append(f"-F 'manifest={body};type=application/json' -F file=@hello.txt")
        else:
            words.append(f"-H 'Content-Type: application/json' -d '{body}'")
    return " ".join(words)


def _example(schemas: Mapping[str, Any], schema: Mapping[str, Any], name: str = "") -> Any:
    """A value that fits ``schema``: the example for the field's name, else the simplest of its type."""
    if "$ref" in schema:
        return _example(schemas, schemas[schema["$ref"].rsplit("/", 1)[-1]], name)
    if name in _EXAMPLE_VALUES:
        return _EXAMPLE_VALUES[name]
    for choice in schema.get("anyOf", ()):
        if choice.get("type") != "null":
            return _example(schemas, choice, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        wanted = [key for key in properties if key in schema.get("required", ()) or key in _EXAMPLE_VALUES]
        return {key: _example(schemas, properties[key], key) for key in wanted}
    if kind == "array":
        return [_example(schemas, schema.get("items", {}))]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    return "string"


def _success(status: int, body: type | str | None) -> dict[str, Any]:
    description = "Success" if status < 300 else "See the status code"
    if body is None and status in (301, 302, 303, 307, 308):
        return {
            "description": "Redirect: the body is at the URL in `Location`",
            "headers": {"Location": {"description": "Where the body is", "schema": {"type": "string"}}},
        }
    if body is None:
        return {"description": "No content"}
    if isinstance(body, str):
        return {"description": description, "content": {body: {"schema": {"type": "string"}}}}
    return {
        "description": _describe(body.__doc__.split("\n\n")[0]) if body.__doc__ else description,
        "content": {"application/json": {"schema": {"$ref": _ref(body)}}},
    }


def _ref(model: type) -> str:
    return _SCHEMA_REF.format(name=model.__name__)
