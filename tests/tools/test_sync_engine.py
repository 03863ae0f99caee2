"""The sync engine in-process against the real service over HTTP: delta uploads and state."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from tests.api.files_helpers import independent_hash
from tests.api.test_health import metric
from tests.api.test_packs import tamper
from tests.conftest import TEST_BLOCK_SIZE
from tools.sdk.client import FileSyncClient
from tools.sdk.s3 import Part, S3Client
from tools.sync import engine as engine_module
from tools.sync.engine import SyncEngine
from tools.sync.headstart import HeadStart
from tools.sync.state import StateDB


@pytest.fixture
async def api(client):
    async with FileSyncClient(str(client.make_url(""))) as sdk:
        await sdk.sign_up("alice", "correct horse battery")
        await sdk.log_in("alice", "correct horse battery")
        yield sdk


async def test_a_one_byte_change_in_a_64_mib_file_uploads_one_block(api, tmp_path: Path):
    root, other = tmp_path / "files", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    ns = (await api.account()).home_namespace
    data = bytearray(os.urandom(64 * 1024 * 1024))
    (root / "big.bin").write_bytes(data)
    sent: list[int] = []

    def progress(label: str, done: int, total: int) -> None:
        if label == "uploading":
            sent.append(done)

    state = StateDB(tmp_path / "state.db")
    engine = SyncEngine(api, ns, root, state, device="test", progress=progress)
    first = await engine.sync()
    assert first.uploaded == 1
    assert max(sent) == len(data)

    middle = len(data) // 2
    data[middle] ^= 0xFF
    (root / "big.bin").write_bytes(data)
    sent.clear()
    second = await engine.sync()
    assert second.uploaded == 1
    assert max(sent) <= TEST_BLOCK_SIZE, f"sent {max(sent)} bytes for a 1-byte change"

    # Another device gets exactly the new content.
    receiver = SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other")
    await receiver.sync()
    assert independent_hash((other / "big.bin").read_bytes()) == independent_hash(bytes(data))
    state.close()


async def test_a_large_file_is_committed_without_a_byte_read_back_and_pulled_verified(api, client, tmp_path: Path):
    """The push's commit proves the content from S3's checksum (one HeadObject, no GetObject); the pull hashes
    each block as it lands and records the digests it computed (the delta's base), reading nothing twice."""
    root, other = tmp_path / "files", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    ns = (await api.account()).home_namespace
    data = os.urandom(2 * TEST_BLOCK_SIZE + 1000)
    (root / "big.bin").write_bytes(data)

    def s3(text: str, operation: str) -> float:
        return metric(text, "filesync_aws_requests_total", service="s3", operation=operation)

    before = await (await client.get("/metrics")).text()
    assert (await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()).uploaded == 1
    after = await (await client.get("/metrics")).text()
    assert s3(after, "GetObject") - s3(before, "GetObject") == 0
    assert s3(after, "HeadObject") - s3(before, "HeadObject") == 1

    state = StateDB(tmp_path / "other.db")
    assert (await SyncEngine(api, ns, other, state, device="other").sync()).downloaded == 1
    assert (other / "big.bin").read_bytes() == data
    entry = state.entry("big.bin")
    assert entry is not None
    assert entry.content_hash == independent_hash(data)
    blocks = [data[i : i + TEST_BLOCK_SIZE] for i in range(0, len(data), TEST_BLOCK_SIZE)]
    assert entry.blocks == b"".join(hashlib.sha256(b).digest() for b in blocks)
    state.close()


async def test_a_file_hashed_ahead_is_not_hashed_again(api, tmp_path: Path, monkeypatch):
    """The head start's digest is the round's: the engine hashes nothing it was handed (it would fail here)."""
    root = tmp_path / "files"
    root.mkdir()
    data = os.urandom(TEST_BLOCK_SIZE + 1000)
    (root / "big.bin").write_bytes(data)
    ns = (await api.account()).home_namespace
    state = StateDB(tmp_path / "state.db")
    state.set("block_size", str(TEST_BLOCK_SIZE))  # as a round before this one recorded it
    ahead = HeadStart(root, tmp_path / "state.db", threshold=1000)
    ahead._thread.start()
    ahead._thread.join(timeout=30)

    def not_again(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(engine_module, "hash_file_sync", not_again)
    report = await SyncEngine(api, ns, root, state, device="test", head_start=ahead).sync()
    assert report.uploaded == 1
    entry = state.entry("big.bin")
    assert entry is not None
    assert entry.content_hash == independent_hash(data)
    state.close()


async def test_an_interrupted_multipart_upload_resumes_from_the_parts_s3_holds(
    api, tmp_path: Path, settings, aws_session, monkeypatch
):
    root = tmp_path / "files"
    root.mkdir()
    ns = (await api.account()).home_namespace
    blocks = 16  # more than the transfer's concurrency: some blocks were never started when the run dies
    data = os.urandom(blocks * TEST_BLOCK_SIZE - 123)
    (root / "big.bin").write_bytes(data)
    sent: list[int] = []
    enough = asyncio.Event()

    def progress(label: str, done: int, total: int) -> None:
        if label == "uploading":
            sent.append(done)
            if done >= 3 * TEST_BLOCK_SIZE:
                enough.set()

    # The first run dies (cancelled: no abort, no cleanup of its own) once three blocks are in S3.
    state = StateDB(tmp_path / "state.db")
    engine = SyncEngine(api, ns, root, state, device="test", progress=progress)
    run = asyncio.create_task(engine.sync())
    await asyncio.wait_for(enough.wait(), 60)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    state.close()
    [(key, upload_id)] = StateDB(tmp_path / "state.db").unfinished_uploads()
    async with aws_session.client("s3", endpoint_url=settings.aws.endpoint_url) as s3:
        held = (await s3.list_parts(Bucket=settings.bucket, Key=key, UploadId=upload_id)).get("Parts", [])
    assert 3 <= len(held) < blocks

    # A part in flight when the run died may still land after that listing (the emulator finishes a request whose
    # body it received), so the blocks to send are those S3 holds when the next run lists them: recorded here.
    seen: list[list[Part]] = []
    list_parts = S3Client.list_parts

    async def recording(self: S3Client, key: str, upload_id: str) -> list[Part]:
        parts = await list_parts(self, key, upload_id)
        seen.append(parts)
        return parts

    monkeypatch.setattr(S3Client, "list_parts", recording)

    # The next run sends only the blocks S3 does not hold, and the file arrives whole.
    sent.clear()
    state = StateDB(tmp_path / "state.db")
    report = await SyncEngine(api, ns, root, state, device="test", progress=progress).sync()
    assert report.uploaded == 1
    [listed] = seen
    assert len(listed) >= len(held)
    numbers = {p.number for p in listed}
    missing = sum(
        min(TEST_BLOCK_SIZE, len(data) - (n - 1) * TEST_BLOCK_SIZE) for n in range(1, blocks + 1) if n not in numbers
    )
    assert max(sent) == missing, f"sent {max(sent)} bytes, {missing} were missing"
    assert state.unfinished_uploads() == []
    other = tmp_path / "other"
    other.mkdir()
    await SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
    assert independent_hash((other / "big.bin").read_bytes()) == independent_hash(data)
    state.close()


async def test_an_unfinished_upload_of_content_that_changed_is_aborted(api, tmp_path: Path, settings, aws_session):
    root = tmp_path / "files"
    root.mkdir()
    ns = (await api.account()).home_namespace
    (root / "big.bin").write_bytes(os.urandom(3 * TEST_BLOCK_SIZE))
    enough = asyncio.Event()

    def progress(label: str, done: int, total: int) -> None:
        if label == "uploading" and done >= TEST_BLOCK_SIZE:
            enough.set()

    state = StateDB(tmp_path / "state.db")
    run = asyncio.create_task(SyncEngine(api, ns, root, state, device="test", progress=progress).sync())
    await asyncio.wait_for(enough.wait(), 60)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    [(key, upload_id)] = state.unfinished_uploads()

    (root / "big.bin").write_bytes(os.urandom(2 * TEST_BLOCK_SIZE))  # edited before the next run
    await SyncEngine(api, ns, root, state, device="test").sync()
    assert state.unfinished_uploads() == []
    async with aws_session.client("s3", endpoint_url=settings.aws.endpoint_url) as s3:
        with pytest.raises(s3.exceptions.NoSuchUpload):
            await s3.list_parts(Bucket=settings.bucket, Key=key, UploadId=upload_id)
    state.close()


async def test_scoped_credentials_are_reused_across_rounds_for_their_lifetime(api, client, tmp_path: Path):
    root = tmp_path / "files"
    root.mkdir()
    ns = (await api.account()).home_namespace
    engine = SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test")
    before = await (await client.get("/metrics")).text()
    for round_ in range(3):  # as --watch does: one engine, a round per change
        # Larger than a batch takes, so each goes straight to S3 with the credentials.
        (root / f"f{round_}.bin").write_bytes(os.urandom(300 * 1024))
        assert (await engine.sync()).uploaded == 1
    after = await (await client.get("/metrics")).text()
    assert minted(after) - minted(before) == 1


def minted(text: str) -> float:
    return metric(text, "filesync_http_requests_total", route="/v1/credentials", method="POST", status="200")


async def test_small_files_go_in_batches_of_one_pack_each_both_ways_and_no_credentials(api, client, tmp_path: Path):
    root = tmp_path / "files"
    (root / "deep" / "er").mkdir(parents=True)
    bodies = {f"deep/er/f{i:04d}.txt": os.urandom(i % 700) for i in range(1200)}  # five batches (250 a batch)
    bodies["deep/copy.txt"] = bodies["deep/er/f0005.txt"]
    for name, data in bodies.items():
        (root / name).write_bytes(data)
    ns = (await api.account()).home_namespace
    before = await (await client.get("/metrics")).text()
    report = await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()
    after = await (await client.get("/metrics")).text()
    assert report.uploaded == len(bodies)
    assert minted(after) - minted(before) == 0
    batches = metric(
        after, "filesync_http_requests_total", route="/v1/ns/{ns}/files:batch", method="POST", status="200"
    )
    assert (
        batches
        - metric(before, "filesync_http_requests_total", route="/v1/ns/{ns}/files:batch", method="POST", status="200")
        == 5
    )

    def puts(text: str) -> float:
        return metric(text, "filesync_aws_requests_total", service="s3", operation="PutObject")

    assert puts(after) - puts(before) == 5  # one pack a batch: 0.004 S3 requests a file
    other = tmp_path / "other"
    other.mkdir()
    report = await SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
    pulled = await (await client.get("/metrics")).text()
    assert {p.relative_to(other).as_posix(): p.read_bytes() for p in other.rglob("*") if p.is_file()} == bodies
    assert report.downloaded == len(bodies)
    assert minted(pulled) - minted(after) == 0, "small files come through the service: no credentials"
    fetches = metric(
        pulled, "filesync_http_requests_total", route="/v1/ns/{ns}/blobs:fetch", method="POST", status="200"
    )
    assert fetches == 3  # 1,199 bodies (two files are empty), 500 a request

    def gets(text: str) -> float:
        return metric(text, "filesync_aws_requests_total", service="s3", operation="GetObject")

    assert gets(pulled) - gets(after) <= 0.02 * len(bodies), "each fetch reads each pack's range once"


async def test_packed_files_larger_than_a_fetch_takes_come_through_the_service(
    api, tmp_path: Path, provisioned, make_client, app_factory
):
    """The service's limit of small files was lowered after they were packed: those now past it come one by
    one through the service (which alone reads packs), the rest by fetch; no credentials either way."""
    root = tmp_path / "files"
    root.mkdir()
    bodies = {"small.txt": os.urandom(50), "bigger.txt": os.urandom(500)}
    for name, data in bodies.items():
        (root / name).write_bytes(data)
    ns = (await api.account()).home_namespace
    assert (await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()).uploaded == 2
    lowered = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, inline_max_file=100))
    served = await make_client(app_factory(lowered))
    async with FileSyncClient(str(served.make_url(""))) as other_api:
        await other_api.log_in("alice", "correct horse battery")
        other = tmp_path / "other"
        other.mkdir()
        before = await (await served.get("/metrics")).text()
        report = await SyncEngine(other_api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
        after = await (await served.get("/metrics")).text()
    assert report.downloaded == 2
    assert {p.name: p.read_bytes() for p in other.iterdir()} == bodies
    assert minted(after) - minted(before) == 0


async def test_a_file_whose_pack_does_not_hold_it_is_named_and_the_rest_is_pulled(
    api, client, tmp_path: Path, provisioned, aws_session
):
    root = tmp_path / "files"
    root.mkdir()
    bodies = {f"f{i}.txt": os.urandom(100 + i) for i in range(5)}
    for name, data in bodies.items():
        (root / name).write_bytes(data)
    ns = (await api.account()).home_namespace
    assert (await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()).uploaded == 5
    [info] = [f for f in await api.list_files(ns) if f.path == "f2.txt"]
    assert info.body_offset is not None
    await tamper(aws_session, provisioned, ns, "f2.txt", body_offset=info.body_offset + 1)
    other = tmp_path / "other"
    other.mkdir()
    report = await SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
    assert report.downloaded == 4
    assert [(s.local, s.reason) for s in report.skipped] == [
        (
            "f2.txt",
            "not downloaded: The stored body of " + info.content_hash + " is missing or damaged and is not "
            "served; upload the content again to repair it.",
        )
    ]
    assert sorted(p.name for p in other.iterdir()) == ["f0.txt", "f1.txt", "f3.txt", "f4.txt"]


async def test_a_round_with_nothing_changed_is_one_feed_request(api, client, tmp_path: Path):
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "Mixed Case.TXT").write_bytes(b"one")
    (root / "\u00e9t\u00e9.txt").write_bytes(b"two")
    ns = (await api.account()).home_namespace
    engine = SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test")
    assert (await engine.sync()).uploaded == 2

    def served(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("filesync_http_requests_total{") and 'route="/metrics"' not in line
        )

    before = served(await (await client.get("/metrics")).text())
    report = await engine.sync()
    assert report.changed == 0
    assert served(await (await client.get("/metrics")).text()) - before == 1
    (root / "\u00e9t\u00e9.txt").write_bytes(b"changed")
    assert (await engine.sync()).uploaded == 1


async def test_a_round_goes_a_page_at_a_time_and_converges(api, client, tmp_path: Path, monkeypatch):
    """Pages of seven keys: changes on both sides, deletions, and a conflict whose kept copy sorts into a
    later page all come out the same on both devices, with one compare request per page."""
    monkeypatch.setattr(engine_module, "COMPARE_PAGE", 7)
    ns = (await api.account()).home_namespace
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        (root / "d").mkdir(parents=True)
    for i in range(40):
        (one / "d" / f"f{i:02d}").write_bytes(f"first {i}".encode())
    a = SyncEngine(api, ns, one, StateDB(tmp_path / "one.db"), device="one")
    b = SyncEngine(api, ns, two, StateDB(tmp_path / "two.db"), device="two")
    before = await (await client.get("/metrics")).text()
    assert (await a.sync(rounds=1)).uploaded == 40
    after = await (await client.get("/metrics")).text()

    def compares(text: str) -> float:
        return metric(text, "filesync_http_requests_total", route="/v1/ns/{ns}/compare", method="POST", status="200")

    assert compares(after) - compares(before) == 6  # 40 keys in pages of 7
    assert (await b.sync()).downloaded == 40

    for i in (3, 17, 33):
        (one / "d" / f"f{i:02d}").write_bytes(f"one edited {i}".encode())
    for i in (5, 21):
        (two / "d" / f"f{i:02d}").write_bytes(f"two edited {i}".encode())
    (one / "d" / "f08").unlink()
    (two / "d" / "f30").unlink()
    # f13 ends the second page (keys f07 to f13), so its kept copy ("d/f13 (conflicted copy ...)") is
    # seen again in the third.
    (one / "d" / "f13").write_bytes(b"one's f13")
    (two / "d" / "f13").write_bytes(b"two's f13")
    (one / "d" / "new").write_bytes(b"new on one")
    await a.sync()
    report = await b.sync()
    assert report.conflicts == 1
    assert report.deleted_remote == 1  # f30 only: the kept copy, met again in a later page, stays
    await a.sync()
    trees = [
        {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} for root in (one, two)
    ]
    assert trees[0] == trees[1]
    tree = trees[0]
    assert "d/f08" not in tree
    assert "d/f30" not in tree
    assert tree["d/f03"] == b"one edited 3"
    assert tree["d/f21"] == b"two edited 21"
    assert tree["d/new"] == b"new on one"
    assert tree["d/f13"] == b"one's f13"  # the first commit keeps the name; the other is kept beside it
    copies = [name for name in tree if name.startswith("d/f13 (conflicted copy two")]
    assert len(copies) == 1
    assert tree[copies[0]] == b"two's f13"


async def test_a_round_that_did_work_is_confirmed_by_the_feed_not_a_second_round(api, client, tmp_path: Path):
    """The feed after the round lists only what the round itself committed: no second compare, and the
    next sync (another engine, as the next run of the CLI) is one feed request."""
    root = tmp_path / "files"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}.txt").write_bytes(os.urandom(50))
    ns = (await api.account()).home_namespace

    def count(text: str, route: str, method: str) -> float:
        return metric(text, "filesync_http_requests_total", route=route, method=method, status="200")

    routes = [("/v1/ns/{ns}/compare", "POST"), ("/v1/ns/{ns}/changes", "GET"), ("/v1/ns/{ns}/files:batch", "POST")]
    before = await (await client.get("/metrics")).text()
    report = await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()
    after = await (await client.get("/metrics")).text()
    assert report.uploaded == 3
    assert [count(after, *r) - count(before, *r) for r in routes] == [1, 1, 1]

    again = await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()
    final = await (await client.get("/metrics")).text()
    assert again.changed == 0
    assert [count(final, *r) - count(after, *r) for r in routes] == [0, 1, 0]

    # Someone else's commit after ours is not mistaken for ours: the next sync fetches it.
    other = tmp_path / "other"
    other.mkdir()
    await SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
    (other / "f1.txt").write_bytes(b"edited elsewhere")
    await SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other").sync()
    fetched = await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()
    assert fetched.downloaded == 1
    assert (root / "f1.txt").read_bytes() == b"edited elsewhere"


async def test_long_paths_split_a_batch_within_the_manifest_limit(api, client, tmp_path: Path, monkeypatch):
    """1,000 paths of about 890 bytes make a batch manifest past the 1 MiB JSON limit: the client sends two."""
    monkeypatch.setattr(engine_module, "INLINE_BATCH_FILES", 1000)
    root = tmp_path / "files"
    deep = root.joinpath(*(["x" * 220] * 4))
    deep.mkdir(parents=True)
    for i in range(1000):
        (deep / f"f{i:03d}").write_bytes(b"0123456789")
    ns = (await api.account()).home_namespace

    def requests(text: str, route: str) -> float:
        return metric(text, "filesync_http_requests_total", route=f"/v1/ns/{{ns}}/{route}", method="POST", status="200")

    before = await (await client.get("/metrics")).text()
    report = await SyncEngine(api, ns, root, StateDB(tmp_path / "state.db"), device="test").sync()
    after = await (await client.get("/metrics")).text()
    assert report.uploaded == 1000
    assert requests(after, "files:batch") - requests(before, "files:batch") == 2  # 528 entries a manifest at most
    assert requests(after, "compare") - requests(before, "compare") == 1


async def test_a_page_past_the_compare_budget_goes_as_several_ranges(api, client, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(engine_module, "COMPARE_BYTES", 5000)  # about 15 entries of these paths
    root, other = tmp_path / "one", tmp_path / "two"
    for folder in (root, other):
        folder.mkdir()
    for i in range(40):
        (root / f"file-{i:02d}.txt").write_bytes(f"body {i}".encode())
    ns = (await api.account()).home_namespace
    before = await (await client.get("/metrics")).text()
    assert (await SyncEngine(api, ns, root, StateDB(tmp_path / "one.db"), device="one").sync()).uploaded == 40
    after = await (await client.get("/metrics")).text()
    route = "/v1/ns/{ns}/compare"
    compares = metric(after, "filesync_http_requests_total", route=route, method="POST", status="200") - metric(
        before, "filesync_http_requests_total", route=route, method="POST", status="200"
    )
    assert compares == 3
    fetched = await SyncEngine(api, ns, other, StateDB(tmp_path / "two.db"), device="two").sync()
    assert fetched.downloaded == 40
    assert sorted(p.name for p in other.iterdir()) == sorted(p.name for p in root.iterdir())


@pytest.mark.timeout(300)  # 1,000 files in and 1,000 moves through the emulator: about 20 s on an idle machine
async def test_a_folder_rename_of_1000_files_arrives_as_moves(api, client, tmp_path: Path):
    """Each file keeps its id and history, in two requests of 500 moves: no upload, commit or delete."""
    root = tmp_path / "one"
    (root / "reports" / "2024").mkdir(parents=True)
    for i in range(1000):
        (root / "reports" / "2024" / f"r{i:04d}.txt").write_bytes(f"report {i}".encode())
    ns = (await api.account()).home_namespace
    one = SyncEngine(api, ns, root, StateDB(tmp_path / "one.db"), device="one")
    assert (await one.sync()).uploaded == 1000
    before = {f.path.rsplit("/", 1)[1]: f.file_id for f in await api.list_files(ns, "reports")}
    (root / "reports").rename(root / "Archive")

    def count(text: str, route: str) -> float:
        return sum(
            metric(text, "filesync_http_requests_total", route=f"/v1/ns/{{ns}}/{route}", method="POST", status=s)
            for s in ("200", "409")
        )

    routes = ("moves", "commit", "files:batch", "compare")
    start = await (await client.get("/metrics")).text()
    report = await one.sync()
    end = await (await client.get("/metrics")).text()
    assert (report.moved, report.uploaded, report.deleted_remote) == (1000, 0, 0)
    assert {route: count(end, route) - count(start, route) for route in routes} == {
        "moves": 2,
        "commit": 0,
        "files:batch": 0,
        "compare": 1,
    }
    after = {f.path.rsplit("/", 1)[1]: f.file_id for f in await api.list_files(ns, "Archive")}
    assert after == before
    assert await api.list_files(ns, "reports") == []
    versions = await api.history(ns, "Archive/2024/r0007.txt")
    assert [(v.rev, v.path) for v in versions] == [(2, "Archive/2024/r0007.txt"), (1, "reports/2024/r0007.txt")]
    # The state database follows: the next sync has nothing to do.
    assert (await one.sync()).changed == 0


async def test_a_move_the_server_refuses_falls_back_to_an_upload_and_keeps_the_other_edit(api, tmp_path: Path):
    """A renames a file that B edited meanwhile: the move conflicts, A's copy is uploaded under its new
    name, and B's edit comes back under the old one. Nothing is lost."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    ns = (await api.account()).home_namespace
    a = SyncEngine(api, ns, one, StateDB(tmp_path / "one.db"), device="one")
    b = SyncEngine(api, ns, two, StateDB(tmp_path / "two.db"), device="two")
    (one / "plan.txt").write_bytes(b"first")
    (one / "same-size.txt").write_bytes(b"other")  # same size, another inode and content: not a rename
    await a.sync()
    await b.sync()
    (two / "plan.txt").write_bytes(b"edited on two")
    await b.sync()
    (one / "plan.txt").rename(one / "plan-renamed.txt")
    (one / "same-size.txt").unlink()
    (one / "new.txt").write_bytes(b"fresh")
    report = await a.sync()
    assert report.moved == 0
    assert {p.name: p.read_bytes() for p in one.iterdir()} == {
        "plan-renamed.txt": b"first",
        "plan.txt": b"edited on two",
        "new.txt": b"fresh",
    }
    await b.sync()
    assert {p.name: p.read_bytes() for p in two.iterdir()} == {p.name: p.read_bytes() for p in one.iterdir()}


async def test_a_file_the_server_refuses_is_named_with_its_reason_and_kept(api, tmp_path: Path):
    """B has a file where A's folder is: the server refuses it (a file/folder clash); B keeps its file,
    names it, does not force A's folder in over it, and syncs the rest."""
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "plans").mkdir(parents=True)
    two.mkdir()
    ns = (await api.account()).home_namespace
    (one / "plans" / "q1.txt").write_bytes(b"a folder on one")
    await SyncEngine(api, ns, one, StateDB(tmp_path / "one.db"), device="one").sync()
    (two / "plans").write_bytes(b"a file on two")
    (two / "other.txt").write_bytes(b"syncs")
    b = SyncEngine(api, ns, two, StateDB(tmp_path / "two.db"), device="two")
    report = await b.sync()
    reasons = {issue.local: (issue.kind, issue.reason) for issue in report.skipped}
    assert reasons["plans"][0] == "refused"
    assert reasons["plans"][1].startswith("refused by the server: file/folder clash")
    assert reasons["plans/q1.txt"] == ("unplaced", "not placed here: plans is a file, not a folder")
    assert report.uploaded == 1
    assert (two / "plans").read_bytes() == b"a file on two"
    again = await b.sync()  # nothing changed: one feed request, the same items named
    assert again.changed == 0
    assert {issue.local for issue in again.skipped} == {"plans", "plans/q1.txt"}


async def test_a_folder_that_becomes_a_file_syncs_even_across_pages(api, tmp_path: Path, monkeypatch):
    """Its deletions (keys after the file's) come in a later page than the file's upload, which the server
    refuses at first; the round that freed the path is followed by another, and the file goes up."""
    monkeypatch.setattr(engine_module, "COMPARE_PAGE", 2)
    root = tmp_path / "one"
    (root / "notes").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (root / "notes" / name).write_bytes(name.encode())
    ns = (await api.account()).home_namespace
    engine = SyncEngine(api, ns, root, StateDB(tmp_path / "one.db"), device="one")
    await engine.sync()
    for name in ("a", "b", "c"):
        (root / "notes" / name).unlink()
    (root / "notes").rmdir()
    (root / "notes").write_bytes(b"now a file")
    report = await engine.sync()
    assert (report.uploaded, report.deleted_remote, report.skipped) == (1, 3, [])
    assert [f.path for f in await api.list_files(ns)] == ["notes"]


async def test_entries_a_refused_request_names_are_reported_and_the_rest_committed(tmp_path: Path):
    """A 422 names the entries it refuses: those are items not synced (with the reason), except content the
    service does not hold (changed while it was sent: the next round); the rest go again at once."""
    from service.wire import MTIME_MAX, MTIME_MIN, CommitResponse, CommitResultOut, FieldProblem, FileInfo, Problem
    from tools.sdk.errors import ApiError
    from tools.sync.engine import SyncReport, _commit_entry
    from tools.sync.plan import LocalFile, Upload

    root = tmp_path / "files"
    root.mkdir()
    state = StateDB(tmp_path / "state.db")
    engine = SyncEngine(FileSyncClient("http://127.0.0.1:9"), "ns", root, state, device="test")
    uploads = [Upload(LocalFile(f"f{i}", f"f{i}", 1, 0, f"h{i}"), None) for i in range(4)]
    sent: list[list[str]] = []

    def refusal(*named: tuple[int, str]) -> ApiError:
        errors = [FieldProblem(f"$.entries[{i}].{name}", f"bad {name}") for i, name in named]
        problem = Problem("about:blank", "Invalid", 422, "invalid", "/", "r", errors=errors)
        return ApiError(422, "Invalid", "invalid", problem)

    async def request(ready: list[Upload]) -> CommitResponse:
        sent.append([u.local.path for u in ready])
        if len(sent) == 1:
            raise refusal((1, "size"), (2, "content_hash"))
        results = []
        for u in ready:
            file = FileInfo(u.local.path, "id", 1, u.local.content_hash, 1, 0.0, False, "alice", 0.0, 1, 8)
            results.append(CommitResultOut(u.local.path, "committed", file=file))
        return CommitResponse(1, results)

    report = SyncReport()
    await engine._commit_refusing(uploads, request, report)
    assert sent == [["f0", "f1", "f2", "f3"], ["f0", "f3"]]
    assert report.uploaded == 2
    refused = state.issues(["refused"])
    assert [(row.local, row.reason) for row in refused] == [("f1", "refused by the server: bad size")]

    async def unexplained(ready: list[Upload]) -> CommitResponse:
        raise ApiError(422, "Invalid", "nothing named")

    with pytest.raises(ApiError):  # a refusal naming no entry is a failure the user sees, not a skip
        await engine._commit_refusing(uploads, unexplained, SyncReport())

    early, late = (Upload(LocalFile("x", "x", 1, mtime, "h"), None) for mtime in (-(10**20), 10**21))
    assert (_commit_entry(early)["mtime"], _commit_entry(late)["mtime"]) == (MTIME_MIN, MTIME_MAX)
    state.close()
