"""What reading a file's history costs, whatever its length: any version is the file's item and one read
more (the membership check rides along), a history page the item and one BatchGetItem; history from before
the index is still read (by the journal walk), and moves carry it. Chunks are shrunk to 4 versions so that a
few dozen commits span many of them (``HISTORY_CHUNK`` is 32)."""

from __future__ import annotations

from functools import partial

import pytest

from service.content import EMPTY_HASH
from service.core import files as core_files
from tests.api.files_helpers import commit, download, entry, upload_direct
from tests.api.helpers import dynamodb_cost as cost

CHUNK = 4


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_files, "HISTORY_CHUNK", CHUNK)


def version(path: str, rev: int | None) -> dict:
    """A version of empty content whose mtime says which rev it is meant to be."""
    return {"path": path, "content_hash": EMPTY_HASH, "size": 0, "mtime": float((rev or 0) + 1), "parent_rev": rev}


async def versions_of(client, headers, ns: str, path: str, count: int, rev: int | None = None) -> int:
    for _ in range(count):
        rev = (await commit(client, headers, ns, [version(path, rev)]))["results"][0]["file"]["rev"]
    assert rev is not None
    return rev


async def read_rev(client, headers, ns: str, path: str, rev: int):
    return await client.get(f"/v1/ns/{ns}/files/{path}", params={"rev": str(rev), "via": "service"}, headers=headers)


async def all_history(client, headers, ns: str, path: str, limit: int) -> list[dict]:
    versions: list[dict] = []
    cursor = None
    while True:
        params = {"versions": "", "limit": str(limit), **({"before": str(cursor)} if cursor else {})}
        page = await (await client.get(f"/v1/ns/{ns}/files/{path}", params=params, headers=headers)).json()
        assert len(page["versions"]) <= limit
        versions += page["versions"]
        cursor = page["cursor"]
        if cursor is None:
            return versions


async def test_reading_the_oldest_of_many_versions_costs_at_most_two_dynamodb_requests(quiet):
    client, headers, ns = quiet
    last = await versions_of(client, headers, ns, "doc.txt", 61)  # 15 sealed chunks of 4, and one open
    for rev in (1, 2, 30, 57, 60, 61):  # sealed chunks (the oldest first), the open chunk, the current one
        response, used = await cost(client, partial(read_rev, client, headers, ns, "doc.txt", rev))
        assert response.status == 200, await response.text()
        assert response.headers["X-Rev"] == str(rev)
        assert sum(used.values()) <= 2, (rev, used)  # the file's item, then its record (with the membership)
    missing, used = await cost(client, lambda: read_rev(client, headers, ns, "doc.txt", last + 1))
    assert missing.status == 404
    assert sum(used.values()) <= 2, used


async def test_a_history_page_is_two_requests_and_the_pages_list_every_version_once(quiet):
    client, headers, ns = quiet
    await versions_of(client, headers, ns, "doc.txt", 30)
    for limit in (1, 7, 50):
        listed = await all_history(client, headers, ns, "doc.txt", limit)
        assert [v["rev"] for v in listed] == list(range(30, 0, -1))
        assert [v["mtime"] for v in listed] == [float(rev) for rev in range(30, 0, -1)]
    for before in (None, 30, 29, 13, 4, 1):
        params = {"versions": "", "limit": "7", **({"before": str(before)} if before else {})}
        response, used = await cost(
            client, partial(client.get, f"/v1/ns/{ns}/files/doc.txt", params=params, headers=headers)
        )
        page = await response.json()
        top = before or 30
        assert [v["rev"] for v in page["versions"]] == list(range(top, max(0, top - 7), -1))
        assert page["cursor"] == (top - 7 if top > 7 else None)
        assert sum(used.values()) <= 2, (before, used)


async def test_history_follows_moves_and_a_file_created_where_one_was_moved_from_is_a_new_file(quiet):
    client, headers, ns = quiet
    data = b"content of rev 2"
    await upload_direct(client, headers, ns, data)
    await commit(client, headers, ns, [version("a.txt", None)])
    await commit(client, headers, ns, [entry("a.txt", data, 1)])
    rev = await versions_of(client, headers, ns, "a.txt", 5, 2)  # rev 7: chunk 1 is open
    moved = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "a.txt", "to": "b/a.txt", "parent_rev": rev}, headers=headers
    )
    assert moved.status == 200, await moved.text()
    tombstone, target = (r["file"] for r in (await moved.json())["results"])
    assert (tombstone["rev"], target["rev"], target["moved_from"]) == (8, 8, "a.txt")
    rev = await versions_of(client, headers, ns, "b/a.txt", 6, 8)  # rev 14: chunks 0 to 2 sealed at b/a.txt
    history = await all_history(client, headers, ns, "b/a.txt", 5)
    assert [(v["rev"], v["path"]) for v in history] == [(r, "b/a.txt") for r in range(14, 7, -1)] + [
        (r, "a.txt") for r in range(7, 0, -1)
    ]
    assert {v["file_id"] for v in history} == {target["file_id"]}
    for old in (2, 7, 8, 10):
        response, used = await cost(client, partial(read_rev, client, headers, ns, "b/a.txt", old))
        assert response.headers["X-Rev"] == str(old)
        assert sum(used.values()) <= 2, used
    assert await (await read_rev(client, headers, ns, "b/a.txt", 2)).read() == data
    # The source's tombstone ends the line there: its history is the file's until the move.
    left = await all_history(client, headers, ns, "a.txt", 3)
    assert [(v["rev"], v["deleted"]) for v in left] == [(8, True)] + [(r, False) for r in range(7, 0, -1)]
    assert left[0]["moved_to"] == "b/a.txt"
    # A file created there now is another file, with a history of its own.
    fresh = (await commit(client, headers, ns, [version("a.txt", None)]))["results"][0]["file"]
    assert fresh["file_id"] != target["file_id"]
    assert [v["rev"] for v in await all_history(client, headers, ns, "a.txt", 3)] == [fresh["rev"]]
    await versions_of(client, headers, ns, "a.txt", 6, fresh["rev"])
    assert len(await all_history(client, headers, ns, "a.txt", 3)) == 7
    # The moved file's history is untouched by it, and moves on with it.
    back = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "b/a.txt", "to": "c.txt", "parent_rev": rev}, headers=headers
    )
    assert back.status == 200, await back.text()
    moved_back = (await back.json())["results"][1]["file"]
    again = await all_history(client, headers, ns, "c.txt", 4)
    assert [v["rev"] for v in again] == [moved_back["rev"], *range(14, 0, -1)]
    restored = await client.post(f"/v1/ns/{ns}/restore", json={"path": "c.txt", "rev": 2}, headers=headers)
    assert restored.status == 200, await restored.text()
    assert await download(client, headers, ns, "c.txt", True) == data


async def test_a_batch_whose_files_all_seal_a_chunk_commits_and_keeps_every_version(quiet, provisioned, aws_session):
    client, headers, ns = quiet
    paths = [f"many/f{i:03d}.txt" for i in range(120)]
    revs: dict[str, int | None] = dict.fromkeys(paths)
    for _ in range(CHUNK):
        answer = await commit(client, headers, ns, [version(p, revs[p]) for p in paths])
        revs = {r["path"]: r["file"]["rev"] for r in answer["results"]}
    # This round seals chunk 0 of every file: two actions a file, so 49 files a transaction, not 98.
    response, used = await cost(
        client,
        lambda: client.post(
            f"/v1/ns/{ns}/commit", json={"entries": [version(p, revs[p]) for p in paths]}, headers=headers
        ),
    )
    assert {r["file"]["rev"] for r in (await response.json())["results"]} == {CHUNK + 1}
    assert used["TransactWriteItems"] == 3, used
    assert await history_chunks(provisioned, aws_session, ns) == len(paths)
    for path in (paths[0], paths[-1]):
        history = await all_history(client, headers, ns, path, 2)
        assert [v["rev"] for v in history] == list(range(CHUNK + 1, 0, -1))
        response, used = await cost(client, partial(read_rev, client, headers, ns, path, 1))
        assert response.headers["X-Rev"] == "1"
        assert sum(used.values()) <= 2, used


async def forget_history(db, table: str, ns: str, path: str) -> None:
    """Make ``path``'s item look as written before the index: no history attributes, no chunks."""
    key = {"pk": {"S": f"NS#{ns}"}, "sk": {"S": f"F#{path}"}}
    await db.update_item(
        TableName=table, Key=key, UpdateExpression="REMOVE hist_base, hist_key, hist_sealed, hist_recent"
    )
    chunks = await db.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
        ExpressionAttributeValues={":pk": {"S": f"NS#{ns}"}, ":h": {"S": "H#"}},
    )
    for item in chunks["Items"]:
        await db.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})


async def test_history_from_before_the_index_is_read_and_indexed_from_the_next_commit_on(
    quiet, provisioned, aws_session
):
    client, headers, ns = quiet
    await versions_of(client, headers, ns, "old.txt", 10)
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        await forget_history(db, provisioned.table, ns, "old.txt")
    for rev in (1, 5, 9):
        response = await read_rev(client, headers, ns, "old.txt", rev)
        assert response.headers["X-Rev"] == str(rev)
    assert [v["rev"] for v in await all_history(client, headers, ns, "old.txt", 4)] == list(range(10, 0, -1))

    await versions_of(client, headers, ns, "old.txt", 7, 10)  # indexed from rev 10 on; chunks 2 and 3 sealed
    listed = await all_history(client, headers, ns, "old.txt", 5)
    assert [(v["rev"], v["mtime"]) for v in listed] == [(rev, float(rev)) for rev in range(17, 0, -1)]
    for rev in (10, 12, 15, 16):
        response, used = await cost(client, partial(read_rev, client, headers, ns, "old.txt", rev))
        assert response.headers["X-Rev"] == str(rev)
        assert sum(used.values()) <= 2, (rev, used)
    response, used = await cost(client, lambda: read_rev(client, headers, ns, "old.txt", 7))
    assert response.headers["X-Rev"] == "7"
    assert used.get("GetItem") == 3, used  # below the index: one journal entry a version, from rev 10 down


async def history_chunks(provisioned, aws_session, ns: str) -> int:
    async with aws_session.client("dynamodb", endpoint_url=provisioned.aws.endpoint_url) as db:
        found = await db.query(
            TableName=provisioned.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
            ExpressionAttributeValues={":pk": {"S": f"NS#{ns}"}, ":h": {"S": "H#"}},
            Select="COUNT",
        )
    return found["Count"]


async def test_chunks_past_a_transactions_bytes_wait_for_their_files_next_commit(
    quiet, provisioned, aws_session, monkeypatch
):
    client, headers, ns = quiet
    paths = [f"f{i}.txt" for i in range(10)]
    revs: dict[str, int | None] = dict.fromkeys(paths)

    async def round_of_commits() -> None:
        nonlocal revs
        answer = await commit(client, headers, ns, [version(p, revs[p]) for p in paths])
        revs = {r["path"]: r["file"]["rev"] for r in answer["results"]}

    for _ in range(CHUNK):
        await round_of_commits()
    monkeypatch.setattr(core_files, "MAX_SEAL_BYTES", 3_500)  # two chunks of 4 small records a transaction
    await round_of_commits()  # every file enters chunk 1: 2 seal chunk 0, 8 keep it in their items
    assert await history_chunks(provisioned, aws_session, ns) == 2
    for path in paths:
        assert [v["rev"] for v in await all_history(client, headers, ns, path, 3)] == list(range(CHUNK + 1, 0, -1))
        response, used = await cost(client, partial(read_rev, client, headers, ns, path, 1))
        assert response.headers["X-Rev"] == "1"
        assert sum(used.values()) <= 2, used
    monkeypatch.setattr(core_files, "MAX_SEAL_BYTES", 2_000_000)
    await round_of_commits()  # the next commit of each file seals what waited
    assert await history_chunks(provisioned, aws_session, ns) == len(paths)
    for path in paths:
        assert [v["rev"] for v in await all_history(client, headers, ns, path, 4)] == list(range(CHUNK + 2, 0, -1))


async def test_a_move_onto_a_tombstone_jumps_revs_and_the_history_still_reads(quiet):
    client, headers, ns = quiet
    old = await versions_of(client, headers, ns, "t.txt", 20)
    await commit(client, headers, ns, [{**version("t.txt", old), "deleted": True}])  # rev 21 at t.txt
    rev = await versions_of(client, headers, ns, "s.txt", 3)
    moved = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "s.txt", "to": "t.txt", "parent_rev": rev}, headers=headers
    )
    target = (await moved.json())["results"][1]["file"]
    assert target["rev"] == 22  # above the tombstone's: the file's chunk 0 sealed, chunks 1 to 4 never used
    await versions_of(client, headers, ns, "t.txt", 3, 22)  # rev 25: chunk 5 (revs 22 to 24) sealed too
    assert [v["rev"] for v in await all_history(client, headers, ns, "t.txt", 2)] == [25, 24, 23, 22, 3, 2, 1]
    for before in (21, 10, 4, 3):  # revs the line skipped, and ones it has
        params = {"versions": "", "before": str(before)}
        page = await (await client.get(f"/v1/ns/{ns}/files/t.txt", params=params, headers=headers)).json()
        assert [v["rev"] for v in page["versions"]] == [r for r in (3, 2, 1) if r <= before]
    assert (await read_rev(client, headers, ns, "t.txt", 10)).status == 404
    assert (await read_rev(client, headers, ns, "t.txt", 2)).headers["X-Rev"] == "2"
