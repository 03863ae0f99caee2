"""End to end: the real service (embedded default) and two devices driven through the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_entrypoints import ROOT
from tools.bench.harness import clean_env

BLOCK = 5 * 1024 * 1024


class Device:
    def __init__(self, name: str, base: Path, server: str) -> None:
        self.name = name
        self.config = base / f"{name}-config"
        self.root = base / f"{name}-files"
        self.root.mkdir()
        self.server = server

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tools.sync", "--config", str(self.config)]

    def run(self, *args: str, expect: int = 0) -> str:
        env = clean_env(FILESYNC_PASSWORD="correct horse battery")
        result = subprocess.run(
            [sys.executable, "-m", "tools.sync", "--config", str(self.config), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == expect, f"{args}: {result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout + result.stderr

    def sync(self) -> str:
        return self.run("sync", str(self.root))

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        # A later write in the same mtime tick must still look changed.
        os.utime(target, ns=(time.time_ns(), time.time_ns()))

    def tree(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()
        }


@pytest.fixture
def devices(server, tmp_path):
    user = f"u{os.getpid()}{time.time_ns() % 10**8}"
    laptop, desktop = Device("laptop", tmp_path, server), Device("desktop", tmp_path, server)
    laptop.run("signup", "--server", server, "--device", "laptop", user)
    desktop.run("login", "--server", server, "--device", "desktop", user)
    return laptop, desktop


def test_two_devices_converge_through_every_kind_of_change(devices):
    laptop, desktop = devices
    big = os.urandom(2 * BLOCK + 123)
    laptop.write("notes/today.txt", b"first draft")
    laptop.write("empty.txt", b"")
    laptop.write("na\u00efve/\u65e5\u672c\u8a9e \u00e9t\u00e9.txt", b"unicode")
    laptop.write("deep/er/and/deeper/file.bin", b"\x00\x01\x02")
    laptop.write("video/big.bin", big)
    laptop.write("old-name.txt", b"rename me")
    assert "6 uploaded" in laptop.sync()
    desktop.sync()
    assert desktop.tree() == laptop.tree()

    laptop.write("notes/today.txt", b"second draft")
    (laptop.root / "empty.txt").unlink()
    (laptop.root / "old-name.txt").rename(laptop.root / "new-name.txt")
    laptop.write("video/big.bin", big[:BLOCK] + b"changed" + big[BLOCK + 7 :])
    laptop.sync()
    desktop.sync()
    assert desktop.tree() == laptop.tree()
    assert not (desktop.root / "old-name.txt").exists()
    assert (desktop.root / "new-name.txt").read_bytes() == b"rename me"


def test_concurrent_edits_keep_both_versions(devices):
    laptop, desktop = devices
    laptop.write("shared.txt", b"base")
    laptop.sync()
    desktop.sync()
    laptop.write("shared.txt", b"laptop's edit")
    desktop.write("shared.txt", b"desktop's edit")
    laptop.sync()
    desktop.sync()
    laptop.sync()
    assert laptop.tree() == desktop.tree()
    contents = set(laptop.tree().values())
    assert {b"laptop's edit", b"desktop's edit"} <= contents
    copies = [p for p in laptop.tree() if "conflicted copy" in p]
    assert len(copies) == 1
    assert copies[0].startswith("shared (conflicted copy desktop ")


def test_an_edit_survives_a_delete(devices):
    laptop, desktop = devices
    laptop.write("keep.txt", b"v1")
    laptop.sync()
    desktop.sync()
    (laptop.root / "keep.txt").unlink()
    laptop.sync()
    desktop.write("keep.txt", b"v2 edited offline")
    desktop.sync()
    laptop.sync()
    assert (laptop.root / "keep.txt").read_bytes() == b"v2 edited offline"
    assert laptop.tree() == desktop.tree()


def test_a_no_change_sync_is_one_request(devices):
    laptop, _ = devices
    for i in range(50):
        laptop.write(f"many/{i:03d}.txt", f"file {i}".encode())
    laptop.sync()

    def requests() -> dict[str, float]:
        with urllib.request.urlopen(f"{laptop.server}/metrics") as response:
            text = response.read().decode()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("filesync_http_requests_total{") and 'route="/metrics"' not in line:
                route = re.search(r'route="([^"]*)"', line)
                assert route is not None
                counts[route.group(1)] = counts.get(route.group(1), 0) + float(line.rsplit(" ", 1)[1])
        return counts

    before = requests()
    out = laptop.sync()
    after = requests()
    made = {route: after[route] - before.get(route, 0) for route in after if after[route] != before.get(route, 0)}
    assert made == {"/v1/ns/{ns}/changes": 1}, made
    assert "nothing changed" in out


def test_status_history_restore_and_errors(devices):
    laptop, _ = devices
    laptop.write("doc.txt", b"one")
    laptop.sync()
    laptop.write("doc.txt", b"two")
    status = laptop.run("status", str(laptop.root))
    assert "modified  doc.txt" in status
    laptop.sync()
    history = laptop.run("history", str(laptop.root / "doc.txt"))
    assert "rev    2" in history
    assert "rev    1" in history
    laptop.run("restore", str(laptop.root / "doc.txt"), "--rev", "1")
    laptop.sync()
    assert (laptop.root / "doc.txt").read_bytes() == b"one"
    wrong = Device("mallory", laptop.root.parent, laptop.server)
    out = wrong.run("sync", str(wrong.root), expect=2)
    assert "not logged in" in out
    bad = wrong.run("login", "--server", "http://127.0.0.1:9", "nobody", expect=1)
    assert "cannot reach" in bad


def test_watch_syncs_both_ways_until_interrupted(devices):
    laptop, desktop = devices
    laptop.write("start.txt", b"hello")
    laptop.sync()
    env = clean_env(FILESYNC_PASSWORD="correct horse battery")
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.sync",
            "--config",
            str(laptop.config),
            "sync",
            "--watch",
            "--quiet",
            str(laptop.root),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    failure: AssertionError | None = None
    try:
        desktop.sync()
        desktop.write("from-desktop.txt", b"pushed by the desktop")
        desktop.sync()
        deadline = time.monotonic() + 60
        while not (laptop.root / "from-desktop.txt").exists():
            assert time.monotonic() < deadline, "the watcher never pulled the desktop's file"
            time.sleep(0.2)
        laptop.write("from-laptop.txt", b"noticed by the watcher")
        deadline = time.monotonic() + 60
        while "from-laptop.txt" not in desktop.tree():
            assert time.monotonic() < deadline, "the watcher never pushed the laptop's file"
            time.sleep(0.5)
            desktop.sync()
    except AssertionError as exc:
        failure = exc
    finally:
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    assert failure is None, f"{failure}; the watcher said: {err.decode()[-2000:]}"
    assert watcher.returncode in (0, 130), err
    assert b"Traceback" not in err


def test_follow_unfollow_and_the_notification_address(devices):
    laptop, _ = devices
    laptop.write("reports/q1.txt", b"numbers")
    laptop.sync()
    out = laptop.run("follow", str(laptop.root / "reports"))
    assert "following reports" in out
    assert "no email address yet" in out
    set_address = laptop.run("email", "me@example.com")
    assert "notifications go to me@example.com" in set_address
    assert "once it is confirmed" in set_address  # double opt-in: nothing is sent before
    followed = laptop.run("follow", str(laptop.root))
    assert "following the whole folder" in followed
    assert "me@example.com is not confirmed yet" in followed
    assert "no email address yet" not in laptop.run("follow", str(laptop.root / "reports" / "q1.txt"))
    assert "no longer following reports" in laptop.run("unfollow", str(laptop.root / "reports"))
    bad = laptop.run("email", "not an address", expect=1)
    assert "not a valid email address" in bad
    assert "give an ADDRESS" in laptop.run("email", expect=2)
    assert "no notification emails" in laptop.run("email", "--remove")
    outside = laptop.run("follow", str(laptop.root.parent), expect=2)
    assert "not inside a synced folder" in outside
