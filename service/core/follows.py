"""Follows: who wants an email when a file or folder changes, and the signed links that stop it.

Layer: core. Only members of a namespace may follow in it (someone else's namespace answers 404, as
everywhere). Following registers the namespace with the notifier at the journal's current head, so a new
follower hears about what changes from now on, not about the history. An unsubscribe link carries a
signed token (HMAC-SHA256 with a key derived from the service's secret): it works without logging in,
names exactly what it stops, and cannot be forged or widened.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from service.core.errors import NotFound
from service.core.models import Follow, Principal
from service.core.namespaces import NamespaceService, check_namespace_id
from service.paths import normalize_path, path_key


def shard_of(key: str, shards: int) -> int:
    """The notifier shard a namespace or a follower belongs to (stable across processes and restarts)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


class FollowStore(Protocol):
    async def put_follow(self, follow: Follow, shard: int, head_seq: int) -> None: ...

    async def delete_follow(self, namespace_id: str, username: str, path_key: str) -> None: ...

    async def follows_of(self, username: str) -> list[Follow]: ...

    async def follows_in(self, namespace_id: str) -> list[Follow]: ...


class HeadReader(Protocol):
    async def head_seq(self, ns: str) -> int: ...


class UnsubscribeSigner:
    """Signs and checks unsubscribe tokens: ``{"u": user, "ns": namespace or "*", "p": path key}``."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"filesync unsubscribe v1", hashlib.sha256).digest()

    def sign(self, username: str, namespace_id: str = "*", key: str = "") -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps({"u": username, "ns": namespace_id, "p": key})).rstrip(b"=")
        mac = base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).rstrip(b"=")
        return f"{payload.decode()}.{mac.decode()}"

    def verify(self, token: str) -> tuple[str, str, str]:
        """(username, namespace id or "*", path key) of a genuine token; NotFound for anything else."""
        payload, _, mac = token.encode().partition(b".")
        expected = base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).rstrip(b"=")
        if not payload or not hmac.compare_digest(mac, expected):
            raise NotFound("This unsubscribe link is not valid.")
        data = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        return str(data["u"]), str(data["ns"]), str(data["p"])


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
        await self._store.put_follow(follow, shard_of(namespace_id, self._shards), head)
        return follow

    async def unfollow(self, principal: Principal, namespace_id: str, path: str | None) -> None:
        await self._namespaces.authorize(principal, namespace_id, "viewer")
        normalized = normalize_path(path, "path") if path else ""
        await self._store.delete_follow(namespace_id, principal.username, path_key(normalized) if normalized else "")

    async def list_for(self, principal: Principal) -> list[Follow]:
        """The caller's follows in namespaces they still belong to."""
        member_of = {m.namespace_id for m in await self._namespaces.list_for(principal)}
        return [f for f in await self._store.follows_of(principal.username) if f.namespace_id in member_of]

    async def unsubscribe(self, token: str) -> int:
        """Carry out a signed unsubscribe link; returns how many follows it ended."""
        username, namespace_id, key = self.signer.verify(token)
        if namespace_id != "*":
            check_namespace_id(namespace_id)
        ended = 0
        for follow in await self._store.follows_of(username):
            if namespace_id in ("*", follow.namespace_id) and (namespace_id == "*" or follow.path_key == key):
                await self._store.delete_follow(follow.namespace_id, username, follow.path_key)
                ended += 1
        return ended
