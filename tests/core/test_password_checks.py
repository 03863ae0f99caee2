"""PasswordChecks: one account's flood of guesses holds at most one hashing turn and stops at the limit, so
another account's check gets a slot at once. Deterministic: the "hash" waits for permits the test hands out.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter

import pytest

from service.core.errors import RateLimited
from service.core.models import LoginFailures
from service.core.throttle import PasswordChecks, PasswordThrottle

SLOTS = 2  # FILESYNC_MAX_CONCURRENT_HASHES' default


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class MemoryFailures:
    """The throttle's store, in memory (the DynamoDB one is exercised by the API tests)."""

    def __init__(self) -> None:
        self.items: dict[str, LoginFailures] = {}
        self.reads = 0

    async def failures(self, keys: list[str]) -> dict[str, LoginFailures]:
        self.reads += 1
        return {k: self.items[k] for k in keys if k in self.items}

    async def record_failure(self, key: str, now: float, window: int) -> None:
        found = self.items.get(key)
        if found is None or now - found.first_at >= window:
            self.items[key] = LoginFailures(1, now)
        else:
            self.items[key] = LoginFailures(found.count + 1, found.first_at)

    async def clear_failures(self, key: str) -> None:
        self.items.pop(key, None)


class GatedHasher:
    """Two slots, as the real hasher has; each "hash" runs until the test grants it a permit. The stored
    hash is the account's name, and only ``right`` matches."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(SLOTS)
        self.inside: Counter[str] = Counter()
        self.most_inside: Counter[str] = Counter()
        self.hashed: Counter[str] = Counter()
        self.permits: dict[str, asyncio.Queue[None]] = {}

    def permit(self, account: str) -> None:
        self.permits.setdefault(account, asyncio.Queue()).put_nowait(None)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        account = stored_hash or "?"
        async with self.slots:
            self.inside[account] += 1
            self.most_inside[account] = max(self.most_inside[account], self.inside[account])
            await self.permits.setdefault(account, asyncio.Queue()).get()
            self.inside[account] -= 1
            self.hashed[account] += 1
            return password == "right"


async def until(condition, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail(f"never: {what}")


async def test_a_flood_on_one_account_holds_one_turn_and_another_account_is_checked_at_once():
    hasher = GatedHasher()
    store = MemoryFailures()
    clock = Clock()  # stands still: no check holds its turn past its answer (that is the next test's)
    checks = PasswordChecks(
        PasswordThrottle(store, per_account=10, per_address=1000, window_seconds=900, clock=clock),
        hasher,
        min_hold=0.0,
        clock=clock,
    )

    async def stored(account: str) -> str:
        return account

    async def attempt(account: str, password: str, address: str) -> bool | str:
        try:
            return await checks.verify(account, address, lambda: stored(account), password)
        except RateLimited:
            return "429"

    flood = [asyncio.create_task(attempt("mallory", f"guess-{i}", f"10.0.0.{i}")) for i in range(16)]
    await until(lambda: hasher.inside["mallory"] == 1, "a flood guess is hashing")
    legit = asyncio.create_task(attempt("alice", "right", "192.0.2.1"))
    # Alice takes the other slot while 15 of mallory's guesses wait for their account's turn.
    await until(lambda: hasher.inside["alice"] == 1, "alice's check is hashing")
    assert hasher.inside["mallory"] == 1
    assert checks.turns.waiting("account#mallory") == 16
    hasher.permit("alice")
    assert await legit is True
    # The flood, one guess at a time: ten are hashed and fail, the other six are refused before any hash.
    for _ in range(16):
        hasher.permit("mallory")
    results = await asyncio.gather(*flood)
    assert Counter(results) == {False: 10, "429": 6}
    assert hasher.hashed["mallory"] == 10
    assert hasher.most_inside["mallory"] == 1, "one account never held two slots"
    assert checks.turns.waiting("account#mallory") == 0  # idle accounts leave nothing behind


async def test_a_lockout_once_read_is_refused_without_reading_the_store_again():
    hasher = GatedHasher()
    store = MemoryFailures()
    clock = Clock()
    throttle = PasswordThrottle(store, per_account=3, per_address=1000, window_seconds=900, clock=clock)
    checks = PasswordChecks(throttle, hasher, min_hold=0.0, clock=clock)

    async def stored() -> str:
        return "carol"

    for _ in range(3):
        hasher.permit("carol")
        assert await checks.verify("carol", "198.51.100.7", stored, "wrong") is False
    with pytest.raises(RateLimited) as first:
        await checks.verify("carol", "198.51.100.7", stored, "right")
    reads = store.reads
    clock.now += 100
    waits = []
    for _ in range(50):
        with pytest.raises(RateLimited) as later:
            await checks.verify("carol", "198.51.100.8", stored, "right")
        waits.append(later.value.retry_after)
    assert store.reads == reads, "a remembered lockout costs no read"
    assert waits == [first.value.retry_after - 100] * 50
    assert hasher.hashed["carol"] == 3
    clock.now += 800  # the window is over: checks are counted afresh
    hasher.permit("carol")
    assert await checks.verify("carol", "198.51.100.7", stored, "right") is True


async def test_a_check_keeps_its_turn_as_long_as_it_took_and_refusals_are_spaced():
    hasher = GatedHasher()
    clock = Clock()
    throttle = PasswordThrottle(MemoryFailures(), per_account=1, per_address=3, window_seconds=900, clock=clock)
    checks = PasswordChecks(throttle, hasher, min_hold=0.05, clock=clock)

    async def stored() -> str:
        clock.now += 0.2  # the "hash" takes 0.2 s on the checks' clock
        return "dave"

    hasher.permit("dave")
    assert await checks.verify("dave", "198.51.100.9", stored, "wrong") is False
    # Answered, but dave's turn is kept for as long as the check took: the next check of dave waits.
    assert checks.turns.waiting("account#dave") == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RateLimited):  # dave is locked out now (one failure allowed)
        await checks.verify("dave", "198.51.100.9", stored, "right")
    assert loop.time() - started >= 0.15
    # A refusal keeps the turn too (the minimum hold): refusals come spaced, not as fast as they are asked.
    assert checks.turns.waiting("account#dave") == 1
    for name in ("erin", "fred"):  # the address reaches its limit (3) over three accounts
        hasher.permit(name)
        assert await checks.verify(name, "198.51.100.9", functools.partial(_named, name), "wrong") is False
    with pytest.raises(RateLimited):
        await checks.verify("gwen", "198.51.100.9", functools.partial(_named, "gwen"), "wrong")
    assert checks.turns.waiting("address#198.51.100.9") == 1, "a locked address keeps its own turn"
    await until_idle(checks, "account#dave", "address#198.51.100.9")


async def _named(name: str) -> str:
    return name


async def until_idle(checks: PasswordChecks, *keys: str) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while any(checks.turns.waiting(k) for k in keys):
        assert asyncio.get_running_loop().time() < deadline, "a turn was never given back"
        await asyncio.sleep(0.01)
