"""Three devices make random edits, deletions and syncs against the real service; after quiescence they
converge to one tree, and no committed content is lost (hypothesis stateful testing, fixed seed in CI).

A longer randomized run: ``FILESYNC_HYPOTHESIS_EXAMPLES=200 make unit PYTEST_ARGS=tests/tools/test_sync_stateful.py``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tests.api.files_helpers import independent_hash
from tools.sdk.client import FileSyncClient
from tools.sync import engine
from tools.sync.engine import SyncEngine
from tools.sync.state import StateDB

NAMES = ["a.txt", "b.txt", "dir/c.txt", "dir/sub/d.txt"]
CONTENTS = [b"", b"one", b"two", b"three" * 100]
PASSWORD = "correct horse battery"
EXAMPLES = int(os.environ.get("FILESYNC_HYPOTHESIS_EXAMPLES", "6"))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Devices(RuleBasedStateMachine):
    server: str = ""
    base: Path = Path()

    @initialize()
    def start(self) -> None:
        self.user = f"h{uuid.uuid4().hex[:12]}"
        self.roots = []
        for i in range(3):
            root = self.base / self.user / f"device{i}"
            root.mkdir(parents=True)
            self.roots.append(root)
        self.committed: set[bytes] = set()
        asyncio.run(self._sign_up())

    async def _sign_up(self) -> None:
        async with FileSyncClient(self.server) as api:
            await api.sign_up(self.user, PASSWORD)

    @rule(device=st.integers(0, 2), name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS))
    def write(self, device: int, name: str, content: bytes) -> None:
        target = self.roots[device] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.utime(target, ns=(os.stat(target).st_atime_ns, os.stat(target).st_mtime_ns + 1_000_000))

    @rule(device=st.integers(0, 2), name=st.sampled_from(NAMES))
    def delete(self, device: int, name: str) -> None:
        target = self.roots[device] / name
        if target.exists():
            target.unlink()

    @rule(device=st.integers(0, 2))
    def sync(self, device: int) -> None:
        before = tree(self.roots[device])
        asyncio.run(self._sync(device))
        self.committed |= set(before.values())

    async def _sync(self, device: int) -> None:
        async with FileSyncClient(self.server) as api:
            await api.log_in(self.user, PASSWORD)
            ns = (await api.account()).home_namespace
            state = StateDB(self.base / self.user / f"state{device}.db")
            try:
                await SyncEngine(api, ns, self.roots[device], state, device=f"device{device}").sync()
            finally:
                state.close()

    def teardown(self) -> None:
        if not getattr(self, "roots", None):
            return
        for _ in range(2):
            for device in range(3):
                asyncio.run(self._sync(device))
        trees = [tree(root) for root in self.roots]
        assert trees[0] == trees[1] == trees[2], "the devices did not converge"
        # Every content that was on a device when it synced is still in the final tree, or in some file's
        # history on the server: nothing committed is lost.
        remaining = set(trees[0].values())
        history = asyncio.run(self._all_history())
        for content in self.committed - remaining:
            assert content in history, f"committed content {content[:20]!r} was lost"

    async def _all_history(self) -> set[bytes]:
        found: set[bytes] = set()
        async with FileSyncClient(self.server) as api:
            await api.log_in(self.user, PASSWORD)
            ns = (await api.account()).home_namespace
            by_hash = {independent_hash(content): content for content in CONTENTS}
            page = await api.changes(ns, "s0", limit=100)
            while True:
                for change in page.changes:
                    if change.content_hash in by_hash:
                        found.add(by_hash[change.content_hash])
                if not page.more:
                    return found
                page = await api.changes(ns, page.cursor, limit=100)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", [5000, 2], ids=["one-page", "pages-of-two"])
def test_devices_converge_and_lose_nothing(server, tmp_path, monkeypatch, page: int):
    """With the real page size, and with pages of two keys so every round crosses page boundaries."""
    monkeypatch.setattr(engine, "COMPARE_PAGE", page)
    Devices.server = server
    Devices.base = tmp_path
    run_state_machine_as_test(
        Devices,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            derandomize=EXAMPLES <= 6,
            suppress_health_check=list(HealthCheck),
        ),
    )
