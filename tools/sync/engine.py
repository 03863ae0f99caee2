"""The sync executor: scan, hash what changed, compare, plan, and carry the plan out.

Local reads never block the event loop (scanning and hashing run in threads, hashing on every core).
Small files (at most the service's ``max_inline_file``) travel in batches through the service, bodies and
commit in one request (one S3 request per new file, no credentials needed); larger ones go straight to S3
with the scoped credentials, ``concurrency`` files at a time, and are committed in batches (up to 1,000
entries, each batch with an idempotency key). Downloads land in a temporary file
next to their target, are verified against their content hash, get the server's mtime, and are renamed
into place, so no partial file ever appears at a final path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.content import EMPTY_HASH, ContentDigest, digest_bytes
from service.paths import normalize_path, path_key
from service.wire import AwsCredentials, CommitResponse, CompareItemOut, FileInfo, ServiceConfig
from tools.sdk.client import FileSyncClient
from tools.sdk.errors import ApiError
from tools.sdk.hashing import hash_file, hash_files
from tools.sdk.transfer import S3Transfer
from tools.sync.plan import ConflictCopy, Download, LocalFile, SyncPlan, Upload, plan
from tools.sync.scan import TEMP_PREFIX, scan, scan_stats
from tools.sync.state import SeenFile, StateDB, StateEntry

COMPARE_PAGE = 5000
#: A compare request's manifest stays under this (the service takes 8 MiB); long paths make smaller pages.
COMPARE_BYTES = 6 * 1024 * 1024
#: Small files a batch request holds, and batch requests in flight at once (each at most 16 MiB of bodies).
INLINE_BATCH_FILES = 250
INLINE_BATCHES_IN_FLIGHT = 3
#: Feed pages (100 changes each) the cheap check reads before it settles for a full round instead.
FEED_PAGES_CHECKED = 10
COMMIT_BATCH = 1000
#: Scoped credentials are renewed this long before they expire.
CREDENTIALS_MARGIN_SECONDS = 300

Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class SyncReport:
    uploaded: int = 0
    downloaded: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    conflicts: int = 0
    skipped: list[str] = field(default_factory=list)
    pending_conflicts: int = 0
    #: Where each conflict kept this device's version (its path in the folder).
    conflicted_copies: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.uploaded + self.downloaded + self.deleted_local + self.deleted_remote + self.conflicts


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
    ) -> None:
        self._api = api
        self._ns = ns
        self._root = root
        self._state = state
        self._device = device
        self._concurrency = concurrency
        self._progress = progress or (lambda label, done, total: None)
        self._block_size = 0
        #: Digests (with their block digests) of the files hashed in this run, reused for uploads.
        self._digests: dict[str, ContentDigest] = {}
        self._creds: AwsCredentials | None = None
        self._service_config: ServiceConfig | None = None

    async def sync(self, rounds: int = 3) -> SyncReport:
        """Sync until nothing is left to do (a commit that lost a race is retried in the next round).

        When nothing changed locally (by size and mtime against the state database) and the feed has
        nothing after our cursor, that is the whole sync: one request to the service. After a round that
        did something, the same cheap check confirms it is done (the feed then lists what the round itself
        committed or applied, which the state database already holds), instead of a second full round."""
        report = SyncReport()
        if await self._nothing_changed(report):
            return report
        for _ in range(rounds):
            if await self._round(report) or await self._nothing_changed(report):
                break
        return report

    async def _nothing_changed(self, report: SyncReport) -> bool:
        """The folder is what was synced, and every change after the cursor is one the state database
        already holds (committed or applied by us); then the cursor moves past them."""
        cursor = self._state.get("cursor")
        if cursor is None:
            return False
        skipped: list[str] = []

        def same_as_synced() -> bool:
            # Its own connection: SQLite connections stay in their thread, and the scan must not block the loop.
            state = StateDB(self._state.path)
            try:
                return state.matches(scan_stats(self._root, skipped))
            finally:
                state.close()

        unchanged = await asyncio.to_thread(same_as_synced)
        report.skipped = skipped
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
            stored = str((await self._api.config()).block_size)
            self._state.set("block_size", stored)
        self._block_size = int(stored)
        await self._load_scan(report)
        hashing = _Counter(self._state.bytes_to_hash())
        self._progress("hashing", 0, hashing.total)
        idle = True
        cursor: str | None = None
        after: str | None = None
        while True:
            rows = self._state.page(after, COMPARE_PAGE)
            last = len(rows) < COMPARE_PAGE
            local, state = await self._local_page(rows, hashing)
            through = None if last else rows[-1][0]
            async for items, page_cursor in self._compare(local, state, after, through):
                cursor = cursor or page_cursor  # the first answer's: nothing committed since is missed
                keys = {item.path: path_key(item.path) for item in items}
                todo = plan(local, state, items, keys)
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

    async def _load_scan(self, report: SyncReport) -> None:
        """Walk the folder into the state database (its own connection, off the event loop)."""
        skipped: list[str] = []

        def load() -> None:
            state = StateDB(self._state.path)
            try:
                state.load_scan(
                    SeenFile(i.key, i.path, i.size, i.mtime_ns, str(i.absolute)) for i in scan(self._root, skipped)
                )
            finally:
                state.close()

        await asyncio.to_thread(load)
        report.skipped = skipped

    async def _local_page(
        self, rows: list[tuple[str, SeenFile | None, StateEntry | None]], hashing: _Counter
    ) -> tuple[dict[str, LocalFile], dict[str, StateEntry]]:
        """The page's files as they are now (re-hashing only those whose size or mtime changed) and as
        they were synced."""
        local: dict[str, LocalFile] = {}
        state: dict[str, StateEntry] = {}
        to_hash: list[SeenFile] = []
        for key, seen, entry in rows:
            if entry is not None:
                state[key] = entry
            if seen is None:
                continue
            if entry is not None and (entry.size, entry.mtime_ns) == (seen.size, seen.mtime_ns):
                local[key] = LocalFile(key, seen.path, seen.size, seen.mtime_ns, entry.content_hash)
            else:
                to_hash.append(seen)
        if to_hash:
            digests = await hash_files([Path(f.absolute) for f in to_hash], self._block_size)
            for seen in to_hash:
                digest = digests[Path(seen.absolute)]
                self._digests[seen.key] = digest
                local[seen.key] = LocalFile(seen.key, seen.path, seen.size, seen.mtime_ns, digest.content_hash)
            hashing.done += sum(f.size for f in to_hash)
            self._progress("hashing", hashing.done, hashing.total)
        return local, state

    # --- compare ------------------------------------------------------------------------------------

    async def _compare(
        self, local: dict[str, LocalFile], state: dict[str, StateEntry], after: str | None, through: str | None
    ) -> AsyncIterator[tuple[list[CompareItemOut], str]]:
        """Compare one page (the server's files in ``(after, through]``) with what is here; yields each
        answer as it comes (a range dense with files we lack comes in several)."""
        manifest: dict[str, dict[str, Any]] = {}
        for key, entry in state.items():
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
            renamed = await self._keep_conflicted_copy(conflict)
            absolute = str(self._root / renamed.path)
            self._state.add_scanned(SeenFile(renamed.key, renamed.path, renamed.size, renamed.mtime_ns, absolute))
            todo.uploads.append(Upload(renamed, None))
            todo.downloads.append(Download(conflict.local.key, conflict.server))
            report.conflicts += 1
            report.conflicted_copies.append(renamed.path)
        inline_max = (await self._config()).max_inline_file if todo.uploads else 0
        small = [u for u in todo.uploads if u.local.size <= inline_max]
        large = [u for u in todo.uploads if u.local.size > inline_max]
        needs_s3 = bool(large) or any(d.file.content_hash != EMPTY_HASH for d in todo.downloads)
        transfer: S3Transfer | None = None
        async with contextlib.AsyncExitStack() as stack:
            if needs_s3:
                creds = await self._credentials()
                transfer = await stack.enter_async_context(S3Transfer(creds, self._block_size, concurrency=8))
            await self._send_small(small, report)
            await self._uploads(large, transfer, report)
            await self._remote_deletes(todo, report)
            await self._downloads(todo, transfer, report)
        self._local_deletes(todo, report)

    async def _config(self) -> ServiceConfig:
        """The service's limits, asked once per engine (the block size is kept in the state database)."""
        if self._service_config is None:
            self._service_config = await self._api.config()
        return self._service_config

    async def _credentials(self) -> AwsCredentials:
        """Scoped credentials, reused across rounds (``--watch``) for their lifetime: one STS call per
        credential lifetime, not per round; renewed five minutes before they expire."""
        if self._creds is not None:
            expires = datetime.fromisoformat(self._creds.expiration.replace("Z", "+00:00")).timestamp()
            if expires - time.time() > CREDENTIALS_MARGIN_SECONDS:
                return self._creds
        self._creds = await self._api.credentials([self._ns])
        return self._creds

    def _previous(self, local: LocalFile) -> ContentDigest | None:
        """The last synced version of this path, when its block digests are known: the delta's base."""
        before = self._state.entry(local.key)
        if before is None or before.blocks is None or before.content_hash == local.content_hash:
            return None
        digests = tuple(before.blocks[i : i + 32] for i in range(0, len(before.blocks), 32))
        return ContentDigest(before.content_hash, before.size, digests)

    async def _keep_conflicted_copy(self, conflict: ConflictCopy) -> LocalFile:
        source = self._root / conflict.local.path
        stem, dot, ext = source.name.partition(".") if not source.name.startswith(".") else (source.name, "", "")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        n = 1
        target = source.with_name(f"{stem} (conflicted copy {self._device} {day}){dot}{ext}")
        while target.exists():
            n += 1
            target = source.with_name(f"{stem} (conflicted copy {self._device} {day} {n}){dot}{ext}")
        os.rename(source, target)
        stat = target.stat()
        relative = target.relative_to(self._root).as_posix()
        path = normalize_path(relative, "path")
        return LocalFile(path_key(path), path, stat.st_size, stat.st_mtime_ns, conflict.local.content_hash)

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
        slots = asyncio.Semaphore(INLINE_BATCHES_IN_FLIGHT)

        async def send(batch: list[Upload]) -> None:
            nonlocal sent
            async with slots:
                read = await asyncio.to_thread(self._read_small, batch)
                entries = [_commit_entry(u) for u, _ in read]
                if entries:
                    try:
                        response = await self._api.upload_batch(
                            self._ns, entries, [data for _, data in read], idempotency_key=uuid.uuid4().hex
                        )
                    except ApiError as exc:
                        if exc.status != 422:  # a file changed under us: the next round sends it
                            raise
                    else:
                        self._record_commits(response, {u.local.path: u.local for u, _ in read}, report)
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
        tasks = [asyncio.create_task(send(batch)) for batch in batches]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _read_small(self, uploads: list[Upload]) -> list[tuple[Upload, bytes]]:
        """The bodies of ``uploads`` as they are now; a file that changed or went away since it was
        scanned is left for the next round."""
        out: list[tuple[Upload, bytes]] = []
        for upload in uploads:
            try:
                data = (self._root / upload.local.path).read_bytes()
            except OSError:
                continue
            digest = digest_bytes(data, self._block_size)
            if digest.content_hash == upload.local.content_hash:
                self._digests[upload.local.key] = digest
                out.append((upload, data))
        return out

    def _record_commits(self, response: CommitResponse, by_path: dict[str, LocalFile], report: SyncReport) -> None:
        recorded = []
        for result in response.results:
            if result.status == "committed" and result.file is not None:
                local = by_path[result.path]
                recorded.append(_entry(local, result.file, self._digests.get(local.key)))
                report.uploaded += 1
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
        slots = asyncio.Semaphore(self._concurrency)

        def advance(amount: int) -> None:
            nonlocal sent
            sent += amount
            self._progress("uploading", sent, total)

        async def send(local: LocalFile) -> None:
            async with slots:
                source = self._root / local.path
                digest = self._digests.get(local.key)
                if digest is None or digest.content_hash != local.content_hash:
                    digest = await hash_file(source, self._block_size)
                if digest.content_hash != local.content_hash:
                    return  # changed while syncing: the next round picks it up
                assert transfer is not None
                await transfer.upload(
                    self._ns, source, digest, progress=advance, previous=self._previous(local), ledger=self._state
                )

        await asyncio.gather(*(send(f) for f in first_by_hash.values()))
        if transfer is not None:
            await self._abort_unfinished(transfer)
        entries = [_commit_entry(u) for u in uploads]
        by_path = {u.local.path: u.local for u in uploads}
        for start in range(0, len(entries), COMMIT_BATCH):
            batch = entries[start : start + COMMIT_BATCH]
            try:
                response = await self._api.commit(self._ns, batch, idempotency_key=uuid.uuid4().hex)
            except ApiError as exc:
                if exc.status == 422:  # content changed under us: next round
                    continue
                raise
            self._record_commits(response, by_path, report)

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

    async def _downloads(self, todo: SyncPlan, transfer: S3Transfer | None, report: SyncReport) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        total = sum(d.file.size for d in todo.downloads)
        received = 0

        def advance(amount: int) -> None:
            nonlocal received
            received += amount
            self._progress("downloading", received, total)

        async def fetch(key: str, file: FileInfo) -> None:
            async with slots:
                target = self._root / file.path
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
                digest: ContentDigest | None = None
                try:
                    if file.content_hash == EMPTY_HASH or file.size == 0:
                        temp.write_bytes(b"")
                    else:
                        assert transfer is not None
                        await transfer.download(self._ns, file.content_hash, file.size, temp, progress=advance)
                        digest = await hash_file(temp, file.block_size)
                        if digest.content_hash != file.content_hash:
                            raise ApiError(0, "Corrupt download", f"{file.path} did not match its hash")
                    mtime_ns = int(file.mtime * 1e9)
                    os.utime(temp, ns=(time.time_ns(), mtime_ns))
                    os.replace(temp, target)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
                stat = target.stat()
                local = LocalFile(key, file.path, stat.st_size, stat.st_mtime_ns, file.content_hash)
                self._state.record([_entry(local, file, digest)])
                report.downloaded += 1

        await asyncio.gather(*(fetch(d.key, d.file) for d in todo.downloads))

    def _local_deletes(self, todo: SyncPlan, report: SyncReport) -> None:
        for delete in todo.local_deletes:
            target = self._root / delete.path
            try:
                stat = target.stat()
            except FileNotFoundError:
                self._state.forget([delete.key])
                continue
            if (stat.st_size, stat.st_mtime_ns) != (delete.expected.size, delete.expected.mtime_ns):
                continue  # changed since we looked: the next round sees an edit against a delete
            target.unlink()
            self._state.forget([delete.key])
            report.deleted_local += 1
            parent = target.parent
            while parent != self._root:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent


def _commit_entry(upload: Upload) -> dict[str, Any]:
    local = upload.local
    return {
        "path": local.path,
        "content_hash": local.content_hash,
        "size": local.size,
        "mtime": local.mtime_ns / 1e9,
        "parent_rev": upload.parent_rev,
    }


@dataclass(slots=True)
class _Counter:
    total: int
    done: int = 0


def _entry(local: LocalFile, file: FileInfo, digest: ContentDigest | None) -> StateEntry:
    blocks = b"".join(digest.block_digests) if digest is not None and len(digest.block_digests) > 1 else None
    return StateEntry(local.key, file.path, local.size, local.mtime_ns, local.content_hash, file.rev, blocks)
