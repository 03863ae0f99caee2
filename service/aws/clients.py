"""Long-lived aiobotocore clients for S3, DynamoDB, STS, SES, SQS and IAM, opened once per app.

Layer: aws. Imports settings and metrics (leaves) only. ``open_clients`` is an async context manager:
the app's ``cleanup_ctx`` enters it at start-up and leaves it at shutdown, so connections are pooled
for the app's lifetime and never opened per request. Every client is instrumented through botocore's
event hooks: each HTTP attempt is counted (that is what AWS bills), each call's latency and error
code recorded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig

from service.content import reuse_declared_sha256
from service.metrics import Metrics
from service.settings import AwsSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_iam import IAMClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_ses import SESClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sts import STSClient

_STARTED = "filesync_started"


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The clients one app uses, all from one session."""

    s3: S3Client
    dynamodb: DynamoDBClient
    sts: STSClient
    ses: SESClient
    #: The mail feedback queue's (SES bounces and complaints).
    sqs: SQSClient
    iam: IAMClient


def make_session(aws: AwsSettings) -> aioboto3.Session:
    """One session per process: credentials from settings if given, else botocore's default chain."""
    return aioboto3.Session(
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        aws_session_token=aws.session_token,
        profile_name=aws.profile,
        region_name=aws.region,
    )


def client_config(aws: AwsSettings, service: str) -> AioConfig:
    """Timeouts, pool size and retries; S3 uses path-style addressing against custom endpoints."""
    style = aws.s3_addressing_style
    if style == "auto":
        style = "path" if aws.endpoint_for(service) else "virtual"
    return AioConfig(
        max_pool_connections=aws.max_pool_connections,
        connect_timeout=aws.connect_timeout,
        read_timeout=aws.read_timeout,
        retries={"max_attempts": aws.max_attempts, "mode": "standard"},
        signature_version="s3v4" if service == "s3" else None,
        # The service computes and checks SHA-256 itself (each byte hashed once): botocore must not add
        # CRC32 to uploads or re-hash downloads on its own.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": style} if service == "s3" else None,
    )


@asynccontextmanager
async def open_clients(
    aws: AwsSettings, metrics: Metrics, session: aioboto3.Session | None = None
) -> AsyncIterator[AwsClients]:
    """Open the service's clients; close them (and their connection pools) on exit."""
    session = session or make_session(aws)
    async with AsyncExitStack() as stack:

        async def client(name: str) -> Any:
            opened = await stack.enter_async_context(
                session.client(
                    name,  # type: ignore[call-overload]
                    endpoint_url=aws.endpoint_for(name),
                    config=client_config(aws, name),
                )
            )
            instrument(opened, metrics)
            if name == "s3":
                opened.meta.events.register("before-sign.s3", reuse_declared_sha256)
            return opened

        yield AwsClients(
            s3=await client("s3"),
            dynamodb=await client("dynamodb"),
            sts=await client("sts"),
            ses=await client("ses"),
            sqs=await client("sqs"),
            iam=await client("iam"),
        )


@asynccontextmanager
async def open_iam(aws: AwsSettings, session: aioboto3.Session | None = None) -> AsyncIterator[IAMClient]:
    """An IAM client of its own, for provisioning the embedded default's upload role."""
    session = session or make_session(aws)
    async with session.client("iam", endpoint_url=aws.endpoint_for("iam"), config=client_config(aws, "iam")) as iam:
        yield iam


def instrument(client: Any, metrics: Metrics) -> None:
    """Register metric hooks on one client's event system."""
    service = client.meta.service_model.service_id.hyphenize()

    def before_call(model: Any, context: dict[str, Any], **_: Any) -> None:
        context[_STARTED] = time.perf_counter()

    def after_call(model: Any, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        _observe(model.name, context)
        if http_response.status_code >= 300:
            code = str(parsed.get("Error", {}).get("Code", http_response.status_code))
            metrics.aws_errors.labels(service, model.name, code).inc()

    def after_call_error(exception: BaseException, context: dict[str, Any], **kwargs: Any) -> None:
        operation = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        _observe(operation, context)
        metrics.aws_errors.labels(service, operation, type(exception).__name__).inc()

    def response_received(event_name: str, **_: Any) -> None:
        metrics.aws_requests.labels(service, event_name.rsplit(".", 1)[-1]).inc()

    def _observe(operation: str, context: dict[str, Any]) -> None:
        started = context.get(_STARTED)
        if started is not None:
            metrics.aws_latency.labels(service, operation).observe(time.perf_counter() - started)

    events = client.meta.events
    events.register(f"before-call.{service}", before_call)
    events.register(f"after-call.{service}", after_call)
    events.register(f"after-call-error.{service}", after_call_error)
    events.register(f"response-received.{service}", response_received)
