"""The embedded emulator's changes to moto: transactions are undone from an undo log, not table copies, a
Query reads one page of its partition's kept order, not the whole table, attribute values are written as they
are, all giving moto's own answers; and connections stay open between requests."""

from __future__ import annotations

import http.client
import random
from urllib.parse import urlsplit

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


async def test_attribute_values_of_every_type_come_back_as_they_were_put(table):
    db, name = table
    item = {
        **_key("T", "all"),
        "s": {"S": "text ü"},
        "empty": {"S": ""},
        "n": {"N": "-12.5"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "3"}, {"BOOL": False}, {"NULL": True}, {"B": b"\x03"}]}}},
        "l": {"L": []},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "null": {"NULL": True},
    }
    await db.put_item(TableName=name, Item=item)
    got = (await db.get_item(TableName=name, Key=_key("T", "all"), ConsistentRead=True))["Item"]
    queried = (
        await db.query(TableName=name, KeyConditionExpression="pk = :t", ExpressionAttributeValues={":t": {"S": "T"}})
    )["Items"]
    for found in (got, queried[0]):
        assert {k: v for k, v in found.items() if k not in ("ss", "ns", "bs")} == {
            k: v for k, v in item.items() if k not in ("ss", "ns", "bs")
        }
        assert sorted(found["ss"]["SS"]) == ["a", "b"]
        assert sorted(found["ns"]["NS"], key=float) == ["1", "2.5"]
        assert sorted(found["bs"]["BS"]) == [b"\x01", b"\x02"]


def test_a_connection_serves_request_after_request_even_when_a_body_was_left_unread(moto_endpoint):
    """The mail listing never reads a body: the rest of it is dropped, and the next request on the same
    connection is answered as if it came alone."""
    address = urlsplit(moto_endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", "/_emulator/mail", body=b"x" * 300_000)
        first = connection.getresponse()
        assert first.status == 200
        first.read()
        assert not first.will_close
        sock = connection.sock
        for _ in range(3):
            connection.request("GET", "/_emulator/mail")
            again = connection.getresponse()
            assert again.status == 200
            assert again.read().startswith(b"[")
            assert not again.will_close
        assert connection.sock is sock  # the same TCP connection throughout
    finally:
        connection.close()
