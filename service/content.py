"""The content hash: fixed blocks, SHA-256 per block, and the hash of the block digests. Shared with
the client, which computes it the same way.

Layer: leaf. For a body of at most one block the content hash is its plain SHA-256 (64 hex digits): what
S3 computes for a single ``PutObject`` with ``ChecksumAlgorithm=SHA256``. For more blocks it is the SHA-256
of the concatenated block digests, followed by ``-<number of blocks>``: what S3 computes for a multipart
upload whose parts are the blocks (S3 writes it as ``<base64>-<parts>``). The suffix keeps the two kinds
apart: a small file whose bytes happen to be two block digests does not share a hash with the big file.
The block size is part of the deployment's configuration and is reported to clients.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MiB
#: S3 allows 10,000 parts, and parts are blocks: the most blocks one body may have.
MAX_FILE_BLOCKS = 10_000
EMPTY_HASH = hashlib.sha256(b"").hexdigest()

_CONTENT_HASH = re.compile(r"^(?P<hex>[0-9a-f]{64})(?:-(?P<blocks>[1-9][0-9]{0,5}))?$")


class ContentMismatch(Exception):
    """Bytes did not hash to the content hash announced for them; the message is the actual hash."""


@dataclass(frozen=True, slots=True)
class ContentDigest:
    content_hash: str
    size: int
    block_digests: tuple[bytes, ...]


def block_count(size: int, block_size: int) -> int:
    return -(-size // block_size)


def claim_problem(content_hash: str, size: int, block_size: int) -> tuple[str, str] | None:
    """Why a claimed (content hash, size) pair cannot describe any body, as ``(field, message)``; None
    when it can (whether the body really has that hash is for verification to say)."""
    if size < 0:
        return "size", "size cannot be negative"
    parsed = parse_content_hash(content_hash)
    if parsed is None:
        return "content_hash", "not a content hash (64 hex digits, '-<blocks>' for multi-block bodies)"
    if size == 0:
        return None if content_hash == EMPTY_HASH else ("content_hash", "an empty body has the SHA-256 of nothing")
    needed = block_count(size, block_size)
    if needed > MAX_FILE_BLOCKS:
        return "size", f"at most {MAX_FILE_BLOCKS} blocks of {block_size} bytes"
    if parsed[1] != needed or ("-" in content_hash) != (needed > 1):
        return "content_hash", f"a body of {size} bytes has {needed} block(s) of {block_size} bytes"
    return None


def content_hash_from_blocks(block_digests: list[bytes] | tuple[bytes, ...]) -> str:
    if len(block_digests) == 0:
        return EMPTY_HASH
    if len(block_digests) == 1:
        return block_digests[0].hex()
    return f"{hashlib.sha256(b''.join(block_digests)).hexdigest()}-{len(block_digests)}"


def parse_content_hash(value: str) -> tuple[str, int] | None:
    """``(hex digest, blocks)`` of a well-formed content hash (blocks 1 for a plain one), else None."""
    match = _CONTENT_HASH.match(value)
    if match is None:
        return None
    return match.group("hex"), int(match.group("blocks") or 1)


def expected_blocks(content_hash: str) -> int:
    parsed = parse_content_hash(content_hash)
    return parsed[1] if parsed else 0


def s3_checksum(content_hash: str) -> str:
    """The ``ChecksumSHA256`` S3 reports for a body with this content hash (multipart: ``b64-N``)."""
    parsed = parse_content_hash(content_hash)
    if parsed is None:
        raise ValueError(f"not a content hash: {content_hash!r}")
    digest = base64.b64encode(bytes.fromhex(parsed[0])).decode()
    return digest if "-" not in content_hash else f"{digest}-{parsed[1]}"


def b64_digest(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@dataclass(slots=True)
class BlockHasher:
    """Feed bytes in any chunking; ``finish`` gives the content digest. Each byte is hashed once."""

    block_size: int = DEFAULT_BLOCK_SIZE
    _current: hashlib._Hash = field(default_factory=hashlib.sha256)
    _filled: int = 0
    _size: int = 0
    _digests: list[bytes] = field(default_factory=list)

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.block_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            self._size += take
            view = view[take:]
            if self._filled == self.block_size:
                self._digests.append(self._current.digest())
                self._current = hashlib.sha256()
                self._filled = 0

    def finish(self) -> ContentDigest:
        digests = list(self._digests)
        if self._filled:
            digests.append(self._current.digest())
        return ContentDigest(content_hash_from_blocks(digests), self._size, tuple(digests))


def digest_bytes(data: bytes | memoryview, block_size: int = DEFAULT_BLOCK_SIZE) -> ContentDigest:
    hasher = BlockHasher(block_size)
    hasher.update(data)
    return hasher.finish()


def reuse_declared_sha256(request: Any, **_: Any) -> None:
    """A botocore ``before-sign.s3`` hook: when a request already declares its body's SHA-256 (the
    ``x-amz-checksum-sha256`` header S3 verifies), give SigV4 that digest as the payload hash instead of
    letting botocore hash the body again. The block's one SHA-256 is then the content-hash input, the part
    checksum and the signature's payload hash."""
    declared = request.headers.get("x-amz-checksum-sha256")
    if declared and "X-Amz-Content-SHA256" not in request.headers and "-" not in declared:
        request.headers["X-Amz-Content-SHA256"] = base64.b64decode(declared).hex()
