"""The API's documentation: the OpenAPI document as JSON, and a self-contained HTML page of it.

Layer: api. The page is rendered on the server from the OpenAPI document (no scripts, no CDN), so it
works offline and behind strict content security policies. Every interpolated string is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

import orjson
from aiohttp import web

from service.api.problems import PROBLEM_TYPES
from service.keys import OPENAPI

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2.5rem}
.op{border:1px solid #e3e3e3;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
code,pre{font-family:ui-monospace,monospace;background:#f6f6f6;border-radius:4px}
pre{padding:.6rem;overflow:auto;font-size:13px}
details summary{cursor:pointer;color:#555}
"""


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this service."""
    return web.Response(
        body=orjson.dumps(request.app[OPENAPI], option=orjson.OPT_INDENT_2),
        content_type="application/json",
    )


async def get_docs(request: web.Request) -> web.Response:
    """Human-readable API reference, rendered from the OpenAPI document."""
    return web.Response(text=render_docs(request.app[OPENAPI]), content_type="text/html")


def render_docs(spec: dict[str, Any]) -> str:
    info = spec["info"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info['description'])}</p>",
        '<p>Machine-readable: <a href="/v1/openapi.json"><code>/v1/openapi.json</code></a></p>',
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        parts.append(f"<h2>{escape(tag)}</h2>")
        parts.extend(_render_operation(method, path, op) for method, path, op in ops)
    parts.append('<h2 id="problems">Problem types</h2>')
    parts.append(
        "<p>Errors are <code>application/problem+json</code> (RFC 9457); the <code>type</code> member links here.</p>"
    )
    for kind in PROBLEM_TYPES:
        parts.append(
            f'<div class=op id="problem-{escape(kind.slug)}"><b>{kind.status} '
            f"{escape(kind.title)}</b> <code>{escape(kind.uri)}</code>"
            f"<p>{escape(kind.description)}</p></div>"
        )
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f'<details id="schema-{escape(name)}"><summary>{escape(name)}</summary>')
        parts.append(f"<pre>{escape(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode())}</pre>")
        parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _render_operation(method: str, path: str, op: dict[str, Any]) -> str:
    rows = [
        f'<div class=op id="op-{escape(op["operationId"])}">',
        f"<span class=m>{escape(method.upper())}</span> <code>{escape(path)}</code> &mdash; {escape(op['summary'])}",
    ]
    if "description" in op:
        rows.append(f"<p>{escape(op['description'])}</p>")
    for param in op.get("parameters", []):
        rows.append(
            f"<div>parameter <code>{escape(param['name'])}</code> in {escape(param['in'])}"
            f"{' (required)' if param.get('required') else ''}</div>"
        )
    for media_type, content in op.get("requestBody", {}).get("content", {}).items():
        schema = content["schema"]
        if "$ref" in schema:
            rows.append(f"<div>body: {_schema_link(schema['$ref'])}</div>")
        else:  # a form: its parts
            parts = ", ".join(
                f"<code>{escape(name)}</code> "
                + (_schema_link(part["$ref"]) if "$ref" in part else "(binary, repeated)")
                for name, part in schema.get("properties", {}).items()
            )
            rows.append(f"<div>body: {escape(media_type)}: {parts}</div>")
    statuses = []
    for status, response in op["responses"].items():
        ref = response.get("$ref")
        if ref is None:
            media: list[dict[str, Any]] = list(response.get("content", {}).values())
            ref = media[0].get("schema", {}).get("$ref") if media else None
        label = _schema_link(ref) if ref and "schemas" in ref else "problem+json"
        statuses.append(f"<code>{escape(status)}</code> {label}")
    rows.append("<div>responses: " + "; ".join(statuses) + "</div></div>")
    return "\n".join(rows)


def _schema_link(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
