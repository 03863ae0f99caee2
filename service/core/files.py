"""Files: verified commits of new versions, conflicts, history, restore, moves, delete, listing.

Layer: core. Every way a body gets in (direct to S3 with scoped credentials, presigned URLs, streaming
through the service) ends here, in ``commit``; moves (``move_many``) take the same road from step 2:

1. authorize (editor), validate every path (one rule set, ``service.paths``), refuse duplicates;
2. read the namespace head, then the current items of the batch and of their folders, the folders'
   markers and the verified-blob records (BatchGetItem of 100);
3. decide each entry: its ``parent_rev`` must be the current rev (or, for a new file, there must be no
   live file at that path, case-insensitively), else it is a conflict carrying the current version;
   an entry already committed under the same idempotency key is answered as committed (a retry); a file
   coming into being must not clash with a folder (see "Files and folders" below);
4. store what the caller holds and the namespace lacks (a batch of small files offers its bodies: those
   with no record of verified content and no version read in step 2 go into one pack), then verify each
   blob not yet verified; if any is missing, does not match its hash, or is not exactly the size the entry
   claims (verified content has one size: a blob record's, or S3's) the whole request is refused (422)
   and nothing is written. Each new version records which stored object holds its body (the one
   verified; a pack and the body's offset in it), so downloads serve exactly those bytes;
5. write in transactions of at most ``MAX_ACTIONS`` items: namespace head, journal entry, file items
   (each conditional on what step 2 read), new blob records, new folder markers, the record of a new pack
   (with the first versions that name it). A lost race re-reads and re-decides. The two halves of a move
   always share a transaction.

Files and folders. No file may be created at ``P`` while a live file exists under ``P/`` (``P`` is a
folder), nor under ``P/`` while ``P`` is a live file, comparing path keys (case folded). The commit reads
the items of every folder above a new file (is one of them a file?) and the folder marker of the new path
itself (has a file ever been committed under it?); only where a marker exists does a paged Query look for
a live file under it (markers are never removed, so a folder emptied since still has one). Markers of a new
file's folders are written in the same transaction when the read found them absent. The head is read
before those items, and each transaction is conditioned on the head: when another commit moved the head in
between, the items the check depends on are read again first, so the check is as good as if it had been
made inside the transaction. Within one request, deletions (and the sources of moves) free their paths for
the other entries, and of two new entries that clash the earlier one wins.

History. A file's versions form a line: each new version follows the current one at its path (a deletion
too), a move's target follows its source (keeping the file id), and a file created where a file was moved
away from starts a line of its own (a new file id; the tombstone ``moved_to`` ends the old line there). The
current item indexes its line, so reading any version costs a bounded number of requests whatever the
history: versions are grouped by rev into chunks of ``HISTORY_CHUNK`` (chunk ``n`` holds revs
``n * HISTORY_CHUNK + 1`` to ``(n + 1) * HISTORY_CHUNK``); the item names the journal entry of each older
version of the chunks not yet sealed (``History.recent``: rev and seq, a few hundred bytes), and the commit
that takes a line into a later chunk seals the chunks behind it: one more action in its transaction writes a
history chunk item with those versions' full records (the current one in hand, the others from their journal
entries, read before the transaction). So rev ``r`` is the item, then one read: its chunk item, or its
journal entry. A history page is the item, then one BatchGetItem of the journal entries and chunks it
spans. Both fetch the caller's membership in that second request (``read_with_membership``). The index
starts at ``History.base``: for a file committed before the service kept it, at the version it held then;
older versions are still found by walking ``prev_seq`` through the journal, one read each. A commit seals
only what fits its transactions: ``_take_chunk`` reserves an action for each seal it expects, and chunks past
``MAX_SEAL_BYTES`` (or a seal a race brought) wait for their file's next commit, which the index allows:
unsealed versions stay in ``recent``.

Listing. A non-recursive listing reads the folder's live files from the children index (the store keeps
one per folder; eventually consistent), never its subtree; a namespace with files from before the index
reads the subtree until ``folders backfill`` indexes it. The listing cursor says which way it was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import orjson

from service.content import EMPTY_HASH, claim_problem
from service.core.errors import (
    Conflict,
    DependencyUnavailable,
    FieldError,
    NotFound,
    QuotaExceeded,
    ValidationFailed,
)
from service.core.models import (
    BlobRecord,
    BodyRef,
    Charge,
    FileVersion,
    History,
    HistoryChunk,
    HistoryRead,
    JournalEntry,
    PackRecord,
    Principal,
    StoreConflict,
    Usage,
    Verification,
)
from service.core.namespaces import MemberLookup, NamespaceService
from service.fanout import bounded
from service.paths import folders_above, normalize_path, path_key
from service.retry import Backoff

#: DynamoDB's limit on one transaction; two are the head and the journal entry.
MAX_ACTIONS = 100
#: Budget for one journal entry (DynamoDB items are at most 400 KB).
MAX_JOURNAL_BYTES = 300_000
MAX_COMMIT_ENTRIES = 1000
#: Files (live and deleted) a restore by folder reads at most to find the folder's deleted ones.
MAX_RESTORE_SCAN = 100_000
#: Reads of deleted files' last versions in flight at once while restoring from the trash.
RESTORE_READS = 8
#: Namespaces whose payer a worker remembers (cleared when full: a payer never changes).
PAYERS_CACHED = 10_000
#: Moves in one request; each is two file actions of one transaction.
MAX_MOVES = 500
#: Distinct folders (and new paths) one request's file-folder check may read; each costs two keys of the
#: commit's read and, if new, a transaction action for its marker.
MAX_REQUEST_FOLDERS = 10_000
#: How a file/folder clash's reason starts (clients may recognise it).
CLASH = "file/folder clash"
_OTHER_HALF = "the other half of the move conflicted"
_MOVED_BEFORE = "this move was committed before, and this path has changed since"
MAX_ATTEMPTS = 20
#: Between a commit's attempts when another commit moved the namespace's head first: 5 ms doubling to 0.25 s.
_CONFLICT_RETRY = Backoff(base=0.005, cap=0.25)
IDEMPOTENCY_KEY_MAX = 128
#: The most keys one Query of a listing that reads the subtree asks for (DynamoDB stops at 1 MB anyway).
_SCAN_PAGE_MAX = 1000
#: Journal entries one read of a commit's sealing takes (each up to ``MAX_JOURNAL_BYTES``).
_SEAL_READ = 32
#: Bytes of history chunks one transaction may write: DynamoDB takes at most 4 MB a transaction, and its
#: other items (file items, the journal entry within ``MAX_JOURNAL_BYTES``, records, markers) stay under 1 MB.
MAX_SEAL_BYTES = 2_000_000
#: Versions a history chunk spans, by rev. Part of the stored layout (chunk numbers derive from it): a
#: deployment keeps it for good.
HISTORY_CHUNK = 32

log = logging.getLogger(__name__)

Status = Literal["committed", "conflict"]


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


@dataclass(frozen=True, slots=True)
class Move:
    """Rename ``source`` (at ``parent_rev``) to ``target``."""

    source: str
    target: str
    parent_rev: int


@dataclass(frozen=True, slots=True)
class MoveResult:
    """``committed`` with the target's new version, or ``conflict`` with the current version of the side
    that conflicted (if any) and why."""

    source: str
    target: str
    status: Status
    version: FileVersion | None = None
    current: FileVersion | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MovesOutcome:
    results: list[MoveResult]
    seq: int


class FileStore(Protocol):
    async def read(
        self, ns: str, path_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], dict[str, BlobRecord]]: ...

    async def read_state(
        self, ns: str, path_keys: Sequence[str], folder_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], set[str], dict[str, BlobRecord]]:
        """Current items, which folders have a marker, the records of the blobs that are verified."""
        ...

    async def forget_blob(self, ns: str, blob: BlobRecord) -> None: ...

    async def put_blob(self, ns: str, blob: BlobRecord) -> None: ...

    async def live_child(self, ns: str, folder_key: str, ignore: frozenset[str]) -> FileVersion | None: ...

    async def put_folders(self, ns: str, folder_keys: Sequence[str]) -> None: ...

    async def head_seq(self, ns: str) -> int: ...

    async def write(
        self,
        ns: str,
        expected_seq: int,
        changes: Sequence[tuple[str, FileVersion | None, FileVersion]],
        new_blobs: Sequence[BlobRecord],
        journal: JournalEntry,
        folders: Sequence[str] = (),
        chunks: Sequence[tuple[str, HistoryChunk]] = (),
        packs: Sequence[PackRecord] = (),
        charge: Charge | None = None,
    ) -> None: ...

    async def usage(self, username: str) -> Usage:
        """An account's usage and its own quota, read consistently."""
        ...

    async def journal_entry(self, ns: str, seq: int) -> JournalEntry | None: ...

    async def read_history(
        self,
        ns: str,
        key: str,
        seqs: Sequence[int],
        chunks: Sequence[int],
        member: str | None = None,
        files: Collection[str] | None = None,
    ) -> HistoryRead:
        """Journal entries (with the changes of ``files`` only), the history chunks of ``key`` that exist
        and (``member``) a membership: one BatchGetItem for up to 100 keys."""
        ...

    async def list_files(
        self, ns: str, prefix_key: str, start_after: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]: ...

    async def children_indexed(self, ns: str) -> bool: ...

    async def list_trash(self, ns: str, start_after: str | None, limit: int) -> tuple[list[FileVersion], str | None]:
        """Tombstones of deleted files, the latest deletion first; the cursor: the last one's place."""
        ...

    async def list_children(
        self, ns: str, folder_key: str, start_after: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]: ...


class BlobVerifier(Protocol):
    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> Verification: ...


@dataclass(frozen=True, slots=True)
class Stored:
    """What a caller stored for a commit: the object holding each content, and the packs it wrote."""

    bodies: dict[str, BodyRef]
    packs: tuple[PackRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Offered:
    """Content the caller holds (hashed by itself) and stores only if the namespace lacks it: ``store`` is
    called once, with the hashes to store, before anything is written."""

    hashes: frozenset[str]
    store: Callable[[list[str]], Awaitable[Stored]]


@dataclass(slots=True)
class _Pending:
    index: int
    entry: CommitEntry
    key: str
    #: The other half of a move: a source (a deletion) names its target, a target its source. A target's
    #: content is the source's current version, known only once it is read.
    partner: int | None = None

    @property
    def is_target(self) -> bool:
        return self.partner is not None and not self.entry.deleted


@dataclass(frozen=True, slots=True)
class _Content:
    """Verified content a commit names: its size, the object holding it, and whether it needs a record."""

    size: int
    body: BodyRef
    new: bool = False


@dataclass(slots=True)
class _View:
    """What a request knows of its namespace: items, folder markers, and the head each was read at."""

    files: dict[str, FileVersion]
    folders: set[str]
    #: ``("F" | "D", key)`` -> the head the item was read at; None: known to be out of date.
    read_at: dict[tuple[str, str], int | None]
    #: Heads this request wrote itself (its own changes are applied to ``files`` and ``folders``).
    own: list[int]
    #: The account that pays for the namespace's storage (its owner), once a write needed it.
    payer: str | None = None
    #: The payer's usage as last read (None: read it before the next charge).
    usage: Usage | None = None

    def fresh(self, item: tuple[str, str], head: int) -> bool:
        """Whether ``item`` is still what the namespace holds at ``head``: nobody else committed since."""
        at = self.read_at.get(item)
        return at is not None and head - at == sum(1 for seq in self.own if at < seq <= head)

    def learn(
        self,
        head: int,
        file_keys: Iterable[str],
        folder_keys: Iterable[str],
        found: tuple[dict[str, FileVersion], set[str]],
    ) -> None:
        """Take in what a read at ``head`` found for these keys."""
        files, folders = found
        for key in file_keys:
            if key in files:
                self.files[key] = files[key]
            else:
                self.files.pop(key, None)
            self.read_at[("F", key)] = head
        for key in folder_keys:
            self.read_at[("D", key)] = head
        self.folders |= folders


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
        default_quota: int = 0,
    ) -> None:
        self._store = store
        self.default_quota = default_quota
        self._payers: dict[str, str] = {}
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
        verified: frozenset[str] = frozenset(),
        record_verified: bool = True,
        bodies: Mapping[str, BodyRef] | None = None,
        offered: Offered | None = None,
    ) -> CommitOutcome:
        """Commit ``entries``; see the module docstring. ``verified`` names hashes the caller itself
        computed from the bytes it stored (the streaming upload), which need no second check; such content
        gets a blob record unless ``record_verified`` is false. ``bodies`` names the object holding each
        such content, or holding the content of an existing version that entries name again (restore:
        checked against its blob record, if any). ``offered`` is content the caller holds but has not stored
        (a batch of small files): it is stored (``Offered.store``) only where the namespace has no record of
        it and no version read for this commit holds it, and is recorded like ``verified`` content. A batch
        asks for no records by default: a record costs a transaction action per new file (halving the files
        one transaction holds)."""
        await self._namespaces.authorize(principal, ns, "editor")
        pending = self._validate(entries, commit_key)
        key = commit_key or uuid.uuid4().hex
        unverified = [
            p.entry.content_hash for p in pending if not p.entry.deleted and p.entry.content_hash not in verified
        ]
        view, known = await self._read(ns, pending, unverified)
        packs: tuple[PackRecord, ...] = ()
        if offered is not None:
            held = _committed_contents(view.files)
            wanted = sorted(h for h in offered.hashes if h not in known and h not in held)
            stored = await offered.store(wanted) if wanted else Stored({})
            verified = verified | frozenset(stored.bodies)
            bodies = {**(bodies or {}), **stored.bodies}
            packs = stored.packs
        contents = await self._verify_blobs(ns, pending, view.files, known, verified, bodies or {}, record_verified)
        needed = sum(p.entry.size for p in pending if _adds_bytes(p, view.files))
        if needed > 0:  # refused before anything is written when the whole commit cannot fit
            await self._read_usage(ns, view)
            self._check_quota(view, needed)
        results, seq = await self._write_all(principal, ns, pending, key, view, contents, packs)
        return CommitOutcome([results[i] for i in range(len(pending))], seq)

    async def _payer(self, ns: str) -> str:
        """The account that pays for a namespace's storage: its creator and first owner (immutable: cached)."""
        payer = self._payers.get(ns)
        if payer is None:
            namespace = await self._namespaces.get(ns)
            if len(self._payers) >= PAYERS_CACHED:
                self._payers.clear()
            payer = self._payers[ns] = namespace.created_by
        return payer

    async def _read_usage(self, ns: str, view: _View) -> Usage:
        view.payer = view.payer or await self._payer(ns)
        view.usage = await self._store.usage(view.payer)
        return view.usage

    def _check_quota(self, view: _View, needed: int) -> None:
        """Refuse (507) ``needed`` more bytes past the payer's quota, as ``view`` last read its usage."""
        assert view.usage is not None
        limit = view.usage.limit(self.default_quota)
        if limit and view.usage.used + needed > limit:
            raise QuotaExceeded(
                f"The commit needs {needed:,} bytes more; the namespace owner's account uses {view.usage.used:,} "
                f"of its {limit:,} bytes. Nothing was committed.",
                used=view.usage.used,
                quota=limit,
                needed=needed,
            )

    async def move_many(
        self, principal: Principal, ns: str, moves: Sequence[Move], commit_key: str | None
    ) -> MovesOutcome:
        """Rename files, each keeping its file id and history: per move, the source becomes a tombstone and
        the target a new version with the source's content, both in one transaction. Moves are independent:
        one that conflicts (the source is not at ``parent_rev``, the target exists, a file/folder clash)
        leaves the others alone."""
        await self._namespaces.authorize(principal, ns, "editor")
        pending = self._validate_moves(moves, commit_key)
        results, seq = await self._move(principal, ns, pending, commit_key)
        return MovesOutcome([_move_result(results[2 * i], results[2 * i + 1]) for i in range(len(moves))], seq)

    def check(self, entries: Sequence[CommitEntry], commit_key: str | None) -> None:
        """Refuse (422) what ``commit`` would refuse before reading anything: counts, paths, claims."""
        self._validate(entries, commit_key)

    def _validate(self, entries: Sequence[CommitEntry], commit_key: str | None) -> list[_Pending]:
        if not 0 < len(entries) <= MAX_COMMIT_ENTRIES:
            message = f"entries must hold 1 to {MAX_COMMIT_ENTRIES} changes"
            raise ValidationFailed(f"The {message}.", (FieldError("$.entries", message),))
        _check_key(commit_key)
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
        _check_folders(pending, "$.entries")
        return pending

    @staticmethod
    def _validate_moves(moves: Sequence[Move], commit_key: str | None) -> list[_Pending]:
        """Two entries per move: the source's deletion (index ``2i``) and the target (``2i + 1``). A path
        may be named once in a request (as a source or a target), ignoring case."""
        if not 0 < len(moves) <= MAX_MOVES:
            message = f"moves must hold 1 to {MAX_MOVES} moves"
            raise ValidationFailed(f"The {message}.", (FieldError("$.moves", message),))
        _check_key(commit_key)
        pending: list[_Pending] = []
        seen: dict[str, str] = {}
        errors: list[FieldError] = []
        for index, move in enumerate(moves):
            where = f"$.moves[{index}]"
            source = normalize_path(move.source, f"{where}.from")
            target = normalize_path(move.target, f"{where}.to")
            if move.parent_rev < 1:
                errors.append(FieldError(f"{where}.parent_rev", "parent_rev is the positive rev of the source"))
            for side, path in (("from", source), ("to", target)):
                key = path_key(path)
                if key in seen:
                    message = f"the same path (ignoring case) as {seen[key]}: a path may be in one move only"
                    errors.append(FieldError(f"{where}.{side}", message))
                seen.setdefault(key, f"moves[{index}].{side}")
            pending.append(
                _Pending(
                    2 * index, CommitEntry(source, "", 0, 0.0, move.parent_rev, True), path_key(source), 2 * index + 1
                )
            )
            pending.append(_Pending(2 * index + 1, CommitEntry(target, "", 0, 0.0, None), path_key(target), 2 * index))
        if errors:
            raise ValidationFailed(
                f"{len(errors)} invalid moves: {errors[0].path}: {errors[0].message}.", tuple(errors)
            )
        _check_folders(pending, "$.moves")
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
        self,
        ns: str,
        pending: list[_Pending],
        current: dict[str, FileVersion],
        known: dict[str, BlobRecord],
        verified: frozenset[str],
        bodies: Mapping[str, BodyRef],
        record_verified: bool,
    ) -> dict[str, _Content]:
        """The verified size and object of every content the entries name, verifying (in S3) what is not
        known yet: from a blob record, from the caller (content it stored itself, or an existing version's),
        or from the version already committed at the entry's path. Every entry must claim exactly the
        verified size."""
        contents: dict[str, _Content] = {}
        claims: dict[str, int] = {}
        committed = _committed_contents(current)
        for p in pending:
            entry = p.entry
            h = entry.content_hash
            if entry.deleted or h == EMPTY_HASH or h in contents:
                continue
            given = bodies.get(h, BodyRef())
            if h in known:
                record = known[h]
                contents[h] = _Content(record.size, given if given.pinned else record.body)
            elif h in verified:
                contents[h] = _Content(entry.size, given, new=record_verified)
            elif h in bodies:
                contents[h] = _Content(entry.size, given)  # an existing version's: verified when it was committed
            elif h in committed:
                # The content of a version already committed (read for this commit): verified then.
                contents[h] = _Content(committed[h].size, committed[h].body)
            else:
                claims.setdefault(h, entry.size)

        async def check(content_hash: str, size: int) -> tuple[str, Verification]:
            async with self._verify_slots:
                return content_hash, await self._blobs.verify(ns, content_hash, size, self.block_size)

        outcomes = dict(await asyncio.gather(*(check(h, s) for h, s in claims.items())))
        for h, verification in outcomes.items():
            if verification.outcome == "ok":
                contents[h] = _Content(claims[h], verification.body, new=True)
            elif verification.outcome == "wrong_size" and verification.size is not None:
                contents[h] = _Content(verification.size, BodyRef())
        errors = []
        for p in pending:
            h = p.entry.content_hash
            where = f"$.entries[{p.index}]"
            outcome = outcomes[h].outcome if h in outcomes else None
            if outcome == "missing":
                errors.append(FieldError(f"{where}.content_hash", "no uploaded content has this hash; upload it first"))
            elif outcome == "mismatch":
                errors.append(
                    FieldError(
                        f"{where}.content_hash",
                        "the uploaded content does not match this hash (it was discarded); upload it again",
                    )
                )
            elif not p.entry.deleted and h in contents and contents[h].size != p.entry.size:
                message = f"the content with this hash is {contents[h].size} bytes, not {p.entry.size}"
                errors.append(FieldError(f"{where}.size", message))
        if errors:
            raise ValidationFailed(
                f"{len(errors)} entries name content that is not (correctly) uploaded: {errors[0].message}.",
                tuple(errors),
            )
        return contents

    async def _read(
        self, ns: str, pending: list[_Pending], blob_hashes: list[str]
    ) -> tuple[_View, dict[str, BlobRecord]]:
        """The head first, then the items: whatever they show is at least as new as that head."""
        head = await self._store.head_seq(ns)
        file_keys, folder_keys = _keys_to_read(pending)
        files, folders, blobs = await self._store.read_state(ns, file_keys, folder_keys, blob_hashes)
        view = _View({}, set(), {}, [])
        view.learn(head, file_keys, folder_keys, (files, folders))
        return view, blobs

    async def _write_all(
        self,
        principal: Principal,
        ns: str,
        pending: list[_Pending],
        commit_key: str,
        view: _View,
        contents: dict[str, _Content],
        packs: Sequence[PackRecord] = (),
    ) -> tuple[dict[int, CommitResult], int]:
        """Commit ``pending`` in transactions, plain deletions first (so they free their paths for the
        rest), a move's halves always together; the results by index, and the namespace's seq after them.
        Each pack's record goes with the first versions that name it."""
        units: list[list[_Pending]] = []
        for p in pending:
            if p.partner is None:
                units.append([p])
            elif p.entry.deleted:
                units.append([p, pending[p.partner]])
        units.sort(key=lambda unit: not (len(unit) == 1 and unit[0].entry.deleted))
        queue = deque(units)
        by_index = {p.index: p for p in pending}
        results: dict[int, CommitResult] = {}
        unrecorded = {pack.pack_id: pack for pack in packs}
        seq = 0
        while queue:
            chunk, ahead = _take_chunk(queue, contents, view, by_index, unrecorded)
            written = await self._commit_chunk(
                principal, ns, chunk, commit_key, view, contents, results, ahead, unrecorded
            )
            seq = max(seq, written)
        # A retry writes nothing; it answers the position its versions were committed at.
        seq = max([seq] + [r.version.seq for r in results.values() if r.version is not None])
        return results, seq

    async def _commit_chunk(
        self,
        principal: Principal,
        ns: str,
        chunk: list[_Pending],
        commit_key: str,
        view: _View,
        contents: dict[str, _Content],
        results: dict[int, CommitResult],
        ahead: bool,
        unrecorded: dict[str, PackRecord],
    ) -> int:
        """Decide and write one transaction's entries. Commits to one namespace from this worker take turns;
        only other workers' commits can still race us for the head, and those are retried here."""
        records: dict[tuple[str, int, int], FileVersion | None] = {}  # read to seal history chunks (immutable)
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self._namespace_lock(ns):
                    head = await self._store.head_seq(ns)
                    children = await self._prepare(ns, chunk, view, head)
                    decisions = _decide_chunk(chunk, view.files, view.folders, children, commit_key)
                    writes = [p for p in chunk if decisions[p.index] is None]
                    for p in chunk:
                        if (decision := decisions[p.index]) is not None:
                            results[p.index] = decision
                    if not writes:
                        return 0
                    seq, now = head + 1, self._clock()
                    versions, lines = self._versions(principal, writes, view.files, commit_key, seq, now, contents)
                    hashes = {v.content_hash for _, _, v in versions}
                    new_blobs = [
                        BlobRecord.of(h, c.size, self.block_size, c.body)
                        for h, c in contents.items()
                        if c.new and h in hashes
                    ]
                    packs = [unrecorded[v.body_pack] for _, _, v in versions if v.body_pack in unrecorded]
                    packs = list({pack.pack_id: pack for pack in packs}.values())
                    folders = sorted(
                        {a for _, _, v in versions if not v.deleted for a in folders_above(path_key(v.path))}
                    )
                    folders = [f for f in folders if f not in view.folders]
                    if ahead and folders:
                        await self._store.put_folders(ns, folders)
                        view.folders.update(folders)
                        folders = []
                    charge = await self._charge(ns, view, _added_bytes(versions))
                    room = MAX_ACTIONS - 2 - len(versions) - len(new_blobs) - len(folders) - len(packs)
                    room -= 1 if charge is not None else 0
                    unsealed = versions
                    versions, seals = _with_histories(unsealed, lines, room)
                    chunks = await self._seal(ns, seals, records)
                    fit = _chunks_that_fit(chunks)
                    if fit < len(chunks):  # the rest wait for their files' next commits
                        versions, seals = _with_histories(unsealed, lines, fit)
                        chunks = chunks[:fit]
                    journal = JournalEntry(seq, now, principal.username, tuple(v for _, _, v in versions))
                    await self._store.write(ns, head, versions, new_blobs, journal, folders, chunks, packs, charge)
            except StoreConflict as conflict:
                for key in conflict.keys:
                    view.read_at[("F", key)] = None  # read again, after the head, on the next attempt
                if conflict.usage:
                    view.usage = None  # another commit charged the payer: read its usage again
                await _CONFLICT_RETRY.sleep(attempt)
                continue
            view.own.append(seq)
            if charge is not None and view.usage is not None:
                view.usage = replace(view.usage, used=view.usage.used + charge.delta)
            view.folders.update(folders)
            for blob in new_blobs:
                contents[blob.content_hash] = replace(contents[blob.content_hash], new=False)
            for pack in packs:
                del unrecorded[pack.pack_id]
            for (key, _, version), p in zip(versions, writes, strict=True):
                view.files[key] = version
                results[p.index] = CommitResult(p.entry.path, "committed", version=version)
            return seq
        raise DependencyUnavailable("The namespace is too busy to commit right now; retry shortly.")

    async def _charge(self, ns: str, view: _View, delta: int) -> Charge | None:
        """What one transaction adding ``delta`` bytes charges its payer, on conditions that keep every
        commit together within the quota (refused, 507, if this one cannot fit); None: it adds nothing."""
        if delta <= 0:
            return None
        usage = view.usage or await self._read_usage(ns, view)
        self._check_quota(view, delta)
        assert view.payer is not None
        limit = usage.limit(self.default_quota)
        return Charge(view.payer, delta, limit - delta if limit else None, usage.quota)

    async def _prepare(self, ns: str, chunk: list[_Pending], view: _View, head: int) -> dict[str, FileVersion | None]:
        """Bring what the chunk's decisions depend on up to ``head``; for each new file whose path has a
        folder marker, the first live file under it (outside the chunk's own deletions), or None.

        Items an entry is written on condition of need reading again only when a condition failed. A file
        coming into being also depends on items no condition covers (its folders, its own marker, the other
        entries' items): those are read again whenever another commit moved the head since they were read."""
        while True:
            creating = [p for p in chunk if _creates(p, view.files)]
            if creating:
                file_keys, folder_keys = _keys_to_read(chunk)
                stale_files = [k for k in file_keys if not view.fresh(("F", k), head)]
                stale_folders = [k for k in folder_keys if not view.fresh(("D", k), head)]
            else:
                stale_files = [p.key for p in chunk if view.read_at.get(("F", p.key)) is None]
                stale_folders = []
            if not stale_files and not stale_folders:
                break
            files, folders, _ = await self._store.read_state(ns, stale_files, stale_folders, [])
            view.learn(head, stale_files, stale_folders, (files, folders))
        children: dict[str, FileVersion | None] = {}
        for p in creating:
            if p.key in view.folders:
                below = p.key + "/"
                ignore = frozenset(q.key for q in chunk if q.entry.deleted and q.key.startswith(below))
                children[p.key] = await self._store.live_child(ns, p.key, ignore)
        return children

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

    def _versions(
        self,
        principal: Principal,
        writes: list[_Pending],
        files: dict[str, FileVersion],
        commit_key: str,
        seq: int,
        now: float,
        contents: dict[str, _Content],
    ) -> tuple[list[tuple[str, FileVersion | None, FileVersion]], list[_Line]]:
        """Each entry's new version (without its history), and the line it continues."""
        by_index = {p.index: p for p in writes}
        out = []
        lines = []
        for p in writes:
            entry, cur = p.entry, files.get(p.key)
            held = None if entry.deleted else contents.get(entry.content_hash)
            body = held.body if held is not None else BodyRef()
            line = _Line(_follows(cur), dead_end=p.partner is not None and entry.deleted)
            version = FileVersion(
                path=entry.path,
                file_id=line.after.file_id if line.after is not None else uuid.uuid4().hex,
                rev=(cur.rev if cur is not None else 0) + 1,
                content_hash="" if entry.deleted else entry.content_hash,
                size=0 if entry.deleted else entry.size,
                mtime=entry.mtime,
                deleted=entry.deleted,
                committed_by=principal.username,
                committed_at=now,
                seq=seq,
                prev_seq=line.after.seq if line.after is not None else None,
                block_size=self.block_size,
                commit_key=commit_key,
                body_version=body.version_id,
                body_etag=body.etag,
                body_pack=body.pack,
                body_offset=body.offset,
            )
            if p.partner is not None and entry.deleted:
                version = replace(version, moved_to=by_index[p.partner].entry.path)
            elif p.partner is not None:
                # The target of a move: the source's content, file id and history (its previous version).
                source = files[by_index[p.partner].key]
                version = replace(
                    version,
                    file_id=source.file_id,
                    rev=max(version.rev, source.rev + 1),
                    content_hash=source.content_hash,
                    size=source.size,
                    mtime=source.mtime,
                    block_size=source.block_size,
                    prev_seq=source.seq,
                    moved_from=source.path,
                    body_version=source.body_version,
                    body_etag=source.body_etag,
                    body_pack=source.body_pack,
                    body_offset=source.body_offset,
                )
                line = _Line(source)
            out.append((p.key, cur, version))
            lines.append(line)
        return out, lines

    async def _seal(
        self, ns: str, seals: list[_Seal], records: dict[tuple[str, int, int], FileVersion | None]
    ) -> list[tuple[str, HistoryChunk]]:
        """The history chunks ``seals`` describe, with their versions' records: the version in hand, the
        others from their journal entries (read a few at a time; what was found is kept in ``records`` by
        file id, rev and seq, for another attempt of the same transaction)."""
        wanted = [
            (seal.held.file_id, rev, seq)
            for seal in seals
            for rev, seq in seal.pairs
            if seq != seal.held.seq and (seal.held.file_id, rev, seq) not in records
        ]
        seqs = list(dict.fromkeys(seq for _, _, seq in wanted))
        files = {file_id for file_id, _, _ in wanted}
        for start in range(0, len(seqs), _SEAL_READ):  # each entry may be up to MAX_JOURNAL_BYTES
            found = await self._store.read_history(ns, "", seqs[start : start + _SEAL_READ], (), None, files)
            for file_id, rev, seq in wanted:
                if seq in found.entries:
                    records[(file_id, rev, seq)] = _in_line(found.entries[seq], file_id, rev)
        chunks = []
        for seal in seals:
            versions = []
            for rev, seq in seal.pairs:
                record = (
                    replace(seal.held, history=None)
                    if seq == seal.held.seq
                    else records.get((seal.held.file_id, rev, seq))
                )
                if record is None:
                    log.error("history of %s: no record of rev %s in journal entry %s of %s", seal.key, rev, seq, ns)
                else:
                    versions.append(record)
            chunks.append((seal.key, HistoryChunk(seal.number, tuple(versions), seal.previous)))
        return chunks

    # --- reading --------------------------------------------------------------------------------------

    async def current(self, principal: Principal, ns: str, path: str, *, include_deleted: bool = False) -> FileVersion:
        """The file's current version, read before the membership check (``read_as_member``); its history
        is older still, so whatever a download or a history page shows predates any removal."""

        async def read() -> FileVersion:
            version = await self._head(ns, path)
            if version.deleted and not include_deleted:
                raise NotFound(f"No file {version.path!r}.")
            return version

        return await self._namespaces.read_as_member(principal, ns, "viewer", read)

    async def _head(self, ns: str, path: str) -> FileVersion:
        """The current version (a tombstone too) of exactly ``path``."""
        clean = normalize_path(path, "path")
        found, _ = await self._store.read(ns, [path_key(clean)], [])
        version = found.get(path_key(clean))
        if version is None or version.path != clean:
            raise NotFound(f"No file {clean!r}.")
        return version

    async def history(
        self, principal: Principal, ns: str, path: str, limit: int, before: int | None
    ) -> tuple[list[FileVersion], int | None]:
        """Versions newest first, ``limit`` at a time, from rev ``before`` down (None: the current one);
        the cursor returned is the rev of the next older version (None at the end)."""

        async def read() -> tuple[tuple[list[FileVersion], int | None], MemberLookup | None]:
            head = await self._head(ns, path)
            versions = [head] if before is None or before >= head.rev else []
            below = before + 1 if before is not None and not versions else head.rev
            older, lookup = await self._older(ns, head, below, limit + 1 - len(versions), principal.username)
            versions += older
            cursor = versions[limit].rev if len(versions) > limit else None
            return (versions[:limit], cursor), lookup

        return await self._namespaces.read_with_membership(principal, ns, "viewer", read)

    async def version(self, principal: Principal, ns: str, path: str, rev: int) -> FileVersion:
        """One version of a file by its rev: the file's item, then the one record that holds that rev."""
        _, version = await self._version(principal, ns, path, rev)
        return version

    async def _version(self, principal: Principal, ns: str, path: str, rev: int) -> tuple[FileVersion, FileVersion]:
        """The current version of ``path`` and its version ``rev``."""

        async def read() -> tuple[tuple[FileVersion, FileVersion], MemberLookup | None]:
            head = await self._head(ns, path)
            if rev == head.rev:
                return (head, head), None
            version, lookup = await self._at(ns, head, rev, principal.username) if rev < head.rev else (None, None)
            if version is None:
                raise NotFound(f"{path!r} has no rev {rev}.")
            return (head, version), lookup

        return await self._namespaces.read_with_membership(principal, ns, "viewer", read)

    async def _at(
        self, ns: str, head: FileVersion, rev: int, member: str | None
    ) -> tuple[FileVersion | None, MemberLookup | None]:
        """The version at ``rev`` (below ``head``'s) of ``head``'s line, if any; and ``member``'s membership
        if it was read along. Indexed: one read, of the journal entry or the history chunk holding it."""
        index = head.history
        if index is not None and rev >= index.base:
            seqs = [seq for r, seq in index.recent if r == rev]
            sealed = index.sealed is not None and history_chunk(rev) <= index.sealed
            if not seqs and not sealed:
                return None, None
            chunks = [history_chunk(rev)] if sealed else []
            found = await self._store.read_history(ns, index.key, seqs, chunks, member, {head.file_id})
            records = [v for seq in seqs if (v := _in_line(found.entries.get(seq), head.file_id, rev)) is not None]
            records += [v for chunk in found.chunks.values() for v in chunk.versions if v.rev == rev]
            return (records[0] if records else None), MemberLookup(found.membership)
        start: FileVersion | None = head
        lookup = None
        if index is not None and head.rev != index.base:
            start, lookup = await self._at(ns, head, index.base, member)
        walked = await self._walk(ns, start, rev + 1, 1) if start is not None else []
        return (walked[0] if walked and walked[0].rev == rev else None), lookup

    async def _older(
        self, ns: str, head: FileVersion, below: int, count: int, member: str
    ) -> tuple[list[FileVersion], MemberLookup | None]:
        """Up to ``count`` versions of ``head``'s line with revs below ``below``, newest first; and the
        caller's membership, read along with the first records (see the module docstring)."""
        index = head.history
        if index is None:
            return await self._walk(ns, head, below, count), None
        recent = [(rev, seq) for rev, seq in reversed(index.recent) if rev < below][:count]
        number = None
        if len(recent) < count and index.sealed is not None and below - 1 >= index.base:
            number = min(index.sealed, history_chunk(below - 1))
        out: list[FileVersion] = []
        chunks: dict[int, HistoryChunk] = {}
        asked: set[int] = set()
        lookup = None
        if recent or number is not None:
            span = _chunk_span(number, count - len(recent), index.base)
            seqs = [seq for _, seq in recent]
            found = await self._store.read_history(ns, index.key, seqs, span, member, {head.file_id})
            lookup = MemberLookup(found.membership)
            out = [v for rev, seq in recent if (v := _in_line(found.entries.get(seq), head.file_id, rev)) is not None]
            chunks, asked = dict(found.chunks), set(span)
        restarted = False
        while number is not None and len(out) < count:
            if number not in asked:  # the chunk before is further down than the span read (revs jumped)
                span = _chunk_span(number, count - len(out), index.base)
                chunks.update((await self._store.read_history(ns, index.key, [], span)).chunks)
                asked.update(span)
            if number not in chunks:
                if not restarted and number != index.sealed:
                    # ``below`` fell where the line has no chunk (a move onto a tombstone jumps revs): go
                    # down the chain from its newest chunk instead.
                    number, restarted = index.sealed, True
                    continue
                log.error("history %s of %s: chunk %s is missing", index.key, ns, number)
                return out, lookup
            chunk = chunks[number]
            out += [v for v in reversed(chunk.versions) if v.rev < below][: count - len(out)]
            number = chunk.previous
        if len(out) < count:  # below the index: versions from before it, walking from its oldest
            oldest = head if head.rev == index.base else next((v for v in out if v.rev == index.base), None)
            if oldest is None:
                oldest, more = await self._at(ns, head, index.base, member if lookup is None else None)
                lookup = lookup or more
            if oldest is not None:
                out += await self._walk(ns, oldest, below, count - len(out))
        return out, lookup

    async def _walk(self, ns: str, start: FileVersion, below: int, count: int) -> list[FileVersion]:
        """Up to ``count`` versions before ``start`` in its line with revs below ``below``, newest first,
        walking ``prev_seq`` through the journal: one read a version (history from before the index)."""
        out: list[FileVersion] = []
        last, seq = start, start.prev_seq
        while seq is not None and len(out) < count:
            entry = await self._store.journal_entry(ns, seq)
            change = _predecessor(entry, start.file_id, last) if entry else None
            if change is None:
                break
            if change.rev < below:
                out.append(change)
            last, seq = change, change.prev_seq
        return out

    async def restore(self, principal: Principal, ns: str, path: str, rev: int, commit_key: str | None) -> CommitResult:
        """Make an old version current again, as a new version (history keeps everything)."""
        head, old = await self._version(principal, ns, path, rev)
        if old.deleted:
            raise Conflict(f"rev {rev} of {path!r} is a deletion; restore a version with content.")
        entry = CommitEntry(head.path, old.content_hash, old.size, old.mtime, head.rev)
        outcome = await self.commit(principal, ns, [entry], commit_key, bodies={old.content_hash: old.body})
        return outcome.results[0]

    async def move(
        self, principal: Principal, ns: str, source: str, target: str, parent_rev: int, commit_key: str | None
    ) -> list[CommitResult]:
        """Rename one file, as ``move_many`` does; 404 if the source is no live file as of ``parent_rev`` (a
        deletion after it is a conflict: the move lost a race, as a commit would). The answer: the source's
        tombstone, then the target's new version (or a conflict for both)."""
        src = await self.current(principal, ns, source, include_deleted=True)
        if src.deleted and src.rev <= parent_rev:
            raise NotFound(f"No file {src.path!r}.")
        if path_key(normalize_path(target, "$.to")) == path_key(src.path):
            raise ValidationFailed("Source and target are the same path.", (FieldError("$.to", "same as the source"),))
        await self._namespaces.authorize(principal, ns, "editor")
        pending = self._validate_moves([Move(src.path, target, parent_rev)], commit_key)
        results, _ = await self._move(principal, ns, pending, commit_key)
        return [results[0], results[1]]

    async def _move(
        self, principal: Principal, ns: str, pending: list[_Pending], commit_key: str | None
    ) -> tuple[dict[int, CommitResult], int]:
        view, _ = await self._read(ns, pending, [])
        await self._check_moved_sizes(ns, pending, view.files)
        return await self._write_all(principal, ns, pending, commit_key or uuid.uuid4().hex, view, {})

    async def _check_moved_sizes(self, ns: str, pending: list[_Pending], files: dict[str, FileVersion]) -> None:
        """A move carries its source's content and size: refuse (422) a source whose size is not its
        content's verified size. A version that names the object it was verified in was committed since
        sizes are checked exactly; only older ones (naming none) are checked, with one read of the records."""
        sources = [
            (p, files[p.key])
            for p in pending
            if p.partner is not None
            and p.entry.deleted
            and p.key in files
            and not files[p.key].deleted
            and not files[p.key].body.pinned
        ]
        hashes = [f.content_hash for _, f in sources if f.content_hash != EMPTY_HASH]
        if not hashes:
            return
        _, known = await self._store.read(ns, [], hashes)
        errors = [
            FieldError(
                f"$.moves[{p.index // 2}].from",
                f"its content is {known[f.content_hash].size} bytes, but the version says {f.size}",
            )
            for p, f in sources
            if f.content_hash in known and known[f.content_hash].size != f.size
        ]
        if errors:
            raise ValidationFailed(
                f"{len(errors)} moves name a file whose size is wrong: {errors[0].message}.", tuple(errors)
            )

    async def trash(
        self, principal: Principal, ns: str, cursor: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """The namespace's deleted files (their tombstones: who deleted each, when), the latest deletion first,
        ``limit`` a page. A file committed again at its path, or moved away, is not in it."""
        start = _trash_cursor(cursor)
        return await self._namespaces.read_as_member(
            principal, ns, "viewer", lambda: self._store.list_trash(ns, start, limit)
        )

    async def restore_deleted(
        self,
        principal: Principal,
        ns: str,
        paths: Sequence[str],
        folder: str | None,
        commit_key: str | None,
    ) -> CommitOutcome:
        """Bring deleted files back from the trash, each as a new version holding its last content: the
        files named, or every deleted file under ``folder`` ("" for the whole namespace; at most
        ``MAX_COMMIT_ENTRIES``). One commit: the same answers, conflicts and quota as a commit's."""
        await self._namespaces.authorize(principal, ns, "editor")
        if folder is not None:
            tombstones = await self._deleted_under(ns, folder)
            if not tombstones:
                raise NotFound(f"Nothing under {folder or 'the root'!r} is in the trash.")
        else:
            clean = [normalize_path(path, f"$.paths[{i}]") for i, path in enumerate(paths)]
            found, _ = await self._store.read(ns, list(dict.fromkeys(path_key(c) for c in clean)), [])
            tombstones = []
            for index, path in enumerate(clean):
                head = found.get(path_key(path))
                if head is None or head.path != path:
                    raise NotFound(f"No file {path!r}.")
                tombstones.append(head)
                if not head.deleted or head.moved_to is not None:
                    why = "is not deleted" if not head.deleted else f"was moved to {head.moved_to!r}"
                    raise ValidationFailed(
                        f"{head.path!r} {why}: nothing to restore.", (FieldError(f"$.paths[{index}]", why),)
                    )

        async def last_content(head: FileVersion) -> FileVersion:
            version, _ = await self._at(ns, head, head.rev - 1, None)
            if version is None or version.deleted:
                raise Conflict(f"The version of {head.path!r} before its deletion cannot be read.")
            return version

        olds = await bounded(tombstones, last_content, RESTORE_READS)
        entries = [
            CommitEntry(h.path, o.content_hash, o.size, o.mtime, h.rev) for h, o in zip(tombstones, olds, strict=True)
        ]
        bodies = {o.content_hash: o.body for o in olds}
        return await self.commit(principal, ns, entries, commit_key, bodies=bodies)

    async def _deleted_under(self, ns: str, folder: str) -> list[FileVersion]:
        """The deleted files (not moved away) of ``folder``'s subtree, read from the file items."""
        prefix = "" if folder == "" else path_key(normalize_path(folder, "$.folder")) + "/"
        found: list[FileVersion] = []
        start: str | None = None
        read = 0
        while True:
            if read >= MAX_RESTORE_SCAN:
                message = (
                    f"more than {MAX_RESTORE_SCAN:,} files are under it: restore its subfolders, or name the files"
                )
                raise ValidationFailed(f"The folder has {message}.", (FieldError("$.folder", message),))
            page, start = await self._store.list_files(ns, prefix, start, _SCAN_PAGE_MAX)
            read += len(page)
            found += [v for v in page if v.deleted and v.moved_to is None]
            if len(found) > MAX_COMMIT_ENTRIES:
                message = (
                    f"more than {MAX_COMMIT_ENTRIES} deleted files are under it: restore its subfolders one by one"
                )
                raise ValidationFailed(f"The folder has {message}.", (FieldError("$.folder", message),))
            if start is None:
                return found

    async def list_folder(
        self, principal: Principal, ns: str, folder: str, recursive: bool, cursor: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """Live files under ``folder`` ('' for the root), in path-key order, at most ``limit`` a page; the
        cursor returned (if any) continues after the last file of this page."""
        return await self._namespaces.read_as_member(
            principal, ns, "viewer", lambda: self._list_folder(ns, folder, recursive, cursor, limit)
        )

    async def _list_folder(
        self, ns: str, folder: str, recursive: bool, cursor: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        folder_key = "" if folder == "" else path_key(normalize_path(folder, "folder"))
        start, indexed = _decode_cursor(cursor)
        if not recursive and (indexed if indexed is not None else await self._store.children_indexed(ns)):
            return await self._list_children(ns, folder_key, start, limit)
        prefix = folder_key + "/" if folder_key else ""
        out: list[FileVersion] = []
        size = limit
        while True:
            page, following = await self._store.list_files(ns, prefix, start, size)
            # Tombstones (and, read this way, nested files) are skipped: each page reads twice as many keys
            # as the last, so requests grow with the log of what is skipped, not with its number.
            size = min(2 * size, _SCAN_PAGE_MAX)
            for version in page:
                rest = path_key(version.path)[len(prefix) :]
                if version.deleted or (not recursive and "/" in rest):
                    continue
                out.append(version)
                if len(out) == limit:
                    return out, _encode_cursor(path_key(version.path), indexed=False if not recursive else None)
            if following is None:
                return out, None
            start = following

    async def _list_children(
        self, ns: str, folder_key: str, start: str | None, limit: int
    ) -> tuple[list[FileVersion], str | None]:
        """A page of the folder's live files from the children index: its children, never its subtree."""
        out: list[FileVersion] = []
        while True:
            page, following = await self._store.list_children(ns, folder_key, start, limit - len(out))
            out += page
            if len(out) >= limit:
                return out[:limit], _encode_cursor(path_key(out[limit - 1].path), indexed=True)
            if following is None:
                return out, None
            start = following

    async def missing_blobs(self, principal: Principal, ns: str, hashes: Sequence[str]) -> list[str]:
        async def read() -> list[str]:
            _, known = await self._store.read(ns, [], list(hashes))
            return [h for h in dict.fromkeys(hashes) if h not in known and h != EMPTY_HASH]

        return await self._namespaces.read_as_member(principal, ns, "viewer", read)

    # --- the verified-content records (for the transfers, which authorized the caller) ----------------

    async def blob_record(self, ns: str, content_hash: str) -> BlobRecord | None:
        _, known = await self._store.read(ns, [], [content_hash])
        return known.get(content_hash)

    async def record_blob(self, ns: str, content_hash: str, size: int, body: BodyRef) -> None:
        """The content was verified (again) in the object ``body``: the record names that object now."""
        await self._store.put_blob(ns, BlobRecord.of(content_hash, size, self.block_size, body))

    async def forget_blob(self, ns: str, content_hash: str, broken: BodyRef | None) -> None:
        """The content's key no longer holds it: forget the record (so ``blobs:check`` lists the content as
        missing and the next upload repairs it), unless it names another object than ``broken`` (None:
        whatever it names), which a repair may have recorded meanwhile."""
        record = await self.blob_record(ns, content_hash)
        if record is not None and (broken is None or not record.body.pinned or record.body == broken):
            await self._store.forget_blob(ns, record)


def _check_key(commit_key: str | None) -> None:
    if commit_key is not None and not 0 < len(commit_key) <= IDEMPOTENCY_KEY_MAX:
        message = f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} characters"
        raise ValidationFailed(f"The {message}.", (FieldError("Idempotency-Key", message),))


def _committed_contents(files: Mapping[str, FileVersion]) -> dict[str, FileVersion]:
    """The content of each version read that was committed with verification (by content hash)."""
    return {v.content_hash: v for v in files.values() if v.commit_key is not None and not v.deleted}


def _creates(p: _Pending, files: dict[str, FileVersion]) -> bool:
    """Whether ``p`` would bring a file into being (no live file at its path now)."""
    cur = files.get(p.key)
    return not p.entry.deleted and (cur is None or cur.deleted)


def _keys_to_read(pending: Iterable[_Pending]) -> tuple[list[str], list[str]]:
    """The file items and the folder markers the decisions on ``pending`` depend on: every entry's item;
    for an entry that may bring a file into being, its folders' items and markers and its own marker."""
    file_keys: dict[str, None] = {}
    folder_keys: dict[str, None] = {}
    for p in pending:
        file_keys[p.key] = None
        if not p.entry.deleted:
            for folder in folders_above(p.key):
                file_keys[folder] = folder_keys[folder] = None
            folder_keys[p.key] = None
    return list(file_keys), list(folder_keys)


def _check_folders(pending: list[_Pending], field: str) -> None:
    _, folder_keys = _keys_to_read(pending)
    if len(folder_keys) > MAX_REQUEST_FOLDERS:
        message = f"the new paths and the folders above them number more than {MAX_REQUEST_FOLDERS}"
        raise ValidationFailed(
            f"Too many folders in one request: {message}; send fewer at once.", (FieldError(field, message),)
        )


def _take_chunk(
    queue: deque[list[_Pending]],
    contents: dict[str, _Content],
    view: _View,
    by_index: dict[int, _Pending],
    unrecorded: Mapping[str, PackRecord],
) -> tuple[list[_Pending], bool]:
    """The next units of ``queue`` that fit one transaction (``MAX_ACTIONS``, the journal budget), counting
    the blob records, folder markers, history chunks (as far as ``view`` tells) and pack records they will
    write; and whether the markers must be written ahead (one unit whose path is so deep that its markers
    alone do not fit)."""
    chunk: list[_Pending] = []
    actions, size, charged = 2, 0, False
    blobs: set[str] = set()
    markers: set[str] = set()
    packs: set[str] = set()
    while queue:
        unit = queue[0]
        live = [p for p in unit if not p.entry.deleted]
        held = [c for p in live if (c := contents.get(p.entry.content_hash)) is not None]
        unit_blobs = {h for p in live if (c := contents.get(h := p.entry.content_hash)) is not None and c.new} - blobs
        unit_markers = {a for p in live for a in folders_above(p.key)} - view.folders - markers
        seals = sum(_seals_expected(p, view.files, by_index) for p in unit)
        # A move's target names its source's pack, already recorded: only new content can name a new pack.
        unit_packs = {pack for c in held if (pack := c.body.pack) is not None and pack in unrecorded} - packs
        charge = not charged and any(p.partner is None and _adds_bytes(p, view.files) for p in live)
        cost = len(unit) + len(unit_blobs) + len(unit_markers) + seals + len(unit_packs) + int(charge)
        weight = sum(
            400
            + len(p.entry.path.encode())
            + (len(by_index[p.partner].entry.path.encode()) if p.partner is not None else 0)
            for p in unit
        )
        if chunk and (actions + cost > MAX_ACTIONS or size + weight > MAX_JOURNAL_BYTES):
            break
        queue.popleft()
        chunk += unit
        actions, size = actions + cost, size + weight
        blobs |= unit_blobs
        markers |= unit_markers
        packs |= unit_packs
        charged = charged or charge
    return chunk, actions > MAX_ACTIONS


def _adds_bytes(p: _Pending, files: Mapping[str, FileVersion]) -> bool:
    """Whether an entry may add to its payer's usage: live content of some size that its path does not
    hold already (an upper bound: a move's target carries its source's bytes and adds nothing)."""
    if p.entry.deleted or p.entry.size <= 0:
        return False
    current = files.get(p.key)
    return current is None or current.deleted or current.content_hash != p.entry.content_hash


def _added_bytes(versions: Sequence[tuple[str, FileVersion | None, FileVersion]]) -> int:
    """The bytes one transaction's new versions add to the retained ones: each live version's size, but for
    content its own file already held in a version this transaction replaces (a move, the same content
    again)."""
    retired = {(o.file_id, o.content_hash) for _, o, _ in versions if o is not None and not o.deleted}
    return sum(v.size for _, _, v in versions if not v.deleted and (v.file_id, v.content_hash) not in retired)


def history_chunk(rev: int) -> int:
    """The history chunk holding rev ``rev``."""
    return (rev - 1) // HISTORY_CHUNK


@dataclass(frozen=True, slots=True)
class _Line:
    """The version a new version follows in its line (None: it starts one), and whether the new version
    ends its line (a move's source: the target carries the line on)."""

    after: FileVersion | None
    dead_end: bool = False


@dataclass(frozen=True, slots=True)
class _Seal:
    """A history chunk to write: its versions' ``(rev, seq)``, one of them ``held`` (the version a commit
    replaces, whose record it has)."""

    key: str
    number: int
    previous: int | None
    pairs: tuple[tuple[int, int], ...]
    held: FileVersion


def _follows(cur: FileVersion | None) -> FileVersion | None:
    """The version a new version at a path holding ``cur`` follows: ``cur``, unless there is none or it is
    the tombstone a move left (the file lives on at the move's target: a new file here is another file)."""
    if cur is None or (cur.deleted and cur.moved_to is not None):
        return None
    return cur


def _closing(after: FileVersion, rev: int) -> list[int]:
    """The chunks of ``after``'s line a version at ``rev`` following it closes (oldest first)."""
    history = after.history
    revs = [r for r, _ in history.recent] if history is not None else []
    return sorted({history_chunk(r) for r in [*revs, after.rev] if history_chunk(r) < history_chunk(rev)})


def _seals_expected(p: _Pending, files: dict[str, FileVersion], by_index: dict[int, _Pending]) -> int:
    """How many history chunks writing ``p`` seals, as far as ``files`` tells (a race may change it)."""
    if p.entry.deleted and p.partner is not None:
        return 0
    cur = files.get(p.key)
    rev = (cur.rev if cur is not None else 0) + 1
    after = _follows(cur)
    if p.is_target:
        assert p.partner is not None
        after = files.get(by_index[p.partner].key)
        rev = max(rev, after.rev + 1) if after is not None else rev
    return len(_closing(after, rev)) if after is not None else 0


def _next_history(line: _Line, version: FileVersion, room: int) -> tuple[History, list[_Seal]]:
    """The history ``version`` carries, and the chunks to seal (at most ``room``, oldest first)."""
    after = line.after
    if after is None:
        return History(version.rev, version.file_id), []
    # A line indexed from a version committed before the index: its chunks get a key of their own (two
    # lines there may share a file id, once a file was created where another had been moved away from).
    old = after.history or History(after.rev, f"{after.file_id}-{after.seq}")
    recent = (*old.recent, (after.rev, after.seq))
    sealed = old.sealed
    seals = []
    for number in [] if line.dead_end else _closing(after, version.rev)[: max(0, room)]:
        seals.append(_Seal(old.key, number, sealed, tuple(p for p in recent if history_chunk(p[0]) == number), after))
        sealed = number
    if sealed is not None:
        recent = tuple(p for p in recent if history_chunk(p[0]) > sealed)
    return History(old.base, old.key, sealed, recent), seals


def _with_histories(
    changes: list[tuple[str, FileVersion | None, FileVersion]], lines: list[_Line], room: int
) -> tuple[list[tuple[str, FileVersion | None, FileVersion]], list[_Seal]]:
    """Each new version with its history; the chunks the transaction seals (at most ``room`` actions)."""
    out = []
    seals: list[_Seal] = []
    for (key, cur, version), line in zip(changes, lines, strict=True):
        history, sealing = _next_history(line, version, room - len(seals))
        seals += sealing
        out.append((key, cur, replace(version, history=history)))
    return out, seals


def _chunks_that_fit(chunks: list[tuple[str, HistoryChunk]]) -> int:
    """How many of ``chunks``, from the first, fit the bytes a transaction keeps for history chunks."""
    total = 0
    for count, (_, chunk) in enumerate(chunks):
        total += sum(_record_bytes(v) for v in chunk.versions)
        if total > MAX_SEAL_BYTES:
            return count
    return len(chunks)


def _record_bytes(v: FileVersion) -> int:
    """About what a version's record weighs in a history chunk (numbers and names, then its strings)."""
    texts = (v.path, v.file_id, v.content_hash, v.committed_by, v.commit_key, v.moved_from, v.moved_to)
    return 250 + sum(len(t.encode()) for t in (*texts, v.body_version, v.body_etag) if t)


def _chunk_span(number: int | None, count: int, base: int) -> list[int]:
    """The chunks from ``number`` down that ``count`` versions may span, none below ``base``'s chunk."""
    if number is None:
        return []
    lowest = max(history_chunk(base), number - math.ceil(count / HISTORY_CHUNK))
    return list(range(number, lowest - 1, -1))


def _in_line(entry: JournalEntry | None, file_id: str, rev: int) -> FileVersion | None:
    """The version at ``rev`` of the line of ``file_id`` in ``entry``: a move's entry holds the file twice,
    the source's tombstone (which ends a line) and the target's version (which carries it on)."""
    if entry is None:
        return None
    found = [c for c in entry.changes if c.file_id == file_id and c.rev == rev]
    return next((c for c in found if c.moved_to is None), found[0] if found else None)


def _decide_entry(
    p: _Pending, files: dict[str, FileVersion], by_index: dict[int, _Pending], commit_key: str
) -> CommitResult | None:
    """None to write ``p``; else its answer (a conflict, or a retry's committed version)."""
    entry, cur = p.entry, files.get(p.key)
    if cur is not None and cur.commit_key == commit_key:
        if p.is_target:
            assert p.partner is not None
            source = by_index[p.partner].entry.path
            if not cur.deleted and cur.moved_from is not None and path_key(cur.moved_from) == path_key(source):
                return CommitResult(entry.path, "committed", version=cur)
        elif _same_change(cur, entry):
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
    if cur.path != entry.path and not cur.deleted:
        if not entry.deleted:
            reason = f"the file is named {cur.path!r}; rename it with a move"
            return CommitResult(entry.path, "conflict", current=cur, reason=reason)
        if p.partner is not None:
            reason = f"no such file (the file is named {cur.path!r})"
            return CommitResult(entry.path, "conflict", current=cur, reason=reason)
    return None


def _decide_chunk(
    chunk: list[_Pending],
    files: dict[str, FileVersion],
    folders: set[str],
    children: dict[str, FileVersion | None],
    commit_key: str,
) -> dict[int, CommitResult | None]:
    """Each entry's answer (None: write it). Revs first; then, in request order, each file coming into
    being against the files and folders the chunk leaves; then the moves' halves joined. A move refused
    on one side is refused on both, which may keep a path the other entries counted on: decide again with
    those refusals fixed, until nothing changes (each round fixes at least one more)."""
    by_index = {p.index: p for p in chunk}
    forced: dict[int, CommitResult] = {}
    while True:
        decisions = {
            p.index: forced[p.index] if p.index in forced else _decide_entry(p, files, by_index, commit_key)
            for p in chunk
        }
        _refuse_clashes(chunk, decisions, files, folders, children)
        joined = _join_moves(chunk, decisions, files, by_index)
        if not joined:
            return decisions
        forced.update(joined)


def _refuse_clashes(
    chunk: list[_Pending],
    decisions: dict[int, CommitResult | None],
    files: dict[str, FileVersion],
    folders: set[str],
    children: dict[str, FileVersion | None],
) -> None:
    freed = {p.key for p in chunk if p.entry.deleted and decisions[p.index] is None}
    created: dict[str, str] = {}
    for p in sorted(chunk, key=lambda q: q.index):
        if decisions[p.index] is not None or not _creates(p, files):
            continue
        reason = _clash(p, chunk, files, folders, children.get(p.key), freed, created)
        if reason is None:
            created[p.key] = p.entry.path
        else:
            decisions[p.index] = CommitResult(p.entry.path, "conflict", current=files.get(p.key), reason=reason)


def _clash(
    p: _Pending,
    chunk: list[_Pending],
    files: dict[str, FileVersion],
    folders: set[str],
    child: FileVersion | None,
    freed: set[str],
    created: dict[str, str],
) -> str | None:
    """Why a file cannot come into being at ``p``'s path once the chunk is written, or None."""
    for folder in folders_above(p.key):
        above = files.get(folder)
        name = created.get(folder) or (above.path if above and not above.deleted and folder not in freed else None)
        if name is not None:
            return f"{CLASH}: {name!r} is a file, so {p.entry.path!r} cannot be created under it"
    below = p.key + "/"
    inside = next((path for key, path in created.items() if key.startswith(below)), None)
    if inside is None and p.key in folders:
        kept = (files.get(q.key) for q in chunk if q.entry.deleted and q.key.startswith(below) and q.key not in freed)
        inside = child.path if child else next((f.path for f in kept if f is not None and not f.deleted), None)
    if inside is not None:
        return f"{CLASH}: {p.entry.path!r} is a folder (it holds {inside!r}), so it cannot be a file"
    return None


def _join_moves(
    chunk: list[_Pending],
    decisions: dict[int, CommitResult | None],
    files: dict[str, FileVersion],
    by_index: dict[int, _Pending],
) -> dict[int, CommitResult]:
    """A move is written whole or not at all: a half to be written whose other half is not is refused."""
    refused: dict[int, CommitResult] = {}
    for p in chunk:
        if p.partner is None or decisions[p.index] is not None:
            continue
        other = decisions[p.partner]
        if other is not None:
            reason = _OTHER_HALF if other.status == "conflict" else _MOVED_BEFORE
            refused[p.index] = CommitResult(p.entry.path, "conflict", current=files.get(p.key), reason=reason)
    decisions.update(refused)
    return refused


def _move_result(source: CommitResult, target: CommitResult) -> MoveResult:
    if source.status == target.status == "committed":
        return MoveResult(source.path, target.path, "committed", version=target.version)
    failed = next(r for r in (source, target) if r.status == "conflict" and r.reason != _OTHER_HALF)
    return MoveResult(source.path, target.path, "conflict", current=failed.current, reason=failed.reason)


def _predecessor(entry: JournalEntry, file_id: str, after: FileVersion | None) -> FileVersion | None:
    """The version of ``file_id`` in ``entry`` that ``after`` follows in its history: the one at the path
    ``after`` was moved from, or at its own path (a move's journal entry holds the file twice: the
    source's tombstone and the target's version)."""
    mine = [c for c in entry.changes if c.file_id == file_id]
    if after is not None:
        where = path_key(after.moved_from or after.path)
        for change in mine:
            if path_key(change.path) == where:
                return change
    return next((c for c in mine if c.moved_to is None), mine[0] if mine else None)


def _same_change(cur: FileVersion, entry: CommitEntry) -> bool:
    if entry.deleted:
        return cur.deleted
    return not cur.deleted and cur.content_hash == entry.content_hash and cur.size == entry.size


def _encode_cursor(key: str, indexed: bool | None = None) -> str:
    """A listing cursor: the last key listed, and (non-recursive listings) whether from the children index."""
    return orjson.dumps(key if indexed is None else {"after": key, "children_index": indexed}).decode()


def _trash_cursor(cursor: str | None) -> str | None:
    """A trash page's cursor (``<ms>#<path key>``), checked: nothing else reaches the index's key."""
    if cursor is None:
        return None
    when, _, key = cursor.partition("#")
    if len(when) == 15 and when.isdigit() and key:
        try:
            if path_key(normalize_path(key, "cursor")) == key:
                return cursor
        except ValidationFailed:
            pass
    raise ValidationFailed("The cursor is malformed.", (FieldError("cursor", "not a cursor from this API"),))


def _decode_cursor(cursor: str | None) -> tuple[str | None, bool | None]:
    if cursor is None:
        return None, None
    try:
        value = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, str):
        return value, None
    if (
        isinstance(value, dict)
        and value.keys() == {"after", "children_index"}
        and isinstance(value["after"], str)
        and isinstance(value["children_index"], bool)
    ):
        return value["after"], value["children_index"]
    raise ValidationFailed("The cursor is malformed.", (FieldError("cursor", "not a cursor from this API"),))
