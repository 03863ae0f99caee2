"""The sync planner is pure: compare answers in, operations out."""

from __future__ import annotations

from service.wire import CompareItemOut, FileInfo
from tools.sync.plan import Blocker, LocalFile, plan
from tools.sync.state import StateEntry

A, B = "a" * 64, "b" * 64


def server(path: str, rev: int, content_hash: str = A, deleted: bool = False) -> FileInfo:
    return FileInfo(
        path=path,
        file_id="id",
        rev=rev,
        content_hash="" if deleted else content_hash,
        size=0 if deleted else 3,
        mtime=0.0,
        deleted=deleted,
        committed_by="u",
        committed_at=0.0,
        seq=rev,
        block_size=8,
    )


def local(path: str, content_hash: str = B) -> LocalFile:
    return LocalFile(path.lower(), path, 3, 1, content_hash)


def state(path: str, rev: int, content_hash: str = A) -> StateEntry:
    return StateEntry(path.lower(), path, 3, 1, content_hash, rev)


def run(items, locals_=(), states=()):
    return plan(
        {f.key: f for f in locals_},
        {s.key: s for s in states},
        items,
        {i.path: i.path.lower() for i in items},
    )


def test_download_upload_and_deletes():
    items = [
        CompareItemOut(path="d.txt", action="download", file=server("d.txt", 2)),
        CompareItemOut(path="u.txt", action="upload", file=server("u.txt", 1)),
        CompareItemOut(path="new.txt", action="upload"),
        CompareItemOut(path="gone-here.txt", action="upload", file=server("gone-here.txt", 4)),
        CompareItemOut(path="gone-there.txt", action="deleted", file=server("gone-there.txt", 5, deleted=True)),
    ]
    result = run(
        items,
        locals_=[local("u.txt"), local("new.txt")],
        states=[state("u.txt", 1), state("gone-here.txt", 4), state("gone-there.txt", 4)],
    )
    assert [d.file.path for d in result.downloads] == ["d.txt"]
    assert [(u.local.path, u.parent_rev) for u in result.uploads] == [("u.txt", 1), ("new.txt", None)]
    assert [(d.path, d.parent_rev) for d in result.remote_deletes] == [("gone-here.txt", 4)]
    assert [d.path for d in result.local_deletes] == ["gone-there.txt"]


def test_conflicts_keep_both_sides():
    items = [
        CompareItemOut(path="both.txt", action="conflict", file=server("both.txt", 3)),
        CompareItemOut(
            path="edit-vs-delete.txt", action="conflict", file=server("edit-vs-delete.txt", 3, deleted=True)
        ),
        CompareItemOut(path="delete-vs-edit.txt", action="conflict", file=server("delete-vs-edit.txt", 3)),
    ]
    result = run(items, locals_=[local("both.txt"), local("edit-vs-delete.txt")])
    assert [c.local.path for c in result.conflicts] == ["both.txt"]
    assert [(u.local.path, u.parent_rev) for u in result.uploads] == [("edit-vs-delete.txt", None)]
    assert [d.file.path for d in result.downloads] == ["delete-vs-edit.txt"]


def test_same_content_records_the_new_rev_and_nothing_else():
    items = [CompareItemOut(path="same.txt", action="up_to_date", file=server("same.txt", 7, B))]
    result = run(items, locals_=[local("same.txt")])
    assert [(r.key, r.file.rev) for r in result.records] == [("same.txt", 7)]
    assert not result.uploads
    assert not result.downloads
    assert not result.conflicts


def test_blocked_keys_are_left_alone_and_what_cannot_be_placed_is_named():
    items = [
        CompareItemOut(path="link/new.txt", action="download", file=server("link/new.txt", 2)),
        CompareItemOut(path=".DS_Store", action="download", file=server(".DS_Store", 1)),
        CompareItemOut(path="free.txt", action="download", file=server("free.txt", 1)),
    ]
    blocked = {
        "link/new.txt": Blocker("skipped", "link is in the way (symlink)"),
        ".ds_store": Blocker("ignored", "ignore rules"),
    }
    result = plan({}, {}, items, {i.path: i.path.lower() for i in items}, blocked)
    assert [d.file.path for d in result.downloads] == ["free.txt"]
    assert [(u.key, u.reason) for u in result.unplaced] == [("link/new.txt", "link is in the way (symlink)")]
    assert result.uploads == []
    assert result.remote_deletes == []
    assert result.local_deletes == []


def test_a_download_goes_to_the_local_spelling_and_only_over_what_was_seen():
    nfd = LocalFile("caf\u00e9.txt", "caf\u00e9.txt", 3, 1, B, local="cafe\u0301.txt")
    items = [
        CompareItemOut(path="caf\u00e9.txt", action="download", file=server("caf\u00e9.txt", 2)),
        CompareItemOut(path="gone.txt", action="conflict", file=server("gone.txt", 5)),
    ]
    gone = StateEntry("gone.txt", "gone.txt", 3, 1, A, 4, local="Gone.txt")
    result = run(items, locals_=[nfd], states=[gone])
    assert [(d.local, d.expected) for d in result.downloads] == [("cafe\u0301.txt", (3, 1)), ("Gone.txt", None)]
