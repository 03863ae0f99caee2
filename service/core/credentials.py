"""Scoped temporary AWS credentials for clients, and their revocation when a user loses access.

Layer: core. The upload role may touch every namespace's objects; each minted credential is narrowed by a
session policy (``service.aws.policies``) to exactly the caller's namespaces: read and write (including
multipart) where the caller is an editor or owner, read only where a viewer, nothing else; and it can
create an object under a blob key only if none is there (verified content never changes). A request that
cannot fit AWS's session-policy limit is told to name the namespaces it needs.

STS sessions cannot be revoked one by one, so each is tagged with its user, and when a user loses access
(removed from a namespace or demoted, disabled, password changed) the upload role is told to deny that
user's sessions issued before then (``SessionRevocation``). Credentials last ``credentials_seconds`` (15
minutes by default: STS's minimum); a revocation takes effect as fast as IAM propagates it, seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from service.core.errors import DependencyUnavailable, FieldError, NotFound, ValidationFailed
from service.core.models import Membership, Principal, TemporaryCredentials, role_allows
from service.core.namespaces import NamespaceService
from service.resources import blob_prefix

log = logging.getLogger(__name__)

#: STS's shortest session.
MIN_DURATION_SECONDS = 900
#: Most namespaces one request may name (each costs a membership read).
MAX_REQUESTED_NAMESPACES = 100
#: A revocation also covers sessions issued this long after it is asked for: credentials being minted at
#: that moment (from a membership read just before the change) must not outlive it.
REVOCATION_MARGIN_SECONDS = 5.0

Access = Literal["read", "write"]


class CredentialVendor(Protocol):
    async def assume(
        self,
        role_arn: str,
        username: str,
        writable: Sequence[str],
        readable: Sequence[str],
        duration_seconds: int,
    ) -> TemporaryCredentials: ...


class SessionRevoker(Protocol):
    async def revoke(self, username: str, before: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Grant:
    namespace_id: str
    prefix: str
    access: Access


@dataclass(frozen=True, slots=True)
class CredentialGrant:
    credentials: TemporaryCredentials
    grants: list[Grant]


class CredentialService:
    def __init__(
        self,
        namespaces: NamespaceService,
        vendor: CredentialVendor,
        *,
        role_arn: str | None,
        default_seconds: int,
        max_seconds: int,
        read_concurrency: int = 16,
    ) -> None:
        self._namespaces = namespaces
        self._vendor = vendor
        self._role_arn = role_arn
        self._default_seconds = default_seconds
        self._max_seconds = max_seconds
        self._reads = asyncio.Semaphore(read_concurrency)

    async def mint(
        self, principal: Principal, namespace_ids: Sequence[str] | None, duration_seconds: int | None
    ) -> CredentialGrant:
        role_arn = self._role_arn
        if role_arn is None:
            raise DependencyUnavailable("This service has no upload role configured (FILESYNC_UPLOAD_ROLE_ARN).")
        duration = self._duration(duration_seconds)
        memberships = await self._memberships(principal, namespace_ids)
        if not memberships:
            raise NotFound("You are a member of no namespace to grant access to.")
        writable = [m.namespace_id for m in memberships if role_allows(m.role, "editor")]
        readable = [m.namespace_id for m in memberships if not role_allows(m.role, "editor")]
        credentials = await self._vendor.assume(role_arn, principal.username, writable, readable, duration)
        grants = [Grant(ns, blob_prefix(ns), "write") for ns in writable]
        grants += [Grant(ns, blob_prefix(ns), "read") for ns in readable]
        return CredentialGrant(credentials, grants)

    def _duration(self, requested: int | None) -> int:
        duration = self._default_seconds if requested is None else requested
        if not MIN_DURATION_SECONDS <= duration <= self._max_seconds:
            message = f"duration_seconds must be between {MIN_DURATION_SECONDS} and {self._max_seconds}"
            raise ValidationFailed(f"The {message}.", (FieldError("$.duration_seconds", message),))
        return duration

    async def _memberships(self, principal: Principal, namespace_ids: Sequence[str] | None) -> list[Membership]:
        if namespace_ids is None:
            return await self._namespaces.list_for(principal)
        unique = list(dict.fromkeys(namespace_ids))
        if not 0 < len(namespace_ids) <= MAX_REQUESTED_NAMESPACES:
            message = f"namespaces must list 1 to {MAX_REQUESTED_NAMESPACES} namespace ids"
            raise ValidationFailed(f"The {message}.", (FieldError("$.namespaces", message),))

        async def one(namespace_id: str) -> Membership:
            async with self._reads:
                return await self._namespaces.authorize(principal, namespace_id, "viewer")

        return list(await asyncio.gather(*(one(ns) for ns in unique)))


class SessionRevocation:
    """Cuts off the credentials a user already holds when the user loses access. Called before the change
    is stored (a failure refuses the change, which can then be retried whole); it denies the user's
    sessions issued up to ``REVOCATION_MARGIN_SECONDS`` later, which also covers credentials being minted
    from the membership as it was a moment before. The user's clients then mint new ones, scoped afresh."""

    def __init__(self, revoker: SessionRevoker | None, clock: Callable[[], float] = time.time) -> None:
        self._revoker = revoker
        self._clock = clock

    async def user_lost_access(self, username: str) -> None:
        if self._revoker is None:  # no upload role: no credentials were ever minted
            return
        await self._revoker.revoke(username, self._clock() + REVOCATION_MARGIN_SECONDS)
        log.info("revoked the temporary credentials of %s", username)
