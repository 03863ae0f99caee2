"""Files end to end over HTTP against the emulator: every way in, commits, conflicts, versions, downloads."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import unicodedata

import aioboto3
import pytest

from service.content import EMPTY_HASH
from service.settings import FileSettings
from tests.api.files_helpers import (
    body,
    commit,
    download,
    entry,
    home,
    independent_hash,
    upload_direct,
    upload_presigned,
)
from tests.api.helpers import bearer, log_in, problem, sign_up, user
from tests.conftest import TEST_BLOCK_SIZE

SIZES = {
    "empty": 0,
    "one-byte": 1,
    "one-block": TEST_BLOCK_SIZE,
    "multi-block-40MiB": 8 * TEST_BLOCK_SIZE + 12345,
}


def claim_of(data: bytes) -> dict:
    return {"content_hash": independent_hash(data), "size": len(data)}


@pytest.mark.parametrize("size_name", list(SIZES))
@pytest.mark.parametrize("way", ["direct", "presigned", "streaming"])
async def test_every_way_in_round_trips(client, alice, way: str, size_name: str):
    headers, ns = alice
    data = body(SIZES[size_name])
    path = f"in/{way}/{size_name}.bin"
    if way == "streaming":
        response = await client.put(f"/v1/ns/{ns}/files/{path}", data=io.BytesIO(data), headers=headers)
        assert response.status == 201, await response.text()
        info = await response.json()
    else:
        await (upload_direct if way == "direct" else upload_presigned)(client, headers, ns, data)
        result = (await commit(client, headers, ns, [entry(path, data)]))["results"][0]
        assert result["status"] == "committed", result
        info = result["file"]
    assert info["content_hash"] == independent_hash(data)
    assert info["size"] == len(data)
    assert info["rev"] == 1
    for via_service in (False, True):
        assert await download(client, headers, ns, path, via_service) == data
    head = await client.head(f"/v1/ns/{ns}/files/{path}", headers=headers)
    assert head.headers["X-Content-Hash"] == independent_hash(data)
    assert int(head.headers["Content-Length"]) == len(data)


async def test_streaming_with_the_expected_hash_goes_straight_to_the_blob(client, alice):
    headers, ns = alice
    data = body(2 * TEST_BLOCK_SIZE + 7)
    response = await client.put(
        f"/v1/ns/{ns}/files/named.bin",
        data=io.BytesIO(data),
        headers={**headers, "X-Content-Hash": independent_hash(data)},
    )
    assert response.status == 201, await response.text()
    assert await download(client, headers, ns, "named.bin", True) == data


@pytest.mark.parametrize("size", [10, 2 * TEST_BLOCK_SIZE + 7])
async def test_streaming_with_a_wrong_expected_hash_stores_and_commits_nothing(client, alice, size):
    headers, ns = alice
    data = body(size)
    wrong = independent_hash(body(size))
    response = await client.put(
        f"/v1/ns/{ns}/files/wrong.bin", data=io.BytesIO(data), headers={**headers, "X-Content-Hash": wrong}
    )
    await problem(response, 422)
    await problem(await client.get(f"/v1/ns/{ns}/files/wrong.bin", headers=headers), 404)
    missing = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [wrong]}, headers=headers)
    assert (await missing.json())["missing"] == [wrong]


@pytest.mark.parametrize("verify", ["read", "checksum"])
@pytest.mark.parametrize("size", [100, 2 * TEST_BLOCK_SIZE + 1])
async def test_a_claimed_hash_that_does_not_match_is_refused_and_nothing_is_written(
    provisioned, make_client, app_factory, verify, size
):
    settings = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, verify=verify))
    client = await make_client(app_factory(settings))
    headers = await user(client, "mallory")
    ns = await home(client, headers)
    honest, claimed = body(size), body(size)
    # Upload honest bytes (with honest S3 checksums) under the key of other content.
    await upload_direct(client, headers, ns, honest)
    forged = entry("forged.bin", claimed)
    real_key = independent_hash(honest)
    creds = await (await client.post("/v1/credentials", headers=headers)).json()
    session = aioboto3.Session(
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        region_name="us-east-1",
    )
    async with session.client("s3", endpoint_url=creds["endpoint_url"]) as s3:
        await s3.copy_object(
            Bucket=creds["bucket"],
            Key=f"ns/{ns}/blobs/{forged['content_hash']}",
            CopySource={"Bucket": creds["bucket"], "Key": f"ns/{ns}/blobs/{real_key}"},
        )
    response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [forged]}, headers=headers)
    body_ = await problem(response, 422)
    assert body_["errors"][0]["path"] == "$.entries[0].content_hash"
    await problem(await client.get(f"/v1/ns/{ns}/files/forged.bin", headers=headers), 404)
    # The bad object was removed, so it cannot poison deduplication.
    check = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [forged["content_hash"]]}, headers=headers)
    assert (await check.json())["missing"] == [forged["content_hash"]]


async def test_committing_content_that_was_never_uploaded_is_422(client, alice):
    headers, ns = alice
    response = await client.post(
        f"/v1/ns/{ns}/commit", json={"entries": [entry("ghost.txt", b"never sent")]}, headers=headers
    )
    body_ = await problem(response, 422)
    assert "upload it first" in body_["errors"][0]["message"]


async def test_two_commits_racing_on_one_parent_one_wins(client, alice):
    headers, ns = alice
    base, mine, theirs = body(10), body(11), body(12)
    for data in (base, mine, theirs):
        await upload_direct(client, headers, ns, data)
    first = (await commit(client, headers, ns, [entry("race.txt", base)]))["results"][0]["file"]
    results = await asyncio.gather(
        commit(client, headers, ns, [entry("race.txt", mine, first["rev"])]),
        commit(client, headers, ns, [entry("race.txt", theirs, first["rev"])]),
    )
    statuses = sorted(r["results"][0]["status"] for r in results)
    assert statuses == ["committed", "conflict"]
    winner = next(r["results"][0] for r in results if r["results"][0]["status"] == "committed")
    loser = next(r["results"][0] for r in results if r["results"][0]["status"] == "conflict")
    assert loser["current"]["rev"] == winner["file"]["rev"] == 2
    assert loser["current"]["content_hash"] == winner["file"]["content_hash"]


async def test_many_concurrent_writers_on_one_file_never_lose_a_version(client, alice):
    headers, ns = alice
    bodies = [body(20 + i) for i in range(8)]
    for data in bodies:
        await upload_direct(client, headers, ns, data)
    await commit(client, headers, ns, [entry("hot.txt", bodies[0])])

    async def writer(data: bytes) -> int:
        for _ in range(50):
            head = await client.head(f"/v1/ns/{ns}/files/hot.txt", headers=headers)
            rev = int(head.headers["X-Rev"])
            result = (await commit(client, headers, ns, [entry("hot.txt", data, rev)]))["results"][0]
            if result["status"] == "committed":
                return result["file"]["rev"]
        raise AssertionError("never committed")

    revs = await asyncio.gather(*(writer(d) for d in bodies[1:]))
    assert sorted(revs) == list(range(2, 2 + len(bodies) - 1))
    history = await (await client.get(f"/v1/ns/{ns}/files/hot.txt?versions&limit=100", headers=headers)).json()
    assert [v["rev"] for v in history["versions"]] == list(range(len(bodies), 0, -1))


async def test_a_retried_commit_does_not_create_a_second_version(client, alice):
    headers, ns = alice
    data = body(64)
    await upload_direct(client, headers, ns, data)
    first = await commit(client, headers, ns, [entry("once.txt", data)], key="retry-key-1")
    # The response was "dropped": the client sends exactly the same request again.
    again = await commit(client, headers, ns, [entry("once.txt", data)], key="retry-key-1")
    assert again["results"][0]["status"] == "committed"
    assert again["results"][0]["file"]["rev"] == first["results"][0]["file"]["rev"] == 1
    history = await (await client.get(f"/v1/ns/{ns}/files/once.txt?versions", headers=headers)).json()
    assert len(history["versions"]) == 1
    # Without the key, the same request is (correctly) a conflict: the file exists now.
    third = await commit(client, headers, ns, [entry("once.txt", data)])
    assert third["results"][0]["status"] == "conflict"


async def test_a_large_batch_commits_in_one_request(client, alice):
    headers, ns = alice
    data = b"shared small body"
    await upload_direct(client, headers, ns, data)
    entries = [entry(f"batch/{i:04d}.txt", data) for i in range(1000)]
    result = await commit(client, headers, ns, entries, key="big-batch")
    assert {r["status"] for r in result["results"]} == {"committed"}
    listing = await (await client.get(f"/v1/ns/{ns}/files?folder=batch&limit=1000", headers=headers)).json()
    assert len(listing["files"]) == 1000


async def test_versions_restore_delete_and_move(client, alice):
    headers, ns = alice
    v1, v2 = b"first version", b"second version"
    for data in (v1, v2):
        await upload_direct(client, headers, ns, data)
    one = (await commit(client, headers, ns, [entry("doc.txt", v1)]))["results"][0]["file"]
    two = (await commit(client, headers, ns, [entry("doc.txt", v2, 1)]))["results"][0]["file"]
    assert two["file_id"] == one["file_id"]

    restored = await client.post(f"/v1/ns/{ns}/restore", json={"path": "doc.txt", "rev": 1}, headers=headers)
    assert restored.status == 200, await restored.text()
    three = (await restored.json())["file"]
    assert (three["rev"], three["content_hash"]) == (3, one["content_hash"])
    assert await download(client, headers, ns, "doc.txt", True) == v1
    old = await client.get(f"/v1/ns/{ns}/files/doc.txt?rev=2&via=service", headers=headers)
    assert await old.read() == v2

    deleted = await client.delete(f"/v1/ns/{ns}/files/doc.txt", headers={**headers, "If-Match": "3"})
    assert deleted.status == 200, await deleted.text()
    await problem(await client.get(f"/v1/ns/{ns}/files/doc.txt", headers=headers), 404)
    history = await (await client.get(f"/v1/ns/{ns}/files/doc.txt?versions", headers=headers)).json()
    assert [(v["rev"], v["deleted"]) for v in history["versions"]] == [
        (4, True),
        (3, False),
        (2, False),
        (1, False),
    ]

    back = await client.post(f"/v1/ns/{ns}/restore", json={"path": "doc.txt", "rev": 2}, headers=headers)
    assert (await back.json())["file"]["rev"] == 5

    moved = await client.post(
        f"/v1/ns/{ns}/move",
        json={"from": "doc.txt", "to": "archive/doc.txt", "parent_rev": 5},
        headers=headers,
    )
    assert moved.status == 200, await moved.text()
    target = (await moved.json())["results"][1]["file"]
    assert target["file_id"] == one["file_id"]
    assert target["moved_from"] == "doc.txt"
    assert await download(client, headers, ns, "archive/doc.txt", True) == v2
    await problem(await client.get(f"/v1/ns/{ns}/files/doc.txt", headers=headers), 404)


async def test_a_delete_without_the_current_rev_is_refused(client, alice):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"x")
    await commit(client, headers, ns, [entry("keep.txt", b"x")])
    await problem(await client.delete(f"/v1/ns/{ns}/files/keep.txt", headers=headers), 422)
    stale = await client.delete(f"/v1/ns/{ns}/files/keep.txt", headers={**headers, "If-Match": "7"})
    assert stale.status == 409
    assert await download(client, headers, ns, "keep.txt", True) == b"x"


async def test_streaming_put_respects_preconditions(client, alice):
    headers, ns = alice
    first = await client.put(f"/v1/ns/{ns}/files/p.txt", data=b"one", headers={**headers, "If-None-Match": "*"})
    assert first.status == 201
    exists = await client.put(f"/v1/ns/{ns}/files/p.txt", data=b"two", headers={**headers, "If-None-Match": "*"})
    conflict = await problem(exists, 409)
    assert conflict["current"]["rev"] == 1
    stale = await client.put(f"/v1/ns/{ns}/files/p.txt", data=b"two", headers={**headers, "If-Match": "5"})
    await problem(stale, 409)
    ok = await client.put(f"/v1/ns/{ns}/files/p.txt", data=b"two", headers={**headers, "If-Match": "1"})
    assert (await ok.json())["rev"] == 2


async def test_range_requests_through_the_service(client, alice):
    headers, ns = alice
    data = bytes(range(256)) * 100
    await client.put(f"/v1/ns/{ns}/files/r.bin", data=io.BytesIO(data), headers=headers)
    url = f"/v1/ns/{ns}/files/r.bin?via=service"
    part = await client.get(url, headers={**headers, "Range": "bytes=10-19"})
    assert part.status == 206
    assert await part.read() == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = await client.get(url, headers={**headers, "Range": "bytes=-5"})
    assert await tail.read() == data[-5:]
    for bad in ("bytes=99999999-", "bytes=5-1", "bytes=0-1,5-6", "items=0-1"):
        response = await client.get(url, headers={**headers, "Range": bad})
        await problem(response, 416)


async def test_listing_pages_and_folders(client, alice):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"z")
    names = ["a.txt", "b.txt", "sub/c.txt", "sub/deeper/d.txt", "z.txt"]
    await commit(client, headers, ns, [entry(n, b"z") for n in names])
    root = await (await client.get(f"/v1/ns/{ns}/files", headers=headers)).json()
    assert [f["path"] for f in root["files"]] == ["a.txt", "b.txt", "z.txt"]
    everything = await (await client.get(f"/v1/ns/{ns}/files?recursive=true", headers=headers)).json()
    assert sorted(f["path"] for f in everything["files"]) == sorted(names)
    seen, cursor = [], None
    while True:
        url = f"/v1/ns/{ns}/files?recursive=true&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=headers)).json()
        seen += [f["path"] for f in page["files"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(names)
    sub = await (await client.get(f"/v1/ns/{ns}/files?folder=sub", headers=headers)).json()
    assert [f["path"] for f in sub["files"]] == ["sub/c.txt"]
    await problem(await client.get(f"/v1/ns/{ns}/files?limit=0", headers=headers), 422)
    await problem(await client.get(f"/v1/ns/{ns}/files?cursor=garbage", headers=headers), 422)


ATTACKS = [
    "../escape.txt",
    "/absolute.txt",
    "back\\slash.txt",
    "nul\x00.txt",
    "ctrl\x01.txt",
    "x" * 256,
    "/".join(["d" * 200] * 21),
    "CON",
    "folder/aux.txt",
    "rtl\u202etxt.exe",
    "trailing.",
    "a//b",
]


@pytest.mark.parametrize("path", ATTACKS)
async def test_path_attacks_are_4xx_and_write_nothing(client, alice, path: str):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"payload")
    response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry(path, b"payload")]}, headers=headers)
    problem_body = await problem(response, 422)
    assert problem_body["errors"][0]["path"] == "$.entries[0].path"
    listing = await (await client.get(f"/v1/ns/{ns}/files?recursive=true", headers=headers)).json()
    assert listing["files"] == []


@pytest.mark.parametrize(
    ("existing", "twin"),
    [
        ("Report.txt", "report.txt"),
        ("café.txt", unicodedata.normalize("NFD", "café.txt")),
        ("STRASSE", "straße"),
    ],
)
async def test_case_and_normalization_twins_conflict(client, alice, existing: str, twin: str):
    headers, ns = alice
    await upload_direct(client, headers, ns, b"one")
    await commit(client, headers, ns, [entry(existing, b"one")])
    result = (await commit(client, headers, ns, [entry(twin, b"one")]))["results"][0]
    assert result["status"] == "conflict"
    assert result["current"]["path"] == unicodedata.normalize("NFC", existing)
    twins = await client.post(
        f"/v1/ns/{ns}/commit",
        json={"entries": [entry("dup.txt", b"one"), entry("DUP.txt", b"one")]},
        headers=headers,
    )
    await problem(twins, 422)


async def test_blobs_check_reports_only_unverified_content(client, alice):
    headers, ns = alice
    known, unknown = b"known body", b"unknown body"
    await upload_direct(client, headers, ns, known)
    await commit(client, headers, ns, [entry("k.txt", known)])
    hashes = [independent_hash(known), independent_hash(unknown), EMPTY_HASH]
    check = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": hashes}, headers=headers)
    assert (await check.json())["missing"] == [independent_hash(unknown)]
    await problem(await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": ["x"] * 1001}, headers=headers), 422)


async def test_outsiders_and_viewers(client, alice):
    headers, ns = alice
    await client.put(f"/v1/ns/{ns}/files/secret.txt", data=b"top secret", headers=headers)
    mallory = await user(client, "mallory")
    for response in (
        await client.get(f"/v1/ns/{ns}/files/secret.txt", headers=mallory),
        await client.put(f"/v1/ns/{ns}/files/x.txt", data=b"x", headers=mallory),
        await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("x", b"x")]}, headers=mallory),
        await client.get(f"/v1/ns/{ns}/files", headers=mallory),
    ):
        await problem(response, 404)
    shared = (await (await client.post("/v1/namespaces", json={"name": "s"}, headers=headers)).json())["id"]
    await sign_up(client, "victor")
    await client.put(f"/v1/namespaces/{shared}/members/victor", json={"role": "viewer"}, headers=headers)
    victor = bearer(await log_in(client, "victor"))
    await client.put(f"/v1/ns/{shared}/files/readme.txt", data=b"hello", headers=headers)
    assert await download(client, victor, shared, "readme.txt", True) == b"hello"
    await problem(await client.put(f"/v1/ns/{shared}/files/v.txt", data=b"no", headers=victor), 403)


async def test_bad_commit_bodies(client, alice):
    headers, ns = alice
    good = entry("a.txt", b"a")
    cases = [
        ({"entries": []}, "$.entries"),
        ({"entries": [{**good, "size": -1}]}, "$.entries[0].size"),
        ({"entries": [{**good, "content_hash": "nothex"}]}, "$.entries[0].content_hash"),
        ({"entries": [{**good, "parent_rev": 0}]}, "$.entries[0].parent_rev"),
        ({"entries": [{**good, "size": 99}]}, "$.entries[0].content_hash"),
        ({"entries": [{"path": "a", "deleted": True}]}, "$.entries[0].parent_rev"),
        ({"entries": [{**good, "rev": 3}]}, "$.entries[0].rev"),
        ({"entries": [good] * 1001}, "$.entries"),
    ]
    for payload, path in cases:
        response = await client.post(f"/v1/ns/{ns}/commit", json=payload, headers=headers)
        assert (await problem(response, 422))["errors"][0]["path"] == path, payload


async def test_config_tells_clients_the_block_size(client):
    config = await (await client.get("/v1/config")).json()
    assert config["block_size"] == TEST_BLOCK_SIZE
    assert config["max_commit_entries"] == 1000


async def test_hash_helper_agrees_with_hashlib():
    assert independent_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_file_settings_default_block_size_is_8_mib():
    assert FileSettings().block_size == 8 * 1024 * 1024


async def test_abandoned_uploads_are_aborted_by_the_sweeper(client, alice):
    headers, ns = alice
    data = body(2 * TEST_BLOCK_SIZE + 1)
    response = await client.post(
        f"/v1/ns/{ns}/uploads",
        json={"content_hash": independent_hash(data), "size": len(data)},
        headers=headers,
    )
    ticket = await response.json()
    assert ticket["kind"] == "multipart"
    from service.keys import TRANSFERS

    registry = client.app[TRANSFERS]._registry
    assert await registry.find(ticket["upload_id"]) is not None
    assert await registry.sweep(older_than_seconds=0) >= 1
    assert await registry.find(ticket["upload_id"]) is None
    gone = await client.post(
        f"/v1/ns/{ns}/uploads/{ticket['upload_id']}/complete",
        json={"parts": [{"number": 1, "etag": "x"}, {"number": 2, "etag": "y"}, {"number": 3, "etag": "z"}]},
        headers=headers,
    )
    await problem(gone, 404)


async def test_presigned_upload_of_known_content_is_skipped_and_bad_claims_refused(client, alice):
    headers, ns = alice
    data = b"already here"
    await client.put(f"/v1/ns/{ns}/files/a.txt", data=data, headers=headers)
    present = await client.post(
        f"/v1/ns/{ns}/uploads",
        json={"content_hash": independent_hash(data), "size": len(data)},
        headers=headers,
    )
    assert (await present.json())["kind"] == "present"
    for claim in (
        {"content_hash": "abc", "size": 1},
        {"content_hash": independent_hash(data), "size": 3 * TEST_BLOCK_SIZE},
        {"content_hash": independent_hash(data), "size": -1},
    ):
        response = await client.post(f"/v1/ns/{ns}/uploads", json=claim, headers=headers)
        await problem(response, 422)
