"""The embedded emulator's one change to moto: transactions are undone from an undo log, not table copies."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from service import resources


@pytest.fixture
async def table(provisioned, aws_session):
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        yield db, provisioned.table


def _key(pk: str, sk: str) -> dict:
    return {resources.TABLE_PARTITION_KEY: {"S": pk}, resources.TABLE_SORT_KEY: {"S": sk}}


async def test_a_failed_transaction_leaves_every_item_as_it_was(table):
    db, name = table
    await db.put_item(TableName=name, Item={**_key("A", "1"), "v": {"N": "1"}})
    await db.put_item(TableName=name, Item={**_key("A", "2"), "v": {"N": "1"}})
    actions = [
        {"Put": {"TableName": name, "Item": {**_key("A", "new"), "v": {"N": "9"}}}},
        {
            "Update": {
                "TableName": name,
                "Key": _key("A", "1"),
                "UpdateExpression": "SET v = :nine",
                "ExpressionAttributeValues": {":nine": {"N": "9"}},
            }
        },
        {"Delete": {"TableName": name, "Key": _key("A", "2")}},
        {
            "ConditionCheck": {
                "TableName": name,
                "Key": _key("A", "missing"),
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
    ]
    with pytest.raises(ClientError, match="TransactionCanceled"):
        await db.transact_write_items(TransactItems=actions)
    items = (
        await db.query(TableName=name, KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "A"}})
    )["Items"]
    assert sorted((i["sk"]["S"], i["v"]["N"]) for i in items) == [("1", "1"), ("2", "1")]

    # Without the failing check the same actions all apply.
    await db.transact_write_items(TransactItems=actions[:3])
    items = (
        await db.query(TableName=name, KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "A"}})
    )["Items"]
    assert sorted((i["sk"]["S"], i["v"]["N"]) for i in items) == [("1", "9"), ("new", "9")]
