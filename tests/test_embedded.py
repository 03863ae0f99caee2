"""The embedded emulator's changes to moto: transactions are undone from an undo log, not table copies, and a
Query reads one page of its partition's kept order, not the whole table; both give moto's own answers."""

from __future__ import annotations

import random

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


async def _pages(db, name: str, **query) -> list[str]:
    seen: list[str] = []
    start: dict | None = None
    while True:
        extra: dict = {"ExclusiveStartKey": start} if start else {}
        page = await db.query(TableName=name, **query, **extra)
        seen += [item["sk"]["S"] for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return seen


async def test_paged_queries_return_each_item_once_in_order_after_adds_updates_and_deletes(table):
    db, name = table
    rng = random.Random(7)
    keys = [f"{rng.choice('ab')}{i:04d}" for i in range(600)]
    rng.shuffle(keys)
    big = "x" * 9000  # about 110 items fill DynamoDB's 1 MB page
    for sk in keys:
        await db.put_item(TableName=name, Item={**_key("P", sk), "v": {"S": big}})
    await db.put_item(TableName=name, Item={**_key("Q", "a0001"), "v": {"S": "other partition"}})
    gone = set(keys[:50])
    for sk in gone:
        await db.delete_item(TableName=name, Key=_key("P", sk))
    for sk in keys[50:60]:  # updates keep the order; a re-added key joins it again
        await db.put_item(TableName=name, Item={**_key("P", sk), "v": {"S": "updated"}})
    await db.put_item(TableName=name, Item={**_key("P", keys[0]), "v": {"S": "back"}})
    live = sorted(set(keys) - gone | {keys[0]})
    values = {":p": {"S": "P"}}

    everything = await _pages(db, name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=values)
    assert everything == live
    limited = await _pages(db, name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=values, Limit=37)
    assert limited == live
    prefixed = await _pages(
        db,
        name,
        KeyConditionExpression="pk = :p AND begins_with(sk, :b)",
        ExpressionAttributeValues={**values, ":b": {"S": "b"}},
        Limit=50,
    )
    assert prefixed == [k for k in live if k.startswith("b")]
    between = await _pages(
        db,
        name,
        KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
        ExpressionAttributeValues={**values, ":lo": {"S": "a0100"}, ":hi": {"S": "b0300"}},
    )
    assert between == [k for k in live if "a0100" <= k <= "b0300"]
    backwards = await _pages(
        db, name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=values, ScanIndexForward=False, Limit=45
    )
    assert backwards == live[::-1]
    above = await _pages(
        db,
        name,
        KeyConditionExpression="pk = :p AND sk > :k",
        ExpressionAttributeValues={**values, ":k": {"S": "b0000"}},
        Limit=40,
    )
    assert above == [k for k in live if k > "b0000"]
