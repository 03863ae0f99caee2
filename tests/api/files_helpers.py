"""Helpers for file tests: an independent content hash, and the three ways of getting bodies in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import uuid
from typing import Any

import aioboto3
import aiohttp

from tests.conftest import TEST_BLOCK_SIZE


def independent_hash(data: bytes, block: int = TEST_BLOCK_SIZE) -> str:
    """The content hash computed from the definition with hashlib alone (not the service's code)."""
    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    if len(blocks) <= 1:
        return hashlib.sha256(data).hexdigest()
    joined = b"".join(hashlib.sha256(b).digest() for b in blocks)
    return f"{hashlib.sha256(joined).hexdigest()}-{len(blocks)}"


async def home(client, headers) -> str:
    """The caller's home namespace."""
    return (await (await client.get("/v1/account", headers=headers)).json())["home_namespace"]


def body(size: int) -> bytes:
    return os.urandom(size)


async def commit(client, headers, ns: str, entries: list[dict[str, Any]], key: str | None = None) -> dict:
    extra = {"Idempotency-Key": key} if key else {}
    response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": entries}, headers={**headers, **extra})
    body = await response.json()
    everything_conflicted = {r["status"] for r in body["results"]} == {"conflict"}
    assert response.status == (409 if everything_conflicted else 200), body
    return body


def entry(path: str, data: bytes, parent_rev: int | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "content_hash": independent_hash(data),
        "size": len(data),
        "mtime": 1_700_000_000.5,
        "parent_rev": parent_rev,
    }


async def upload_direct(client, headers, ns: str, data: bytes) -> None:
    """The seed's way: scoped STS credentials, then S3 itself (one PUT, or concurrent multipart)."""
    creds_response = await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=headers)
    creds = await creds_response.json()
    session = aioboto3.Session(
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        region_name=creds["region"],
    )
    key = f"ns/{ns}/blobs/{independent_hash(data)}"
    async with session.client("s3", endpoint_url=creds["endpoint_url"]) as s3:
        if len(data) <= TEST_BLOCK_SIZE:
            await s3.put_object(
                Bucket=creds["bucket"],
                Key=key,
                Body=data,
                ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            )
            return
        upload = await s3.create_multipart_upload(Bucket=creds["bucket"], Key=key, ChecksumAlgorithm="SHA256")

        async def part(number: int, chunk: bytes) -> dict:
            checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
            response = await s3.upload_part(
                Bucket=creds["bucket"],
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=chunk,
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        chunks = [data[i : i + TEST_BLOCK_SIZE] for i in range(0, len(data), TEST_BLOCK_SIZE)]
        parts = await asyncio.gather(*(part(n, c) for n, c in enumerate(chunks, 1)))
        await s3.complete_multipart_upload(
            Bucket=creds["bucket"],
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": list(parts)},  # type: ignore[arg-type]
        )


async def upload_presigned(client, headers, ns: str, data: bytes) -> None:
    """For clients without an AWS SDK: presigned URLs, plain HTTP PUTs, completion through the service."""
    response = await client.post(
        f"/v1/ns/{ns}/uploads",
        json={"content_hash": independent_hash(data), "size": len(data)},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    ticket = await response.json()
    async with aiohttp.ClientSession() as http:
        if ticket["kind"] == "present":
            return
        if ticket["kind"] == "put":
            async with http.put(ticket["url"], data=io.BytesIO(data), headers=ticket["headers"]) as put:
                assert put.status == 200, await put.text()
            return
        parts = []
        for part in ticket["parts"]:
            start = (part["number"] - 1) * ticket["part_size"]
            async with http.put(part["url"], data=io.BytesIO(data[start : start + ticket["part_size"]])) as put:
                assert put.status == 200, await put.text()
                parts.append({"number": part["number"], "etag": put.headers["ETag"]})
    done = await client.post(
        f"/v1/ns/{ns}/uploads/{ticket['upload_id']}/complete", json={"parts": parts}, headers=headers
    )
    assert done.status == 200, await done.text()
    assert (await done.json())["content_hash"] == independent_hash(data)


async def download(client, headers, ns: str, path: str, via_service: bool) -> bytes:
    url = f"/v1/ns/{ns}/files/{path}" + ("?via=service" if via_service else "")
    response = await client.get(url, headers=headers, allow_redirects=False)
    if response.status == 302:
        async with aiohttp.ClientSession() as http, http.get(response.headers["Location"]) as s3:
            assert s3.status == 200
            return await s3.read()
    assert response.status == 200, await response.text()
    return await response.read()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"
