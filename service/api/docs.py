"""The API's documentation: the OpenAPI document as JSON, and a self-contained HTML page of it.

Layer: api. The page is rendered on the server from the OpenAPI document (no scripts, no CDN), so it
works offline and behind strict content security policies. Every interpolated string is escaped.
"""

from __future__ import annotations

import re
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
nav ul{columns:2;font-size:14px}
table.params{border-collapse:collapse;margin:.4rem 0;font-size:14px}
table.params td{border-top:1px solid #eee;padding:.2rem .6rem .2rem 0;vertical-align:top}
"""
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")


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
        f"<p>{markup(info['description'])}</p>",
        '<p>Machine-readable: <a href="/v1/openapi.json"><code>/v1/openapi.json</code></a></p>',
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    parts.append(_contents(by_tag))
    for tag, ops in by_tag.items():
        parts.append(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>')
        parts.extend(_render_operation(method, path, op) for method, path, op in ops)
    parts.append('<h2 id="problems">Problem types</h2>')
    parts.append(
        "<p>Errors are <code>application/problem+json</code> (RFC 9457); the <code>type</code> member links here.</p>"
    )
    for kind in PROBLEM_TYPES:
        parts.append(
            f'<div class=op id="problem-{escape(kind.slug)}"><b>{kind.status} '
            f"{escape(kind.title)}</b> <code>{escape(kind.uri)}</code>"
            f"<p>{markup(kind.description)}</p></div>"
        )
    parts.append('<h2 id="schemas">Schemas</h2>')
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f'<details id="schema-{escape(name)}"><summary>{escape(name)}</summary>')
        if "description" in schema:
            parts.append(f"<p>{markup(schema['description'])}</p>")
        shown = {key: value for key, value in schema.items() if key != "description"}
        parts.append(f"<pre>{escape(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())}</pre>")
        parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def markup(text: str) -> str:
    """The inline markup OpenAPI descriptions use (CommonMark code spans and strong emphasis) as HTML, the
    rest escaped; paragraphs kept."""
    paragraphs = [
        _STRONG.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", escape(p))) for p in text.split("\n\n")
    ]
    return "</p><p>".join(paragraphs)


def _contents(by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]]) -> str:
    rows = ['<nav id="contents"><h2>Contents</h2><ul>']
    for tag, ops in by_tag.items():
        rows.append(f'<li><a href="#tag-{escape(tag)}">{escape(tag)}</a><ul>')
        rows.extend(
            f'<li><a href="#op-{escape(op["operationId"])}">{escape(method.upper())} {escape(path)}</a>'
            f" &mdash; {escape(op['summary'])}</li>"
            for method, path, op in ops
        )
        rows.append("</ul></li>")
    rows.append('<li><a href="#problems">Problem types</a></li><li><a href="#schemas">Schemas</a></li></ul></nav>')
    return "\n".join(rows)


def _type(schema: dict[str, Any]) -> str:
    kind = str(schema.get("type", "string"))
    bounds = [f"{label} {schema[key]}" for key, label in (("minimum", "from"), ("maximum", "to")) if key in schema]
    return escape(" ".join([kind, *bounds]))


def _render_operation(method: str, path: str, op: dict[str, Any]) -> str:
    rows = [
        f'<div class=op id="op-{escape(op["operationId"])}">',
        f"<span class=m>{escape(method.upper())}</span> <code>{escape(path)}</code> &mdash; {escape(op['summary'])}",
    ]
    if "description" in op:
        rows.append(f"<p>{markup(op['description'])}</p>")
    if op.get("parameters"):
        rows.append("<table class=params>")
        rows.extend(
            f"<tr><td><code>{escape(param['name'])}</code></td><td>{escape(param['in'])}"
            f"{', required' if param.get('required') else ''}</td><td>{_type(param.get('schema', {}))}</td>"
            f"<td>{markup(param.get('description', ''))}</td></tr>"
            for param in op["parameters"]
        )
        rows.append("</table>")
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
    statuses = [f"<code>{escape(status)}</code> {_response(response)}" for status, response in op["responses"].items()]
    rows.append("<div>responses: " + "; ".join(statuses) + "</div>")
    for sample in op.get("x-codeSamples", []):
        rows.append(f"<div>example:</div><pre>{escape(sample['source'])}</pre>")
    rows.append("</div>")
    return "\n".join(rows)


def _response(response: dict[str, Any]) -> str:
    """What a response carries: a problem, a JSON model (linked), another media type, or nothing."""
    if response.get("$ref", "").endswith("/responses/Problem"):
        return "problem+json"
    content: dict[str, dict[str, Any]] = response.get("content", {})
    if not content:
        return "no body" if "Location" not in response.get("headers", {}) else "redirect to <code>Location</code>"
    labels = []
    for media_type, media in content.items():
        ref = media.get("schema", {}).get("$ref", "")
        labels.append(_schema_link(ref) if "schemas" in ref else f"<code>{escape(media_type)}</code>")
    return ", ".join(labels)


def _schema_link(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
