"""Reading request bodies: content type, size limit, JSON, and the typed model, in that order.

Layer: api. Each failure is a distinct, named client error: 415 for a body that is not JSON by its
content type, 413 past ``Limits.max_json_body`` (checked on ``Content-Length`` before reading, and by
aiohttp while reading a chunked body), 400 for malformed JSON, 422 naming the field for a wrong shape, and
408 for a body that stops arriving (``Limits.body_idle_seconds`` without a byte).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from aiohttp import web

from service import codec
from service.core.errors import BodyStalled
from service.keys import SETTINGS

T = TypeVar("T")


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json(request: web.Request, model: type[T], *, max_body: int | None = None) -> T:
    """The request's JSON body as a ``model``; a client error if it is anything else. ``max_body``
    (default ``Limits.max_json_body``) caps the body, chunked or not."""
    if not _is_json(request.content_type):
        raise web.HTTPUnsupportedMediaType(
            text=f"Send the body as application/json, not {request.content_type or 'nothing'}."
        )
    limit = max_body or request.app[SETTINGS].limits.max_json_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = bytearray()
    async for chunk in body_chunks(request):
        raw += chunk
        if len(raw) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    return codec.decode(bytes(raw), model)


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; ``BodyStalled`` (408) when nothing comes for the idle timeout, so a
    slow or stalled client cannot hold a connection, a worker's memory or an upload open for ever."""
    idle = request.app[SETTINGS].limits.body_idle_seconds
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.readany()
        except TimeoutError:
            raise BodyStalled(f"No data of the body arrived for {idle:g} s; nothing was stored.") from None
        if not chunk:
            return
        yield chunk
