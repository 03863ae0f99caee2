"""The open-loop arrival process: when each request is due, decided before the run and independent of how
fast the server answers (so a slow server cannot slow the offered load and hide its latency).

Layer: tools (leaf, pure). A profile is a list of steps (rate, seconds); a constant rate is one step, a
stepped ramp several. Arrivals are evenly spaced at each step's rate (``constant``) or exponentially
spaced (``poisson``, seeded); the phase carries across step boundaries, so a ramp has no burst at a step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class Step:
    rate: float  # arrivals per second; 0 is a pause
    seconds: float


def ramp(start: float, stop: float, steps: int, seconds: float) -> list[Step]:
    """``steps`` equal steps over ``seconds``, rates evenly spaced from ``start`` to ``stop`` (both included);
    one step is a constant rate of ``start``."""
    if steps < 1 or seconds <= 0 or start < 0 or stop < 0:
        raise ValueError("a ramp needs at least one step, a positive duration and non-negative rates")
    if steps == 1:
        return [Step(start, seconds)]
    return [Step(start + (stop - start) * i / (steps - 1), seconds / steps) for i in range(steps)]


def arrivals(profile: list[Step], arrival: Arrival = "constant", seed: int | None = None) -> Iterator[float]:
    """Offsets in seconds from the start of the run at which requests are due, in order, until the end of
    the last step. Bounded by the profile's total duration: it never runs forever."""
    rng = random.Random(seed)  # noqa: S311 - a load pattern, not a secret
    step_start = 0.0
    last: float | None = None  # the previous arrival; the first of a constant run goes at once
    for step in profile:
        step_end = step_start + step.seconds
        if step.rate > 0:
            if arrival == "poisson":
                due = max(last or 0.0, step_start) + rng.expovariate(step.rate)
                while due < step_end:
                    yield due
                    last = due
                    due += rng.expovariate(step.rate)
            else:
                # The phase carries over: the first arrival of a step is one gap (at its rate) after the
                # previous one, so a ramp has no burst and no hole at a step boundary. Offsets are computed
                # from an anchor, not accumulated, so they do not drift.
                anchor = step_start if last is None else max(step_start, last + 1.0 / step.rate)
                k = 0
                while (due := anchor + k / step.rate) < step_end - 1e-9:
                    yield due
                    last = due
                    k += 1
        step_start = step_end


def total_seconds(profile: list[Step]) -> float:
    return sum(step.seconds for step in profile)


def expected_count(profile: list[Step]) -> float:
    return sum(step.rate * step.seconds for step in profile)
