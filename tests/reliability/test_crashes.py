"""kill -9 of a service or notifier process at the worst moments, then a restart.

Tests layer: ``python -m service`` and ``python -m service.notifier`` run as real subprocesses whose AWS
traffic crosses the fault proxy; the proxy holds the one AWS call that marks the moment (the upload's
completion, the commit's transaction, the SES send) while the test kills the process with SIGKILL. After a
restart, every commit that returned success is intact and downloadable, nothing half-written is visible,
and abandoned multipart uploads are swept.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from service.aws.clients import open_clients
from service.aws.uploads import DynamoUploadRegistry
from service.metrics import Metrics
from service.settings import Settings
from tests.api.files_helpers import body, entry, upload_direct
from tests.api.helpers import PASSWORD, bearer
from tests.api.test_notifications import EMPTY, confirm, mail_to
from tests.conftest import TEST_BLOCK_SIZE
from tests.reliability.faultproxy import Fault, FaultProxy, Rule
from tests.test_entrypoints import ROOT, aws_env, wait_for
from tools.bench.harness import free_port

HOLD = 60.0


class Service:
    """One ``python -m service`` process pointed at the proxy, killable."""

    def __init__(self, settings: Settings, proxy: FaultProxy, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = aws_env(
            settings,
            FILESYNC_S3_PUBLIC_ENDPOINT=settings.aws.endpoint_url or "",
            FILESYNC_OPEN_SIGNUP="true",
            FILESYNC_ARGON2_TIME_COST="1",
            FILESYNC_ARGON2_MEMORY_KIB="8192",
            FILESYNC_ARGON2_PARALLELISM="1",
            FILESYNC_BLOCK_SIZE=str(TEST_BLOCK_SIZE),
            FILESYNC_LOG_FORMAT="text",
        )
        env["AWS_ENDPOINT_URL"] = proxy.url
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        await wait_for(f"{self.url}/readyz", time.monotonic() + 30, self.proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
async def service(provisioned, proxy, tmp_path) -> AsyncIterator[Service]:
    started = Service(provisioned, proxy, tmp_path / "service.log")
    await started.ready()
    yield started
    started.stop()


async def seen(proxy: FaultProxy, operation: str, count: int = 1) -> None:
    """Wait until the proxy has received ``count`` calls of ``operation`` (the moment to kill at)."""
    deadline = time.monotonic() + 20
    while sum(n for (_, op), n in proxy.requests.items() if op == operation) < count:
        assert time.monotonic() < deadline, f"no {operation} reached the proxy"
        await asyncio.sleep(0.02)


async def account(http: aiohttp.ClientSession, name: str, email: str | None = None) -> tuple[dict[str, str], str]:
    extra = {"email": email} if email else {}
    signup = await http.post("/v1/auth/signup", json={"username": name, "password": PASSWORD, **extra})
    assert signup.status == 201, await signup.text()
    if email:  # double opt-in: digests go only to a confirmed address
        await confirm(http, email)
    login = await http.post("/v1/auth/token", json={"username": name, "password": PASSWORD})
    headers = bearer(await login.json())
    namespaces = await http.get("/v1/namespaces", headers=headers)
    return headers, (await namespaces.json())["namespaces"][0]["id"]


async def read_back(http: aiohttp.ClientSession, headers, ns: str, expected: dict[str, bytes]) -> None:
    listed = await http.get(f"/v1/ns/{ns}/files", params={"recursive": "true"}, headers=headers)
    live = {f["path"]: f for f in (await listed.json())["files"]}
    assert set(live) == set(expected), "a half-written file is visible, or a committed one is gone"
    for path, data in expected.items():
        async with http.get(f"/v1/ns/{ns}/files/{path}", params={"via": "service"}, headers=headers) as got:
            assert got.status == 200
            assert await got.read() == data, path


@pytest.mark.timeout(90)
async def test_kill_mid_upload_leaves_nothing_visible_and_the_upload_is_swept(
    service: Service, proxy, provisioned, aws_session, moto_endpoint, tmp_path
):
    async with aiohttp.ClientSession(base_url=service.url) as http:
        alice, ns = await account(http, "alice")
        before = body(700)
        assert (await http.put(f"/v1/ns/{ns}/files/kept.bin", data=before, headers=alice)).status == 201
        proxy.add(Rule("delay", operation="CompleteMultipartUpload", delay=HOLD))
        upload = asyncio.create_task(
            http.put(f"/v1/ns/{ns}/files/big.bin", data=io.BytesIO(body(TEST_BLOCK_SIZE + 1)), headers=alice)
        )
        await seen(proxy, "CompleteMultipartUpload")
        service.kill()
        with pytest.raises(aiohttp.ClientError):
            await upload
    proxy.clear()
    restarted = Service(provisioned, proxy, tmp_path / "restarted.log")
    try:
        await restarted.ready()
        async with aiohttp.ClientSession(base_url=restarted.url) as http:
            login = await http.post("/v1/auth/token", json={"username": "alice", "password": PASSWORD})
            await read_back(http, bearer(await login.json()), ns, {"kept.bin": before})
    finally:
        restarted.stop()
    async with open_clients(provisioned.aws, Metrics(), aws_session) as clients:
        s3, bucket = clients.s3, provisioned.bucket
        assert (await s3.list_multipart_uploads(Bucket=bucket)).get("Uploads"), "the upload should be open"
        # What every worker's sweeper does once the upload is older than FILESYNC_ABANDONED_UPLOAD_SECONDS.
        registry = DynamoUploadRegistry(clients.dynamodb, s3, provisioned.table, bucket)
        assert await registry.sweep(0) == 1
        assert (await s3.list_multipart_uploads(Bucket=bucket)).get("Uploads", []) == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("moment", ["before", "after"])
async def test_kill_mid_commit_then_the_retry_commits_exactly_once(
    service: Service, proxy, provisioned, tmp_path, moment
):
    """Killed while the commit's transaction is held before DynamoDB saw it, or after DynamoDB applied it
    but before the reply: either way the client's retry (same Idempotency-Key) commits exactly once."""
    data, earlier = body(900), body(800)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    async with aiohttp.ClientSession(base_url=service.url) as http:
        alice, ns = await account(http, "alice")
        assert (await http.put(f"/v1/ns/{ns}/files/earlier.bin", data=earlier, headers=alice)).status == 201
        await upload_direct(http, alice, ns, data)
        fault: Fault = "delay" if moment == "before" else "drop_reply"
        proxy.add(Rule(fault, operation="TransactWriteItems", delay=HOLD))
        commit = asyncio.create_task(
            http.post(f"/v1/ns/{ns}/commit", json={"entries": [entry("c.bin", data)]}, headers={**alice, **key})
        )
        await seen(proxy, "TransactWriteItems", 2)  # earlier.bin's, then this one
        service.kill()
        with pytest.raises(aiohttp.ClientError):
            await commit
    proxy.clear()
    restarted = Service(provisioned, proxy, tmp_path / "restarted.log")
    try:
        await restarted.ready()
        async with aiohttp.ClientSession(base_url=restarted.url) as http:
            login = await http.post("/v1/auth/token", json={"username": "alice", "password": PASSWORD})
            alice = bearer(await login.json())
            for _ in range(2):
                retried = await http.post(
                    f"/v1/ns/{ns}/commit", json={"entries": [entry("c.bin", data)]}, headers={**alice, **key}
                )
                assert retried.status == 200, await retried.text()
                assert (await retried.json())["results"][0]["file"]["rev"] == 1
            await read_back(http, alice, ns, {"earlier.bin": earlier, "c.bin": data})
            changes = await http.get(f"/v1/ns/{ns}/changes", params={"cursor": "s0"}, headers=alice)
            assert [c["seq"] for c in (await changes.json())["changes"]] == [1, 2]
    finally:
        restarted.stop()


@pytest.mark.timeout(90)
async def test_kill_mid_notification_loses_no_email(service: Service, proxy, provisioned, moto_endpoint, tmp_path):
    address = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    async with aiohttp.ClientSession(base_url=service.url) as http:
        alice, _ = await account(http, "alice")
        bob, _ = await account(http, "bob", address)
        ns = (await (await http.post("/v1/namespaces", json={"name": "Team"}, headers=alice)).json())["id"]
        await http.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "viewer"}, headers=alice)
        assert (await http.put(f"/v1/ns/{ns}/follow", headers=bob)).status == 200
        change = {"path": "plan.txt", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
        assert (await http.post(f"/v1/ns/{ns}/commit", json={"entries": [change]}, headers=alice)).status == 200
    env = aws_env(
        provisioned,
        FILESYNC_MAIL_FROM=provisioned.mail_from,
        FILESYNC_PUBLIC_URL="https://files.test",
        FILESYNC_NOTIFY_WINDOW_SECONDS="0.3",
        FILESYNC_NOTIFY_TICK_SECONDS="0.2",
        FILESYNC_NOTIFY_LEASE_SECONDS="3",
        FILESYNC_LOG_FORMAT="text",
    )
    env["AWS_ENDPOINT_URL"] = proxy.url
    proxy.add(Rule("delay", operation="SendRawEmail", delay=HOLD))
    notifier = subprocess.Popen([sys.executable, "-m", "service.notifier"], cwd=ROOT, env=env)
    await seen(proxy, "SendRawEmail")
    os.kill(notifier.pid, signal.SIGKILL)
    notifier.wait(timeout=10)
    assert await mail_to(moto_endpoint, address) == []
    proxy.clear()
    log = (tmp_path / "notifier.log").open("w")
    notifier = subprocess.Popen([sys.executable, "-m", "service.notifier"], cwd=ROOT, env=env, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not (mails := await mail_to(moto_endpoint, address)):
            assert notifier.poll() is None
            assert time.monotonic() < deadline, "the change was never mailed after the crash"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert len(await mail_to(moto_endpoint, address)) == 1
        assert re.search(r"plan\.txt added", str(mails[0]))
    finally:
        # The restarted notifier stops gracefully, and in bounded time (it hands its leases back, or gives up).
        notifier.send_signal(signal.SIGTERM)
        code: int | None = None
        try:
            code = notifier.wait(timeout=40)
        except subprocess.TimeoutExpired:
            notifier.kill()
            notifier.wait(timeout=10)
        log.close()
    assert code == 0, (tmp_path / "notifier.log").read_text()[-2000:]
