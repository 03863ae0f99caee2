"""A removed member learns nothing committed after the removal (invariant 10), on anything the service serves:
long-polls begun before the removal (on the worker that removed and on another), the feed, compare,
listing, downloads, history, blob checks and follows. Two workers are two apps on the same table.
"""

from __future__ import annotations

import asyncio
import time

from service.keys import SYNC
from tests.api.files_helpers import independent_hash
from tests.api.helpers import problem, user

SECRET = b"committed after the removal"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


async def team(client) -> tuple[dict[str, str], dict[str, str], str, str]:
    """Alice's shared namespace with bob as an editor, a file in it, and bob's up-to-date cursor."""
    alice = await user(client, "alice")
    bob = await user(client, "bob")
    ns = (await (await client.post("/v1/namespaces", json={"name": "Team"}, headers=alice)).json())["id"]
    added = await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "editor"}, headers=alice)
    assert added.status == 200
    put = await client.put(f"/v1/ns/{ns}/files/docs/before.txt", data=b"before", headers=alice)
    assert put.status == 201, await put.text()
    feed = await (await client.get(f"/v1/ns/{ns}/changes", headers=bob)).json()
    assert [c["path"] for c in feed["changes"]] == ["docs/before.txt"]
    return alice, bob, ns, feed["cursor"]


async def put_after(client, alice: dict[str, str], ns: str) -> None:
    """Alice commits a new file (its body streamed through the service)."""
    put = await client.put(f"/v1/ns/{ns}/files/docs/after.txt", data=SECRET, headers=alice)
    assert put.status == 201, await put.text()


async def until_waiting(worker, ns: str) -> None:
    """Until a long-poll on ``ns`` is registered with ``worker``'s head watcher."""
    deadline = time.monotonic() + 10
    while not worker.app[SYNC]._watcher.waiting(ns):
        assert time.monotonic() < deadline, "the long-poll never started waiting"
        await asyncio.sleep(0.01)


async def test_a_long_poll_begun_before_a_removal_answers_404_not_the_commit_after_it(
    client, provisioned, make_client, app_factory
):
    other = await make_client(app_factory(provisioned))  # a second worker on the same table
    alice, bob, ns, cursor = await team(client)
    poll = asyncio.create_task(other.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=30", headers=bob))
    await until_waiting(other, ns)
    assert (await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=alice)).status == 204
    assert not poll.done(), "the removal on another worker cannot have woken it"
    await put_after(client, alice, ns)
    response = await asyncio.wait_for(poll, 20)  # woken by the commit's head, within the watcher's interval
    body = await problem(response, 404)
    assert set(body) == PROBLEM_FIELDS
    assert "after.txt" not in body["detail"]


async def test_the_worker_that_removes_a_member_ends_its_long_polls_at_once(client):
    alice, bob, ns, cursor = await team(client)
    poll = asyncio.create_task(client.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=60", headers=bob))
    await until_waiting(client, ns)
    assert (await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=alice)).status == 204
    # No commit at all: the removal itself answers the poll (well within its 60 s wait).
    await problem(await asyncio.wait_for(poll, 10), 404)


async def test_a_long_poll_whose_wait_ends_after_a_removal_answers_404_not_nothing_new(
    client, provisioned, make_client, app_factory
):
    other = await make_client(app_factory(provisioned))
    alice, bob, ns, cursor = await team(client)
    poll = asyncio.create_task(other.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=2", headers=bob))
    await until_waiting(other, ns)
    assert (await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=alice)).status == 204
    await problem(await asyncio.wait_for(poll, 10), 404)


async def test_a_removed_member_gets_404_from_everything_at_once(client, provisioned, make_client, app_factory):
    other = await make_client(app_factory(provisioned))
    alice, bob, ns, cursor = await team(client)
    assert (await client.put(f"/v1/ns/{ns}/follows/docs", headers=bob)).status == 200
    assert (await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=alice)).status == 204
    await put_after(client, alice, ns)
    after_hash = independent_hash(SECRET)
    for worker in (client, other):  # membership is read on every request: no worker has it cached
        for method, path, body in (
            ("GET", f"/v1/ns/{ns}/changes?cursor={cursor}", None),
            ("GET", f"/v1/ns/{ns}/changes", None),
            ("GET", f"/v1/ns/{ns}/changes?cursor=not-a-cursor", None),
            ("POST", f"/v1/ns/{ns}/compare", {"entries": []}),
            ("POST", f"/v1/ns/{ns}/compare", {"entries": [], "ranged": True}),
            ("GET", f"/v1/ns/{ns}/files", None),
            ("GET", f"/v1/ns/{ns}/files?folder=docs", None),
            ("GET", f"/v1/ns/{ns}/files/docs/after.txt", None),
            ("GET", f"/v1/ns/{ns}/files/docs/before.txt?via=service", None),
            ("GET", f"/v1/ns/{ns}/files/docs/before.txt?versions", None),
            ("GET", f"/v1/ns/{ns}/files/docs/missing.txt", None),
            ("POST", f"/v1/ns/{ns}/blobs:check", {"hashes": [after_hash]}),
            ("PUT", f"/v1/ns/{ns}/follows/docs", None),
            ("GET", f"/v1/namespaces/{ns}", None),
        ):
            response = await worker.request(method, path, json=body, headers=bob, allow_redirects=False)
            answer = await problem(response, 404)
            assert set(answer) == PROBLEM_FIELDS, (method, path)  # no file data rides along
            assert answer["detail"].startswith("No namespace"), (method, path, answer["detail"])
    # The follows ended with the membership: re-admitted, bob follows nothing there until he asks again.
    assert (await client.get("/v1/follows", headers=bob)).status == 200
    again = await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "viewer"}, headers=alice)
    assert again.status == 200
    assert (await (await client.get("/v1/follows", headers=bob)).json())["follows"] == []
