"""Content codings of request bodies: uploads (a streaming PUT, a batch of files) take none and are refused
with 415 before a byte is stored; JSON bodies (commit, compare, blob checks...) may be gzip or deflate, every
limit counted on the inflated bytes. Each family tried with gzip and deflate, a bomb, and codings nobody takes.

Tests layer: the service in process over real HTTP against the session's emulator (tests/conftest.py).
"""

from __future__ import annotations

import gzip
import io
import time
import zlib

import aiohttp
import orjson
import pytest

from tests.api.files_helpers import home, independent_hash
from tests.api.helpers import problem, user


def deflate(data: bytes) -> bytes:
    return zlib.compress(data, 9)


CODERS = {"gzip": gzip.compress, "deflate": deflate}
#: Codings nobody takes: brotli and zstd (aiohttp inflates them only with extra packages), a stack, an unknown.
OTHERS = ("br", "zstd", "compress", "gzip, gzip", "x-custom")


def batch_form(entry: dict, data: bytes) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(orjson.dumps({"entries": [entry]}), {"Content-Type": "application/json"})
    part.set_content_disposition("form-data", name="manifest")
    part = writer.append(data, {"Content-Type": "application/octet-stream"})
    part.set_content_disposition("form-data", name="file", filename="file")
    return writer


def hand_made_batch(entry: dict, data: bytes, part_header: str) -> bytes:
    """A batch whose file part carries a header RFC 7578 forbids there (aiohttp's writer refuses to add it)."""
    return (
        b'--b\r\nContent-Disposition: form-data; name="manifest"\r\nContent-Type: application/json\r\n\r\n'
        + orjson.dumps({"entries": [entry]})
        + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n'
        + part_header.encode()
        + b"\r\n\r\n"
        + data
        + b"\r\n--b--\r\n"
    )


async def nothing_stored(client, headers, ns: str, provisioned, aws_session) -> None:
    listed = await (await client.get(f"/v1/ns/{ns}/files", headers=headers)).json()
    assert listed["files"] == []
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        found = await s3.list_objects_v2(Bucket=provisioned.bucket, Prefix=f"ns/{ns}/")
    assert found.get("KeyCount", 0) == 0


async def test_compressed_uploads_are_refused_with_415_and_nothing_is_stored(client, provisioned, aws_session):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    # 200 KB that would inflate to 200 MB.
    plain = b"\0" * (200 * 1024 * 1024)
    for coding in (*CODERS, *OTHERS):
        sent = CODERS[coding](plain) if coding in CODERS else b"x" * 1000
        started = time.monotonic()
        response = await client.put(
            f"/v1/ns/{ns}/files/big.bin", data=io.BytesIO(sent), headers={**alice, "Content-Encoding": coding}
        )
        body = await problem(response, 415)
        assert body["type"] == "/v1/docs#problem-unsupported-media-type"
        assert response.headers["Accept-Encoding"] == "identity"
        assert coding in body["detail"]
        assert time.monotonic() - started < 5

        data = b"hello"
        entry = {"path": "a.txt", "content_hash": independent_hash(data), "size": len(data), "mtime": 1.0}
        payload = CODERS[coding](data) if coding in CODERS else data
        form = batch_form(entry, payload)
        response = await client.post(
            f"/v1/ns/{ns}/files:batch",
            data=form,
            headers={**alice, "Content-Encoding": coding, "Content-Type": form.content_type},
        )
        assert (await problem(response, 415))["type"] == "/v1/docs#problem-unsupported-media-type"
        assert response.headers["Accept-Encoding"] == "identity"
    # A part of a batch with a coding of its own is refused too (its bytes are never inflated).
    data = b"hello"
    entry = {"path": "a.txt", "content_hash": independent_hash(data), "size": len(data), "mtime": 1.0}
    for coding in CODERS:
        for header in (f"Content-Encoding: {coding}", "Content-Transfer-Encoding: base64"):
            response = await client.post(
                f"/v1/ns/{ns}/files:batch",
                data=hand_made_batch(entry, CODERS[coding](data), header),
                headers={**alice, "Content-Type": "multipart/form-data; boundary=b"},
            )
            await problem(response, 415)
    await nothing_stored(client, alice, ns, provisioned, aws_session)
    # Identity is an upload's only coding, named or not.
    ok = await client.put(f"/v1/ns/{ns}/files/a.txt", data=b"plain", headers={**alice, "Content-Encoding": "identity"})
    assert ok.status == 201


@pytest.mark.parametrize("coding", sorted(CODERS))
async def test_compressed_json_bodies_are_inflated_with_every_limit_on_the_inflated_bytes(client, coding):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    assert (await client.put(f"/v1/ns/{ns}/files/a.txt", data=b"a", headers=alice)).status == 201
    compress = CODERS[coding]
    entry = {"path": "b.txt", "content_hash": independent_hash(b"a"), "size": 1, "mtime": 1.0}
    json_headers = {**alice, "Content-Type": "application/json", "Content-Encoding": coding}
    families = {
        "commit": (f"/v1/ns/{ns}/commit", {"entries": [entry]}, 1024 * 1024),
        "compare": (f"/v1/ns/{ns}/compare", {"entries": [{"path": "a.txt", "content_hash": ""}]}, 8 * 1024 * 1024),
        "blobs:check": (f"/v1/ns/{ns}/blobs:check", {"hashes": [independent_hash(b"zz")]}, 1024 * 1024),
    }
    for name, (path, body, limit) in families.items():
        response = await client.post(path, data=compress(orjson.dumps(body)), headers=json_headers)
        assert response.status == 200, (name, await response.text())
        # Just past the limit once inflated, a few KB as sent: 413, without reading the rest.
        bomb = compress(b'{"entries": [' + b" " * (limit + 1) + b"]}")
        assert len(bomb) < limit // 100
        started = time.monotonic()
        response = await client.post(path, data=io.BytesIO(bomb), headers=json_headers)
        await problem(response, 413)
        assert time.monotonic() - started < 5, name
    assert (await (await client.get(f"/v1/ns/{ns}/files/b.txt?via=service", headers=alice)).read()) == b"a"


async def test_json_bodies_in_a_coding_nobody_takes_are_415(client):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    for coding in OTHERS:
        for path in (f"/v1/ns/{ns}/commit", f"/v1/ns/{ns}/compare"):
            response = await client.post(
                path,
                data=b'{"entries": []}',
                headers={**alice, "Content-Type": "application/json", "Content-Encoding": coding},
            )
            body = await problem(response, 415)
            assert body["type"] == "/v1/docs#problem-unsupported-media-type", coding
            assert response.headers["Accept-Encoding"] == "gzip, deflate"
