"""HTTP connections: aiohttp's server with a deadline on every request head.

Layer: api. aiohttp bounds an idle keep-alive connection (``keepalive_timeout``) and the size of a head, but
not the time a head takes to arrive: a client trickling a header line every second holds its connection (and
a file descriptor) as long as it likes, and a few hundred such clients hold a worker's. ``HeadDeadlineHandler``
closes a connection whose request head is not whole ``head_seconds`` after its first byte (after the
connection opened, for its first request), as Go's ``ReadHeaderTimeout`` and nginx's
``client_header_timeout`` do. ``ServiceRunner`` serves the app with it; gunicorn's aiohttp worker and
``python -m service`` both run the app through that runner (``service.app.make_runner``).

aiohttp exposes no hook for this, so the handler reads one private attribute of ``RequestHandler``
(``_waiter``: set while the connection waits for the next request's head) and the runner one of
``web.Server`` (``_kwargs``: the handler's settings); aiohttp is pinned and ``tests/api/test_limits.py`` holds
the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class HeadDeadlineHandler(web.RequestHandler):
    """A connection whose request heads must each arrive whole within ``head_seconds``."""

    __slots__ = ("_head_seconds", "_head_timer")

    def __init__(self, manager: web.Server, *, head_seconds: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_seconds = head_seconds
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()
        elif data:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        """Whether the connection waits for (the rest of) a request head, not handling one."""
        return self._waiter is not None and not self._waiter.done()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_seconds, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if self._waiting_for_head():
            log.info("closing a connection whose request head did not arrive within %g s", self._head_seconds)
            self.force_close()


class _HeadDeadlineServer(web.Server):
    """aiohttp's low-level server, making ``HeadDeadlineHandler`` connections."""

    def __init__(self, handler: Any, *, head_seconds: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._head_seconds = head_seconds

    def __call__(self) -> web.RequestHandler:
        return HeadDeadlineHandler(self, loop=self._loop, head_seconds=self._head_seconds, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """``web.AppRunner`` whose connections have a deadline on request heads."""

    def __init__(self, app: web.Application, *, head_seconds: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_seconds = head_seconds

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _HeadDeadlineServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            head_seconds=self._head_seconds,
            **plain._kwargs,
        )
