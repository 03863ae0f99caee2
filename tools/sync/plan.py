"""The sync planner: pure. From what is on disk, what was synced, and the service's compare answer, decide
what to do; only the executor (``engine``) touches disk and network.

Conflicts never drop data: when both sides changed a file, the local version is kept under a
"conflicted copy" name and uploaded as a new file, and the server's version takes the original name; an
edit against a deletion keeps the edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.wire import CompareItemOut, FileInfo
from tools.sync.state import StateEntry


@dataclass(frozen=True, slots=True)
class LocalFile:
    key: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str


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
    key: str
    file: FileInfo


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
) -> SyncPlan:
    """``keys`` maps each item's path to its path key (computed by the caller with ``service.paths``)."""
    result = SyncPlan()
    for item in items:
        key = keys[item.path]
        mine = local.get(key)
        server = item.file
        live = server is not None and not server.deleted
        if item.action == "up_to_date":
            if mine is not None and server is not None:
                result.records.append(Record(key, mine, server))
        elif item.action == "download":
            if server is not None and live:
                result.downloads.append(Download(key, server))
        elif item.action == "deleted":
            before = state.get(key)
            if before is not None:
                result.local_deletes.append(LocalDelete(key, before.path, before))
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
                    result.downloads.append(Download(key, server))
            elif server is not None and live:
                result.conflicts.append(ConflictCopy(mine, server))
            else:  # edited here, deleted there: the edit wins
                result.uploads.append(Upload(mine, None))
    return result
