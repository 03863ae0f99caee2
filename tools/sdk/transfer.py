"""Direct transfers between a local file and S3 with the scoped credentials the service minted.

Uploads go to the namespace's blob key (the content hash): one ``PutObject`` for a body of one block,
else a multipart upload whose parts are the blocks, ``concurrency`` in flight, each sent with its SHA-256
(the digest computed while hashing the file: no byte is hashed twice). S3 verifies each part's checksum,
so a corrupted part is refused on the way in. Objects are created only where none is yet (``PutObject``
and ``CompleteMultipartUpload`` carry ``If-None-Match: *``, which the credentials' policy requires): an
upload that finds the key taken stops there, and the commit verifies what is there. Downloads ask for
exactly the object the service verified (its version id, else its ETag), so a replaced object is refused
(``ContentReplaced``) rather than taken for the file. The requests are ``tools.sdk.s3``'s: signed over the
aiohttp the client already holds, with no AWS SDK to import and open before the first byte moves.

A multipart upload given an ``UploadLedger`` is resumable: its id is remembered before the first part is
sent and forgotten once S3 assembled the object, and a failure leaves it in place (instead of aborting it).
The next attempt lists the parts S3 already holds (``ListParts``), keeps each one whose size and checksum
(or, where the store reports no checksum, whose ETag as the MD5 of the local block) match, and sends only the
rest. Uploads nobody resumes are aborted by the bucket's lifecycle rule after a day.

Every storage request goes through ``_call``: a transient failure (no connection, a connection lost, a
timeout, ``SlowDown``/500/503) is retried with the SDK's one backoff (``tools.sdk.retry``), and what still
fails is raised as the SDK's error (``tools.sdk.errors``) naming the storage endpoint, what was being done
and the local file: no aiohttp exception or S3 error document leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import aiohttp

from service.content import ContentDigest, block_count, content_hash_from_blocks
from service.fanout import bounded
from service.resources import blob_key
from service.wire import AwsCredentials
from tools.sdk.errors import (
    ApiError,
    ConnectError,
    ConnectionLost,
    ContentReplaced,
    Forbidden,
    ProtocolError,
    RequestTimeout,
    StatusError,
    Unavailable,
    connect_reason,
    is_transient,
    status_error,
    stopped_answering,
)
from tools.sdk.retry import retrying
from tools.sdk.s3 import Part, S3Client, S3Error

Progress = Callable[[int], None]
T = TypeVar("T")

#: Seconds to connect to the storage, and to wait for its next bytes, before a request counts as timed out.
_CONNECT_SECONDS = 10.0
_READ_SECONDS = 60.0
#: Most blocks one ranged GET of a download asks for (64 MiB of 8 MiB blocks).
MAX_RANGE_BLOCKS = 8
#: S3 error codes that mean "busy or briefly down: try again" (whatever their HTTP status).
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException"}
)
#: S3 error codes of an upload or object that is not (or no longer) there.
_GONE_CODES = frozenset({"NoSuchUpload", "NoSuchKey", "404"})
#: S3's answers to a conditional create when the key is taken (412), or being written right now (409).
_TAKEN_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
#: S3's answers to a pinned read when the object is not the one pinned any more.
_NOT_PINNED_CODES = frozenset({"PreconditionFailed", "412", "NoSuchVersion", "NoSuchKey", "404"})
#: S3's answers when the credentials themselves are refused: revoked (the role now denies them), expired.
_REFUSED_CODES = frozenset(
    {"AccessDenied", "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidAccessKeyId"}
)


class UploadLedger(Protocol):
    """Where the ids of multipart uploads in progress are kept, by object key, across runs."""

    def upload_id(self, key: str) -> str | None: ...

    def remember_upload(self, key: str, upload_id: str) -> None: ...

    def forget_upload(self, key: str) -> None: ...


class S3Transfer:
    """Transfers with one set of scoped credentials. Given ``renew``, a request S3 refuses for the
    credentials themselves (revoked after their user lost some access, or expired) is sent once more with
    fresh ones from ``renew``; refused again, it is a ``Forbidden`` that says so."""

    def __init__(
        self,
        credentials: AwsCredentials,
        block_size: int,
        *,
        concurrency: int = 8,
        attempts: int = 5,
        renew: Callable[[], Awaitable[AwsCredentials]] | None = None,
    ) -> None:
        self._creds = credentials
        self._block_size = block_size
        self._concurrency = concurrency
        self._attempts = attempts
        self._renew = renew
        self._endpoint = credentials.endpoint_url or f"https://s3.{credentials.region}.amazonaws.com"
        self._http: aiohttp.ClientSession | None = None
        self._client: S3Client | None = None
        self._renewing = asyncio.Lock()
        #: Whether the storage ever answered: a connection refused after that means it stopped answering.
        self._answered = False

    async def __aenter__(self) -> S3Transfer:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency * 2),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_SECONDS, sock_read=_READ_SECONDS),
            auto_decompress=False,  # a blob's bytes are its bytes
            headers={"Accept-Encoding": "identity"},
        )
        self._client = S3Client(self._http, self._creds)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def _s3(self) -> S3Client:
        assert self._client is not None, "use the transfer in an async with block"
        return self._client

    async def upload(
        self,
        ns: str,
        path: Path | int,
        digest: ContentDigest,
        progress: Progress | None = None,
        previous: ContentDigest | None = None,
        ledger: UploadLedger | None = None,
        name: Path | None = None,
    ) -> None:
        """Put ``path`` (already hashed into ``digest``) at its blob key: a path, or a descriptor open for
        reading that the caller closes (``name`` then names the file in errors). With ``previous`` (the
        digest of a version the namespace has), each block whose SHA-256 is unchanged is copied inside S3
        (``UploadPartCopy``) instead of sent: a small change to a big file moves one block."""
        key = blob_key(ns, digest.content_hash)
        shown = path if isinstance(path, Path) else name

        def call(work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
            return self._call("uploading", shown, work)

        if len(digest.block_digests) <= 1:
            data = await asyncio.to_thread(_read_block, path, 0, digest.size)
            sha256 = digest.block_digests[0] if digest.block_digests else None
            if await _created(call(lambda: self._s3.put_object(key, data, sha256, if_none_match=True))) and progress:
                progress(len(data))
            return
        part_count = len(digest.block_digests)
        held: dict[int, tuple[int, str, str]] = {}
        upload_id = ledger.upload_id(key) if ledger is not None else None
        if upload_id is not None:
            kept = await self._parts_held(key, upload_id, path, digest, shown)
            if kept is None:
                upload_id = None
            else:
                held = kept
        if upload_id is None:
            upload_id = await call(lambda: self._s3.create_multipart_upload(key))
            if ledger is not None:
                ledger.remember_upload(key, upload_id)

        reusable = set()
        if previous is not None and len(previous.block_digests) > 1:
            reusable = {
                n
                for n, (old, new) in enumerate(zip(previous.block_digests, digest.block_digests, strict=False), 1)
                if old == new and (n < len(previous.block_digests) or previous.size == digest.size)
            }

        async def part(number: int) -> tuple[int, str, str]:
            if number in held:
                return held[number]
            sha256 = digest.block_digests[number - 1]
            checksum = base64.b64encode(sha256).decode()
            if number in reusable and previous is not None:
                start = (number - 1) * self._block_size
                end = min(previous.size, start + self._block_size) - 1
                source = blob_key(ns, previous.content_hash)
                copied = await call(lambda: self._s3.upload_part_copy(key, upload_id, number, source, start, end))
                return number, copied, checksum
            data = await asyncio.to_thread(_read_block, path, (number - 1) * self._block_size, self._block_size)
            etag = await call(lambda: self._s3.upload_part(key, upload_id, number, data, sha256))
            if progress:
                progress(len(data))
            return number, etag, checksum

        try:
            parts = await bounded(range(1, part_count + 1), part, self._concurrency)
            completed = call(lambda: self._s3.complete_multipart_upload(key, upload_id, parts, if_none_match=True))
            if not await _created(completed):
                await self.abort(key, upload_id)  # the content got there first: free the parts
        except BaseException:
            if ledger is None:  # nobody will resume it; the bucket's lifecycle rule aborts it if this fails too
                with contextlib.suppress(ApiError):
                    await asyncio.shield(self.abort(key, upload_id))
            raise
        if ledger is not None:
            ledger.forget_upload(key)

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload (its parts are freed); one that is already gone is fine."""
        try:
            await self._call("aborting an upload", None, lambda: self._s3.abort_multipart_upload(key, upload_id))
        except ApiError as exc:
            if exc.title != "NoSuchUpload":
                raise

    async def _parts_held(
        self, key: str, upload_id: str, path: Path | int, digest: ContentDigest, shown: Path | None
    ) -> dict[int, tuple[int, str, str]] | None:
        """The parts of an unfinished upload that already hold this file's blocks (None: the upload is gone)."""
        try:
            listed = await self._call("resuming an upload", shown, lambda: self._s3.list_parts(key, upload_id))
        except ApiError as exc:
            if exc.title in _GONE_CODES:
                return None
            raise

        async def matches(part: Part) -> tuple[int, str, str] | None:
            if not 1 <= part.number <= len(digest.block_digests):
                return None
            start = (part.number - 1) * self._block_size
            if part.size != min(self._block_size, digest.size - start):
                return None
            checksum = base64.b64encode(digest.block_digests[part.number - 1]).decode()
            if part.checksum_sha256 is not None:
                same = part.checksum_sha256 == checksum
            else:
                data = await asyncio.to_thread(_read_block, path, start, self._block_size)
                same = part.etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()
            return (part.number, part.etag, checksum) if same else None

        kept = await bounded(listed, matches, self._concurrency)
        return {p[0]: p for p in kept if p is not None}

    async def download(
        self,
        ns: str,
        content_hash: str,
        size: int,
        target: Path | int,
        progress: Progress | None = None,
        *,
        version_id: str | None = None,
        etag: str | None = None,
        block_size: int | None = None,
    ) -> ContentDigest:
        """Fetch a blob into ``target`` (a path, or a descriptor open for writing that the caller closes): of object
        version ``version_id``, else only while the object's ETag is ``etag`` (the file info's ``body_version``/
        ``body_etag``; neither, from an older server: whatever the key holds). ``ContentReplaced`` if the object
        is not that one any more.

        The file is cut into ranges of whole blocks (``block_size``, the content's: by default the transfer's),
        as many as there are slots up to ``MAX_RANGE_BLOCKS`` blocks each, fetched ``concurrency`` at a time with
        one ranged GET each, so every slot works and no more requests are made than that takes (rclone's
        multi-thread downloads take 64 MiB chunks too). Each block is written into place as it arrives and
        hashed there and then (in a worker thread, while the other ranges arrive): the bytes are verified as
        they come instead of read back afterwards. The digest of what was written is returned, for the caller
        to compare its content hash with the one it asked for. A range whose body breaks off is asked for again
        from its first block not yet written. Memory: a block or two per slot."""
        block_size = block_size or self._block_size
        key = blob_key(ns, content_hash)
        pinned = version_id is not None or etag is not None
        if_match = etag if version_id is None else None
        blocks = block_count(size, block_size)
        per_range = max(1, min(MAX_RANGE_BLOCKS, -(-blocks // self._concurrency)))
        if isinstance(target, int):
            fd = target
        else:
            fd = await asyncio.to_thread(os.open, target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        async def fetch_range(first: int) -> list[bytes]:
            last = min(blocks, first + per_range)
            digests: list[bytes] = []  # of the blocks written: kept across attempts, which resume after them
            buffer = bytearray(min(block_size, size))  # each block in turn (a block-sized allocation per range)

            async def attempt() -> None:
                start, end = (first + len(digests)) * block_size, min(size, last * block_size) - 1
                async with self._s3.get_object(key, start, end, version_id=version_id, if_match=if_match) as body:
                    while first + len(digests) < last:
                        offset = (first + len(digests)) * block_size
                        data = await _read_exactly(body, buffer, min(block_size, size - offset))
                        digests.append(await asyncio.to_thread(_write_and_hash, fd, data, offset))
                        if progress:
                            progress(len(data))

            try:
                await self._call("downloading", None, attempt)
            except StatusError as exc:
                if pinned and exc.title in _NOT_PINNED_CODES:
                    raise ContentReplaced(
                        0,
                        "Content replaced",
                        f"the stored body of {content_hash} is not the one the service verified; it was not downloaded",
                        server=exc.server,
                        action="downloading",
                    ) from None
                raise
            return digests

        try:
            ranges = await bounded(range(0, blocks, per_range), fetch_range, self._concurrency)
        finally:
            if not isinstance(target, int):
                await asyncio.to_thread(os.close, fd)
        digests = tuple(digest for found in ranges for digest in found)
        return ContentDigest(content_hash_from_blocks(digests), size, digests)

    async def _call(self, action: str, path: Path | None, work: Callable[[], Awaitable[T]]) -> T:
        """One storage request: retried while it fails transiently, its failure raised as the SDK's error;
        sent once more with renewed credentials if S3 refused these."""
        creds = self._creds
        try:
            return await self._attempts_of(action, path, work)
        except StatusError as exc:
            if self._renew is None or exc.title not in _REFUSED_CODES:
                raise
        async with self._renewing:
            if self._creds is creds:  # the first to notice renews; the others use what it got
                self._creds = await self._renew()
                self._s3.credentials = self._creds
        try:
            return await self._attempts_of(action, path, work)
        except StatusError as exc:
            if exc.title not in _REFUSED_CODES:
                raise
            raise Forbidden(
                exc.status,
                "Storage refused",
                f"{exc.server} refused {action} with fresh credentials too ({exc.title})",
                server=exc.server,
                action=action,
                path=path,
            ) from None

    async def _attempts_of(self, action: str, path: Path | None, work: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                result = await work()
            except ApiError as exc:
                exc.server, exc.action, exc.path = self._endpoint, action, path
                raise
            except Exception as exc:
                translated = _translate(exc, self._endpoint)
                if translated is None:
                    raise
                translated.action, translated.path = action, path
                raise translated from exc
            self._answered = True
            return result

        try:
            return await retrying(once, attempts=self._attempts, retry=is_transient)
        except ConnectError as exc:
            if not self._answered:
                raise
            raise stopped_answering(exc) from None


async def _created(request: Awaitable[Any]) -> bool:
    """Run a conditional create: False if the key was taken (the commit verifies what is there)."""
    try:
        await request
    except StatusError as exc:
        if exc.title in _TAKEN_CODES:
            return False
        raise
    return True


def _translate(exc: Exception, endpoint: str) -> ApiError | None:
    """The SDK's error for S3's refusal or an aiohttp failure (None: not one of theirs, e.g. a local file's)."""
    if isinstance(exc, S3Error):
        if exc.code in _TRANSIENT_CODES or exc.status == 500:
            return Unavailable(exc.status, exc.code, exc.message, server=endpoint)
        return status_error(exc.status, exc.code, exc.message, server=endpoint)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return RequestTimeout(0, "Timed out", f"{endpoint} did not answer in time", server=endpoint)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = connect_reason(exc)
        return ConnectError(0, "Unreachable", f"cannot reach {endpoint}: {reason}", server=endpoint)
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return ConnectionLost(0, "Connection lost", f"the connection to {endpoint} broke", server=endpoint)
    if isinstance(exc, aiohttp.ClientError):  # an answer that is not HTTP as it should be
        return ProtocolError(0, type(exc).__name__, str(exc), server=endpoint)
    return None


async def _read_exactly(body: aiohttp.StreamReader, buffer: bytearray, length: int) -> memoryview:
    """The next ``length`` bytes of a response body, in ``buffer`` (a body that ends sooner is a lost
    connection: retried)."""
    view = memoryview(buffer)
    have = 0
    while have < length:
        chunk = await body.read(length - have)
        if not chunk:
            raise ConnectionLost(0, "Short body", f"the body ended {length - have} bytes short")
        view[have : have + len(chunk)] = chunk
        have += len(chunk)
    return view[:length]


def _write_and_hash(fd: int, data: memoryview, offset: int) -> bytes:
    """Write one downloaded block into place and give its SHA-256 (one thread hop for both)."""
    rest = data
    while rest:
        rest = rest[os.pwrite(fd, rest, offset + len(data) - len(rest)) :]
    return hashlib.sha256(data).digest()


def _read_block(path: Path | int, offset: int, length: int) -> bytes:
    if isinstance(path, int):
        return os.pread(path, length, offset)
    with path.open("rb", buffering=0) as handle:
        handle.seek(offset)
        return handle.read(length)
