"""Storage usage and quotas: each account's usage is the bytes of the versions its namespaces retain, kept in
the commits' own transactions, and a commit that would take the owner past the quota is refused (507) with
nothing written, however many commits race for the last bytes."""

from __future__ import annotations

import asyncio
import io
import os

from service.aws.usage import write_quota
from tests.api.files_helpers import entry, upload_direct
from tests.api.helpers import problem, user
from tests.api.test_batch import send
from tests.api.test_moves import moved
from tests.api.test_packs import batch


async def storage(client, headers) -> dict:
    response = await client.get("/v1/account", headers=headers)
    assert response.status == 200, await response.text()
    return (await response.json())["storage"]


async def set_quota(provisioned, aws_session, username: str, quota: int | None) -> None:
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        assert await write_quota(db, provisioned.table, username, quota)


async def listing(client, headers, ns: str) -> list[str]:
    response = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)
    return [f["path"] for f in (await response.json())["files"]]


async def test_usage_counts_each_retained_version_and_nothing_for_moves_deletions_or_the_same_content(
    quiet, provisioned
):
    client, headers, ns = quiet
    assert await storage(client, headers) == {"used": 0, "quota": provisioned.files.default_quota}
    first = (await batch(client, headers, ns, {"a.txt": b"x" * 100, "b.txt": b"y" * 50}))["a.txt"]
    assert (await storage(client, headers))["used"] == 150
    # A new version of a.txt: both versions are retained, both count.
    await send(client, headers, ns, [entry("a.txt", b"z" * 30, first["rev"])], [b"z" * 30])
    assert (await storage(client, headers))["used"] == 180
    # The same content again, a move and a deletion keep or drop no retained version's bytes.
    moved_to = (await moved(client, headers, ns, [("b.txt", "c.txt", 1)]))["results"][0]
    assert moved_to["status"] == "committed", moved_to
    rev = str(moved_to["file"]["rev"])
    deleted = await client.delete(f"/v1/ns/{ns}/files/c.txt", headers={**headers, "If-Match": rev})
    assert deleted.status in (200, 204), await deleted.text()
    assert (await storage(client, headers))["used"] == 180
    # A restore is a new version holding old content: it counts.
    restored = await client.post(f"/v1/ns/{ns}/restore", json={"path": "a.txt", "rev": 1}, headers=headers)
    assert restored.status == 200, await restored.text()
    assert (await storage(client, headers))["used"] == 280


async def test_a_commit_past_the_quota_is_refused_with_the_figures_and_writes_nothing(quiet, provisioned, aws_session):
    client, headers, ns = quiet
    await set_quota(provisioned, aws_session, "alice", 1000)
    await batch(client, headers, ns, {"kept.txt": b"k" * 600})
    files = {"one.txt": b"1" * 300, "two.txt": b"2" * 200}  # 500 more: 1,100 > 1,000
    response = await send(client, headers, ns, [entry(p, d) for p, d in files.items()], list(files.values()))
    body = await problem(response, 507)
    assert body["type"].endswith("#problem-quota-exceeded")
    assert (body["used"], body["quota"], body["needed"]) == (600, 1000, 500)
    assert await listing(client, headers, ns) == ["kept.txt"]
    assert await storage(client, headers) == {"used": 600, "quota": 1000}
    # Streamed through the service, the same: refused, nothing committed.
    streamed = await client.put(f"/v1/ns/{ns}/files/big.bin", data=io.BytesIO(b"s" * 401), headers=headers)
    assert (await problem(streamed, 507))["needed"] == 401
    assert await listing(client, headers, ns) == ["kept.txt"]
    # At the quota exactly, a commit fits; one byte more does not.
    await batch(client, headers, ns, {"fits.txt": b"f" * 400})
    assert await storage(client, headers) == {"used": 1000, "quota": 1000}
    one_more = await send(client, headers, ns, [entry("byte.txt", b"b")], [b"b"])
    assert (await problem(one_more, 507))["needed"] == 1
    # A quota of 0 is no limit; handing the account back to the default applies the default.
    await set_quota(provisioned, aws_session, "alice", 0)
    await batch(client, headers, ns, {"byte.txt": b"b"})
    assert await storage(client, headers) == {"used": 1001, "quota": 0}
    await set_quota(provisioned, aws_session, "alice", None)
    assert (await storage(client, headers))["quota"] == provisioned.files.default_quota


async def test_twenty_commits_racing_for_the_last_bytes_never_end_above_the_quota(client, provisioned, aws_session):
    headers = await user(client, "racer")
    ns = (await (await client.get("/v1/account", headers=headers)).json())["home_namespace"]
    # A shared namespace the same account owns: commits to both race on one usage, not one namespace head.
    created = await client.post("/v1/namespaces", json={"name": "team"}, headers=headers)
    assert created.status == 201, await created.text()
    shared = (await created.json())["id"]
    await set_quota(provisioned, aws_session, "racer", 10_500)
    bodies = [os.urandom(1000) for _ in range(20)]
    for i, body in enumerate(bodies):  # stored first (S3, scoped credentials): the commits alone race
        await upload_direct(client, headers, ns if i % 2 else shared, body)

    async def one(i: int):
        target = ns if i % 2 else shared
        return await client.post(
            f"/v1/ns/{target}/commit", json={"entries": [entry(f"f{i:02d}.bin", bodies[i])]}, headers=headers
        )

    responses = await asyncio.gather(*(one(i) for i in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 10 + [507] * 10, statuses
    for refused in (r for r in responses if r.status == 507):
        assert (await problem(refused, 507))["quota"] == 10_500
    assert await storage(client, headers) == {"used": 10_000, "quota": 10_500}
    assert len(await listing(client, headers, ns)) + len(await listing(client, headers, shared)) == 10


async def test_the_namespace_owner_pays_for_what_members_commit(client, provisioned, aws_session):
    owner = await user(client, "owner1")
    editor = await user(client, "editor1")
    created = await client.post("/v1/namespaces", json={"name": "shared"}, headers=owner)
    shared = (await created.json())["id"]
    added = await client.put(f"/v1/namespaces/{shared}/members/editor1", json={"role": "editor"}, headers=owner)
    assert added.status == 200, await added.text()
    await batch(client, editor, shared, {"by-editor.txt": b"e" * 70})
    assert (await storage(client, owner))["used"] == 70
    assert (await storage(client, editor))["used"] == 0
    await set_quota(provisioned, aws_session, "owner1", 100)
    refused = await send(client, editor, shared, [entry("more.txt", b"m" * 31)], [b"m" * 31])
    assert (await problem(refused, 507))["used"] == 70
