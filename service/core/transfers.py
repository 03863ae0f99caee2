"""Moving bodies: in (streamed through the service, straight to S3 through presigned URLs, or many small
ones in one pack) and out (a short-lived download URL, streamed through the service, or many small bodies
at once, framed).

Layer: core. The streaming upload reads the body a block at a time and keeps at most ``concurrency``
blocks in flight to S3, so its memory is about ``concurrency x block_size`` whatever the file's size. The
service hashes every byte itself, so what it stored is verified by construction. When the client names
the hash up front (``expected_hash``) the parts go straight to the blob's key and a mismatch aborts the
upload before it completes; otherwise the body is assembled under a staging key and copied to its blob key
server-side. Presigned uploads hand out URLs for the blob's key (one PUT, or one per part) and complete
the multipart upload for the client; the client then commits, and the commit verifies.

Small files sent together (``inline_commit``) are stored as one pack (``service.core.packs``): the commit
reads what the namespace already holds, and only content it lacks goes into the pack, one PutObject. A
packed body is read with a ranged GET of exactly its bytes, hashed before any byte is served; downloads of
packed files therefore always go through the service (no redirect), and ``fetch`` serves many small bodies
in one response, reading a pack whole when most of it is wanted.

Verified content never changes: every object is created under its blob key only if nothing is there
(``If-None-Match: *``); when something is, it is verified instead of replaced. Downloads read exactly the
object that was verified (its version id, else its ETag), so an object replaced behind the service's back
is never served under the old hash: the service verifies what is there now, serves it if it is the same
content, and otherwise refuses the download (``ContentReplaced``) and forgets the content, so that the
next upload of it repairs the namespace. A packed body that is not what its index says (the pack gone,
shorter, or other bytes there) is never served either: its content is looked for where else the namespace
holds it (its record, its loose blob), else refused the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from service.content import (
    EMPTY_HASH,
    MAX_FILE_BLOCKS,
    ContentDigest,
    ContentMismatch,
    block_count,
    claim_problem,
    digest_bytes,
    expected_blocks,
    parse_content_hash,
    s3_checksum,
)
from service.core.errors import (
    Conflict,
    ContentReplaced,
    DependencyUnavailable,
    FieldError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ValidationFailed,
    VersionConflict,
)
from service.core.files import CLASH, CommitEntry, CommitOutcome, CommitResult, FileService, Offered, Stored
from service.core.models import (
    BodyChanged,
    BodyRef,
    Download,
    FileVersion,
    PackRecord,
    Principal,
    UploadedPart,
    UploadRecord,
    Verification,
)
from service.core.namespaces import NamespaceService
from service.core.packs import PACK_ID, PackWriter, Run, Wanted, body_matches, new_pack_id, plan_runs
from service.fanout import bounded
from service.paths import normalize_path
from service.resources import blob_key, pack_key, staging_key

log = logging.getLogger(__name__)

#: Most part URLs one presigned multipart upload hands out (larger files: credentials or streaming).
MAX_PRESIGNED_PARTS = 1000
#: Bodies one fetch request may ask for (``POST .../blobs:fetch``).
MAX_FETCH_ITEMS = 1000
#: Reads of one fetch request in flight at once (a pack's run, or one body each), and bodies read but not
#: yet sent: at most ``FETCH_CONCURRENCY + FETCH_QUEUE`` bodies held per request.
FETCH_CONCURRENCY = 4
FETCH_QUEUE = 16


class BlobTransfer(Protocol):
    async def put_small(self, key: str, data: io.BytesIO, digest: ContentDigest) -> BodyRef | None: ...

    async def put_pack(self, key: str, data: bytearray) -> BodyRef | None: ...

    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> Verification: ...

    async def multipart(
        self,
        key: str,
        blocks: AsyncIterator[io.BytesIO],
        block_size: int,
        concurrency: int,
        on_started: Callable[[str], Awaitable[None]] | None = None,
        expected_hash: str | None = None,
    ) -> tuple[ContentDigest, BodyRef | None]: ...

    async def copy(
        self, source_key: str, target_key: str, size: int, block_size: int, concurrency: int
    ) -> BodyRef | None: ...

    async def delete(self, key: str) -> None: ...

    async def current(self, key: str) -> BodyRef | None: ...

    async def presign_put(self, key: str, checksum: str, expires_in: int) -> tuple[str, dict[str, str]]: ...

    async def presign_part(self, key: str, upload_id: str, number: int, expires_in: int) -> str: ...

    async def presign_get(self, key: str, body: BodyRef, filename: str, expires_in: int) -> str: ...

    async def start_upload(self, key: str) -> str: ...

    async def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None: ...

    def open(
        self, key: str, byte_range: str | None = None, body: BodyRef | None = None
    ) -> AbstractAsyncContextManager[Download]: ...


class UploadRegistry(Protocol):
    async def started(self, upload_id: str, key: str, namespace: str, content_hash: str) -> UploadRecord: ...

    async def find(self, upload_id: str) -> UploadRecord | None: ...

    async def finished(self, record: UploadRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class PresignedPart:
    number: int
    url: str


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    kind: Literal["present", "put", "multipart"]
    url: str | None = None
    headers: dict[str, str] | None = None
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[PresignedPart] | None = None


@dataclass(frozen=True, slots=True)
class FetchItem:
    """A body a client wants: its content hash and size, and where its file info says it is stored."""

    content_hash: str
    size: int
    body: BodyRef


@dataclass(frozen=True, slots=True)
class Fetched:
    """One answer of a fetch: item ``index``'s verified bytes, or why there are none (``problem``)."""

    index: int
    content_hash: str
    data: bytes | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class StreamPrecondition:
    """What the streaming PUT's conditional headers ask: ``parent_rev`` (If-Match) or ``must_be_new``
    (If-None-Match: *); neither means "replace whatever is current"."""

    parent_rev: int | None = None
    must_be_new: bool = False


class TransferService:
    def __init__(
        self,
        blobs: BlobTransfer,
        registry: UploadRegistry,
        files: FileService,
        namespaces: NamespaceService,
        *,
        block_size: int,
        concurrency: int,
        presign_seconds: int,
        max_streams_per_user: int = 4,
        record_packed: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._blobs = blobs
        self._registry = registry
        self._files = files
        self._namespaces = namespaces
        self.block_size = block_size
        self._concurrency = concurrency
        self._presign_seconds = presign_seconds
        self._max_streams = max_streams_per_user
        #: Whether content stored in packs gets a blob record (exact dedup across packs, one more
        #: transaction action per new file) or only its versions name it.
        self._record_packed = record_packed
        self._clock = clock
        #: Uploads streaming through this worker now, per user.
        self._streams: dict[str, int] = {}

    # --- streaming through the service --------------------------------------------------------------

    async def stream_put(
        self,
        principal: Principal,
        ns: str,
        path: str,
        blocks: AsyncIterator[io.BytesIO],
        *,
        expected_hash: str | None,
        precondition: StreamPrecondition,
        mtime: float,
        commit_key: str | None,
    ) -> CommitResult:
        await self._namespaces.authorize(principal, ns, "editor")
        with self._stream_slot(principal.username):
            clean = normalize_path(path, "path")
            if expected_hash is not None and parse_content_hash(expected_hash) is None:
                raise ValidationFailed(
                    "X-Content-Hash is not a content hash.", (FieldError("X-Content-Hash", "malformed"),)
                )
            digest, body = await self._store_stream(ns, blocks, expected_hash)
            parent = precondition.parent_rev
            if parent is None and not precondition.must_be_new:
                try:
                    parent = (await self._files.current(principal, ns, clean, include_deleted=True)).rev
                except NotFound:
                    parent = None
            entry = CommitEntry(clean, digest.content_hash, digest.size, mtime, parent)
            outcome = await self._files.commit(
                principal,
                ns,
                [entry],
                commit_key,
                verified=frozenset({digest.content_hash}),
                bodies={digest.content_hash: body},
            )
            result = outcome.results[0]
            if result.status == "conflict":
                keep = (
                    "at another path" if (result.reason or "").startswith(CLASH) else "with the current rev as parent"
                )
                raise VersionConflict(
                    f"{clean!r} was not written: {result.reason}. The body was stored; commit it {keep} to keep it.",
                    current=result.current,
                )
            return result

    @contextlib.contextmanager
    def _stream_slot(self, username: str) -> Iterator[None]:
        """One of the user's ``max_streams_per_user`` streaming uploads in this worker, or 429."""
        if self._streams.get(username, 0) >= self._max_streams:
            raise RateLimited(
                f"At most {self._max_streams} uploads through the service at once per user; wait for one to end.",
                retry_after=1,
            )
        self._streams[username] = self._streams.get(username, 0) + 1
        try:
            yield
        finally:
            self._streams[username] -= 1
            if not self._streams[username]:
                del self._streams[username]

    async def _store_stream(
        self, ns: str, blocks: AsyncIterator[io.BytesIO], expected_hash: str | None
    ) -> tuple[ContentDigest, BodyRef]:
        """Each block arrives as its own buffer (``block_size`` bytes but the last); none is kept longer
        than its upload needs. Returns the digest and the object that holds the content."""
        head = [await anext(blocks, io.BytesIO())]
        second = await anext(blocks, None)
        if second is None:
            single = head.pop()
            with single.getbuffer() as view:
                digest = digest_bytes(view, self.block_size)
            if expected_hash is not None and digest.content_hash != expected_hash:
                raise _mismatch(expected_hash, digest.content_hash)
            if digest.content_hash == EMPTY_HASH:
                return digest, BodyRef()
            return digest, await self._store_small(ns, single, digest)
        head.append(second)
        del second

        async def all_blocks() -> AsyncIterator[io.BytesIO]:
            while head:
                yield head.pop(0)
            count = 2
            async for block in blocks:
                count += 1
                if count > MAX_FILE_BLOCKS:
                    raise PayloadTooLarge(
                        f"A file may have at most {MAX_FILE_BLOCKS} blocks of {self.block_size} bytes."
                    )
                yield block

        key = blob_key(ns, expected_hash) if expected_hash else staging_key(ns, uuid.uuid4().hex)
        records: list[UploadRecord] = []

        async def started(upload_id: str) -> None:
            records.append(await self._registry.started(upload_id, key, ns, expected_hash or ""))

        try:
            digest, stored = await self._blobs.multipart(
                key, all_blocks(), self.block_size, self._concurrency, started, expected_hash
            )
        except ContentMismatch as exc:
            raise _mismatch(expected_hash or "", str(exc)) from None
        finally:
            for record in records:
                await self._registry.finished(record)
        if expected_hash is not None:
            # The key was taken when this upload completed: the same content is as good as ours; other
            # bytes are deleted, and the body (consumed by now) must be sent again.
            found = stored or await self._verify_taken(ns, digest)
            if found is None:
                raise _keeps_changing()
            return digest, found
        try:
            for _ in range(2):
                target = blob_key(ns, digest.content_hash)
                found = await self._blobs.copy(key, target, digest.size, self.block_size, self._concurrency)
                if found is not None or (found := await self._verify_taken(ns, digest)) is not None:
                    return digest, found
        finally:
            await self._blobs.delete(key)
        raise _keeps_changing()

    async def _verify_taken(self, ns: str, digest: ContentDigest) -> BodyRef | None:
        """Something was at the content's key when the service went to create it: the object, if it is
        this content. If not, it was deleted (other bytes) or is gone, and so is any record of the content:
        None, and the caller stores the content itself."""
        verified = await self._blobs.verify(ns, digest.content_hash, digest.size, self.block_size)
        if verified.outcome == "ok":
            return verified.body
        await self._files.forget_blob(ns, digest.content_hash, None)
        return None

    async def _store_small(self, ns: str, data: io.BytesIO, digest: ContentDigest) -> BodyRef:
        """Store a body of one block the service hashed itself, in one PutObject, and return the object
        holding it. Blobs are written only if absent; an object already at the key is trusted only once
        verified (an editor with scoped credentials could have put anything there), and replaced if it
        does not match."""
        key = blob_key(ns, digest.content_hash)
        for _ in range(2):
            stored = await self._blobs.put_small(key, data, digest)
            if stored is not None or (stored := await self._verify_taken(ns, digest)) is not None:
                return stored
        raise _keeps_changing()

    # --- many small files in one request --------------------------------------------------------------

    async def inline_commit(
        self,
        principal: Principal,
        ns: str,
        entries: Sequence[CommitEntry],
        bodies: AsyncIterator[bytes],
        commit_key: str | None,
        *,
        max_file: int,
    ) -> CommitOutcome:
        """Store the bodies sent with ``entries`` (one per entry that is not a delete, in order) and commit
        them all, as ``FileService.commit`` does. Every entry is checked before any body is read; each body
        must be exactly its entry's size and hash to its content hash, or nothing is committed (422). The
        service hashed every byte it stores, so nothing needs verifying afterwards. The content the
        namespace lacks (no record of it, no version the commit read holds it) goes into one pack, one
        PutObject; content sent twice, or already there, costs no S3 request at all."""
        await self._namespaces.authorize(principal, ns, "editor")
        self._files.check(entries, commit_key)
        oversized = [
            FieldError(f"$.entries[{i}].size", f"a file sent in a batch is at most {max_file} bytes")
            for i, e in enumerate(entries)
            if not e.deleted and e.size > max_file
        ]
        if oversized:
            raise ValidationFailed(
                f"{len(oversized)} entries are too large to send in a batch: {oversized[0].path}; upload them "
                "with credentials or presigned URLs and commit them.",
                tuple(oversized),
            )
        with self._stream_slot(principal.username):
            writer = PackWriter()  # the bodies, each once, as they arrive: the pack to be, unless known
            for index, entry in enumerate(entries):
                if entry.deleted:
                    continue
                body = await anext(bodies, None)
                digest = _inline_digest(index, entry, body, self.block_size)
                if body is not None and digest.content_hash != EMPTY_HASH:
                    writer.add(digest.content_hash, body)
                del body
            if await anext(bodies, None) is not None:
                message = "send one body part per entry that is not a delete, in the entries' order"
                raise ValidationFailed(f"There are more body parts than entries: {message}.")

            async def store(hashes: list[str]) -> Stored:
                return await self._store_pack(ns, writer, hashes)

            return await self._files.commit(
                principal,
                ns,
                entries,
                commit_key,
                record_verified=self._record_packed,
                offered=Offered(writer.hashes, store),
            )

    async def _store_pack(self, ns: str, writer: PackWriter, hashes: list[str]) -> Stored:
        """One pack of the bodies ``hashes`` names, created only if absent (a pack id is random: something
        at its key means an earlier attempt of this very PUT got there and its answer was lost; that object
        is left for the garbage collector and the pack is stored again under a new id)."""
        pack, entries = writer.finish(hashes)
        for _ in range(2):
            pack_id = new_pack_id()
            stored = await self._blobs.put_pack(pack_key(ns, pack_id), pack)
            if stored is not None:
                refs = {e.content_hash: BodyRef(stored.version_id, stored.etag, pack_id, e.offset) for e in entries}
                return Stored(refs, (PackRecord(pack_id, len(pack), len(entries), self._clock(), stored),))
        raise _keeps_changing()

    # --- presigned URLs -------------------------------------------------------------------------------

    async def presign_upload(self, principal: Principal, ns: str, content_hash: str, size: int) -> PresignedUpload:
        await self._namespaces.authorize(principal, ns, "editor")
        blocks = self._check_claim(content_hash, size)
        if content_hash == EMPTY_HASH or await self._still_present(ns, content_hash):
            return PresignedUpload("present")
        key = blob_key(ns, content_hash)
        if blocks <= 1:
            url, headers = await self._blobs.presign_put(key, s3_checksum(content_hash), self._presign_seconds)
            return PresignedUpload("put", url=url, headers=headers)
        if blocks > MAX_PRESIGNED_PARTS:
            raise PayloadTooLarge(
                f"Presigned uploads cover at most {MAX_PRESIGNED_PARTS} parts; upload larger files with "
                "credentials (POST /v1/credentials) or stream them through PUT /v1/ns/{ns}/files/{path}."
            )
        upload_id = await self._blobs.start_upload(key)
        await self._registry.started(upload_id, key, ns, content_hash)
        parts = [
            PresignedPart(number, await self._blobs.presign_part(key, upload_id, number, self._presign_seconds))
            for number in range(1, blocks + 1)
        ]
        return PresignedUpload("multipart", upload_id=upload_id, part_size=self.block_size, parts=parts)

    async def _still_present(self, ns: str, content_hash: str) -> bool:
        """Whether the namespace has this content verified, and the object verified is still what its key
        holds (one HeadObject). An object replaced since is verified again: the same content keeps the
        record (now naming it), other bytes are deleted and the record forgotten, so it is uploaded again."""
        record = await self._files.blob_record(ns, content_hash)
        if record is None:
            return False
        if record.body.packed:
            return True  # packs are written by the service alone; one found damaged is forgotten when read
        key = blob_key(ns, content_hash)
        now = await self._blobs.current(key)
        if now is not None and _same_object(record.body, now):
            return True
        return await self._reverify(ns, content_hash, record.size, record.body) is not None

    async def _reverify(self, ns: str, content_hash: str, size: int, broken: BodyRef) -> BodyRef | None:
        """The object ``broken`` named is no longer at the content's key (replaced or gone): verify what is
        there now. The same content: its record now names that object, which is returned. Anything else
        (deleted if it was other bytes): the content is forgotten, None."""
        verified = await self._blobs.verify(ns, content_hash, size, self.block_size)
        if verified.outcome == "ok":
            await self._files.record_blob(ns, content_hash, size, verified.body)
            return verified.body
        log.warning("the stored body of %s in %s was replaced behind the service's back", content_hash, ns)
        await self._files.forget_blob(ns, content_hash, broken)
        return None

    async def complete_upload(
        self, principal: Principal, ns: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> str:
        """Complete a presigned multipart upload; returns the content hash it was started for."""
        await self._namespaces.authorize(principal, ns, "editor")
        record = await self._registry.find(upload_id)
        if record is None or record.namespace != ns:
            raise NotFound("No such upload in this namespace (it may have been completed or aborted).")
        expected = expected_blocks(record.content_hash)
        numbers = [part.number for part in parts]
        if numbers != list(range(1, expected + 1)):
            message = f"list parts 1 to {expected} in order, each with the ETag S3 returned"
            raise ValidationFailed(f"The parts are incomplete: {message}.", (FieldError("$.parts", message),))
        try:
            await self._blobs.complete_upload(record.key, upload_id, parts)
        except DependencyUnavailable:
            raise  # transient: 503, the client retries
        except Exception as exc:
            raise Conflict(f"S3 refused to complete the upload: {exc}") from None
        await self._registry.finished(record)
        return record.content_hash

    # --- downloads ------------------------------------------------------------------------------------

    async def download_url(self, ns: str, version: FileVersion, expires_in: int) -> str | None:
        """A short-lived URL for exactly the verified object (its version), which saves it under the file's
        name; None when the version names no object version (an unversioned store, or a version older
        than pinning with its ETag only): a redirect cannot pin an ETag, so the body goes through
        ``open_download`` instead; and None for a body in a pack, which is served only once hashed (a
        redirect to its range could be followed without the range)."""
        if version.body.packed or (version.body_version is None and version.body_etag is not None):
            return None
        name = version.path.rpartition("/")[2]
        return await self._blobs.presign_get(blob_key(ns, version.content_hash), version.body, name, expires_in)

    @contextlib.asynccontextmanager
    async def open_download(self, ns: str, version: FileVersion, byte_range: str | None) -> AsyncIterator[Download]:
        """The body of ``version``: exactly the object verified for it. If that object is gone or was
        replaced, what the key holds now is verified and served if it is the same content; otherwise the
        download is refused (``ContentReplaced``) and the content forgotten: never other bytes under this
        hash. A body in a pack is read (its range), hashed and then served from memory (it is small)."""
        body = version.body
        if body.packed:
            what = f"{version.path!r} (rev {version.rev})"
            yield _buffered(await self._small_body(ns, version.content_hash, version.size, body, what), byte_range)
            return
        key = blob_key(ns, version.content_hash)
        try:
            async with self._blobs.open(key, byte_range, body if body.pinned else None) as download:
                yield download
                return
        except BodyChanged:
            pass
        now = await self._reverify(ns, version.content_hash, version.size, body)
        replaced = ContentReplaced(
            f"The stored body of {version.path!r} (rev {version.rev}) was replaced behind the service's back "
            "and is not served; upload the content again to repair it."
        )
        if now is None:
            raise replaced
        try:
            async with self._blobs.open(key, byte_range, now) as download:
                yield download
        except BodyChanged:  # replaced again in the meantime
            raise replaced from None

    async def _small_body(self, ns: str, content_hash: str, size: int, body: BodyRef, what: str) -> bytes:
        """The verified bytes of a small body stored at ``body`` (a pack's range, or a loose blob); if they
        are not there (gone, short, other bytes), the content from wherever else the namespace holds it
        (its record, its loose blob, each verified); else ``ContentReplaced``: never other bytes."""
        data = await self._read_small(ns, content_hash, size, body)
        if data is not None:
            return data
        log.warning("the stored body of %s in %s is not at %s; looking for it elsewhere", content_hash, ns, body)
        record = await self._files.blob_record(ns, content_hash)
        if record is not None and record.size != size:  # a fetch that claims another size: nothing to repair
            raise ContentReplaced(f"The content {content_hash} is {record.size} bytes, not {size}; nothing was served.")
        if record is not None and record.body != body:
            if (data := await self._read_small(ns, content_hash, size, record.body)) is not None:
                return data
            body = record.body
        if record is not None and record.body == body:
            await self._files.forget_blob(ns, content_hash, body)
        now = await self._reverify(ns, content_hash, size, body if not body.packed else BodyRef())
        if now is not None and (data := await self._read_small(ns, content_hash, size, now)) is not None:
            return data
        raise ContentReplaced(
            f"The stored body of {what} is missing or damaged and is not served; upload the content again to repair it."
        )

    async def _read_small(self, ns: str, content_hash: str, size: int, body: BodyRef) -> bytes | None:
        """The bytes at ``body`` if they are exactly the content (None: gone, short, or other bytes)."""
        if body.pack is not None and body.offset is not None:
            key, byte_range = pack_key(ns, body.pack), f"bytes={body.offset}-{body.offset + size - 1}"
        else:
            key, byte_range = blob_key(ns, content_hash), None
        try:
            async with self._blobs.open(key, byte_range, body) as download:
                data = await _read_at_most(download.chunks, size + 1)
        except BodyChanged:
            return None
        return data if body_matches(data, content_hash, size) else None

    # --- many small bodies at once ----------------------------------------------------------------------

    async def fetch(
        self, principal: Principal, ns: str, items: Sequence[FetchItem], *, max_file: int
    ) -> AsyncGenerator[Fetched, None]:
        """The verified bytes of each item (each at most ``max_file``, at most ``MAX_FETCH_ITEMS``), in
        the order they are read: bodies in packs by runs (``plan_runs``: a pack most of which is wanted in
        one read), loose ones one read each, ``FETCH_CONCURRENCY`` reads at a time. Every body is hashed
        before it is yielded; one that is not where the client says (or not what its index says) is looked
        for as a download would (``_small_body``), else answered with its problem and no bytes."""
        self._check_fetch(items, max_file)
        await self._namespaces.authorize(principal, ns, "viewer")
        packed = [
            (i.body, Wanted(n, i.content_hash, i.size, i.body.offset or 0))
            for n, i in enumerate(items)
            if i.body.packed and i.size > 0
        ]
        loose = [(n, i) for n, i in enumerate(items) if not i.body.packed and i.size > 0]
        empty = [n for n, i in enumerate(items) if i.size == 0]
        queue: asyncio.Queue[Fetched | None] = asyncio.Queue(FETCH_QUEUE)

        async def fetch(unit: Run | tuple[int, FetchItem]) -> None:
            if isinstance(unit, Run):
                await self._fetch_run(ns, unit, queue)
            else:
                await self._fetch_one(ns, *unit, queue)

        async def produce() -> None:
            try:
                for n in empty:
                    await queue.put(Fetched(n, items[n].content_hash, b""))
                units: list[Run | tuple[int, FetchItem]] = [*plan_runs(packed), *loose]
                await bounded(units, fetch, FETCH_CONCURRENCY)
            finally:
                await queue.put(None)

        producer = asyncio.create_task(produce())
        try:
            while (frame := await queue.get()) is not None:
                yield frame
            await producer
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    def _check_fetch(self, items: Sequence[FetchItem], max_file: int) -> None:
        if not 0 < len(items) <= MAX_FETCH_ITEMS:
            message = f"items must hold 1 to {MAX_FETCH_ITEMS} bodies"
            raise ValidationFailed(f"The {message}.", (FieldError("$.items", message),))
        errors = []
        for n, item in enumerate(items):
            where = f"$.items[{n}]"
            problem = claim_problem(item.content_hash, item.size, self.block_size)
            if problem is not None:
                errors.append(FieldError(f"{where}.{problem[0]}", problem[1]))
            elif item.size > max_file:
                message = f"at most {max_file} bytes a body: fetch larger files with GET .../files/<path>"
                errors.append(FieldError(f"{where}.size", message))
            if item.body.pack is not None and not PACK_ID.fullmatch(item.body.pack):
                errors.append(FieldError(f"{where}.body_pack", "not a pack id"))
            if (item.body.pack is None) != (item.body.offset is None):
                errors.append(FieldError(f"{where}.body_offset", "body_pack and body_offset go together"))
        if errors:
            first = errors[0]
            raise ValidationFailed(f"{len(errors)} invalid items: {first.path}: {first.message}.", tuple(errors))

    async def _fetch_run(self, ns: str, run: Run, queue: asyncio.Queue[Fetched | None]) -> None:
        """One ranged read of a pack, each wanted body cut from it and hashed as it streams past; those it
        does not hold as its index says are looked for one by one."""
        left = list(run.wanted)
        missed = []
        assert run.pack.pack is not None
        try:
            async with self._blobs.open(pack_key(ns, run.pack.pack), f"bytes={run.start}-{run.end}", run.pack) as got:
                reader = _RangeReader(got.chunks, run.start)
                while left:
                    want = left[0]
                    data = await reader.take(want.offset, want.size)
                    if data is None:
                        break  # the pack ends early (or the range was asked twice out of order)
                    left.pop(0)
                    if body_matches(data, want.content_hash, want.size):
                        await queue.put(Fetched(want.index, want.content_hash, data))
                    else:
                        missed.append(want)
        except BodyChanged:
            pass
        for want in missed + left:
            body = BodyRef(run.pack.version_id, run.pack.etag, run.pack.pack, want.offset)
            await queue.put(await self._fetch_answer(ns, want.index, want.content_hash, want.size, body))

    async def _fetch_one(self, ns: str, index: int, item: FetchItem, queue: asyncio.Queue[Fetched | None]) -> None:
        await queue.put(await self._fetch_answer(ns, index, item.content_hash, item.size, item.body))

    async def _fetch_answer(self, ns: str, index: int, content_hash: str, size: int, body: BodyRef) -> Fetched:
        try:
            data = await self._small_body(ns, content_hash, size, body, content_hash)
        except ContentReplaced as exc:
            return Fetched(index, content_hash, None, exc.detail)
        return Fetched(index, content_hash, data)

    def _check_claim(self, content_hash: str, size: int) -> int:
        """The number of blocks of a claimed body; 413 past the size limit, 422 if the claim cannot be."""
        problem = claim_problem(content_hash, size, self.block_size)
        if problem is not None:
            field, message = problem
            if field == "size" and size > 0:
                raise PayloadTooLarge(f"A file may have {message}.")
            raise ValidationFailed.of(f"$.{field}", message)
        return block_count(size, self.block_size)


def _inline_digest(index: int, entry: CommitEntry, body: bytes | None, block_size: int) -> ContentDigest:
    """The body's digest, if it is exactly what entry ``index`` says; else the 422 that says how not."""
    where = f"$.entries[{index}]"
    if body is None:
        message = f"entries[{index}] has no body part: send one per entry that is not a delete, in order"
        raise ValidationFailed(f"A body is missing: {message}.", (FieldError(where, message),))
    if len(body) != entry.size:
        message = f"its body part holds {len(body)} bytes, not the {entry.size} of its size"
        raise ValidationFailed(f"entries[{index}]: {message}.", (FieldError(f"{where}.size", message),))
    digest = digest_bytes(body, block_size)
    if digest.content_hash != entry.content_hash:
        message = f"its body part hashes to {digest.content_hash}, not {entry.content_hash}"
        raise ValidationFailed(f"entries[{index}]: {message}.", (FieldError(f"{where}.content_hash", message),))
    return digest


async def _read_at_most(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The chunks joined, but never more than ``limit`` bytes read (a body longer than asked for is cut)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


class _RangeReader:
    """Cuts bodies out of one ranged read as it streams, in offset order, holding little more than one body
    at a time."""

    def __init__(self, chunks: AsyncIterator[bytes], start: int) -> None:
        self._chunks = chunks
        #: The offset of ``_buffer[_head]``: bytes before ``_head`` are spent.
        self._position = start
        self._buffer = bytearray()
        self._head = 0
        #: The last body taken, for a second request of the same bytes.
        self._last: tuple[int, int, bytes] | None = None

    async def take(self, offset: int, size: int) -> bytes | None:
        """Bytes ``offset`` to ``offset + size``; None when the read ended first or they lie behind."""
        if self._last is not None and self._last[:2] == (offset, size):
            return self._last[2]
        if offset < self._position or not await self._fill(offset - self._position + size):
            return None
        start = self._head + offset - self._position
        data = bytes(self._buffer[start : start + size])
        self._head, self._position = start + size, offset + size
        if self._head > len(self._buffer) // 2:
            del self._buffer[: self._head]
            self._head = 0
        self._last = (offset, size, data)
        return data

    async def _fill(self, want: int) -> bool:
        """Read on until ``want`` unspent bytes are held; False if the read ends first."""
        while len(self._buffer) - self._head < want:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                return False
            self._buffer += chunk
        return True


def _buffered(data: bytes, byte_range: str | None) -> Download:
    """A body held in memory as a download, cut to ``byte_range`` (``bytes=a-b``, ``a-`` or ``-n``, its
    bounds within the body, as the API layer makes them)."""
    total = len(data)
    start, end = 0, total - 1
    if byte_range:
        first, _, last = byte_range.removeprefix("bytes=").partition("-")
        if first:
            start, end = int(first), int(last) if last else total - 1
        else:
            start = max(0, total - int(last))
    part = data[start : end + 1]

    async def chunks() -> AsyncIterator[bytes]:
        yield part

    content_range = f"bytes {start}-{end}/{total}" if byte_range else None
    return Download(chunks(), len(part), total, content_range)


def _same_object(recorded: BodyRef, now: BodyRef) -> bool:
    """Is the object at the key now the one recorded? By version id where the store has them, else by
    ETag; a record older than pinning names nothing and is taken as it is."""
    if not recorded.pinned:
        return True
    if recorded.version_id is not None:
        return recorded.version_id == now.version_id
    return recorded.etag == now.etag


def _keeps_changing() -> DependencyUnavailable:
    return DependencyUnavailable("The content's key keeps being overwritten with other bytes; retry shortly.")


def _mismatch(expected: str, actual: str) -> ValidationFailed:
    message = f"the body hashes to {actual}, not {expected}; nothing was stored"
    return ValidationFailed(f"The {message}.", (FieldError("X-Content-Hash", message),))
