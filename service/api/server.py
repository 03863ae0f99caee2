"""HTTP connections: aiohttp's server with a deadline on every request head, and a drain before it stops.

Layer: api. aiohttp bounds an idle keep-alive connection (``keepalive_timeout``) and the size of a head, but
not the time a head takes to arrive: a client trickling a header line every second holds its connection (and
a file descriptor) as long as it likes, and a few hundred such clients hold a worker's. ``HeadDeadlineHandler``
closes a connection whose request head is not whole ``head_seconds`` after its first byte (after the
connection opened, for its first request), as Go's ``ReadHeaderTimeout`` and nginx's
``client_header_timeout`` do. ``ServiceRunner`` serves the app with it; gunicorn's aiohttp worker and
``python -m service`` both run the app through that runner (``service.app.make_runner``).

``ServiceRunner.cleanup`` (SIGTERM, under gunicorn and ``python -m service`` alike) drains before aiohttp's
own shutdown, which stops listening first: the app's ``Drain`` begins (long-polls are answered at once with
their cursor, every response from then on closes its connection), idle keep-alive connections close, and
the worker keeps listening while any connection is open, for at least ``drain_linger_seconds`` and at most
``drain_seconds``; keep-alive connections waiting for their next request are closed as they become idle.
A load balancer deregistering the instance sends no new requests meanwhile, so requests in flight finish
and nothing arrives at a closed port.

aiohttp exposes no hook for the head deadline, so the handler reads private attributes of ``RequestHandler``
(``_waiter``: set while the connection waits for the next request's head; ``_request_count``: requests it
received, for the drain) and the runner one of
``web.Server`` (``_kwargs``: the handler's settings); aiohttp is pinned and ``tests/api/test_limits.py`` holds
the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: How often the drain looks whether connections are left.
DRAIN_POLL_SECONDS = 0.1


class Drain:
    """A worker's drain, begun once when it starts shutting down. What must end early (long-polls)
    registers a callback; ``middlewares.close_when_draining`` makes every response close its connection.
    The app holds it under ``keys.DRAIN``; ``make_runner`` hands the same one to the runner."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.begun = False

    def on_begin(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def begin(self) -> None:
        if not self.begun:
            self.begun = True
            log.info("draining: long-polls answered now, connections closed after their response")
            for callback in self._callbacks:
                callback()


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

    def close_if_idle(self) -> None:
        """End a keep-alive connection that waits for its next request (one that has served none yet is
        left to the head deadline: its first request may be on the wire). A busy connection is left alone:
        aiohttp's ``close`` would stop reading an upload's body, and the drain's responses close their
        connection anyway."""
        if self._waiting_for_head() and self._request_count > 0:
            self.force_close()

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
    """``web.AppRunner`` whose connections have a deadline on request heads, and which drains before it
    stops listening."""

    def __init__(
        self,
        app: web.Application,
        *,
        head_seconds: float,
        drain: Drain,
        drain_seconds: float,
        drain_linger_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._head_seconds = head_seconds
        self._drain = drain
        self._drain_seconds = drain_seconds
        self._drain_linger_seconds = drain_linger_seconds

    async def cleanup(self) -> None:
        await self.drain()
        await super().cleanup()

    async def drain(self) -> None:
        """Begin the app's drain and wait, still listening, until no connection is left (and the linger
        passed), or the drain's time is up."""
        server = self.server
        if server is None:
            return
        self._drain.begin()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (elapsed := loop.time() - started) < self._drain_seconds:
            for connection in server.connections:
                if isinstance(connection, HeadDeadlineHandler):
                    connection.close_if_idle()
            if elapsed >= self._drain_linger_seconds and not server.connections:
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        log.warning(
            "drain ended after %g s with %d connections open; they get the shutdown timeout",
            self._drain_seconds,
            len(server.connections),
        )

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _HeadDeadlineServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            head_seconds=self._head_seconds,
            **plain._kwargs,
        )
