"""Hashing local files the way the service does (``service.content``), off the event loop.

Each file is read once in ``block_size`` blocks; the block digests are kept, because they are also the
S3 part checksums of the upload (so no byte is hashed twice). Several files hash in parallel threads:
hashlib releases the GIL, so both cores work. One large file can too (``workers``): its blocks are
independent until the last step, so each worker hashes a stretch of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from service.content import ContentDigest, content_hash_from_blocks
from service.fanout import bounded

_READ = 1024 * 1024


def hash_file_sync(path: Path | int, block_size: int, workers: int = 1) -> ContentDigest:
    """The digest of a file, given by path or as an open descriptor (read from its start, left open: the
    sync client opens its files itself, so it never follows a symlink). With ``workers`` above one, a file of
    several blocks is hashed by that many threads, each a stretch of its blocks; a file whose size or mtime
    changed meanwhile is hashed again in one pass (what that pass read is its digest)."""
    if workers > 1:
        if isinstance(path, int):
            return _in_stretches(path, block_size, workers)
        fd = os.open(path, os.O_RDONLY)
        try:
            return _in_stretches(fd, block_size, workers)
        finally:
            os.close(fd)
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


def _in_stretches(fd: int, block_size: int, workers: int) -> ContentDigest:
    before = os.fstat(fd)
    blocks = -(-before.st_size // block_size)
    if blocks < 2:
        return hash_file_sync(fd, block_size)
    workers = min(workers, blocks)
    bounds = [blocks * i // workers for i in range(workers + 1)]

    def stretch(first: int, last: int) -> list[bytes]:
        digests = []
        for number in range(first, last):
            block = hashlib.sha256()
            start, end = number * block_size, min(before.st_size, (number + 1) * block_size)
            while start < end:
                chunk = os.pread(fd, min(_READ, end - start), start)
                if not chunk:
                    raise _Changed
                block.update(chunk)
                start += len(chunk)
            digests.append(block.digest())
        return digests

    try:
        with concurrent.futures.ThreadPoolExecutor(workers - 1) as pool:
            others = [pool.submit(stretch, bounds[i], bounds[i + 1]) for i in range(1, workers)]
            digests = stretch(bounds[0], bounds[1])
            for other in others:
                digests += other.result()
    except _Changed:
        return hash_file_sync(fd, block_size)
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return hash_file_sync(fd, block_size)
    return ContentDigest(content_hash_from_blocks(digests), before.st_size, tuple(digests))


class _Changed(Exception):
    """The file got shorter while it was hashed in stretches."""


async def hash_file(path: Path | int, block_size: int, workers: int = 1) -> ContentDigest:
    return await asyncio.to_thread(hash_file_sync, path, block_size, workers)


async def hash_files(paths: Iterable[Path], block_size: int, workers: int | None = None) -> dict[Path, ContentDigest]:
    """Hash many files, ``workers`` at a time (default: one per core)."""

    async def one(path: Path) -> tuple[Path, ContentDigest]:
        return path, await hash_file(path, block_size)

    return dict(await bounded(paths, one, workers or os.cpu_count() or 2))
