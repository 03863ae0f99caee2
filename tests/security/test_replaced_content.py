"""Verified content never changes, even when an editor replaces it behind the service's back.

The emulator enforces no policy (the session and bucket policies that forbid the replacement are proven in
``tests/core/test_session_policy.py`` and ``tests/cloudformation/test_policies.py``), so here an editor's
scoped credentials overwrite a verified blob for real, and every download path must serve the verified
bytes (a versioned bucket: each version names the object verified) or refuse (an unversioned one: the
version names the ETag verified), never the junk under the old hash; the sync client says so in one line
and goes on; and an honest upload of the same content repairs the namespace.

Tests layer: the service in process over real HTTP against the session's emulator.
"""

from __future__ import annotations

import os
from pathlib import Path

import aioboto3
import aiohttp
import pytest

from service.content import digest_bytes
from tests.api.files_helpers import independent_hash
from tests.api.helpers import problem
from tests.conftest import TEST_BLOCK_SIZE
from tools.sdk.client import FileSyncClient
from tools.sdk.transfer import S3Transfer
from tools.sync.__main__ import _summary
from tools.sync.engine import SyncEngine
from tools.sync.state import StateDB

PASSWORD = "correct horse battery"
#: Larger than a batch's small files: the sync client sends it with credentials, the commit verifies it.
SIZE = 300 * 1024


async def _user(url: str, name: str) -> FileSyncClient:
    sdk = FileSyncClient(url)
    await sdk.__aenter__()
    await sdk.sign_up(name, PASSWORD)
    await sdk.log_in(name, PASSWORD)
    return sdk


@pytest.fixture
async def people(client):
    url = str(client.make_url(""))
    alice, mallory = await _user(url, "alice"), await _user(url, "mallory")
    yield alice, mallory
    for sdk in (alice, mallory):
        await sdk.__aexit__(None, None, None)


async def _replace(mallory: FileSyncClient, ns: str, content_hash: str, junk: bytes) -> None:
    """What the issue found: an editor's scoped credentials overwrite a verified blob (no If-None-Match)."""
    creds = await mallory.credentials([ns])
    session = aioboto3.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        region_name=creds.region,
    )
    async with session.client("s3", endpoint_url=creds.endpoint_url) as s3:
        await s3.put_object(Bucket=creds.bucket, Key=f"ns/{ns}/blobs/{content_hash}", Body=junk)


async def _current_object(settings, aws_session, ns: str, content_hash: str) -> bytes | None:
    async with aws_session.client("s3", endpoint_url=settings.aws.endpoint_url) as s3:
        try:
            got = await s3.get_object(Bucket=settings.bucket, Key=f"ns/{ns}/blobs/{content_hash}")
        except s3.exceptions.NoSuchKey:
            return None
        async with got["Body"] as body:
            return await body.read()


async def _shared_document(alice: FileSyncClient, mallory: FileSyncClient, tmp_path: Path, data: bytes):
    """Alice shares a namespace with mallory (editor) and syncs a document into it from her first device."""
    ns = (await alice.create_namespace("team")).id
    await alice.share(ns, "mallory", "editor")
    first = tmp_path / "first"
    first.mkdir()
    (first / "doc.bin").write_bytes(data)
    report = await SyncEngine(alice, ns, first, StateDB(tmp_path / "first.db"), device="first").sync()
    assert report.uploaded == 1
    return ns


async def _fetch(client, headers, ns: str, query: str = "", extra: dict | None = None):
    """(status, body) of a download, following a redirect to S3 as a browser would."""
    response = await client.get(
        f"/v1/ns/{ns}/files/doc.bin{query}", headers={**headers, **(extra or {})}, allow_redirects=False
    )
    if response.status == 302:
        async with aiohttp.ClientSession() as http, http.get(response.headers["Location"]) as s3:
            return s3.status, await s3.read()
    return response.status, await response.read()


def _bearer(sdk: FileSyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {sdk.token}"}


async def test_a_replaced_blob_is_never_served_and_an_honest_upload_repairs_it(
    client, people, tmp_path, provisioned, aws_session
):
    alice, mallory = people
    data = os.urandom(SIZE)
    content_hash = independent_hash(data)
    ns = await _shared_document(alice, mallory, tmp_path, data)
    await _replace(mallory, ns, content_hash, os.urandom(SIZE))
    headers = _bearer(alice)

    # Every download path serves exactly the verified bytes: the version they ask for is the one verified.
    assert await _fetch(client, headers, ns) == (200, data)
    assert await _fetch(client, headers, ns, "?via=service") == (200, data)
    assert await _fetch(client, headers, ns, "?via=service", {"Range": "bytes=100-199"}) == (206, data[100:200])
    second = tmp_path / "second"
    second.mkdir()
    report = await SyncEngine(alice, ns, second, StateDB(tmp_path / "second.db"), device="second").sync()
    assert report.skipped == []
    assert (second / "doc.bin").read_bytes() == data
    # A move keeps the verified object: the moved file serves the verified bytes too.
    moved = await client.post(
        f"/v1/ns/{ns}/moves", json={"moves": [{"from": "doc.bin", "to": "moved.bin", "parent_rev": 1}]}, headers=headers
    )
    assert moved.status == 200, await moved.text()
    via_service = await client.get(f"/v1/ns/{ns}/files/moved.bin?via=service", headers=headers)
    assert await via_service.read() == data
    moved_back = await client.post(
        f"/v1/ns/{ns}/moves", json={"moves": [{"from": "moved.bin", "to": "doc.bin", "parent_rev": 2}]}, headers=headers
    )
    assert moved_back.status == 200, await moved_back.text()

    # Asking to upload the content finds the replacement: the junk goes, the content counts as missing.
    ticket = await client.post(
        f"/v1/ns/{ns}/uploads", json={"content_hash": content_hash, "size": SIZE}, headers=headers
    )
    ticket_body = await ticket.json()
    assert ticket_body["kind"] == "put", ticket_body
    assert ticket_body["headers"]["If-None-Match"] == "*"
    assert await alice.missing(ns, [content_hash]) == [content_hash]
    assert await _current_object(provisioned, aws_session, ns, content_hash) is None

    # An honest upload (the presigned PUT, with every header it names) and a commit repair it.
    async with (
        aiohttp.ClientSession() as http,
        http.put(ticket_body["url"], data=data, headers=ticket_body["headers"]) as put,
    ):
        assert put.status == 200, await put.text()
    entry = {"path": "copy.bin", "content_hash": content_hash, "size": SIZE, "mtime": 1.0, "parent_rev": None}
    assert (await alice.commit(ns, [entry])).results[0].status == "committed"
    assert await alice.missing(ns, [content_hash]) == []
    assert await _current_object(provisioned, aws_session, ns, content_hash) == data
    again = await client.post(
        f"/v1/ns/{ns}/uploads", json={"content_hash": content_hash, "size": SIZE}, headers=headers
    )
    assert (await again.json())["kind"] == "present"
    assert await _fetch(client, headers, ns, "?via=service") == (200, data)


async def test_without_object_versions_a_replaced_blob_is_refused_everywhere_then_repaired(
    client, people, tmp_path, provisioned, aws_session
):
    """A store without versioning (an S3-compatible one, or a bucket not yet versioned): versions pin the
    verified object's ETag, and a replaced object is refused rather than served."""
    async with aws_session.client("s3", endpoint_url=provisioned.aws.endpoint_url) as s3:
        await s3.put_bucket_versioning(Bucket=provisioned.bucket, VersioningConfiguration={"Status": "Suspended"})
    alice, mallory = people
    data = os.urandom(SIZE)
    content_hash = independent_hash(data)
    ns = await _shared_document(alice, mallory, tmp_path, data)
    (info,) = await alice.list_files(ns)
    assert info.body_version is None
    assert info.body_etag
    await _replace(mallory, ns, content_hash, os.urandom(SIZE))
    headers = _bearer(alice)

    # Another device: the file is not taken, the round goes on, and the summary says why in one line.
    second = tmp_path / "second"
    second.mkdir()
    (second / "mine.txt").write_bytes(b"from the second device")
    engine = SyncEngine(alice, ns, second, StateDB(tmp_path / "second.db"), device="second")
    report = await engine.sync()
    assert not (second / "doc.bin").exists()
    assert report.uploaded == 1
    (issue,) = report.skipped
    assert issue.local == "doc.bin"
    assert "not the one the service verified" in issue.reason
    assert "skipped doc.bin: not downloaded: the stored body of" in _summary(report)

    # The service refuses on every path: never the junk under the old hash.
    for query, extra in (("", None), ("?via=service", None), ("?via=service", {"Range": "bytes=0-9"})):
        response = await client.get(f"/v1/ns/{ns}/files/doc.bin{query}", headers={**headers, **(extra or {})})
        body = await problem(response, 409)
        assert body["type"].endswith("content-replaced")
    assert await alice.missing(ns, [content_hash]) == [content_hash]

    # Alice's first device still has the file: an honest upload of it (If-None-Match: the junk was deleted)
    # and a commit repair every version that names this content.
    creds = await alice.credentials([ns])
    source = tmp_path / "first" / "doc.bin"
    async with S3Transfer(creds, TEST_BLOCK_SIZE) as transfer:
        await transfer.upload(ns, source, digest_bytes(data, TEST_BLOCK_SIZE))
    entry = {"path": "copy.bin", "content_hash": content_hash, "size": SIZE, "mtime": 1.0, "parent_rev": None}
    assert (await alice.commit(ns, [entry])).results[0].status == "committed"
    assert await _fetch(client, headers, ns, "?via=service") == (200, data)
    assert await _fetch(client, headers, ns, "?via=service", {"Range": "bytes=0-9"}) == (206, data[:10])
    repaired = await engine.sync()
    assert repaired.skipped == []
    assert (second / "doc.bin").read_bytes() == data


async def test_an_upload_that_finds_the_key_taken_keeps_what_is_there_if_it_is_the_content(client, people, tmp_path):
    """The SDK creates only if absent: uploading content someone already stored is no error, and the
    commit verifies what is there."""
    alice, _ = people
    ns = (await alice.account()).home_namespace
    data = os.urandom(SIZE)
    path = tmp_path / "doc.bin"
    path.write_bytes(data)
    creds = await alice.credentials([ns])
    async with S3Transfer(creds, TEST_BLOCK_SIZE) as transfer:
        await transfer.upload(ns, path, digest_bytes(data, TEST_BLOCK_SIZE))
        await transfer.upload(ns, path, digest_bytes(data, TEST_BLOCK_SIZE))  # the key is taken: 412, kept
    entry = {"path": "doc.bin", "content_hash": independent_hash(data), "size": SIZE, "mtime": 1.0, "parent_rev": None}
    assert (await alice.commit(ns, [entry])).results[0].status == "committed"
    assert await _fetch(client, _bearer(alice), ns, "?via=service") == (200, data)
