"""Limits that protect a worker from slow and greedy clients: a body that stops arriving, or comes too slowly,
is cut off with 408; a request head must arrive within its deadline; one user's uploads through the service
are capped per worker (429); the worker holds at most its budget of request bodies (503). Each tested at and
past its edge."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import socket
import time

import orjson
import pytest
from aiohttp import web

from service.app import make_runner
from service.keys import BODY_BUDGET
from tests.api.helpers import PROBLEM, problem, user
from tests.api.test_health import metric

IDLE = 0.5


@pytest.fixture
async def limited(provisioned, make_client, app_factory):
    settings = dataclasses.replace(
        provisioned,
        limits=dataclasses.replace(provisioned.limits, body_idle_seconds=IDLE, max_streams_per_user=1),
    )
    return await make_client(app_factory(settings))


@pytest.fixture
async def one_stream(provisioned, make_client, app_factory):
    """One streaming upload per user, and an idle timeout no loaded machine reaches while a test holds a body."""
    settings = dataclasses.replace(provisioned, limits=dataclasses.replace(provisioned.limits, max_streams_per_user=1))
    return await make_client(app_factory(settings))


async def raw_request(client, head: str, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send a request head and the first part of its body, by hand."""
    url = client.make_url("")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(head.encode() + body)
    await writer.drain()
    return reader, writer


def head(method: str, path: str, token: dict[str, str], length: int, content_type: str) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {token['Authorization']}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )


async def response_of(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    assert headers["content-type"].startswith(PROBLEM)
    return int(status_line.split()[1]), orjson.loads(body)


async def test_a_body_that_stops_arriving_is_cut_off_with_408_and_nothing_is_stored(limited):
    alice = await user(limited, "alice")
    ns = (await (await limited.get("/v1/account", headers=alice)).json())["home_namespace"]
    started = time.monotonic()
    reader, writer = await raw_request(
        limited, head("PUT", f"/v1/ns/{ns}/files/slow.bin", alice, 100_000, "application/octet-stream"), b"x" * 1000
    )
    status, body = await asyncio.wait_for(response_of(reader), 10)
    elapsed = time.monotonic() - started
    writer.close()
    assert status == 408
    assert body["type"] == "/v1/docs#problem-body-stalled"
    assert IDLE <= elapsed < IDLE + 3
    await problem(await limited.get(f"/v1/ns/{ns}/files/slow.bin", headers=alice), 404)

    # The same for a JSON body (a commit): nothing committed.
    reader, writer = await raw_request(
        limited, head("POST", f"/v1/ns/{ns}/commit", alice, 500, "application/json"), b'{"entries": ['
    )
    status, body = await asyncio.wait_for(response_of(reader), 10)
    writer.close()
    assert status == 408
    listed = await (await limited.get(f"/v1/ns/{ns}/files", headers=alice)).json()
    assert listed["files"] == []

    # And for a batch of small files that stops in the middle of a body: nothing committed.
    manifest = b'{"entries": [{"path": "a.txt", "content_hash": "' + b"0" * 64 + b'", "size": 10, "mtime": 1}]}'
    started_form = (
        b'--b\r\nContent-Disposition: form-data; name="manifest"\r\nContent-Type: application/json\r\n\r\n'
        + manifest
        + b'\r\n--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc'
    )
    reader, writer = await raw_request(
        limited, head("POST", f"/v1/ns/{ns}/files:batch", alice, 5000, "multipart/form-data; boundary=b"), started_form
    )
    status, body = await asyncio.wait_for(response_of(reader), 10)
    writer.close()
    assert status == 408
    assert body["type"] == "/v1/docs#problem-body-stalled"
    listed = await (await limited.get(f"/v1/ns/{ns}/files", headers=alice)).json()
    assert listed["files"] == []


async def test_a_body_that_keeps_coming_slowly_but_within_the_idle_timeout_is_accepted(limited):
    alice = await user(limited, "alice")
    ns = (await (await limited.get("/v1/account", headers=alice)).json())["home_namespace"]
    reader, writer = await raw_request(
        limited, head("PUT", f"/v1/ns/{ns}/files/trickle.txt", alice, 5, "text/plain"), b"a"
    )
    for byte in b"bcde":
        await asyncio.sleep(IDLE / 3)
        writer.write(bytes([byte]))
        await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"201"
    assert await (await limited.get(f"/v1/ns/{ns}/files/trickle.txt?via=service", headers=alice)).read() == b"abcde"


async def test_one_user_streams_at_most_the_limit_at_once_and_others_are_not_held_up(one_stream):
    limited = one_stream
    alice, bob = await user(limited, "alice"), await user(limited, "bob")
    ns = (await (await limited.get("/v1/account", headers=alice)).json())["home_namespace"]
    bob_ns = (await (await limited.get("/v1/account", headers=bob)).json())["home_namespace"]
    # Alice's first upload is under way (half its body sent, the rest held back).
    reader, writer = await raw_request(
        limited, head("PUT", f"/v1/ns/{ns}/files/one.txt", alice, 4, "text/plain"), b"ab"
    )
    try:
        # Until that upload has taken its slot, a second one goes through (and is harmless): wait for the refusal.
        deadline = asyncio.get_running_loop().time() + 10
        tries = itertools.count()
        while (
            second := await limited.put(f"/v1/ns/{ns}/files/early-{next(tries)}.txt", data=b"second", headers=alice)
        ).status != 429:
            assert second.status == 201, await second.text()
            assert asyncio.get_running_loop().time() < deadline, "the first upload never took its slot"
            await asyncio.sleep(0.05)
        body = await problem(second, 429)
        assert second.headers["Retry-After"] == "1"
        assert "At most 1 upload" in body["detail"]
        assert (await limited.put(f"/v1/ns/{bob_ns}/files/b.txt", data=b"bob's", headers=bob)).status == 201
        writer.write(b"cd")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"201"
        # Its slot is free again.
        assert (await limited.put(f"/v1/ns/{ns}/files/two.txt", data=b"second", headers=alice)).status == 201
    finally:
        writer.close()  # also when an assertion failed: no socket left to the next test


# --- request heads and idle connections (the production runner) ---------------------------------------------

HEAD_SECONDS = 2.0


@pytest.fixture
async def served(provisioned, app_factory):
    """The app behind the production runner (``make_runner``), with a 2 s head deadline and a 4 s keep-alive."""
    settings = dataclasses.replace(
        provisioned,
        limits=dataclasses.replace(provisioned.limits, header_seconds=HEAD_SECONDS, keepalive_seconds=4.0),
    )
    runner = make_runner(app_factory(settings))
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield sock.getsockname()[:2]
    finally:
        await runner.cleanup()
        sock.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closes the connection (reading and dropping anything it sends); fails past
    ``seconds``."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:  # closed with bytes of ours unread: the kernel answers with a reset
            pass
    return time.monotonic() - started


async def test_a_head_trickled_a_line_a_second_is_closed_at_the_head_deadline(served):
    host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")

    async def trickle() -> None:
        for n in range(60):
            await asyncio.sleep(1)
            writer.write(f"X-Trickle-{n}: {n}\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    trickler = asyncio.create_task(trickle())
    try:
        await closed_within(reader, HEAD_SECONDS + 3)
    finally:
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickler
        writer.close()
    elapsed = time.monotonic() - started
    assert HEAD_SECONDS - 0.1 <= elapsed < HEAD_SECONDS + 3

    # A connection that sends nothing at all is closed at the same deadline.
    reader, writer = await asyncio.open_connection(host, port)
    assert await closed_within(reader, HEAD_SECONDS + 3) >= HEAD_SECONDS - 0.1
    writer.close()


async def test_the_head_deadline_counts_from_a_heads_first_byte_not_from_idleness(served):
    host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for _ in range(2):
        writer.write(request)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 5)).split()[1] == b"200"
        while (await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
            pass
        assert await asyncio.wait_for(reader.readexactly(len(b'{"status":"ok"}')), 5) == b'{"status":"ok"}'
        # Idle past the head deadline but within keep-alive: the connection stays open for the next request.
        await asyncio.sleep(HEAD_SECONDS + 0.5)
    # Idle past keep-alive (4 s in all since the last answer): closed.
    assert await closed_within(reader, 5) < 5
    writer.close()


# --- whole-body deadline -----------------------------------------------------------------------------------


@pytest.fixture
async def paced(provisioned, make_client, app_factory):
    """A body has 1 s, and one more for every 1,000 bytes received; 0.5 s without a byte is a stall."""
    limits = dataclasses.replace(provisioned.limits, body_idle_seconds=IDLE, body_seconds=1.0, body_min_rate=1000)
    return await make_client(app_factory(dataclasses.replace(provisioned, limits=limits)))


async def test_a_body_that_trickles_within_the_idle_timeout_is_cut_off_at_its_deadline(paced):
    alice = await user(paced, "alice")
    ns = (await (await paced.get("/v1/account", headers=alice)).json())["home_namespace"]
    for method, path, content_type in (
        ("POST", f"/v1/ns/{ns}/compare", "application/json"),
        ("PUT", f"/v1/ns/{ns}/files/trickle.bin", "application/octet-stream"),
        ("POST", f"/v1/ns/{ns}/files:batch", "multipart/form-data; boundary=b"),
    ):
        started = time.monotonic()
        reader, writer = await raw_request(paced, head(method, path, alice, 100_000, content_type), b"--")

        async def trickle(writer: asyncio.StreamWriter = writer) -> None:
            for _ in range(100):
                await asyncio.sleep(IDLE / 3)
                writer.write(b" ")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        trickler = asyncio.create_task(trickle())
        try:
            status, body = await asyncio.wait_for(response_of(reader), 10)
        finally:
            trickler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickler
            writer.close()
        assert status == 408, (path, body)
        assert body["type"] == "/v1/docs#problem-body-stalled"
        assert "too slowly" in body["detail"]
        # 1 s, plus a few bytes' worth: well before the 100 s the trickle would take.
        assert 1.0 <= time.monotonic() - started < 4
    assert (await (await paced.get(f"/v1/ns/{ns}/files", headers=alice)).json())["files"] == []


async def test_a_body_at_a_fair_pace_may_take_longer_than_the_base_deadline(paced):
    alice = await user(paced, "alice")
    ns = (await (await paced.get("/v1/account", headers=alice)).json())["home_namespace"]
    chunk, chunks = b"x" * 1000, 6
    reader, writer = await raw_request(
        paced, head("PUT", f"/v1/ns/{ns}/files/paced.bin", alice, len(chunk) * chunks, "text/plain"), chunk
    )
    started = time.monotonic()
    for _ in range(chunks - 1):
        await asyncio.sleep(0.3)  # 1,000 bytes each 0.3 s: 1.5 s in all, past the 1 s base
        writer.write(chunk)
        await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert time.monotonic() - started > 1.0
    assert status_line.split()[1] == b"201"


# --- the worker's budget of request bodies ---------------------------------------------------------------

BUDGET = 100_000


@pytest.fixture
async def budgeted(provisioned, make_client, app_factory):
    app = app_factory(
        dataclasses.replace(provisioned, limits=dataclasses.replace(provisioned.limits, body_budget=BUDGET))
    )
    client = await make_client(app)
    client.app_under_test = app
    return client


async def test_bodies_past_the_workers_budget_are_refused_with_503_until_it_frees(budgeted):
    alice = await user(budgeted, "alice")
    ns = (await (await budgeted.get("/v1/account", headers=alice)).json())["home_namespace"]
    budget = budgeted.app[BODY_BUDGET]
    manifest = orjson.dumps({"entries": [{"path": "a.txt", "content_hash": ""}]})
    padded = manifest[:-1] + b" " * (30_000 - len(manifest)) + b"}"
    # A compare reserves its body twice (the bytes and their parsed form): 60,000 of the 100,000.
    reader, writer = await raw_request(
        budgeted, head("POST", f"/v1/ns/{ns}/compare", alice, len(padded), "application/json"), padded[:100]
    )
    deadline = time.monotonic() + 5
    while budget.held < 60_000:
        assert time.monotonic() < deadline, budget.held
        await asyncio.sleep(0.01)
    refused = await budgeted.post(
        f"/v1/ns/{ns}/compare", data=padded, headers={**alice, "Content-Type": "application/json"}
    )
    body = await problem(refused, 503)
    assert body["type"] == "/v1/docs#problem-busy"
    assert refused.headers["Retry-After"] == "1"
    # A streaming upload that would hold more than what is left waits its turn too; a small body fits.
    upload = await budgeted.put(f"/v1/ns/{ns}/files/big.bin", data=b"y" * 50_000, headers=alice)
    await problem(upload, 503)
    assert (await budgeted.put(f"/v1/ns/{ns}/files/small.txt", data=b"small", headers=alice)).status == 201
    writer.write(padded[100:])
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"200"
    writer.close()
    deadline = time.monotonic() + 5
    while budget.held:
        assert time.monotonic() < deadline, budget.held
        await asyncio.sleep(0.01)
    # Everything given back: both fit now.
    again = await budgeted.post(
        f"/v1/ns/{ns}/compare", data=padded, headers={**alice, "Content-Type": "application/json"}
    )
    assert again.status == 200
    assert (await budgeted.put(f"/v1/ns/{ns}/files/big.bin", data=b"y" * 50_000, headers=alice)).status == 201
    assert budget.held == 0


async def test_the_sdk_retries_any_request_a_busy_worker_refused(budgeted):
    """``busy`` means nothing was read or done: the SDK sends the request again after ``Retry-After``, even a
    POST that carries no idempotency key."""
    from tools.sdk.client import FileSyncClient

    alice = await user(budgeted, "alice")
    ns = (await (await budgeted.get("/v1/account", headers=alice)).json())["home_namespace"]
    budget = budgeted.app[BODY_BUDGET]
    manifest = orjson.dumps({"entries": [{"path": "a.txt", "content_hash": ""}]})
    padded = manifest[:-1] + b" " * (BUDGET // 2 - len(manifest)) + b"}"
    # A compare reserves its body twice: this one holds the whole budget until the rest of it arrives.
    reader, writer = await raw_request(
        budgeted, head("POST", f"/v1/ns/{ns}/compare", alice, len(padded), "application/json"), padded[:100]
    )
    deadline = time.monotonic() + 5
    while budget.held < BUDGET:
        assert time.monotonic() < deadline, budget.held
        await asyncio.sleep(0.01)
    async with FileSyncClient(str(budgeted.make_url("")), token=alice["Authorization"].split()[1]) as sdk:
        creating = asyncio.create_task(sdk.create_namespace("Team docs"))
        deadline = time.monotonic() + 10
        while not creating.done() and not metric(
            await (await budgeted.get("/metrics")).text(),
            "filesync_http_requests_total",
            route="/v1/namespaces",
            method="POST",
            status="503",
        ):
            assert time.monotonic() < deadline, "the SDK's request was never refused"
            await asyncio.sleep(0.05)
        assert not creating.done()  # refused, and waiting to try again
        writer.write(padded[100:])
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"200"
        writer.close()
        created = await asyncio.wait_for(creating, 30)
    assert created.name == "Team docs"
