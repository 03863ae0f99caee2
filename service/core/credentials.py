"""Scoped temporary AWS credentials for clients, and the session policy that scopes them.

Layer: core. The upload role may touch every namespace's objects; each minted credential carries an
inline session policy that narrows it to exactly the caller's namespaces: read and write (including
multipart) on ``ns/<id>/blobs/*`` where the caller is an editor or owner, read only where a viewer,
nothing else (no listing, no bucket root, no other prefix). AWS caps a session policy at 2,048
characters; the policy lists each namespace once, and a request that cannot fit is told to name the
namespaces it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from service.core.errors import DependencyUnavailable, FieldError, NotFound, ValidationFailed
from service.core.models import Membership, Principal, TemporaryCredentials, role_allows
from service.core.namespaces import NamespaceService
from service.resources import blob_prefix

#: AWS's limit on the plain text of a session policy passed to AssumeRole.
SESSION_POLICY_MAX_CHARS = 2048
#: STS's shortest session.
MIN_DURATION_SECONDS = 900
#: Most namespaces one request may name (each costs a membership read).
MAX_REQUESTED_NAMESPACES = 100

WRITE_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
READ_ACTIONS = ("s3:GetObject",)

Access = Literal["read", "write"]


def session_policy(bucket: str, writable: Sequence[str], readable: Sequence[str]) -> dict[str, Any]:
    """The inline policy for one credential: ``writable`` namespaces get write actions, ``readable`` read."""
    statements = []
    for sid, actions, namespaces in (("Write", WRITE_ACTIONS, writable), ("Read", READ_ACTIONS, readable)):
        if namespaces:
            statements.append(
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": list(actions),
                    "Resource": [f"arn:aws:s3:::{bucket}/{blob_prefix(ns)}*" for ns in namespaces],
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}


def encode_policy(policy: dict[str, Any]) -> str:
    return orjson.dumps(policy).decode()


class CredentialVendor(Protocol):
    async def assume(
        self, role_arn: str, session_name: str, policy: str, duration_seconds: int
    ) -> TemporaryCredentials: ...


@dataclass(frozen=True, slots=True)
class Grant:
    namespace_id: str
    prefix: str
    access: Access


@dataclass(frozen=True, slots=True)
class CredentialGrant:
    credentials: TemporaryCredentials
    grants: list[Grant]
    policy: str


class CredentialService:
    def __init__(
        self,
        namespaces: NamespaceService,
        vendor: CredentialVendor,
        *,
        bucket: str,
        role_arn: str | None,
        default_seconds: int,
        max_seconds: int,
        read_concurrency: int = 16,
    ) -> None:
        self._namespaces = namespaces
        self._vendor = vendor
        self._bucket = bucket
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
        policy = encode_policy(session_policy(self._bucket, writable, readable))
        if len(policy) > SESSION_POLICY_MAX_CHARS:
            message = (
                f"credentials for {len(memberships)} namespaces do not fit in one session policy "
                f"({len(policy)} of {SESSION_POLICY_MAX_CHARS} characters); list the namespaces you need"
            )
            raise ValidationFailed(f"The {message}.", (FieldError("$.namespaces", message),))
        credentials = await self._vendor.assume(role_arn, f"filesync-{principal.username}", policy, duration)
        grants = [Grant(ns, blob_prefix(ns), "write") for ns in writable]
        grants += [Grant(ns, blob_prefix(ns), "read") for ns in readable]
        return CredentialGrant(credentials, grants, policy)

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
