"""Token revocation without a database read per request.

Layer: core. Logout, password change and account disable publish the revoked session ids to a shared
feed (in DynamoDB). Every worker keeps a ``RevocationList`` in memory and follows the feed every
``interval`` seconds with one query, so a revoked access token is refused everywhere within about that
interval, and at once on the worker that revoked it. An entry is kept only until every token of that
session has expired anyway (the access token lifetime), so the list stays small.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from service.core.models import Revocation, position_at

log = logging.getLogger(__name__)


class RevocationFeed(Protocol):
    async def publish(self, sids: Iterable[str], expires_at: float) -> None: ...

    async def since(self, position: str) -> list[Revocation]: ...


class RevocationList:
    """The session ids this worker refuses, each until its tokens would have expired anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._revoked: dict[str, float] = {}
        self._clock = clock

    def add(self, sid: str, expires_at: float) -> None:
        self._revoked[sid] = max(expires_at, self._revoked.get(sid, 0.0))

    def is_revoked(self, sid: str) -> bool:
        expires_at = self._revoked.get(sid)
        return expires_at is not None and expires_at > self._clock()

    def prune(self) -> None:
        now = self._clock()
        for sid in [sid for sid, expires_at in self._revoked.items() if expires_at <= now]:
            del self._revoked[sid]

    def __len__(self) -> int:
        return len(self._revoked)


async def follow(
    feed: RevocationFeed,
    revoked: RevocationList,
    *,
    interval: float,
    lookback: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Poll the feed forever. Each poll re-reads a margin of ``interval + 30 s`` before the last one, so an
    entry published by a worker whose clock lags a little is still seen; re-reading is harmless."""
    since = clock() - lookback
    while True:
        started = clock()
        try:
            for revocation in await feed.since(position_at(since - interval - 30.0)):
                revoked.add(revocation.sid, revocation.expires_at)
            revoked.prune()
            since = started
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("reading token revocations failed; retrying", exc_info=True)
        await asyncio.sleep(interval)
