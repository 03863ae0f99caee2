"""The CLI's verbs end to end: namespaces, members, a shared namespace synced into a second user's folder,
history with dates and authors, the summary's conflicted copies, and ``--watch``'s output.

Tests layer: the real CLI in subprocesses against the package's service process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.tools.cli import TIMESTAMP, Device, until


def _user() -> str:
    return f"u{os.getpid()}{time.time_ns() % 10**9}"


async def _signed_up(device: Device, server: str, user: str) -> Device:
    await device.run("signup", "--server", server, "--device", device.name, user)
    return device


@pytest.mark.timeout(120)
async def test_namespaces_members_and_a_shared_namespace_in_a_second_users_folder(server, tmp_path):
    alice_name, bob_name = _user(), _user() + "b"
    alice = await _signed_up(Device("alice", tmp_path), server, alice_name)
    bob = await _signed_up(Device("bob", tmp_path), server, bob_name)
    home = Device("alice-home", tmp_path)
    home.config = alice.config
    home.write("private.txt", b"mine alone")
    await home.run("sync", str(home.root))

    listed = await alice.run("namespaces")
    assert re.search(rf"\S{{16}}\s+home\s+owner\s+.*{re.escape(str(home.root))}", listed.out), listed.out
    created = await alice.run("namespaces", "create", "team docs")
    ns = re.search(r"created namespace (\S{16})", created.out)
    assert ns, created.out
    team = ns.group(1)
    assert f"sync FOLDER --namespace {team}" in created.out
    assert re.search(rf"{team}\s+shared\s+owner\s+team docs", (await alice.run("namespaces", "list")).out)

    # A shared namespace into a folder, by its name; the folder now names its namespace everywhere.
    alice.write("plan.txt", b"the plan")
    assert "1 uploaded" in (await alice.run("sync", str(alice.root), "--namespace", "team docs")).out
    added = await alice.run("members", "add", str(alice.root), bob_name, "--role", "editor")
    assert f"{bob_name} is now editor of namespace {team}" in added.out
    shown = (await alice.run("namespaces", "show", team)).out
    assert "'team docs'  (shared)" in shown
    assert re.search(rf"created by {alice_name} on {TIMESTAMP}; your role: owner", shown), shown
    assert re.search(rf"^\s+{alice_name}\s+owner$", shown, re.M), shown
    assert re.search(rf"^\s+{bob_name}\s+editor$", shown, re.M), shown
    assert f"synced here in {alice.root}" in shown

    # The second user syncs it into a folder of their own, both ways.
    assert "1 downloaded" in (await bob.run("sync", str(bob.root), "--namespace", team)).out
    assert bob.tree() == {"plan.txt": b"the plan"}
    bob.write("plan.txt", b"the plan, bob's edit")
    bob.write("notes/bob.txt", b"from bob")
    await bob.run("sync", str(bob.root))
    await alice.run("sync", str(alice.root))
    assert alice.tree() == bob.tree()
    assert b"mine alone" not in alice.tree().values()

    history = (await alice.run("history", str(alice.root / "plan.txt"))).out.splitlines()
    assert len(history) == 2, history
    authors = set()
    for line in history:
        match = re.match(rf"rev\s+\d+  ({TIMESTAMP})  (\S+)\s+\d+ bytes  [0-9a-f]{{12}}$", line)
        assert match, line
        authors.add(match.group(2))
    assert authors == {alice_name, bob_name}

    # share: the old spelling of members add; a home folder cannot be shared, and the message says why.
    viewer = await alice.run("share", str(alice.root), "--with", bob_name, "--role", "viewer")
    assert f"{bob_name} is now viewer" in viewer.out
    assert re.search(rf"^\s+{bob_name}\s+viewer$", (await bob.run("namespaces", "show", team)).out, re.M)
    refused = await alice.run("share", str(home.root), "--with", bob_name, "--role", "editor", expect=2)
    line = refused.one_error_line()
    assert "syncs your home namespace, which is yours alone and cannot be shared" in line
    assert "namespaces create NAME" in line

    # Removed, bob's folder no longer reaches the namespace: the message says what to do.
    removed = await alice.run("members", "remove", team, bob_name)
    assert f"{bob_name} is no longer a member of namespace {team}" in removed.out
    bob.write("late.txt", b"after the removal")
    gone = await bob.run("sync", str(bob.root), expect=1)
    assert "no longer knows this folder's namespace" in gone.one_error_line()
    assert "relink" in gone.one_error_line()
    unknown = await bob.run("namespaces", "show", team, expect=2)
    assert "you have no namespace" in unknown.one_error_line()


@pytest.mark.timeout(120)
async def test_watch_lines_carry_the_time_and_a_round_that_did_nothing_prints_nothing(server, tmp_path):
    user = _user()
    laptop = await _signed_up(Device("laptop", tmp_path), server, user)
    desktop = Device("desktop", tmp_path)
    await desktop.run("login", "--server", server, "--device", "desktop", user)
    laptop.write("start.txt", b"hello")
    await laptop.run("sync", str(laptop.root))
    await desktop.run("sync", str(desktop.root))

    rounds = _meta(laptop, "rounds")
    watcher = await laptop.start("sync", "--watch", str(laptop.root))
    lines: list[str] = []

    async def read() -> None:
        assert watcher.stdout is not None
        async for raw in watcher.stdout:
            lines.append(raw.decode().rstrip("\n"))

    reader = asyncio.create_task(read())
    try:
        await until(lambda: _meta(laptop, "rounds") == rounds + 1, "the watcher's first round")
        # Something to do: the desktop's new file arrives.
        desktop.write("from-desktop.txt", b"pushed by the desktop")
        await desktop.run("sync", str(desktop.root))
        await until(lambda: any("1 downloaded" in line for line in lines), "the desktop's file", 60)

        # Nothing to do: the watcher's own download is a local change, and costs a round that finds nothing.
        # That round has run once the state database counts it (the download's round, then this one).
        await until(lambda: _meta(laptop, "rounds") >= rounds + 3, "the idle round", 60)

        # Something to do again: its line comes after whatever the idle round printed.
        laptop.write("from-laptop.txt", b"noticed by the watcher")
        await until(lambda: any("1 uploaded" in line for line in lines), "the laptop's file", 60)
    finally:
        watcher.send_signal(signal.SIGINT)  # as Ctrl-C
        assert watcher.stderr is not None
        err = (await asyncio.wait_for(watcher.stderr.read(), 30)).decode()
        await asyncio.wait_for(reader, 30)
        await asyncio.wait_for(watcher.wait(), 30)
    assert watcher.returncode in (0, 130), err
    assert err == "", err
    assert all(re.match(rf"{TIMESTAMP} ", line) for line in lines), lines
    said = [line[20:] for line in lines]
    assert said[0] == f"watching {laptop.root} (namespace {_namespace(laptop)}); Ctrl-C stops"
    assert said[1:] == [
        "synced: 0 uploaded, 1 downloaded, 0 deleted, 0 conflicts kept as copies",
        "synced: 1 uploaded, 0 downloaded, 0 deleted, 0 conflicts kept as copies",
    ], lines


def _state_db(device: Device) -> Path:
    (db,) = (device.config / "folders").glob("*.db")
    return db


def _meta(device: Device, name: str) -> int:
    with sqlite3.connect(f"file:{_state_db(device)}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _namespace(device: Device) -> str:
    with sqlite3.connect(f"file:{_state_db(device)}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE name = 'namespace'").fetchone()[0])


@pytest.mark.timeout(120)
async def test_usage_shows_the_bytes_every_kept_version_holds_and_the_quota(server, tmp_path):
    device = await _signed_up(Device("usage", tmp_path), server, _user())
    assert re.search(
        r"^0 bytes of 10\.0 GiB used \(0\.0%; 0 of 10,737,418,240 bytes\)$", (await device.run("usage")).out, re.M
    )
    device.write("a.bin", b"a" * 3000)
    await device.run("sync", str(device.root))
    device.write("a.bin", b"b" * 2000)  # a second version: both are kept, both count
    await device.run("sync", str(device.root))
    shown = (await device.run("usage")).out
    assert re.search(r"^4\.9 KiB of 10\.0 GiB used \(0\.0%; 5,000 of 10,737,418,240 bytes\)$", shown, re.M), shown
    assert "old versions" in shown


@pytest.mark.timeout(120)
async def test_a_folder_deleted_and_synced_comes_back_from_the_trash(server, tmp_path):
    device = await _signed_up(Device("trash", tmp_path), server, _user())
    files = {f"notes/n{i}.txt": os.urandom(200 + i) for i in range(5)}
    for path, data in files.items():
        device.write(path, data)
    device.write("keep.txt", b"kept")
    await device.run("sync", str(device.root))
    for path in files:
        (device.root / path).unlink()
    (device.root / "notes").rmdir()
    await device.run("sync", str(device.root))
    listed = await device.run("trash", "list", str(device.root))
    for path in files:
        assert re.search(rf"^{TIMESTAMP}  \S+  {re.escape(path)}$", listed.out, re.M), listed.out
    assert "5 deleted files; restore with" in listed.out
    restored = await device.run("trash", "restore", "--folder", str(device.root / "notes"))
    assert "restored 5 files" in restored.out
    await device.run("sync", str(device.root))
    assert device.tree() == {**files, "keep.txt": b"kept"}
    assert "0 deleted files" in (await device.run("trash", "list", str(device.root))).out
