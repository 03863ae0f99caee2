"""IAM adapter: revoking a user's temporary credentials through the upload role's policy.

Layer: aws. STS cannot revoke one session; the role can deny it. The revocations live in their own inline
policy of the upload role (``REVOCATIONS_POLICY_NAME``, see ``service.aws.policies``), read, changed and
written back. IAM has no conditional write, so after writing, the policy is read again until it holds this
revocation (another worker writing at the same moment may have overwritten it; each writer re-applies its
own). IAM is eventually consistent: a change takes effect within seconds, everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from botocore.exceptions import ClientError

from service.aws import items
from service.aws.errors import error_code, unavailable_on_transient
from service.aws.policies import REVOCATIONS_POLICY_NAME, encode, revoked_before, revoked_user, with_revocation
from service.core.errors import DependencyUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_iam import IAMClient

log = logging.getLogger(__name__)

#: Read-change-write rounds before giving up on a revocation another writer keeps overwriting.
_ATTEMPTS = 5


class IamSessionRevoker:
    def __init__(
        self,
        iam: IAMClient,
        role_arn: str,
        *,
        horizon_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._iam = iam
        self._role = role_arn.rsplit("/", 1)[-1]
        self._horizon = horizon_seconds
        self._clock = clock
        self._turn = asyncio.Lock()

    async def revoke(self, username: str, before: float) -> None:
        """Deny ``username``'s sessions issued before ``before`` (epoch seconds)."""
        async with self._turn:  # one writer per worker; other workers are handled by re-reading
            for attempt in range(_ATTEMPTS):
                current = await self._read()
                wanted = with_revocation(current, username, before, now=self._clock(), horizon_seconds=self._horizon)
                await self._write(wanted)
                if self._holds(await self._read(), username, before):
                    return
                await items.BATCH_RETRY.sleep(attempt)
        raise DependencyUnavailable("IAM did not keep the revocation of a user's credentials; retry shortly.")

    @staticmethod
    def _holds(document: dict[str, Any] | None, username: str, before: float) -> bool:
        """Does the policy deny ``username``'s sessions issued before ``before`` (by name, or role-wide)?"""
        return any(
            revoked_before(s) >= math.ceil(before) and revoked_user(s) in (None, username)
            for s in (document or {}).get("Statement", [])
        )

    async def _read(self) -> dict[str, Any] | None:
        try:
            with unavailable_on_transient("IAM"):
                response = await self._iam.get_role_policy(RoleName=self._role, PolicyName=REVOCATIONS_POLICY_NAME)
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        document: Any = response["PolicyDocument"]
        if isinstance(document, str):  # IAM's API returns it URL-encoded; botocore may leave it so
            document = orjson.loads(unquote(document))
        return dict(document)

    async def _write(self, document: dict[str, Any]) -> None:
        with unavailable_on_transient("IAM"):
            await self._iam.put_role_policy(
                RoleName=self._role, PolicyName=REVOCATIONS_POLICY_NAME, PolicyDocument=encode(document)
            )
        log.info("upload role revocations now hold %d statement(s)", len(document["Statement"]))
