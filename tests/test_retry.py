"""The service's one backoff (``service.retry``) and the SDK's (``tools.sdk.retry``): one formula."""

from __future__ import annotations

import asyncio
import random

import pytest

from service.retry import Backoff, backoff
from tools.sdk import retry as sdk_retry


@pytest.mark.parametrize(("base", "cap"), [(0.02, 1.0), (0.2, 10.0), (1.0, 40.0)])
def test_waits_grow_from_base_to_cap_within_half_a_step_either_side(base, cap):
    for attempt in range(12):
        step = min(cap, base * 2**attempt)
        waits = [backoff(attempt, base=base, cap=cap) for _ in range(50)]
        assert all(0.5 * step <= wait < 1.5 * step for wait in waits)
        assert len(set(waits)) > 1  # jittered
    assert Backoff(base, cap).delay(10_000) < 1.5 * cap  # no overflow, capped


def test_the_service_and_the_sdk_compute_the_same_waits():
    for attempt in (0, 1, 3, 7, 20, 500):
        random.seed(attempt)
        ours = backoff(attempt, base=0.2, cap=10.0)
        random.seed(attempt)
        theirs = sdk_retry.backoff(attempt)
        assert ours == theirs
        random.seed(attempt)
        ours = backoff(attempt, base=0.5, cap=60.0)
        random.seed(attempt)
        assert ours == sdk_retry.backoff(attempt, cap=60.0, base=0.5)


async def test_sleep_waits_the_delay():
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    await Backoff(base=0.01, cap=0.01).sleep(5)
    assert loop_time() - started >= 0.005
