"""The engines: open loop (requests start when they are due, whatever the server does) and closed loop
(N users, each sending its next request when the previous one answered), both bounded in time and count.

Layer: tools. Imports only the tool's pure parts and the SDK's error type. A request is a zero-argument
coroutine function picked by the workload (``Picker``); this module knows nothing of HTTP. Each engine
ends by itself: no request starts after ``duration`` or past ``max_requests``, and requests still running
``drain`` seconds after that are cancelled and counted (``CUT_OFF``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

import aiohttp

from tools.loadtest.recorder import CUT_OFF, DROPPED, Recorder
from tools.sdk.errors import ApiError

Op = Callable[[], Awaitable[None]]
Picker = Callable[[], tuple[str, Op]]
#: Called once a second with (seconds since start, recorder, requests in flight).
#: Returns the service's (resident, anonymous) memory in bytes, or None when it cannot be read.
Memory = Callable[[], tuple[int, int] | None]
Tick = Callable[[float, Recorder, int], None]


@dataclass(frozen=True)
class Limits:
    duration: float  # no request starts after this many seconds
    max_requests: int  # nor past this many
    max_in_flight: int = 1000  # open loop: a request due while this many run is dropped, not delayed
    timeout: float = 30.0  # one request (one scenario run) at most
    drain: float = 10.0  # after ``duration``, how long running requests may finish


def classify(exc: BaseException) -> str:
    """The error type a failure is counted under: the HTTP status and problem title, or the exception."""
    if isinstance(exc, ApiError):
        return "unreachable" if exc.status == 0 else f"HTTP {exc.status} {exc.title}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status} {exc.message}"
    return type(exc).__name__


class _Engine:
    def __init__(self, limits: Limits, recorder: Recorder, tick: Tick | None, memory: Memory | None):
        self.limits = limits
        self.recorder = recorder
        self.tick = tick
        self.memory = memory
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.in_flight: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return self.loop.time() - self.t0

    async def one(self, name: str, op: Op, due: float) -> None:
        try:
            async with asyncio.timeout(self.limits.timeout):
                await op()
        except asyncio.CancelledError:
            self.recorder.failure(name, CUT_OFF, self.now())
            raise
        except Exception as exc:
            self.recorder.failure(name, classify(exc), self.now())
        else:
            self.recorder.success(name, due, self.now())

    async def ticker(self) -> None:
        for second in itertools.count(1):
            await asyncio.sleep(max(0.0, second - self.now()))
            now = self.now()
            self.recorder.sample(now - 0.5, len(self.in_flight), self.memory() if self.memory else None)
            if self.tick:
                self.tick(now, self.recorder, len(self.in_flight))

    async def stop(self, ticker: asyncio.Task[None]) -> None:
        """Stop sampling; the progress line shows the final counts."""
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if self.tick:
            self.tick(self.now(), self.recorder, len(self.in_flight))

    async def finish(self, deadline: float) -> None:
        """Wait for running requests until ``deadline`` (seconds since start), then cancel the rest."""
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=max(0.0, deadline - self.now()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def open_loop(
    pick: Picker,
    due_times: Iterable[float],
    limits: Limits,
    recorder: Recorder,
    *,
    tick: Tick | None = None,
    memory: Memory | None = None,
) -> float:
    """Start a request at each due time (seconds from now) until ``duration`` or ``max_requests``; returns the
    run's wall time. Latency counts from the due time, so a request the client could only start late (a
    stalled loop, a full connection pool) shows its wait."""
    engine = _Engine(limits, recorder, tick, memory)
    ticker = asyncio.create_task(engine.ticker())
    try:
        for due in itertools.islice(due_times, limits.max_requests):
            if due >= limits.duration:
                break
            delay = due - engine.now()
            if delay > 0:
                await asyncio.sleep(delay)
            recorder.due(due)
            name, op = pick()
            if len(engine.in_flight) >= limits.max_in_flight:
                recorder.failure(name, DROPPED, due)
                continue
            recorder.start()
            task = asyncio.create_task(engine.one(name, op, due))
            engine.in_flight.add(task)
            task.add_done_callback(engine.in_flight.discard)
        # Sending stopped (the time or the count bound): running requests get ``drain`` seconds more.
        await engine.finish(min(limits.duration, engine.now()) + limits.drain)
    finally:
        await engine.stop(ticker)
    return engine.now()


async def closed_loop(
    pick: Picker,
    users: int,
    limits: Limits,
    recorder: Recorder,
    *,
    think: float = 0.0,
    tick: Tick | None = None,
    memory: Memory | None = None,
) -> float:
    """``users`` loops, each running one request at a time (then ``think`` seconds idle) until ``duration``
    or ``max_requests``; returns the run's wall time. Latency counts from each request's actual start: a
    closed loop slows down with the server, so its percentiles understate what arrivals at a fixed rate
    would see (use the open loop for latency claims)."""
    engine = _Engine(limits, recorder, tick, memory)
    budget = itertools.count()

    async def user() -> None:
        while engine.now() < limits.duration and next(budget) < limits.max_requests:
            name, op = pick()
            started = engine.now()
            recorder.due(started)
            recorder.start()
            await engine.one(name, op, started)
            if think:
                await asyncio.sleep(think)

    ticker = asyncio.create_task(engine.ticker())
    try:
        for _ in range(users):
            task = asyncio.create_task(user())
            engine.in_flight.add(task)
            task.add_done_callback(engine.in_flight.discard)
        await engine.finish(limits.duration + limits.drain)
    finally:
        await engine.stop(ticker)
    return engine.now()


class StatusLine:
    """The live progress line on stderr, rewritten in place once a second."""

    def __init__(self, duration: float, stream: TextIO | None = None) -> None:
        self.duration = duration
        self.stream: TextIO = stream or sys.stderr

    def __call__(self, now: float, recorder: Recorder, in_flight: int) -> None:
        last = recorder.live(now)
        p99 = last.row(0)["p99_ms"]
        self.stream.write(
            f"\r[{now:5.0f}/{self.duration:.0f} s] due {recorder.offered:,}  ok {recorder.ok:,}  "
            f"errors {recorder.failed:,}  dropped {recorder.dropped:,}  in flight {in_flight:3d}  "
            f"last second: {last.ok}/s, p99 {'-' if p99 is None else f'{p99:.0f}'} ms   "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
