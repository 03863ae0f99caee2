"""The one bounded fan-out: ``bounded(items, work, limit)``, for the service and the client.

Layer: leaf (standard library only), used by the service and by the client (the client's import contract
allows it beside the protocol's modules). Semantics (``tests/test_fanout.py``):

- ``work(item)`` runs for every item, at most ``limit`` at once; only ``limit`` tasks exist whatever the
  number of items (they take items from one shared iterator, so ``items`` may be a lazy iterable).
- The results come back as a list in the items' order.
- The first failure cancels the work in flight, starts no more, and is raised as itself (not as an
  ``ExceptionGroup``: a 503 or a ``Conflict`` reaches the caller's handler unwrapped); a cancelled caller
  cancels them all. Nothing is left running after ``bounded`` returns or raises: an ``asyncio.TaskGroup``
  owns the tasks. Work with side effects must therefore tolerate being cut off, as it must a crash.

A semaphore shared across calls (a per-process cap such as ``FileService``'s verifications or the adapters'
read slots), or one that paces a producer (reading the next block only once a slot is free), is a
different thing, and stays a ``Semaphore``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded(items: Iterable[T], work: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """``[await work(item) for item in items]``, at most ``limit`` at once; see the module docstring."""
    numbered = enumerate(items)
    results: dict[int, R] = {}

    async def worker() -> None:
        for index, item in numbered:  # one iterator shared by the workers: each item taken once
            results[index] = await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, limit)):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from failed
    return [results[i] for i in range(len(results))]
