"""No 500 on any number: every numeric input of every operation, read from the OpenAPI document, tried with
the numeric edges (huge, tiny, negative, fractional, exponent forms, NaN and the infinities, thousands of
digits, other scripts' digits), and every answer is a success or a 4xx problem, never a 5xx.

The inputs come from the document itself: each numeric field of a request body (JSON, or a batch's
manifest) and each query and header parameter. ``BASES`` says how to make the rest of each operation's
request valid, so the edge reaches the operation's logic; an operation with inputs and no base fails the
test, so a new input cannot go untried.

Tests layer: the service in process over real HTTP against the session's emulator (tests/conftest.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.api.files_helpers import home, independent_hash
from tests.api.helpers import PROBLEM, problem, user

#: JSON number literals (and a few non-numbers where a number belongs), inserted verbatim.
JSON_EDGES = (
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "-0.0",
    "1e3",
    "1E+2",
    "1e-7",
    "1e308",
    "-1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "1700000000.5",
    "253402300800",
    "-2208988801",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 5000,
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    '"1"',
    "[1]",
)

#: The same edges as text, for query parameters and headers.
TEXT_EDGES = (
    "0",
    "-0",
    "1",
    "-1",
    "+1",
    "1.5",
    "1e3",
    "1E+2",
    "1e308",
    "1e400",
    "-1e400",
    "inf",
    "-inf",
    "nan",
    "Infinity",
    "0x10",
    "1_000",
    " 1",
    "00000000000000000000001",
    "9223372036854775808",
    "9" * 5000,
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "\u0661\u0662",  # Arabic-Indic digits
    "\uff11\uff12",  # fullwidth digits
    "",
)


def range_forms(value: str) -> Iterator[str]:
    """``Range`` carries its numbers inside ``bytes=a-b``: each edge in each position."""
    yield f"bytes={value}-"
    yield f"bytes=0-{value}"
    yield f"bytes=-{value}"
    yield f"bytes={value}-{value}"


@dataclass
class Base:
    """A valid request of one operation, into which one input at a time is replaced by an edge."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: Extra query parameters that bring a given parameter into play (``limit`` of a history needs ``versions``).
    query_for: dict[str, dict[str, str]] = field(default_factory=dict)
    data: bytes | None = None
    multipart: bool = False


def json_numeric_paths(schema: dict[str, Any], schemas: dict[str, Any], path: str = "$") -> Iterator[str]:
    if "$ref" in schema:
        yield from json_numeric_paths(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas, path)
        return
    for alternative in schema.get("anyOf", ()):
        yield from json_numeric_paths(alternative, schemas, path)
    kind = schema.get("type")
    if kind == "object":
        for name, inner in schema.get("properties", {}).items():
            yield from json_numeric_paths(inner, schemas, f"{path}.{name}")
    elif kind == "array":
        yield from json_numeric_paths(schema["items"], schemas, f"{path}[0]")
    elif kind in ("integer", "number"):
        yield path


def inputs(spec: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per operation id: its (kind, name) inputs: ("json", "$.a[0].b"), ("query", name), ("header", name)."""
    schemas = spec["components"]["schemas"]
    found: dict[str, list[tuple[str, str]]] = {}
    for item in spec["paths"].values():
        for op in item.values():
            listed = [(p["in"], p["name"]) for p in op.get("parameters", ()) if p["in"] in ("query", "header")]
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                schema = content["schema"]
                if media == "multipart/form-data":
                    schema = schema["properties"]["manifest"]
                listed += [("json", p) for p in sorted(set(json_numeric_paths(schema, schemas)))]
            if listed:
                found[op["operationId"]] = listed
    return found


def with_marker(body: Any, path: str, marker: str) -> Any:
    """A copy of ``body`` with the value at JSON path ``path`` (``$.a[0].b``) replaced by ``marker``."""
    steps = path[2:].replace("[0]", ".0").split(".")
    copy = orjson.loads(orjson.dumps(body))
    node = copy
    for step in steps[:-1]:
        node = node[int(step)] if step.isdigit() else node.setdefault(step, {})
    node[steps[-1]] = marker
    return copy


async def send(client, base: Base, auth: dict[str, str], **changes: Any) -> aiohttp.ClientResponse:
    body: bytes | None = changes.get("raw_body")
    headers = {**auth, **base.headers, **changes.get("headers", {})}
    query = {**base.query, **changes.get("query", {})}
    if base.multipart:
        form = aiohttp.FormData()
        manifest = (body or orjson.dumps(base.body)).decode()
        form.add_field("manifest", manifest, content_type="application/json")
        form.add_field("file", io.BytesIO(base.data or b""), filename="file", content_type="application/octet-stream")
        return await client.post(base.path, data=form, params=query, headers=headers)
    if body is None and base.body is not None:
        body = orjson.dumps(base.body)
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = body if body is not None else base.data
    return await client.request(base.method, base.path, data=data, params=query, headers=headers)


async def test_no_numeric_input_of_any_operation_is_a_server_error(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    for name in ("a.txt", "m.txt", "d.txt", "x.txt"):
        assert (await client.put(f"/v1/ns/{ns}/files/{name}", data=b"x", headers=alice)).status == 201
    six_mib = f"{'1' * 64}-2"
    ticket = await (
        await client.post(f"/v1/ns/{ns}/uploads", json={"content_hash": six_mib, "size": 6 * 2**20}, headers=alice)
    ).json()
    x_hash = independent_hash(b"x")
    entry = {"path": "n.txt", "content_hash": x_hash, "size": 1, "mtime": 1.0, "parent_rev": None}
    bases = {
        "post_credentials": Base("POST", "/v1/credentials", {"duration_seconds": 900}),
        "post_upload": Base("POST", f"/v1/ns/{ns}/uploads", {"content_hash": six_mib, "size": 6 * 2**20}),
        "post_upload_complete": Base(
            "POST", f"/v1/ns/{ns}/uploads/{ticket['upload_id']}/complete", {"parts": [{"number": 1, "etag": '"e"'}]}
        ),
        "post_commit": Base("POST", f"/v1/ns/{ns}/commit", {"entries": [entry]}),
        "post_blobs_fetch": Base(
            "POST",
            f"/v1/ns/{ns}/blobs:fetch",
            {"items": [{"content_hash": x_hash, "size": 1, "body_pack": "0" * 32, "body_offset": 8}]},
        ),
        "post_files_batch": Base("POST", f"/v1/ns/{ns}/files:batch", {"entries": [entry]}, data=b"x", multipart=True),
        "get_files": Base("GET", f"/v1/ns/{ns}/files"),
        "get_file": Base(
            "GET",
            f"/v1/ns/{ns}/files/a.txt",
            query_for={"limit": {"versions": ""}, "before": {"versions": ""}, "Range": {"via": "service"}},
        ),
        "put_file": Base("PUT", f"/v1/ns/{ns}/files/p.txt", data=b"x"),
        "delete_file": Base("DELETE", f"/v1/ns/{ns}/files/d.txt", headers={"If-Match": "1"}),
        "post_restore": Base("POST", f"/v1/ns/{ns}/restore", {"path": "a.txt", "rev": 1}),
        "get_trash": Base("GET", f"/v1/ns/{ns}/trash"),
        "post_trash_restore": Base("POST", f"/v1/ns/{ns}/trash:restore", {"paths": ["a.txt"]}),
        "post_move": Base("POST", f"/v1/ns/{ns}/move", {"from": "m.txt", "to": "m2.txt", "parent_rev": 1}),
        "post_moves": Base(
            "POST", f"/v1/ns/{ns}/moves", {"moves": [{"from": "x.txt", "to": "x2.txt", "parent_rev": 1}]}
        ),
        "post_compare": Base("POST", f"/v1/ns/{ns}/compare", {"entries": [{"path": "a.txt", "synced_rev": 1}]}),
        "get_changes": Base("GET", f"/v1/ns/{ns}/changes"),
        "get_unsubscribe": Base("GET", "/v1/unsubscribe"),
        "post_unsubscribe": Base("POST", "/v1/unsubscribe"),
        "get_email_confirm": Base("GET", "/v1/account/email/confirm"),
        "post_email_confirm": Base("POST", "/v1/account/email/confirm"),
    }
    spec = await (await client.get("/v1/openapi.json")).json()
    operations = inputs(spec)
    assert not set(operations) - set(bases), (
        f"operations with numeric inputs but no base request: {set(operations) - set(bases)}"
    )
    tried: list[tuple[str, str, str, int]] = []
    for op_id, op_inputs in operations.items():
        base = bases[op_id]
        for kind, name in op_inputs:
            cases: list[dict[str, Any]]
            shown: tuple[str, ...]
            if kind == "json":
                marked = orjson.dumps(with_marker(base.body, name, "__EDGE__"))
                cases = [{"raw_body": marked.replace(b'"__EDGE__"', edge.encode())} for edge in JSON_EDGES]
                shown = JSON_EDGES
            elif kind == "query":
                extra = base.query_for.get(name, {})
                cases = [{"query": {**extra, name: edge}} for edge in TEXT_EDGES]
                shown = TEXT_EDGES
            else:
                extra = base.query_for.get(name, {})
                values = [form for edge in TEXT_EDGES for form in range_forms(edge)] if name == "Range" else TEXT_EDGES
                cases = [{"headers": {name: value}, "query": extra} for value in values]
                shown = tuple(values)
            for case, edge in zip(cases, shown, strict=True):
                response = await send(client, base, alice, **case)
                text = await response.text()
                tried.append((op_id, name, edge[:40], response.status))
                assert response.status < 500, (op_id, name, edge[:80], response.status, text[:300])
                # A header line past aiohttp's 8,190 bytes is refused by its HTTP parser (a plain 400) before
                # the app sees the request; a conflict answers as its operation does.
                parser_refused = response.status == 400 and len(edge) > 8190
                if response.status >= 400 and response.status != 409 and not parser_refused:
                    assert response.content_type == PROBLEM, (op_id, name, edge[:80], text[:300])
    # Every operation with inputs was tried, each input with every edge.
    assert {t[0] for t in tried} == set(operations)
    assert len(tried) >= sum(len(v) for v in operations.values()) * min(len(JSON_EDGES), len(TEXT_EDGES))


async def test_an_out_of_range_mtime_is_refused_before_any_byte_is_stored(client, provisioned, aws_session):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    for bad in ("inf", "-inf", "nan", "1e400", "1e308", "253402300800", "-2208988801", "soon"):
        response = await client.put(f"/v1/ns/{ns}/files/t.txt", data=b"stored?", headers={**alice, "X-Mtime": bad})
        found = await problem(response, 422)
        assert found["errors"][0]["path"] == "X-Mtime", bad
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        listed = await s3.list_objects_v2(Bucket=provisioned.bucket, Prefix=f"ns/{ns}/")
    assert listed.get("KeyCount", 0) == 0
    ok = await client.put(f"/v1/ns/{ns}/files/t.txt", data=b"stored", headers={**alice, "X-Mtime": "-1.5e3"})
    assert (ok.status, (await ok.json())["mtime"]) == (201, -1500.0)


async def test_mtimes_and_revs_out_of_range_in_a_commit_name_the_field(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    good = {"path": "a.txt", "content_hash": independent_hash(b"a"), "size": 1, "mtime": 1.0}
    for field_name, raw in (
        ("mtime", b"1e308"),
        ("mtime", b"-1e300"),
        ("parent_rev", b"1000000000001"),
        ("size", b"5497558138881"),
    ):
        body = orjson.dumps({"entries": [with_marker(good, f"$.{field_name}", "__N__")]}).replace(b'"__N__"', raw)
        response = await client.post(
            f"/v1/ns/{ns}/commit", data=body, headers={**alice, "Content-Type": "application/json"}
        )
        assert (await problem(response, 422))["errors"][0]["path"] == f"$.entries[0].{field_name}", raw


async def test_range_bounds_of_any_length_are_read_without_a_server_error(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    assert (await client.put(f"/v1/ns/{ns}/files/a.txt", data=b"hello", headers=alice)).status == 201
    url, digits = f"/v1/ns/{ns}/files/a.txt?via=service", "9" * 5000
    far_start = await client.get(url, headers={**alice, "Range": f"bytes={digits}-"})
    assert far_start.status == 416
    assert far_start.headers["Content-Range"] == "bytes */5"
    for header in (f"bytes=0-{digits}", f"bytes=-{digits}", f"bytes=000-{digits}"):
        response = await client.get(url, headers={**alice, "Range": header})
        assert (response.status, await response.read()) == (206, b"hello"), header
        assert response.headers["Content-Range"] == "bytes 0-4/5"
    tail = await client.get(url, headers={**alice, "Range": "bytes=3-"})
    assert (tail.status, await tail.read()) == (206, b"lo")
