"""One throttle for every password check, and fair turns at the password hashes.

Layer: core. Every request that takes a password (login, password change, address change) goes through
``PasswordChecks.verify``, so they share one count of failures per account and per client address:

- **Counts** live in the store (DynamoDB), so every worker sees the same numbers. A key with ``limit``
  failures within ``window`` seconds of its first failure is refused with 429 (``Retry-After``: until the
  window ends) by *every* password-taking endpoint, before any hash is computed; a right password does not
  pass either, so a guesser learns nothing. A success clears the account's count (not the address's). A
  worker remembers a lockout it has read until it ends, so a flood against a locked account costs no
  database read per request.
- **Turns.** argon2 is deliberately slow and a worker computes only ``FILESYNC_MAX_CONCURRENT_HASHES`` at
  once. Checks for one account take turns (``KeyedTurns``: one at a time, first come first served), and the
  throttle is consulted inside the turn: a flood of guesses against one account holds at most one hashing
  slot at a time and stops after ``limit`` guesses, so other accounts' logins find a free slot (or wait
  behind at most one hash per account ahead of them in the slots' FIFO queue).
- **Spacing.** A check keeps its account's turn after answering for as long as it took (at least 0.1 s;
  a timer, no CPU): one account uses at most half of one slot, and a flood against a locked-out account is
  answered at most ten times a second per worker, however many connections it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from service.core.errors import RateLimited
from service.core.models import LoginFailures

#: Lockouts a worker remembers at most (expired ones are dropped first).
_LOCKOUTS_KEPT = 10_000


class FailureStore(Protocol):
    async def failures(self, keys: list[str]) -> dict[str, LoginFailures]: ...

    async def record_failure(self, key: str, now: float, window: int) -> None: ...

    async def clear_failures(self, key: str) -> None: ...


class Verifier(Protocol):
    async def verify(self, stored_hash: str | None, password: str) -> bool: ...


class PasswordThrottle:
    """Failure counts per account and per client address, shared by every worker through the store."""

    def __init__(
        self,
        store: FailureStore,
        *,
        per_account: int,
        per_address: int,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._limits = {"account": per_account, "address": per_address}
        self._window = window_seconds
        self._clock = clock
        #: key -> (kind, until): lockouts read from the store, refused here without reading it again.
        self._locked: dict[str, tuple[str, float]] = {}

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, str]:
        return {"account": f"account#{username}", "address": f"address#{address}"}

    async def lockout(self, username: str, address: str) -> tuple[str, float] | None:
        """("account" or "address", seconds until it ends) if either is locked out; else None."""
        keys = self._keys(username, address)
        now = self._clock()
        for key in keys.values():
            kind, until = self._locked.get(key, ("", 0.0))
            if until > now:
                return kind, until - now
        counts = await self._store.failures(list(keys.values()))
        for kind, key in keys.items():
            found = counts.get(key)
            if found is None or now - found.first_at >= self._window:
                continue
            if found.count >= self._limits[kind]:
                until = found.first_at + self._window
                self._remember(key, kind, until, now)
                return kind, until - now
        return None

    async def failed(self, username: str, address: str) -> None:
        now = self._clock()
        for key in self._keys(username, address).values():
            await self._store.record_failure(key, now, self._window)

    async def succeeded(self, username: str) -> None:
        await self._store.clear_failures(f"account#{username}")

    def _remember(self, key: str, kind: str, until: float, now: float) -> None:
        if len(self._locked) >= _LOCKOUTS_KEPT:
            self._locked = {k: v for k, v in self._locked.items() if v[1] > now}
            if len(self._locked) >= _LOCKOUTS_KEPT:
                return  # still full of live lockouts: the store keeps refusing, at a read each
        self._locked[key] = (kind, until)

    @staticmethod
    def limited(kind: str, seconds: float) -> RateLimited:
        retry_after = max(1, math.ceil(seconds))
        return RateLimited(
            f"Too many wrong passwords for this {kind}; try again in {retry_after} s.", retry_after=retry_after
        )


class Turn:
    """A held turn; set ``hold`` to keep it that many seconds after the holder is done."""

    __slots__ = ("hold",)

    def __init__(self) -> None:
        self.hold = 0.0


class KeyedTurns:
    """At most one holder per key at a time; the others wait in arrival order. A holder may keep its turn a
    while after it is done (``Turn.hold``: a timer, no task and no CPU), which spaces out what one key gets.
    Idle keys cost nothing."""

    def __init__(self) -> None:
        #: key -> (its lock, how many hold it or wait for it)
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[Turn]:
        lock, users = self._turns.get(key) or (asyncio.Lock(), 0)
        self._turns[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave(key)
            raise
        held = Turn()
        try:
            yield held
        finally:
            if held.hold > 0:
                asyncio.get_running_loop().call_later(held.hold, self._release, key, lock)
            else:
                self._release(key, lock)

    def _release(self, key: str, lock: asyncio.Lock) -> None:
        lock.release()
        self._leave(key)

    def _leave(self, key: str) -> None:
        lock, users = self._turns[key]
        if users == 1:
            del self._turns[key]
        else:
            self._turns[key] = (lock, users - 1)

    def waiting(self, key: str) -> int:
        """How many hold or wait for ``key``'s turn."""
        return self._turns.get(key, (None, 0))[1]


#: The least time a check keeps its account's turn (so a locked account answers at most ten a second).
MIN_HOLD_SECONDS = 0.1


class PasswordChecks:
    """The one way a password is checked: in the account's turn, throttled, counted, spaced.

    A check keeps its account's turn, after answering, for as long as it took (at least ``min_hold``): one
    account's checks then use at most half of one hashing slot, and refusals while it is locked out come at
    most ``1 / min_hold`` a second, however many connections send them. A refusal because the client's
    *address* is locked out holds that address's turn the same way (an address rotating usernames is spaced
    too)."""

    def __init__(
        self,
        throttle: PasswordThrottle,
        hasher: Verifier,
        *,
        min_hold: float = MIN_HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._throttle = throttle
        self._hasher = hasher
        self._min_hold = min_hold
        self._clock = clock
        self.turns = KeyedTurns()

    async def verify(
        self, username: str, address: str, stored_hash: Callable[[], Awaitable[str | None]], password: str
    ) -> bool:
        """Whether ``password`` matches the hash ``stored_hash()`` loads (None: no such account, or one that
        may not log in; the same work is done and the answer is False). ``RateLimited`` while the account or
        the address is locked out, whatever the password; the hash is loaded only once that passed."""
        async with self.turns.turn(f"account#{username}") as turn:
            started = self._clock()
            lockout = await self._throttle.lockout(username, address)
            if lockout is not None:
                turn.hold = self._min_hold
                if lockout[0] == "address":
                    async with self.turns.turn(f"address#{address}") as by_address:
                        by_address.hold = self._min_hold
                raise self._throttle.limited(*lockout)
            valid = await self._hasher.verify(await stored_hash(), password)
            if valid:
                await self._throttle.succeeded(username)
            else:
                await self._throttle.failed(username, address)
            turn.hold = max(self._min_hold, self._clock() - started)
            return valid
