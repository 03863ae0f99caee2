"""DynamoDB items for each account's storage usage and quota.

Layer: aws. Two attributes of each account's profile item (so reading the account reads its usage)::

    USER#<name>   PROFILE   used: bytes of the versions its namespaces retain (absent: 0); quota: its own
                            quota in bytes (absent: the deployment's default; 0: no limit)

A commit that adds bytes updates ``used`` in the commit's own transaction (``charge_action``), on condition
that ``used`` is still at most the quota less what the commit adds and that the stored quota is the one the
commit read: two commits racing near the quota serialize on the item, and the one that would pass it fails its
condition, reads again and is refused. ``used`` never goes past the quota through commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.aws import items
from service.aws.errors import error_code, unavailable_on_transient
from service.core.models import Charge, Usage

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_s, _n = items.s, items.n


def usage_key(username: str) -> items.Item:
    return items.key(f"USER#{username}", "PROFILE")


def usage_from_item(item: items.Item | None) -> Usage:
    if not item:
        return Usage(0)
    quota = item.get("quota")
    return Usage(int(item.get("used", {"N": "0"})["N"]), int(quota["N"]) if quota else None)


def charge_action(table: str, charge: Charge) -> dict[str, Any]:
    """The transaction action that adds ``charge.delta`` to its payer's usage, on its conditions."""
    conditions: list[str] = [f"attribute_exists({items.PK})"]
    values: dict[str, Any] = {":zero": _n(0), ":d": _n(charge.delta)}
    if charge.max_used is not None:
        conditions.append("(attribute_not_exists(used) OR used <= :max)")
        values[":max"] = _n(charge.max_used)
    if charge.quota is None:
        conditions.append("attribute_not_exists(quota)")
    else:
        conditions.append("quota = :quota")
        values[":quota"] = _n(charge.quota)
    return {
        "Update": {
            "TableName": table,
            "Key": usage_key(charge.payer),
            "UpdateExpression": "SET used = if_not_exists(used, :zero) + :d",
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeValues": values,
        }
    }


async def read_usage(db: DynamoDBClient, table: str, username: str) -> Usage:
    with unavailable_on_transient("DynamoDB"):
        response = await db.get_item(
            TableName=table, Key=usage_key(username), ConsistentRead=True, ProjectionExpression="used, quota"
        )
    return usage_from_item(response.get("Item"))


async def write_quota(db: DynamoDBClient, table: str, username: str, quota: int | None) -> bool:
    """Give an existing account its own quota in bytes (0: no limit), or (None) hand it back to the default;
    False: no such account."""
    exists = f"attribute_exists({items.PK})"
    try:
        with unavailable_on_transient("DynamoDB"):
            if quota is None:
                await db.update_item(
                    TableName=table,
                    Key=usage_key(username),
                    UpdateExpression="REMOVE quota",
                    ConditionExpression=exists,
                )
            else:
                await db.update_item(
                    TableName=table,
                    Key=usage_key(username),
                    UpdateExpression="SET quota = :q",
                    ConditionExpression=exists,
                    ExpressionAttributeValues={":q": _n(quota)},
                )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True
