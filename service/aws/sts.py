"""STS adapter: temporary credentials for the upload role, narrowed by a session policy.

Layer: aws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.aws.errors import error_code, unavailable_on_transient
from service.core.errors import FieldError, ValidationFailed
from service.core.models import TemporaryCredentials

if TYPE_CHECKING:
    from types_aiobotocore_sts import STSClient


class StsCredentialVendor:
    def __init__(self, sts: STSClient) -> None:
        self._sts = sts

    async def assume(
        self, role_arn: str, session_name: str, policy: str, duration_seconds: int
    ) -> TemporaryCredentials:
        try:
            with unavailable_on_transient("STS"):
                response = await self._sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=session_name,
                    Policy=policy,
                    DurationSeconds=duration_seconds,
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
