"""Readiness: are the service's dependencies reachable? Checked concurrently, cached briefly.

Layer: core. Knows nothing of HTTP or AWS: it runs named probes (async callables that raise on failure)
under one timeout, and reuses a result for ``cache_seconds`` so that load balancer health checks from
many targets cost a bounded number of dependency calls. Concurrent callers share one check in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Each probe's outcome: ``"ok"`` or a short reason."""

    checks: Mapping[str, str]

    @property
    def ready(self) -> bool:
        return all(outcome == "ok" for outcome in self.checks.values())


class ReadinessService:
    """Runs the probes, at most once per ``cache_seconds``."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        cache_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = dict(probes)
        self._cache_seconds = cache_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._last: tuple[float, ReadinessReport] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> ReadinessReport:
        async with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self._cache_seconds:
                return self._last[1]
            names = list(self._probes)
            outcomes = await asyncio.gather(*(self._run(name) for name in names))
            report = ReadinessReport(dict(zip(names, outcomes, strict=True)))
            self._last = (self._clock(), report)
            return report

    async def _run(self, name: str) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await self._probes[name]()
        except TimeoutError:
            log.warning("readiness probe %s timed out after %.1fs", name, self._timeout)
            return f"timed out after {self._timeout:g}s"
        except Exception as exc:
            log.warning("readiness probe %s failed: %s", name, exc)
            return f"unavailable ({type(exc).__name__})"
        return "ok"
