"""ReadinessService: probes run concurrently under a timeout; results are cached and shared."""

from __future__ import annotations

import asyncio

from service.core.health import ReadinessService


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_all_ok_is_ready():
    calls = []

    async def ok() -> None:
        calls.append(1)

    service = ReadinessService({"a": ok, "b": ok}, cache_seconds=1, timeout_seconds=1)
    report = await service.check()
    assert report.ready
    assert report.checks == {"a": "ok", "b": "ok"}
    assert len(calls) == 2


async def test_failure_and_timeout_are_reported_per_probe():
    async def broken() -> None:
        raise ConnectionError("refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def ok() -> None:
        return None

    service = ReadinessService({"s3": broken, "db": hangs, "ok": ok}, cache_seconds=1, timeout_seconds=0.05)
    report = await service.check()
    assert not report.ready
    assert report.checks == {"s3": "unavailable (ConnectionError)", "db": "timed out after 0.05s", "ok": "ok"}


async def test_result_is_cached_then_refreshed():
    clock = Clock()
    calls = 0

    async def probe() -> None:
        nonlocal calls
        calls += 1

    service = ReadinessService({"p": probe}, cache_seconds=2, timeout_seconds=1, clock=clock)
    await service.check()
    clock.now += 1.9
    await service.check()
    assert calls == 1
    clock.now += 0.2
    await service.check()
    assert calls == 2


async def test_concurrent_callers_share_one_check():
    calls = 0

    async def probe() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)

    service = ReadinessService({"p": probe}, cache_seconds=5, timeout_seconds=1)
    reports = await asyncio.gather(*(service.check() for _ in range(20)))
    assert calls == 1
    assert all(r.ready for r in reports)
