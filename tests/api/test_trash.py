"""The trash: a namespace's deleted files, listed the latest deletion first with who deleted them and when,
restored one by one or by folder with their content as it was; moves are not deletions."""

from __future__ import annotations

import os

from service.core import files as core_files
from tests.api.files_helpers import commit, download
from tests.api.helpers import problem, user
from tests.api.test_packs import batch


async def trash(client, headers, ns: str, limit: int = 100) -> list[dict]:
    """Every page of the trash, in order."""
    entries: list[dict] = []
    cursor = None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/ns/{ns}/trash", params=params, headers=headers)
        assert response.status == 200, await response.text()
        page = await response.json()
        assert len(page["files"]) <= limit
        entries += page["files"]
        cursor = page["cursor"]
        if cursor is None:
            return entries


async def restore(client, headers, ns: str, **body) -> dict:
    response = await client.post(f"/v1/ns/{ns}/trash:restore", json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_deleted_folder_of_fifty_files_is_listed_in_the_trash_and_restored_identical(quiet):
    client, headers, ns = quiet
    contents = {f"reports/2026/r{i:02d}.txt": os.urandom(100 + i) for i in range(50)}
    contents["reports/keep.txt"] = b"kept"
    versions = await batch(client, headers, ns, contents)
    await commit(client, headers, ns, [{"path": "other.txt", "deleted": False, **_empty()}])
    doomed = sorted(p for p in contents if p.startswith("reports/2026/"))
    deletions = [{"path": p, "deleted": True, "parent_rev": versions[p]["rev"]} for p in doomed]
    await commit(client, headers, ns, deletions)

    listed = await trash(client, headers, ns, limit=7)  # paged
    assert sorted(e["path"] for e in listed) == doomed
    assert {(e["deleted"], e["committed_by"]) for e in listed} == {(True, "alice")}
    assert [e["committed_at"] for e in listed] == sorted((e["committed_at"] for e in listed), reverse=True)

    answer = await restore(client, headers, ns, folder="Reports/2026")  # folders compare ignoring case
    assert {r["status"] for r in answer["results"]} == {"committed"}
    assert len(answer["results"]) == 50
    for path in doomed:
        assert await download(client, headers, ns, path, via_service=True) == contents[path]
    assert await trash(client, headers, ns) == []


async def test_the_latest_deletion_comes_first_and_one_file_is_restored_by_its_path(quiet):
    client, headers, ns = quiet
    versions = await batch(client, headers, ns, {"a.txt": b"first", "b.txt": b"second", "c.txt": b"third"})
    for path in ("a.txt", "b.txt"):
        await commit(client, headers, ns, [{"path": path, "deleted": True, "parent_rev": versions[path]["rev"]}])
    moved = await client.post(
        f"/v1/ns/{ns}/move",
        json={"from": "c.txt", "to": "d.txt", "parent_rev": versions["c.txt"]["rev"]},
        headers=headers,
    )
    assert moved.status == 200, await moved.text()
    assert [e["path"] for e in await trash(client, headers, ns)] == ["b.txt", "a.txt"]  # the move is not there
    answer = await restore(client, headers, ns, paths=["a.txt"])
    [result] = answer["results"]
    assert (result["status"], result["file"]["rev"]) == ("committed", 3)
    assert await download(client, headers, ns, "a.txt", via_service=True) == b"first"
    assert [e["path"] for e in await trash(client, headers, ns)] == ["b.txt"]


async def test_what_cannot_be_restored_is_refused_and_a_viewer_may_look_but_not_restore(client, alice):
    headers, _ = alice
    created = await client.post("/v1/namespaces", json={"name": "team"}, headers=headers)
    ns = (await created.json())["id"]
    await batch(client, headers, ns, {"live.txt": b"here"})
    refused = await client.post(f"/v1/ns/{ns}/trash:restore", json={"paths": ["live.txt"]}, headers=headers)
    assert "is not deleted" in (await problem(refused, 422))["detail"]
    missing = await client.post(f"/v1/ns/{ns}/trash:restore", json={"paths": ["never.txt"]}, headers=headers)
    await problem(missing, 404)
    bodies: list[dict] = [{}, {"paths": ["live.txt"], "folder": ""}, {"paths": []}]
    for body in bodies:
        await problem(await client.post(f"/v1/ns/{ns}/trash:restore", json=body, headers=headers), 422)
    empty = await client.post(f"/v1/ns/{ns}/trash:restore", json={"folder": "nothing"}, headers=headers)
    await problem(empty, 404)
    for cursor in ("x", "000000000000001#", "000000000000001#../up", "1#a.txt", "000000000000001#A.txt"):
        bad = await client.get(f"/v1/ns/{ns}/trash", params={"cursor": cursor}, headers=headers)
        await problem(bad, 422)
    viewer = await user(client, "viewer1")
    added = await client.put(f"/v1/namespaces/{ns}/members/viewer1", json={"role": "viewer"}, headers=headers)
    assert added.status == 200, await added.text()
    looked = await client.get(f"/v1/ns/{ns}/trash", headers=viewer)
    assert looked.status == 200
    await problem(await client.post(f"/v1/ns/{ns}/trash:restore", json={"folder": ""}, headers=viewer), 403)
    stranger = await user(client, "stranger1")
    await problem(await client.get(f"/v1/ns/{ns}/trash", headers=stranger), 404)


def _empty() -> dict:
    from service.content import EMPTY_HASH

    return {"content_hash": EMPTY_HASH, "size": 0, "mtime": 1.0, "parent_rev": None}


async def test_a_restore_by_folder_reads_a_bounded_subtree_and_says_so_past_it(quiet, monkeypatch):
    client, headers, ns = quiet
    monkeypatch.setattr(core_files, "MAX_RESTORE_SCAN", 4)
    monkeypatch.setattr(core_files, "_SCAN_PAGE_MAX", 2)
    versions = await batch(client, headers, ns, {f"big/f{i}.txt": b"%d" % i for i in range(5)})
    await commit(
        client, headers, ns, [{"path": "big/f0.txt", "deleted": True, "parent_rev": versions["big/f0.txt"]["rev"]}]
    )
    refused = await client.post(f"/v1/ns/{ns}/trash:restore", json={"folder": "big"}, headers=headers)
    assert "more than 4 files are under it" in (await problem(refused, 422))["detail"]
    # Named, the same file comes back whatever the folder holds.
    answer = await restore(client, headers, ns, paths=["big/f0.txt"])
    assert [r["status"] for r in answer["results"]] == ["committed"]
