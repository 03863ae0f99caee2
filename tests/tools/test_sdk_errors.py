"""The SDK's failures: every one is an error of its tree (``tools.sdk.errors``), never botocore's or
aiohttp's; transient ones are retried with the one backoff; a refused token is renewed once.

Tests layer: the service in process over HTTP; the SDK's storage traffic crosses a fault proxy in front of
the session's emulator, which answers with the faults S3 produces (SlowDown, resets, bodies cut short).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from service.wire import FETCH_MEDIA_TYPE, FileInfo
from tests.conftest import TEST_BLOCK_SIZE
from tests.reliability.faultproxy import FaultProxy, Rule
from tools.sdk import errors
from tools.sdk.client import FileSyncClient
from tools.sdk.hashing import hash_file
from tools.sdk.retry import RETRY_AFTER_CAP, backoff
from tools.sdk.transfer import S3Transfer

PASSWORD = "correct horse battery"


@pytest.fixture
async def proxy(moto_endpoint: str):
    async with FaultProxy(moto_endpoint) as started:
        yield started


@pytest.fixture
async def sdk(provisioned, proxy, make_client, app_factory):
    """Alice's session on a service whose scoped credentials send clients to S3 through the proxy."""
    served = await make_client(app_factory(dataclasses.replace(provisioned, s3_public_endpoint=proxy.url)))
    async with FileSyncClient(str(served.make_url("")), attempts=3) as api:
        await api.sign_up("alice", PASSWORD)
        await api.log_in("alice", PASSWORD)
        yield api


def _ours(exc: BaseException) -> None:
    assert isinstance(exc, errors.ApiError)
    assert type(exc).__module__ == "tools.sdk.errors", f"{type(exc)} escaped the SDK"


async def test_storage_faults_are_retried_and_what_persists_is_an_sdk_error(sdk, proxy, tmp_path: Path):
    ns = (await sdk.account()).home_namespace
    source = tmp_path / "one-block.bin"
    source.write_bytes(os.urandom(1000))
    digest = await hash_file(source, TEST_BLOCK_SIZE)
    creds = await sdk.credentials([ns])
    async with S3Transfer(creds, TEST_BLOCK_SIZE, attempts=3) as s3:
        # Transient: two SlowDowns, then through.
        proxy.add(Rule("throttle", service="s3", operation="PutObject", first=2))
        await s3.upload(ns, source, digest)
        assert proxy.injected[("s3", "PutObject", "throttle")] == 2

        # Persistent: every attempt refused, then the SDK's Unavailable naming the endpoint, action and file.
        proxy.clear()
        proxy.add(Rule("error", service="s3", operation="PutObject", status=503))
        with pytest.raises(errors.Unavailable) as busy:
            await s3.upload(ns, source, digest)
        _ours(busy.value)
        assert (busy.value.status, busy.value.title) == (503, "SlowDown")
        assert (busy.value.server, busy.value.action, busy.value.path) == (proxy.url, "uploading", source)
        assert proxy.injected[("s3", "PutObject", "error")] == 3  # the transfer's three attempts

        # A download whose connection is reset, and one whose body is cut short: fetched again.
        proxy.clear()
        proxy.add(Rule("reset", service="s3", operation="GetObject", first=1))
        proxy.add(Rule("truncate", service="s3", operation="GetObject", first=1))
        target = tmp_path / "back.bin"
        await s3.download(ns, digest.content_hash, digest.size, target)
        assert target.read_bytes() == source.read_bytes()
        assert proxy.injected[("s3", "GetObject", "reset")] == proxy.injected[("s3", "GetObject", "truncate")] == 1

        # Not there: the storage's 404 as the SDK's NotFound (no problem body: it is not the service's).
        proxy.clear()
        with pytest.raises(errors.NotFound) as missing:
            await s3.download(ns, "0" * 64, 10, tmp_path / "nothing.bin")
        _ours(missing.value)
        assert missing.value.problem is None
        assert missing.value.action == "downloading"

        # The storage goes away after it had answered: it stopped answering.
        await proxy.close()
        with pytest.raises(errors.ConnectionLost) as gone:
            await s3.upload(ns, source, digest)
        _ours(gone.value)
        assert "stopped answering" in gone.value.detail

    # Never reached at all: a connection error, retried (nothing was sent) and then raised.
    async with S3Transfer(creds, TEST_BLOCK_SIZE, attempts=2) as s3:
        with pytest.raises(errors.ConnectError) as unreachable:
            await s3.upload(ns, source, digest)
    _ours(unreachable.value)
    assert "connection refused" in unreachable.value.detail


async def test_a_refused_token_is_renewed_once_however_many_requests_were_refused(client):
    renewals = 0
    async with FileSyncClient(str(client.make_url(""))) as api:
        await api.sign_up("bob", PASSWORD)
        tokens = await api.log_in("bob", PASSWORD)

        async def renew(session: FileSyncClient) -> None:
            nonlocal renewals
            renewals += 1
            await session.refresh(tokens.refresh_token)  # a rotating token: a second use would end the session

        api.renew_session = renew
        api.token = tokens.access_token[:-4] + "AAAA"  # a signature the server refuses
        accounts = await asyncio.gather(*(api.account() for _ in range(6)))
    assert {a.username for a in accounts} == {"bob"}
    assert renewals == 1


async def test_a_session_that_cannot_be_renewed_fails_with_what_the_renewal_raised(client):
    class Ended(Exception):
        pass

    async def renew(session: FileSyncClient) -> None:
        try:
            await session.refresh("not-a-refresh-token")
        except errors.Unauthenticated as exc:
            raise Ended from exc

    async with FileSyncClient(str(client.make_url("")), renew_session=renew) as api:
        await api.sign_up("carol", PASSWORD)
        with pytest.raises(errors.Unauthenticated):  # a wrong password is not a session to renew
            await api.log_in("carol", "not the password at all")
        api.token = "garbage"
        with pytest.raises(Ended):
            await api.account()


async def test_answers_that_are_not_the_api_are_protocol_or_status_errors(make_client):
    """Something else at the server's address (a captive portal, another program): a sentence, not a crash."""

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>welcome to the hotel wifi</html>", content_type="text/html")

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="<html>no</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/config", html)
    app.router.add_get("/v1/account", teapot)
    other = await make_client(app)
    async with FileSyncClient(str(other.make_url("")), attempts=1) as api:
        with pytest.raises(errors.ProtocolError) as garbled:
            await api.config()
        with pytest.raises(errors.StatusError) as refused:
            await api.account()
    _ours(garbled.value)
    assert "something other than a ServiceConfig" in garbled.value.detail
    _ours(refused.value)
    assert (refused.value.status, refused.value.detail) == (418, "<html>no</html>")


async def test_a_fetch_answer_cut_short_is_asked_again_for_what_did_not_come(make_client):
    """The first answer stops after two frames (no end frame); the SDK asks again for the third file only,
    and passes a body the server could not serve on as its problem."""
    asked: list[list[str]] = []

    async def fetch(request: web.Request) -> web.StreamResponse:
        items = (await request.json())["items"]
        asked.append([i["content_hash"] for i in items])
        response = web.StreamResponse(headers={"Content-Type": FETCH_MEDIA_TYPE})
        await response.prepare(request)
        for index, item in enumerate(items[:2]):
            if item["content_hash"] == "c" * 64:
                await response.write(orjson.dumps({"index": index, "problem": "missing or damaged"}) + b"\n")
            else:
                await response.write(
                    orjson.dumps({"index": index, "size": 3}) + b"\n" + item["content_hash"][:3].encode()
                )
        if len(items) < 3:
            await response.write(orjson.dumps({"end": len(items)}) + b"\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/ns/n/blobs:fetch", fetch)
    other = await make_client(app)
    files = [
        FileInfo(
            path=p,
            file_id=p,
            rev=1,
            content_hash=p * 64,
            size=3,
            mtime=0.0,
            deleted=False,
            committed_by="x",
            committed_at=0.0,
            seq=1,
            block_size=TEST_BLOCK_SIZE,
        )
        for p in "abc"
    ]
    async with FileSyncClient(str(other.make_url(""))) as api:
        got = [(g.index, g.data, g.problem) async for g in api.fetch("n", files)]
    assert sorted(got) == [(0, b"aaa", None), (1, b"bbb", None), (2, None, "missing or damaged")]
    assert asked == [["a" * 64, "b" * 64, "c" * 64], ["c" * 64]]


def test_backoff_grows_with_jitter_and_honours_retry_after():
    for attempt in range(8):
        wait = backoff(attempt)
        assert 0.5 * min(10.0, 0.2 * 2**attempt) <= wait < 1.5 * min(10.0, 0.2 * 2**attempt)
    assert backoff(20, cap=60.0) >= 30.0
    assert backoff(0, retry_after=7) == 7
    assert backoff(0, retry_after=10_000) == RETRY_AFTER_CAP


def test_the_tree_and_its_classification():
    assert errors.status_error(503, "x", "y").__class__ is errors.Unavailable
    assert errors.status_error(429, "x", "y").__class__ is errors.Unavailable
    assert errors.status_error(401, "x", "y").__class__ is errors.Unauthenticated
    assert errors.status_error(404, "x", "y").__class__ is errors.NotFound
    assert errors.status_error(403, "x", "y").__class__ is errors.Forbidden
    assert errors.status_error(409, "x", "y").__class__ is errors.StatusError
    for transient in (errors.ConnectError, errors.ConnectionLost, errors.RequestTimeout, errors.Unavailable):
        assert errors.is_transient(transient(0, "t", "d"))
    for lasting in (errors.StatusError, errors.NotFound, errors.ProtocolError, errors.ApiError):
        assert not errors.is_transient(lasting(0, "t", "d"))
    assert errors.connect_reason(ConnectionRefusedError(111, "Connect call failed")) == "connection refused"
