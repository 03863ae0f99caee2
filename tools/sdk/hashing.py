"""Hashing local files the way the service does (``service.content``), off the event loop.

Each file is read once in ``block_size`` blocks; the block digests are kept, because they are also the
S3 part checksums of the upload (so no byte is hashed twice). Several files hash in parallel threads:
hashlib releases the GIL, so both cores work.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from service.content import ContentDigest, content_hash_from_blocks

_READ = 1024 * 1024


def hash_file_sync(path: Path | int, block_size: int) -> ContentDigest:
    """The digest of a file, given by path or as an open descriptor (read from its start, left open: the
    sync client opens its files itself, so it never follows a symlink)."""
    digests: list[bytes] = []
    size = 0
    if isinstance(path, int):
        os.lseek(path, 0, os.SEEK_SET)
    with open(path, "rb", buffering=0, closefd=not isinstance(path, int)) as handle:
        while True:
            block = hashlib.sha256()
            filled = 0
            while filled < block_size:
                chunk = handle.read(min(_READ, block_size - filled))
                if not chunk:
                    break
                block.update(chunk)
                filled += len(chunk)
            if filled == 0:
                break
            digests.append(block.digest())
            size += filled
            if filled < block_size:
                break
    return ContentDigest(content_hash_from_blocks(digests), size, tuple(digests))


async def hash_file(path: Path | int, block_size: int) -> ContentDigest:
    return await asyncio.to_thread(hash_file_sync, path, block_size)


async def hash_files(paths: Iterable[Path], block_size: int, workers: int | None = None) -> dict[Path, ContentDigest]:
    """Hash many files, ``workers`` at a time (default: one per core)."""
    slots = asyncio.Semaphore(workers or os.cpu_count() or 2)

    async def one(path: Path) -> tuple[Path, ContentDigest]:
        async with slots:
            return path, await hash_file(path, block_size)

    return dict(await asyncio.gather(*(one(p) for p in paths)))
