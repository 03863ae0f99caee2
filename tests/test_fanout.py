"""The one bounded fan-out (``service.fanout``, a standard-library leaf the service and the client both use):
its semantics."""

from __future__ import annotations

import asyncio

import pytest

from service import fanout

pytestmark = pytest.mark.parametrize("bounded", [fanout.bounded], ids=["fanout"])


async def test_results_in_the_items_order_at_most_limit_at_once(bounded):
    running = peak = 0

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (item % 3))  # finishing out of order
        running -= 1
        return item * 10

    tasks_before = len(asyncio.all_tasks())
    seen_tasks = 0

    async def counting(item: int) -> int:
        nonlocal seen_tasks
        seen_tasks = max(seen_tasks, len(asyncio.all_tasks()) - tasks_before)
        return await work(item)

    assert await bounded(iter(range(40)), counting, 4) == [i * 10 for i in range(40)]
    assert peak == 4
    assert seen_tasks <= 4  # one task per slot, not per item
    assert await bounded([], counting, 4) == []
    assert await bounded(range(3), work, 0) == [0, 10, 20]  # a limit below one still makes progress


async def test_the_first_failure_cancels_the_rest_and_is_raised_as_itself(bounded):
    started: list[int] = []
    cancelled: list[int] = []
    finished: list[int] = []

    async def work(item: int) -> int:
        started.append(item)
        if item == 1:
            await asyncio.sleep(0)
            raise LookupError("item 1")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        finished.append(item)
        return item

    with pytest.raises(LookupError, match="item 1"):
        await asyncio.wait_for(bounded(range(100), work, 3), 5)
    assert sorted(started) == [0, 1, 2]  # none started after the failure
    assert sorted(cancelled) == [0, 2]
    assert finished == []


async def test_a_cancelled_caller_leaves_nothing_running(bounded):
    cancelled: list[int] = []
    began = asyncio.Event()

    async def work(item: int) -> None:
        began.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    caller = asyncio.create_task(bounded(range(10), work, 2))
    await asyncio.wait_for(began.wait(), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(cancelled) == [0, 1]
