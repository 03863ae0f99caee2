"""Compare and the change feed over HTTP against the emulator."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

import pytest

from service.paths import path_key
from tests.api.files_helpers import commit, entry, home, independent_hash, upload_direct
from tests.api.helpers import problem, user
from tests.api.test_health import metric


async def compare(client, headers, ns, entries, **extra):
    response = await client.post(f"/v1/ns/{ns}/compare", json={"entries": entries, **extra}, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


def manifest(path, data=b"", rev=None, synced=None):
    return {
        "path": path,
        "content_hash": independent_hash(data) if data else "",
        "synced_rev": rev,
        "synced_hash": independent_hash(synced) if synced else None,
    }


async def test_compare_finds_what_to_download_upload_and_resolve(client, alice):
    headers, ns = alice
    for data in (b"same", b"old", b"new", b"theirs", b"gone"):
        await upload_direct(client, headers, ns, data)
    await commit(
        client,
        headers,
        ns,
        [
            entry(p, d)
            for p, d in [
                ("same.txt", b"same"),
                ("edited-there.txt", b"old"),
                ("both.txt", b"old"),
                ("server-only.txt", b"theirs"),
                ("deleted-there.txt", b"gone"),
            ]
        ],
    )
    await commit(client, headers, ns, [entry("edited-there.txt", b"new", 1), entry("both.txt", b"new", 1)])
    deletion = {"path": "deleted-there.txt", "deleted": True, "parent_rev": 1}
    await commit(client, headers, ns, [deletion])
    result = await compare(
        client,
        headers,
        ns,
        [
            manifest("same.txt", b"same", 1, b"same"),
            manifest("edited-there.txt", b"old", 1, b"old"),
            manifest("both.txt", b"mine", 1, b"old"),
            manifest("deleted-there.txt", b"gone", 1, b"gone"),
            manifest("client-only.txt", b"local"),
        ],
    )
    actions = {i["path"]: i["action"] for i in result["items"]}
    assert actions == {
        "edited-there.txt": "download",
        "both.txt": "conflict",
        "deleted-there.txt": "deleted",
        "client-only.txt": "upload",
        "server-only.txt": "download",
    }
    assert result["up_to_date"] == 1
    assert result["cursor"].startswith("s")
    download = next(i for i in result["items"] if i["path"] == "edited-there.txt")
    assert download["file"]["content_hash"] == independent_hash(b"new")

    lookup = await compare(client, headers, ns, [manifest("same.txt", b"same", 1, b"same")], ranged=False)
    assert lookup["items"] == []
    assert lookup["up_to_date"] == 1


async def test_a_paged_compare_covers_the_namespace(client, alice):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"x")
    names = [f"dir{i % 7}/file-{i:04d}.txt" for i in range(300)]
    await commit(client, headers, ns, [entry(n, b"x") for n in names])
    # The client knows the even files; it pages its sorted manifest 64 entries at a time.
    known = sorted((n for i, n in enumerate(names) if i % 2 == 0), key=path_key)
    pages = [known[i : i + 64] for i in range(0, len(known), 64)]
    downloads, up_to_date, after = set(), 0, None
    for index, page in enumerate(pages):
        through = None if index == len(pages) - 1 else path_key(page[-1])
        result = await compare(
            client, headers, ns, [manifest(n, b"x", 1, b"x") for n in page], after=after, through=through
        )
        downloads |= {i["path"] for i in result["items"] if i["action"] == "download"}
        up_to_date += result["up_to_date"]
        after = through
    assert up_to_date == len(known)
    assert downloads == set(names) - set(known)


async def test_compare_input_limits(client, alice):
    headers, ns = alice
    too_many = [manifest(f"f{i}", b"x") for i in range(5001)]
    await problem(await client.post(f"/v1/ns/{ns}/compare", json={"entries": too_many}, headers=headers), 422)
    outside = {"entries": [manifest("a.txt", b"x")], "after": "b", "through": "c"}
    body = await problem(await client.post(f"/v1/ns/{ns}/compare", json=outside, headers=headers), 422)
    assert body["errors"][0]["path"] == "$.entries[0].path"
    twins = {"entries": [manifest("A.txt", b"x"), manifest("a.txt", b"x")]}
    await problem(await client.post(f"/v1/ns/{ns}/compare", json=twins, headers=headers), 422)
    bad_path = {"entries": [manifest("../x", b"x")]}
    await problem(await client.post(f"/v1/ns/{ns}/compare", json=bad_path, headers=headers), 422)


async def test_feed_pages_through_commits_in_order(client, alice):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"v")
    start = (await compare(client, headers, ns, []))["cursor"]
    for i in range(5):
        await commit(client, headers, ns, [entry(f"f{i}.txt", b"v")])
    seen, cursor = [], start
    while True:
        page = await (await client.get(f"/v1/ns/{ns}/changes?cursor={cursor}&limit=2", headers=headers)).json()
        seen += [c["path"] for c in page["changes"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert seen == [f"f{i}.txt" for i in range(5)]
    empty = await (await client.get(f"/v1/ns/{ns}/changes?cursor={cursor}", headers=headers)).json()
    assert empty == {"changes": [], "cursor": cursor, "more": False, "backoff_seconds": 0.0}


@pytest.mark.parametrize("cursor", ["garbage", "s-1", "s01", "s" + "9" * 13, "s999999"])
async def test_bad_cursors_say_to_do_a_full_compare(client, alice, cursor):
    headers, ns = alice
    body = await problem(await client.get(f"/v1/ns/{ns}/changes?cursor={cursor}", headers=headers), 400)
    assert body["type"] == "/v1/docs#problem-cursor-invalid"
    assert "compare" in body["detail"]


async def test_feed_parameters_are_checked(client, alice):
    headers, ns = alice
    for query in ("limit=0", "limit=101", "wait=61", "wait=-1", "limit=abc"):
        await problem(await client.get(f"/v1/ns/{ns}/changes?{query}", headers=headers), 422)


async def test_long_poll_returns_as_soon_as_something_changes(client, alice):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"v")
    cursor = (await compare(client, headers, ns, []))["cursor"]

    async def later():
        await asyncio.sleep(0.5)
        await commit(client, headers, ns, [entry("late.txt", b"v")])

    started = time.monotonic()
    writer = asyncio.create_task(later())
    page = await (await client.get(f"/v1/ns/{ns}/changes?cursor={cursor}&wait=20", headers=headers)).json()
    elapsed = time.monotonic() - started
    await writer
    assert [c["path"] for c in page["changes"]] == ["late.txt"]
    assert elapsed < 5

    started = time.monotonic()
    idle = await (await client.get(f"/v1/ns/{ns}/changes?cursor={page['cursor']}&wait=1", headers=headers)).json()
    assert idle["changes"] == []
    assert 0.9 < time.monotonic() - started < 5


async def test_a_no_change_sync_is_one_request_and_at_most_two_dynamodb_reads(provisioned, make_client, app_factory):
    # The app's own revocation poller reads DynamoDB too: polled once at start, then not within this test, so
    # what the metrics count is the request's own cost.
    quiet = replace(provisioned, auth=replace(provisioned.auth, revocation_poll_seconds=3600))
    client = await make_client(app_factory(quiet))
    headers = await user(client, "alice")
    ns = await home(client, headers)
    await commit(client, headers, ns, [entry("one.txt", b"")])  # a cursor past the start: it must be proven
    cursor = (await compare(client, headers, ns, []))["cursor"]
    assert cursor != "s0"
    before = await (await client.get("/metrics")).text()
    response = await client.get(f"/v1/ns/{ns}/changes?cursor={cursor}", headers=headers)
    assert (await response.json())["changes"] == []
    after = await (await client.get("/metrics")).text()
    operations = ("GetItem", "Query", "BatchGetItem")
    used = sum(
        metric(after, "filesync_aws_requests_total", service="dynamodb", operation=op)
        - metric(before, "filesync_aws_requests_total", service="dynamodb", operation=op)
        for op in operations
    )
    assert used <= 2


async def test_the_feed_never_skips_or_repeats_while_workers_commit_concurrently(
    client, alice, provisioned, make_client, app_factory
):
    """Four workers (separate apps on the same table) commit in parallel; a reader long-polls the feed."""
    headers, ns = alice
    workers = [client] + [await make_client(app_factory(provisioned)) for _ in range(3)]
    await upload_direct(client, headers, ns, b"payload")
    cursor = (await compare(client, headers, ns, []))["cursor"]
    per_worker, rng = 12, random.Random(7)
    expected = {f"w{w}/f{i}.txt" for w in range(len(workers)) for i in range(per_worker)}
    seen: list[tuple[int, str]] = []
    done = asyncio.Event()

    async def committer(index: int, worker) -> None:
        for i in range(per_worker):
            batch = [entry(f"w{index}/f{i}.txt", b"payload")]
            await commit(worker, headers, ns, batch, key=f"w{index}-{i}")
            await asyncio.sleep(rng.random() * 0.02)

    async def reader() -> None:
        nonlocal cursor
        while not (done.is_set() and len(seen) >= len(expected)):
            url = f"/v1/ns/{ns}/changes?cursor={cursor}&wait=2&limit=7"
            page = await (await workers[-1].get(url, headers=headers)).json()
            seen.extend((c["seq"], c["path"]) for c in page["changes"])
            cursor = page["cursor"]

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(committer(i, w) for i, w in enumerate(workers)))
    done.set()
    try:
        await asyncio.wait_for(reading, 30)
    except TimeoutError:
        missing = expected - {p for _, p in seen}
        raise AssertionError(f"the reader never saw {sorted(missing)[:10]} ({len(missing)} missing)") from None
    paths = [p for _, p in seen]
    assert len(paths) == len(set(paths)), "a change was delivered twice"
    assert set(paths) == expected, "a committed change was skipped"
    seqs = [s for s, _ in seen]
    assert seqs == sorted(seqs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the sequence has a gap"
