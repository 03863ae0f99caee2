"""Direct transfers between a local file and S3 with the scoped credentials the service minted.

Uploads go to the namespace's blob key (the content hash): one ``PutObject`` for a body of one block,
else a multipart upload whose parts are the blocks, ``concurrency`` in flight, each sent with its SHA-256
(the digest computed while hashing the file: no byte is hashed twice). S3 verifies each part's checksum,
so a corrupted part is refused on the way in. aioboto3 is imported here only, so commands that move no
bytes never pay for it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from service.content import ContentDigest, reuse_declared_sha256
from service.resources import blob_key
from service.wire import AwsCredentials

Progress = Callable[[int], None]


class S3Transfer:
    def __init__(self, credentials: AwsCredentials, block_size: int, *, concurrency: int = 8) -> None:
        self._creds = credentials
        self._block_size = block_size
        self._concurrency = concurrency
        self._client: Any = None
        self._context: Any = None

    async def __aenter__(self) -> S3Transfer:
        import aioboto3
        from aiobotocore.config import AioConfig

        session = aioboto3.Session(
            aws_access_key_id=self._creds.access_key_id,
            aws_secret_access_key=self._creds.secret_access_key,
            aws_session_token=self._creds.session_token,
            region_name=self._creds.region,
        )
        config = AioConfig(
            max_pool_connections=self._concurrency * 2,
            s3={"addressing_style": "path" if self._creds.endpoint_url else "virtual"},
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
        )
        self._context = session.client("s3", endpoint_url=self._creds.endpoint_url, config=config)
        self._client = await self._context.__aenter__()
        self._client.meta.events.register("before-sign.s3", reuse_declared_sha256)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._context.__aexit__(exc_type, exc, tb)

    async def upload(
        self,
        ns: str,
        path: Path,
        digest: ContentDigest,
        progress: Progress | None = None,
        previous: ContentDigest | None = None,
    ) -> None:
        """Put ``path`` (already hashed into ``digest``) at its blob key. With ``previous`` (the digest of a
        version the namespace has), each block whose SHA-256 is unchanged is copied inside S3
        (``UploadPartCopy``) instead of sent: a small change to a big file moves one block."""
        key = blob_key(ns, digest.content_hash)
        bucket = self._creds.bucket
        if len(digest.block_digests) <= 1:
            data = await asyncio.to_thread(path.read_bytes)
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data}
            if digest.block_digests:
                kwargs["ChecksumSHA256"] = base64.b64encode(digest.block_digests[0]).decode()
            await self._client.put_object(**kwargs)
            if progress:
                progress(len(data))
            return
        upload = await self._client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = upload["UploadId"]
        slots = asyncio.Semaphore(self._concurrency)

        reusable = set()
        if previous is not None and len(previous.block_digests) > 1:
            reusable = {
                n
                for n, (old, new) in enumerate(zip(previous.block_digests, digest.block_digests, strict=False), 1)
                if old == new and (n < len(previous.block_digests) or previous.size == digest.size)
            }

        async def part(number: int) -> dict[str, Any]:
            async with slots:
                checksum = base64.b64encode(digest.block_digests[number - 1]).decode()
                if number in reusable and previous is not None:
                    start = (number - 1) * self._block_size
                    end = min(previous.size, start + self._block_size) - 1
                    copied = await self._client.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": blob_key(ns, previous.content_hash)},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    return {"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"], "ChecksumSHA256": checksum}
                data = await asyncio.to_thread(_read_block, path, (number - 1) * self._block_size, self._block_size)
                response = await self._client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumSHA256=checksum,
                )
                if progress:
                    progress(len(data))
                return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        try:
            parts = await asyncio.gather(*(part(n) for n in range(1, len(digest.block_digests) + 1)))
            await self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": list(parts)}
            )
        except BaseException:
            await asyncio.shield(self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id))
            raise

    async def download(
        self, ns: str, content_hash: str, size: int, target: Path, progress: Progress | None = None
    ) -> None:
        """Fetch a blob into ``target`` with ranged GETs of one block each, ``concurrency`` at a time."""
        key = blob_key(ns, content_hash)
        fd = await asyncio.to_thread(os.open, target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        slots = asyncio.Semaphore(self._concurrency)

        async def block(start: int) -> None:
            async with slots:
                end = min(size, start + self._block_size) - 1
                response = await self._client.get_object(
                    Bucket=self._creds.bucket, Key=key, Range=f"bytes={start}-{end}"
                )
                body = response["Body"]
                async with body:
                    data = await body.read()
                await asyncio.to_thread(os.pwrite, fd, data, start)
                if progress:
                    progress(len(data))

        try:
            await asyncio.gather(*(block(start) for start in range(0, size, self._block_size)))
        finally:
            await asyncio.to_thread(os.close, fd)


def _read_block(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb", buffering=0) as handle:
        handle.seek(offset)
        return handle.read(length)
