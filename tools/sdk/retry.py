"""The SDK's one retry mechanism: exponential backoff with jitter, honouring a server's ``Retry-After``.

Layer: tools (leaf; standard library only). The service client (``tools.sdk.client``), the storage
transfers (``tools.sdk.transfer``) and the sync CLI's ``--watch`` loop all wait with ``backoff``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Longest wait a server's ``Retry-After`` may ask for.
RETRY_AFTER_CAP = 60.0


#: Doubling stops here, long after any cap is reached: ``2.0**attempt`` stays a finite float.
_MAX_EXPONENT = 64


def backoff(attempt: int, retry_after: float | None = None, cap: float = 10.0, base: float = 0.2) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0): what the server asked for,
    else ``min(cap, base * 2**attempt)`` (0.2 s doubling) scaled by a random factor in [0.5, 1.5) so that
    clients that failed together do not retry together. The service's ``service.retry.backoff`` is the
    same formula (a test holds them equal); the client keeps its own because it may import only the
    protocol's leaf modules, and a retry schedule is each side's own policy, not part of the protocol."""
    if retry_after is not None:
        return min(RETRY_AFTER_CAP, max(0.0, retry_after))
    step = min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))
    return step * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy


async def retrying(call: Callable[[], Awaitable[T]], *, attempts: int, retry: Callable[[Exception], bool]) -> T:
    """``await call()``, again after a ``backoff`` while it raises an exception ``retry`` accepts, at most
    ``attempts`` times in all; the last failure is raised as itself. An exception's ``retry_after``
    attribute (seconds, or None) overrides the computed wait."""
    for attempt in range(attempts - 1):
        try:
            return await call()
        except Exception as exc:
            if not retry(exc):
                raise
            await asyncio.sleep(backoff(attempt, getattr(exc, "retry_after", None)))
    return await call()
