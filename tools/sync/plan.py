"""The sync planner: pure. From what is on disk, what was synced, and the service's compare answer, decide
what to do; only the executor (``engine``) touches disk and network.

Conflicts never drop data: when both sides changed a file, the local version is kept under a
"conflicted copy" name and uploaded as a new file, and the server's version takes the original name; an
edit against a deletion keeps the edit.

A path key that is *blocked* here (it, or a folder above it, is an item the scan skipped or the ignore rules
name) is left alone: a server file there is not downloaded (and, unless ignored, is reported as one that
cannot be placed), and nothing there is uploaded or deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.wire import CompareItemOut, FileInfo
from tools.sync.state import StateEntry


@dataclass(frozen=True, slots=True)
class LocalFile:
    key: str
    path: str  # on the wire (NFC)
    size: int
    mtime_ns: int
    content_hash: str
    local: str = ""  # as the file system spells it ("" when given: the same as ``path``)
    inode: int | None = None

    def __post_init__(self) -> None:
        if not self.local:
            object.__setattr__(self, "local", self.path)


@dataclass(frozen=True, slots=True)
class Upload:
    local: LocalFile
    parent_rev: int | None


@dataclass(frozen=True, slots=True)
class RemoteDelete:
    key: str
    path: str
    parent_rev: int


@dataclass(frozen=True, slots=True)
class Download:
    """Write ``file`` at ``local`` (a local spelling this key already has) or at its server path; only
    over what is there now if that is still ``expected`` (size, mtime), or nothing if ``expected`` is None."""

    key: str
    file: FileInfo
    local: str | None = None
    expected: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class LocalDelete:
    key: str
    path: str
    expected: StateEntry


@dataclass(frozen=True, slots=True)
class ConflictCopy:
    """Keep ``local`` under a new name (uploaded as a new file); the server's version (if any) takes the
    original name."""

    local: LocalFile
    server: FileInfo


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why a path key is left alone here: ``kind`` ``ignored`` (say nothing) or ``skipped``."""

    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A server file that is not written here, and why."""

    key: str
    file: FileInfo
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    local: LocalFile
    file: FileInfo


@dataclass(slots=True)
class SyncPlan:
    uploads: list[Upload] = field(default_factory=list)
    remote_deletes: list[RemoteDelete] = field(default_factory=list)
    downloads: list[Download] = field(default_factory=list)
    local_deletes: list[LocalDelete] = field(default_factory=list)
    conflicts: list[ConflictCopy] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    unplaced: list[Unplaced] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.uploads
            or self.remote_deletes
            or self.downloads
            or self.local_deletes
            or self.conflicts
            or self.records
        )


def plan(
    local: dict[str, LocalFile],
    state: dict[str, StateEntry],
    items: list[CompareItemOut],
    keys: dict[str, str],
    blocked: dict[str, Blocker] | None = None,
) -> SyncPlan:
    """``keys`` maps each item's path to its path key (computed by the caller with ``service.paths``);
    ``blocked`` holds the keys to leave alone."""
    result = SyncPlan()
    blocked = blocked or {}
    for item in items:
        key = keys[item.path]
        mine = local.get(key)
        server = item.file
        live = server is not None and not server.deleted
        if key in blocked:
            why = blocked[key]
            if why.kind != "ignored" and server is not None and live and item.action in ("download", "conflict"):
                result.unplaced.append(Unplaced(key, server, why.reason))
            continue
        before = state.get(key)
        if item.action == "up_to_date":
            if mine is not None and server is not None:
                result.records.append(Record(key, mine, server))
        elif item.action == "download":
            if server is not None and live:
                result.downloads.append(_download(key, server, mine, before))
        elif item.action == "deleted":
            if before is not None:
                result.local_deletes.append(LocalDelete(key, before.local, before))
        elif item.action == "upload":
            if mine is not None:
                result.uploads.append(Upload(mine, server.rev if server is not None and live else None))
            elif server is not None and live:
                result.remote_deletes.append(RemoteDelete(key, server.path, server.rev))
            else:
                result.forget.append(key)
        elif item.action == "conflict":
            if mine is None:
                if server is not None and live:  # deleted here, edited there: the edit wins
                    result.downloads.append(_download(key, server, None, before))
            elif server is not None and live:
                result.conflicts.append(ConflictCopy(mine, server))
            else:  # edited here, deleted there: the edit wins
                result.uploads.append(Upload(mine, None))
    return result


def _download(key: str, server: FileInfo, mine: LocalFile | None, before: StateEntry | None) -> Download:
    """Over the local file if there is one (as it is now), else where it was synced, else the server path."""
    if mine is not None:
        return Download(key, server, mine.local, (mine.size, mine.mtime_ns))
    return Download(key, server, before.local if before is not None else None, None)
