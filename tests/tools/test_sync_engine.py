"""The sync engine in-process against the real service over HTTP: delta uploads and state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.api.files_helpers import independent_hash
from tests.conftest import TEST_BLOCK_SIZE
from tools.sdk.client import FileSyncClient
from tools.sync.engine import SyncEngine
from tools.sync.state import StateDB


@pytest.fixture
async def api(client):
    async with FileSyncClient(str(client.make_url(""))) as sdk:
        await sdk.sign_up("alice", "correct horse battery")
        await sdk.log_in("alice", "correct horse battery")
        yield sdk


async def test_a_one_byte_change_in_a_64_mib_file_uploads_one_block(api, tmp_path: Path):
    root, other = tmp_path / "files", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    ns = (await api.account()).home_namespace
    data = bytearray(os.urandom(64 * 1024 * 1024))
    (root / "big.bin").write_bytes(data)
    sent: list[int] = []

    def progress(label: str, done: int, total: int) -> None:
        if label == "uploading":
            sent.append(done)

    state = StateDB(tmp_path / "state.db")
    engine = SyncEngine(api, ns, root, state, device="test", progress=progress)
    first = await engine.sync()
    assert first.uploaded == 1
    assert max(sent) == len(data)

    middle = len(data) // 2
    data[middle] ^= 0xFF
    (root / "big.bin").write_bytes(data)
    sent.clear()
    second = await engine.sync()
    assert second.uploaded == 1
    assert max(sent) <= TEST_BLOCK_SIZE, f"sent {max(sent)} bytes for a 1-byte change"

    # Another device gets exactly the new content.
    receiver = SyncEngine(api, ns, other, StateDB(tmp_path / "other.db"), device="other")
    await receiver.sync()
    assert independent_hash((other / "big.bin").read_bytes()) == independent_hash(bytes(data))
    state.close()
