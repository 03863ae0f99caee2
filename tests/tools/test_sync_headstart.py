"""The head start hashes a folder's large changed files while the client starts; the engine takes a digest only
for the very file it opened, in its block size, and hashes everything else itself."""

from __future__ import annotations

import os
from pathlib import Path

from service.content import DEFAULT_BLOCK_SIZE
from tools.sdk.hashing import hash_file_sync
from tools.sync.headstart import HeadStart
from tools.sync.localfs import Folder
from tools.sync.state import StateDB, StateEntry

THRESHOLD = 4096


def opened(root: Path, local: str) -> os.stat_result:
    fd = Folder(root).open_file(local)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def head_start(root: Path, state: Path) -> HeadStart:
    """A head start that has done all it was going to (so that what it hands over does not depend on timing)."""
    started = HeadStart(root, state, threshold=THRESHOLD)
    started._thread.start()
    started._thread.join(timeout=30)
    return started


def test_large_new_files_are_hashed_ahead_and_handed_over_once(tmp_path: Path):
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(3 * THRESHOLD))
    (root / "sub" / "bigger.bin").write_bytes(os.urandom(5 * THRESHOLD))
    (root / "small.txt").write_bytes(b"small")
    started = head_start(root, tmp_path / "none.db")  # a first sync: no state database yet
    for local in ("big.bin", "sub/bigger.bin"):
        ready = started.digest(local, opened(root, local), DEFAULT_BLOCK_SIZE)
        assert ready == hash_file_sync(root / local, DEFAULT_BLOCK_SIZE)
        assert started.digest(local, opened(root, local), DEFAULT_BLOCK_SIZE) is None  # handed over once
    assert started.digest("small.txt", opened(root, "small.txt"), DEFAULT_BLOCK_SIZE) is None


def test_nothing_is_handed_over_for_another_file_or_block_size(tmp_path: Path):
    root = tmp_path / "folder"
    root.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (root / name).write_bytes(os.urandom(2 * THRESHOLD))
    started = head_start(root, tmp_path / "none.db")
    assert started.digest("a.bin", opened(root, "a.bin"), 5 * 1024 * 1024) is None  # not the round's block size
    (root / "b.bin").write_bytes(os.urandom(2 * THRESHOLD + 1))  # changed since it was hashed: another file
    assert started.digest("b.bin", opened(root, "b.bin"), DEFAULT_BLOCK_SIZE) is None
    # The file hashed as it still is is handed over.
    assert started.digest("c.bin", opened(root, "c.bin"), DEFAULT_BLOCK_SIZE) == hash_file_sync(
        root / "c.bin", DEFAULT_BLOCK_SIZE
    )


def test_files_the_state_database_holds_as_they_are_are_left_alone(tmp_path: Path):
    root = tmp_path / "folder"
    root.mkdir()
    (root / "synced.bin").write_bytes(os.urandom(2 * THRESHOLD))
    (root / "edited.bin").write_bytes(os.urandom(2 * THRESHOLD))
    state = StateDB(tmp_path / "state.db")
    state.set("block_size", str(5 * 1024 * 1024))
    for name in ("synced.bin", "edited.bin"):
        found = opened(root, name)
        mtime = found.st_mtime_ns if name == "synced.bin" else found.st_mtime_ns - 10**9
        state.record([StateEntry(name, name, found.st_size, mtime, "0" * 64, 1)])
    state.close()
    started = head_start(root, tmp_path / "state.db")
    assert started.digest("synced.bin", opened(root, "synced.bin"), 5 * 1024 * 1024) is None
    ready = started.digest("edited.bin", opened(root, "edited.bin"), 5 * 1024 * 1024)  # the recorded block size
    assert ready == hash_file_sync(root / "edited.bin", 5 * 1024 * 1024)


def test_a_stopped_head_start_hashes_nothing_more(tmp_path: Path):
    root = tmp_path / "folder"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(2 * THRESHOLD))
    started = HeadStart(root, tmp_path / "none.db", threshold=THRESHOLD)
    started.stop()
    started._thread.start()
    started._thread.join(timeout=30)
    assert started.digest("big.bin", opened(root, "big.bin"), DEFAULT_BLOCK_SIZE) is None
