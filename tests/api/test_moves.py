"""Many renames in one request (``POST /v1/ns/{ns}/moves``): each move atomic, all independent, file ids and
history kept, idempotent, a bounded number of transactions for a folder rename, and every way its input
can be wrong."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest

from service.content import EMPTY_HASH
from service.core import files as core_files
from tests.api.files_helpers import commit, entry, upload_direct
from tests.api.helpers import bearer, log_in, problem, sign_up, user
from tests.api.test_batch import aws_requests

DATA = b"moved content"


async def make_files(client, headers, ns: str, paths: list[str]) -> dict[str, dict]:
    """Commit ``paths`` (all holding ``DATA``); their file infos by path."""
    await upload_direct(client, headers, ns, DATA)
    infos: dict[str, dict] = {}
    for start in range(0, len(paths), 1000):
        result = await commit(client, headers, ns, [entry(p, DATA) for p in paths[start : start + 1000]])
        assert {r["status"] for r in result["results"]} == {"committed"}, result
        infos.update({r["path"]: r["file"] for r in result["results"]})
    return infos


async def move(client, headers, ns: str, moves: list[tuple[str, str, int]], key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    body = {"moves": [{"from": a, "to": b, "parent_rev": rev} for a, b, rev in moves]}
    return await client.post(f"/v1/ns/{ns}/moves", json=body, headers={**headers, **extra})


async def moved(client, headers, ns: str, moves: list[tuple[str, str, int]], key: str | None = None) -> dict:
    """Move; 200 unless every move conflicted (409), and the answer's shape in request order."""
    response = await move(client, headers, ns, moves, key)
    body = await response.json()
    everything_conflicted = {r["status"] for r in body["results"]} == {"conflict"}
    assert response.status == (409 if everything_conflicted else 200), body
    assert [(r["from"], r["to"]) for r in body["results"]] == [(a, b) for a, b, _ in moves]
    assert set(body["results"][0]) == {"from", "to", "status", "file", "current", "reason"}
    return body


async def feed(client, headers, ns: str) -> list[dict]:
    changes: list[dict] = []
    cursor = "s0"
    while True:
        page = await (await client.get(f"/v1/ns/{ns}/changes", params={"cursor": cursor}, headers=headers)).json()
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["more"]:
            return changes


async def history(client, headers, ns: str, path: str) -> list[dict]:
    response = await client.get(f"/v1/ns/{ns}/files/{path}", params={"versions": ""}, headers=headers)
    assert response.status == 200, await response.text()
    return (await response.json())["versions"]


async def test_a_move_keeps_the_file_id_and_the_history(client, alice):
    headers, ns = alice
    other = b"second version"
    await upload_direct(client, headers, ns, other)
    first = (await make_files(client, headers, ns, ["notes/a.txt"]))["notes/a.txt"]
    second = (await commit(client, headers, ns, [entry("notes/a.txt", other, 1)]))["results"][0]["file"]
    body = await moved(client, headers, ns, [("notes/a.txt", "archive/2024/a.txt", 2)])
    [result] = body["results"]
    assert (result["status"], result["current"], result["reason"]) == ("committed", None, None)
    target = result["file"]
    assert target["file_id"] == first["file_id"]
    assert target["moved_from"] == "notes/a.txt"
    assert target["content_hash"] == second["content_hash"]
    assert target["rev"] == 3
    assert body["seq"] == target["seq"]
    await problem(await client.get(f"/v1/ns/{ns}/files/notes/a.txt", headers=headers), 404)
    tombstone = (await history(client, headers, ns, "notes/a.txt"))[0]
    assert (tombstone["deleted"], tombstone["moved_to"], tombstone["seq"]) == (True, "archive/2024/a.txt", body["seq"])
    # The history follows the file, also past a later edit (whose previous version shares a journal entry
    # with the source's tombstone).
    edited = await commit(client, headers, ns, [entry("archive/2024/a.txt", DATA, 3)])
    assert edited["results"][0]["file"]["file_id"] == first["file_id"]
    versions = await history(client, headers, ns, "archive/2024/a.txt")
    assert [(v["rev"], v["path"]) for v in versions] == [
        (4, "archive/2024/a.txt"),
        (3, "archive/2024/a.txt"),
        (2, "notes/a.txt"),
        (1, "notes/a.txt"),
    ]
    assert {v["file_id"] for v in versions} == {first["file_id"]}
    old = await client.get(
        f"/v1/ns/{ns}/files/archive/2024/a.txt", params={"rev": "2", "via": "service"}, headers=headers
    )
    assert await old.read() == other


async def test_the_halves_of_a_move_never_land_in_different_transactions(client, alice, monkeypatch):
    headers, ns = alice
    names = [f"a/{i}.txt" for i in range(7)]
    await make_files(client, headers, ns, names)
    # Seven actions a transaction: the head and the journal entry, then room for five files. Two moves and
    # the new folder's marker fill the first; then two moves each, never one and a half.
    monkeypatch.setattr(core_files, "MAX_ACTIONS", 7)
    body = await moved(client, headers, ns, [(n, n.replace("a/", "b/"), 1) for n in names])
    assert [r["status"] for r in body["results"]] == ["committed"] * 7
    by_seq: dict[int, list[dict]] = defaultdict(list)
    for change in await feed(client, headers, ns):
        by_seq[change["seq"]].append(change)
    moves = {seq: changes for seq, changes in by_seq.items() if any(c.get("moved_to") for c in changes)}
    assert sorted(len(changes) for changes in moves.values()) == [2, 4, 4, 4]
    for changes in moves.values():
        sources = sorted(c["moved_to"] for c in changes if c.get("moved_to"))
        targets = sorted(c["path"] for c in changes if c.get("moved_from"))
        assert sources == targets, changes
    listing = await (await client.get(f"/v1/ns/{ns}/files", params={"folder": "b"}, headers=headers)).json()
    assert sorted(f["path"] for f in listing["files"]) == sorted(n.replace("a/", "b/") for n in names)


async def test_moves_are_independent_one_conflict_leaves_the_others(client, alice):
    headers, ns = alice
    infos = await make_files(client, headers, ns, ["ok.txt", "stale.txt", "taken.txt", "exists.txt", "plain", "x.txt"])
    body = await moved(
        client,
        headers,
        ns,
        [
            ("ok.txt", "done/ok.txt", 1),
            ("stale.txt", "done/stale.txt", 7),  # not the current rev
            ("taken.txt", "EXISTS.txt", 1),  # the target exists (ignoring case)
            ("missing.txt", "done/missing.txt", 1),  # no such source
            ("x.txt", "plain/x.txt", 1),  # 'plain' is a file: no folder of that name
        ],
    )
    outcome = {r["from"]: r for r in body["results"]}
    assert outcome["ok.txt"]["status"] == "committed"
    assert outcome["ok.txt"]["file"]["file_id"] == infos["ok.txt"]["file_id"]
    for name in ("stale.txt", "taken.txt", "missing.txt", "x.txt"):
        assert (outcome[name]["status"], outcome[name]["file"]) == ("conflict", None), outcome[name]
    assert outcome["stale.txt"]["reason"] == "the current rev is 1, not 7"
    assert outcome["stale.txt"]["current"]["path"] == "stale.txt"
    assert "exists.txt" in outcome["taken.txt"]["reason"]
    assert outcome["taken.txt"]["current"]["path"] == "exists.txt"
    assert outcome["missing.txt"]["reason"] == "no such file"
    assert outcome["x.txt"]["reason"].startswith("file/folder clash: 'plain' is a file")
    listing = await (await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)).json()
    assert sorted(f["path"] for f in listing["files"]) == [
        "done/ok.txt",
        "exists.txt",
        "plain",
        "stale.txt",
        "taken.txt",
        "x.txt",
    ]


async def test_every_move_conflicting_is_a_409_with_the_same_body(client, alice):
    headers, ns = alice
    body = await moved(client, headers, ns, [("nothing.txt", "b.txt", 1), ("none.txt", "c.txt", 2)])
    assert [r["status"] for r in body["results"]] == ["conflict", "conflict"]


async def test_a_retried_moves_request_moves_nothing_twice(client, alice):
    headers, ns = alice
    await make_files(client, headers, ns, ["r/1.txt", "r/2.txt"])
    moves = [("r/1.txt", "s/1.txt", 1), ("r/2.txt", "s/2.txt", 1), ("r/3.txt", "s/3.txt", 1)]
    first = await moved(client, headers, ns, moves, key="rename-r")
    again = await moved(client, headers, ns, moves, key="rename-r")  # the answer was lost: the same request
    assert again == first
    assert [r["status"] for r in first["results"]] == ["committed", "committed", "conflict"]
    changes = await feed(client, headers, ns)
    assert len([c for c in changes if c.get("moved_from")]) == 2
    # Without the key the same request is (correctly) refused: the sources are gone.
    third = await moved(client, headers, ns, moves)
    assert [r["status"] for r in third["results"]] == ["conflict"] * 3


async def test_a_move_into_its_own_path_and_back_out(client, alice):
    """``x`` -> ``x/y``: the move frees ``x`` in the same transaction, so ``x`` becomes the folder of the
    file it was. ``x/y`` -> ``x`` when ``x/`` holds nothing else: the folder gives way to the file."""
    headers, ns = alice
    info = (await make_files(client, headers, ns, ["x"]))["x"]
    [inward] = (await moved(client, headers, ns, [("x", "x/y", 1)]))["results"]
    assert (inward["status"], inward["file"]["file_id"]) == ("committed", info["file_id"])
    [outward] = (await moved(client, headers, ns, [("x/y", "x", 2)]))["results"]
    assert (outward["status"], outward["file"]["file_id"]) == ("committed", info["file_id"])
    await make_files(client, headers, ns, ["x2/y", "x2/z"])
    [blocked] = (await moved(client, headers, ns, [("x2/y", "x2", 1)]))["results"]
    assert blocked["status"] == "conflict"
    assert blocked["reason"] == "file/folder clash: 'x2' is a folder (it holds 'x2/z'), so it cannot be a file"


async def test_a_folder_rename_of_a_thousand_files_is_two_requests_and_about_21_transactions(client, alice):
    headers, ns = alice
    names = [f"photos/{i:04d}.jpg" for i in range(1000)]
    infos = await make_files(client, headers, ns, names)
    moves = [(n, n.replace("photos/", "pictures/"), 1) for n in names]
    before = await aws_requests(client)
    first = await moved(client, headers, ns, moves[:500], key="rename-1")
    second = await moved(client, headers, ns, moves[500:], key="rename-2")
    after = await aws_requests(client)
    used = {op: after[(service, op)] - before[(service, op)] for service, op in after if service == "dynamodb"}
    results = first["results"] + second["results"]
    assert {r["status"] for r in results} == {"committed"}
    assert all(r["file"]["file_id"] == infos[r["from"]]["file_id"] for r in results)
    # 49 moves (98 file actions) a transaction, but the first, which also writes the new folder's marker:
    # 11 transactions for each request of 500.
    assert used["TransactWriteItems"] == 22, used
    assert sum(used.get(op, 0) for op in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")) == 0, used
    # Reads: per request the membership and the head, one BatchGetItem per 100 keys (sources, targets, the
    # targets' markers), and the head again before each transaction.
    assert used["GetItem"] == 2 * (2 + 11), used
    assert used["BatchGetItem"] <= 2 * 16, used
    print(f"\n1,000-file folder rename: 2 HTTP requests; DynamoDB requests {used} (Query: background pollers)")
    listing = await (
        await client.get(f"/v1/ns/{ns}/files", params={"folder": "pictures", "limit": "1000"}, headers=headers)
    ).json()
    assert len(listing["files"]) == 1000


async def test_the_number_of_moves_is_limited_to_500(client, alice):
    headers, ns = alice
    at_limit = [(f"none/{i}", f"still-none/{i}", 1) for i in range(500)]
    body = await moved(client, headers, ns, at_limit)
    assert len(body["results"]) == 500
    for count in (0, 501):
        past = [(f"none/{i}", f"still-none/{i}", 1) for i in range(count)]
        refused = await problem(await move(client, headers, ns, past), 422)
        assert refused["errors"][0]["path"] == "$.moves"


@pytest.mark.parametrize(
    ("moves", "where"),
    [
        ([("a", "b", 1), ("b", "c", 1)], "$.moves[1].from"),
        ([("a", "c", 1), ("b", "C", 1)], "$.moves[1].to"),
        ([("a", "A", 1)], "$.moves[0].to"),
        ([("a", "b", 1), ("a", "c", 1)], "$.moves[1].from"),
        ([("a", "b", 0)], "$.moves[0].parent_rev"),
        ([("a", "../b", 1)], "$.moves[0].to"),
        ([("a:b", "c", 1)], "$.moves[0].from"),
    ],
)
async def test_bad_moves_are_422_naming_the_field_and_move_nothing(client, alice, moves, where):
    headers, ns = alice
    await make_files(client, headers, ns, ["a", "b"])
    refused = await problem(await move(client, headers, ns, moves), 422)
    assert refused["errors"][0]["path"] == where, refused
    listing = await (await client.get(f"/v1/ns/{ns}/files", headers=headers)).json()
    assert sorted(f["path"] for f in listing["files"]) == ["a", "b"]


async def test_viewers_may_not_move_and_strangers_do_not_see_the_namespace(client, alice):
    headers, _ = alice
    shared = (await (await client.post("/v1/namespaces", json={"name": "team"}, headers=headers)).json())["id"]
    await make_files(client, headers, shared, ["doc.txt"])
    await sign_up(client, "victor")
    await client.put(f"/v1/namespaces/{shared}/members/victor", json={"role": "viewer"}, headers=headers)
    victor = bearer(await log_in(client, "victor"))
    await problem(await move(client, victor, shared, [("doc.txt", "moved.txt", 1)]), 403)
    mallory = await user(client, "mallory")
    await problem(await move(client, mallory, shared, [("doc.txt", "moved.txt", 1)]), 404)
    await problem(await move(client, mallory, uuid.uuid4().hex, [("doc.txt", "moved.txt", 1)]), 404)
    listing = await (await client.get(f"/v1/ns/{shared}/files", headers=headers)).json()
    assert [f["path"] for f in listing["files"]] == ["doc.txt"]


async def test_the_route_is_in_the_openapi_document(client):
    spec = await (await client.get("/v1/openapi.json")).json()
    operation = spec["paths"]["/v1/ns/{ns}/moves"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/MovesRequest")
    for status in ("200", "409"):
        assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/MovesResponse"
        )
    result = spec["components"]["schemas"]["MoveResultOut"]
    assert set(result["properties"]) == {"from", "to", "status", "file", "current", "reason"}


async def test_a_move_based_on_a_rev_before_the_sources_deletion_conflicts_and_one_after_it_is_404(client, alice):
    headers, ns = alice
    await commit(client, headers, ns, [{"path": "doc.txt", "content_hash": EMPTY_HASH, "size": 0, "parent_rev": None}])
    deleted = await client.delete(f"/v1/ns/{ns}/files/doc.txt", headers={**headers, "If-Match": "1"})
    assert deleted.status in (200, 204), await deleted.text()
    stale = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "doc.txt", "to": "new.txt", "parent_rev": 1}, headers=headers
    )
    assert stale.status == 409, await stale.text()  # it lost the race to the deletion: told so, as a commit is
    assert {r["status"] for r in (await stale.json())["results"]} == {"conflict"}
    knowing = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "doc.txt", "to": "new.txt", "parent_rev": 2}, headers=headers
    )
    await problem(knowing, 404)
