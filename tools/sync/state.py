"""The client's local state: one SQLite database per synced folder.

For every path synced it records what was there at the last sync (size, mtime, content hash) and the
server's rev it matched, so a later scan re-hashes only files whose size or mtime changed, and a compare
can tell "changed here" from "changed there". It also keeps the feed cursor, the namespace and the
multipart uploads in progress (the transfer's ``UploadLedger``), and each round's scan, which the round
reads back a page at a time. Memory does not grow with the number of files: rows are read and written in
batches and pages.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,          -- the path key: NFC, case folded
    path TEXT NOT NULL,            -- the path as stored on the server
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,    -- of the local file at the last sync
    synced_rev INTEGER NOT NULL,   -- the server rev it matched
    blocks BLOB                    -- its block digests (32 bytes each) when it had several: delta uploads
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scanned (
    key TEXT PRIMARY KEY,          -- this round's scan: what is on disk now (a round reads it a page at a time)
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    absolute TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    key TEXT PRIMARY KEY,          -- the object key of a multipart upload in progress
    upload_id TEXT NOT NULL        -- written before its first part is sent: a crashed run resumes it
);
"""


@dataclass(frozen=True, slots=True)
class StateEntry:
    key: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    synced_rev: int
    blocks: bytes | None = None


@dataclass(frozen=True, slots=True)
class SeenFile:
    """A file as this round's scan found it."""

    key: str
    path: str
    size: int
    mtime_ns: int
    absolute: str


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
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
            "SELECT key, path, size, mtime_ns, content_hash, synced_rev, blocks FROM files ORDER BY key"
        ):
            yield StateEntry(*row)

    def entry(self, key: str) -> StateEntry | None:
        row = self._db.execute(
            "SELECT key, path, size, mtime_ns, content_hash, synced_rev, blocks FROM files WHERE key = ?", (key,)
        ).fetchone()
        return StateEntry(*row) if row else None

    def record(self, entries: Iterable[StateEntry]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((e.key, e.path, e.size, e.mtime_ns, e.content_hash, e.synced_rev, e.blocks) for e in entries),
            )

    def forget(self, keys: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM files WHERE key = ?", ((k,) for k in keys))

    def upload_id(self, key: str) -> str | None:
        row = self._db.execute("SELECT upload_id FROM uploads WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember_upload(self, key: str, upload_id: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?)", (key, upload_id))

    def forget_upload(self, key: str) -> None:
        self._db.execute("DELETE FROM uploads WHERE key = ?", (key,))

    def unfinished_uploads(self) -> list[tuple[str, str]]:
        return [(str(k), str(u)) for k, u in self._db.execute("SELECT key, upload_id FROM uploads ORDER BY key")]

    def matches(self, scanned: Iterable[tuple[str, int, int]]) -> bool:
        """Whether a scan (path key, size, mtime) is exactly what was synced: the same keys, none missing or
        extra, each with the same size and mtime. Streams the scan through a temporary table and compares in
        SQL, so memory stays flat however many files there are."""
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS scan (key TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
        db.execute("DELETE FROM scan")
        try:
            with self._transaction():
                rows = iter(scanned)
                while chunk := list(itertools.islice(rows, 10_000)):
                    db.executemany("INSERT INTO scan VALUES (?, ?, ?)", chunk)
        except sqlite3.IntegrityError:
            return False  # two local names with one key: not what was synced
        try:
            counted = db.execute("SELECT (SELECT COUNT(*) FROM scan), (SELECT COUNT(*) FROM files)").fetchone()
            if counted[0] != counted[1]:
                return False
            differing = db.execute(
                "SELECT 1 FROM scan s LEFT JOIN files f ON f.key = s.key AND f.size = s.size "
                "AND f.mtime_ns = s.mtime_ns WHERE f.key IS NULL LIMIT 1"
            ).fetchone()
            return differing is None
        finally:
            db.execute("DELETE FROM scan")

    def load_scan(self, found: Iterable[SeenFile]) -> int:
        """Replace the stored scan with ``found``, streamed in (a later name with the same key replaces an
        earlier one); returns how many files it holds."""
        with self._transaction():
            self._db.execute("DELETE FROM scanned")
            rows = ((f.key, f.path, f.size, f.mtime_ns, f.absolute) for f in found)
            while chunk := list(itertools.islice(rows, 10_000)):
                self._db.executemany("INSERT OR REPLACE INTO scanned VALUES (?, ?, ?, ?, ?)", chunk)
        return int(self._db.execute("SELECT COUNT(*) FROM scanned").fetchone()[0])

    def add_scanned(self, seen: SeenFile) -> None:
        """A file this round made itself (a conflicted copy), so later pages see it as on disk."""
        self._db.execute(
            "INSERT OR REPLACE INTO scanned VALUES (?, ?, ?, ?, ?)",
            (seen.key, seen.path, seen.size, seen.mtime_ns, seen.absolute),
        )

    def bytes_to_hash(self) -> int:
        """Bytes of the scanned files whose size or mtime differ from what was synced (or that are new)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(s.size), 0) FROM scanned s LEFT JOIN files f ON f.key = s.key "
            "AND f.size = s.size AND f.mtime_ns = s.mtime_ns WHERE f.key IS NULL"
        ).fetchone()
        return int(row[0])

    def page(self, after: str | None, limit: int) -> list[tuple[str, SeenFile | None, StateEntry | None]]:
        """The next ``limit`` path keys after ``after`` that are on disk or were synced, in key order, each
        with what the scan found and what was synced: a round holds one page, not the whole folder."""
        start = after if after is not None else ""
        rows = self._db.execute(
            "SELECT k.key, s.path, s.size, s.mtime_ns, s.absolute, "
            "f.path, f.size, f.mtime_ns, f.content_hash, f.synced_rev, f.blocks "
            "FROM (SELECT key FROM (SELECT key FROM scanned WHERE key > ?1 ORDER BY key LIMIT ?2) "
            "UNION SELECT key FROM (SELECT key FROM files WHERE key > ?1 ORDER BY key LIMIT ?2) "
            "ORDER BY key LIMIT ?2) k "
            "LEFT JOIN scanned s ON s.key = k.key LEFT JOIN files f ON f.key = k.key ORDER BY k.key",
            (start, limit),
        ).fetchall()
        out: list[tuple[str, SeenFile | None, StateEntry | None]] = []
        for key, s_path, s_size, s_mtime, s_abs, f_path, f_size, f_mtime, f_hash, f_rev, f_blocks in rows:
            seen = SeenFile(key, s_path, s_size, s_mtime, s_abs) if s_path is not None else None
            entry = StateEntry(key, f_path, f_size, f_mtime, f_hash, f_rev, f_blocks) if f_path is not None else None
            out.append((key, seen, entry))
        return out

    def clear_scan(self) -> None:
        self._db.execute("DELETE FROM scanned")

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
