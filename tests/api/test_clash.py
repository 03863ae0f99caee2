"""A file and a folder never share a path, whatever the way in: commit, a batch of small files, the streaming
PUT, a move, many moves, a restore. Both directions (a file where a folder is, a folder where a file is),
ignoring case, within one request, across transactions, and under racing commits."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest

from service.core import files as core_files
from tests.api.files_helpers import commit, entry, home, upload_direct
from tests.api.helpers import problem, user
from tests.api.test_batch import aws_requests, send
from tests.api.test_moves import moved

DATA = b"clash test body"


def folder_clash(path: str, holds: str) -> str:
    return f"file/folder clash: {path!r} is a folder (it holds {holds!r}), so it cannot be a file"


def file_clash(file: str, path: str) -> str:
    return f"file/folder clash: {file!r} is a file, so {path!r} cannot be created under it"


async def put(client, headers, ns: str, paths: list[str]) -> dict[str, dict]:
    """Commit ``paths`` (each must commit); their versions by path."""
    await upload_direct(client, headers, ns, DATA)
    result = await commit(client, headers, ns, [entry(p, DATA) for p in paths])
    assert {r["status"] for r in result["results"]} == {"committed"}, result
    return {r["path"]: r["file"] for r in result["results"]}


async def tree(client, headers, ns: str) -> list[str]:
    listing = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)
    return sorted(f["path"] for f in (await listing.json())["files"])


async def test_commit_refuses_a_file_where_a_folder_is(client, alice):
    headers, ns = alice
    await put(client, headers, ns, ["docs/2024/a.txt"])
    for path, holds in (("docs", "docs/2024/a.txt"), ("docs/2024", "docs/2024/a.txt"), ("DOCS", "docs/2024/a.txt")):
        result = await commit(client, headers, ns, [entry(path, DATA)])  # 409: every entry conflicted
        [answer] = result["results"]
        assert (answer["status"], answer["reason"], answer.get("file")) == ("conflict", folder_clash(path, holds), None)
    assert await tree(client, headers, ns) == ["docs/2024/a.txt"]


async def test_commit_refuses_a_folder_where_a_file_is(client, alice):
    headers, ns = alice
    await put(client, headers, ns, ["Report", "notes/todo"])
    for path, file in (("Report/a.txt", "Report"), ("report/deep/er/b.txt", "Report"), ("NOTES/Todo/x", "notes/todo")):
        [answer] = (await commit(client, headers, ns, [entry(path, DATA)]))["results"]
        assert (answer["status"], answer["reason"]) == ("conflict", file_clash(file, path))
    assert await tree(client, headers, ns) == ["Report", "notes/todo"]


@pytest.mark.parametrize(
    ("paths", "winner", "loser", "reason"),
    [
        (["clash", "clash/inner.txt"], "clash", "clash/inner.txt", file_clash("clash", "clash/inner.txt")),
        (["clash/inner.txt", "Clash"], "clash/inner.txt", "Clash", folder_clash("Clash", "clash/inner.txt")),
    ],
)
async def test_within_one_request_the_earlier_entry_wins(client, alice, paths, winner, loser, reason):
    headers, ns = alice
    await upload_direct(client, headers, ns, DATA)
    result = await commit(client, headers, ns, [entry("other.txt", DATA)] + [entry(p, DATA) for p in paths])
    answers = {r["path"]: r for r in result["results"]}
    assert answers["other.txt"]["status"] == answers[winner]["status"] == "committed"
    assert (answers[loser]["status"], answers[loser]["reason"]) == ("conflict", reason)
    assert await tree(client, headers, ns) == sorted(["other.txt", winner])


async def test_across_the_transactions_of_one_request_too(client, alice, monkeypatch):
    headers, ns = alice
    await put(client, headers, ns, ["seed"])  # the content verified (and recorded) before
    # Three actions a transaction for files and markers (beside the head, the journal and the owner's usage).
    monkeypatch.setattr(core_files, "MAX_ACTIONS", 6)
    paths = ["c/1", "c/2", "c/3", "x", "y", "c", "x/1"]
    result = await commit(client, headers, ns, [entry(p, DATA) for p in paths])
    statuses = {r["path"]: (r["status"], r.get("reason")) for r in result["results"]}
    assert statuses == {
        "c/1": ("committed", None),
        "c/2": ("committed", None),
        "c/3": ("committed", None),
        "x": ("committed", None),
        "y": ("committed", None),
        "c": ("conflict", folder_clash("c", "c/1")),
        "x/1": ("conflict", file_clash("x", "x/1")),
    }
    seq = {r["path"]: r["file"]["seq"] for r in result["results"] if "file" in r}
    assert seq["c/1"] == seq["c/2"] < seq["c/3"] == seq["x"] == seq["y"]  # c and x/1 were decided after both


async def test_a_delete_in_the_same_request_frees_the_path(client, alice, monkeypatch):
    headers, ns = alice
    versions = await put(client, headers, ns, ["spot", "dir/only.txt"])
    monkeypatch.setattr(core_files, "MAX_ACTIONS", 4)  # deletions go first, even across transactions
    result = await commit(
        client,
        headers,
        ns,
        [
            entry("spot/x.txt", DATA),
            entry("dir", DATA),
            {"path": "dir/only.txt", "deleted": True, "parent_rev": versions["dir/only.txt"]["rev"]},
            {"path": "spot", "deleted": True, "parent_rev": versions["spot"]["rev"]},
        ],
    )
    assert [r["status"] for r in result["results"]] == ["committed"] * 4, result
    assert await tree(client, headers, ns) == ["dir", "spot/x.txt"]
    # A delete that conflicts frees nothing.
    stale = await commit(
        client, headers, ns, [entry("dir/again.txt", DATA), {"path": "dir", "deleted": True, "parent_rev": 9}]
    )
    assert [(r["status"], r["reason"]) for r in stale["results"]] == [
        ("conflict", file_clash("dir", "dir/again.txt")),
        ("conflict", "the current rev is 1, not 9"),
    ]


async def test_once_a_folder_is_emptied_a_file_may_take_its_path(client, alice):
    """The folder's marker outlives its last file: the service looks and finds nothing live under it."""
    headers, ns = alice
    versions = await put(client, headers, ns, ["gone/a.txt", "gone/sub/b.txt"])
    deletes = [{"path": p, "deleted": True, "parent_rev": v["rev"]} for p, v in versions.items()]
    await commit(client, headers, ns, deletes)
    [answer] = (await commit(client, headers, ns, [entry("gone", DATA)]))["results"]
    assert answer["status"] == "committed", answer
    [answer] = (await commit(client, headers, ns, [entry("gone/c.txt", DATA)]))["results"]
    assert (answer["status"], answer["reason"]) == ("conflict", file_clash("gone", "gone/c.txt"))
    # And back: the file deleted, the folder may come again.
    await commit(client, headers, ns, [{"path": "gone", "deleted": True, "parent_rev": 1}])
    [answer] = (await commit(client, headers, ns, [entry("gone/c.txt", DATA)]))["results"]
    assert answer["status"] == "committed", answer


async def test_a_batch_of_small_files_refuses_both_ways(client, alice):
    headers, ns = alice
    first = await send(client, headers, ns, [entry("b/x.txt", DATA), entry("f", DATA)], [DATA, DATA])
    assert first.status == 200, await first.text()
    second = await send(client, headers, ns, [entry("B", DATA), entry("f/y.txt", DATA)], [DATA, DATA])
    assert second.status == 409, await second.text()
    answers = (await second.json())["results"]
    assert [(r["status"], r["reason"]) for r in answers] == [
        ("conflict", folder_clash("B", "b/x.txt")),
        ("conflict", file_clash("f", "f/y.txt")),
    ]
    mixed = await send(client, headers, ns, [entry("ok.txt", DATA), entry("b", DATA)], [DATA, DATA])
    assert mixed.status == 200
    assert [r["status"] for r in (await mixed.json())["results"]] == ["committed", "conflict"]
    assert await tree(client, headers, ns) == ["b/x.txt", "f", "ok.txt"]


async def test_the_streaming_put_answers_409_and_shows_nothing(client, alice):
    headers, ns = alice
    await put(client, headers, ns, ["s/x.txt", "plain.txt"])
    for path, reason in (("S", folder_clash("S", "s/x.txt")), ("plain.txt/y", file_clash("plain.txt", "plain.txt/y"))):
        response = await client.put(f"/v1/ns/{ns}/files/{path}", data=io.BytesIO(b"streamed"), headers=headers)
        body = await problem(response, 409)
        assert reason in body["detail"]
        assert "commit it at another path" in body["detail"]
        await problem(await client.get(f"/v1/ns/{ns}/files/{path}", headers=headers), 404)
    assert await tree(client, headers, ns) == ["plain.txt", "s/x.txt"]


async def test_a_move_refuses_both_ways(client, alice):
    headers, ns = alice
    await put(client, headers, ns, ["a.txt", "b.txt", "dir/in.txt", "file"])
    single = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "a.txt", "to": "DIR", "parent_rev": 1}, headers=headers
    )
    assert single.status == 409
    assert [r["reason"] for r in (await single.json())["results"]] == [
        "the other half of the move conflicted",
        folder_clash("DIR", "dir/in.txt"),
    ]
    body = await moved(client, headers, ns, [("a.txt", "dir", 1), ("b.txt", "file/b.txt", 1)])
    assert [(r["status"], r["reason"]) for r in body["results"]] == [
        ("conflict", folder_clash("dir", "dir/in.txt")),
        ("conflict", file_clash("file", "file/b.txt")),
    ]
    assert await tree(client, headers, ns) == ["a.txt", "b.txt", "dir/in.txt", "file"]


async def test_a_restore_refuses_both_ways(client, alice):
    headers, ns = alice
    await put(client, headers, ns, ["r.txt", "q/a.txt"])
    for path in ("r.txt", "q/a.txt"):
        await commit(client, headers, ns, [{"path": path, "deleted": True, "parent_rev": 1}])
    await put(client, headers, ns, ["r.txt/inner", "q"])  # both paths free again: their files were deleted
    for path, reason in (("r.txt", folder_clash("r.txt", "r.txt/inner")), ("q/a.txt", file_clash("q", "q/a.txt"))):
        response = await client.post(f"/v1/ns/{ns}/restore", json={"path": path, "rev": 1}, headers=headers)
        assert response.status == 409, await response.text()
        assert (await response.json())["reason"] == reason
    assert await tree(client, headers, ns) == ["q", "r.txt/inner"]


async def test_the_check_costs_no_query_in_the_common_case(provisioned, make_client, app_factory):
    """New files in folders old and new, and new versions: reads batched with the commit's own (no Query);
    only a file created where a folder is (or was) costs one. The revocation feed's poll, the one periodic
    Query, is slowed so that the service's Query count is the commit's."""
    quiet = dataclasses.replace(provisioned, auth=dataclasses.replace(provisioned.auth, revocation_poll_seconds=3600))
    client = await make_client(app_factory(quiet))
    headers = await user(client, "alice")
    ns = await home(client, headers)
    versions = await put(client, headers, ns, ["a/x", "b/y", "gone/z"])
    before = await aws_requests(client)
    paths = [f"{folder}/{i:03d}" for folder in ("a", "b", "c/d") for i in range(100)]
    result = await commit(client, headers, ns, [entry(p, DATA) for p in paths] + [entry("a/x", DATA, 1)])
    assert {r["status"] for r in result["results"]} == {"committed"}
    after = await aws_requests(client)
    used = {op: after[("dynamodb", op)] - before[("dynamodb", op)] for service, op in after if service == "dynamodb"}
    # 301 file items, 300 markers of new paths, the folders a, b, c, c/d (item and marker): 609 keys.
    assert (used["Query"], used["BatchGetItem"], used["TransactWriteItems"]) == (0, 7, 4), used
    # The membership, the head before the read, the head per transaction, the owner's usage (once a request).
    assert used["GetItem"] == 1 + 1 + 4 + 1, used
    await commit(client, headers, ns, [{"path": "gone/z", "deleted": True, "parent_rev": versions["gone/z"]["rev"]}])
    before = await aws_requests(client)
    [answer] = (await commit(client, headers, ns, [entry("gone", DATA)]))["results"]
    assert answer["status"] == "committed"
    after = await aws_requests(client)
    assert after[("dynamodb", "Query")] - before[("dynamodb", "Query")] == 1


async def test_a_path_too_deep_for_its_markers_to_fit_a_transaction(client, alice):
    headers, ns = alice
    deep = "/".join(["d"] * 120) + "/leaf.txt"  # 120 folders: more markers than one transaction holds
    before = await aws_requests(client)
    await put(client, headers, ns, [deep])
    after = await aws_requests(client)
    assert after[("dynamodb", "BatchWriteItem")] - before[("dynamodb", "BatchWriteItem")] == 5  # 120 markers, 25 each
    middle = "/".join(["d"] * 60)
    [answer] = (await commit(client, headers, ns, [entry(middle, DATA)]))["results"]
    assert (answer["status"], answer["reason"]) == ("conflict", folder_clash(middle, deep))


async def test_new_folders_are_counted_within_the_transaction_limit(client, alice):
    """One file in each of 300 new folders: a file and a marker each, 49 a transaction (DynamoDB, and the
    emulator, refuse more than 100 actions)."""
    headers, ns = alice
    before = await aws_requests(client)
    await put(client, headers, ns, [f"f{i:03d}/x.txt" for i in range(300)])
    after = await aws_requests(client)
    assert after[("dynamodb", "TransactWriteItems")] - before[("dynamodb", "TransactWriteItems")] == 7


async def test_the_folders_one_request_may_name_are_limited(client, alice, monkeypatch):
    headers, ns = alice
    await upload_direct(client, headers, ns, DATA)
    monkeypatch.setattr(core_files, "MAX_REQUEST_FOLDERS", 5)
    at_limit = ["a/1", "b/1", "c"]  # the folders a, b and the new paths a/1, b/1, c
    assert [
        r["status"] for r in (await commit(client, headers, ns, [entry(p, DATA) for p in at_limit]))["results"]
    ] == ["committed"] * 3
    past = await client.post(
        f"/v1/ns/{ns}/commit", json={"entries": [entry(p, DATA) for p in ["d/1", "e/1", "f/1"]]}, headers=headers
    )
    assert (await problem(past, 422))["errors"][0]["path"] == "$.entries"
    moves = [{"from": "a/1", "to": "g/1", "parent_rev": 1}, {"from": "b/1", "to": "h/i/j/k", "parent_rev": 1}]
    refused = await client.post(f"/v1/ns/{ns}/moves", json={"moves": moves}, headers=headers)
    assert (await problem(refused, 422))["errors"][0]["path"] == "$.moves"
    assert await tree(client, headers, ns) == ["a/1", "b/1", "c"]


async def test_racing_commits_never_leave_a_file_and_a_folder_at_one_path(provisioned, make_client, app_factory):
    """A file ``k`` and a file ``k/x`` committed at once through two workers: each read sees neither, so only
    the head condition and the re-read it forces keep them apart. Exactly one wins, every round."""
    one = await make_client(app_factory(provisioned))
    two = await make_client(app_factory(provisioned))
    alice = await user(one, "alice")
    ns = (await (await one.get("/v1/namespaces", headers=alice)).json())["namespaces"][0]["id"]
    await upload_direct(one, alice, ns, DATA)

    async def create(client, path: str) -> str:
        response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry(path, DATA)]}, headers=alice)
        return (await response.json())["results"][0]["status"]

    for round_ in range(8):
        file, inner = f"k{round_}", f"k{round_}/x"
        first, second = (one, two) if round_ % 2 else (two, one)
        outcomes = list(await asyncio.gather(create(first, file), create(second, inner), create(one, f"K{round_}/y")))
        # Either the file won (and both files under it lost) or it lost (and they, apart, both won).
        assert outcomes in (["committed", "conflict", "conflict"], ["conflict", "committed", "committed"]), outcomes
    files = await tree(one, alice, ns)
    for round_ in range(8):
        assert (f"k{round_}" in files) != any(f.lower().startswith(f"k{round_}/") for f in files), files
