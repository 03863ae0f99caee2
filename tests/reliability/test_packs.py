"""Torn pack uploads: the pack stored but its index never committed (the transaction failed, or the PUT's
reply was lost), and what a retry makes of it.

Tests layer: the service in process, its AWS calls through the fault proxy, against the session's emulator.
"""

from __future__ import annotations

import uuid

from service.core.packs import read_pack
from tests.api.files_helpers import body, download, entry, home, independent_hash
from tests.api.helpers import user
from tests.api.test_batch import send
from tests.api.test_packs import fetch, item, pack_keys
from tests.reliability.faultproxy import FaultProxy, Rule
from tests.reliability.test_faults import expect_unavailable


async def pack_records(aws_session, settings, ns: str) -> list[str]:
    async with aws_session.client("dynamodb", endpoint_url=settings.aws.endpoint_url) as db:
        found = await db.query(
            TableName=settings.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :pack)",
            ExpressionAttributeValues={":pk": {"S": f"NS#{ns}"}, ":pack": {"S": "PACK#"}},
        )
    return [i["sk"]["S"].removeprefix("PACK#") for i in found["Items"]]


async def test_a_pack_whose_index_was_never_committed_is_unreferenced_and_a_retry_commits(
    client, proxy: FaultProxy, provisioned, aws_session
):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    files = {f"t/f{i}.txt": body(500 + i) for i in range(3)}
    entries = [entry(p, d) for p, d in files.items()]
    key = uuid.uuid4().hex
    proxy.add(Rule("error", operation="TransactWriteItems", status=500))
    await expect_unavailable(await send(client, alice, ns, entries, list(files.values()), key=key))
    proxy.clear()
    [torn] = await pack_keys(aws_session, provisioned, ns)
    assert await pack_records(aws_session, provisioned, ns) == [], "a torn pack has no record"
    listed = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=alice)
    assert (await listed.json())["files"] == [], "nothing references the torn pack"
    hashes = [independent_hash(d) for d in files.values()]
    checked = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": hashes}, headers=alice)
    assert sorted((await checked.json())["missing"]) == sorted(hashes)

    retried = await send(client, alice, ns, entries, list(files.values()), key=key)
    assert retried.status == 200, await retried.text()
    infos = {r["path"]: r["file"] for r in (await retried.json())["results"]}
    [committed] = await pack_records(aws_session, provisioned, ns)
    assert {info["body_pack"] for info in infos.values()} == {committed}
    assert not torn.endswith(committed), "the retry stored its own pack; the torn one is left for collection"
    for path, data in files.items():
        assert await download(client, alice, ns, path, via_service=False) == data
    got = await fetch(client, alice, ns, [item(infos[p]) for p in files])
    assert [got[i] for i in range(3)] == list(files.values())


async def test_a_pack_put_whose_reply_was_lost_is_stored_again_under_a_new_id(
    client, proxy: FaultProxy, provisioned, aws_session
):
    """The PUT took effect, its reply never came: botocore's retry finds the key taken (``If-None-Match``),
    and the service stores the pack again under a new id rather than trust an object it did not see."""
    alice = await user(client, "alice")
    ns = await home(client, alice)
    files = {"a.txt": body(100), "b.txt": body(200)}
    proxy.add(Rule("drop_reply", service="s3", operation="PutObject", first=1))
    response = await send(client, alice, ns, [entry(p, d) for p, d in files.items()], list(files.values()))
    assert response.status == 200, await response.text()
    proxy.clear()
    keys = await pack_keys(aws_session, provisioned, ns)
    assert len(keys) == 2
    [committed] = await pack_records(aws_session, provisioned, ns)
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        for key in keys:
            stored = await (await s3.get_object(Bucket=provisioned.bucket, Key=key))["Body"].read()
            assert {e.content_hash for e in read_pack(stored)} == {independent_hash(d) for d in files.values()}
    for path, data in files.items():
        assert await download(client, alice, ns, path, via_service=True) == data
    assert any(k.endswith(committed) for k in keys)
