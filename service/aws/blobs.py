"""S3 adapter for file bodies: content-addressed blobs per namespace, verification, transfers.

Layer: aws. A blob lives at ``ns/<namespace>/blobs/<content hash>`` and is written with
``If-None-Match: *`` (blobs are immutable). ``verify`` proves an object matches its key, either from the
SHA-256 checksum S3 stored and verified on upload (``checksum``: a HeadObject, no bytes read; real S3
rejects a part whose checksum is wrong) or by reading the object once (``read``: the emulator verifies
nothing). A blob that fails is deleted, so it cannot poison deduplication.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import ClientPayloadError
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from service.aws.errors import error_code, unavailable_on_transient
from service.content import (
    BlockHasher,
    ContentDigest,
    ContentMismatch,
    b64_digest,
    content_hash_from_blocks,
    s3_checksum,
)
from service.core.errors import DependencyUnavailable
from service.core.models import Download
from service.resources import blob_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)

VerifyMode = Literal["checksum", "read"]
Outcome = Literal["ok", "missing", "mismatch"]
_READ_CHUNK = 1024 * 1024
#: Reads of one object for verification, when its body breaks off mid-way.
_READ_ATTEMPTS = 3


class S3BlobStore:
    def __init__(self, s3: S3Client, bucket: str, verify_mode: VerifyMode = "checksum") -> None:
        self._s3 = s3
        self.bucket = bucket
        self._verify_mode = verify_mode

    # --- verification ---------------------------------------------------------------------------------

    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> Outcome:
        """Does the object at the blob's key hold exactly this content? Deletes it if not. One request:
        a HeadObject (checksum mode) or a GetObject read once (read mode, or no stored checksum)."""
        key = blob_key(ns, content_hash)
        try:
            if self._verify_mode == "checksum":
                with unavailable_on_transient("S3"):
                    head = await self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
                stored = head.get("ChecksumSHA256")
                if head["ContentLength"] != size:
                    outcome: Outcome = "mismatch"
                elif stored:
                    outcome = "ok" if _same_checksum(stored, s3_checksum(content_hash)) else "mismatch"
                else:
                    outcome = await self._read_and_compare(key, content_hash, size, block_size)
            else:
                outcome = await self._read_and_compare(key, content_hash, size, block_size)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return "missing"
            raise
        if outcome == "mismatch":
            log.warning("blob %s in %s does not match its hash; deleting it", content_hash, ns)
            await self.delete(key)
        return outcome

    async def _read_and_compare(self, key: str, content_hash: str, size: int, block_size: int) -> Outcome:
        digest = await self._hash_object(key, block_size)
        return "ok" if digest.content_hash == content_hash and digest.size == size else "mismatch"

    async def _hash_object(self, key: str, block_size: int) -> ContentDigest:
        """Read and hash the object. botocore retries the request but not a body cut short while it is
        read; a read is safe to repeat, so that is retried here (a cut body must never count as a
        mismatch, which would delete good content)."""
        for attempt in range(_READ_ATTEMPTS):
            try:
                return await self._hash_object_once(key, block_size)
            except (ClientPayloadError, IncompleteReadError, ResponseStreamingError) as exc:
                if attempt + 1 == _READ_ATTEMPTS:
                    raise DependencyUnavailable("S3 broke off a response; retry shortly.") from exc
                await asyncio.sleep(random.uniform(0, 0.1 * 2**attempt))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

    async def _hash_object_once(self, key: str, block_size: int) -> ContentDigest:
        hasher = BlockHasher(block_size)
        with unavailable_on_transient("S3"):
            response = await self._s3.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        async with body:
            while chunk := await body.read(_READ_CHUNK):
                # Small bodies are hashed inline: a thread hop costs more than hashing them.
                if len(chunk) >= 256 * 1024:
                    await asyncio.to_thread(hasher.update, chunk)
                else:
                    hasher.update(chunk)
        return hasher.finish()

    async def delete(self, key: str) -> None:
        with unavailable_on_transient("S3"):
            await self._s3.delete_object(Bucket=self.bucket, Key=key)

    # --- writing --------------------------------------------------------------------------------------

    async def put_small(self, key: str, data: io.BytesIO, digest: ContentDigest) -> bool:
        """A body of at most one block, in one PutObject with its SHA-256, only if nothing is at the key yet;
        False if something was (the caller decides whether to trust it)."""
        data.seek(0)
        try:
            with unavailable_on_transient("S3"):
                await self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ChecksumSHA256=b64_digest(digest.block_digests[0]) if digest.block_digests else None,  # type: ignore[arg-type]
                    IfNoneMatch="*",
                )
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            return False
        return True

    async def multipart(
        self,
        key: str,
        blocks: AsyncIterator[io.BytesIO],
        block_size: int,
        concurrency: int,
        on_started: Callable[[str], Awaitable[None]] | None = None,
        expected_hash: str | None = None,
    ) -> ContentDigest:
        """Upload ``blocks`` (each ``block_size`` but the last) as parts, ``concurrency`` at a time, each
        with its SHA-256; complete and return the content digest. If the digest is not ``expected_hash``
        the upload is aborted before it completes (``ContentMismatch``); any failure aborts it."""
        with unavailable_on_transient("S3"):
            created = await self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = created["UploadId"]
        if on_started is not None:
            await on_started(upload_id)
        slots = asyncio.Semaphore(concurrency)
        parts: dict[int, Any] = {}
        digests: dict[int, bytes] = {}
        size = 0

        async def send(number: int, block: io.BytesIO) -> None:
            try:
                digest = await asyncio.to_thread(_sha256, block)
                block.seek(0)
                digests[number] = digest
                with unavailable_on_transient("S3"):
                    response = await self._s3.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        # A stream, not bytes: aiohttp sends it in small chunks with back-pressure
                        # instead of copying the whole part into the socket's send buffer.
                        Body=block,
                        ChecksumSHA256=b64_digest(digest),
                    )
                parts[number] = {
                    "PartNumber": number,
                    "ETag": response["ETag"],
                    "ChecksumSHA256": b64_digest(digest),
                }
            finally:
                slots.release()

        try:
            async with _task_group() as group:
                number = 0
                while True:
                    # Take a slot before reading the next block: at most ``concurrency`` blocks exist.
                    await slots.acquire()
                    block = await anext(blocks, None)
                    if block is None:
                        slots.release()
                        break
                    number += 1
                    size += block.getbuffer().nbytes
                    group.create_task(send(number, block))
            ordered = tuple(digests[n] for n in sorted(digests))
            content_hash = content_hash_from_blocks(ordered)
            if expected_hash is not None and content_hash != expected_hash:
                raise ContentMismatch(content_hash)
            with unavailable_on_transient("S3"):
                await self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": [parts[n] for n in sorted(parts)]},
                )
        except BaseException:
            await self.abort(key, upload_id)
            raise
        return ContentDigest(content_hash, size, ordered)

    async def abort(self, key: str, upload_id: str) -> None:
        try:
            await asyncio.shield(self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))
        except Exception:
            log.warning("could not abort multipart upload %s of %s", upload_id, key, exc_info=True)

    async def copy(self, source_key: str, target_key: str, size: int, block_size: int, concurrency: int) -> None:
        """Server-side copy keeping the block layout (one UploadPartCopy per block); the source stays."""
        with unavailable_on_transient("S3"):
            created = await self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=target_key, ChecksumAlgorithm="SHA256"
            )
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(concurrency)
        parts: dict[int, Any] = {}

        async def copy_part(number: int, start: int, end: int) -> None:
            async with slots:
                with unavailable_on_transient("S3"):
                    response = await self._s3.upload_part_copy(
                        Bucket=self.bucket,
                        Key=target_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": source_key},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                result = response["CopyPartResult"]
                part: dict[str, Any] = {"PartNumber": number, "ETag": result["ETag"]}
                if result.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = result["ChecksumSHA256"]
                parts[number] = part

        try:
            async with _task_group() as group:
                for number, start in enumerate(range(0, size, block_size), 1):
                    group.create_task(copy_part(number, start, min(size, start + block_size) - 1))
            with unavailable_on_transient("S3"):
                await self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": [parts[n] for n in sorted(parts)]},
                )
        except BaseException:
            await self.abort(target_key, upload_id)
            raise

    # --- reading --------------------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, key: str, byte_range: str | None = None) -> AsyncIterator[Download]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        with unavailable_on_transient("S3"):
            response = await self._s3.get_object(**kwargs)
        body = response["Body"]
        async with body:

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await body.read(_READ_CHUNK):
                    yield chunk

            content_range = response.get("ContentRange")
            total = int(content_range.rsplit("/", 1)[1]) if content_range else response["ContentLength"]
            yield Download(chunks(), response["ContentLength"], total, content_range)

    async def presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        return await self._s3.generate_presigned_url(operation, Params=params, ExpiresIn=expires_in)

    async def start_upload(self, key: str) -> str:
        with unavailable_on_transient("S3"):
            created = await self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")
        return created["UploadId"]

    async def complete_upload(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        with unavailable_on_transient("S3"):
            await self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )


@asynccontextmanager
async def _task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup that fails with its first error rather than an ``ExceptionGroup``, so a part's 503 or
    the body's 413 reaches the client as itself instead of as an unmapped 500."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from failed


def _sha256(block: io.BytesIO) -> bytes:
    with block.getbuffer() as view:
        return hashlib.sha256(view).digest()


def _same_checksum(stored: str, expected: str) -> bool:
    """S3 writes ``<b64>-<parts>`` for multipart objects (the emulator omits the suffix)."""
    stored_digest, _, stored_parts = stored.partition("-")
    expected_digest, _, expected_parts = expected.partition("-")
    return stored_digest == expected_digest and (not stored_parts or stored_parts == expected_parts)
