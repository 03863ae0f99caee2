"""Local file operations stay inside the synced folder and never follow a symlink; scanning names every item."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tools.sync.ignore import IgnoreRules
from tools.sync.localfs import Folder, Unplaceable, display
from tools.sync.scan import Issue, scan


@pytest.fixture
def room(tmp_path: Path) -> tuple[Path, Path]:
    """A synced folder and, beside it, a folder it must never touch."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"outside")
    return root, outside


def test_reads_refuse_symlinks_special_files_and_symlinked_folders(room):
    root, outside = room
    (root / "sub").mkdir()
    (root / "sub" / "real.txt").write_bytes(b"inside")
    (root / "link.txt").symlink_to(outside / "precious.txt")
    (root / "out").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo")
    folder = Folder(root)
    assert folder.read_bytes("sub/real.txt") == b"inside"
    with pytest.raises(Unplaceable, match=r"link\.txt is a symlink"):
        folder.read_bytes("link.txt")
    with pytest.raises(Unplaceable, match="out is a symlink, not a folder"):
        folder.read_bytes("out/precious.txt")
    with pytest.raises(Unplaceable, match="fifo is a fifo"):
        folder.read_bytes("fifo")  # and does not wait for a writer
    assert folder.lstat("out/precious.txt") is None


def test_writes_never_cross_a_symlink_and_find_folders_by_key(room):
    root, outside = room
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "file").write_bytes(b"a file, not a folder")
    (root / "cafe\u0301").mkdir()  # NFD, as macOS writes it
    folder = Folder(root)
    with pytest.raises(Unplaceable, match="out is a symlink, not a folder"), folder.placing("out/new.txt"):
        pass
    with pytest.raises(Unplaceable, match="file is a file, not a folder"), folder.placing("file/new.txt"):
        pass
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    with folder.placing("caf\u00e9/menu.txt") as placed:  # the NFC server path lands in the NFD folder
        fd = placed.create("menu.txt")
        os.close(fd)
    assert placed.local == "cafe\u0301/menu.txt"
    assert sorted(os.listdir(root)) == sorted(["out", "file", "cafe\u0301"])
    with folder.placing("New/Deeper/x.txt") as placed:
        assert placed.local == "New/Deeper/x.txt"
    with folder.placing("new/deeper/y.txt") as placed:  # the same folders, whatever the case
        assert placed.local == "New/Deeper/y.txt"


def test_deletes_stay_inside_and_remove_the_folders_they_empty(room):
    root, outside = room
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_bytes(b"x")
    (root / "a" / "keep.txt").write_bytes(b"y")
    folder = Folder(root)
    found = os.stat(root / "a" / "b" / "f.txt")
    assert not folder.remove("a/b/f.txt", (found.st_size, found.st_mtime_ns + 1))  # changed: left alone
    assert folder.remove("a/b/f.txt", (found.st_size, found.st_mtime_ns))
    assert sorted(os.listdir(root / "a")) == ["keep.txt"]  # b went, a stays (not empty)
    # A folder that became a symlink to outside: the same relative path is not deleted through it.
    (root / "c").symlink_to(outside, target_is_directory=True)
    precious = os.stat(outside / "precious.txt")
    with pytest.raises(OSError, match=r"Too many levels of symbolic links|Not a directory"):
        folder.remove("c/precious.txt", (precious.st_size, precious.st_mtime_ns))
    assert (outside / "precious.txt").read_bytes() == b"outside"


def test_a_conflicted_copy_never_overwrites(room):
    root, _ = room
    (root / "f.txt").write_bytes(b"mine")
    (root / "f (copy).txt").write_bytes(b"an older copy")
    renamed = Folder(root).rename_aside("f.txt", lambda n: "f (copy).txt" if n == 1 else f"f (copy {n}).txt")
    assert renamed == "f (copy 2).txt"
    assert (root / "f (copy).txt").read_bytes() == b"an older copy"
    assert (root / renamed).read_bytes() == b"mine"


def test_display_escapes_what_would_fool_a_terminal():
    assert display("a\x1b[31mb") == "a\\x1b[31mb"
    assert display("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert display(os.fsdecode(b"bad\xff")) == "bad\\xff"
    assert display("caf\u00e9 \u65e5\u672c") == "caf\u00e9 \u65e5\u672c"


def issues(root: Path, **kwargs) -> dict[str, tuple[str, str]]:
    found: list[Issue] = []
    for _ in scan(root, found, **kwargs):
        pass
    return {i.local: (i.kind, i.reason) for i in found}


def test_the_scan_names_every_item_it_does_not_sync(room, tmp_path):
    root, outside = room
    (root / "ok.txt").write_bytes(b"1")
    (root / "link").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo")
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:  # bound short, then moved in: AF_UNIX paths are short
        sock.bind(str(sock_path))
        sock_path.rename(root / "socket")
        (root / "empty").mkdir()
        (root / "Same.txt").write_bytes(b"2")
        (root / "same.txt").write_bytes(b"3")
        (root / "x:y").mkdir()
        (root / "x:y" / "inner.txt").write_bytes(b"4")
        found = issues(root)
    assert found == {
        "link": ("skipped", "symlink (never followed)"),
        "fifo": ("skipped", "special file (fifo)"),
        "socket": ("skipped", "special file (socket)"),
        "empty": ("note", "empty folder (the service keeps files, not folders)"),
        "same.txt": ("skipped", "case twin of Same.txt (only one syncs)"),
        "x:y": (
            "skipped",
            "non-portable name (reserved-character: ':' cannot be used in names on every platform)",
        ),
    }
    files = {row[2] for row in scan(root, [])}
    assert files == {"ok.txt", "Same.txt"}


def test_of_two_twins_the_one_synced_before_keeps_syncing(room):
    root, _ = room
    (root / "Docs").mkdir()
    (root / "Docs" / "a.txt").write_bytes(b"1")
    (root / "docs").mkdir()
    (root / "docs" / "b.txt").write_bytes(b"2")
    (root / "caf\u00e9").write_bytes(b"NFC")
    (root / "cafe\u0301").write_bytes(b"NFD")
    assert issues(root) == {
        "docs": ("skipped", "case twin of Docs (only one syncs)"),
        "cafe\u0301": ("skipped", "Unicode-normalization twin of caf\u00e9 (only one syncs)"),
    }
    synced = {"docs": "docs", "caf\u00e9": "cafe\u0301"}
    assert issues(root, known=synced.get) == {
        "Docs": ("skipped", "case twin of docs (only one syncs)"),
        "caf\u00e9": ("skipped", "Unicode-normalization twin of cafe\u0301 (only one syncs)"),
    }
    rows = {row[2]: row[:2] for row in scan(root, [], known=synced.get)}
    assert rows == {"docs/b.txt": ("docs/b.txt", "docs/b.txt"), "cafe\u0301": ("caf\u00e9", "caf\u00e9")}


def test_ignore_rules_built_in_and_from_the_folders_ignore_file(room):
    root, _ = room
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "~$report.docx", ".~lock.a.ods#", "x.swp", "y.TMP"):
        (root / name).write_bytes(b"litter")
    (root / ".filesync-0123").write_bytes(b"a download in progress")
    (root / ".filesyncignore").write_bytes(b"build/\n*.log\n!keep.log\n")
    (root / "build" / "deep").mkdir(parents=True)
    (root / "build" / "deep" / "out.o").write_bytes(b"o")
    (root / "src").mkdir()
    (root / "src" / "debug.log").write_bytes(b"l")
    (root / "src" / "keep.log").write_bytes(b"k")
    found = issues(root)
    assert {k for k, (kind, _) in found.items() if kind == "ignored"} == {
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "~$report.docx",
        ".~lock.a.ods#",
        "x.swp",
        "y.TMP",
        ".filesync-0123",
        "build",
        "src/debug.log",
    }
    assert found["build"] == ("ignored", ".filesyncignore")
    assert {row[2] for row in scan(root, [])} == {".filesyncignore", "src/keep.log"}
    rules = IgnoreRules.load(Folder(root))
    assert rules.ignores("build/new/file.c")
    assert rules.ignores("a/b/.DS_Store")
    assert rules.ignores("x/.filesync-tmp")
    assert not rules.ignores("src/keep.log")
    assert not rules.ignores("builder/x")


def test_a_path_too_long_is_named_and_its_folder_not_walked(room):
    root, _ = room
    long_dir = root.joinpath(*["d" * 200] * 4)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 140)).write_bytes(b"fits: 945 bytes")
    (long_dir / ("f" * 150)).write_bytes(b"past 950 bytes")
    (long_dir / ("e" * 200)).mkdir()
    (long_dir / ("e" * 200) / "x").write_bytes(b"under a folder past 950 bytes")
    found = issues(root)
    too_long = ("skipped", "path too long (path-too-long: at most 950 bytes of UTF-8)")
    assert sorted(k[-200:] for k in found) == ["d" * 49 + "/" + "f" * 150, "e" * 200]
    assert set(found.values()) == {too_long}
    assert [row[2][-150:] for row in scan(root, [])] == ["d" * 9 + "/" + "f" * 140]
