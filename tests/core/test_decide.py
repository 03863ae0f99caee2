"""The three-way decision of compare, path by path (pure)."""

from __future__ import annotations

import pytest

from service.core.models import FileVersion
from service.core.sync import ManifestEntry, decide

A, B, C = "a" * 64, "b" * 64, "c" * 64


def server(content_hash: str, rev: int, deleted: bool = False) -> FileVersion:
    return FileVersion("f", "id", rev, "" if deleted else content_hash, 1, 0.0, deleted, "u", 0.0, rev, None, 8)


@pytest.mark.parametrize(
    ("local", "synced_rev", "synced_hash", "remote", "action"),
    [
        (A, 1, A, server(A, 1), "up_to_date"),
        (B, 1, A, server(A, 1), "upload"),  # changed here only
        (A, 1, A, server(B, 2), "download"),  # changed there only
        (C, 1, A, server(B, 2), "conflict"),  # changed on both sides
        (B, 1, A, server(B, 2), "up_to_date"),  # both made the same change
        (A, None, None, None, "upload"),  # new here
        ("", None, None, server(A, 1), "download"),  # new there
        (A, None, None, server(B, 1), "conflict"),  # created on both sides independently
        (A, 1, A, server("", 2, deleted=True), "deleted"),  # deleted there, untouched here
        (B, 1, A, server("", 2, deleted=True), "conflict"),  # edit here vs delete there: keep the edit
        (A, 2, "", server("", 2, deleted=True), "upload"),  # re-created after seeing the delete
        ("", 1, A, server(A, 1), "upload"),  # deleted here: the client uploads the deletion
        ("", None, None, None, "up_to_date"),
        ("", 2, "", server("", 2, deleted=True), "up_to_date"),
    ],
)
def test_decide(local, synced_rev, synced_hash, remote, action):
    assert decide(ManifestEntry("f", local, synced_rev, synced_hash), remote) == action


async def test_a_shutdown_releases_waiting_long_polls_at_once():
    import asyncio
    import time

    from service.core.sync import HeadWatcher

    class Journal:
        async def heads(self, namespaces):
            return dict.fromkeys(namespaces, 0)

    watcher = HeadWatcher(Journal(), interval=0.05)  # type: ignore[arg-type]
    started = time.monotonic()
    waiting = asyncio.create_task(watcher.wait("ns", 0, 30))
    await asyncio.sleep(0.1)
    watcher.release_all()
    assert not await waiting
    assert time.monotonic() - started < 2
    await watcher.close()
