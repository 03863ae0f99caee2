"""Limits that protect a worker from slow and greedy clients: a body that stops arriving is cut off with 408,
and one user's uploads through the service are capped per worker (429), each tested at and past its edge."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import orjson
import pytest

from tests.api.helpers import PROBLEM, problem, user

IDLE = 0.5


@pytest.fixture
async def limited(provisioned, make_client, app_factory):
    settings = dataclasses.replace(
        provisioned,
        limits=dataclasses.replace(provisioned.limits, body_idle_seconds=IDLE, max_streams_per_user=1),
    )
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


async def test_one_user_streams_at_most_the_limit_at_once_and_others_are_not_held_up(limited):
    alice, bob = await user(limited, "alice"), await user(limited, "bob")
    ns = (await (await limited.get("/v1/account", headers=alice)).json())["home_namespace"]
    bob_ns = (await (await limited.get("/v1/account", headers=bob)).json())["home_namespace"]
    # Alice's first upload is under way (half its body sent, more on the way within the idle timeout).
    reader, writer = await raw_request(
        limited, head("PUT", f"/v1/ns/{ns}/files/one.txt", alice, 4, "text/plain"), b"ab"
    )
    await asyncio.sleep(0.1)
    second = await limited.put(f"/v1/ns/{ns}/files/two.txt", data=b"second", headers=alice)
    body = await problem(second, 429)
    assert second.headers["Retry-After"] == "1"
    assert "At most 1 upload" in body["detail"]
    assert (await limited.put(f"/v1/ns/{bob_ns}/files/b.txt", data=b"bob's", headers=bob)).status == 201
    writer.write(b"cd")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"201"
    writer.close()
    # Its slot is free again.
    assert (await limited.put(f"/v1/ns/{ns}/files/two.txt", data=b"second", headers=alice)).status == 201
