"""The sync executor: scan, hash what changed, compare, plan, and carry the plan out.

Local reads never block the event loop (scanning and hashing run in threads, hashing on every core).
Small files (at most the service's ``max_inline_file``) travel in batches through the service, both ways:
up, bodies and commit in one request (the service stores them as one pack, one S3 request); down, many
bodies in one ``blobs:fetch`` answer (no credentials needed either way). Larger ones go straight to and
from S3 with the scoped credentials, ``concurrency`` files at a time, and are committed in batches (up to
1,000 entries, each batch with an idempotency key). Downloads land in a temporary file next to their
target, are verified against their content hash, get the server's mtime, and are renamed into place, so
no partial file ever appears at a final path.

Every local read, write, rename and delete goes through ``localfs`` (relative to directory descriptors,
never following a symlink), at the local spelling of its path. An item the round cannot sync is left alone,
recorded with its reason in the state database (``issues``) and named in the report; the rest syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import stat
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.content import EMPTY_HASH, ContentDigest, digest_bytes
from service.fanout import bounded
from service.paths import PathRuleError, normalize_path, path_key
from service.wire import (
    MTIME_MAX,
    MTIME_MIN,
    AwsCredentials,
    CommitResponse,
    CommitResultOut,
    CompareItemOut,
    FileInfo,
    ServiceConfig,
)
from tools.sdk.client import FileSyncClient
from tools.sdk.errors import ApiError, ContentReplaced
from tools.sdk.hashing import hash_file, hash_file_sync
from tools.sdk.transfer import S3Transfer
from tools.sync.ignore import TEMP_PREFIX, IgnoreRules
from tools.sync.localfs import Folder, Placed, Unplaceable, display, kind_of
from tools.sync.plan import Blocker, ConflictCopy, Download, LocalFile, SyncPlan, Upload, plan
from tools.sync.scan import Issue, scan, scan_stats
from tools.sync.state import NOT_SYNCED, IssueRow, SeenFile, StateDB, StateEntry

if TYPE_CHECKING:
    from tools.sync.headstart import HeadStart

COMPARE_PAGE = 5000
#: A compare request's manifest stays under this (the service takes 8 MiB); long paths make smaller pages.
COMPARE_BYTES = 6 * 1024 * 1024
#: Small files a batch request holds, and batch requests in flight at once (each at most 16 MiB of bodies).
INLINE_BATCH_FILES = 250
INLINE_BATCHES_IN_FLIGHT = 3
#: Small files one fetch request asks for (at most the service's ``max_fetch_items``) and their bytes at
#: most, and fetches in flight at once; each holds one body at a time here.
FETCH_BATCH_FILES = 500
FETCH_BATCH_BYTES = 16 * 1024 * 1024
FETCHES_IN_FLIGHT = 3
#: Feed pages (100 changes each) the cheap check reads before it settles for a full round instead.
FEED_PAGES_CHECKED = 10
COMMIT_BATCH = 1000
#: Renames sent in one request (the service takes 500).
MOVE_BATCH = 500
#: How the service's reason for refusing a file where a folder is (or the other way round) begins.
CLASH_REASON = "file/folder clash"
#: Scoped credentials are renewed this long before they expire.
CREDENTIALS_MARGIN_SECONDS = 300
#: S3 requests in flight (parts of one file, or of several): what ``aws s3 cp`` sends at once.
TRANSFER_CONCURRENCY = 10

Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class SyncReport:
    uploaded: int = 0
    downloaded: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    moved: int = 0
    conflicts: int = 0
    #: Items that did not sync, with their reasons (as the state database keeps them until they resolve).
    skipped: list[IssueRow] = field(default_factory=list)
    #: What is worth knowing but is no failure: empty folders, which the service does not keep.
    notes: list[IssueRow] = field(default_factory=list)
    pending_conflicts: int = 0
    #: Where each conflict kept this device's version (its path in the folder).
    conflicted_copies: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.uploaded + self.downloaded + self.deleted_local + self.deleted_remote + self.moved + self.conflicts


class SyncEngine:
    def __init__(
        self,
        api: FileSyncClient,
        ns: str,
        root: Path,
        state: StateDB,
        *,
        device: str,
        concurrency: int = 16,
        progress: Progress | None = None,
        head_start: HeadStart | None = None,
    ) -> None:
        self._api = api
        self._ns = ns
        self._root = root
        self._folder = Folder(root)
        self._rules = IgnoreRules()
        self._state = state
        self._device = device
        self._concurrency = concurrency
        self._progress = progress or (lambda label, done, total: None)
        #: Large files hashed while the client started (``tools.sync.headstart``), taken where they fit.
        self._head_start = head_start
        self._block_size = 0
        #: Digests (with their block digests) of the files hashed in this run, reused for uploads.
        self._digests: dict[str, ContentDigest] = {}
        self._creds: AwsCredentials | None = None
        self._service_config: ServiceConfig | None = None
        #: The S3 transfer of this sync, being opened or open (see ``_transfer_soon``).
        self._opening: asyncio.Task[S3Transfer] | None = None

    async def sync(self, rounds: int = 3) -> SyncReport:
        """Sync until nothing is left to do (a commit that lost a race is retried in the next round).

        When nothing changed locally (by size and mtime against the state database) and the feed has
        nothing after our cursor, that is the whole sync: one request to the service. After a round that
        did something, the same cheap check confirms it is done (the feed then lists what the round itself
        committed or applied, which the state database already holds), instead of a second full round."""
        report = SyncReport()
        if not await self._nothing_changed():
            try:
                for _ in range(rounds):
                    freed = report.deleted_remote + report.moved
                    if await self._round(report):
                        break
                    if report.deleted_remote + report.moved > freed and self._state.issues(["refused"]):
                        continue  # a path refused while the round freed another (a file became a folder): again
                    if await self._nothing_changed():
                        break
            finally:
                await self._close_transfer()
        report.skipped = self._state.issues(NOT_SYNCED)
        report.notes = self._state.issues(["note"])
        return report

    async def _nothing_changed(self) -> bool:
        """The folder is what the last round left (files, and the items it skipped), and every change after
        the cursor is one the state database already holds (committed or applied by us, or a server file
        the last round could not place, or one ignored here); then the cursor moves past them."""
        cursor = self._state.get("cursor")
        if cursor is None:
            return False

        def same_as_synced() -> tuple[bool, IgnoreRules]:
            # Its own connection: SQLite connections stay in their thread, and the scan must not block the loop.
            state = StateDB(self._state.path)
            try:
                rules = IgnoreRules.load(self._folder)
                issues: list[Issue] = []
                return state.matches(scan_stats(self._root, issues, rules, state.spelling), issues), rules
            finally:
                state.close()

        unchanged, rules = await asyncio.to_thread(same_as_synced)
        if not unchanged:
            return False
        latest: dict[str, FileInfo] = {}
        for _ in range(FEED_PAGES_CHECKED):
            page = await self._api.changes(self._ns, cursor, limit=100)
            for change in page.changes:
                latest[path_key(change.path)] = change
            cursor = page.cursor
            if not page.more:
                break
        else:
            return False  # a long way behind: a full round is cheaper than reading on
        for key, change in latest.items():
            entry = self._state.entry(key)
            held = entry is None if change.deleted else entry is not None and entry.synced_rev == change.rev
            if not held and not change.deleted:
                held = self._state.unplaced_rev(key) == change.rev or rules.ignores(change.path)
            if not held:
                return False
        if latest:
            self._state.set("cursor", cursor)
        return True

    async def _round(self, report: SyncReport) -> bool:
        """One pass over the folder, a page of path keys at a time: the scan goes to the state database,
        then each page (``COMPARE_PAGE`` keys) is hashed where it changed, compared, planned and carried
        out before the next is read. Memory holds one page and one compare answer (at most 10,000 server
        files), whatever the folder's size. True if there was nothing to do."""
        stored = self._state.get("block_size")
        if stored is None:
            stored = str((await self._config()).block_size)
            self._state.set("block_size", stored)
        self._block_size = int(stored)
        await self._load_scan()
        self._state.clear_round_issues()
        idle = not await self._moves(report)
        hashing = _Counter(self._state.bytes_to_hash())
        self._progress("hashing", 0, hashing.total)
        cursor: str | None = None
        after: str | None = None
        while True:
            rows = self._state.page(after, COMPARE_PAGE)
            last = len(rows) < COMPARE_PAGE
            local, state, blocked = await self._local_page(rows, hashing)
            through = None if last else rows[-1][0]
            async for items, page_cursor in self._compare(local, state, blocked, after, through):
                cursor = cursor or page_cursor  # the first answer's: nothing committed since is missed
                keys = {item.path: path_key(item.path) for item in items}
                blocked.update(self._blocked(items, keys, local, blocked))
                todo = plan(local, state, items, keys, blocked)
                for unplaced in todo.unplaced:
                    self._unplaced(unplaced.file, f"not placed here: {unplaced.reason}")
                if not todo.empty or todo.forget:
                    idle = False
                    await self._execute(todo, state, report)
            self._digests.clear()
            if last:
                break
            after = through
        self._state.clear_scan()
        self._state.set("cursor", cursor or "s0")
        return idle

    # --- scanning ------------------------------------------------------------------------------------

    async def _load_scan(self) -> None:
        """Walk the folder into the state database (its own connection, off the event loop), with the
        items that do not sync; the ignore rules are read afresh for each round."""

        def load() -> IgnoreRules:
            state = StateDB(self._state.path)
            try:
                rules = IgnoreRules.load(self._folder)
                issues: list[Issue] = []
                state.load_scan(scan(self._root, issues, rules, state.spelling), issues)
                return rules
            finally:
                state.close()

        self._rules = await asyncio.to_thread(load)

    async def _moves(self, report: SyncReport) -> bool:
        """Before the pages: the files that vanished at one path and appeared at another with the same size
        (and inode) and content hash are renames, sent as moves (``MOVE_BATCH`` a request), so each keeps
        its id and history and no byte travels. The old and new paths of a rename are usually on different
        pages, so this looks at the whole scan. A move the server refuses (the file changed there, the
        target exists) is left to the pages: a new file and a deletion, losing nothing. True if any moved."""
        if self._state.pair_moves() == 0:
            return False
        moved = 0
        after = 0

        async def same_content(entry: StateEntry, seen: SeenFile) -> tuple[StateEntry, SeenFile] | None:
            try:
                found = await asyncio.to_thread(self._hash, seen.local)
            except (OSError, Unplaceable):
                return None  # the pages look at it again, and name it if it cannot be read
            return (entry, seen) if found.content_hash == entry.content_hash else None

        while pairs := self._state.moves(after, MOVE_BATCH):
            after = pairs[-1][0]
            checked = await bounded(
                [(e, s) for _, e, s in pairs], lambda pair: same_content(*pair), os.cpu_count() or 2
            )
            same = [pair for pair in checked if pair is not None]
            if not same:
                continue
            response = await self._api.move_many(
                self._ns, [(e.path, s.path, e.synced_rev) for e, s in same], idempotency_key=uuid.uuid4().hex
            )
            done = [
                (entry, seen, result.file)
                for (entry, seen), result in zip(same, response.results, strict=True)
                if result.status == "committed" and result.file is not None
            ]
            self._state.forget(entry.key for entry, _, _ in done)
            self._state.record(
                StateEntry(
                    seen.key,
                    file.path,
                    seen.size,
                    seen.mtime_ns,
                    entry.content_hash,
                    file.rev,
                    entry.blocks,
                    seen.local,
                    seen.inode,
                )
                for entry, seen, file in done
            )
            moved += len(done)
        report.moved += moved
        return moved > 0

    async def _local_page(
        self, rows: list[tuple[str, SeenFile | None, StateEntry | None, bool]], hashing: _Counter
    ) -> tuple[dict[str, LocalFile], dict[str, StateEntry], dict[str, Blocker]]:
        """The page's files as they are now (re-hashing only those whose size or mtime changed), as they
        were synced, and the keys to leave alone: synced files held by a skipped item, and files that could
        not be read."""
        local: dict[str, LocalFile] = {}
        state: dict[str, StateEntry] = {}
        blocked: dict[str, Blocker] = {}
        to_hash: list[SeenFile] = []
        held: list[str] = []
        for key, seen, entry, is_held in rows:
            if entry is not None:
                state[key] = entry
            if seen is None:
                if is_held:
                    held.append(key)
                continue
            if entry is not None and (entry.size, entry.mtime_ns) == (seen.size, seen.mtime_ns):
                local[key] = LocalFile(
                    key, _wire(seen, entry), seen.size, seen.mtime_ns, entry.content_hash, seen.local, seen.inode
                )
            else:
                to_hash.append(seen)
        for key, issue in self._state.blockers(held).items():
            blocked[key] = Blocker(issue.kind, f"{issue.local} is in the way ({issue.reason})")
        if to_hash:
            inline_max = (await self._config()).max_inline_file
            if any(seen.size > inline_max for seen in to_hash):
                # A large file changed: it most likely goes to S3, so S3 is made ready while it is hashed.
                self._transfer_soon()
            cores = os.cpu_count() or 2
            # Fewer files than cores: each takes a share of the cores (a large file's blocks hash in parallel).
            workers = max(1, cores // len(to_hash))

            async def digest(seen: SeenFile) -> None:
                try:
                    found = await asyncio.to_thread(self._hash, seen.local, workers)
                except FileNotFoundError:  # gone since the scan: the next round sees what happened
                    blocked[seen.key] = Blocker("ignored", "gone")
                    return
                except (OSError, Unplaceable) as exc:
                    reason = f"unreadable ({exc.strerror})" if isinstance(exc, OSError) else str(exc)
                    self._state.add_issue(
                        IssueRow(display(seen.local), seen.key, "unreadable", reason, seen.size, seen.mtime_ns)
                    )
                    blocked[seen.key] = Blocker("skipped", f"{display(seen.local)} is {reason}")
                    return
                self._digests[seen.key] = found
                before = state.get(seen.key)
                local[seen.key] = LocalFile(
                    seen.key, _wire(seen, before), seen.size, seen.mtime_ns, found.content_hash, seen.local, seen.inode
                )

            await bounded(to_hash, digest, cores)
            hashing.done += sum(f.size for f in to_hash)
            self._progress("hashing", hashing.done, hashing.total)
        return local, state, blocked

    def _hash(self, local: str, workers: int = 1) -> ContentDigest:
        fd = self._folder.open_file(local)
        try:
            if self._head_start is not None:
                ready = self._head_start.digest(local, os.fstat(fd), self._block_size)
                if ready is not None:
                    return ready
            return hash_file_sync(fd, self._block_size, workers)
        finally:
            os.close(fd)

    def _blocked(
        self, items: list[CompareItemOut], keys: dict[str, str], local: dict[str, LocalFile], known: dict[str, Blocker]
    ) -> dict[str, Blocker]:
        """Of the server's files in an answer that have no file here, those to leave alone: under an item
        the scan skipped or ignored, or at a path the ignore rules name."""
        absent = [keys[i.path] for i in items if keys[i.path] not in local and keys[i.path] not in known]
        blocked = {
            key: Blocker(issue.kind, f"{issue.local} is in the way ({issue.reason})")
            for key, issue in self._state.blockers(absent).items()
        }
        for item in items:
            key = keys[item.path]
            if key not in local and key not in known and key not in blocked and self._rules.ignores(item.path):
                blocked[key] = Blocker("ignored", "ignore rules")
        return blocked

    def _unplaced(self, file: FileInfo, reason: str) -> None:
        self._state.add_issue(IssueRow(display(file.path), path_key(file.path), "unplaced", reason, rev=file.rev))

    # --- compare ------------------------------------------------------------------------------------

    async def _compare(
        self,
        local: dict[str, LocalFile],
        state: dict[str, StateEntry],
        blocked: dict[str, Blocker],
        after: str | None,
        through: str | None,
    ) -> AsyncIterator[tuple[list[CompareItemOut], str]]:
        """Compare one page (the server's files in ``(after, through]``) with what is here (leaving out the
        blocked keys: nothing is said of them, so nothing is deleted for them); yields each answer as it
        comes (a range dense with files we lack comes in several)."""
        manifest: dict[str, dict[str, Any]] = {}
        for key, entry in state.items():
            if key in blocked:
                continue
            manifest[key] = {
                "path": entry.path,
                "content_hash": "",
                "synced_rev": entry.synced_rev,
                "synced_hash": entry.content_hash,
            }
        for key, file in local.items():
            before = state.get(key)
            manifest[key] = {
                "path": file.path,
                "content_hash": file.content_hash,
                "synced_rev": before.synced_rev if before else None,
                "synced_hash": before.content_hash if before else None,
            }
        # A page of long paths can outgrow the compare body limit: then it goes as several ranges.
        keys = sorted(manifest)
        ranges: list[list[str]] = [[]]
        size = 0
        for key in keys:
            cost = 2 * len(manifest[key]["path"].encode()) + 300
            if ranges[-1] and size + cost > COMPARE_BYTES:
                ranges.append([])
                size = 0
            ranges[-1].append(key)
            size += cost
        for number, chunk in enumerate(ranges):
            last = number == len(ranges) - 1
            chunk_through = through if last else chunk[-1]
            while True:
                body = {"entries": [manifest[k] for k in chunk], "after": after, "through": chunk_through}
                response = await self._api.compare(self._ns, body)
                yield response.items, response.cursor
                if response.complete_through is None:
                    break
                # The server stopped early (a range dense with files we lack): the rest of the range again.
                after = response.complete_through
                chunk = [k for k in chunk if k > after]
            after = chunk_through

    # --- executing ----------------------------------------------------------------------------------

    async def _execute(self, todo: SyncPlan, state: dict[str, StateEntry], report: SyncReport) -> None:
        for key in todo.forget:
            self._state.forget([key])
        self._state.record(_entry(r.local, r.file, self._digests.get(r.key)) for r in todo.records)
        for conflict in todo.conflicts:
            try:
                kept = self._keep_conflicted_copy(conflict)
            except (OSError, Unplaceable):
                continue  # changed or moved since the scan: the next round sees it as it is
            report.conflicts += 1
            copy, renamed = kept
            report.conflicted_copies.append(copy)
            todo.downloads.append(Download(conflict.local.key, conflict.server, conflict.local.local, None))
            if renamed is not None:
                self._state.add_scanned(
                    SeenFile(
                        renamed.key, renamed.path, renamed.local, renamed.size, renamed.mtime_ns, renamed.inode or 0
                    )
                )
                todo.uploads.append(Upload(renamed, None))
        config = await self._config() if todo.uploads or todo.downloads else None
        inline_max = config.max_inline_file if config is not None else 0
        small = [u for u in todo.uploads if u.local.size <= inline_max]
        large = [u for u in todo.uploads if u.local.size > inline_max]
        fetched = [d for d in todo.downloads if config is not None and _fetchable(d.file, config)]
        direct = [d for d in todo.downloads if config is None or not _fetchable(d.file, config)]
        needs_s3 = bool(large) or any(d.file.content_hash != EMPTY_HASH and d.file.body_pack is None for d in direct)
        if needs_s3:
            self._transfer_soon()  # opens while the deletions and small files go through the service
        await self._remote_deletes(todo, report)  # first: a deletion may free the path of a new file
        await self._send_small(small, report)
        transfer = await self._transfer() if needs_s3 else None
        await self._uploads(large, transfer, report)
        await self._fetch_small(fetched, report)
        await self._downloads(direct, transfer, report)
        self._local_deletes(todo, report)

    async def _config(self) -> ServiceConfig:
        """The service's limits, asked once per engine (the block size is kept in the state database)."""
        if self._service_config is None:
            self._service_config = await self._api.config()
        return self._service_config

    def _transfer_soon(self) -> None:
        """Start opening this sync's S3 transfer (scoped credentials, a connection pool) while other work goes
        on: hashing a large file, sending small ones. Opened once per ``sync``, closed at its end."""
        if self._opening is None:
            self._opening = asyncio.create_task(self._open_transfer())

    async def _open_transfer(self) -> S3Transfer:
        transfer = S3Transfer(
            await self._credentials(),
            self._block_size,
            concurrency=TRANSFER_CONCURRENCY,
            renew=self._renewed_credentials,
        )
        await transfer.__aenter__()
        return transfer

    async def _transfer(self) -> S3Transfer:
        self._transfer_soon()
        assert self._opening is not None
        return await self._opening

    async def _close_transfer(self) -> None:
        """Close the transfer, once it finished opening. One opened ahead of a need that never came, or whose
        opening failed (then the need, had there been one, raised that failure), is closed quietly."""
        opening, self._opening = self._opening, None
        if opening is None:
            return
        try:
            transfer = await opening
        except Exception:  # reported where the transfer was needed, if it was
            return
        await transfer.__aexit__(None, None, None)

    async def _credentials(self) -> AwsCredentials:
        """Scoped credentials, reused across rounds (``--watch``) for their lifetime: one STS call per
        credential lifetime, not per round; renewed five minutes before they expire."""
        if self._creds is not None:
            expires = datetime.fromisoformat(self._creds.expiration.replace("Z", "+00:00")).timestamp()
            if expires - time.time() > CREDENTIALS_MARGIN_SECONDS:
                return self._creds
        self._creds = await self._api.credentials([self._ns])
        return self._creds

    async def _renewed_credentials(self) -> AwsCredentials:
        """New credentials, when S3 refused the ones held (revoked after the user lost some access: the new
        ones cover what the user may still reach)."""
        self._creds = await self._api.credentials([self._ns])
        return self._creds

    def _previous(self, local: LocalFile) -> ContentDigest | None:
        """The last synced version of this path, when its block digests are known: the delta's base."""
        before = self._state.entry(local.key)
        if before is None or before.blocks is None or before.content_hash == local.content_hash:
            return None
        digests = tuple(before.blocks[i : i + 32] for i in range(0, len(before.blocks), 32))
        return ContentDigest(before.content_hash, before.size, digests)

    def _keep_conflicted_copy(self, conflict: ConflictCopy) -> tuple[str, LocalFile | None]:
        """Rename the local file aside, in its folder, to a conflicted copy: its local path, and the copy to
        upload (None when its name cannot sync: it stays here, and the next round names it)."""
        name = conflict.local.local.rsplit("/", 1)[-1]
        stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        device = _PORTABLE_DEVICE.sub("-", self._device)

        def copy_name(n: int) -> str:
            return f"{stem} (conflicted copy {device} {day}{f' {n}' if n > 1 else ''}){dot}{ext}"

        renamed = self._folder.rename_aside(conflict.local.local, copy_name)
        found = self._folder.lstat(renamed)
        if found is None:
            return renamed, None
        try:
            path = normalize_path(unicodedata.normalize("NFC", renamed), "path")
        except PathRuleError:
            return renamed, None
        copy = LocalFile(
            path_key(path), path, found.st_size, found.st_mtime_ns, conflict.local.content_hash, renamed, found.st_ino
        )
        return renamed, copy

    async def _send_small(self, uploads: list[Upload], report: SyncReport) -> None:
        """Files of at most ``max_inline_file`` bytes go to the service in batches, bodies and commit in one
        request each: one S3 request per new file and no scoped credentials needed. A batch holds at most
        ``INLINE_BATCH_FILES`` files, ``max_inline_request`` bytes and a manifest within ``max_json_body``;
        ``INLINE_BATCHES_IN_FLIGHT`` are sent at once (one's commit overlaps the next one's bodies), so at
        most that many batches are in memory."""
        if not uploads:
            return
        config = await self._config()
        total = sum(u.local.size for u in uploads)
        sent = 0

        async def send(batch: list[Upload]) -> None:
            nonlocal sent
            read = dict(await asyncio.to_thread(self._read_small, batch))

            async def batch_request(ready: list[Upload]) -> CommitResponse:
                return await self._api.upload_batch(
                    self._ns,
                    [_commit_entry(u) for u in ready],
                    [read[u] for u in ready],
                    idempotency_key=uuid.uuid4().hex,
                )

            await self._commit_refusing(list(read), batch_request, report)
            sent += sum(u.local.size for u in batch)
            self._progress("uploading", sent, total)

        batches: list[list[Upload]] = [[]]
        budget = config.max_inline_request - 4096  # the manifest's envelope and the form's closing line
        manifest_budget = config.max_json_body - 4096
        size = manifest = 0
        most = min(INLINE_BATCH_FILES, config.max_commit_entries)
        for upload in uploads:
            # Each file costs its body, its part's headers (about 150 bytes) and its manifest entry (about
            # 150 bytes and its path, escaped); the manifest itself is a JSON body, within ``max_json_body``.
            entry = 2 * len(upload.local.path.encode()) + 200
            cost = upload.local.size + entry + 200
            batch = batches[-1]
            if batch and (len(batch) == most or size + cost > budget or manifest + entry > manifest_budget):
                batches.append([])
                size = manifest = 0
            batches[-1].append(upload)
            size += cost
            manifest += entry
        await bounded(batches, send, INLINE_BATCHES_IN_FLIGHT)

    def _read_small(self, uploads: list[Upload]) -> list[tuple[Upload, bytes]]:
        """The bodies of ``uploads`` as they are now; a file that changed or went away since it was
        scanned is left for the next round."""
        out: list[tuple[Upload, bytes]] = []
        for upload in uploads:
            try:
                data = self._folder.read_bytes(upload.local.local)
            except (OSError, Unplaceable):
                continue
            digest = digest_bytes(data, self._block_size)
            if digest.content_hash == upload.local.content_hash:
                self._digests[upload.local.key] = digest
                out.append((upload, data))
        return out

    def _record_commits(self, response: CommitResponse, uploads: dict[str, Upload], report: SyncReport) -> None:
        """Record what was committed. A conflict is a race (someone committed first: the next round sorts
        it out) unless the server refused the path itself (a new file where nothing with its key is, or
        where a file or folder above or below it is): that is an item not synced, with the server's reason."""
        recorded = []
        for result in response.results:
            upload = uploads[result.path]
            local = upload.local
            if result.status == "committed" and result.file is not None:
                recorded.append(_entry(local, result.file, self._digests.get(local.key)))
                report.uploaded += 1
            elif _refused(result, local.key, upload.parent_rev):
                self._refuse(upload, result.reason or "conflict")
            else:
                report.pending_conflicts += 1
        self._state.record(recorded)

    async def _uploads(self, uploads: list[Upload], transfer: S3Transfer | None, report: SyncReport) -> None:
        """Larger files: straight to S3 with the scoped credentials (only what the namespace lacks), then
        committed in batches."""
        if not uploads:
            return
        hashes = sorted({u.local.content_hash for u in uploads if u.local.content_hash != EMPTY_HASH})
        missing: set[str] = set()
        for start in range(0, len(hashes), 1000):
            missing.update(await self._api.missing(self._ns, hashes[start : start + 1000]))
        first_by_hash: dict[str, LocalFile] = {}
        for upload in uploads:
            if upload.local.content_hash in missing:
                first_by_hash.setdefault(upload.local.content_hash, upload.local)
        total = sum(f.size for f in first_by_hash.values())
        sent = 0

        def advance(amount: int) -> None:
            nonlocal sent
            sent += amount
            self._progress("uploading", sent, total)

        async def send(local: LocalFile) -> None:
            try:
                source = self._folder.open_file(local.local)
            except (OSError, Unplaceable):
                return  # gone or replaced since the scan: the next round sees what is there
            try:
                digest = self._digests.get(local.key)
                if digest is None or digest.content_hash != local.content_hash:
                    digest = await hash_file(source, self._block_size)
                if digest.content_hash != local.content_hash:
                    return  # changed while syncing: the next round picks it up
                assert transfer is not None
                await transfer.upload(
                    self._ns,
                    source,
                    digest,
                    progress=advance,
                    previous=self._previous(local),
                    ledger=self._state,
                    name=self._root / local.local,
                )
            finally:
                os.close(source)

        await bounded(first_by_hash.values(), send, self._concurrency)
        if transfer is not None:
            await self._abort_unfinished(transfer)

        async def commit_request(ready: list[Upload]) -> CommitResponse:
            entries = [_commit_entry(u) for u in ready]
            return await self._api.commit(self._ns, entries, idempotency_key=uuid.uuid4().hex)

        for start in range(0, len(uploads), COMMIT_BATCH):
            await self._commit_refusing(uploads[start : start + COMMIT_BATCH], commit_request, report)

    async def _commit_refusing(
        self,
        uploads: list[Upload],
        request: Callable[[list[Upload]], Awaitable[CommitResponse]],
        report: SyncReport,
    ) -> None:
        """Commit ``uploads`` with ``request``. The service refuses a whole request (422) for the entries its
        problem names: those are taken out and the rest sent again. An entry whose content the service does
        not hold (the file changed while it was sent) waits for the next round; any other refusal (its size,
        its mtime, its path) is an item not synced, named with the service's reason, never a silent skip."""
        while uploads:
            try:
                response = await request(uploads)
            except ApiError as exc:
                named = _named_entries(exc, len(uploads))
                if not named:
                    raise
                for index, (name, message) in named.items():
                    if name != "content_hash":
                        self._refuse(uploads[index], message)
                uploads = [u for i, u in enumerate(uploads) if i not in named]
                continue
            self._record_commits(response, {u.local.path: u for u in uploads}, report)
            return

    def _refuse(self, upload: Upload, reason: str) -> None:
        local = upload.local
        reason = f"refused by the server: {reason}"
        self._state.add_issue(IssueRow(display(local.local), local.key, "refused", reason, local.size, local.mtime_ns))

    async def _abort_unfinished(self, transfer: S3Transfer) -> None:
        """Every upload of this round finished: what the ledger still holds is for content that no longer
        needs sending (the file changed or went away since a run crashed). Free its parts now."""
        for key, upload_id in self._state.unfinished_uploads():
            # Best effort: a failure is tried again next round, and the bucket's lifecycle rule aborts it anyway.
            with contextlib.suppress(Exception):
                await transfer.abort(key, upload_id)
                self._state.forget_upload(key)

    async def _remote_deletes(self, todo: SyncPlan, report: SyncReport) -> None:
        entries = [{"path": d.path, "deleted": True, "parent_rev": d.parent_rev} for d in todo.remote_deletes]
        keys = {d.path: d.key for d in todo.remote_deletes}
        for start in range(0, len(entries), COMMIT_BATCH):
            response = await self._api.commit(self._ns, entries[start : start + COMMIT_BATCH])
            gone = [keys[r.path] for r in response.results if r.status == "committed"]
            self._state.forget(gone)
            report.deleted_remote += len(gone)

    async def _fetch_small(self, downloads: list[Download], report: SyncReport) -> None:
        """Small files, many in one request (``blobs:fetch``: ``FETCH_BATCH_FILES`` and ``FETCH_BATCH_BYTES``
        at most, ``FETCHES_IN_FLIGHT`` at once): each body as it arrives is verified, written to a temporary
        file and renamed into place, as every download is (``_land``), one body held at a time per fetch."""
        if not downloads:
            return
        config = await self._config()
        most = max(1, min(FETCH_BATCH_FILES, config.max_fetch_items))
        batches: list[list[Download]] = [[]]
        size = 0
        for download in downloads:
            if batches[-1] and (len(batches[-1]) == most or size + download.file.size > FETCH_BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append(download)
            size += download.file.size
        total = sum(d.file.size for d in downloads)
        received = 0

        async def fetch(batch: list[Download]) -> None:
            nonlocal received
            landed: list[StateEntry] = []
            try:
                async for got in self._api.fetch(self._ns, [d.file for d in batch]):
                    download = batch[got.index]
                    if got.data is None:
                        self._unplaced(download.file, f"not downloaded: {got.problem}")
                        continue
                    try:
                        local = await asyncio.to_thread(self._land, download, got.data)
                    except Unplaceable as exc:
                        self._unplaced(download.file, f"not placed here: {exc}")
                        continue
                    except ContentReplaced as exc:
                        self._unplaced(download.file, f"not downloaded: {exc.detail}")
                        continue
                    if local is not None:
                        landed.append(_entry(local, download.file, None))
                        report.downloaded += 1
                    received += download.file.size
                    self._progress("downloading", received, total)
            finally:
                # One transaction per fetch, not per file: a file placed but not recorded (a crash
                # between) is found up to date by the next compare, its content being the server's.
                self._state.record(landed)

        await bounded(batches, fetch, FETCHES_IN_FLIGHT)

    def _land(self, download: Download, data: bytes) -> LocalFile | None:
        """Place a small download whose bytes are in memory (in a thread: file system calls only): verified
        against its content hash, then written and renamed into place as ``_fetch`` does."""
        file = download.file
        if digest_bytes(data, file.block_size).content_hash != file.content_hash:
            raise ContentReplaced(0, "Content replaced", "the bytes that came do not match its content hash")
        with self._folder.placing(download.local or file.path) as placed:
            if not self._still(download, placed):
                return None
            temp = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            fd = placed.create(temp)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                except BaseException:
                    os.unlink(temp, dir_fd=placed.dir_fd)
                    raise
                return self._put_in_place(download, placed, temp, fd)
            finally:
                os.close(fd)

    async def _downloads(self, downloads: list[Download], transfer: S3Transfer | None, report: SyncReport) -> None:
        total = sum(d.file.size for d in downloads)
        received = 0

        def advance(amount: int) -> None:
            nonlocal received
            received += amount
            self._progress("downloading", received, total)

        async def fetch(download: Download) -> None:
            try:
                if download.file.body_pack is not None:
                    # In a pack, but larger than a fetch takes (the service's limit was lowered since):
                    # through the service, which alone reads packs.
                    file = download.file
                    data = await self._api.download(self._ns, file.path, file.rev)
                    local = await asyncio.to_thread(self._land, download, data)
                    advance(file.size)
                else:
                    with self._folder.placing(download.local or download.file.path) as placed:
                        local = await self._fetch(download, placed, transfer, advance)
            except Unplaceable as exc:
                self._unplaced(download.file, f"not placed here: {exc}")
                return
            except ContentReplaced as exc:
                # Never taken for the file: it is listed with why, the rest of the round goes on, and a
                # later round fetches it once the content is uploaded again.
                self._unplaced(download.file, f"not downloaded: {exc.detail}")
                return
            if local is not None:
                self._state.record([_entry(local, download.file, self._digests.pop(download.key, None))])
                report.downloaded += 1

        await bounded(downloads, fetch, self._concurrency)

    async def _fetch(
        self, download: Download, placed: Placed, transfer: S3Transfer | None, advance: Callable[[int], None]
    ) -> LocalFile | None:
        """Write one download into ``placed``: into a new temporary file, verified, then renamed over the
        target, if the target is still what the plan saw (else None: the next round sees what is there)."""
        file = download.file
        if not self._still(download, placed):
            return None
        temp = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = placed.create(temp)
        try:
            try:
                if file.content_hash != EMPTY_HASH and file.size > 0:
                    assert transfer is not None
                    digest = await transfer.download(
                        self._ns,
                        file.content_hash,
                        file.size,
                        fd,
                        progress=advance,
                        version_id=file.body_version,
                        etag=file.body_etag,
                        block_size=file.block_size,
                    )
                    if digest.content_hash != file.content_hash:
                        raise ContentReplaced(
                            0, "Content replaced", "the bytes stored for it do not match its content hash"
                        )
                    self._digests[download.key] = digest
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=placed.dir_fd)
                raise
            return self._put_in_place(download, placed, temp, fd)
        finally:
            os.close(fd)

    def _put_in_place(self, download: Download, placed: Placed, temp: str, fd: int) -> LocalFile | None:
        """The verified body in ``temp`` (open as ``fd``) gets the server's mtime and is renamed over the
        target, if the target is still what the plan saw (else it goes, and None)."""
        file = download.file
        try:
            os.utime(fd, ns=(time.time_ns(), int(file.mtime * 1e9)))
            if not self._still(download, placed):
                os.unlink(temp, dir_fd=placed.dir_fd)
                return None
            os.replace(temp, placed.name, src_dir_fd=placed.dir_fd, dst_dir_fd=placed.dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=placed.dir_fd)
            raise
        found = os.fstat(fd)
        return LocalFile(
            download.key, file.path, found.st_size, found.st_mtime_ns, file.content_hash, placed.local, found.st_ino
        )

    @staticmethod
    def _still(download: Download, placed: Placed) -> bool:
        """Whether the target is as the plan saw it: nothing (``expected`` None) or that file, unchanged.
        ``Unplaceable`` when a folder, a symlink or a special file is there."""
        try:
            found = os.stat(placed.name, dir_fd=placed.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True  # gone meanwhile, or never there: the server's version lands
        if not stat.S_ISREG(found.st_mode):
            raise Unplaceable(f"{display(placed.local)} is {kind_of(found.st_mode)}")
        return download.expected == (found.st_size, found.st_mtime_ns)

    def _local_deletes(self, todo: SyncPlan, report: SyncReport) -> None:
        for delete in todo.local_deletes:
            expected = (delete.expected.size, delete.expected.mtime_ns)
            try:
                removed = self._folder.remove(delete.expected.local, expected)
            except FileNotFoundError:
                self._state.forget([delete.key])
                continue
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:  # a file where a folder was: what was synced is gone
                    self._state.forget([delete.key])
                continue  # a symlink on the way, or unreadable: left alone
            if removed:  # else changed since we looked: the next round sees an edit against a delete
                self._state.forget([delete.key])
                report.deleted_local += 1


def _fetchable(file: FileInfo, config: ServiceConfig) -> bool:
    """Whether a file comes by ``blobs:fetch``: small (and not empty), from a service that has it."""
    return config.max_fetch_items > 0 and 0 < file.size <= config.max_inline_file and file.content_hash != EMPTY_HASH


def _commit_entry(upload: Upload) -> dict[str, Any]:
    local = upload.local
    return {
        "path": local.path,
        "content_hash": local.content_hash,
        "size": local.size,
        # The service takes mtimes from 1900 to 9999; a file dated outside (a broken clock, a bad archive)
        # is sent with the nearest one rather than refused.
        "mtime": min(max(local.mtime_ns / 1e9, MTIME_MIN), MTIME_MAX),
        "parent_rev": upload.parent_rev,
    }


@dataclass(slots=True)
class _Counter:
    total: int
    done: int = 0


def _entry(local: LocalFile, file: FileInfo, digest: ContentDigest | None) -> StateEntry:
    blocks = b"".join(digest.block_digests) if digest is not None and len(digest.block_digests) > 1 else None
    return StateEntry(
        local.key, file.path, local.size, local.mtime_ns, local.content_hash, file.rev, blocks, local.local, local.inode
    )


def _wire(seen: SeenFile, synced: StateEntry | None) -> str:
    """The path to send for a local file: the server's spelling of its key once synced (a name that differs
    only by case from the server's is the same file), else its NFC form."""
    return synced.path if synced is not None else seen.path


#: The entry a field error of a commit's problem names: ``$.entries[3].size`` -> 3, ``size``.
_ENTRY_FIELD = re.compile(r"^\$\.entries\[(\d+)\](?:\.(\w+))?")


def _named_entries(exc: ApiError, count: int) -> dict[int, tuple[str, str]]:
    """The entries a 422 problem names (index -> field, message), when it names any."""
    named: dict[int, tuple[str, str]] = {}
    if exc.status != 422 or exc.problem is None:
        return named
    for error in exc.problem.errors or ():
        match = _ENTRY_FIELD.match(error.path)
        if match and int(match[1]) < count:
            named.setdefault(int(match[1]), (match[2] or "", error.message))
    return named


def _refused(result: CommitResultOut, key: str, parent_rev: int | None) -> bool:
    """Whether a commit conflict refuses the path itself rather than losing a race (see ``_record_commits``):
    the service says it is a file/folder clash, or a new file was refused where no live file with its key is,
    or the file in the way is at another path."""
    current = result.current
    if (result.reason or "").startswith(CLASH_REASON):
        return True
    if current is None or current.deleted:
        return parent_rev is None
    return path_key(current.path) != key


#: A device name in a conflicted copy's name: characters no platform refuses.
_PORTABLE_DEVICE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
