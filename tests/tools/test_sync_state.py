"""The client's state database and the cheap scan the no-change check compares with it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from service.paths import normalize_path, path_key
from tools.sync.scan import Issue, scan, scan_stats
from tools.sync.state import IssueRow, StateDB, StateEntry


def synced(state: StateDB, files: dict[str, tuple[int, int]]) -> None:
    state.record(StateEntry(key, key, size, mtime, "h", 1) for key, (size, mtime) in files.items())


def test_matches_is_true_only_for_exactly_what_was_synced(tmp_path: Path):
    state = StateDB(tmp_path / "state.db")
    synced(state, {"a": (1, 10), "b/c": (2, 20)})
    assert state.matches([("b/c", 2, 20), ("a", 1, 10)], [])
    assert state.matches(iter([("a", 1, 10), ("b/c", 2, 20)]), [])  # a generator, consumed once
    assert not state.matches([("a", 1, 10)], [])  # one missing
    assert not state.matches([("a", 1, 10), ("b/c", 2, 20), ("new", 0, 0)], [])  # one extra
    assert not state.matches([("a", 1, 11), ("b/c", 2, 20)], [])  # touched
    assert not state.matches([("a", 2, 10), ("b/c", 2, 20)], [])  # resized
    assert not state.matches([("a", 1, 10), ("a", 1, 10)], [])  # two local names with one key
    assert state.matches([("a", 1, 10), ("b/c", 2, 20)], [])  # and it still works after all that
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
    found = list(scan(tmp_path, []))
    full = {(key, size, mtime_ns) for key, _, _, size, mtime_ns, _ in found}
    cheap = set(scan_stats(tmp_path, []))
    assert cheap == full
    assert len(cheap) == 4
    # And they are the keys the path rules give (the quick way for ASCII names included).
    assert {key for key, *_ in found} == {path_key(normalize_path(local)) for _, _, local, *_ in found}


def test_synced_files_under_a_skipped_item_are_held_not_missing(tmp_path: Path):
    state = StateDB(tmp_path / "state.db")
    synced(state, {"a": (1, 10), "link/x": (2, 20), "link/y/z": (3, 30), "linked": (4, 40), "ignored.log": (5, 50)})
    found = [("a", "a", "a", 1, 10, 0)]
    issues = [
        Issue("link", "link", "skipped", "symlink (never followed)"),
        Issue("ignored.log", "ignored.log", "ignored", ".filesyncignore"),
        Issue("empty", "empty", "note", "empty folder"),
    ]
    state.load_scan(found, issues)
    held = {key for key, _, _, is_held in state.page(None, 100) if is_held}
    assert held == {"link/x", "link/y/z", "ignored.log"}  # not "linked": only the item and what is under it
    assert set(state.blockers(["link/x", "link/new", "linked", "a", "empty/x"])) == {"link/x", "link/new"}
    assert state.blockers(["link/new"])["link/new"].reason == "symlink (never followed)"
    # The no-change check: the same files and the same items is no change; the held files are not expected.
    state.forget(["linked"])
    stats = [("a", 1, 10)]
    assert state.matches(stats, issues)
    assert not state.matches(stats, issues[:2])  # the empty folder went
    assert not state.matches(stats, [*issues, Issue("new-link", "new-link", "skipped", "symlink (never followed)")])
    # A file the last round could not read is expected as it was then.
    state.add_issue(IssueRow("secret", "secret", "unreadable", "unreadable (Permission denied)", 7, 70))
    assert state.matches([*stats, ("secret", 7, 70)], issues)
    assert not state.matches([*stats, ("secret", 7, 71)], issues)
    state.close()


def test_a_database_an_earlier_client_wrote_is_upgraded(tmp_path: Path):
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(
        "CREATE TABLE files (key TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL, synced_rev INTEGER NOT NULL, blocks BLOB);"
        "CREATE TABLE scanned (key TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL, absolute TEXT NOT NULL);"
        "INSERT INTO files VALUES ('docs/a.txt', 'Docs/a.txt', 1, 2, 'h', 3, NULL);"
    )
    old.commit()
    old.close()
    state = StateDB(tmp_path / "state.db")
    assert state.entry("docs/a.txt") == StateEntry("docs/a.txt", "Docs/a.txt", 1, 2, "h", 3, None, "Docs/a.txt")
    assert state.spelling("docs") == "Docs"
    assert state.load_scan([("docs/a.txt", "Docs/a.txt", "Docs/a.txt", 1, 2, 9)], []) == 1
    state.close()
