"""The service's one backoff: exponential, capped, with jitter, for every retry loop in ``aws/`` and ``core/``.

Layer: leaf (standard library only). The wait before try ``attempt + 1`` (``attempt`` counts from 0) is
``min(cap, base * 2**attempt)`` scaled by a random factor in [0.5, 1.5): it grows until the cap, never
falls below half its step (a throttled caller always pauses), and callers that failed together do not retry
together. Each loop names its schedule once (``Backoff(base, cap)``) next to its attempt count.

The client has the same formula in ``tools.sdk.retry`` (where it also honours a server's ``Retry-After``):
the client may import only the protocol's leaf modules, and a retry schedule is not part of the protocol,
each side tuning its own; ``tests/test_retry.py`` checks that the two compute the same waits.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

#: Doubling stops here, long after any cap is reached: ``2.0**attempt`` stays a finite float.
_MAX_EXPONENT = 64


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before try ``attempt + 1``: ``min(cap, base * 2**attempt) * uniform(0.5, 1.5)``."""
    step = min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))
    return step * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy


@dataclass(frozen=True, slots=True)
class Backoff:
    """One retry loop's schedule: the first step ``base`` seconds, doubling up to ``cap``."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        return backoff(attempt, base=self.base, cap=self.cap)

    async def sleep(self, attempt: int) -> None:
        await asyncio.sleep(self.delay(attempt))
