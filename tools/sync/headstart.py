"""A head start for a sync: large files hashed while the client is still starting.

Layer: tools (sync client); imports the standard library, the scan and the SDK's hashing (all light).

Before a round can hash anything the client imports its HTTP stack, opens its session and asks the service
for its configuration: a few tenths of a second of one core, while the other has nothing to do. A
``HeadStart`` spends them hashing, in a thread of its own (hashlib runs without the GIL): it walks the first
``max_entries`` files the scan finds (ignore rules and all) and hashes, largest first, those of more than
``threshold`` bytes that the state database does not hold at their size and mtime, in the block size the
state database recorded (else the default). It is a guess made before the service is asked anything, and
it decides nothing: the engine takes a digest only for the file it opened itself (same device, inode, size
and mtime) in the block size of the round, waits for one being hashed, and hashes anything else as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from service.content import DEFAULT_BLOCK_SIZE, ContentDigest
from tools.sdk.hashing import hash_file_sync
from tools.sync.localfs import Folder
from tools.sync.scan import Issue, scan

#: Files of at most this size go to the service in batches, hashed there with the batch: none to hash here.
THRESHOLD = 256 * 1024
#: Files of the walk's beginning considered (a large folder's walk is the round's own business).
MAX_ENTRIES = 10_000

#: How long the engine waits for the walk to say which files it hashes (a slow file system: then it goes on).
_LISTING_SECONDS = 2.0
#: A file as it was hashed: (device, inode, size, mtime_ns).
Identity = tuple[int, int, int, int]


class HeadStart:
    """Hashes started ahead of a round; ``digest`` hands the engine what is (or is about to be) ready."""

    def __init__(self, root: Path, state_path: Path, threshold: int = THRESHOLD, max_entries: int = MAX_ENTRIES):
        self._root = root
        self._state_path = state_path
        self._threshold = threshold
        self._max_entries = max_entries
        self.block_size = DEFAULT_BLOCK_SIZE
        self._queued: dict[str, concurrent.futures.Future[tuple[Identity, ContentDigest]]] = {}
        self._lock = threading.Lock()
        self._listed = threading.Event()  # the files to hash are queued (or there are none)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="filesync-head-start", daemon=True)

    @classmethod
    def begin(cls, root: Path, state_path: Path) -> HeadStart:
        started = cls(root, state_path)
        started._thread.start()
        return started

    def digest(self, local: str, opened: os.stat_result, block_size: int) -> ContentDigest | None:
        """The digest of the file at ``local`` if it was hashed here as the engine opened it (``opened``) and in
        its block size: waited for when it is being hashed, else None (not here, or not started yet: then it
        never will be, and the engine hashes it)."""
        if not self._listed.wait(_LISTING_SECONDS):
            return None
        with self._lock:
            future = self._queued.pop(local, None)
        if future is None or block_size != self.block_size or future.cancel():
            return None
        try:
            identity, found = future.result()
        except Exception:  # the engine hashes it, and meets what went wrong itself
            return None
        same = (opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns) == identity
        return found if same else None

    def stop(self) -> None:
        """No more hashing: what has not started never will."""
        self._stopped.set()
        with self._lock:
            for future in self._queued.values():
                future.cancel()

    def _run(self) -> None:
        try:
            chosen = self._candidates()
        except Exception:  # a guess: whatever fails here, the round does properly
            chosen = []
        finally:
            self._listed.set()
        for local in chosen:
            with self._lock:
                future = self._queued.get(local)
            if self._stopped.is_set() or future is None or not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._hash(local))
            except Exception as exc:  # handed to the engine, which then hashes the file itself
                future.set_exception(exc)

    def _candidates(self) -> list[str]:
        """The large files to hash, largest first, each queued (so that the engine knows to wait for it)."""
        issues: list[Issue] = []
        rows = sorted(itertools.islice(scan(self._root, issues), self._max_entries), key=lambda r: r[3], reverse=True)
        chosen = []
        with self._state() as state:
            recorded = state.execute("SELECT value FROM meta WHERE name = 'block_size'").fetchone() if state else None
            if recorded is not None:
                self.block_size = int(recorded[0])
            for key, _, local, size, mtime_ns, _ in rows:
                if size <= self._threshold:
                    break
                synced = None
                if state is not None:
                    synced = state.execute("SELECT size, mtime_ns FROM files WHERE key = ?", (key,)).fetchone()
                if synced is None or tuple(synced) != (size, mtime_ns):
                    chosen.append(local)
        with self._lock:
            for local in chosen:
                self._queued[local] = concurrent.futures.Future()
        return chosen

    @contextlib.contextmanager
    def _state(self) -> Iterator[sqlite3.Connection | None]:
        """The state database, read-only (None when this folder has none yet: everything in it is new)."""
        try:
            db = sqlite3.connect(f"{self._state_path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)
        except sqlite3.Error:
            yield None
            return
        try:
            db.execute("SELECT 1 FROM files LIMIT 1")
        except sqlite3.Error:
            db.close()
            yield None
            return
        try:
            yield db
        finally:
            db.close()

    def _hash(self, local: str) -> tuple[Identity, ContentDigest]:
        fd = Folder(self._root).open_file(local)
        try:
            before = os.fstat(fd)
            digest = hash_file_sync(fd, self.block_size)
        finally:
            os.close(fd)
        return (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns), digest
