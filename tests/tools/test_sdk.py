"""The SDK against the real service over HTTP: accounts, direct transfers, commits, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from aiohttp import web

from tests.api.files_helpers import independent_hash
from tests.conftest import TEST_BLOCK_SIZE
from tools.sdk.client import FileSyncClient
from tools.sdk.errors import ApiError
from tools.sdk.hashing import hash_file, hash_files
from tools.sdk.transfer import S3Transfer


@pytest.fixture
async def sdk(client):
    async with FileSyncClient(str(client.make_url(""))) as api:
        await api.sign_up("alice", "correct horse battery")
        await api.log_in("alice", "correct horse battery")
        yield api


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, TEST_BLOCK_SIZE, 3 * TEST_BLOCK_SIZE + 5])
async def test_hash_matches_the_definition(tmp_path: Path, size: int, workers: int):
    """Also when one file's blocks are hashed by several threads, each a stretch of them."""
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = await hash_file(path, TEST_BLOCK_SIZE, workers)
    assert digest.content_hash == independent_hash(data)
    assert digest.size == size
    assert digest.block_digests == tuple(
        hashlib.sha256(data[i : i + TEST_BLOCK_SIZE]).digest() for i in range(0, size, TEST_BLOCK_SIZE)
    )


async def test_hash_files_in_parallel(tmp_path: Path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}"
        path.write_bytes(os.urandom(1000 * i))
        paths.append(path)
    digests = await hash_files(paths, TEST_BLOCK_SIZE)
    assert {p: d.content_hash for p, d in digests.items()} == {p: independent_hash(p.read_bytes()) for p in paths}


@pytest.mark.parametrize("size", [10, 3 * TEST_BLOCK_SIZE + 5])
async def test_direct_upload_commit_download(sdk: FileSyncClient, tmp_path: Path, size: int):
    config = await sdk.config()
    ns = (await sdk.account()).home_namespace
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(size))
    digest = await hash_file(source, config.block_size)
    assert await sdk.missing(ns, [digest.content_hash]) == [digest.content_hash]
    creds = await sdk.credentials([ns])
    sent: list[int] = []
    async with S3Transfer(creds, config.block_size, concurrency=4) as s3:
        await s3.upload(ns, source, digest, progress=sent.append)
        result = await sdk.commit(
            ns, [{"path": "docs/source.bin", "content_hash": digest.content_hash, "size": size, "mtime": 1.0}]
        )
        assert result.results[0].status == "committed"
        target = tmp_path / "copy.bin"
        # Verified as it arrives: the digest of what was written, block by block, without reading it back.
        assert await s3.download(ns, digest.content_hash, size, target) == digest
    assert sum(sent) == size
    assert target.read_bytes() == source.read_bytes()
    assert [f.path for f in await sdk.list_files(ns)] == ["docs/source.bin"]
    assert [v.rev for v in await sdk.history(ns, "docs/source.bin")] == [1]
    assert await sdk.missing(ns, [digest.content_hash]) == []


async def test_download_and_fetch_read_packed_and_loose_files_alike(sdk: FileSyncClient):
    """A packed file is served by the service, a loose one from the URL it redirects to: ``download`` takes
    either; ``fetch`` takes both kinds in one request."""
    ns = (await sdk.account()).home_namespace
    packed, loose = os.urandom(300), b"hello"
    entry = {"path": "p.bin", "content_hash": independent_hash(packed), "size": len(packed), "mtime": 1.0}
    await sdk.upload_batch(ns, [entry], [packed])
    await sdk.put_stream(ns, "l.txt", loose)
    assert await sdk.download(ns, "p.bin") == packed
    assert await sdk.download(ns, "l.txt") == loose
    files = {f.path: f for f in await sdk.list_files(ns)}
    assert files["p.bin"].body_pack is not None
    assert files["l.txt"].body_pack is None
    got = {g.index: g.data async for g in sdk.fetch(ns, [files["l.txt"], files["p.bin"]])}
    assert got == {0: loose, 1: packed}


async def test_streaming_put_through_the_sdk(sdk: FileSyncClient):
    ns = (await sdk.account()).home_namespace
    info = await sdk.put_stream(ns, "notes/hello world.txt", b"hello")
    assert info.path == "notes/hello world.txt"
    assert info.content_hash == independent_hash(b"hello")


async def test_move_many_renames_a_folder_and_answers_each_move(sdk: FileSyncClient):
    ns = (await sdk.account()).home_namespace
    infos = [await sdk.put_stream(ns, f"old/{i}.txt", f"body {i}".encode()) for i in range(3)]
    config = await sdk.config()
    assert config.max_moves == 500
    moves = [(f.path, f.path.replace("old/", "new/"), f.rev) for f in infos] + [("old/none.txt", "new/none.txt", 1)]
    answer = await sdk.move_many(ns, moves, idempotency_key="sdk-rename")
    assert [(r.source, r.target, r.status) for r in answer.results] == [
        (a, b, "committed" if i < 3 else "conflict") for i, (a, b, _) in enumerate(moves)
    ]
    assert [r.file.file_id for r in answer.results[:3] if r.file] == [f.file_id for f in infos]
    assert answer.results[3].reason == "no such file"
    assert await sdk.move_many(ns, moves, idempotency_key="sdk-rename") == answer  # a retry: the same answer
    everything_conflicted = await sdk.move_many(ns, moves[3:])  # 409: still an answer, not an error
    assert [r.status for r in everything_conflicted.results] == ["conflict"]
    assert sorted(f.path for f in await sdk.list_files(ns)) == ["new/0.txt", "new/1.txt", "new/2.txt"]


async def test_errors_are_api_errors_with_the_problem(sdk: FileSyncClient):
    with pytest.raises(ApiError) as info:
        await sdk.commit("a" * 16, [{"path": "x", "content_hash": "0" * 64, "size": 1}])
    assert info.value.status == 404
    assert info.value.problem is not None
    with pytest.raises(ApiError) as bad:
        await sdk.put_stream((await sdk.account()).home_namespace, "../escape", b"x")
    assert bad.value.status == 422
    assert "dot-segment" in bad.value.detail


async def test_unreachable_server_is_a_clear_error():
    async with FileSyncClient("http://127.0.0.1:9", attempts=2) as api:
        with pytest.raises(ApiError) as info:
            await api.config()
    assert info.value.status == 0
    assert "cannot reach" in info.value.detail


async def test_answers_from_a_newer_server_with_fields_this_client_does_not_know_decode(make_client):
    """A newer server adds fields, at the top and nested; a deployed client keeps working."""
    file_info = {
        "path": "a.txt",
        "file_id": "f1",
        "rev": 2,
        "content_hash": "0" * 64,
        "size": 1,
        "mtime": 1.0,
        "deleted": False,
        "committed_by": "alice",
        "committed_at": 2.0,
        "seq": 3,
        "block_size": 8,
        "storage_class": "GLACIER",
    }

    async def changes(request: web.Request) -> web.Response:
        page = {"changes": [file_info], "cursor": "s3", "more": False, "backoff_seconds": 0.0, "shard": 7}
        return web.json_response(page)

    async def account(request: web.Request) -> web.Response:
        problem = {
            "type": "/v1/docs#problem-not-found",
            "title": "Not found",
            "status": 404,
            "detail": "No such account.",
            "instance": "/v1/account",
            "request_id": "r1",
            "trace": {"span": 1},
        }
        return web.json_response(problem, status=404, content_type="application/problem+json")

    newer = web.Application()
    newer.router.add_get("/v1/ns/{ns}/changes", changes)
    newer.router.add_get("/v1/account", account)
    server = await make_client(newer)
    async with FileSyncClient(str(server.make_url(""))) as api:
        page = await api.changes("ns1", "s0")
        assert (page.cursor, page.changes[0].path, page.changes[0].rev) == ("s3", "a.txt", 2)
        with pytest.raises(ApiError) as raised:
            await api.account()
    assert raised.value.problem is not None
    assert (raised.value.status, raised.value.problem.detail) == (404, "No such account.")
