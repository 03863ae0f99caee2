"""Packs: a batch's bodies stored as one object, read back by range on every download path and many at once
(``blobs:fetch``), never served unless they hash to their content; dedup between packed and loose content.

Tests layer: the service in process over real HTTP against the session's emulator; the index and the packs
are tampered with straight in the emulator (what a bug, a lost object or a damaged store would leave).
"""

from __future__ import annotations

import dataclasses
import uuid

import orjson
import pytest

from service.core import packs
from service.core.packs import read_pack
from service.paths import path_key
from tests.api.files_helpers import body, commit, download, entry, home, independent_hash, upload_direct
from tests.api.helpers import problem, user
from tests.api.test_batch import aws_requests, send


async def batch(client, headers, ns: str, files: dict[str, bytes]) -> dict[str, dict]:
    """Send ``files`` in one batch; their new versions (file infos) by path."""
    response = await send(client, headers, ns, [entry(p, d) for p, d in files.items()], list(files.values()))
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert {r["status"] for r in results} == {"committed"}, results
    return {r["path"]: r["file"] for r in results}


async def fetch(client, headers, ns: str, items: list[dict]) -> dict[int, bytes | str]:
    """A ``blobs:fetch`` answer: per item, its bytes or its problem; the answer must end with its end frame."""
    response = await client.post(f"/v1/ns/{ns}/blobs:fetch", json={"items": items}, headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "application/x-filesync-frames"
    raw = await response.read()
    got: dict[int, bytes | str] = {}
    position = 0
    while True:
        end = raw.index(b"\n", position)
        frame = orjson.loads(raw[position:end])
        position = end + 1
        if "end" in frame:
            assert frame["end"] == len(got)
            assert position == len(raw)
            return got
        if "problem" in frame:
            got[frame["index"]] = frame["problem"]
        else:
            size = frame.get("size", 0)  # left out when 0, as every default is
            got[frame["index"]] = raw[position : position + size]
            position += size


def item(info: dict) -> dict:
    """A fetch item for a file info, as the sync client sends it."""
    fields = ("content_hash", "size", "body_pack", "body_offset", "body_version", "body_etag")
    return {name: info[name] for name in fields if info.get(name) is not None}


async def pack_keys(aws_session, settings, ns: str) -> list[str]:
    async with aws_session.client("s3", endpoint_url=settings.aws.endpoint_url) as s3:
        listed = await s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"ns/{ns}/packs/")
    return [o["Key"] for o in listed.get("Contents", [])]


async def tamper(aws_session, settings, ns: str, path: str, **values: object) -> None:
    """Change a file's current version in the table (its index entry), as a bug or a bad restore would."""
    names = {f"#{k}": k for k in values}
    typed = {f":{k}": {"N": str(v)} if isinstance(v, int) else {"S": str(v)} for k, v in values.items()}
    async with aws_session.client("dynamodb", endpoint_url=settings.aws.endpoint_url) as db:
        await db.update_item(
            TableName=settings.table,
            Key={"pk": {"S": f"NS#{ns}"}, "sk": {"S": f"F#{path_key(path)}"}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=typed,
        )


async def refused_everywhere(client, headers, ns: str, path: str, info: dict) -> None:
    """Every way a client reads a file refuses it with 409 ``content-replaced``: never a byte, never a 500."""
    for url, extra in (
        (f"/v1/ns/{ns}/files/{path}", {}),  # the redirect path: a packed body is served by the service
        (f"/v1/ns/{ns}/files/{path}?via=service", {}),
        (f"/v1/ns/{ns}/files/{path}?via=service", {"Range": "bytes=1-5"}),
        (f"/v1/ns/{ns}/files/{path}?rev={info['rev']}", {}),
    ):
        response = await client.get(url, headers={**headers, **extra}, allow_redirects=False)
        assert (await problem(response, 409))["type"].endswith("#problem-content-replaced"), url
    [answer] = (await fetch(client, headers, ns, [item(info)])).values()
    assert isinstance(answer, str), "a fetch served bytes that are not the content"
    assert "missing or damaged" in answer


async def test_a_batch_is_one_pack_in_format_1_and_every_download_path_reads_its_range(
    client, alice, provisioned, aws_session
):
    headers, ns = alice
    files = {f"docs/f{i}.txt": body(100 + i) for i in range(5)}
    files["docs/again.txt"] = files["docs/f0.txt"]
    files["docs/empty.txt"] = b""
    infos = await batch(client, headers, ns, files)
    [key] = await pack_keys(aws_session, provisioned, ns)
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        stored = await (await s3.get_object(Bucket=provisioned.bucket, Key=key))["Body"].read()
    assert stored[:5] == b"FSPK\x01"
    table = {e.content_hash: e for e in read_pack(stored)}
    assert len(table) == 5, "each content once, the empty file in none"
    for path, data in files.items():
        info = infos[path]
        if not data:
            assert "body_pack" not in info
            continue
        assert key.endswith("/" + info["body_pack"])
        assert stored[info["body_offset"] : info["body_offset"] + len(data)] == data
        assert table[independent_hash(data)].offset == info["body_offset"]
        redirect = await client.get(f"/v1/ns/{ns}/files/{path}", headers=headers, allow_redirects=False)
        assert redirect.status == 200, "a packed body is served by the service, not redirected to"
        assert await redirect.read() == data
        assert await download(client, headers, ns, path, via_service=True) == data
    ranged = await client.get(f"/v1/ns/{ns}/files/docs/f3.txt?via=service", headers={**headers, "Range": "bytes=-7"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 96-102/{len(files['docs/f3.txt'])}"
    assert await ranged.read() == files["docs/f3.txt"][-7:]
    wanted = [item(infos[p]) for p in files]
    got = await fetch(client, headers, ns, wanted)
    assert [got[i] for i in range(len(wanted))] == list(files.values())


async def test_a_fetch_reads_a_pack_whole_when_most_of_it_is_wanted_and_ranges_otherwise(client, alice, monkeypatch):
    headers, ns = alice
    files = {f"f{i:02d}.bin": body(2000) for i in range(20)}
    infos = await batch(client, headers, ns, files)
    before = await aws_requests(client)
    got = await fetch(client, headers, ns, [item(infos[p]) for p in files])
    assert got == {i: files[f"f{i:02d}.bin"] for i in range(20)}
    after = await aws_requests(client)
    assert after[("s3", "GetObject")] - before[("s3", "GetObject")] == 1, "twenty bodies of one pack: one read"
    # One membership read and no index read (the workers' background polls are Queries: not counted).
    assert after[("dynamodb", "GetItem")] - before[("dynamodb", "GetItem")] == 1
    assert after[("dynamodb", "BatchGetItem")] == before[("dynamodb", "BatchGetItem")]

    monkeypatch.setattr(packs, "RUN_GAP", 1000)  # bodies 2,000 bytes apart are now too far to read together
    before = await aws_requests(client)
    far = [item(infos["f03.bin"]), item(infos["f09.bin"]), item(infos["f10.bin"])]
    got = await fetch(client, headers, ns, far)
    assert got == {0: files["f03.bin"], 1: files["f09.bin"], 2: files["f10.bin"]}
    after = await aws_requests(client)
    assert after[("s3", "GetObject")] - before[("s3", "GetObject")] == 2, "f09 and f10 are adjacent: one read"

    # One item naming the wrong bytes in the middle of a run: it alone gets a problem, the others come.
    monkeypatch.setattr(packs, "RUN_GAP", 1024 * 1024)
    wrong = [item(infos[p]) for p in files]
    wrong[5] = {**wrong[5], "body_offset": wrong[5]["body_offset"] + 1}
    got = await fetch(client, headers, ns, wrong)
    assert "missing or damaged" in str(got.pop(5))
    assert got == {i: files[f"f{i:02d}.bin"] for i in range(20) if i != 5}


async def test_bodies_whose_pack_does_not_hold_them_are_refused_on_every_path(client, alice, provisioned, aws_session):
    """The index and the pack disagree three ways: other bytes at the offset, an offset past the pack's end
    (short), and the pack gone. Every download path refuses (409, never a 500) and never serves a byte."""
    headers, ns = alice
    files = {f"f{i}.txt": body(300) for i in range(4)}
    infos = await batch(client, headers, ns, files)
    await tamper(aws_session, provisioned, ns, "f0.txt", body_offset=infos["f1.txt"]["body_offset"])
    await tamper(aws_session, provisioned, ns, "f1.txt", body_offset=infos["f1.txt"]["body_offset"] + 1)
    await tamper(aws_session, provisioned, ns, "f2.txt", body_offset=10**9)
    await tamper(aws_session, provisioned, ns, "f3.txt", body_pack=uuid.uuid4().hex)
    for path in files:
        current = await (await client.get(f"/v1/ns/{ns}/files/{path}?versions", headers=headers)).json()
        info = current["versions"][0]
        await refused_everywhere(client, headers, ns, path, info)
    checked = await client.post(
        f"/v1/ns/{ns}/blobs:check", json={"hashes": [independent_hash(files["f1.txt"])]}, headers=headers
    )
    assert (await checked.json())["missing"] == [independent_hash(files["f1.txt"])]


async def test_a_version_whose_pack_is_gone_is_refused_then_repaired_by_an_honest_upload(
    client, alice, provisioned, aws_session
):
    headers, ns = alice
    data, other = body(700), body(800)
    infos = await batch(client, headers, ns, {"lost.txt": data, "kept.txt": other})
    [key] = await pack_keys(aws_session, provisioned, ns)
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        # Every version of the object: a pinned read cannot find it any more (a lost object, a bad purge).
        await s3.delete_object(Bucket=provisioned.bucket, Key=key, VersionId=infos["lost.txt"]["body_version"])
    await refused_everywhere(client, headers, ns, "lost.txt", infos["lost.txt"])
    checked = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [independent_hash(data)]}, headers=headers)
    assert (await checked.json())["missing"] == [independent_hash(data)], "absent: a client uploads it again"
    await upload_direct(client, headers, ns, data)
    await commit(client, headers, ns, [entry("copy.txt", data)])
    for via in (False, True):
        assert await download(client, headers, ns, "lost.txt", via_service=via) == data
    assert await fetch(client, headers, ns, [item(infos["lost.txt"])]) == {0: data}


async def test_loose_content_is_not_packed_again(client, alice, provisioned, aws_session):
    headers, ns = alice
    loose, new = body(900), body(901)
    await upload_direct(client, headers, ns, loose)
    await commit(client, headers, ns, [entry("loose.txt", loose)])
    before = await aws_requests(client)
    infos = await batch(client, headers, ns, {"a/same.txt": loose, "a/new.txt": new})
    after = await aws_requests(client)
    assert after[("s3", "PutObject")] - before[("s3", "PutObject")] == 1  # the pack, of ``new`` alone
    assert "body_pack" not in infos["a/same.txt"], "the loose blob holds it"
    assert infos["a/new.txt"]["body_pack"]
    [key] = await pack_keys(aws_session, provisioned, ns)
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        stored = await (await s3.get_object(Bucket=provisioned.bucket, Key=key))["Body"].read()
    assert [e.content_hash for e in read_pack(stored)] == [independent_hash(new)]
    assert await download(client, headers, ns, "a/same.txt", via_service=False) == loose
    # A batch sent again (a retry) stores nothing: what it names is in the versions it reads.
    before = await aws_requests(client)
    again = await send(client, headers, ns, [entry("a/new.txt", new, parent_rev=1)], [new])
    assert again.status == 200, await again.text()
    assert (await aws_requests(client))[("s3", "PutObject")] == before[("s3", "PutObject")]


@pytest.fixture
async def recording(provisioned, make_client, app_factory):
    """The service with ``FILESYNC_RECORD_PACKED``: content stored in packs gets a record of its own."""
    settings = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, record_packed=True))
    return await make_client(app_factory(settings))


async def test_with_records_packed_content_is_found_by_hash_both_ways(recording, provisioned, aws_session):
    """Packed first, then loose: ``blobs:check`` and ``uploads`` say present, a commit by hash alone and
    another batch store nothing. Then a damaged pack: the content counts as absent until uploaded again,
    which repairs the old versions."""
    client = recording
    headers = await user(client, "erin")
    ns = await home(client, headers)
    data = body(1234)
    content_hash = independent_hash(data)
    infos = await batch(client, headers, ns, {"packed.txt": data})
    checked = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [content_hash]}, headers=headers)
    assert (await checked.json())["missing"] == []
    ticket = await client.post(
        f"/v1/ns/{ns}/uploads", json={"content_hash": content_hash, "size": len(data)}, headers=headers
    )
    assert (await ticket.json())["kind"] == "present"
    before = await aws_requests(client)
    [by_hash] = (await commit(client, headers, ns, [entry("by-hash.txt", data)]))["results"]
    again = await batch(client, headers, ns, {"again.txt": data})
    after = await aws_requests(client)
    assert sum(after[k] - before[k] for k in after if k[0] == "s3") == 0, "nothing stored, nothing verified"
    for info in (by_hash["file"], again["again.txt"]):
        assert (info["body_pack"], info["body_offset"]) == (
            infos["packed.txt"]["body_pack"],
            infos["packed.txt"]["body_offset"],
        )
    assert await download(client, headers, ns, "by-hash.txt", via_service=False) == data

    await tamper(aws_session, provisioned, ns, "again.txt", body_offset=infos["packed.txt"]["body_offset"] + 1)
    broken = (await (await client.get(f"/v1/ns/{ns}/files/again.txt?versions", headers=headers)).json())["versions"][0]
    assert (await client.get(f"/v1/ns/{ns}/files/again.txt", headers=headers)).status == 200, "its record holds it"
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        [key] = await pack_keys(aws_session, provisioned, ns)
        await s3.delete_object(Bucket=provisioned.bucket, Key=key, VersionId=broken["body_version"])
    await refused_everywhere(client, headers, ns, "packed.txt", infos["packed.txt"])
    checked = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [content_hash]}, headers=headers)
    assert (await checked.json())["missing"] == [content_hash], "forgotten once found damaged: uploaded again"
    await batch(client, headers, ns, {"repair.txt": data})
    for path in ("packed.txt", "by-hash.txt", "again.txt"):
        assert await download(client, headers, ns, path, via_service=True) == data


async def test_fetch_refuses_what_it_cannot_serve_before_reading(client, alice, make_client, app_factory, provisioned):
    headers, ns = alice
    data = body(10)
    infos = await batch(client, headers, ns, {"a.txt": data})
    good = item(infos["a.txt"])
    cases = [
        ([], "$.items"),
        ([good] * 1001, "$.items"),
        ([{**good, "size": 256 * 1024 + 1, "content_hash": "0" * 64}], "$.items[0].size"),
        ([{**good, "content_hash": "nope"}], "$.items[0].content_hash"),
        ([{**good, "body_pack": "../../other/blobs/x"}], "$.items[0].body_pack"),
        ([{k: v for k, v in good.items() if k != "body_offset"}], "$.items[0].body_offset"),
        ([{**good, "body_offset": -1}], "$.items[0].body_offset"),
    ]
    for items, where in cases:
        response = await client.post(f"/v1/ns/{ns}/blobs:fetch", json={"items": items}, headers=headers)
        details = await problem(response, 422)
        assert where in [e["path"] for e in details.get("errors", [])] or where in details["detail"], details
    stranger = await user(client, "mallory")
    await problem(await client.post(f"/v1/ns/{ns}/blobs:fetch", json={"items": [good]}, headers=stranger), 404)
    await problem(await client.post(f"/v1/ns/{ns}/blobs:fetch", json={"items": [good]}), 401)
    empty = {"content_hash": independent_hash(b""), "size": 0}
    assert await fetch(client, headers, ns, [empty, good]) == {0: b"", 1: data}
    nowhere = {"content_hash": independent_hash(b"gone"), "size": 4, "body_pack": uuid.uuid4().hex, "body_offset": 8}
    [answer] = (await fetch(client, headers, ns, [nowhere])).values()
    assert "missing or damaged" in str(answer), "a pack that is not there: a problem frame, never a 500"
    config = await (await client.get("/v1/config")).json()
    assert config["max_fetch_items"] == 1000
