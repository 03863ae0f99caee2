"""SQS and DynamoDB adapters for mail feedback: the queue SES's bounces and complaints arrive in, and the
suppressed addresses.

Layer: aws. Imports the leaf domain module ``core.feedback``. Item layout in the one table::

    SUPPRESSED#<address>   MAIL     reason (bounce | complaint), at, detail

One item per address (lower case), read by key before mail goes to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from service.aws import items
from service.aws.errors import unavailable_on_transient
from service.core.feedback import RECEIVE_MAX, QueuedMessage, Reason, Suppression

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

_s, _n, _key = items.s, items.n, items.key


def _suppression_key(address: str) -> items.Item:
    return _key(f"SUPPRESSED#{address}", "MAIL")


class SqsFeedbackQueue:
    """The queue the configuration set's SNS topic delivers to."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueuedMessage]:
        with unavailable_on_transient("SQS"):
            response = await self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(max_messages, RECEIVE_MAX),
                WaitTimeSeconds=wait_seconds,
            )
        return [
            QueuedMessage(m.get("MessageId", ""), m["ReceiptHandle"], m.get("Body", ""))
            for m in response.get("Messages", [])
            if "ReceiptHandle" in m
        ]

    async def delete(self, receipts: Sequence[str]) -> int:
        failed = 0
        for start in range(0, len(receipts), RECEIVE_MAX):
            batch = receipts[start : start + RECEIVE_MAX]
            with unavailable_on_transient("SQS"):
                response = await self._sqs.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": str(i), "ReceiptHandle": receipt} for i, receipt in enumerate(batch)],
                )
            failed += len(response.get("Failed", []))
        return failed


class DynamoSuppressionStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def suppress(self, suppression: Suppression) -> None:
        item = {
            **_suppression_key(suppression.address),
            "address": _s(suppression.address),
            "reason": _s(suppression.reason),
            "at": _n(suppression.at),
            "detail": _s(suppression.detail),
        }
        with unavailable_on_transient("DynamoDB"):
            await self._db.put_item(TableName=self._table, Item=item)

    async def suppression(self, address: str) -> Suppression | None:
        with unavailable_on_transient("DynamoDB"):
            response = await self._db.get_item(TableName=self._table, Key=_suppression_key(address))
        item = response.get("Item")
        if item is None:
            return None
        return Suppression(
            address=item["address"]["S"],
            reason=cast(Reason, item["reason"]["S"]),
            at=float(item["at"]["N"]),
            detail=item.get("detail", {}).get("S", ""),
        )
