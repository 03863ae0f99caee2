"""Failed-login throttling, per account and per client address, shared by all workers.

Layer: core. Counts live in the store (DynamoDB), so every worker sees the same numbers. A key that has
``limit`` failures within ``window`` seconds of its first failure is refused with 429 until the window
ends. A successful login clears the account's count (not the address's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from service.core.errors import RateLimited
from service.core.models import LoginFailures


class FailureStore(Protocol):
    async def failures(self, keys: list[str]) -> dict[str, LoginFailures]: ...

    async def record_failure(self, key: str, now: float, window: int) -> None: ...

    async def clear_failures(self, key: str) -> None: ...


class LoginThrottle:
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

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, str]:
        return {"account": f"account#{username}", "address": f"address#{address}"}

    async def check(self, username: str, address: str) -> None:
        """Raise ``RateLimited`` if the account or the address has too many recent failures."""
        keys = self._keys(username, address)
        counts = await self._store.failures(list(keys.values()))
        now = self._clock()
        for kind, key in keys.items():
            found = counts.get(key)
            if found is None or now - found.first_at >= self._window:
                continue
            if found.count >= self._limits[kind]:
                retry_after = max(1, math.ceil(found.first_at + self._window - now))
                raise RateLimited(
                    f"Too many failed logins for this {kind}; try again in {retry_after} s.",
                    retry_after=retry_after,
                )

    async def failed(self, username: str, address: str) -> None:
        now = self._clock()
        for key in self._keys(username, address).values():
            await self._store.record_failure(key, now, self._window)

    async def succeeded(self, username: str) -> None:
        await self._store.clear_failures(f"account#{username}")
