"""The sync CLI when the server fails or forgets: one line and exit code 1, never a traceback; the next
run resumes; a server that forgot the device names the command that mends it.

Tests layer: the real CLI in subprocesses against service processes of each test's own. For the kills the
service keeps its data in the test's emulator and the clients' storage traffic crosses a fault proxy,
which holds one request (the moment "mid-upload" or "mid-download" is real) until the test kills the
service and the proxy together, as a dying embedded server takes its storage with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from service.aws.clients import open_clients
from service.metrics import Metrics
from tests.reliability.faultproxy import FaultProxy, Rule
from tests.tools.cli import BLOCK, TIMESTAMP, Device, ServiceProcess, finish, until
from tools.bench.harness import free_port


def _ledger(device: Device) -> list[tuple[str, str]]:
    """The multipart uploads in progress the device's state database remembers."""
    found: list[tuple[str, str]] = []
    for db in (device.config / "folders").glob("*.db"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            found += conn.execute("SELECT key, upload_id FROM uploads").fetchall()
    return found


def _temporary_files(device: Device) -> list[Path]:
    return [p for p in device.root.rglob(".filesync-*") if p.is_file()]


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.timeout(180)
async def test_killed_mid_upload_one_line_exit_1_and_the_next_run_resumes_the_upload(
    provisioned, moto_endpoint, aws_session, tmp_path
):
    port = free_port()
    proxy = await FaultProxy(moto_endpoint).start()
    held = proxy.add(Rule("delay", service="s3", operation="UploadPart", first=1, delay=120))
    service = await ServiceProcess.on_aws(port, provisioned, proxy.url, tmp_path / "service.log").ready()
    laptop = Device("laptop", tmp_path)
    await laptop.run("signup", "--server", service.url, "alice")
    big = os.urandom(2 * BLOCK + 123)  # three parts: one held, two stored before the kill
    laptop.write("docs/big.bin", big)
    laptop.write("notes.txt", b"small, sent in a batch")

    sync = await laptop.start("sync", str(laptop.root))
    await until(lambda: held.fired == 1 and len(_ledger(laptop)) == 1, "the upload to begin")
    ((key, upload_id),) = _ledger(laptop)
    async with open_clients(provisioned.aws, Metrics(), aws_session) as clients:

        async def parts() -> int:
            listed = await clients.s3.list_parts(Bucket=provisioned.bucket, Key=key, UploadId=upload_id)
            return len(listed.get("Parts", []))

        deadline = asyncio.get_running_loop().time() + 30
        while await parts() < 2:
            assert asyncio.get_running_loop().time() < deadline, "the two unheld parts never arrived"
            await asyncio.sleep(0.05)
    service.kill()
    await proxy.close()

    outcome = await finish(sync, expect=1)
    line = outcome.one_error_line()
    assert "stopped answering while uploading docs/big.bin" in line, line
    assert line.endswith("run sync again to resume"), line
    assert outcome.out == ""
    assert _ledger(laptop) == [(key, upload_id)], "the upload must stay resumable"

    proxy = await FaultProxy(moto_endpoint).start()
    service = await ServiceProcess.on_aws(port, provisioned, proxy.url, tmp_path / "restarted.log").ready()
    try:
        again = await laptop.run("sync", str(laptop.root))
        assert "1 uploaded" in again.out, again.text  # the batch of notes.txt went in before the kill
        resumed = {op: n for (_, op), n in proxy.requests.items()}
        assert resumed.get("ListParts") == 1
        assert resumed.get("CreateMultipartUpload", 0) == 0
        assert resumed.get("UploadPart") == 1, "only the part that was cut off is sent again"
        assert _ledger(laptop) == []
        desktop = Device("desktop", tmp_path)
        await desktop.run("login", "--server", service.url, "alice")
        await desktop.run("sync", str(desktop.root))
        assert desktop.tree() == laptop.tree()
        assert desktop.tree()["docs/big.bin"] == big
    finally:
        service.stop()
        await proxy.close()


@pytest.mark.timeout(180)
async def test_killed_mid_download_one_line_exit_1_and_the_next_run_completes(provisioned, moto_endpoint, tmp_path):
    port = free_port()
    proxy = await FaultProxy(moto_endpoint).start()
    service = await ServiceProcess.on_aws(port, provisioned, proxy.url, tmp_path / "service.log").ready()
    laptop, desktop = Device("laptop", tmp_path), Device("desktop", tmp_path)
    await laptop.run("signup", "--server", service.url, "alice")
    await desktop.run("login", "--server", service.url, "alice")
    big = os.urandom(2 * BLOCK + 7)
    laptop.write("video/big.bin", big)
    laptop.write("readme.txt", b"read me")
    await laptop.run("sync", str(laptop.root))

    held = proxy.add(Rule("delay", service="s3", operation="GetObject", first=1, delay=120))
    sync = await desktop.start("sync", str(desktop.root))
    await until(lambda: held.fired == 1 and bool(_temporary_files(desktop)), "the download to begin")
    service.kill()
    await proxy.close()

    outcome = await finish(sync, expect=1)
    line = outcome.one_error_line()
    # The held download sees the store stop answering, or another download sees it refuse connections
    # first (which comes first depends on scheduling): either way one line naming the download.
    assert re.search(r"(stopped answering|cannot reach .*) while downloading", line), line
    assert line.endswith("run sync again to resume"), line
    whole = laptop.tree()
    for path, data in desktop.tree().items():  # what a download finished is whole; the rest is not there yet
        assert data == whole[path], f"a partial {path} at its final path"
    assert desktop.tree() != whole
    assert _temporary_files(desktop) == []

    proxy = await FaultProxy(moto_endpoint).start()
    service = await ServiceProcess.on_aws(port, provisioned, proxy.url, tmp_path / "restarted.log").ready()
    try:
        await desktop.run("sync", str(desktop.root))
        assert desktop.tree() == laptop.tree()
        assert desktop.tree()["video/big.bin"] == big
    finally:
        service.stop()
        await proxy.close()


@pytest.mark.timeout(240)
async def test_an_embedded_server_that_restarted_is_mended_by_the_commands_the_client_names(tmp_path):
    port = free_port()
    service = await ServiceProcess.embedded(port, tmp_path / "service.log").ready()
    laptop, desktop = Device("laptop", tmp_path), Device("desktop", tmp_path)
    try:
        # No scheme: a loopback host means http://.
        await laptop.run("signup", "--server", f"127.0.0.1:{port}", "--device", "laptop", "alice")
        await desktop.run("login", "--server", f"127.0.0.1:{port}", "--device", "desktop", "alice")
        laptop.write("docs/report.txt", b"the report")
        laptop.write("docs/big.bin", os.urandom(BLOCK + 1))
        laptop.write("shared.txt", b"as both devices had it")
        await laptop.run("sync", str(laptop.root))
        await desktop.run("sync", str(desktop.root))
    finally:
        service.stop()

    service = await ServiceProcess.embedded(port, tmp_path / "restarted.log").ready()  # it remembers nothing
    try:
        laptop.write("docs/report.txt", b"edited while the server was away")
        laptop.write("new.txt", b"made while the server was away")
        desktop.write("shared.txt", b"the desktop's own edit")
        desktop.write("desktop-only.txt", b"only here")
        before = _fingerprint(laptop.root)

        # Follow the client's guidance, each step the command the previous one named.
        failed = await laptop.run("sync", str(laptop.root), expect=1)
        line = failed.one_error_line()
        assert "no longer accepts this device's session" in line
        assert "signup" in line
        assert "relink" in line
        step = failed.suggested()
        assert step[2:] == ["login", "--server", f"http://127.0.0.1:{port}", "alice"]
        refused = await laptop.command(step, expect=1)
        assert "refused the password" in refused.one_error_line()
        step = refused.suggested()
        assert step[2] == "signup"
        signed_up = await laptop.command(step)
        step = signed_up.suggested()
        assert step[2:] == ["relink", str(laptop.root)], signed_up.text
        relinked = await laptop.command(step)
        assert "4 uploaded" in relinked.out, relinked.text
        assert _fingerprint(laptop.root) == before, "relink lost or changed a local file"

        # The second device: its session works no more; its folder's namespace is gone; both say so.
        refused = await desktop.run("sync", str(desktop.root), expect=1)
        logged_in = await desktop.command(refused.suggested())  # login: the account exists again
        assert "relink" in logged_in.out
        gone = await desktop.run("sync", str(desktop.root), expect=1)
        line = gone.one_error_line()
        assert "no longer knows this folder's namespace" in line
        step = gone.suggested()
        assert step[2:] == ["relink", str(desktop.root)]
        relinked = await desktop.command(step)
        # As a first sync: where both sides differ (the laptop's edit, the desktop's own), both are kept.
        assert "2 conflicts kept as copies" in relinked.out, relinked.out
        tree = desktop.tree()
        for path, mine in (("shared.txt", b"the desktop's own edit"), ("docs/report.txt", b"the report")):
            stem, _, ext = path.rpartition(".")
            copies = [p for p in tree if p.startswith(f"{stem} (conflicted copy desktop ") and p.endswith(ext)]
            assert len(copies) == 1, tree
            assert tree[copies[0]] == mine
            assert f"this device's version is kept as {copies[0]}" in relinked.out
        assert tree["desktop-only.txt"] == b"only here"
        assert tree["shared.txt"] == b"as both devices had it"
        assert tree["docs/report.txt"] == b"edited while the server was away"
        assert tree["new.txt"] == b"made while the server was away"

        await laptop.run("sync", str(laptop.root))
        assert laptop.tree() == desktop.tree()
    finally:
        service.stop()


@pytest.mark.timeout(60)
async def test_server_addresses_without_a_scheme_or_malformed(tmp_path):
    device = Device("device", tmp_path)
    for bad, why in (
        ("http://", "names no host"),
        ("ftp://example.com", "scheme must be http or https"),
        ("127.0.0.1:99999", "Port out of range"),
        ("http://a:b@example.com", "no user"),
    ):
        outcome = await device.run("login", "--server", bad, "alice", expect=2)
        line = outcome.one_error_line()
        assert why in line, line
    # Without a scheme: https:// for any host but a loopback one.
    outcome = await device.run("login", "--server", "localhost:9", "alice", expect=1)
    assert "cannot reach the server at http://localhost:9 (connection refused)" in outcome.one_error_line()


@pytest.mark.timeout(180)
async def test_a_watch_outlives_a_server_restart_and_says_so(provisioned, moto_endpoint, tmp_path):
    port = free_port()
    service = await ServiceProcess.on_aws(port, provisioned, moto_endpoint, tmp_path / "service.log").ready()
    laptop, desktop = Device("laptop", tmp_path), Device("desktop", tmp_path)
    await laptop.run("signup", "--server", service.url, "alice")
    await desktop.run("login", "--server", service.url, "alice")
    watcher = await laptop.start("sync", "--watch", str(laptop.root))
    out: list[str] = []
    err: list[str] = []

    async def read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        async for raw in stream:
            into.append(raw.decode().rstrip("\n"))

    readers = [asyncio.create_task(read(watcher.stdout, out)), asyncio.create_task(read(watcher.stderr, err))]
    try:
        await until(lambda: any("watching" in line for line in out), "the watcher to start")
        service.kill()
        await until(lambda: any("trying again in" in line for line in err), "the watcher to notice", 60)
        service = await ServiceProcess.on_aws(port, provisioned, moto_endpoint, tmp_path / "restarted.log").ready()
        desktop.write("after-the-restart.txt", b"still syncing")
        await desktop.run("sync", str(desktop.root))
        await until(lambda: (laptop.root / "after-the-restart.txt").exists(), "the watcher to sync again", 90)
        # The file lands before its round ends: the round's own lines follow when it does.
        await until(lambda: any(line.endswith(" the server answers again") for line in out), "the round to end", 60)
    finally:
        watcher.send_signal(signal.SIGINT)
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        await asyncio.wait_for(watcher.wait(), 30)
        service.stop()
    assert watcher.returncode in (0, 130)
    assert not [line for line in out + err if "Traceback" in line]
    (first, *_) = [line for line in err if "trying again in" in line]
    assert re.match(
        rf"{TIMESTAMP} error: the server at {service.url} stopped answering while .+; trying again in", first
    )
    assert any(line.endswith(" the server answers again") for line in out), out
    assert (laptop.root / "after-the-restart.txt").read_bytes() == b"still syncing"
