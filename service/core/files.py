"""Files: verified commits of new versions, conflicts, history, restore, move, delete, listing.

Layer: core. Every way a body gets in (direct to S3 with scoped credentials, presigned URLs, streaming
through the service) ends here, in ``commit``:

1. authorize (editor), validate every path (one rule set, ``service.paths``), refuse duplicates;
2. read the current items and the verified-blob records of the batch (BatchGetItem of 100);
3. decide each entry: its ``parent_rev`` must be the current rev (or, for a new file, there must be no
   live file at that path, case-insensitively), else it is a conflict carrying the current version;
   an entry already committed under the same idempotency key is answered as committed (a retry);
4. verify each blob not yet verified; if any is missing or does not match its hash the whole request
   is refused (422) and nothing is written;
5. write in transactions of at most ``MAX_ACTIONS`` items: namespace head, journal entry, file items
   (each conditional on what step 2 read), new blob records. A lost race re-reads and re-decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import orjson

from service.content import EMPTY_HASH, claim_problem
from service.core.errors import Conflict, DependencyUnavailable, FieldError, NotFound, ValidationFailed
from service.core.models import (
    BlobRecord,
    FileVersion,
    JournalEntry,
    Principal,
    StoreConflict,
)
from service.core.namespaces import NamespaceService
from service.paths import normalize_path, path_key

#: DynamoDB's limit on one transaction; two are the head and the journal entry.
MAX_ACTIONS = 100
#: Budget for one journal entry (DynamoDB items are at most 400 KB).
MAX_JOURNAL_BYTES = 300_000
MAX_COMMIT_ENTRIES = 1000
MAX_ATTEMPTS = 20
IDEMPOTENCY_KEY_MAX = 128

Status = Literal["committed", "conflict"]
VerifyOutcome = Literal["ok", "missing", "mismatch"]


@dataclass(frozen=True, slots=True)
class CommitEntry:
    path: str
    content_hash: str
    size: int
    mtime: float
    parent_rev: int | None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CommitResult:
    path: str
    status: Status
    version: FileVersion | None = None
    current: FileVersion | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    results: list[CommitResult]
    seq: int


class FileStore(Protocol):
    async def read(
        self, ns: str, path_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], set[str]]: ...

    async def head_seq(self, ns: str) -> int: ...

    async def write(
        self,
        ns: str,
        expected_seq: int,
        changes: Sequence[tuple[str, FileVersion | None, FileVersion]],
        new_blobs: Sequence[BlobRecord],
        journal: JournalEntry,
    ) -> None: ...

    async def journal_entry(self, ns: str, seq: int) -> JournalEntry | None: ...

    async def list_files(
        self, ns: str, prefix_key: str, start_after: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]: ...


class BlobVerifier(Protocol):
    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> VerifyOutcome: ...


@dataclass(slots=True)
class _Pending:
    index: int
    entry: CommitEntry
    key: str


class FileService:
    def __init__(
        self,
        store: FileStore,
        blobs: BlobVerifier,
        namespaces: NamespaceService,
        *,
        block_size: int,
        verify_concurrency: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._namespaces = namespaces
        self.block_size = block_size
        self._verify_slots = asyncio.Semaphore(verify_concurrency)
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}

    # --- commit ---------------------------------------------------------------------------------------

    async def commit(
        self,
        principal: Principal,
        ns: str,
        entries: Sequence[CommitEntry],
        commit_key: str | None,
        *,
        moves: Sequence[tuple[int, int]] = (),
        verified: frozenset[str] = frozenset(),
        record_verified: bool = True,
    ) -> CommitOutcome:
        """Commit ``entries``; see the module docstring. ``verified`` names hashes the caller itself
        computed from the bytes it stored (the streaming upload, a batch of small files), which need no
        second check; it gets a blob record unless ``record_verified`` is false. A batch of small files
        asks for none: a record costs a transaction action per new file (halving the files one transaction
        holds), while naming that content again without its body costs one HeadObject to verify it."""
        await self._namespaces.authorize(principal, ns, "editor")
        pending = self._validate(entries, commit_key)
        results: dict[int, CommitResult] = {}
        last_seq = 0
        key = commit_key or uuid.uuid4().hex
        unverified = [
            p.entry.content_hash for p in pending if not p.entry.deleted and p.entry.content_hash not in verified
        ]
        current, known = await self._store.read(ns, [p.key for p in pending], unverified)
        newly = await self._verify_blobs(ns, pending, current, known | verified)
        for p in pending:  # content the caller stored and hashed itself gets its record too, if asked
            fresh = p.entry.content_hash in verified and p.entry.content_hash not in known and not p.entry.deleted
            if record_verified and fresh:
                newly.setdefault(p.entry.content_hash, p.entry.size)
        for chunk in self._chunks(pending, newly):
            seq = await self._commit_chunk(principal, ns, chunk, key, current, newly, results, dict(moves))
            last_seq = max(last_seq, seq)
        return CommitOutcome([results[i] for i in range(len(pending))], last_seq)

    def check(self, entries: Sequence[CommitEntry], commit_key: str | None) -> None:
        """Refuse (422) what ``commit`` would refuse before reading anything: counts, paths, claims."""
        self._validate(entries, commit_key)

    def _validate(self, entries: Sequence[CommitEntry], commit_key: str | None) -> list[_Pending]:
        if not 0 < len(entries) <= MAX_COMMIT_ENTRIES:
            message = f"entries must hold 1 to {MAX_COMMIT_ENTRIES} changes"
            raise ValidationFailed(f"The {message}.", (FieldError("$.entries", message),))
        if commit_key is not None and not 0 < len(commit_key) <= IDEMPOTENCY_KEY_MAX:
            message = f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} characters"
            raise ValidationFailed(f"The {message}.", (FieldError("Idempotency-Key", message),))
        pending: list[_Pending] = []
        seen: dict[str, int] = {}
        errors: list[FieldError] = []
        for index, entry in enumerate(entries):
            where = f"$.entries[{index}]"
            path = normalize_path(entry.path, f"{where}.path")
            problem = self._entry_problem(entry)
            if problem:
                errors.append(FieldError(f"{where}.{problem[0]}", problem[1]))
            key = path_key(path)
            if key in seen:
                errors.append(FieldError(f"{where}.path", f"the same path (ignoring case) as entries[{seen[key]}]"))
            seen[key] = index
            pending.append(_Pending(index, replace(entry, path=path), key))
        if errors:
            raise ValidationFailed(
                f"{len(errors)} invalid entries: {errors[0].path}: {errors[0].message}.", tuple(errors)
            )
        return pending

    def _entry_problem(self, entry: CommitEntry) -> tuple[str, str] | None:
        if entry.parent_rev is not None and entry.parent_rev < 1:
            return "parent_rev", "parent_rev is a positive revision or null for a new file"
        if entry.deleted:
            if entry.parent_rev is None:
                return "parent_rev", "a delete needs the parent_rev of the version it deletes"
            return None
        return claim_problem(entry.content_hash, entry.size, self.block_size)

    async def _verify_blobs(
        self, ns: str, pending: list[_Pending], current: dict[str, FileVersion], known: set[str]
    ) -> dict[str, int]:
        """Verify what is not yet known to be verified; return the newly verified hashes and sizes."""
        sizes: dict[str, int] = {}
        for p in pending:
            entry = p.entry
            if entry.deleted or entry.content_hash in known or entry.content_hash == EMPTY_HASH:
                continue
            cur = current.get(p.key)
            if cur is not None and cur.commit_key is not None and cur.content_hash == entry.content_hash:
                continue  # content of a version already committed: verified then
            sizes.setdefault(entry.content_hash, entry.size)

        async def check(content_hash: str, size: int) -> tuple[str, VerifyOutcome]:
            async with self._verify_slots:
                return content_hash, await self._blobs.verify(ns, content_hash, size, self.block_size)

        outcomes = dict(await asyncio.gather(*(check(h, s) for h, s in sizes.items())))
        errors = []
        for p in pending:
            outcome = outcomes.get(p.entry.content_hash)
            if outcome == "missing":
                errors.append(
                    FieldError(
                        f"$.entries[{p.index}].content_hash",
                        "no uploaded content has this hash; upload it first",
                    )
                )
            elif outcome == "mismatch":
                errors.append(
                    FieldError(
                        f"$.entries[{p.index}].content_hash",
                        "the uploaded content does not match this hash (it was discarded); upload it again",
                    )
                )
        if errors:
            raise ValidationFailed(
                f"{len(errors)} entries name content that is not (correctly) uploaded: {errors[0].message}.",
                tuple(errors),
            )
        return {h: sizes[h] for h, outcome in outcomes.items() if outcome == "ok"}

    @staticmethod
    def _chunks(pending: list[_Pending], newly: dict[str, int]) -> list[list[_Pending]]:
        """Group entries so each transaction stays within ``MAX_ACTIONS`` and the journal budget."""
        chunks: list[list[_Pending]] = []
        chunk: list[_Pending] = []
        actions = 2
        size = 0
        blobs: set[str] = set()
        for p in pending:
            new_blob = p.entry.content_hash in newly and p.entry.content_hash not in blobs
            cost = 1 + int(new_blob)
            weight = 400 + len(p.entry.path.encode())
            if chunk and (actions + cost > MAX_ACTIONS or size + weight > MAX_JOURNAL_BYTES):
                chunks.append(chunk)
                chunk, actions, size, blobs = [], 2, 0, set()
            chunk.append(p)
            actions += cost
            size += weight
            if new_blob:
                blobs.add(p.entry.content_hash)
        if chunk:
            chunks.append(chunk)
        return chunks

    async def _commit_chunk(
        self,
        principal: Principal,
        ns: str,
        chunk: list[_Pending],
        commit_key: str,
        current: dict[str, FileVersion],
        newly: dict[str, int],
        results: dict[int, CommitResult],
        moves: dict[int, int],
    ) -> int:
        for attempt in range(MAX_ATTEMPTS):
            writes: list[tuple[str, FileVersion | None, _Pending]] = []
            decisions = {p.index: self._decide(p, current.get(p.key), commit_key) for p in chunk}
            _join_moves(decisions, moves, {p.index: p for p in chunk})
            for p in chunk:
                decision = decisions[p.index]
                if decision is not None:
                    results[p.index] = decision
                else:
                    writes.append((p.key, current.get(p.key), p))
            if not writes:
                return 0
            try:
                # Commits to one namespace from this worker take turns; only other workers' commits can
                # still race us for the head, and those are retried below.
                async with self._namespace_lock(ns):
                    seq = await self._store.head_seq(ns) + 1
                    now = self._clock()
                    versions = self._versions(principal, writes, current, commit_key, seq, now, moves, chunk)
                    hashes = {v.content_hash for _, _, v in versions}
                    new_blobs = [BlobRecord(h, size, self.block_size) for h, size in newly.items() if h in hashes]
                    journal = JournalEntry(seq, now, principal.username, tuple(v for _, _, v in versions))
                    await self._store.write(ns, seq - 1, versions, new_blobs, journal)
            except StoreConflict as conflict:
                if conflict.keys:
                    fresh, _ = await self._store.read(ns, list(conflict.keys), [])
                    for key in conflict.keys:
                        if key in fresh:
                            current[key] = fresh[key]
                        else:
                            current.pop(key, None)
                await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # noqa: S311 - jitter
                continue
            for blob in new_blobs:
                newly.pop(blob.content_hash, None)
            for (key, _, version), (_, _, p) in zip(versions, writes, strict=True):
                current[key] = version
                results[p.index] = CommitResult(p.entry.path, "committed", version=version)
            return seq
        raise DependencyUnavailable("The namespace is too busy to commit right now; retry shortly.")

    @contextlib.asynccontextmanager
    async def _namespace_lock(self, ns: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(ns, asyncio.Lock())
        self._lock_users[ns] = self._lock_users.get(ns, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[ns] -= 1
            if self._lock_users[ns] == 0:
                del self._lock_users[ns]
                del self._locks[ns]

    def _decide(self, p: _Pending, cur: FileVersion | None, commit_key: str) -> CommitResult | None:
        entry = p.entry
        if cur is not None and cur.commit_key == commit_key and _same_change(cur, entry):
            return CommitResult(entry.path, "committed", version=cur)
        live = cur is not None and not cur.deleted
        if entry.parent_rev is None:
            if not live:
                return None
            assert cur is not None
            reason = (
                f"{cur.path!r} already exists"
                if cur.path == entry.path
                else f"collides with {cur.path!r} (names may differ only in case on macOS and Windows)"
            )
            return CommitResult(entry.path, "conflict", current=cur, reason=reason)
        if cur is None or cur.rev != entry.parent_rev:
            reason = "no such file" if cur is None else f"the current rev is {cur.rev}, not {entry.parent_rev}"
            return CommitResult(entry.path, "conflict", current=cur, reason=reason)
        if entry.deleted and cur.deleted:
            return CommitResult(entry.path, "conflict", current=cur, reason="already deleted")
        if cur.path != entry.path and not cur.deleted and not entry.deleted:
            return CommitResult(
                entry.path,
                "conflict",
                current=cur,
                reason=f"the file is named {cur.path!r}; rename it with a move",
            )
        return None

    def _versions(
        self,
        principal: Principal,
        writes: list[tuple[str, FileVersion | None, _Pending]],
        current: dict[str, FileVersion],
        commit_key: str,
        seq: int,
        now: float,
        moves: dict[int, int],
        chunk: list[_Pending],
    ) -> list[tuple[str, FileVersion | None, FileVersion]]:
        by_index = {p.index: p for p in chunk}
        out = []
        for key, cur, p in writes:
            entry = p.entry
            file_id = cur.file_id if cur is not None else uuid.uuid4().hex
            rev = (cur.rev if cur is not None else 0) + 1
            moved_from = moved_to = None
            if p.index in moves:  # this entry is the destination of a move: it keeps the source's id
                source = current.get(by_index[moves[p.index]].key)
                if source is not None:
                    file_id = source.file_id
                    rev = max(rev, source.rev + 1)
                    moved_from = source.path
            for dst, src in moves.items():
                if src == p.index:
                    moved_to = by_index[dst].entry.path
            out.append(
                (
                    key,
                    cur,
                    FileVersion(
                        path=entry.path,
                        file_id=file_id,
                        rev=rev,
                        content_hash="" if entry.deleted else entry.content_hash,
                        size=0 if entry.deleted else entry.size,
                        mtime=entry.mtime,
                        deleted=entry.deleted,
                        committed_by=principal.username,
                        committed_at=now,
                        seq=seq,
                        prev_seq=cur.seq if cur is not None else None,
                        block_size=self.block_size,
                        commit_key=commit_key,
                        moved_from=moved_from,
                        moved_to=moved_to,
                    ),
                )
            )
        return out

    # --- reading --------------------------------------------------------------------------------------

    async def current(self, principal: Principal, ns: str, path: str, *, include_deleted: bool = False) -> FileVersion:
        await self._namespaces.authorize(principal, ns, "viewer")
        clean = normalize_path(path, "path")
        found, _ = await self._store.read(ns, [path_key(clean)], [])
        version = found.get(path_key(clean))
        if version is None or (version.deleted and not include_deleted) or version.path != clean:
            raise NotFound(f"No file {clean!r}.")
        return version

    async def history(
        self, principal: Principal, ns: str, path: str, limit: int, before_seq: int | None
    ) -> tuple[list[FileVersion], int | None]:
        """Versions newest first, ``limit`` at a time; pass the returned cursor as ``before_seq``."""
        head = await self.current(principal, ns, path, include_deleted=True)
        versions: list[FileVersion] = []
        if before_seq is None:
            versions.append(head)
            seq = head.prev_seq
        else:
            seq = before_seq
        while seq is not None and len(versions) < limit:
            entry = await self._store.journal_entry(ns, seq)
            change = next((c for c in entry.changes if c.file_id == head.file_id), None) if entry else None
            if change is None:
                break
            versions.append(change)
            seq = change.prev_seq
        return versions, seq

    async def version(self, principal: Principal, ns: str, path: str, rev: int) -> FileVersion:
        """One version of a file by its rev, walking its history."""
        cursor: int | None = None
        while True:
            page, cursor = await self.history(principal, ns, path, 50, cursor)
            for v in page:
                if v.rev == rev:
                    return v
            if cursor is None or not page:
                raise NotFound(f"{path!r} has no rev {rev}.")

    async def restore(self, principal: Principal, ns: str, path: str, rev: int, commit_key: str | None) -> CommitResult:
        """Make an old version current again, as a new version (history keeps everything)."""
        old = await self.version(principal, ns, path, rev)
        if old.deleted:
            raise Conflict(f"rev {rev} of {path!r} is a deletion; restore a version with content.")
        head = await self.current(principal, ns, path, include_deleted=True)
        entry = CommitEntry(head.path, old.content_hash, old.size, old.mtime, head.rev)
        outcome = await self.commit(principal, ns, [entry], commit_key, verified=frozenset({old.content_hash}))
        return outcome.results[0]

    async def move(
        self, principal: Principal, ns: str, source: str, target: str, parent_rev: int, commit_key: str | None
    ) -> list[CommitResult]:
        """Rename: the source becomes a tombstone, the target a new version with the same file id, in one
        transaction."""
        src = await self.current(principal, ns, source)
        entries = [
            CommitEntry(src.path, "", 0, src.mtime, parent_rev, deleted=True),
            CommitEntry(target, src.content_hash, src.size, src.mtime, None),
        ]
        if path_key(normalize_path(target, "$.to")) == path_key(src.path):
            raise ValidationFailed("Source and target are the same path.", (FieldError("$.to", "same as the source"),))
        outcome = await self.commit(
            principal, ns, entries, commit_key, moves=[(1, 0)], verified=frozenset({src.content_hash})
        )
        return outcome.results

    async def list_folder(
        self, principal: Principal, ns: str, folder: str, recursive: bool, cursor: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """Live files under ``folder`` ('' for the root), in path-key order, at most ``limit`` a page; the
        cursor returned (if any) continues after the last file of this page."""
        await self._namespaces.authorize(principal, ns, "viewer")
        prefix = "" if folder == "" else path_key(normalize_path(folder, "folder")) + "/"
        out: list[FileVersion] = []
        start = _decode_cursor(cursor)
        while True:
            page, following = await self._store.list_files(ns, prefix, start, limit)
            for version in page:
                rest = path_key(version.path)[len(prefix) :]
                if version.deleted or (not recursive and "/" in rest):
                    continue
                out.append(version)
                if len(out) == limit:
                    return out, _encode_cursor(path_key(version.path))
            if following is None:
                return out, None
            start = following

    async def missing_blobs(self, principal: Principal, ns: str, hashes: Sequence[str]) -> list[str]:
        await self._namespaces.authorize(principal, ns, "viewer")
        _, known = await self._store.read(ns, [], list(hashes))
        return [h for h in dict.fromkeys(hashes) if h not in known and h != EMPTY_HASH]


def _join_moves(decisions: dict[int, CommitResult | None], moves: dict[int, int], chunk: dict[int, _Pending]) -> None:
    """A move is both halves or neither: if one side conflicts, so does the other."""
    for target, source in moves.items():
        sides = (target, source)
        failed = [i for i in sides if (d := decisions.get(i)) is not None and d.status == "conflict"]
        if failed:
            for i in sides:
                if i not in failed:
                    decisions[i] = CommitResult(
                        chunk[i].entry.path, "conflict", reason="the other half of the move conflicted"
                    )


def _same_change(cur: FileVersion, entry: CommitEntry) -> bool:
    if entry.deleted:
        return cur.deleted
    return not cur.deleted and cur.content_hash == entry.content_hash and cur.size == entry.size


def _encode_cursor(key: str) -> str:
    return orjson.dumps(key).decode()


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        value = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, str):
        raise ValidationFailed("The cursor is malformed.", (FieldError("cursor", "not a cursor from this API"),))
    return value
