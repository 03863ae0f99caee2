"""Verification is exact: the object's layout must be the claim's (one PutObject for one block, N parts for
N blocks), and a file's size must be its content's verified size, in every way a body gets in.

Tests layer: the service in process over real HTTP against the session's emulator; the checksum rule also
as a pure function, fed the fields of a HeadObject answer (real S3's spellings, which the embedded emulator
reproduces, and those of stores that leave the part count off multipart checksums).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import aioboto3
import pytest

from service.aws.blobs import checksum_matches
from tests.api.files_helpers import body, commit, entry, home, independent_hash, upload_direct, upload_presigned
from tests.api.helpers import problem, user
from tests.api.test_health import metric
from tests.conftest import TEST_BLOCK_SIZE


def b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


Y = hashlib.sha256(b"the digest of some blocks").hexdigest()


@pytest.mark.parametrize(
    ("claim", "stored", "etag", "matches"),
    [
        # One PutObject (no part count anywhere) proves a one-block claim only.
        (Y, b64(Y), '"0123abcd"', True),
        (f"{Y}-2", b64(Y), '"0123abcd"', False),  # the case: a missing suffix is no longer accepted
        # Real S3 multipart: the checksum carries the part count, which must be the claim's.
        (f"{Y}-2", f"{b64(Y)}-2", '"0123abcd-2"', True),
        (f"{Y}-3", f"{b64(Y)}-2", '"0123abcd-2"', False),
        (Y, f"{b64(Y)}-1", '"0123abcd-1"', False),  # a one-part multipart object is not a one-block body
        # A store that leaves the suffix off the checksum (moto unpatched): the ETag's says how many parts.
        (f"{Y}-2", b64(Y), '"0123abcd-2"', True),
        (f"{Y}-2", b64(Y), '"0123abcd-3"', False),
        (Y, b64(Y), '"0123abcd-2"', False),
        # Another digest never matches.
        (Y, b64(hashlib.sha256(b"other").hexdigest()), '"0123abcd"', False),
    ],
)
def test_the_checksum_must_match_the_digest_and_the_part_count(claim, stored, etag, matches):
    assert checksum_matches(claim, stored, etag) is matches


async def test_a_single_put_stored_with_a_multi_block_checksum_does_not_verify_a_multi_block_claim(
    provisioned, make_client, app_factory
):
    """The issue's case, for real on the emulator in checksum mode: one PutObject whose body is the claimed
    two-block content's block digests, so that its SHA-256, which the emulator (as S3) checks and stores,
    is the claimed content's checksum minus its part count. The digest matches; the object's layout does
    not: refused."""
    settings = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, verify="checksum"))
    client = await make_client(app_factory(settings))
    headers = await user(client, "mallory")
    ns = await home(client, headers)
    claimed = body(TEST_BLOCK_SIZE + 1000)
    junk = hashlib.sha256(claimed[:TEST_BLOCK_SIZE]).digest() + hashlib.sha256(claimed[TEST_BLOCK_SIZE:]).digest()
    claim = independent_hash(claimed)
    assert claim.endswith("-2")
    assert hashlib.sha256(junk).hexdigest() == claim.partition("-")[0]
    creds = await (await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=headers)).json()
    session = aioboto3.Session(
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        region_name=creds["region"],
    )
    key = f"ns/{ns}/blobs/{claim}"
    async with session.client("s3", endpoint_url=creds["endpoint_url"]) as s3:
        await s3.put_object(
            Bucket=creds["bucket"],
            Key=key,
            Body=junk,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64(claim.partition("-")[0]),
        )
        head = await s3.head_object(Bucket=creds["bucket"], Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == b64(claim.partition("-")[0])  # as claimed, with no part count
    assert "-" not in head["ETag"]  # one PutObject

    response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("two.bin", claimed)]}, headers=headers)
    assert (await problem(response, 422))["errors"][0]["path"] == "$.entries[0].content_hash"
    check = await client.post(f"/v1/ns/{ns}/blobs:check", json={"hashes": [claim]}, headers=headers)
    assert (await check.json())["missing"] == [claim]
    # An honest multipart upload of the content (parts = blocks) verifies from its checksum alone.
    await upload_direct(client, headers, ns, claimed)
    await commit(client, headers, ns, [entry("two.bin", claimed)])


def _s3_calls(text: str) -> dict[str, float]:
    return {
        op: metric(text, "filesync_aws_requests_total", service="s3", operation=op)
        for op in ("GetObject", "HeadObject")
    }


@pytest.mark.parametrize("verify", ["checksum", "read"])
async def test_a_commit_in_checksum_mode_reads_no_object_bytes(provisioned, make_client, app_factory, verify):
    """Checksum mode (the default, the emulator's too) proves content from the SHA-256 S3 checked and stored:
    one HeadObject per new blob, no GetObject. Read mode reads each one once."""
    settings = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, verify=verify))
    client = await make_client(app_factory(settings))
    headers = await user(client, "alice")
    ns = await home(client, headers)
    one_block, two_blocks = body(3000), body(TEST_BLOCK_SIZE + 1000)
    await upload_direct(client, headers, ns, one_block)
    await upload_direct(client, headers, ns, two_blocks)
    before = _s3_calls(await (await client.get("/metrics")).text())
    await commit(client, headers, ns, [entry("one.bin", one_block), entry("two.bin", two_blocks)])
    after = _s3_calls(await (await client.get("/metrics")).text())
    reads, heads = after["GetObject"] - before["GetObject"], after["HeadObject"] - before["HeadObject"]
    assert (reads, heads) == ((0, 2) if verify == "checksum" else (2, 0))


# --- sizes: one per way in ----------------------------------------------------------------------------


def sized(path: str, data: bytes, size: int, parent_rev: int | None = None) -> dict:
    return {**entry(path, data, parent_rev), "size": size}


async def size_refused(client, headers, ns: str, entries: list[dict], index: int = 0) -> None:
    response = await client.post(f"/v1/ns/{ns}/commit", json={"entries": entries}, headers=headers)
    problem_ = await problem(response, 422)
    assert problem_["errors"][0]["path"] == f"$.entries[{index}].size", problem_
    assert "bytes, not" in problem_["errors"][0]["message"]


@pytest.mark.parametrize("verify", ["read", "checksum"])
async def test_direct_upload_committed_with_another_size_is_refused_and_the_content_kept(
    provisioned, make_client, app_factory, verify
):
    settings = dataclasses.replace(provisioned, files=dataclasses.replace(provisioned.files, verify=verify))
    client = await make_client(app_factory(settings))
    headers = await user(client, "alice")
    ns = await home(client, headers)
    data = body(2000)
    await upload_direct(client, headers, ns, data)
    await size_refused(client, headers, ns, [sized("a.bin", data, 1999)])
    # The object was right and stays: the honest claim commits without a new upload.
    await commit(client, headers, ns, [entry("a.bin", data)])


async def test_presigned_upload_committed_with_another_size_is_refused(client, alice):
    headers, ns = alice
    data = body(3000)
    await upload_presigned(client, headers, ns, data)
    await size_refused(client, headers, ns, [sized("a.bin", data, 3001)])
    await commit(client, headers, ns, [entry("a.bin", data)])


async def test_a_known_hash_committed_with_another_size_is_refused(client, alice):
    """The issue's case: content with a blob record, named again with another size (HEAD would then say 2
    bytes while the body has 1)."""
    headers, ns = alice
    data = body(1)
    await upload_direct(client, headers, ns, data)
    await commit(client, headers, ns, [entry("one.bin", data)])
    await size_refused(client, headers, ns, [sized("two.bin", data, 2)])
    # Also when the path's own current version holds that content, and for a second entry of one request.
    await size_refused(client, headers, ns, [sized("one.bin", data, 2, parent_rev=1)])
    await size_refused(client, headers, ns, [entry("x.bin", data), sized("y.bin", data, 2)], index=1)
    response = await client.head(f"/v1/ns/{ns}/files/one.bin", headers=headers)
    assert response.headers["Content-Length"] == "1"


@pytest.mark.parametrize("record_packed", [True, False])
async def test_content_from_a_batch_named_again_with_another_size_is_refused(
    provisioned, make_client, app_factory, record_packed
):
    settings = dataclasses.replace(
        provisioned, files=dataclasses.replace(provisioned.files, record_packed=record_packed)
    )
    client = await make_client(app_factory(settings))
    headers = await user(client, "alice")
    ns = await home(client, headers)
    data = body(500)
    form = _batch_form([entry("small.bin", data)], [data])
    response = await client.post(f"/v1/ns/{ns}/files:batch", data=form, headers=headers)
    assert response.status == 200, await response.text()
    if record_packed:  # the packed content's record has its size
        await size_refused(client, headers, ns, [sized("again.bin", data, 499)])
    else:  # a pack's content is named by its versions alone: by hash, it is not there to name
        response = await client.post(
            f"/v1/ns/{ns}/commit", json={"entries": [sized("again.bin", data, 499)]}, headers=headers
        )
        assert (await problem(response, 422))["errors"][0]["path"] == "$.entries[0].content_hash"
    # And a batch whose body is not its entry's size commits nothing.
    form = _batch_form([sized("short.bin", data, 501)], [data])
    response = await client.post(f"/v1/ns/{ns}/files:batch", data=form, headers=headers)
    assert (await problem(response, 422))["errors"][0]["path"] == "$.entries[0].size"


async def test_a_streamed_body_is_its_own_size_whatever_it_claims(client, alice):
    headers, ns = alice
    data = body(700)
    claimed = independent_hash(data + b"x")  # the hash of 701 bytes, for a body of 700
    response = await client.put(f"/v1/ns/{ns}/files/s.bin", data=data, headers={**headers, "X-Content-Hash": claimed})
    await problem(response, 422)
    stored = await client.put(f"/v1/ns/{ns}/files/s.bin", data=data, headers=headers)
    assert (await stored.json())["size"] == len(data)
    await size_refused(client, headers, ns, [sized("t.bin", data, 701)])


async def _tamper(settings, aws_session, ns: str, sk: str, size: int) -> None:
    """Data written before sizes were checked: a version whose size is not its content's (and, as then, one
    that names no stored object)."""
    async with aws_session.client("dynamodb", endpoint_url=settings.aws.endpoint_url) as db:
        key = {"pk": {"S": f"NS#{ns}"}, "sk": {"S": sk}}
        item = (await db.get_item(TableName=settings.table, Key=key, ConsistentRead=True))["Item"]
        if sk.startswith("F#"):
            item["size"] = {"N": str(size)}
            item.pop("body_version", None)
            item.pop("body_etag", None)
        else:
            import orjson

            changes = orjson.loads(item["changes"]["B"])
            for change in changes:
                change["size"] = size
                change.pop("body_version", None)
                change.pop("body_etag", None)
            item["changes"] = {"B": orjson.dumps(changes)}
        await db.put_item(TableName=settings.table, Item=item)


async def test_restore_and_move_of_a_version_with_a_wrong_size_are_refused(client, alice, provisioned, aws_session):
    headers, ns = alice
    data, other = body(1500), body(10)
    await upload_direct(client, headers, ns, data)
    await upload_direct(client, headers, ns, other)
    first = await commit(client, headers, ns, [entry("doc.bin", data)])
    await commit(client, headers, ns, [entry("doc.bin", other, parent_rev=1)])
    await _tamper(provisioned, aws_session, ns, f"J#{first['seq']:012d}", 1501)
    response = await client.post(f"/v1/ns/{ns}/restore", json={"path": "doc.bin", "rev": 1}, headers=headers)
    assert (await problem(response, 422))["errors"][0]["path"] == "$.entries[0].size"

    await commit(client, headers, ns, [entry("move-me.bin", data)])
    await _tamper(provisioned, aws_session, ns, "F#move-me.bin", 1499)
    response = await client.post(
        f"/v1/ns/{ns}/move", json={"from": "move-me.bin", "to": "moved.bin", "parent_rev": 1}, headers=headers
    )
    assert (await problem(response, 422))["errors"][0]["path"] == "$.moves[0].from"


def _batch_form(entries: list[dict], bodies: list[bytes]):
    import aiohttp
    import orjson

    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(orjson.dumps({"entries": entries}), {"Content-Type": "application/json"})
    part.set_content_disposition("form-data", name="manifest")
    for data in bodies:
        part = writer.append(data, {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="file")
    return writer
