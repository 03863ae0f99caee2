"""Follows: who wants an email when a file or folder changes, and the signed links that stop it.

Layer: core. Only members of a namespace may follow in it (someone else's namespace answers 404, as
everywhere), and a member removed from a namespace loses its follows there (``member_removed``). Following
registers the namespace with the notifier at the journal's current head, so a new follower hears about what
changes from now on, not about the history; following what one already follows keeps the follow as it was.

An unsubscribe link carries a signed token (``core.links``): it works without logging in, names exactly what
it stops, and cannot be forged or widened. It is bound to the follows it was issued for: it names the newest
follow creation time it covers (``through``) and ends only follows created no later, so a follow removed and
created again after the email is not ended by that email's link. It expires (``FILESYNC_UNSUBSCRIBE_LINK_SECONDS``,
60 days by default, rounded up to the end of a UTC day: longer than the 30 days for which an unsubscribe
link must keep working after its email was sent).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from service.core.links import LinkSigner
from service.core.models import Follow, Principal
from service.core.namespaces import NamespaceService, check_namespace_id
from service.paths import normalize_path, path_key


def shard_of(key: str, shards: int) -> int:
    """The notifier shard a namespace or a follower belongs to (stable across processes and restarts)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


class FollowStore(Protocol):
    async def put_follow(self, follow: Follow, shard: int, head_seq: int) -> Follow:
        """Store ``follow`` unless the user already follows that path; the follow stored either way."""
        ...

    async def delete_follow(self, namespace_id: str, username: str, path_key: str) -> None: ...

    async def delete_follows(self, namespace_id: str, username: str) -> int: ...

    async def follows_of(self, username: str) -> list[Follow]: ...

    async def follows_in(self, namespace_id: str) -> list[Follow]: ...


class HeadReader(Protocol):
    async def head_seq(self, ns: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """What a genuine unsubscribe token stops: ``username``'s follows in ``namespace_id`` ("*": every
    namespace) at ``path_key`` ("" with "*": all), created at or before ``through``."""

    username: str
    namespace_id: str
    path_key: str
    through: float


class UnsubscribeSigner:
    """Signs and checks unsubscribe tokens: ``{"u": user, "ns": namespace or "*", "p": path key,
    "c": newest follow creation time covered, "exp": expiry}``."""

    def __init__(self, secret: str, lifetime: float) -> None:
        # v2: v1 tokens named no follows and never expired; they no longer verify.
        self._signer = LinkSigner(secret, "filesync unsubscribe v2", "unsubscribe link")
        self.lifetime = lifetime

    def sign(self, username: str, *, through: float, now: float, namespace_id: str = "*", key: str = "") -> str:
        """A token valid for ``lifetime`` seconds, rounded up to the end of a UTC day (so a digest sent
        again after a crash carries the same link)."""
        claims = {"u": username, "ns": namespace_id, "p": key, "c": through}
        return self._signer.sign(claims, math.ceil((now + self.lifetime) / 86400) * 86400)

    def verify(self, token: str, now: float) -> Unsubscribe:
        """What a genuine, unexpired token stops; ``NotFound`` for anything else."""
        claims = self._signer.verify(token, now)
        return Unsubscribe(str(claims["u"]), str(claims["ns"]), str(claims["p"]), float(claims["c"]))


class FollowService:
    def __init__(
        self,
        store: FollowStore,
        namespaces: NamespaceService,
        heads: HeadReader,
        signer: UnsubscribeSigner,
        shards: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._namespaces = namespaces
        self._heads = heads
        self.signer = signer
        self._shards = shards
        self._clock = clock

    async def follow(self, principal: Principal, namespace_id: str, path: str | None) -> Follow:
        """Follow ``path`` (a file, or a folder and everything in it; None: the whole namespace)."""
        await self._namespaces.authorize(principal, namespace_id, "viewer")
        normalized = normalize_path(path, "path") if path else ""
        follow = Follow(
            namespace_id=namespace_id,
            username=principal.username,
            path=normalized,
            path_key=path_key(normalized) if normalized else "",
            created_at=self._clock(),
        )
        head = await self._heads.head_seq(namespace_id)
        return await self._store.put_follow(follow, shard_of(namespace_id, self._shards), head)

    async def unfollow(self, principal: Principal, namespace_id: str, path: str | None) -> None:
        await self._namespaces.authorize(principal, namespace_id, "viewer")
        normalized = normalize_path(path, "path") if path else ""
        await self._store.delete_follow(namespace_id, principal.username, path_key(normalized) if normalized else "")

    async def list_for(self, principal: Principal) -> list[Follow]:
        """The caller's follows in namespaces they still belong to."""
        member_of = {m.namespace_id for m in await self._namespaces.list_for(principal)}
        return [f for f in await self._store.follows_of(principal.username) if f.namespace_id in member_of]

    def check_link(self, token: str) -> Unsubscribe:
        """The follows a genuine, unexpired unsubscribe token would end (``NotFound`` otherwise)."""
        return self.signer.verify(token, self._clock())

    async def unsubscribe(self, token: str) -> int:
        """Carry out a signed unsubscribe link; returns how many follows it ended."""
        link = self.check_link(token)
        if link.namespace_id != "*":
            check_namespace_id(link.namespace_id)
        ended = 0
        for follow in await self._store.follows_of(link.username):
            if follow.created_at > link.through:
                continue  # created after the email: not what this link was issued for
            if link.namespace_id == "*" or (follow.namespace_id, follow.path_key) == (link.namespace_id, link.path_key):
                await self._store.delete_follow(follow.namespace_id, link.username, follow.path_key)
                ended += 1
        return ended

    async def member_removed(self, namespace_id: str, username: str) -> None:
        """A removed member's follows in that namespace end with the membership."""
        await self._store.delete_follows(namespace_id, username)
