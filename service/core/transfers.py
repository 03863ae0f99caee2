"""Moving bodies: in (streamed through the service, or straight to S3 through presigned URLs) and out
(a short-lived download URL, or streamed through the service).

Layer: core. The streaming upload reads the body a block at a time and keeps at most ``concurrency``
blocks in flight to S3, so its memory is about ``concurrency x block_size`` whatever the file's size. The
service hashes every byte itself, so what it stored is verified by construction. When the client names
the hash up front (``expected_hash``) the parts go straight to the blob's key and a mismatch aborts the
upload before it completes; otherwise the body is assembled under a staging key and copied to its blob key
server-side. Presigned uploads hand out URLs for the blob's key (one PUT, or one per part) and complete
the multipart upload for the client; the client then commits, and the commit verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

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
    DependencyUnavailable,
    FieldError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ValidationFailed,
    VersionConflict,
)
from service.core.files import CLASH, CommitEntry, CommitOutcome, CommitResult, FileService, VerifyOutcome
from service.core.models import Download, FileVersion, Principal, UploadRecord
from service.core.namespaces import NamespaceService
from service.paths import normalize_path
from service.resources import blob_key, staging_key

#: Most part URLs one presigned multipart upload hands out (larger files: credentials or streaming).
MAX_PRESIGNED_PARTS = 1000
#: PutObjects in flight per batch request of small files (memory: this x the largest inline body).
INLINE_CONCURRENCY = 16


class BlobTransfer(Protocol):
    async def put_small(self, key: str, data: io.BytesIO, digest: ContentDigest) -> bool: ...

    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> VerifyOutcome: ...

    async def multipart(
        self,
        key: str,
        blocks: AsyncIterator[io.BytesIO],
        block_size: int,
        concurrency: int,
        on_started: Callable[[str], Awaitable[None]] | None = None,
        expected_hash: str | None = None,
    ) -> ContentDigest: ...

    async def copy(self, source_key: str, target_key: str, size: int, block_size: int, concurrency: int) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str: ...

    async def start_upload(self, key: str) -> str: ...

    async def complete_upload(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None: ...

    def open(self, key: str, byte_range: str | None = None) -> AbstractAsyncContextManager[Download]: ...

    @property
    def bucket(self) -> str: ...


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
    ) -> None:
        self._blobs = blobs
        self._registry = registry
        self._files = files
        self._namespaces = namespaces
        self.block_size = block_size
        self._concurrency = concurrency
        self._presign_seconds = presign_seconds
        self._max_streams = max_streams_per_user
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
            digest = await self._store_stream(ns, blocks, expected_hash)
            parent = precondition.parent_rev
            if parent is None and not precondition.must_be_new:
                try:
                    parent = (await self._files.current(principal, ns, clean, include_deleted=True)).rev
                except NotFound:
                    parent = None
            entry = CommitEntry(clean, digest.content_hash, digest.size, mtime, parent)
            outcome = await self._files.commit(
                principal, ns, [entry], commit_key, verified=frozenset({digest.content_hash})
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
    ) -> ContentDigest:
        """Each block arrives as its own buffer (``block_size`` bytes but the last); none is kept longer
        than its upload needs."""
        head = [await anext(blocks, io.BytesIO())]
        second = await anext(blocks, None)
        if second is None:
            single = head.pop()
            with single.getbuffer() as view:
                digest = digest_bytes(view, self.block_size)
            if expected_hash is not None and digest.content_hash != expected_hash:
                raise _mismatch(expected_hash, digest.content_hash)
            if digest.content_hash != EMPTY_HASH:
                await self._store_small(ns, single, digest)
            return digest
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
            digest = await self._blobs.multipart(
                key, all_blocks(), self.block_size, self._concurrency, started, expected_hash
            )
        except ContentMismatch as exc:
            raise _mismatch(expected_hash or "", str(exc)) from None
        finally:
            for record in records:
                await self._registry.finished(record)
        if expected_hash is None:
            target = blob_key(ns, digest.content_hash)
            if target != key:
                await self._blobs.copy(key, target, digest.size, self.block_size, self._concurrency)
            await self._blobs.delete(key)
        return digest

    async def _store_small(self, ns: str, data: io.BytesIO, digest: ContentDigest) -> None:
        """Store a body of one block the service hashed itself, in one PutObject. Blobs are written only if
        absent; an object already at the key is trusted only once verified (an editor with scoped
        credentials could have put anything there), and replaced if it does not match."""
        key = blob_key(ns, digest.content_hash)
        for _ in range(2):
            if await self._blobs.put_small(key, data, digest):
                return
            if await self._blobs.verify(ns, digest.content_hash, digest.size, self.block_size) == "ok":
                return
        raise DependencyUnavailable("The content's key keeps being overwritten with other bytes; retry shortly.")

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
        service hashed every byte it stores, so nothing needs verifying afterwards: one PutObject per new
        content, at most ``INLINE_CONCURRENCY`` at a time, and no S3 request at all for content sent twice."""
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
            stored: set[str] = set()
            slots = asyncio.Semaphore(INLINE_CONCURRENCY)
            tasks: set[asyncio.Task[None]] = set()

            async def store(data: io.BytesIO, digest: ContentDigest) -> None:
                try:
                    await self._store_small(ns, data, digest)
                finally:
                    slots.release()

            try:
                for index, entry in enumerate(entries):
                    if entry.deleted:
                        continue
                    await slots.acquire()  # back-pressure: no more bodies read than can be stored at once
                    for task in [t for t in tasks if t.done()]:
                        tasks.discard(task)
                        task.result()
                    body = await anext(bodies, None)
                    digest = _inline_digest(index, entry, body, self.block_size)
                    if body is None or digest.content_hash == EMPTY_HASH or digest.content_hash in stored:
                        slots.release()
                        continue
                    stored.add(digest.content_hash)
                    tasks.add(asyncio.create_task(store(io.BytesIO(body), digest)))
                if await anext(bodies, None) is not None:
                    message = "send one body part per entry that is not a delete, in the entries' order"
                    raise ValidationFailed(f"There are more body parts than entries: {message}.")
                for task in list(tasks):
                    await task
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return await self._files.commit(
            principal, ns, entries, commit_key, verified=frozenset(stored), record_verified=False
        )

    # --- presigned URLs -------------------------------------------------------------------------------

    async def presign_upload(self, principal: Principal, ns: str, content_hash: str, size: int) -> PresignedUpload:
        await self._namespaces.authorize(principal, ns, "editor")
        blocks = self._check_claim(content_hash, size)
        if content_hash == EMPTY_HASH or not await self._files.missing_blobs(principal, ns, [content_hash]):
            return PresignedUpload("present")
        key = blob_key(ns, content_hash)
        if blocks <= 1:
            checksum = s3_checksum(content_hash)
            url = await self._blobs.presign(
                "put_object",
                {"Bucket": self._blobs.bucket, "Key": key, "ChecksumSHA256": checksum},
                self._presign_seconds,
            )
            return PresignedUpload("put", url=url, headers={"x-amz-checksum-sha256": checksum})
        if blocks > MAX_PRESIGNED_PARTS:
            raise PayloadTooLarge(
                f"Presigned uploads cover at most {MAX_PRESIGNED_PARTS} parts; upload larger files with "
                "credentials (POST /v1/credentials) or stream them through PUT /v1/ns/{ns}/files/{path}."
            )
        upload_id = await self._blobs.start_upload(key)
        await self._registry.started(upload_id, key, ns, content_hash)
        parts = [
            PresignedPart(
                number,
                await self._blobs.presign(
                    "upload_part",
                    {"Bucket": self._blobs.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
                    self._presign_seconds,
                ),
            )
            for number in range(1, blocks + 1)
        ]
        return PresignedUpload("multipart", upload_id=upload_id, part_size=self.block_size, parts=parts)

    async def complete_upload(
        self, principal: Principal, ns: str, upload_id: str, parts: list[tuple[int, str, str | None]]
    ) -> str:
        """Complete a presigned multipart upload; returns the content hash it was started for."""
        await self._namespaces.authorize(principal, ns, "editor")
        record = await self._registry.find(upload_id)
        if record is None or record.namespace != ns:
            raise NotFound("No such upload in this namespace (it may have been completed or aborted).")
        expected = expected_blocks(record.content_hash)
        numbers = [n for n, _, _ in parts]
        if numbers != list(range(1, expected + 1)):
            message = f"list parts 1 to {expected} in order, each with the ETag S3 returned"
            raise ValidationFailed(f"The parts are incomplete: {message}.", (FieldError("$.parts", message),))
        s3_parts: list[dict[str, Any]] = []
        for number, etag, checksum in parts:
            part: dict[str, Any] = {"PartNumber": number, "ETag": etag}
            if checksum:
                part["ChecksumSHA256"] = checksum
            s3_parts.append(part)
        try:
            await self._blobs.complete_upload(record.key, upload_id, s3_parts)
        except DependencyUnavailable:
            raise  # transient: 503, the client retries
        except Exception as exc:
            raise Conflict(f"S3 refused to complete the upload: {exc}") from None
        await self._registry.finished(record)
        return record.content_hash

    # --- downloads ------------------------------------------------------------------------------------

    async def download_url(self, ns: str, version: FileVersion, expires_in: int) -> str:
        """A short-lived URL for the body, which saves it under the file's name."""
        name = version.path.rpartition("/")[2]
        return await self._blobs.presign(
            "get_object",
            {
                "Bucket": self._blobs.bucket,
                "Key": blob_key(ns, version.content_hash),
                "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            },
            expires_in,
        )

    def open_download(
        self, ns: str, version: FileVersion, byte_range: str | None
    ) -> AbstractAsyncContextManager[Download]:
        return self._blobs.open(blob_key(ns, version.content_hash), byte_range)

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


def _mismatch(expected: str, actual: str) -> ValidationFailed:
    message = f"the body hashes to {actual}, not {expected}; nothing was stored"
    return ValidationFailed(f"The {message}.", (FieldError("X-Content-Hash", message),))
