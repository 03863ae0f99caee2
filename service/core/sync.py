"""Sync: comparing a client's manifest with the namespace, and the change feed with its long-poll.

Layer: core.

**Compare.** A manifest entry says what the client has at a path (``content_hash``, empty for nothing)
and what it last synced there (``synced_rev``, ``synced_hash``). With those, each path is decided three-way:
changed here (hash differs from the synced one), changed there (the server's rev differs from the synced
one), both (conflict), or neither. In *range* mode (``after``/``through`` given, the manifest holding every
client path in that key range) the service reads the range with a paginated Query and merge-joins it with
the sorted manifest, rclone-style, so it also finds the server's files the client lacks; DynamoDB requests
are about N/1,000 for N files. In *lookup* mode it reads just the entries' paths (BatchGetItem of 100).
The answer lists only paths needing action, plus the feed cursor to follow afterwards (the head read
*before* the compare, so nothing committed meanwhile is missed).

**Feed.** Every commit appended one journal entry at the next sequence number, atomically with its file
writes; reading entries after a cursor therefore never skips or repeats a committed change. A long-poll
(``wait``) registers with the worker's ``HeadWatcher``, which polls the heads of every namespace some request
waits on with one batched read per interval, however many requests wait.

**Membership after the read.** Every answer with namespace content is read first and then checked against the
caller's membership (``NamespaceService.read_as_member``), so a member removed meanwhile gets 404, never
what was committed after the removal. A long-poll re-checks when it wakes, whatever woke it: a commit, the
end of its wait, a shutdown, or the removal itself (the worker that removes a member wakes that member's
long-polls at once; on other workers they answer 404 at their next wake, before any change data is read
out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from service.core.errors import CursorInvalid, ValidationFailed
from service.core.models import FileVersion, JournalEntry, Principal
from service.core.namespaces import NamespaceService
from service.paths import normalize_path, path_key

log = logging.getLogger(__name__)

MAX_COMPARE_ENTRIES = 5000
#: Server files one ranged compare reads at most; past it the answer stops early (``complete_through``),
#: so a response (and the service's memory for it) stays bounded however large the namespace.
MAX_COMPARE_SERVER_FILES = 10_000
MAX_FEED_ENTRIES = 100
MAX_WAIT_SECONDS = 60
_CURSOR = re.compile(r"^s(?P<seq>0|[1-9][0-9]{0,11})$")

Action = Literal["download", "upload", "conflict", "deleted", "up_to_date"]


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    content_hash: str
    synced_rev: int | None
    synced_hash: str | None


@dataclass(frozen=True, slots=True)
class CompareItem:
    path: str
    action: Action
    server: FileVersion | None


@dataclass(frozen=True, slots=True)
class CompareResult:
    items: list[CompareItem]
    up_to_date: int
    cursor: str
    #: None: the whole requested range is answered. Else only keys up to this one are; the client sends
    #: the rest of its page again with ``after`` set to it.
    complete_through: str | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    changes: list[FileVersion]
    cursor: str
    more: bool
    #: Seconds the client should wait before its next long-poll (0: at once).
    backoff: float


class JournalReader(Protocol):
    async def since(self, ns: str, after_seq: int, limit: int) -> list[JournalEntry]: ...

    async def heads(self, namespaces: Sequence[str]) -> dict[str, int]: ...

    def files_in_range(
        self, ns: str, after_key: str | None, through_key: str | None, page_size: int | None = None
    ) -> AsyncIterator[FileVersion]: ...


class FileReader(Protocol):
    async def read(
        self, ns: str, path_keys: Sequence[str], blob_hashes: Sequence[str]
    ) -> tuple[dict[str, FileVersion], Mapping[str, object]]: ...


def encode_cursor(seq: int) -> str:
    return f"s{seq}"


def decode_cursor(cursor: str) -> int:
    match = _CURSOR.match(cursor)
    if match is None:
        raise CursorInvalid("The cursor is malformed; do a full compare (POST .../compare) to get a new one.")
    return int(match.group("seq"))


def decide(entry: ManifestEntry, server: FileVersion | None) -> Action:
    """The three-way decision for one path (see the module docstring)."""
    has_local = entry.content_hash != ""
    changed_here = entry.content_hash != (entry.synced_hash or "")
    if server is None:
        return "upload" if has_local else "up_to_date"
    changed_there = server.rev != entry.synced_rev
    if server.deleted:
        if not has_local:
            return "up_to_date"
        if not changed_there:
            return "upload"  # the client re-created a file it had seen deleted
        return "conflict" if changed_here else "deleted"
    if has_local and entry.content_hash == server.content_hash:
        return "up_to_date"
    if not changed_there:
        return "upload" if changed_here else "up_to_date"
    if changed_here:
        return "conflict"
    return "download"


class HeadWatcher:
    """Wakes long-polls when their namespace's head moves past what they have seen.

    One task per worker polls, every ``interval`` seconds, the heads of the namespaces that have waiters
    (one batched read), and only while someone waits.
    """

    def __init__(self, journal: JournalReader, interval: float) -> None:
        self._journal = journal
        self._interval = interval
        #: Per namespace: (head seen, who waits, the future that wakes them).
        self._waiters: dict[str, list[tuple[int, str, asyncio.Future[int]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._released = False

    async def wait(self, ns: str, seen: int, seconds: float, username: str = "") -> int | None:
        """The new head once it exceeds ``seen``; None when ``seconds`` pass first, or 0 when released
        (and at once, after ``release_all``)."""
        if self._released:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(ns, []).append((seen, username, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="head-watcher")
        try:
            async with asyncio.timeout(seconds):
                return await future
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(ns, [])
            waiting[:] = [(s, u, f) for s, u, f in waiting if f is not future]
            if not waiting:
                self._waiters.pop(ns, None)

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._interval)
            try:
                heads = await self._journal.heads(list(self._waiters))
            except Exception:
                log.warning("polling namespace heads failed; retrying", exc_info=True)
                continue
            for ns, head in heads.items():
                for seen, _, future in self._waiters.get(ns, []):
                    if head > seen and not future.done():
                        future.set_result(head)

    def release_all(self) -> None:
        """Answer every waiting long-poll now, and every later one at once (with nothing new, their cursor
        unchanged): the worker is draining, so clients poll again elsewhere instead of holding the drain
        for their whole wait."""
        self._released = True
        for waiting in self._waiters.values():
            for _, _, future in waiting:
                if not future.done():
                    future.set_result(0)

    def waiting(self, ns: str) -> int:
        """How many long-polls wait on ``ns`` here."""
        return len(self._waiters.get(ns, []))

    async def member_removed(self, ns: str, username: str) -> None:
        """Wake ``username``'s long-polls on ``ns`` now: they re-check their membership and answer 404."""
        for _, waiter, future in self._waiters.get(ns, []):
            if waiter == username and not future.done():
                future.set_result(0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class SyncService:
    def __init__(
        self,
        journal: JournalReader,
        files: FileReader,
        namespaces: NamespaceService,
        watcher: HeadWatcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._journal = journal
        self._files = files
        self._namespaces = namespaces
        self._watcher = watcher
        self._clock = clock

    async def compare(
        self,
        principal: Principal,
        ns: str,
        entries: Sequence[ManifestEntry],
        *,
        ranged: bool,
        after: str | None,
        through: str | None,
    ) -> CompareResult:
        return await self._namespaces.read_as_member(
            principal, ns, "viewer", lambda: self._compare(ns, entries, ranged=ranged, after=after, through=through)
        )

    async def _compare(
        self, ns: str, entries: Sequence[ManifestEntry], *, ranged: bool, after: str | None, through: str | None
    ) -> CompareResult:
        if len(entries) > MAX_COMPARE_ENTRIES:
            raise ValidationFailed.of(
                "$.entries", f"at most {MAX_COMPARE_ENTRIES} entries per request; send the manifest in pages"
            )
        keyed = self._keyed(entries, after, through if ranged else None, ranged)
        head = (await self._journal.heads([ns]))[ns]
        stopped_at = None
        if ranged:
            items, stopped_at = await self._merge(ns, keyed, after, through)
        else:
            current, _ = await self._files.read(ns, list(keyed), [])
            items = [CompareItem(e.path, decide(e, current.get(k)), current.get(k)) for k, e in keyed.items()]
        needing = [i for i in items if i.action != "up_to_date" or _rev_news(i, keyed)]
        return CompareResult(needing, len(items) - len(needing), encode_cursor(head), stopped_at)

    @staticmethod
    def _keyed(
        entries: Sequence[ManifestEntry], after: str | None, through: str | None, ranged: bool
    ) -> dict[str, ManifestEntry]:
        keyed: dict[str, ManifestEntry] = {}
        for index, entry in enumerate(entries):
            path = normalize_path(entry.path, f"$.entries[{index}].path")
            key = path_key(path)
            if key in keyed:
                raise ValidationFailed.of(f"$.entries[{index}].path", "the same path (ignoring case) appears twice")
            if ranged and ((after is not None and key <= after) or (through is not None and key > through)):
                raise ValidationFailed.of(f"$.entries[{index}].path", "outside the range after < path key <= through")
            keyed[key] = ManifestEntry(path, entry.content_hash, entry.synced_rev, entry.synced_hash)
        return keyed

    async def _merge(
        self, ns: str, keyed: dict[str, ManifestEntry], after: str | None, through: str | None
    ) -> tuple[list[CompareItem], str | None]:
        """Merge-join the range's server files with the page; stop after ``MAX_COMPARE_SERVER_FILES``
        server files, returning the last key answered (None: the whole range)."""
        items: list[CompareItem] = []
        seen: set[str] = set()
        read, last, stopped_at = 0, None, None
        async for version in self._journal.files_in_range(ns, after, through):
            key = path_key(version.path)
            if read == MAX_COMPARE_SERVER_FILES:  # one more exists: stop before it
                stopped_at = last
                break
            read, last = read + 1, key
            entry = keyed.get(key)
            if entry is None:
                if not version.deleted:
                    items.append(CompareItem(version.path, "download", version))
            else:
                seen.add(key)
                items.append(CompareItem(entry.path, decide(entry, version), version))
        for key, entry in keyed.items():
            if key not in seen and (stopped_at is None or key <= stopped_at):
                items.append(CompareItem(entry.path, decide(entry, None), None))
        return items, stopped_at

    async def _since(self, ns: str, after: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` entries after the cursor ``after``, in one read: the read starts at the cursor's own
        entry, whose presence proves the cursor (the journal has no gaps); a cursor past the head finds none."""
        if after == 0:
            return await self._journal.since(ns, 0, limit)
        entries = await self._journal.since(ns, after - 1, limit + 1)
        if not entries or entries[0].seq != after:
            raise CursorInvalid(
                "The cursor does not match this namespace's journal (it is ahead of it); do a full compare to get "
                "a new one."
            )
        return entries[1:]

    async def changes(self, principal: Principal, ns: str, cursor: str | None, limit: int, wait: float) -> FeedPage:
        after = 0

        async def page() -> list[JournalEntry]:
            nonlocal after
            after = decode_cursor(cursor) if cursor else 0
            return await self._since(ns, after, limit + 1)

        entries = await self._namespaces.read_as_member(principal, ns, "viewer", page)
        if not entries and wait > 0:
            if await self._watcher.wait(ns, after, min(wait, MAX_WAIT_SECONDS), principal.username):
                entries = await self._namespaces.read_as_member(principal, ns, "viewer", page)
            else:
                # Nothing new (the wait ended, a shutdown, or a removal released it): still re-checked, so a
                # member removed while waiting hears 404 rather than "nothing changed".
                await self._namespaces.authorize(principal, ns, "viewer")
        more = len(entries) > limit
        entries = entries[:limit]
        changes = [change for entry in entries for change in entry.changes]
        last = entries[-1].seq if entries else after
        return FeedPage(changes, encode_cursor(last), more, 0.0)


def _rev_news(item: CompareItem, keyed: dict[str, ManifestEntry]) -> bool:
    """An up-to-date path is still reported when the client's synced rev is stale (same content, new
    rev), so it can record the rev and not conflict on its next change."""
    entry = keyed.get(path_key(item.path))
    return bool(
        item.server is not None
        and entry is not None
        and not item.server.deleted
        and entry.synced_rev != item.server.rev
        and entry.content_hash == item.server.content_hash
    )
