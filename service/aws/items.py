"""DynamoDB's typed attribute values and the table's key names, for the adapters in ``aws/``.

Layer: aws (leaf within it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service import resources
from service.aws.errors import unavailable_on_transient
from service.retry import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Item = dict[str, Any]
PK, SK = resources.TABLE_PARTITION_KEY, resources.TABLE_SORT_KEY
GPK, GSK = resources.GSI1_PARTITION_KEY, resources.GSI1_SORT_KEY
TTL = resources.TABLE_TTL_ATTRIBUTE
BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25


def s(value: str) -> dict[str, str]:
    """A string attribute value."""
    return {"S": value}


def n(value: float) -> dict[str, str]:
    """A number attribute value."""
    return {"N": str(value)}


def key(pk: str, sk: str) -> Item:
    return {PK: s(pk), SK: s(sk)}


#: The schedule for retrying DynamoDB's unprocessed batch items (and IAM's slow reads): 20 ms doubling to 1 s.
BATCH_RETRY = Backoff(base=0.02, cap=1.0)


async def query_prefix(
    db: DynamoDBClient,
    table: str,
    partition: str,
    prefix: str | None,
    *,
    index: bool = False,
    consistent: bool = False,
) -> list[Item]:
    """Every item of ``partition`` whose sort key starts with ``prefix`` (None: every item of it), in the
    table or in gsi1 with ``index``, following DynamoDB's pages."""
    pk, sk = (GPK, GSK) if index else (PK, SK)
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "ExpressionAttributeNames": {"#pk": pk, "#sk": sk},
        "ExpressionAttributeValues": {":pk": s(partition), ":prefix": s(prefix or "")},
    }
    if prefix is None:
        request["KeyConditionExpression"] = "#pk = :pk"
        request["ExpressionAttributeNames"] = {"#pk": pk}
        request["ExpressionAttributeValues"] = {":pk": s(partition)}
    if index:
        request["IndexName"] = resources.GSI1_NAME
    elif consistent:
        request["ConsistentRead"] = True
    found: list[Item] = []
    while True:
        with unavailable_on_transient("DynamoDB"):
            page = await db.query(**request)
        found.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def batch_get(db: DynamoDBClient, table: str, keys: list[Item], *, consistent: bool = False) -> list[Item]:
    """The items at ``keys`` that exist: BatchGetItem of 100, unprocessed keys retried with backoff."""
    found: list[Item] = []
    for start in range(0, len(keys), BATCH_GET_MAX):
        request: Any = {table: {"Keys": keys[start : start + BATCH_GET_MAX], "ConsistentRead": consistent}}
        for attempt in range(10):
            with unavailable_on_transient("DynamoDB"):
                page = await db.batch_get_item(RequestItems=request)
            found.extend(page.get("Responses", {}).get(table, []))
            request = page.get("UnprocessedKeys") or {}
            if not request:
                break
            await BATCH_RETRY.sleep(attempt)
        else:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "unprocessed keys"}},
                "BatchGetItem",
            )
    return found


async def batch_put(db: DynamoDBClient, table: str, puts: list[Item]) -> None:
    """Put every item of ``puts`` (unconditionally): BatchWriteItem of 25, unprocessed items retried with
    backoff."""
    requests = [{"PutRequest": {"Item": item}} for item in puts]
    for start in range(0, len(requests), BATCH_WRITE_MAX):
        pending: Any = {table: requests[start : start + BATCH_WRITE_MAX]}
        for attempt in range(8):
            with unavailable_on_transient("DynamoDB"):
                response = await db.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
            await BATCH_RETRY.sleep(attempt)
        else:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "unprocessed"}},
                "BatchWriteItem",
            )
