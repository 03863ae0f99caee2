"""The client's state database and the cheap scan the no-change check compares with it."""

from __future__ import annotations

import os
from pathlib import Path

from service.paths import normalize_path, path_key
from tools.sync.scan import scan
from tools.sync.state import StateDB, StateEntry


def synced(state: StateDB, files: dict[str, tuple[int, int]]) -> None:
    state.record(StateEntry(key, key, size, mtime, "h", 1) for key, (size, mtime) in files.items())


def rows(*found: tuple[str, int, int]) -> list[tuple[str, str, str, int, int, int]]:
    """Scan rows (key, path, local, size, mtime, inode) of (key, size, mtime)."""
    return [(key, key, key, size, mtime, 0) for key, size, mtime in found]


def test_matches_is_true_only_for_exactly_what_was_synced(tmp_path: Path):
    state = StateDB(tmp_path / "state.db")
    synced(state, {"a": (1, 10), "b/c": (2, 20)})
    assert state.matches(rows(("b/c", 2, 20), ("a", 1, 10)))
    assert state.matches(iter(rows(("a", 1, 10), ("b/c", 2, 20))))  # a generator, consumed once
    assert not state.matches(rows(("a", 1, 10)))  # one missing
    assert not state.matches(rows(("a", 1, 10), ("b/c", 2, 20), ("new", 0, 0)))  # one extra
    assert not state.matches(rows(("a", 1, 11), ("b/c", 2, 20)))  # touched
    assert not state.matches(rows(("a", 2, 10), ("b/c", 2, 20)))  # resized
    assert not state.matches(rows(("a", 1, 10), ("a", 1, 10)))  # two local names with one key
    assert state.matches(rows(("a", 1, 10), ("b/c", 2, 20)))  # and it still works after all that
    state.close()


def test_the_cheap_scan_gives_the_same_keys_as_the_full_one(tmp_path: Path):
    for name in (
        "Readme.TXT",
        "dir/Sub/x.bin",
        "na\u0308ive/\u00c9t\u00e9.txt",
        "STRASSE/Stra\u00dfe.md",
        ".filesync-tmp",
    ):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x" * len(name))
    os.symlink(tmp_path / "Readme.TXT", tmp_path / "link")
    found = [row for row in scan(tmp_path) if isinstance(row, tuple)]
    # The quick way for ASCII names gives the keys the path rules give.
    full = {(path_key(normalize_path(local)), size, mtime) for _, _, local, size, mtime, _ in found}
    cheap = {(key, size, mtime) for key, _, _, size, mtime, _ in found}
    assert cheap == full
    assert len(cheap) == 4
