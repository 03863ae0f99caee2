"""Many writers at once on one file and one namespace, racing renames and deletes, long-poll readers:
invariants 3 (no silent overwrite), 4 (convergence), 5 (no resurrection, no duplicate) of DESIGN.md.

Tests layer: two service apps (two workers) on one table, over real HTTP, against the session's emulator.
"""

from __future__ import annotations

import asyncio
import uuid

from tests.api.files_helpers import body, entry, upload_direct
from tests.api.helpers import user

WRITERS = 12


async def test_racing_writers_renames_and_deletes_keep_every_invariant(provisioned, make_client, app_factory):
    one = await make_client(app_factory(provisioned))
    two = await make_client(app_factory(provisioned))  # a second worker: only DynamoDB serializes them
    alice = await user(one, "alice")
    ns = (await (await one.get("/v1/namespaces", headers=alice)).json())["namespaces"][0]["id"]
    bodies = [body(300 + i) for i in range(WRITERS)]
    for data in bodies:
        await upload_direct(one, alice, ns, data)
    base = await one.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("doc.txt", bodies[0])]}, headers=alice)
    assert base.status == 200
    # A long-poll reader on each worker, from the start of the feed.
    readers = [
        asyncio.create_task(c.get(f"/v1/ns/{ns}/changes", params={"cursor": "s1", "wait": "20"}, headers=alice))
        for c in (one, two)
    ]

    async def write(i: int) -> dict:
        client = (one, two)[i % 2]
        key = {"Idempotency-Key": uuid.uuid4().hex}
        sent = {"entries": [entry("doc.txt", bodies[i], parent_rev=1)]}
        first = await client.post(f"/v1/ns/{ns}/commit", json=sent, headers={**alice, **key})
        again = await client.post(f"/v1/ns/{ns}/commit", json=sent, headers={**alice, **key})  # a retry
        assert (await first.json())["results"] == (await again.json())["results"], "a retry answered differently"
        return (await first.json())["results"][0]

    async def rename(i: int) -> int:
        client = (one, two)[i % 2]
        moved = await client.post(
            f"/v1/ns/{ns}/move", json={"from": "doc.txt", "to": f"moved-{i}.txt", "parent_rev": 1}, headers=alice
        )
        return moved.status

    async def delete(i: int) -> int:
        client = (one, two)[i % 2]
        gone = await client.delete(f"/v1/ns/{ns}/files/doc.txt", headers={**alice, "If-Match": "1"})
        return gone.status

    results = await asyncio.gather(
        *(write(i) for i in range(1, WRITERS)), *(rename(i) for i in range(3)), *(delete(i) for i in range(3))
    )
    writes, others = results[: WRITERS - 1], results[WRITERS - 1 :]
    winners = [r for r in writes if r["status"] == "committed"] + [s for s in others if s == 200]
    # Invariant 3: all of them based on rev 1; exactly one may win, every loser is told (a conflict).
    assert len(winners) == 1, (writes, others)
    assert all(r["status"] == "conflict" and r["current"] for r in writes if r not in winners)
    assert all(s == 409 for s in others if s != 200)
    # The feed: gapless, each change once, and both workers' long-polls woke with the same first change.
    changes = await one.get(f"/v1/ns/{ns}/changes", params={"cursor": "s0"}, headers=alice)
    seqs = [c["seq"] for c in (await changes.json())["changes"]]
    assert seqs == sorted(set(seqs)) == list(range(1, len(seqs) + 1))
    woke = [await (await r).json() for r in readers]
    assert woke[0]["changes"][0] == woke[1]["changes"][0]
    # Invariant 4: both workers answer the same tree.
    trees = []
    for client in (one, two):
        listed = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=alice)
        trees.append(sorted((f["path"], f["rev"], f["content_hash"]) for f in (await listed.json())["files"]))
    assert trees[0] == trees[1]
    # Invariant 5: once deleted (if a delete won), a stale writer based on rev 1 cannot bring it back.
    current = await one.get(f"/v1/ns/{ns}/files/doc.txt", params={"versions": ""}, headers=alice)
    history = (await current.json())["versions"]
    if history[0]["deleted"]:
        stale = await one.post(
            f"/v1/ns/{ns}/commit", json={"entries": [entry("doc.txt", bodies[5], parent_rev=1)]}, headers=alice
        )
        assert stale.status == 409
