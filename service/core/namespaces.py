"""Namespaces and membership: who may read, write or manage which tree of files.

Layer: core. Every user has a home namespace; a shared folder is a namespace of its own with members in
roles (owner > editor > viewer). ``authorize`` is the one check every namespace-scoped operation makes:
a namespace the caller is not a member of answers exactly like one that does not exist (404).

**Removal bites at once.** Membership is read from the table on every request (a consistent read, never
cached by a worker), so a removed member's next request answers 404 on every worker. A read that answers
with namespace content uses ``read_as_member``: it reads first and checks the membership *after*, so whatever
it returns was committed before a moment the caller was still a member (invariant 10), however long the read
or a long-poll took. A read whose last request fetches immutable records located by an item it read before
(a file's old versions) may fetch the membership in that same request (``read_with_membership``): that
request begins after the item was read, so the order holds and the check costs no request of its own.
Parts of the service that hold something per member (follows, waiting long-polls) register a
``RemovalListener``; ``remove_member`` calls each once the membership is gone.

A member who loses access (removed, or demoted from editor to viewer) is reported to ``on_access_lost``
before the change is stored, so credentials minted from the old membership are cut off (a failure there
refuses the change).
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from service.core.errors import (
    Conflict,
    DependencyUnavailable,
    FieldError,
    FileSyncError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from service.core.models import Membership, Namespace, Principal, Role, User, role_allows
from service.core.tokens import random_id

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Called with (namespace id, username) after a member was removed (or left).
RemovalListener = Callable[[str, str], Awaitable[None]]

NAME_MAX = 255
#: Namespace ids: 80 random bits as 16 base32 characters (short: they appear in every S3 key and policy).
NAMESPACE_ID_LENGTH = 16


def new_namespace_id() -> str:
    return random_id(10)


def check_namespace_id(namespace_id: str) -> str:
    """A namespace id from a URL; anything malformed is simply not found."""
    if len(namespace_id) != NAMESPACE_ID_LENGTH or not namespace_id.isalnum() or not namespace_id.islower():
        raise NotFound(f"No namespace {namespace_id[:40]!r}.")
    return namespace_id


class NamespaceStore(Protocol):
    async def create_namespace(self, namespace: Namespace, owner: Membership) -> None: ...

    async def get_namespace(self, namespace_id: str) -> Namespace | None: ...

    async def get_membership(self, namespace_id: str, username: str) -> Membership | None: ...

    async def memberships_of(self, username: str) -> list[Membership]: ...

    async def members_of(self, namespace_id: str) -> list[Membership]: ...

    async def put_membership(self, membership: Membership) -> None: ...

    async def delete_membership(self, namespace_id: str, username: str) -> None: ...


class UserLookup(Protocol):
    async def get_user(self, username: str) -> User | None: ...


@dataclass(frozen=True, slots=True)
class NamespaceView:
    namespace: Namespace
    role: Role
    members: list[Membership]


@dataclass(frozen=True, slots=True)
class MemberLookup:
    """The caller's membership as a read found it (None: not a member)."""

    membership: Membership | None


def admit(namespace_id: str, need: Role, membership: Membership | None) -> Membership:
    """``membership`` if it allows ``need``: else 404 (not a member) or 403 (role too low)."""
    if membership is None:
        raise NotFound(f"No namespace {namespace_id!r}.")
    if not role_allows(membership.role, need):
        raise PermissionDenied(f"Your role in this namespace is {membership.role}; this needs {need}.")
    return membership


class NamespaceService:
    def __init__(
        self,
        store: NamespaceStore,
        users: UserLookup,
        clock: Callable[[], float] = time.time,
        on_access_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._clock = clock
        self._on_access_lost = on_access_lost
        self._removal_listeners: list[RemovalListener] = []

    def on_member_removed(self, listener: RemovalListener) -> None:
        """Call ``listener(namespace_id, username)`` after each removal (in the order registered)."""
        self._removal_listeners.append(listener)

    async def get(self, namespace_id: str) -> Namespace:
        """A namespace, for the service's own bookkeeping (no caller is authorized by it)."""
        namespace = await self._store.get_namespace(check_namespace_id(namespace_id))
        if namespace is None:
            raise NotFound(f"No namespace {namespace_id!r}.")
        return namespace

    async def authorize(self, principal: Principal, namespace_id: str, need: Role) -> Membership:
        """The caller's membership if it allows ``need``: else 404 (not a member) or 403 (role too low)."""
        membership = await self._store.get_membership(check_namespace_id(namespace_id), principal.username)
        return admit(namespace_id, need, membership)

    async def read_as_member(
        self, principal: Principal, namespace_id: str, need: Role, read: Callable[[], Awaitable[T]]
    ) -> T:
        """``read()``'s answer, checked *after* the read: the caller was a member once everything it holds
        had been committed. A non-member gets the 404 of ``authorize`` whatever the read found or raised
        (a missing file or a bad cursor must not tell a stranger that the namespace exists)."""

        async def unaccompanied() -> tuple[T, MemberLookup | None]:
            return await read(), None

        return await self.read_with_membership(principal, namespace_id, need, unaccompanied)

    async def read_with_membership(
        self,
        principal: Principal,
        namespace_id: str,
        need: Role,
        read: Callable[[], Awaitable[tuple[T, MemberLookup | None]]],
    ) -> T:
        """As ``read_as_member``, for a read that may fetch the caller's membership itself, in the same
        request as its last items, provided everything it returns was committed before that request began
        (immutable records located by an item read earlier): a ``MemberLookup`` saves the check's own read."""
        check_namespace_id(namespace_id)
        try:
            result, lookup = await read()
        except DependencyUnavailable:
            raise  # says nothing about the namespace, and another call would wait out the same outage
        except FileSyncError:
            await self.authorize(principal, namespace_id, need)
            raise
        if lookup is None:
            await self.authorize(principal, namespace_id, need)
        else:
            admit(namespace_id, need, lookup.membership)
        return result

    async def create_shared(self, principal: Principal, name: str) -> Namespace:
        clean = unicodedata.normalize("NFC", name).strip()
        if not clean or len(clean.encode()) > NAME_MAX or any(unicodedata.category(c) == "Cc" for c in clean):
            message = f"name must be 1 to {NAME_MAX} bytes of printable text"
            raise ValidationFailed(f"The {message}.", (FieldError("$.name", message),))
        namespace = Namespace(
            id=new_namespace_id(),
            name=clean,
            kind="shared",
            created_by=principal.username,
            created_at=self._clock(),
        )
        owner = Membership(namespace.id, principal.username, "owner", namespace.name, namespace.kind)
        await self._store.create_namespace(namespace, owner)
        return namespace

    async def list_for(self, principal: Principal) -> list[Membership]:
        return await self._store.memberships_of(principal.username)

    async def view(self, principal: Principal, namespace_id: str) -> NamespaceView:
        membership = await self.authorize(principal, namespace_id, "viewer")
        namespace = await self._store.get_namespace(namespace_id)
        if namespace is None:
            raise NotFound(f"No namespace {namespace_id!r}.")
        members = await self._store.members_of(namespace_id)
        return NamespaceView(namespace, membership.role, members)

    async def set_member(self, principal: Principal, namespace_id: str, username: str, role: Role) -> Membership:
        mine = await self.authorize(principal, namespace_id, "owner")
        if mine.namespace_kind == "home":
            raise Conflict("A home namespace cannot be shared; create a shared namespace instead.")
        user = await self._users.get_user(username)
        if user is None:
            raise NotFound(f"No user {username!r}.")
        members = await self._store.members_of(namespace_id)
        current = next((m for m in members if m.username == user.username), None)
        if current is not None and current.role == "owner" and role != "owner":
            self._keep_an_owner(members, user.username)
        membership = Membership(namespace_id, user.username, role, mine.namespace_name, mine.namespace_kind)
        if current is not None and not role_allows(role, current.role):
            await self._access_lost(user.username)
        await self._store.put_membership(membership)
        return membership

    async def remove_member(self, principal: Principal, namespace_id: str, username: str) -> None:
        leaving_self = username == principal.username
        await self.authorize(principal, namespace_id, "viewer" if leaving_self else "owner")
        members = await self._store.members_of(namespace_id)
        target = next((m for m in members if m.username == username), None)
        if target is None:
            raise NotFound(f"{username!r} is not a member of this namespace.")
        if target.namespace_kind == "home":
            raise Conflict("Nobody can leave or be removed from a home namespace.")
        if target.role == "owner":
            self._keep_an_owner(members, username)
        await self._access_lost(username)
        await self._store.delete_membership(namespace_id, username)
        for listener in self._removal_listeners:
            # The membership is gone, which is what every check reads; a listener only tidies up what the
            # member held (its follows, its waiting long-polls), so one failing does not undo the removal.
            try:
                await listener(namespace_id, username)
            except Exception:
                log.warning(
                    "after removing %s from %s, a removal listener failed", username, namespace_id, exc_info=True
                )

    async def _access_lost(self, username: str) -> None:
        if self._on_access_lost is not None:
            await self._on_access_lost(username)

    @staticmethod
    def _keep_an_owner(members: list[Membership], losing: str) -> None:
        if not any(m.role == "owner" and m.username != losing for m in members):
            raise Conflict("A namespace needs at least one owner; make someone else owner first.")
