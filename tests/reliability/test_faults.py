"""The service under injected AWS faults: what botocore's standard retries absorb, what surfaces as a 503
problem with ``Retry-After``, and that neither leaves corrupted or half-written state.

Every fault kind of the proxy is injected once into every AWS operation a workload uses (the retry must
absorb it), then made persistent (the client must get a 503 it can retry, and the retry must commit
exactly once). The acceptance run drives a mixed workload through the SDK at 5% injected errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
import uuid

import aiohttp
import pytest

from service.settings import Settings
from tests.api.files_helpers import body, download, entry, independent_hash, upload_direct
from tests.api.helpers import PROBLEM, problem, user
from tests.api.test_notifications import confirmation_link, mail_to
from tests.conftest import TEST_BLOCK_SIZE
from tests.reliability.conftest import ROUNDS, through
from tests.reliability.faultproxy import Fault, FaultProxy, Rule

#: Every AWS operation the workload below makes through the proxy.
OPERATIONS = (
    "GetItem",
    "PutItem",
    "DeleteItem",
    "Query",
    "BatchGetItem",
    "TransactWriteItems",
    "AssumeRole",
    "PutObject",
    "HeadObject",
    "GetObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "DeleteObject",
)


async def home(client, headers) -> str:
    response = await client.get("/v1/namespaces", headers=headers)
    return (await response.json())["namespaces"][0]["id"]


async def workload(client, headers, ns: str, tag: str) -> dict[str, bytes]:
    """Every way in and out once; returns what each path must read back as. Fails on any non-2xx."""
    small, large, direct = body(2000), body(TEST_BLOCK_SIZE + 1000), body(3000)
    put = await client.put(f"/v1/ns/{ns}/files/{tag}/small.bin", data=io.BytesIO(small), headers=headers)
    assert put.status == 201, await put.text()
    put = await client.put(f"/v1/ns/{ns}/files/{tag}/large.bin", data=io.BytesIO(large), headers=headers)
    assert put.status == 201, await put.text()
    await upload_direct(client, headers, ns, direct)
    committed = await client.post(
        f"/v1/ns/{ns}/commit",
        json={"entries": [entry(f"{tag}/direct.bin", direct)]},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert committed.status == 200, await committed.text()
    compared = await client.post(f"/v1/ns/{ns}/compare", json={"entries": []}, headers=headers)
    assert compared.status == 200, await compared.text()
    changes = await client.get(f"/v1/ns/{ns}/changes", params={"cursor": "s0"}, headers=headers)
    assert changes.status == 200, await changes.text()
    # The commit verified by checksum (a HeadObject): the way out reads the object.
    assert await download(client, headers, ns, f"{tag}/direct.bin", via_service=True) == direct
    return {f"{tag}/small.bin": small, f"{tag}/large.bin": large, f"{tag}/direct.bin": direct}


async def assert_reads_back(client, headers, ns: str, expected: dict[str, bytes]) -> None:
    listed = await client.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)
    assert listed.status == 200
    live = {f["path"]: f for f in (await listed.json())["files"]}
    for path, data in expected.items():
        assert live[path]["content_hash"] == independent_hash(data), path
        assert await download(client, headers, ns, path, via_service=True) == data, path
        assert await download(client, headers, ns, path, via_service=False) == data, path


#: Fault kinds that a retry can absorb (a delay under the read timeout is merely slow).
ABSORBABLE: tuple[Fault, ...] = ("error", "throttle", "reset", "truncate", "drop_reply")


@pytest.mark.parametrize("shift", range(2 * ROUNDS))
async def test_one_fault_in_every_operation_is_retried_away(client, proxy: FaultProxy, shift):
    """Each operation's first call fails, each with another fault kind (rotated by ``shift``: CI runs two
    rotations, ``FILESYNC_FAULT_ROUNDS=3`` all five and more); the workload must not notice."""
    alice = await user(client, "alice")
    ns = await home(client, alice)
    for index, operation in enumerate(OPERATIONS):
        proxy.add(Rule(ABSORBABLE[(index + shift) % len(ABSORBABLE)], operation=operation, first=1, status=500))
    expected = await workload(client, alice, ns, f"w{shift}")
    proxy.clear()
    await assert_reads_back(client, alice, ns, expected)
    faulted = {operation for (_, operation, _) in proxy.injected}
    assert faulted >= set(OPERATIONS) - {"DeleteItem"}, set(OPERATIONS) - faulted
    history = await client.get(f"/v1/ns/{ns}/files/w{shift}/direct.bin", params={"versions": ""}, headers=alice)
    assert [v["rev"] for v in (await history.json())["versions"]] == [1], "a retried commit wrote twice"


async def expect_unavailable(response) -> dict:
    body = await problem(response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert body["retry_after"] == int(response.headers["Retry-After"])
    return body


@pytest.mark.parametrize("fault", ["error", "reset"])
async def test_a_commit_that_cannot_be_written_is_a_503_and_its_retry_commits_once(client, proxy, fault):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(1500)
    await upload_direct(client, alice, ns, data)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    proxy.add(Rule(fault, operation="TransactWriteItems", status=500))
    failed = await client.post(
        f"/v1/ns/{ns}/commit", json={"entries": [entry("a.txt", data)]}, headers={**alice, **key}
    )
    await expect_unavailable(failed)
    proxy.clear()
    listed = await client.get(f"/v1/ns/{ns}/files", headers=alice)
    assert (await listed.json())["files"] == [], "a failed commit left a file behind"
    for _ in range(2):  # the retry, and a duplicate of it
        retried = await client.post(
            f"/v1/ns/{ns}/commit", json={"entries": [entry("a.txt", data)]}, headers={**alice, **key}
        )
        assert retried.status == 200, await retried.text()
        [result] = (await retried.json())["results"]
        assert (result["status"], result["file"]["rev"]) == ("committed", 1)
    changes = await client.get(f"/v1/ns/{ns}/changes", params={"cursor": "s0"}, headers=alice)
    assert [c["seq"] for c in (await changes.json())["changes"]] == [1]
    assert await download(client, alice, ns, "a.txt", via_service=True) == data


async def test_a_commit_whose_reply_is_lost_commits_exactly_once(client, proxy):
    """The transaction took effect but the service heard nothing. Lost once, botocore's retry finds the
    head moved and the service recognises its own write; lost every time, the client gets a 503, and its
    retry with the same Idempotency-Key is answered from what was written. Either way: one version, one
    journal entry."""
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(1200)
    await upload_direct(client, alice, ns, data)
    proxy.add(Rule("drop_reply", operation="TransactWriteItems", first=1))
    once = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("once.txt", data)]}, headers=alice)
    assert once.status == 200, await once.text()
    proxy.clear()
    proxy.add(Rule("drop_reply", operation="TransactWriteItems"))
    key = {"Idempotency-Key": uuid.uuid4().hex}
    commit = {"entries": [entry("always.txt", data)]}
    await expect_unavailable(await client.post(f"/v1/ns/{ns}/commit", json=commit, headers={**alice, **key}))
    proxy.clear()
    retried = await client.post(f"/v1/ns/{ns}/commit", json=commit, headers={**alice, **key})
    assert retried.status == 200, await retried.text()
    assert (await retried.json())["results"][0]["file"]["rev"] == 1
    changes = await client.get(f"/v1/ns/{ns}/changes", params={"cursor": "s0"}, headers=alice)
    assert [(c["path"], c["seq"]) for c in (await changes.json())["changes"]] == [("once.txt", 1), ("always.txt", 2)]


@pytest.mark.parametrize(
    ("verify", "fault", "operation"), [("read", "truncate", "GetObject"), ("checksum", "reset", "HeadObject")]
)
async def test_a_verification_read_that_breaks_off_keeps_the_good_blob(
    faulty, make_client, app_factory, proxy, verify, fault, operation
):
    """A truncated or reset read of an uploaded body (read mode), or a checksum look-up that breaks off
    (checksum mode), must not count as a mismatch: the blob stays, the commit is a 503, and once S3 answers
    again the same commit succeeds without a new upload."""
    settings = dataclasses.replace(faulty, files=dataclasses.replace(faulty.files, verify=verify))
    client = await make_client(app_factory(settings))
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(4000)
    await upload_direct(client, alice, ns, data)
    proxy.add(Rule(fault, operation=operation))
    failed = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("v.bin", data)]}, headers=alice)
    await expect_unavailable(failed)
    proxy.clear()
    committed = await client.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("v.bin", data)]}, headers=alice)
    assert committed.status == 200, await committed.text()
    assert await download(client, alice, ns, "v.bin", via_service=True) == data


@pytest.mark.parametrize("operation", ["PutObject", "UploadPart", "CompleteMultipartUpload", "TransactWriteItems"])
async def test_a_streaming_upload_that_cannot_be_stored_is_a_503_and_nothing_is_visible(
    client, proxy, operation, moto_endpoint, faulty: Settings, aws_session
):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(TEST_BLOCK_SIZE + 10) if operation != "PutObject" else body(100)
    proxy.add(Rule("error", operation=operation, status=503))
    failed = await client.put(f"/v1/ns/{ns}/files/s.bin", data=io.BytesIO(data), headers=alice)
    await expect_unavailable(failed)
    proxy.clear()
    missing = await client.get(f"/v1/ns/{ns}/files/s.bin", headers=alice)
    await problem(missing, 404)
    async with aws_session.client("s3", endpoint_url=moto_endpoint) as s3:
        uploads = await s3.list_multipart_uploads(Bucket=faulty.bucket)
        assert uploads.get("Uploads", []) == [], "a failed streaming upload left its multipart upload open"


async def test_persistent_faults_on_every_dependency_are_503s_never_500s(client, proxy):
    alice = await user(client, "alice")
    ns = await home(client, alice)
    proxy.add(Rule("error", status=500))
    for method, path, kwargs in (
        ("GET", f"/v1/ns/{ns}/files", {}),
        ("POST", "/v1/credentials", {"json": {}}),
        ("GET", f"/v1/ns/{ns}/changes", {"params": {"cursor": "s0"}}),
        ("PUT", f"/v1/ns/{ns}/files/x.txt", {"data": b"x"}),
        ("POST", f"/v1/ns/{ns}/uploads", {"json": {"content_hash": independent_hash(b"y" * 10), "size": 10}}),
        ("GET", "/readyz", {}),
    ):
        response = await client.request(method, path, headers=alice, **kwargs)
        assert response.status == 503, (path, await response.text())
        assert response.content_type == PROBLEM


async def test_a_slow_dependency_past_the_read_timeout_is_a_prompt_503(provisioned, proxy, make_client, app_factory):
    settings = through(provisioned, proxy, read_timeout=0.5, max_attempts=2)
    client = await make_client(app_factory(settings))
    alice = await user(client, "alice")
    ns = await home(client, alice)
    proxy.add(Rule("delay", service="dynamodb", delay=0.2))
    assert (await client.get(f"/v1/ns/{ns}/files", headers=alice)).status == 200, "a short delay must pass"
    proxy.clear()
    proxy.add(Rule("delay", service="dynamodb", delay=3.0))
    started = time.monotonic()
    await expect_unavailable(await client.get(f"/v1/ns/{ns}/files", headers=alice))
    # Two attempts of 0.5 s and botocore's backoff: seconds, not the 30 s default timeout, and no hang.
    assert time.monotonic() - started < 5


async def test_a_download_cut_off_mid_stream_closes_the_connection_at_once(client, proxy):
    """Once the 200 and part of the body are out, a broken S3 read cannot become a problem: the client must
    see a short body promptly (never a hang, nor a problem document spliced into the bytes)."""
    alice = await user(client, "alice")
    ns = await home(client, alice)
    data = body(200_000)
    assert (await client.put(f"/v1/ns/{ns}/files/d.bin", data=io.BytesIO(data), headers=alice)).status == 201
    proxy.add(Rule("truncate", operation="GetObject", first=1))
    started = time.monotonic()
    response = await client.get(f"/v1/ns/{ns}/files/d.bin", params={"via": "service"}, headers=alice)
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(5):
            await response.read()
    assert time.monotonic() - started < 5
    assert await download(client, alice, ns, "d.bin", via_service=True) == data


# --- acceptance: 5% injected AWS errors, a mixed workload through the SDK --------------------------------


@pytest.mark.timeout(120)
async def test_five_percent_injected_aws_errors_fail_no_idempotent_request(
    provisioned: Settings, proxy: FaultProxy, make_client, app_factory, tmp_path
):
    from tools.sdk.client import FileSyncClient
    from tools.sdk.errors import ApiError
    from tools.sdk.hashing import hash_file
    from tools.sdk.transfer import S3Transfer

    # The production retry configuration (four attempts), not the suite's faster two.
    served = await make_client(app_factory(through(provisioned, proxy)))
    server = str(served.make_url("")).rstrip("/")
    async with FileSyncClient(server, attempts=8) as sdk:
        await sdk.sign_up("alice", "correct horse battery")
        await sdk.log_in("alice", "correct horse battery")
        ns = (await sdk.namespaces())[0].id
        config = await sdk.config()
        # From here on, every AWS call the service makes may fail: 5%, spread over the fault kinds.
        for fault in ("error", "throttle", "reset", "drop_reply", "truncate"):
            proxy.add(Rule(fault, probability=0.01, status=500 if fault == "error" else 503))
        committed: dict[str, bytes] = {}
        failures: list[str] = []
        for round_ in range(4 * ROUNDS):
            files = {f"r{round_}/f{i}.bin": body(500 + 97 * i) for i in range(6)}
            for path, data in files.items():
                (tmp_path / "f").write_bytes(data)
                digest = await hash_file(tmp_path / "f", config.block_size)
                try:
                    if path.endswith(("0.bin", "3.bin")):
                        await sdk.put_stream(ns, path, data)
                        committed[path] = data
                        continue
                    if digest.content_hash in await sdk.missing(ns, [digest.content_hash]):
                        creds = await sdk.credentials([ns])
                        async with S3Transfer(creds, config.block_size) as s3:
                            await s3.upload(ns, tmp_path / "f", digest)
                    entries = [
                        {
                            "path": path,
                            "content_hash": digest.content_hash,
                            "size": len(data),
                            "mtime": 1.0,
                            "parent_rev": None,
                        }
                    ]
                    outcome = await sdk.commit(ns, entries, idempotency_key=uuid.uuid4().hex)
                    assert outcome.results[0].status == "committed", outcome
                    committed[path] = data
                except ApiError as exc:
                    failures.append(f"{path}: {exc}")
            compared = await sdk.compare(ns, {"entries": []})
            assert {i.path for i in compared.items} >= set(committed)
            await sdk.changes(ns, "s0")
        injected = proxy.total_injected
        proxy.clear()
        assert not failures, failures
        assert injected >= 10, f"only {injected} faults were injected"
        listed = {f.path: f for f in await sdk.list_files(ns)}
        assert set(listed) == set(committed)
        async with aiohttp.ClientSession() as http:
            for path, data in committed.items():
                assert listed[path].content_hash == independent_hash(data)
                assert listed[path].rev == 1, f"{path} was committed twice"
                async with http.get(await sdk.download_url(ns, path)) as response:
                    assert await response.read() == data, path


@pytest.mark.parametrize("fault", ["throttle", "error", "reset"])
async def test_a_confirmation_mail_ses_will_not_take_is_a_503_and_can_be_asked_for_again(client, proxy, fault):
    bob = await user(client, "bob")
    address = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    proxy.add(Rule(fault, service="ses"))
    change = {"email": address, "current_password": "correct horse battery"}
    body = await expect_unavailable(await client.put("/v1/account/email", json=change, headers=bob))
    assert "saved unconfirmed" in body["detail"]
    account = await (await client.get("/v1/account", headers=bob)).json()
    assert (account["email"], account["email_confirmed"]) == (address, False)
    assert await mail_to("", address, confirmations=True) == []
    proxy.clear()
    assert (await client.post("/v1/account/email/confirmation", headers=bob)).status == 204
    [mail] = await mail_to("", address, confirmations=True)
    assert (await client.post(confirmation_link(mail))).status == 200
