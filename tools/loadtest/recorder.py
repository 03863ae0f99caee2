"""What a run measured: a latency histogram per scenario, errors by type, and a per-second timeline.

Layer: tools (leaf, pure: times are passed in, never read here). Latency is measured from the moment a
request was *due* (its scheduled start in open loop), not the moment it was sent: when the client or the
server stalls, the requests that waited show the wait (the coordinated-omission correction). Only
successful requests enter the latency histograms; every failure is counted by type, so a server that fails
fast cannot look fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tools.loadtest.histogram import LatencyHistogram

#: The error type of a request not started because ``max_in_flight`` requests were already running.
DROPPED = "dropped: max in-flight"
#: The error type of a request still running when the run's time bound ended it.
CUT_OFF = "cancelled: run time bound"


@dataclass
class Second:
    """One second of the run (by completion time; ``offered`` by due time)."""

    offered: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    latencies: list[float] = field(default_factory=list)
    in_flight: int = 0
    rss_bytes: int | None = None
    anon_bytes: int | None = None

    def row(self, t: int) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def at(percent: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, math.ceil(percent / 100 * len(ordered)) - 1)] * 1e3, 3)

        return {
            "t": t,
            "offered": self.offered,
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "p50_ms": at(50),
            "p99_ms": at(99),
            "max_ms": round(ordered[-1] * 1e3, 3) if ordered else None,
            "in_flight": self.in_flight,
            "rss_mib": round(self.rss_bytes / 2**20, 1) if self.rss_bytes is not None else None,
            "anon_mib": round(self.anon_bytes / 2**20, 1) if self.anon_bytes is not None else None,
        }


class Recorder:
    def __init__(self) -> None:
        self.histograms: dict[str, LatencyHistogram] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.seconds: dict[int, Second] = {}
        self.offered = 0
        self.started = 0
        self.ok = 0
        self.failed = 0
        self.dropped = 0
        self.last_completion = 0.0

    def _second(self, t: float) -> Second:
        key = max(0, int(t))
        found = self.seconds.get(key)
        if found is None:
            found = self.seconds[key] = Second()
        return found

    def due(self, at: float) -> None:
        self.offered += 1
        self._second(at).offered += 1

    def start(self) -> None:
        self.started += 1

    def success(self, scenario: str, due: float, done: float) -> None:
        latency = max(0.0, done - due)
        self.histograms.setdefault(scenario, LatencyHistogram()).record(latency)
        second = self._second(done)
        second.ok += 1
        second.latencies.append(latency)
        self.ok += 1
        self.last_completion = max(self.last_completion, done)

    def failure(self, scenario: str, kind: str, done: float) -> None:
        self.errors.setdefault(scenario, {}).setdefault(kind, 0)
        self.errors[scenario][kind] += 1
        second = self._second(done)
        if kind == DROPPED:
            second.dropped += 1
            self.dropped += 1
        else:
            second.errors += 1
            self.failed += 1
        self.last_completion = max(self.last_completion, done)

    def sample(self, at: float, in_flight: int, memory: tuple[int, int] | None) -> None:
        """Requests in flight, and the service's (resident, anonymous) memory in bytes if known."""
        second = self._second(at)
        second.in_flight = max(second.in_flight, in_flight)
        if memory is not None:
            second.rss_bytes, second.anon_bytes = memory

    def overall(self) -> LatencyHistogram:
        total = LatencyHistogram()
        for histogram in self.histograms.values():
            total.add(histogram)
        return total

    def errors_by_type(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for kinds in self.errors.values():
            for kind, n in kinds.items():
                totals[kind] = totals.get(kind, 0) + n
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def timeline(self) -> list[dict[str, Any]]:
        if not self.seconds:
            return []
        return [self.seconds.get(t, Second()).row(t) for t in range(max(self.seconds) + 1)]

    def live(self, now: float) -> Second:
        """The last complete second (what the progress line shows)."""
        return self.seconds.get(int(now) - 1, Second())
