"""The client's local state: one SQLite database per synced folder.

For every path synced it records what was there at the last sync (size, mtime, inode, content hash, and the
local spelling of the path when it is not the NFC wire path) and the server's rev it matched, so a later
scan re-hashes only files whose size or mtime changed, and a compare can tell "changed here" from "changed
there". It also keeps the feed cursor, the namespace, the multipart uploads in progress (the transfer's
``UploadLedger``), each round's scan (which the round reads back a page at a time) and the items that do not
sync with their reasons (``issues``: what the scan found, and what the last round could not read, upload or
place), so ``status`` and the next no-change sync can name them. Memory does not grow with the number of
files: rows are read and written in batches and pages.

A synced file that is no longer on disk as a file but sits under an item the scan could not read or was
told to leave alone (a symlink, an unreadable folder, an ignored name, a twin) is *held*: it is neither
compared nor taken for a deletion until that item resolves.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from tools.sync.scan import FileRow, Issue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,          -- the path key: NFC, case folded
    path TEXT NOT NULL,            -- the path as stored on the server
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,    -- of the local file at the last sync
    synced_rev INTEGER NOT NULL,   -- the server rev it matched
    blocks BLOB,                   -- its block digests (32 bytes each) when it had several: delta uploads
    local TEXT,                    -- the local path as the file system spells it (NULL: the same as path)
    inode INTEGER,                 -- with size, what tells a renamed file from a new one
    held INTEGER                   -- 1: under an item this round skipped or ignored; not a deletion
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scanned (
    key TEXT PRIMARY KEY,          -- this round's scan: what is on disk now (a round reads it a page at a time)
    path TEXT NOT NULL,
    local TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS issues (
    local TEXT NOT NULL,           -- the item, as it may be displayed (a server path for a server file)
    key TEXT NOT NULL,
    kind TEXT NOT NULL,            -- the scan's: skipped, ignored, note; a round's: unreadable, refused, unplaced
    reason TEXT NOT NULL,
    size INTEGER,                  -- unreadable, refused: the local file then (so an unchanged one is no change)
    mtime_ns INTEGER,
    rev INTEGER                    -- unplaced: the server's rev that could not be placed
);
CREATE TABLE IF NOT EXISTS uploads (
    key TEXT PRIMARY KEY,          -- the object key of a multipart upload in progress
    upload_id TEXT NOT NULL        -- written before its first part is sent: a crashed run resumes it
);
"""
#: Made once ``_upgrade`` has added the columns they index.
_INDEXES = """
CREATE INDEX IF NOT EXISTS files_held ON files (key) WHERE held IS NOT NULL;
CREATE INDEX IF NOT EXISTS issues_key ON issues (key);
"""

#: Issues the scan finds (replaced by each scan), and those a round finds (cleared when a round starts).
SCAN_KINDS = ("skipped", "ignored", "note")
ROUND_KINDS = ("unreadable", "refused", "unplaced")
#: Kinds that say an item was not synced (the exit code and the summary count them).
NOT_SYNCED = ("skipped", "unreadable", "refused", "unplaced")


@dataclass(frozen=True, slots=True)
class StateEntry:
    key: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    synced_rev: int
    blocks: bytes | None = None
    local: str = ""  # "" when given: the same as ``path``
    inode: int | None = None

    def __post_init__(self) -> None:
        if not self.local:
            object.__setattr__(self, "local", self.path)


@dataclass(frozen=True, slots=True)
class SeenFile:
    """A file as this round's scan found it."""

    key: str
    path: str
    local: str
    size: int
    mtime_ns: int
    inode: int


class IssueRow(NamedTuple):
    """An item that did not sync, as stored."""

    local: str
    key: str
    kind: str
    reason: str
    size: int | None = None
    mtime_ns: int | None = None
    rev: int | None = None


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._upgrade()
        self._db.executescript(_INDEXES)

    def _upgrade(self) -> None:
        """A database an earlier client wrote: add the columns it lacks, and a scan table of the new shape."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        for name in ("local TEXT", "inode INTEGER", "held INTEGER"):
            if name.split()[0] not in columns:
                self._db.execute(f"ALTER TABLE files ADD COLUMN {name}")
        if "absolute" in {row[1] for row in self._db.execute("PRAGMA table_info(scanned)")}:
            self._db.execute("DROP TABLE scanned")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def entries(self) -> Iterator[StateEntry]:
        for row in self._db.execute(
            "SELECT key, path, size, mtime_ns, content_hash, synced_rev, blocks, COALESCE(local, path), inode "
            "FROM files ORDER BY key"
        ):
            yield StateEntry(*row)

    def entry(self, key: str) -> StateEntry | None:
        row = self._db.execute(
            "SELECT key, path, size, mtime_ns, content_hash, synced_rev, blocks, COALESCE(local, path), inode "
            "FROM files WHERE key = ?",
            (key,),
        ).fetchone()
        return StateEntry(*row) if row else None

    def record(self, entries: Iterable[StateEntry]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    (
                        e.key,
                        e.path,
                        e.size,
                        e.mtime_ns,
                        e.content_hash,
                        e.synced_rev,
                        e.blocks,
                        None if e.local == e.path else e.local,
                        e.inode,
                    )
                    for e in entries
                ),
            )

    def forget(self, keys: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM files WHERE key = ?", ((k,) for k in keys))

    def spelling(self, key: str) -> str | None:
        """The last name of the local path synced under ``key``: a file's, or a folder's that holds synced
        files (which of two twin names synced before)."""
        row = self._db.execute("SELECT COALESCE(local, path) FROM files WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0]).rsplit("/", 1)[-1]
        row = self._db.execute(
            "SELECT COALESCE(local, path) FROM files WHERE key >= ?1 || '/' AND key < ?1 || '0' LIMIT 1", (key,)
        ).fetchone()
        return None if row is None else str(row[0]).split("/")[key.count("/")]

    # --- uploads in progress -------------------------------------------------------------------------

    def upload_id(self, key: str) -> str | None:
        row = self._db.execute("SELECT upload_id FROM uploads WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember_upload(self, key: str, upload_id: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?)", (key, upload_id))

    def forget_upload(self, key: str) -> None:
        self._db.execute("DELETE FROM uploads WHERE key = ?", (key,))

    def unfinished_uploads(self) -> list[tuple[str, str]]:
        return [(str(k), str(u)) for k, u in self._db.execute("SELECT key, upload_id FROM uploads ORDER BY key")]

    # --- the no-change check -------------------------------------------------------------------------

    def matches(self, scanned: Iterable[tuple[str, int, int]], issues: list[Issue]) -> bool:
        """Whether a scan is exactly what the last round left: the same files (path key, size, mtime), none
        missing or extra (files held by an item the scan skipped are not expected; files the last round
        could not read or upload are expected as they were then), and the same skipped, ignored and noted
        items. ``scanned`` (path key, size, mtime) is read first, then ``issues`` (which a scan fills as it
        goes). Streams the scan through temporary tables and compares in SQL, so memory stays flat however
        many files there are."""
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS scan (key TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS scan_issues (local TEXT, kind TEXT, reason TEXT)")
        db.execute("DELETE FROM scan")
        db.execute("DELETE FROM scan_issues")
        try:
            with self._transaction():
                rows = iter(scanned)
                while chunk := list(itertools.islice(rows, 10_000)):
                    db.executemany("INSERT INTO scan VALUES (?, ?, ?)", chunk)
                db.executemany(
                    "INSERT INTO scan_issues VALUES (?, ?, ?)", ((i.local, i.kind, i.reason) for i in issues)
                )
        except sqlite3.IntegrityError:
            return False  # two local names with one key: not what was synced
        try:
            return self._same_issues() and self._same_files()
        finally:
            db.execute("DELETE FROM scan")
            db.execute("DELETE FROM scan_issues")

    def _same_issues(self) -> bool:
        db = self._db
        counts = db.execute(
            "SELECT (SELECT COUNT(*) FROM scan_issues), (SELECT COUNT(*) FROM issues WHERE kind IN (?, ?, ?))",
            SCAN_KINDS,
        ).fetchone()
        if counts[0] != counts[1]:
            return False
        if counts[0] == 0:
            return True
        missing = db.execute(
            "SELECT 1 FROM scan_issues s WHERE NOT EXISTS (SELECT 1 FROM issues i WHERE i.local = s.local "
            "AND i.kind = s.kind AND i.reason = s.reason) LIMIT 1"
        ).fetchone()
        return missing is None

    def _same_files(self) -> bool:
        db = self._db
        if db.execute("SELECT 1 FROM issues WHERE size IS NOT NULL LIMIT 1").fetchone() is None:
            expected = db.execute(
                "SELECT (SELECT COUNT(*) FROM files) - (SELECT COUNT(*) FROM files WHERE held IS NOT NULL)"
            ).fetchone()[0]
            if db.execute("SELECT COUNT(*) FROM scan").fetchone()[0] != expected:
                return False
            differing = db.execute(
                "SELECT 1 FROM scan s LEFT JOIN files f ON f.key = s.key AND f.size = s.size "
                "AND f.mtime_ns = s.mtime_ns WHERE f.key IS NULL LIMIT 1"
            ).fetchone()
            return differing is None
        # Some files the last round could not read or upload: expected as they were then, too.
        expected = db.execute(
            "SELECT COUNT(*) FROM (SELECT key FROM files WHERE held IS NULL "
            "UNION SELECT key FROM issues WHERE size IS NOT NULL)"
        ).fetchone()[0]
        if db.execute("SELECT COUNT(*) FROM scan").fetchone()[0] != expected:
            return False
        differing = db.execute(
            "SELECT 1 FROM scan s LEFT JOIN files f ON f.key = s.key AND f.size = s.size "
            "AND f.mtime_ns = s.mtime_ns WHERE f.key IS NULL AND NOT EXISTS (SELECT 1 FROM issues i "
            "WHERE i.key = s.key AND i.size = s.size AND i.mtime_ns = s.mtime_ns) LIMIT 1"
        ).fetchone()
        return differing is None

    # --- a round -------------------------------------------------------------------------------------

    def load_scan(self, found: Iterable[FileRow], issues: list[Issue]) -> int:
        """Replace the stored scan and the scan's issues with ``found`` (streamed in) and ``issues`` (read
        after it), and mark the synced files they hold; returns how many files the scan holds. Two rows with
        one key cannot come from one scan (it settles twins); should one anyway, the first stays."""
        db = self._db
        with self._transaction():
            db.execute("DELETE FROM scanned")
            db.execute("DELETE FROM issues WHERE kind IN (?, ?, ?)", SCAN_KINDS)
            rows = iter(found)
            while chunk := list(itertools.islice(rows, 10_000)):
                db.executemany("INSERT OR IGNORE INTO scanned VALUES (?, ?, ?, ?, ?, ?)", chunk)
            db.executemany(
                "INSERT INTO issues (local, key, kind, reason) VALUES (?, ?, ?, ?)",
                ((i.local, i.key, i.kind, i.reason) for i in issues),
            )
            db.execute("UPDATE files SET held = NULL WHERE held IS NOT NULL")
            # Each holding item holds its own key and the range of keys under it ('/' < '0' in UTF-8 order).
            holders = db.execute("SELECT DISTINCT key FROM issues WHERE kind IN ('skipped', 'ignored')").fetchall()
            db.executemany(
                "UPDATE files SET held = 1 WHERE (key = ?1 OR (key >= ?1 || '/' AND key < ?1 || '0')) "
                "AND NOT EXISTS (SELECT 1 FROM scanned s WHERE s.key = files.key)",
                holders,
            )
        return int(db.execute("SELECT COUNT(*) FROM scanned").fetchone()[0])

    def pair_moves(self) -> int:
        """Pair the synced files this scan no longer finds (and that nothing holds) with the files it finds
        that were not synced, when they may be one file renamed: the same size, and the same inode where
        both are known (an empty file only by inode). One to one, into the temporary table ``moves``, read
        back with ``moves``; returns how many pairs. The content hash decides, later."""
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS vanished (key TEXT PRIMARY KEY, size INTEGER, inode INTEGER)")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS appeared (key TEXT PRIMARY KEY, size INTEGER, inode INTEGER)")
        db.execute("CREATE INDEX IF NOT EXISTS temp.appeared_size ON appeared (size, inode)")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS moves (old TEXT PRIMARY KEY, new TEXT NOT NULL UNIQUE)")
        with self._transaction():
            db.execute("DELETE FROM temp.vanished")
            db.execute("DELETE FROM temp.appeared")
            db.execute("DELETE FROM temp.moves")
            db.execute(
                "INSERT INTO vanished SELECT key, size, inode FROM files f WHERE held IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM scanned s WHERE s.key = f.key)"
            )
            if db.execute("SELECT 1 FROM vanished LIMIT 1").fetchone() is None:
                return 0
            db.execute(
                "INSERT INTO appeared SELECT key, size, inode FROM scanned s "
                "WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.key = s.key)"
            )
            db.execute(
                "INSERT INTO moves SELECT MIN(old), new FROM (SELECT v.key AS old, MIN(a.key) AS new "
                "FROM vanished v JOIN appeared a ON a.size = v.size "
                "AND (a.inode = v.inode OR (v.inode IS NULL AND v.size > 0)) GROUP BY v.key) GROUP BY new"
            )
        return int(db.execute("SELECT COUNT(*) FROM moves").fetchone()[0])

    def moves(self, after: int, limit: int) -> list[tuple[int, StateEntry, SeenFile]]:
        """The next ``limit`` pairs of ``pair_moves`` after the one numbered ``after``: (its number, the
        vanished synced file, the new file)."""
        rows = self._db.execute(
            "SELECT m.rowid, f.key, f.path, f.size, f.mtime_ns, f.content_hash, f.synced_rev, f.blocks, "
            "COALESCE(f.local, f.path), f.inode, s.key, s.path, s.local, s.size, s.mtime_ns, s.inode "
            "FROM moves m JOIN files f ON f.key = m.old JOIN scanned s ON s.key = m.new "
            "WHERE m.rowid > ? ORDER BY m.rowid LIMIT ?",
            (after, limit),
        ).fetchall()
        return [(int(row[0]), StateEntry(*row[1:10]), SeenFile(*row[10:])) for row in rows]

    def add_scanned(self, seen: SeenFile) -> None:
        """A file this round made itself (a conflicted copy), so later pages see it as on disk."""
        self._db.execute(
            "INSERT OR REPLACE INTO scanned VALUES (?, ?, ?, ?, ?, ?)",
            (seen.key, seen.path, seen.local, seen.size, seen.mtime_ns, seen.inode),
        )

    def bytes_to_hash(self) -> int:
        """Bytes of the scanned files whose size or mtime differ from what was synced (or that are new)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(s.size), 0) FROM scanned s LEFT JOIN files f ON f.key = s.key "
            "AND f.size = s.size AND f.mtime_ns = s.mtime_ns WHERE f.key IS NULL"
        ).fetchone()
        return int(row[0])

    def page(self, after: str | None, limit: int) -> list[tuple[str, SeenFile | None, StateEntry | None, bool]]:
        """The next ``limit`` path keys after ``after`` that are on disk or were synced, in key order, each
        with what the scan found, what was synced, and whether that is held: a round holds one page, not
        the whole folder."""
        start = after if after is not None else ""
        rows = self._db.execute(
            "SELECT k.key, s.path, s.local, s.size, s.mtime_ns, s.inode, f.path, f.size, f.mtime_ns, "
            "f.content_hash, f.synced_rev, f.blocks, COALESCE(f.local, f.path), f.inode, f.held "
            "FROM (SELECT key FROM (SELECT key FROM scanned WHERE key > ?1 ORDER BY key LIMIT ?2) "
            "UNION SELECT key FROM (SELECT key FROM files WHERE key > ?1 ORDER BY key LIMIT ?2) "
            "ORDER BY key LIMIT ?2) k "
            "LEFT JOIN scanned s ON s.key = k.key LEFT JOIN files f ON f.key = k.key ORDER BY k.key",
            (start, limit),
        ).fetchall()
        out: list[tuple[str, SeenFile | None, StateEntry | None, bool]] = []
        for key, *s, f_path, f_size, f_mtime, f_hash, f_rev, f_blocks, f_local, f_inode, held in rows:
            seen = SeenFile(key, *s) if s[0] is not None else None
            entry = (
                StateEntry(key, f_path, f_size, f_mtime, f_hash, f_rev, f_blocks, f_local, f_inode)
                if f_path is not None
                else None
            )
            out.append((key, seen, entry, bool(held)))
        return out

    def clear_scan(self) -> None:
        self._db.execute("DELETE FROM scanned")

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    # --- issues --------------------------------------------------------------------------------------

    def issues(self, kinds: Iterable[str]) -> list[IssueRow]:
        return [
            IssueRow(*row)
            for row in self._db.execute(
                "SELECT local, key, kind, reason, size, mtime_ns, rev FROM issues "
                "WHERE kind IN (SELECT value FROM json_each(?)) ORDER BY local",
                (orjson.dumps(list(kinds)).decode(),),
            )
        ]

    def add_issue(self, issue: IssueRow) -> None:
        self._db.execute(
            "INSERT INTO issues VALUES (?, ?, ?, ?, ?, ?, ?)",
            (issue.local, issue.key, issue.kind, issue.reason, issue.size, issue.mtime_ns, issue.rev),
        )

    def clear_round_issues(self) -> None:
        self._db.execute("DELETE FROM issues WHERE kind IN (?, ?, ?)", ROUND_KINDS)

    def unplaced_rev(self, key: str) -> int | None:
        """The server rev the last round could not place at ``key``, if any."""
        row = self._db.execute("SELECT rev FROM issues WHERE key = ? AND kind = 'unplaced'", (key,)).fetchone()
        return None if row is None else int(row[0])

    def blockers(self, keys: Iterable[str]) -> dict[str, IssueRow]:
        """For each of ``keys`` that the scan's skipped or ignored items hold (the key itself or a folder
        above it), the item that holds it."""
        db = self._db
        if db.execute("SELECT 1 FROM issues WHERE kind IN ('skipped', 'ignored') LIMIT 1").fetchone() is None:
            return {}
        under: dict[str, list[str]] = {}
        for key in keys:
            parts = key.split("/")
            for depth in range(1, len(parts) + 1):
                under.setdefault("/".join(parts[:depth]), []).append(key)
        found: dict[str, IssueRow] = {}
        candidates = list(under)
        for start in range(0, len(candidates), 500):
            chunk = candidates[start : start + 500]
            for row in db.execute(
                "SELECT local, key, kind, reason, size, mtime_ns, rev FROM issues "
                "WHERE kind IN ('skipped', 'ignored') AND key IN (SELECT value FROM json_each(?))",
                (orjson.dumps(chunk).decode(),),
            ):
                issue = IssueRow(*row)
                for key in under[issue.key]:
                    found.setdefault(key, issue)
        return found

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
