"""The embedded emulator's changes to moto: transactions are undone from an undo log, not table copies, a
Query reads one page of its partition's kept order, not the whole table, attribute values are written as they
are, all giving moto's own answers; connections stay open between requests. S3 checks a declared SHA-256
against the body (objects and parts) and reports a multipart object's composite checksum with its part
count, as S3 does."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import random
from urllib.parse import urlsplit

import aiohttp
import pytest
from botocore.config import Config
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


# --- S3 checksums: checked as S3 checks them, reported as S3 reports them --------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha256(data: bytes) -> str:
    return _b64(hashlib.sha256(data).digest())


@pytest.fixture
async def bucket(provisioned, aws_session):
    config = Config(retries={"max_attempts": 1})
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url, config=config) as s3:
        yield s3, provisioned.bucket


async def _refused(call, code: str) -> None:
    with pytest.raises(ClientError) as refused:
        await call
    assert refused.value.response["Error"]["Code"] == code
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_an_object_whose_declared_sha256_is_not_its_bodys_is_refused_and_not_stored(bucket):
    s3, name = bucket
    data = os.urandom(1000)
    wrong = s3.put_object(Bucket=name, Key="wrong", Body=data, ChecksumSHA256=_sha256(data + b"x"))
    await _refused(wrong, "BadDigest")
    malformed = s3.put_object(Bucket=name, Key="wrong", Body=data, ChecksumSHA256=_b64(b"short"))
    await _refused(malformed, "InvalidRequest")
    with pytest.raises(ClientError, match="404"):
        await s3.head_object(Bucket=name, Key="wrong")

    # The right one is stored and reported, also when the request names no algorithm (S3 needs the value
    # alone): a plain HTTP PUT with the header, as a presigned upload sends it.
    await s3.put_object(Bucket=name, Key="right", Body=data, ChecksumSHA256=_sha256(data))
    url = await s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "plain"})
    async with aiohttp.ClientSession() as http:
        async with http.put(url, data=data, headers={"x-amz-checksum-sha256": _sha256(data)}) as put:
            assert put.status == 200, await put.text()
        async with http.put(url, data=data, headers={"x-amz-checksum-sha256": _sha256(b"other")}) as put:
            assert put.status == 400
            assert "<Code>BadDigest</Code>" in await put.text()
    for key in ("right", "plain"):
        head = await s3.head_object(Bucket=name, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == _sha256(data)
        assert (await (await s3.get_object(Bucket=name, Key=key))["Body"].read()) == data


async def test_a_part_whose_declared_sha256_is_not_its_bodys_is_refused_and_not_stored(bucket):
    s3, name = bucket
    upload = await s3.create_multipart_upload(Bucket=name, Key="parts", ChecksumAlgorithm="SHA256")
    ids = {"Bucket": name, "Key": "parts", "UploadId": upload["UploadId"]}
    data = os.urandom(1000)
    await _refused(s3.upload_part(**ids, PartNumber=1, Body=data, ChecksumSHA256=_sha256(b"other")), "BadDigest")
    await _refused(s3.upload_part(**ids, PartNumber=1, Body=data, ChecksumSHA256="not base64!"), "InvalidRequest")
    assert (await s3.list_parts(**ids)).get("Parts", []) == []
    await s3.upload_part(**ids, PartNumber=1, Body=data, ChecksumSHA256=_sha256(data))
    assert [p["Size"] for p in (await s3.list_parts(**ids))["Parts"]] == [1000]
    await s3.abort_multipart_upload(**ids)


async def test_a_multipart_objects_checksum_is_the_composite_with_its_part_count(bucket):
    """As S3 reports it: HeadObject ``<b64>-<parts>`` (type COMPOSITE), GetObjectAttributes the bare digest and
    the part count. One part declares its SHA-256, the other none (the emulator computes that one)."""
    s3, name = bucket
    first, second = os.urandom(5 * 1024 * 1024), os.urandom(1000)
    upload = await s3.create_multipart_upload(Bucket=name, Key="whole", ChecksumAlgorithm="SHA256")
    ids = {"Bucket": name, "Key": "whole", "UploadId": upload["UploadId"]}
    one = await s3.upload_part(**ids, PartNumber=1, Body=first, ChecksumSHA256=_sha256(first))
    two = await s3.upload_part(**ids, PartNumber=2, Body=second)
    parts = [
        {"PartNumber": 1, "ETag": one["ETag"], "ChecksumSHA256": _sha256(first)},
        {"PartNumber": 2, "ETag": two["ETag"]},
    ]
    await s3.complete_multipart_upload(**ids, MultipartUpload={"Parts": parts})
    composite = _b64(hashlib.sha256(hashlib.sha256(first).digest() + hashlib.sha256(second).digest()).digest())

    head = await s3.head_object(Bucket=name, Key="whole", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == f"{composite}-2"
    assert head["ChecksumType"] == "COMPOSITE"
    attributes = await s3.get_object_attributes(
        Bucket=name, Key="whole", ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"]
    )
    assert attributes["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}
    assert attributes["ObjectParts"]["TotalPartsCount"] == 2
    assert attributes["ObjectSize"] == len(first) + len(second)
    # A single PutObject has no part count anywhere.
    await s3.put_object(Bucket=name, Key="single", Body=second, ChecksumSHA256=_sha256(second))
    attributes = await s3.get_object_attributes(Bucket=name, Key="single", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attributes["Checksum"]["ChecksumSHA256"] == _sha256(second)
    assert "ObjectParts" not in attributes
    head = await s3.head_object(Bucket=name, Key="single", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == _sha256(second)


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
