"""The drain: what a worker does between SIGTERM (the instance leaving the load balancer) and closing its port.

The production runner (``make_runner``) on a real socket; ``runner.cleanup()`` is what gunicorn's worker and
``python -m service`` call on SIGTERM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
from aiohttp import web

from service.app import make_runner
from tests.api.files_helpers import home
from tests.api.helpers import PROBLEM, user
from tools.bench.harness import free_port


async def _in_flight(session: aiohttp.ClientSession, count: int, deadline: float) -> None:
    """Until ``count`` requests besides this probe are in flight (the metrics' gauge)."""
    while True:
        text = await (await session.get("/metrics")).text()
        if f"filesync_http_requests_in_flight {count + 1}.0" in text:
            return
        assert time.monotonic() < deadline, "the requests never got in flight"
        await asyncio.sleep(0.05)


async def test_a_draining_worker_answers_long_polls_with_their_cursor_and_listens_until_requests_finish(
    provisioned, app_factory
):
    app = app_factory(replace(provisioned, drain_seconds=60.0))
    runner = make_runner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    upload_may_finish = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"first half, "
        await upload_may_finish.wait()
        yield b"second half"

    async with aiohttp.ClientSession(base) as session, aiohttp.ClientSession(base) as fresh:
        headers = await user(session, "alice")
        ns = await home(session, headers)
        cursor = (await (await session.get(f"/v1/ns/{ns}/changes", headers=headers)).json())["cursor"]
        poll = asyncio.create_task(session.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=60", headers=headers))
        upload = asyncio.create_task(session.put(f"/v1/ns/{ns}/files/big.bin", data=slow_body(), headers=headers))
        await _in_flight(fresh, 2, time.monotonic() + 10)

        started = time.monotonic()
        cleanup = asyncio.create_task(runner.cleanup())
        # The waiting long-poll answers now, with nothing new and the cursor it came with.
        answered = await poll
        assert answered.status == 200
        assert await answered.json() == {"changes": [], "cursor": cursor, "more": False, "backoff_seconds": 0.0}
        assert answered.headers["Connection"] == "close"
        assert time.monotonic() - started < 5

        # While the upload is in flight the worker still listens: a request the load balancer sends in the
        # moment after deregistration is served (and closes its connection); a new long-poll answers at
        # once; readiness says draining, liveness that the process is fine.
        again = await fresh.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=60", headers=headers)
        assert (await again.json())["cursor"] == cursor
        assert again.headers["Connection"] == "close"
        ready = await fresh.get("/readyz")
        assert ready.status == 503
        assert ready.content_type == PROBLEM
        assert "draining" in (await ready.json(content_type=PROBLEM))["detail"]
        assert (await fresh.get("/healthz")).status == 200
        assert time.monotonic() - started < 5
        assert not cleanup.done()

        # The upload finishes and commits; then nothing is open and the worker stops listening.
        upload_may_finish.set()
        uploaded = await upload
        assert uploaded.status == 201, await uploaded.text()
        assert uploaded.headers["Connection"] == "close"
        await asyncio.wait_for(cleanup, 10)
    async with aiohttp.ClientSession(base) as late:
        try:
            await late.get("/healthz")
        except aiohttp.ClientConnectionError:
            pass
        else:
            raise AssertionError("the worker still listens after its drain")


async def test_the_drain_lingers_for_late_requests_then_stops_at_its_deadline(provisioned, app_factory):
    """``drain_linger_seconds`` keeps the port open for requests a load balancer still routes in the
    seconds after deregistration began; ``drain_seconds`` bounds the drain when a request never ends."""
    app = app_factory(replace(provisioned, drain_seconds=2.0, drain_linger_seconds=1.0, shutdown_timeout_seconds=1.0))
    runner = make_runner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    never = asyncio.Event()

    async def endless_body() -> AsyncIterator[bytes]:
        yield b"x"
        await never.wait()

    async with aiohttp.ClientSession(base) as session, aiohttp.ClientSession(base) as fresh:
        headers = await user(session, "bob")
        ns = await home(session, headers)
        started = time.monotonic()
        cleanup = asyncio.create_task(runner.cleanup())
        await asyncio.sleep(0)
        late = await fresh.get("/healthz")  # within the linger, with no request in flight
        assert late.status == 200
        assert late.headers["Connection"] == "close"
        stuck = asyncio.create_task(session.put(f"/v1/ns/{ns}/files/stuck.bin", data=endless_body(), headers=headers))
        await asyncio.wait_for(cleanup, 30)
        # The drain's 2 s, then the shutdown timeout for what is still open.
        assert time.monotonic() - started >= 2.0
        stuck.cancel()
