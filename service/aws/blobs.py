"""S3 adapter for file bodies: content-addressed blobs per namespace, verification, transfers.

Layer: aws. A blob lives at ``ns/<namespace>/blobs/<content hash>`` and is created only with
``If-None-Match: *`` (blobs are immutable). ``verify`` proves an object matches its key, either from the
SHA-256 checksum S3 stored and verified on upload, and the object's part count (``checksum``: a HeadObject,
no bytes read; S3, and the embedded emulator, refuse a part or object whose checksum is wrong) or by reading
the object once (``read``: for stores that do not check checksums), and names the object it verified
(version id, ETag). A blob that fails is deleted, so it cannot poison deduplication. Reads given such a name
read exactly that object. Packs (``ns/<namespace>/packs/<pack id>``, many small bodies in one object:
``service.core.packs``) are created the same way and read by range.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from aiohttp import ClientPayloadError
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from service.aws.errors import error_code, unavailable_on_transient
from service.content import (
    BlockHasher,
    ContentDigest,
    ContentMismatch,
    b64_digest,
    content_hash_from_blocks,
    parse_content_hash,
)
from service.core.errors import DependencyUnavailable
from service.core.models import BodyChanged, BodyRef, Download, UploadedPart, Verification
from service.fanout import bounded
from service.resources import blob_key
from service.retry import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)

VerifyMode = Literal["checksum", "read"]
_READ_CHUNK = 1024 * 1024
#: Reads of one object for verification, when its body breaks off mid-way.
_READ_ATTEMPTS = 3
_READ_RETRY = Backoff(base=0.05, cap=1.0)
#: A pinned read's answer when the object is no longer the one pinned: another ETag, or no such version.
_GONE = ("PreconditionFailed", "412", "NoSuchVersion", "NoSuchKey", "404")
#: A ranged read's answer when the object ends before the range starts.
_OUT_OF_RANGE = ("InvalidRange", "416")


class S3BlobStore:
    def __init__(self, s3: S3Client, bucket: str, verify_mode: VerifyMode = "checksum") -> None:
        self._s3 = s3
        self.bucket = bucket
        self._verify_mode = verify_mode

    # --- verification ---------------------------------------------------------------------------------

    async def verify(self, ns: str, content_hash: str, size: int, block_size: int) -> Verification:
        """Does the object at the blob's key hold exactly this content, of exactly this size? Deletes it if
        it holds other bytes. One request: a HeadObject (checksum mode) or a GetObject read once (read
        mode, or no stored checksum). An ``ok`` names the object verified (version id, ETag)."""
        key = blob_key(ns, content_hash)
        try:
            if self._verify_mode == "checksum":
                with unavailable_on_transient("S3"):
                    head = await self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
                stored = head.get("ChecksumSHA256")
                if not stored or "ContentLength" not in head:  # nothing to compare (or no size): read it
                    result = await self._read_and_compare(key, content_hash, size, block_size)
                elif checksum_matches(content_hash, stored, head.get("ETag")):
                    result = _sized(head["ContentLength"], size, _body(head))
                else:
                    result = Verification("mismatch")
            else:
                result = await self._read_and_compare(key, content_hash, size, block_size)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return Verification("missing")
            raise
        if result.outcome == "mismatch":
            log.warning("blob %s in %s does not match its hash; deleting it", content_hash, ns)
            await self.delete(key)
        return result

    async def _read_and_compare(self, key: str, content_hash: str, size: int, block_size: int) -> Verification:
        digest, body = await self._hash_object(key, block_size)
        if digest.content_hash != content_hash:
            return Verification("mismatch")
        return _sized(digest.size, size, body)

    async def _hash_object(self, key: str, block_size: int) -> tuple[ContentDigest, BodyRef]:
        """Read and hash the object. botocore retries the request but not a body cut short while it is
        read; a read is safe to repeat, so that is retried here (a cut body must never count as a
        mismatch, which would delete good content)."""
        for attempt in range(_READ_ATTEMPTS):
            try:
                return await self._hash_object_once(key, block_size)
            except (ClientPayloadError, IncompleteReadError, ResponseStreamingError) as exc:
                if attempt + 1 == _READ_ATTEMPTS:
                    raise DependencyUnavailable("S3 broke off a response; retry shortly.") from exc
                await _READ_RETRY.sleep(attempt)
        raise AssertionError("unreachable")

    async def _hash_object_once(self, key: str, block_size: int) -> tuple[ContentDigest, BodyRef]:
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
        return hasher.finish(), _body(response)

    async def delete(self, key: str) -> None:
        with unavailable_on_transient("S3"):
            await self._s3.delete_object(Bucket=self.bucket, Key=key)

    # --- writing --------------------------------------------------------------------------------------
    # Every object the service creates under a blob key is created with ``If-None-Match: *`` (the bucket
    # policy refuses any other): ``None`` from a write means something was already there, and the caller
    # verifies it instead of replacing it.

    async def put_small(self, key: str, data: io.BytesIO, digest: ContentDigest) -> BodyRef | None:
        """A body of at most one block, in one PutObject with its SHA-256, only if nothing is at the key
        yet: the object stored, or None if something was there."""
        data.seek(0)
        return await self._create(key, data, digest.block_digests[0] if digest.block_digests else None)

    async def put_pack(self, key: str, data: bytearray) -> BodyRef | None:
        """A pack (``service.core.packs``) in one PutObject with its SHA-256, only if nothing is at the key
        yet: the object stored, or None if something was there (pack ids are random: only a retry of this
        very write finds one)."""
        digest = await asyncio.to_thread(hashlib.sha256, data) if len(data) >= 256 * 1024 else hashlib.sha256(data)
        return await self._create(key, io.BytesIO(data), digest.digest())

    async def _create(self, key: str, body: io.BytesIO, sha256: bytes | None) -> BodyRef | None:
        """One PutObject with its SHA-256 (S3 checks it), only if nothing is at the key: the object stored,
        or None if something was there."""
        try:
            with unavailable_on_transient("S3"):
                response = await self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ChecksumSHA256=b64_digest(sha256) if sha256 is not None else None,  # type: ignore[arg-type]
                    IfNoneMatch="*",
                )
        except ClientError as exc:
            if _already_there(exc):
                return None
            raise
        return _body(response)

    async def multipart(
        self,
        key: str,
        blocks: AsyncIterator[io.BytesIO],
        block_size: int,
        concurrency: int,
        on_started: Callable[[str], Awaitable[None]] | None = None,
        expected_hash: str | None = None,
    ) -> tuple[ContentDigest, BodyRef | None]:
        """Upload ``blocks`` (each ``block_size`` but the last) as parts, ``concurrency`` at a time, each
        with its SHA-256; complete (only if nothing is at the key) and return the content digest and the
        object stored (None: something was already there, and the upload was aborted). If the digest is not
        ``expected_hash`` the upload is aborted before it completes (``ContentMismatch``); any failure
        aborts it."""
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
            stored = await self._complete(key, upload_id, [parts[n] for n in sorted(parts)])
        except BaseException:
            await self.abort(key, upload_id)
            raise
        return ContentDigest(content_hash, size, ordered), stored

    async def abort(self, key: str, upload_id: str) -> None:
        try:
            await asyncio.shield(self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))
        except Exception:
            log.warning("could not abort multipart upload %s of %s", upload_id, key, exc_info=True)

    async def copy(
        self, source_key: str, target_key: str, size: int, block_size: int, concurrency: int
    ) -> BodyRef | None:
        """Server-side copy keeping the block layout (one UploadPartCopy per block), only if nothing is at
        the target yet: the object stored, or None if something was there. The source stays."""
        with unavailable_on_transient("S3"):
            created = await self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=target_key, ChecksumAlgorithm="SHA256"
            )
        upload_id = created["UploadId"]

        async def copy_part(numbered: tuple[int, int]) -> dict[str, Any]:
            number, start = numbered
            end = min(size, start + block_size) - 1
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
            return part

        try:
            parts = await bounded(enumerate(range(0, size, block_size), 1), copy_part, concurrency)
            return await self._complete(target_key, upload_id, parts)
        except BaseException:
            await self.abort(target_key, upload_id)
            raise

    async def _complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> BodyRef | None:
        """Complete a multipart upload only if nothing is at the key: the object, or None (then the upload
        is aborted, freeing its parts)."""
        try:
            with unavailable_on_transient("S3"):
                response = await self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    IfNoneMatch="*",
                )
        except ClientError as exc:
            if not _already_there(exc):
                raise
            await self.abort(key, upload_id)
            return None
        return _body(response)

    # --- reading --------------------------------------------------------------------------------------

    @asynccontextmanager
    async def open(
        self, key: str, byte_range: str | None = None, body: BodyRef | None = None
    ) -> AsyncIterator[Download]:
        """The object's bytes. With ``body``, exactly that object: by version id (a version never changes),
        else only while the object still has that ETag (a ``body`` that pins neither: whatever the key holds).
        ``BodyChanged`` if it is not what ``body`` names any more (replaced, or gone), or holds nothing in
        ``byte_range`` (shorter than the range's start)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        if body is not None and body.version_id is not None:
            kwargs["VersionId"] = body.version_id
        elif body is not None and body.etag is not None:
            kwargs["IfMatch"] = body.etag
        try:
            with unavailable_on_transient("S3"):
                response = await self._s3.get_object(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if (body is not None and code in _GONE) or code in _OUT_OF_RANGE:
                raise BodyChanged(key) from None
            raise
        served = response["Body"]
        async with served:

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await served.read(_READ_CHUNK):
                    yield chunk

            content_range = response.get("ContentRange")
            total = int(content_range.rsplit("/", 1)[1]) if content_range else response["ContentLength"]
            yield Download(chunks(), response["ContentLength"], total, content_range)

    async def current(self, key: str) -> BodyRef | None:
        """What is at the key now (None: nothing)."""
        try:
            with unavailable_on_transient("S3"):
                head = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return _body(head)

    # --- presigned URLs -------------------------------------------------------------------------------

    async def presign_put(self, key: str, checksum: str, expires_in: int) -> tuple[str, dict[str, str]]:
        """A URL for one PUT of a body with this SHA-256 checksum, and the headers the PUT must send: the
        checksum (S3 checks the body against it) and ``If-None-Match: *`` (signed, so a PUT without it is
        refused: a URL can create the blob, never replace it)."""
        url = await self._s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ChecksumSHA256": checksum, "IfNoneMatch": "*"},
            ExpiresIn=expires_in,
        )
        return url, {"x-amz-checksum-sha256": checksum, "If-None-Match": "*"}

    async def presign_part(self, key: str, upload_id: str, number: int, expires_in: int) -> str:
        return await self._s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
            ExpiresIn=expires_in,
        )

    async def presign_get(self, key: str, body: BodyRef, filename: str, expires_in: int) -> str:
        """A URL that downloads exactly the object ``body`` names (its version), saved as ``filename``."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        }
        if body.version_id is not None:
            params["VersionId"] = body.version_id
        return await self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    async def start_upload(self, key: str) -> str:
        with unavailable_on_transient("S3"):
            created = await self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")
        return created["UploadId"]

    async def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        """Complete a multipart upload a client sent through presigned part URLs. If the content got there
        first another way, the upload is aborted: the commit verifies what is there."""
        listed: list[dict[str, Any]] = []
        for uploaded in parts:
            part: dict[str, Any] = {"PartNumber": uploaded.number, "ETag": uploaded.etag}
            if uploaded.checksum_sha256:
                part["ChecksumSHA256"] = uploaded.checksum_sha256
            listed.append(part)
        await self._complete(key, upload_id, listed)


@asynccontextmanager
async def _task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup that fails with its first error rather than an ``ExceptionGroup``, so a part's 503 or
    the body's 413 reaches the client as itself instead of as an unmapped 500."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from failed


def _already_there(exc: ClientError) -> bool:
    """S3's answer to a conditional create when the key is taken (412), or being written right now (409)."""
    return error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _sha256(block: io.BytesIO) -> bytes:
    with block.getbuffer() as view:
        return hashlib.sha256(view).digest()


def checksum_matches(content_hash: str, stored: str, etag: str | None) -> bool:
    """Does the SHA-256 checksum S3 stored for an object (and its ETag) prove it holds ``content_hash``?

    The digest must be the hash's, and the object's layout the hash's: one PutObject for a body of one
    block (no part count anywhere), a multipart upload of exactly N parts for a hash of N blocks. S3 (and the
    embedded emulator) writes a multipart object's checksum as ``<b64>-<parts>``; some stores leave the suffix
    off but keep the ETag's ``-<parts>``, so the part count is the checksum's, else the ETag's, else none (one
    PutObject)."""
    parsed = parse_content_hash(content_hash)
    if parsed is None:
        return False
    digest, blocks = parsed
    stored_digest, _, stored_parts = stored.partition("-")
    parts = stored_parts or _etag_parts(etag)
    multi_block = "-" in content_hash
    if multi_block != bool(parts) or (multi_block and parts != str(blocks)):
        return False
    return stored_digest == base64.b64encode(bytes.fromhex(digest)).decode()


def _etag_parts(etag: str | None) -> str:
    """The part count of a multipart object's ETag (``"<md5 of part md5s>-<parts>"``), '' for any other."""
    _, dash, parts = (etag or "").strip('"').rpartition("-")
    return parts if dash and parts.isdigit() else ""


def _body(response: Any) -> BodyRef:
    """The object a response was about. A bucket without versioning reports no version id (or the id
    "null", which names whatever is at the key now): only a real version id pins an object."""
    version = response.get("VersionId")
    return BodyRef(version if version and version != "null" else None, response.get("ETag"))


def _sized(actual: int, claimed: int, body: BodyRef) -> Verification:
    """The content is right; is the claimed size? (A wrong size is the claim's fault: the object stays.)"""
    if actual != claimed:
        return Verification("wrong_size", size=actual)
    return Verification("ok", body)
