"""End to end on real folders: the CLI against the real service, with everything a folder can hold that
does not sync (invariant 8: nothing silently skipped, nothing written or deleted outside the folder,
nothing unreadable taken for a deletion)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.test_entrypoints import ROOT
from tests.tools.test_sync_cli import Device
from tools.bench.harness import clean_env
from tools.sync.localfs import display

PASSWORD_ENV = {"FILESYNC_PASSWORD": "correct horse battery"}
#: Exit codes of the CLI (tools/sync/__main__.py EXIT_CODES).
DONE, SKIPPED = 0, 3


def _drop_root_override() -> None:
    """In the CLI's process, before it starts: as root, give up the capabilities that let root read any
    file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is as unreadable as for anyone."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Folks(Device):
    """A device whose CLI runs without root's power to read unreadable files (when the tests run as root)."""

    def run(self, *args: str, expect: int = 0) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tools.sync", "--config", str(self.config), *args],
            cwd=ROOT,
            env=clean_env(**PASSWORD_ENV),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            preexec_fn=_drop_root_override if os.geteuid() == 0 else None,
        )
        out = result.stdout + result.stderr
        assert "Traceback" not in out, out
        assert result.returncode == expect, f"{args}: exit {result.returncode}\n{out}"
        return out


@pytest.fixture
def pair(server, tmp_path):
    user = f"f{os.getpid()}{os.urandom(4).hex()}"
    a, b = Folks("a", tmp_path, server), Folks("b", tmp_path, server)
    a.run("signup", "--server", server, "--device", "a", user)
    b.run("login", "--server", server, "--device", "b", user)
    return a, b


def outside_digest(base: Path, devices: tuple[Device, ...]) -> str:
    """A digest of everything under ``base`` except the devices' folders and configurations: what a sync
    must never touch."""
    skip = {d.root for d in devices} | {d.config for d in devices}
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if Path(folder, d) not in skip)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            digest.update(f"{path}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


def local_tree(root: Path) -> dict[str, bytes]:
    """Regular files reachable without crossing a symlink (and readable), by local path."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
                out[os.fsdecode(path.relative_to(root))] = path.read_bytes()
    return out


def make_corpus(root: Path, outside: Path) -> dict[str, str]:
    """A real-world folder; returns what must not sync, local path (as displayed) -> a word of its reason."""
    expected: dict[str, str] = {}

    def write(name: str | bytes, data: bytes = b"x") -> None:
        target = os.path.join(os.fsencode(root), os.fsencode(name))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)

    write("plain.txt", b"plain")
    write("empty.txt", b"")
    (root / "empty-folder").mkdir()
    expected["empty-folder"] = "empty folder"
    write("/".join(f"d{i}" for i in range(40)) + "/deep.txt", b"deep")
    write("nai\u0308ve.txt", b"NFD only")  # what macOS writes: syncs, and stays NFD here
    write("caf\u00e9.txt", b"NFC twin")
    write("cafe\u0301.txt", b"NFD twin")
    expected["cafe\u0301.txt"] = "Unicode-normalization twin of caf\u00e9.txt"
    write("Report.txt", b"upper")
    write("report.txt", b"lower")
    expected["report.txt"] = "case twin of Report.txt"
    write("Docs/one.txt", b"one")
    write("docs/two.txt", b"two")
    expected["docs"] = "case twin of Docs"
    for name, rule in (
        ("a:b.txt", "reserved-character"),
        ("what?.txt", "reserved-character"),
        ("star*.txt", "reserved-character"),
        ('quote".txt', "reserved-character"),
        ("less<.txt", "reserved-character"),
        ("more>.txt", "reserved-character"),
        ("pipe|.txt", "reserved-character"),
        ("back\\slash.txt", "reserved-character"),
        ("trailing.", "leading-or-trailing-space-or-dot"),
        ("trailing ", "leading-or-trailing-space-or-dot"),
        (" leading", "leading-or-trailing-space-or-dot"),
        ("CON", "reserved-name"),
        ("nul.txt", "reserved-name"),
        ("com1.txt", "reserved-name"),
        ("ctrl\x01.txt", "control-character"),
        ("bidi\u202e.txt", "bidi-control"),
        ("bad:folder/inside.txt", "reserved-character"),
    ):
        write(name, name.encode())
        expected[name.split("/")[0]] = f"non-portable name ({rule}"
    write(b"bad\xff.txt", b"not UTF-8")
    expected[display(os.fsdecode(b"bad\xff.txt"))] = "non-portable name (invalid-unicode"
    long_folder = "long/" + "/".join(["x" * 200] * 4)
    write(f"{long_folder}/{'y' * 150}.txt", b"too long")
    expected[f"{long_folder}/{'y' * 150}.txt"] = "path too long"
    write("n" * 246 + ".txt", b"a 250-byte name")  # syncs
    write("secret.txt", b"nobody may read this")
    (root / "secret.txt").chmod(0)
    expected["secret.txt"] = "unreadable"
    write("locked/inside.txt", b"behind a folder nobody may open")
    (root / "locked").chmod(0)
    expected["locked"] = "unreadable"
    os.mkfifo(root / "pipe")
    expected["pipe"] = "special file (fifo)"
    (root / "link-to-file").symlink_to("plain.txt")
    (root / "link-to-folder").symlink_to("d0", target_is_directory=True)
    (root / "link-outside").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to("loop")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    for name in ("link-to-file", "link-to-folder", "link-outside", "loop", "loop-a", "loop-b"):
        expected[name] = "symlink"
    for name in (".DS_Store", "Thumbs.db", "~$draft.docx", ".~lock.sheet.ods#", "notes.txt.swp", "save.tmp"):
        write(name, b"litter")
    write(".filesyncignore", b"build/\n*.log\n")
    write("build/out.o", b"built")
    write("debug.log", b"log")
    return expected


def test_a_real_world_folder_syncs_what_it_can_and_names_the_rest(pair, tmp_path):
    a, b = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"not the folder's")
    expected = make_corpus(a.root, outside)
    before = outside_digest(tmp_path, pair)

    out = a.run("sync", str(a.root), expect=SKIPPED)
    status = a.run("status", str(a.root))
    for local, reason in expected.items():
        shown = display(local)
        assert f"skipped {shown}: " in out or f"not synced {shown}: " in out, f"{shown!r} not named:\n{out}"
        line = next(x for x in out.splitlines() if x.split(": ", 1)[0].endswith(f" {shown}"))
        assert reason in line, line
        assert f" {shown}: " in status, f"{shown!r} not in status:\n{status}"
    ignored = a.run("status", "--ignored", str(a.root))
    for name in (".DS_Store", "Thumbs.db", "~$draft.docx", ".~lock.sheet.ods#", "notes.txt.swp", "save.tmp"):
        assert f"ignored   {name}: built-in rule" in ignored
    assert "ignored   build: .filesyncignore" in ignored
    assert "ignored   debug.log: .filesyncignore" in ignored

    assert b.run("sync", str(b.root)).startswith("synced:")
    # Back from B to A: an edit and a new file.
    b.write("plain.txt", b"edited on b")
    b.write("from-b/new.txt", b"made on b")
    b.run("sync", str(b.root))
    back = a.run("sync", str(a.root), expect=SKIPPED)
    assert " 0 deleted" in back, back

    mine, theirs = local_tree(a.root), local_tree(b.root)
    # Every file on A is on B, or named with its reason (or under a named folder), or ignored.
    named = [display(k) for k in expected]
    litter = (".DS_Store", "Thumbs.db", "~$draft.docx", ".~lock.sheet.ods#", "notes.txt.swp", "save.tmp")
    for local, data in mine.items():
        if any(display(local) == n or display(local).startswith(n + "/") for n in named):
            continue
        if local.startswith("build/") or local == "debug.log" or local in litter:
            continue
        assert theirs.get(unicodedata.normalize("NFC", local)) == data, f"{local!r} is neither on B nor named"
    # B holds nothing A does not, each under its NFC name.
    nfc_mine = {unicodedata.normalize("NFC", k) for k in mine}
    assert set(theirs) <= nfc_mine, set(theirs) - nfc_mine
    assert all(unicodedata.is_normalized("NFC", k) for k in theirs)
    assert theirs["plain.txt"] == b"edited on b" == mine["plain.txt"]
    assert theirs["from-b/new.txt"] == b"made on b"
    assert theirs["na\u00efve.txt"] == b"NFD only"
    assert theirs["caf\u00e9.txt"] == b"NFC twin"
    assert theirs["Report.txt"] == b"upper"
    assert theirs["Docs/one.txt"] == b"one"
    assert theirs["n" * 246 + ".txt"] == b"a 250-byte name"
    assert theirs["/".join(f"d{i}" for i in range(40)) + "/deep.txt"] == b"deep"
    assert theirs["empty.txt"] == b""
    # The NFD name stays as A's file system spells it: no second, NFC copy came back.
    assert (a.root / "nai\u0308ve.txt").exists()
    assert "na\u00efve.txt" not in os.listdir(a.root)
    # Symlinks were neither followed nor synced; nothing outside the folders changed.
    assert not any(p.startswith(("link-", "loop")) for p in theirs)
    assert outside_digest(tmp_path, pair) == before
    # A third round of A is a no-change sync that still names what does not sync.
    again = a.run("sync", str(a.root), expect=SKIPPED)
    assert "nothing changed" in again
    assert "skipped secret.txt: unreadable" in again
    (a.root / "locked").chmod(0o755)  # let pytest clean up
    (a.root / "secret.txt").chmod(0o644)


def test_a_server_file_under_a_local_symlink_is_reported_and_never_written_through(pair, tmp_path):
    a, b = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"not the folder's")
    a.write("notes/kept.txt", b"synced before")
    a.write("config.txt", b"v1")
    a.run("sync", str(a.root))
    b.run("sync", str(b.root))
    # On B: a symlink out of the folder where A is about to commit a file, a synced folder replaced by a
    # symlink, and a synced file replaced by a symlink to a file outside.
    (b.root / "shared").symlink_to(outside, target_is_directory=True)
    for name in ("kept.txt",):
        (b.root / "notes" / name).unlink()
    (b.root / "notes").rmdir()
    (b.root / "notes").symlink_to(outside, target_is_directory=True)
    (b.root / "config.txt").unlink()
    (b.root / "config.txt").symlink_to(outside / "precious.txt")
    a.write("shared/plan.txt", b"from a")
    a.write("notes/more.txt", b"from a too")
    a.write("config.txt", b"v2")
    a.run("sync", str(a.root))
    before = outside_digest(tmp_path, pair)

    first = b.run("sync", str(b.root), expect=SKIPPED)
    second = b.run("sync", str(b.root), expect=SKIPPED)
    assert " 0 deleted" in first, first
    assert "nothing changed" in second, second
    for out in (first, second):
        assert "skipped shared/plan.txt: not placed here: shared is in the way (symlink (never followed))" in out
        assert "skipped notes/more.txt: not placed here: notes is in the way" in out, out
        assert "skipped config.txt: not placed here: config.txt is in the way" in out, out
    assert outside_digest(tmp_path, pair) == before
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    status = b.run("status", str(b.root))
    assert "skipped   shared: symlink (never followed)" in status
    assert "deleted" not in status

    # Nothing was deleted on the server: B committed nothing at all (A's feed is empty), and A has every file.
    assert "nothing changed" in a.run("sync", str(a.root))
    assert local_tree(a.root) == {
        "notes/kept.txt": b"synced before",
        "notes/more.txt": b"from a too",
        "shared/plan.txt": b"from a",
        "config.txt": b"v2",
    }


def test_a_file_where_a_folder_must_go_is_reported_not_forced(pair):
    """A replaces a file by a folder of the same name while B edits the file: B's edit is kept (here, and
    on the server unless the server refuses a file where its folder is), A's folder's file is not forced
    in over it, and every later sync says so instead of failing."""
    a, b = pair
    a.write("clash", b"a file at first")
    a.run("sync", str(a.root))
    b.run("sync", str(b.root))
    (a.root / "clash").unlink()
    a.write("clash/inner.txt", b"now a folder")
    a.run("sync", str(a.root))
    b.write("clash", b"edited on b")
    out = b.run("sync", str(b.root), expect=SKIPPED)
    assert "skipped clash/inner.txt: not placed here: clash is a file, not a folder" in out, out
    assert (b.root / "clash").read_bytes() == b"edited on b"
    again = b.run("sync", str(b.root), expect=SKIPPED)
    assert "clash/inner.txt" in again
    assert (b.root / "clash").read_bytes() == b"edited on b"
    assert "skipped   clash/inner.txt: not placed here" in b.run("status", str(b.root))


def test_a_folder_renamed_here_is_moved_there(pair):
    a, b = pair
    for name in ("one.txt", "two.txt", "sub/three.txt"):
        a.write(f"drafts/{name}", name.encode())
    a.run("sync", str(a.root))
    b.run("sync", str(b.root))
    (a.root / "drafts").rename(a.root / "final")
    out = a.run("sync", str(a.root))
    assert "0 uploaded, 0 downloaded, 0 deleted, 3 moved" in out, out
    b.run("sync", str(b.root))
    assert local_tree(b.root) == {
        "final/one.txt": b"one.txt",
        "final/two.txt": b"two.txt",
        "final/sub/three.txt": b"sub/three.txt",
    }
