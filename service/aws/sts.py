"""STS adapter: temporary credentials for the upload role, narrowed by a session policy and tagged with
the user they are for (so a revocation can name the user's sessions).

Layer: aws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.aws.errors import error_code, unavailable_on_transient
from service.aws.policies import SESSION_POLICY_MAX_CHARS, SESSION_USER_TAG, encode, session_policy
from service.core.errors import FieldError, ValidationFailed
from service.core.models import TemporaryCredentials

if TYPE_CHECKING:
    from types_aiobotocore_sts import STSClient


class StsCredentialVendor:
    def __init__(self, sts: STSClient) -> None:
        self._sts = sts

    async def assume(
        self,
        role_arn: str,
        username: str,
        writable: Sequence[str],
        readable: Sequence[str],
        duration_seconds: int,
    ) -> TemporaryCredentials:
        """Credentials that may write ``writable`` namespaces' blobs and read ``readable`` ones' (422 when
        that many namespaces do not fit in one session policy)."""
        policy = encode(session_policy(writable, readable))
        if len(policy) > SESSION_POLICY_MAX_CHARS:
            message = (
                f"credentials for {len(writable) + len(readable)} namespaces do not fit in one session policy "
                f"({len(policy)} of {SESSION_POLICY_MAX_CHARS} characters); list the namespaces you need"
            )
            raise ValidationFailed(f"The {message}.", (FieldError("$.namespaces", message),))
        try:
            with unavailable_on_transient("STS"):
                response = await self._sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=f"filesync-{username}",
                    Policy=policy,
                    DurationSeconds=duration_seconds,
                    Tags=[{"Key": SESSION_USER_TAG, "Value": username}],
                )
        except ClientError as exc:
            if error_code(exc) == "PackedPolicyTooLarge":
                message = "the session policy is too large once packed by AWS; list fewer namespaces"
                raise ValidationFailed(f"The {message}.", (FieldError("$.namespaces", message),)) from None
            raise
        credentials = response["Credentials"]
        return TemporaryCredentials(
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            expiration=credentials["Expiration"].timestamp(),
        )
