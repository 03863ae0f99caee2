"""Small files sent and committed in one request (``POST /v1/ns/{ns}/files:batch``): what it stores, what it
costs in AWS requests, and every way its input can be wrong."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import aioboto3
import aiohttp

from service.content import EMPTY_HASH
from service.paths import MAX_PATH_BYTES
from tests.api.files_helpers import body, download, entry, home, independent_hash
from tests.api.helpers import problem, user
from tests.api.test_health import metric

WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")


def form(entries: list[dict], bodies: list[bytes], *, manifest_name: str = "manifest") -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append_json({"entries": entries})
    part.set_content_disposition("form-data", name=manifest_name)
    for data in bodies:
        part = writer.append(data, {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="f")
    return writer


async def send(client, headers, ns: str, entries: list[dict], bodies: list[bytes], key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/ns/{ns}/files:batch", data=form(entries, bodies), headers={**headers, **extra})


async def aws_requests(client) -> dict[tuple[str, str], float]:
    text = await (await client.get("/metrics")).text()
    ops = [("dynamodb", op) for op in (*WRITES, "BatchGetItem", "GetItem", "Query")]
    ops += [("s3", op) for op in ("PutObject", "HeadObject", "GetObject", "CopyObject", "CreateMultipartUpload")]
    return {(s, op): metric(text, "filesync_aws_requests_total", service=s, operation=op) for s, op in ops}


async def listed(client, headers, ns: str) -> list[str]:
    response = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)
    return [f["path"] for f in (await response.json())["files"]]


async def test_a_batch_of_a_thousand_small_files_costs_one_put_and_at_most_fifteen_writes(client, alice):
    headers, ns = alice
    datas = [body(64) for _ in range(1000)]
    entries = [entry(f"many/f{i:04d}.txt", d) for i, d in enumerate(datas)]
    before = await aws_requests(client)
    response = await send(client, headers, ns, entries, datas)
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["committed"] * 1000
    after = await aws_requests(client)
    used = {k: after[k] - before[k] for k in after}
    writes = sum(used[("dynamodb", op)] for op in WRITES)
    assert writes <= 15, used  # the budget: at most 15 DynamoDB write requests per 1,000 files
    s3 = sum(n for (service, _), n in used.items() if service == "s3")
    assert s3 <= 0.02 * 1000, used  # the budget: at most 0.02 S3 requests per small file uploaded
    assert used[("s3", "PutObject")] == 1  # the bodies are one pack, one PutObject, and nothing else
    assert s3 == 1, used
    for i in (0, 499, 999):
        assert await download(client, headers, ns, f"many/f{i:04d}.txt", via_service=True) == datas[i]


async def test_repeated_and_empty_content_deletes_and_downloads(client, alice):
    headers, ns = alice
    shared, other = body(100), body(2000)
    first = await send(client, headers, ns, [entry("gone.txt", other)], [other])
    rev = (await first.json())["results"][0]["file"]["rev"]
    entries = [
        entry("a/one.txt", shared),
        entry("a/two.txt", shared),
        entry("a/empty.txt", b""),
        {"path": "gone.txt", "deleted": True, "parent_rev": rev},
        entry("b/other.txt", other),
    ]
    before = await aws_requests(client)
    response = await send(client, headers, ns, entries, [shared, shared, b"", other])
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["committed"] * 5
    assert results[2]["file"]["content_hash"] == EMPTY_HASH
    after = await aws_requests(client)
    # ``shared`` is stored once (in this request's pack); ``other`` was already there (the version being
    # deleted holds it): not stored again.
    assert after[("s3", "PutObject")] - before[("s3", "PutObject")] == 1
    assert sorted(await listed(client, headers, ns)) == ["a/empty.txt", "a/one.txt", "a/two.txt", "b/other.txt"]
    assert await download(client, headers, ns, "a/two.txt", via_service=False) == shared
    assert await download(client, headers, ns, "b/other.txt", via_service=True) == other
    assert await download(client, headers, ns, "a/empty.txt", via_service=True) == b""


async def test_conflicts_and_a_retried_request(client, alice):
    headers, ns = alice
    data = body(10)
    ok = await send(client, headers, ns, [entry("x.txt", data)], [data], key="batch-1")
    assert ok.status == 200
    version = (await ok.json())["results"][0]["file"]
    again = await send(client, headers, ns, [entry("x.txt", data)], [data], key="batch-1")
    assert again.status == 200  # the same request again: answered as committed, nothing new written
    assert (await again.json())["results"][0]["file"] == version
    other = body(11)
    clash = await send(client, headers, ns, [entry("x.txt", other)], [other])
    assert clash.status == 409
    result = (await clash.json())["results"][0]
    assert result["status"] == "conflict"
    assert result["current"]["rev"] == version["rev"]
    update = await send(client, headers, ns, [entry("x.txt", other, parent_rev=version["rev"])], [other])
    assert update.status == 200
    assert (await update.json())["results"][0]["file"]["rev"] == version["rev"] + 1
    assert await download(client, headers, ns, "x.txt", via_service=True) == other


async def test_content_planted_under_its_hash_is_replaced_not_trusted(client, alice):
    """An editor's credentials can put any bytes at a blob's key; a batch sending the real content must
    not commit the planted bytes."""
    headers, ns = alice
    real, planted = body(500), body(500)
    creds = await (await client.post("/v1/credentials", json={"namespaces": [ns]}, headers=headers)).json()
    session = aioboto3.Session(
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        aws_session_token=creds["session_token"],
        region_name=creds["region"],
    )
    async with session.client("s3", endpoint_url=creds["endpoint_url"]) as s3:
        await s3.put_object(
            Bucket=creds["bucket"],
            Key=f"ns/{ns}/blobs/{independent_hash(real)}",
            Body=planted,
            ChecksumSHA256=base64.b64encode(hashlib.sha256(planted).digest()).decode(),
        )
    response = await send(client, headers, ns, [entry("real.bin", real)], [real])
    assert response.status == 200, await response.text()
    assert await download(client, headers, ns, "real.bin", via_service=True) == real
    assert await download(client, headers, ns, "real.bin", via_service=False) == real


async def test_bodies_that_are_not_what_their_entries_say_commit_nothing(client, alice):
    headers, ns = alice
    a, b = body(30), body(40)
    cases = [
        # (entries, bodies, where the problem is)
        ([entry("a", a), entry("b", b)], [a, body(40)], "$.entries[1].content_hash"),
        ([entry("a", a), entry("b", b)], [a, b[:-1]], "$.entries[1].size"),
        ([entry("a", a), entry("b", b)], [a], "$.entries[1]"),
    ]
    for entries, bodies, where in cases:
        details = await problem(await send(client, headers, ns, entries, bodies), 422)
        assert [e["path"] for e in details["errors"]] == [where], details
    extra = await problem(await send(client, headers, ns, [entry("a", a)], [a, b]), 422)
    assert "more body parts than entries" in extra["detail"]
    assert await listed(client, headers, ns) == []


async def test_entries_are_checked_before_any_body_is_read(client, alice):
    headers, ns = alice
    data = body(10)
    bad_path = await problem(await send(client, headers, ns, [entry("a/../b", data)], [data]), 422)
    assert bad_path["errors"][0]["path"] == "$.entries[0].path"
    too_many = [entry(f"f{i}", data) for i in range(1001)]
    await problem(await send(client, headers, ns, too_many, [data] * 1001), 422)
    bad_json = aiohttp.MultipartWriter("form-data")
    part = bad_json.append(b"{not json", {"Content-Type": "application/json"})
    part.set_content_disposition("form-data", name="manifest")
    await problem(await client.post(f"/v1/ns/{ns}/files:batch", data=bad_json, headers=headers), 400)
    unnamed = await client.post(
        f"/v1/ns/{ns}/files:batch", data=form([entry("a", data)], [data], manifest_name="other"), headers=headers
    )
    assert "manifest" in (await problem(unnamed, 422))["detail"]
    not_form = await client.post(f"/v1/ns/{ns}/files:batch", json={"entries": []}, headers=headers)
    await problem(not_form, 415)
    no_boundary = {**headers, "Content-Type": "multipart/form-data"}
    await problem(await client.post(f"/v1/ns/{ns}/files:batch", data=b"--x--", headers=no_boundary), 400)
    broken = b'--b\r\nContent-Disposition: form-data; name="\x12"\r\n\r\n{}\r\n--b--\r\n'
    framed = {**headers, "Content-Type": "multipart/form-data; boundary=b"}
    await problem(await client.post(f"/v1/ns/{ns}/files:batch", data=broken, headers=framed), 400)
    await problem(await send(client, headers, "no-such-namespace", [entry("a", data)], [data]), 404)
    await problem(await client.post(f"/v1/ns/{ns}/files:batch", data=form([entry("a", data)], [data])), 401)
    assert await listed(client, headers, ns) == []


async def test_size_limits_at_and_past_their_edges(provisioned, make_client, app_factory):
    limit, request_limit = 1000, 64 * 1024
    settings = dataclasses.replace(
        provisioned,
        files=dataclasses.replace(provisioned.files, inline_max_file=limit, inline_max_request=request_limit),
    )
    client = await make_client(app_factory(settings))
    headers = await user(client, "carol")
    ns = await home(client, headers)
    config = await (await client.get("/v1/config")).json()
    assert (config["max_inline_file"], config["max_inline_request"]) == (limit, request_limit)

    at_edge = body(limit)
    ok = await send(client, headers, ns, [entry("edge.bin", at_edge)], [at_edge])
    assert ok.status == 200, await ok.text()
    past = body(limit + 1)
    claimed = await problem(await send(client, headers, ns, [entry("past.bin", past)], [past]), 422)
    assert claimed["errors"][0]["path"] == "$.entries[0].size"
    # A part longer than the limit is refused as it arrives, whatever its entry claims.
    lying = await send(client, headers, ns, [entry("lie.bin", body(10))], [past])
    assert "at most 1000 bytes" in (await problem(lying, 413))["detail"]

    many = [body(limit) for _ in range(70)]  # 70,000 bytes of bodies: past the request limit
    entries = [entry(f"m{i}", d) for i, d in enumerate(many)]
    await problem(await send(client, headers, ns, entries, many), 413)  # Content-Length says so up front

    writer = form(entries, many)
    sink = _Sink()
    await writer.write(sink)  # type: ignore[arg-type]  # it only needs write()

    async def chunked():  # no Content-Length: the limit is counted as the body arrives
        for start in range(0, len(sink.data), 8192):
            yield bytes(sink.data[start : start + 8192])

    streamed = await client.post(
        f"/v1/ns/{ns}/files:batch", data=chunked(), headers={**headers, "Content-Type": writer.content_type}
    )
    assert "at most 65536 bytes" in (await problem(streamed, 413))["detail"]
    assert await listed(client, headers, ns) == ["edge.bin"]


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk


async def test_the_longest_path_commits_lists_downloads_and_can_be_followed(client, alice):
    """DynamoDB keys a file by its path key (at most 1,024 bytes a sort key): the longest path the rules
    allow must fit every key built from it; one byte more is a 422, not a 500."""
    headers, ns = alice
    longest = "/".join(["a" * 255, "b" * 255, "c" * 255, "d" * (MAX_PATH_BYTES - 3 * 256)])
    assert len(longest.encode()) == MAX_PATH_BYTES
    data = body(5)
    response = await send(client, headers, ns, [entry(longest, data)], [data])
    assert response.status == 200, await response.text()
    assert await listed(client, headers, ns) == [longest]
    assert await download(client, headers, ns, longest, via_service=True) == data
    followed = await client.put(f"/v1/ns/{ns}/follows/{longest}", headers=headers)
    assert followed.status in (200, 201, 204), await followed.text()
    refused = await send(client, headers, ns, [entry(longest + "e", data)], [data])
    assert (await problem(refused, 422))["errors"][0]["path"] == "$.entries[0].path"
