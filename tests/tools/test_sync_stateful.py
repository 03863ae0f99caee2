"""Three devices make random edits, deletions, renames and syncs against the real service, with the items
real folders hold that cannot sync (names other platforms refuse, case and Unicode-normalization twins,
symlinks, in and out of the folder); after quiescence they converge to one tree (every path not named as
skipped by some device holds the same content everywhere), no committed content is lost, and nothing
outside the folders changed (hypothesis stateful testing, fixed seed in CI).

A longer randomized run: ``FILESYNC_HYPOTHESIS_EXAMPLES=200 make unit PYTEST_ARGS=tests/tools/test_sync_stateful.py``.
"""

from __future__ import annotations

import asyncio
import os
import unicodedata
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from service.paths import path_key
from tests.api.files_helpers import independent_hash
from tools.sdk.client import FileSyncClient
from tools.sync import engine
from tools.sync.engine import SyncEngine, SyncReport
from tools.sync.state import StateDB

NAMES = [
    "a.txt",
    "A.txt",  # a case twin of a.txt
    "b.txt",
    "caf\u00e9.txt",
    "cafe\u0301.txt",  # its NFD twin, as macOS writes it
    "dir/c.txt",
    "dir/sub/d.txt",
    "Dir/e.txt",  # under a case twin of dir
    "bad:name.txt",  # no Windows can hold it
]
FOLDERS = ["dir", "Dir", "moved"]
CONTENTS = [b"", b"one", b"two", b"three" * 100]
PASSWORD = "correct horse battery"
EXAMPLES = int(os.environ.get("FILESYNC_HYPOTHESIS_EXAMPLES", "6"))


def tree(root: Path) -> dict[str, bytes]:
    """Regular files, not through a symlink, by local path."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def named(report: SyncReport) -> set[str]:
    """The local paths a sync named as not synced."""
    return {issue.local for issue in report.skipped}


def under(path: str, names: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:depth]) in names for depth in range(1, len(parts) + 1))


def make_real(root: Path, name: str) -> None:
    """Make the folders above ``name`` real folders, as a user replacing a symlink would."""
    parent = root
    for part in name.split("/")[:-1]:
        parent = parent / part
        if parent.is_symlink() or parent.is_file():
            parent.unlink()
        parent.mkdir(exist_ok=True)


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
        self.outside = self.base / self.user / "outside"
        self.outside.mkdir()
        (self.outside / "target.txt").write_bytes(b"outside the folders")
        self.reports: list[SyncReport | None] = [None, None, None]
        asyncio.run(self._sign_up())

    async def _sign_up(self) -> None:
        async with FileSyncClient(self.server) as api:
            await api.sign_up(self.user, PASSWORD)

    @rule(device=st.integers(0, 2), name=st.sampled_from(NAMES), content=st.sampled_from(CONTENTS))
    def write(self, device: int, name: str, content: bytes) -> None:
        make_real(self.roots[device], name)
        target = self.roots[device] / name
        if target.is_symlink():
            target.unlink()
        if target.is_dir():
            return
        target.write_bytes(content)
        os.utime(target, ns=(os.stat(target).st_atime_ns, os.stat(target).st_mtime_ns + 1_000_000))

    @rule(device=st.integers(0, 2), name=st.sampled_from(NAMES))
    def delete(self, device: int, name: str) -> None:
        target = self.roots[device] / name
        if target.is_symlink() or target.is_file():
            target.unlink()

    @rule(
        device=st.integers(0, 2),
        name=st.sampled_from(NAMES + FOLDERS),
        to=st.sampled_from(["b.txt", "dir/renamed.txt", "outside", "inside"]),
    )
    def symlink(self, device: int, name: str, to: str) -> None:
        """A symlink where a file or folder is (or could be): to a file inside, to outside, or to a folder."""
        target = self.roots[device] / name
        if target.is_symlink() or target.exists():
            return
        make_real(self.roots[device], name)
        pointed = {"outside": self.outside, "inside": self.roots[device]}.get(to, self.roots[device] / to)
        target.symlink_to(pointed)

    @rule(device=st.integers(0, 2), source=st.sampled_from(NAMES + FOLDERS), to=st.sampled_from(NAMES + FOLDERS))
    def rename(self, device: int, source: str, to: str) -> None:
        """A rename or a move, of a file or of a folder, as a user makes it."""
        root = self.roots[device]
        origin, target = root / source, root / to
        if origin.is_symlink() or not origin.exists() or target.exists() or target.is_symlink():
            return
        if origin.is_dir() and (target == origin or origin in target.parents):
            return
        make_real(root, to)
        origin.rename(target)

    @rule(device=st.integers(0, 2))
    def sync(self, device: int) -> None:
        before = tree(self.roots[device])
        report = asyncio.run(self._sync(device))
        # What synced was committed; what the sync named as not synced (a twin, a name Windows refuses)
        # stays here only.
        self.committed |= {data for path, data in before.items() if not under(path, named(report))}

    async def _sync(self, device: int) -> SyncReport:
        async with FileSyncClient(self.server) as api:
            await api.log_in(self.user, PASSWORD)
            ns = (await api.account()).home_namespace
            state = StateDB(self.base / self.user / f"state{device}.db")
            try:
                report = await SyncEngine(api, ns, self.roots[device], state, device=f"device{device}").sync()
            finally:
                state.close()
        self.reports[device] = report
        return report

    def teardown(self) -> None:
        if not getattr(self, "roots", None):
            return
        for _ in range(2):
            for device in range(3):
                asyncio.run(self._sync(device))
        reports = [r for r in self.reports if r is not None]
        # Every item named as not synced is really there, as what its reason says.
        for root, report in zip(self.roots, reports, strict=True):
            for issue in report.skipped:
                if issue.kind != "unplaced":
                    assert os.path.lexists(root / issue.local), issue
        # Converged: every path (by key) that no device names as not synced holds the same content on every
        # device; a device holds a path another device names only if that device can hold it.
        skipped_keys = {path_key(unicodedata.normalize("NFC", i.local)) for r in reports for i in r.skipped}
        trees = []
        for root, report in zip(self.roots, reports, strict=True):
            mine = named(report)
            trees.append(
                {
                    path_key(unicodedata.normalize("NFC", path)): data
                    for path, data in tree(root).items()
                    if not under(path, mine) and not under(path_key(unicodedata.normalize("NFC", path)), skipped_keys)
                }
            )
        assert trees[0] == trees[1] == trees[2], "the devices did not converge"
        assert (self.outside / "target.txt").read_bytes() == b"outside the folders"
        assert sorted(os.listdir(self.outside)) == ["target.txt"]
        # Every content that was on a device when it synced is still in the final tree, or in some file's
        # history on the server: nothing committed is lost.
        remaining = {data for t in trees for data in t.values()}
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
