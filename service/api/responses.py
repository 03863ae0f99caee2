"""Rendering typed models as JSON responses.

Layer: api.
"""

from __future__ import annotations

from aiohttp import web

from service import codec


def json_response(body: object, status: int = 200) -> web.Response:
    """``body`` (a wire model or plain data) as ``application/json``."""
    return web.Response(body=codec.dumps(body), status=status, content_type="application/json")
