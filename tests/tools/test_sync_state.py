"""The client's state database and the cheap scan the no-change check compares with it."""

from __future__ import annotations

import os
from pathlib import Path

from tools.sync.scan import scan, scan_stats
from tools.sync.state import StateDB, StateEntry


def synced(state: StateDB, files: dict[str, tuple[int, int]]) -> None:
    state.record(StateEntry(key, key, size, mtime, "h", 1) for key, (size, mtime) in files.items())


def test_matches_is_true_only_for_exactly_what_was_synced(tmp_path: Path):
    state = StateDB(tmp_path / "state.db")
    synced(state, {"a": (1, 10), "b/c": (2, 20)})
    assert state.matches([("b/c", 2, 20), ("a", 1, 10)])
    assert state.matches(iter([("a", 1, 10), ("b/c", 2, 20)]))  # a generator, consumed once
    assert not state.matches([("a", 1, 10)])  # one missing
    assert not state.matches([("a", 1, 10), ("b/c", 2, 20), ("new", 0, 0)])  # one extra
    assert not state.matches([("a", 1, 11), ("b/c", 2, 20)])  # touched
    assert not state.matches([("a", 2, 10), ("b/c", 2, 20)])  # resized
    assert not state.matches([("a", 1, 10), ("a", 1, 10)])  # two local names with one key
    assert state.matches([("a", 1, 10), ("b/c", 2, 20)])  # and it still works after all that
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
    full = {(i.key, i.size, i.mtime_ns) for i in scan(tmp_path, [])}
    cheap = set(scan_stats(tmp_path, []))
    assert cheap == full
    assert len(cheap) == 4
