"""Readiness probes over the AWS clients: one cheap call per dependency.

Layer: aws. Each probe is an async callable that raises when its dependency is unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.aws.clients import AwsClients


def readiness_probes(clients: AwsClients, bucket: str, table: str) -> dict[str, Callable[[], Awaitable[None]]]:
    """S3: ``HeadBucket`` on the blob bucket. DynamoDB: ``DescribeTable`` on the table."""

    async def s3() -> None:
        await clients.s3.head_bucket(Bucket=bucket)

    async def dynamodb() -> None:
        await clients.dynamodb.describe_table(TableName=table)

    return {"s3": s3, "dynamodb": dynamodb}
