"""A non-recursive listing reads the folder's children from the children index, not its subtree: pages are
shrunk (``limit``, which is the Query's page size too) so that a few hundred nested files would take dozens
of pages if the subtree were read."""

from __future__ import annotations

from service.content import EMPTY_HASH
from tests.api.files_helpers import commit
from tests.api.helpers import dynamodb_cost as cost

NESTED = [f"deep/d{i % 7}/sub/f{i:03d}.txt" for i in range(300)]
ROOT = ["a.txt", "m.txt", "z.txt"]


def new(path: str) -> dict:
    return {"path": path, "content_hash": EMPTY_HASH, "size": 0, "mtime": 1.0, "parent_rev": None}


async def listing(client, headers, ns: str, folder: str = "", limit: int = 10, cursor: str | None = None):
    params = {"folder": folder, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
    return await client.get(f"/v1/ns/{ns}/files", params=params, headers=headers)


async def everything(client, headers, ns: str, folder: str = "", limit: int = 10) -> list[str]:
    paths: list[str] = []
    cursor = None
    while True:
        page = await (await listing(client, headers, ns, folder, limit, cursor)).json()
        assert len(page["files"]) <= limit
        paths += [f["path"] for f in page["files"]]
        cursor = page["cursor"]
        if cursor is None:
            return paths


async def test_a_listing_of_three_children_beside_hundreds_of_nested_files_reads_at_most_two_pages(quiet):
    client, headers, ns = quiet
    await commit(client, headers, ns, [new(p) for p in [*ROOT, "deep/d3/one.txt", *NESTED]])
    response, used = await cost(client, lambda: listing(client, headers, ns, limit=10))
    assert [f["path"] for f in (await response.json())["files"]] == ROOT
    assert used.get("Query", 0) <= 2, used  # the subtree would be 31 pages of 10
    response, used = await cost(client, lambda: listing(client, headers, ns, "deep/d3", limit=10))
    assert [f["path"] for f in (await response.json())["files"]] == ["deep/d3/one.txt"]
    assert used.get("Query", 0) <= 2, used
    assert await everything(client, headers, ns, "deep") == []
    # Paged by the cursor: each page one Query of the index.
    page = await (await listing(client, headers, ns, limit=2)).json()
    assert [f["path"] for f in page["files"]] == ROOT[:2]
    response, used = await cost(client, lambda: listing(client, headers, ns, limit=2, cursor=page["cursor"]))
    assert [f["path"] for f in (await response.json())["files"]] == ROOT[2:]
    assert used == {"Query": 1, "GetItem": 1}, used  # the index, then the membership
    # Folder names compare ignoring case, as paths do; the whole subtree is still there recursively.
    assert await everything(client, headers, ns, "DEEP/D3/Sub") == [p for p in NESTED if p.startswith("deep/d3/")]
    recursive = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true", "limit": "1000"}, headers=headers)
    assert len((await recursive.json())["files"]) == len(ROOT) + 1 + len(NESTED)


async def test_the_children_index_follows_deletes_moves_and_new_files(quiet):
    client, headers, ns = quiet
    await commit(client, headers, ns, [new(p) for p in [*ROOT, "docs/b.txt", "docs/c.txt"]])
    await commit(client, headers, ns, [{**new("m.txt"), "deleted": True, "parent_rev": 1}])
    moved = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "docs/b.txt", "to": "b.txt", "parent_rev": 1}, headers=headers
    )
    assert moved.status == 200, await moved.text()
    await commit(client, headers, ns, [new("docs/sub/d.txt"), new("docs/a.txt")])
    assert await everything(client, headers, ns, limit=1) == ["a.txt", "b.txt", "z.txt"]
    assert await everything(client, headers, ns, "docs", limit=1) == ["docs/a.txt", "docs/c.txt"]
    assert await everything(client, headers, ns, "docs/sub") == ["docs/sub/d.txt"]
    await commit(client, headers, ns, [{**new("m.txt"), "parent_rev": 2}])  # back from its tombstone
    assert await everything(client, headers, ns) == ["a.txt", "b.txt", "m.txt", "z.txt"]


async def test_tombstones_cost_a_listing_of_children_nothing_and_a_recursive_one_a_few_growing_pages(quiet):
    client, headers, ns = quiet
    gone = [f"gone/f{i:03d}.txt" for i in range(300)]
    live = ["gone/a.txt", "gone/sub/b.txt", "gone/z.txt"]
    await commit(client, headers, ns, [new(p) for p in [*gone, *live]])
    await commit(client, headers, ns, [{**new(p), "deleted": True, "parent_rev": 1} for p in gone])
    response, used = await cost(client, lambda: listing(client, headers, ns, "gone", limit=10))
    assert [f["path"] for f in (await response.json())["files"]] == ["gone/a.txt", "gone/z.txt"]
    assert used.get("Query", 0) == 1, used  # tombstones are not in the children index
    params = {"folder": "gone", "recursive": "true", "limit": "10"}
    response, used = await cost(client, lambda: client.get(f"/v1/ns/{ns}/files", params=params, headers=headers))
    assert [f["path"] for f in (await response.json())["files"]] == ["gone/a.txt", "gone/sub/b.txt", "gone/z.txt"]
    assert used.get("Query", 0) <= 6, used  # pages of 10, 20, 40...: 31 pages of 10 before
