"""Reading request bodies: content type and coding, the worker's budget, size limit, deadlines, JSON, and the
typed model, in that order.

Layer: api. Each failure is a distinct, named client error: 415 for a body that is not JSON by its
content type or comes in a content coding the operation does not take, 503 ``busy`` when the worker already
holds its budget of request bodies, 413 past ``Limits.max_json_body`` (checked on ``Content-Length`` before
reading, and on the bytes as they arrive, inflated), 408 for a body that stops arriving or comes too slowly,
400 for malformed JSON or a broken compressed stream, 422 naming the field for a wrong shape.

Content codings. aiohttp inflates nothing here (the app turns its ``auto_decompress`` off): a JSON body may
be sent ``gzip`` or ``deflate`` and ``read_json`` inflates it itself, never producing more than the bytes
still allowed, so a bomb is a 413 after inflating just past the limit. Uploads (a streaming PUT, a batch of
files) take no content coding at all: their bytes are the file's, as most object stores' APIs have it (a
compressed upload would be inflated into a file many times the size of what was sent). Anything else is
refused with 415 and ``Accept-Encoding`` naming what would have been taken (RFC 9110, 15.5.16), before a
byte of the body is read.

Budget. A ``ByteBudget`` on the app (``BODY_BUDGET``) counts the bytes of request bodies one worker may hold
at once. Each reader reserves its worst case before reading (``reserve``): the body's length or its limit,
whichever is smaller (twice that for JSON: the bytes and their parsed form); ``body_budget_middleware``
gives it back when the request ends. Past the budget the request is refused with 503 and ``Retry-After``,
so a crowd of slow or large bodies costs refusals, not memory.

Deadlines. A body must keep coming (``Limits.body_idle_seconds`` without a byte is a 408) and must be whole
within ``Limits.body_seconds`` plus one second for every ``Limits.body_min_rate`` bytes received (Apache's
``mod_reqtimeout`` rule): a large upload at a fair pace is never cut off, a trickle is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import StreamReader, web
from aiohttp.typedefs import Handler

from service import codec
from service.core.errors import BadRequest, BodyStalled
from service.keys import BODY_BUDGET, SETTINGS
from service.settings import Limits

T = TypeVar("T")

#: Content codings each kind of body may arrive in.
JSON_CODINGS = ("gzip", "deflate")
UPLOAD_CODINGS: tuple[str, ...] = ()

#: The bytes of body the current request has reserved from its worker's budget.
_RESERVED = web.RequestKey("body_bytes_reserved", int)


def reserve(request: web.Request, size: int) -> None:
    """Reserve ``size`` bytes of the worker's body budget until the request ends."""
    taken = request.app[BODY_BUDGET].take(size)
    request[_RESERVED] = request.get(_RESERVED, 0) + taken


def declared_or(request: web.Request, worst: int) -> int:
    """What a body may hold: its ``Content-Length`` if that is smaller than ``worst``."""
    length = request.content_length
    return worst if length is None else min(length, worst)


@web.middleware
async def body_budget_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives back what the request reserved of the body budget, however it ends."""
    try:
        return await handler(request)
    finally:
        if taken := request.get(_RESERVED, 0):
            request.app[BODY_BUDGET].give(taken)


def check_coding(request: web.Request, accepted: tuple[str, ...]) -> str | None:
    """The body's one content coding from ``accepted`` (None for none or ``identity``); 415 for anything
    else, a stack of codings (``gzip, gzip``) included."""
    codings = [
        token.strip().lower()
        for value in request.headers.getall("Content-Encoding", ())
        for token in value.split(",")
        if token.strip()
    ]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in accepted:
        return codings[0]
    taken = ", ".join(accepted) or "none (send the bytes as they are)"
    raise web.HTTPUnsupportedMediaType(
        headers={"Accept-Encoding": ", ".join(accepted) or "identity"},
        text=f"This body may not be sent with Content-Encoding {', '.join(codings)}; codings taken: {taken}.",
    )


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json(request: web.Request, model: type[T], *, max_body: int | None = None) -> T:
    """The request's JSON body as a ``model``; a client error if it is anything else. ``max_body``
    (default ``Limits.max_json_body``) caps the body, chunked, compressed or not."""
    if not _is_json(request.content_type):
        raise web.HTTPUnsupportedMediaType(
            text=f"Send the body as application/json, not {request.content_type or 'nothing'}."
        )
    coding = check_coding(request, JSON_CODINGS)
    limit = max_body or request.app[SETTINGS].limits.max_json_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    # Twice the body: its bytes and their parsed form. A compressed body's size is known only once
    # inflated: reserve for the limit.
    reserve(request, 2 * (limit if coding else declared_or(request, limit)))
    inflater = _Inflater(coding) if coding else None
    raw = bytearray()
    async for chunk in body_chunks(request):
        raw += inflater.inflate(chunk, limit - len(raw)) if inflater else chunk
        if len(raw) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if inflater:
        inflater.finish()
    return codec.decode(raw, model)


class _Inflater:
    """Inflates a ``gzip`` or ``deflate`` body a chunk at a time, never producing more than asked for."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._inflate: zlib._Decompress | None = None

    def inflate(self, chunk: bytes, room: int) -> bytes:
        """The chunk's inflated bytes; at most ``room + 1`` of them (one more than fits says "too large")."""
        if self._inflate is None:
            # As aiohttp does: "deflate" is meant to be zlib-wrapped (RFC 9110), but some clients send it raw.
            wbits = 16 + zlib.MAX_WBITS if self._coding == "gzip" else zlib.MAX_WBITS
            if self._coding == "deflate" and chunk and chunk[0] & 0x0F != 8:
                wbits = -zlib.MAX_WBITS
            self._inflate = zlib.decompressobj(wbits)
        try:
            return self._inflate.decompress(chunk, max(room, 0) + 1)
        except zlib.error:
            raise BadRequest(f"The body is not valid {self._coding} data.") from None

    def finish(self) -> None:
        if self._inflate is None or not self._inflate.eof:
            raise BadRequest(f"The {self._coding} body ends before its compressed stream does.")


class BodyClock:
    """When a body must have arrived: some byte within every idle timeout, and the whole within
    ``body_seconds`` plus a second for every ``body_min_rate`` bytes received. Bytes are counted as they
    arrive on the connection, so a reader waiting for a larger step (a multipart boundary) is judged by
    what the client sends, not by what the step has consumed."""

    def __init__(self, stream: StreamReader, limits: Limits) -> None:
        self._stream = stream
        self._limits = limits
        self._started = time.monotonic()

    def _left(self, received: int) -> float:
        limits = self._limits
        return self._started + limits.body_seconds + received / limits.body_min_rate - time.monotonic()

    async def wait(self, step: Awaitable[T]) -> T:
        """``step``'s result, or ``BodyStalled`` when the body stops or falls behind its deadline first."""
        limits = self._limits
        task = asyncio.ensure_future(step)
        try:
            while True:
                received = self._stream.total_bytes
                waited = max(0.0, min(limits.body_idle_seconds, self._left(received)))
                done, _ = await asyncio.wait({task}, timeout=waited)
                if done:
                    return task.result()
                now_received = self._stream.total_bytes
                if self._left(now_received) <= 0:
                    raise BodyStalled(
                        f"The body came too slowly: {now_received} bytes in {time.monotonic() - self._started:.0f} "
                        f"s (a body has {limits.body_seconds:g} s, and a second more for every "
                        f"{limits.body_min_rate} bytes); nothing was stored."
                    )
                if now_received == received and waited >= limits.body_idle_seconds:
                    raise BodyStalled(
                        f"No data of the body arrived for {limits.body_idle_seconds:g} s; nothing was stored."
                    )
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; ``BodyStalled`` (408) when it stops or comes too slowly (see
    ``BodyClock``), so a slow or stalled client cannot hold a connection, a worker's memory or an upload open
    for ever."""
    clock = BodyClock(request.content, request.app[SETTINGS].limits)
    while chunk := await clock.wait(request.content.readany()):
        yield chunk
