"""The content hash, checked against hashlib and against S3's own checksum arithmetic."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from service.content import (
    EMPTY_HASH,
    BlockHasher,
    claim_problem,
    digest_bytes,
    parse_content_hash,
    s3_checksum,
)

BLOCK = 1024


def test_empty_and_single_block_are_plain_sha256():
    assert digest_bytes(b"", BLOCK).content_hash == EMPTY_HASH == hashlib.sha256(b"").hexdigest()
    assert digest_bytes(b"x", BLOCK).content_hash == hashlib.sha256(b"x").hexdigest()
    exact = os.urandom(BLOCK)
    assert digest_bytes(exact, BLOCK).content_hash == hashlib.sha256(exact).hexdigest()


def test_multi_block_is_hash_of_block_digests_with_count():
    data = os.urandom(BLOCK * 2 + 17)
    blocks = [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]
    digests = b"".join(hashlib.sha256(b).digest() for b in blocks)
    assert digest_bytes(data, BLOCK).content_hash == f"{hashlib.sha256(digests).hexdigest()}-3"


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1024, 1025, 5000])
def test_chunking_does_not_matter(chunk: int):
    data = os.urandom(BLOCK * 3 + 5)
    hasher = BlockHasher(BLOCK)
    for i in range(0, len(data), chunk):
        hasher.update(data[i : i + chunk])
    assert hasher.finish() == digest_bytes(data, BLOCK)


def test_a_small_file_made_of_block_digests_does_not_collide_with_the_big_file():
    big = os.urandom(BLOCK * 2)
    digests = hashlib.sha256(big[:BLOCK]).digest() + hashlib.sha256(big[BLOCK:]).digest()
    assert digest_bytes(digests, BLOCK).content_hash != digest_bytes(big, BLOCK).content_hash


def test_s3_checksum_forms():
    single = digest_bytes(b"hello", BLOCK)
    assert s3_checksum(single.content_hash) == base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    multi = digest_bytes(os.urandom(BLOCK * 2), BLOCK)
    assert s3_checksum(multi.content_hash).endswith("-2")


@pytest.mark.parametrize("bad", ["", "abc", "G" * 64, "a" * 64 + "-0", "a" * 64 + "-", "A" * 64])
def test_malformed_hashes_do_not_parse(bad: str):
    assert parse_content_hash(bad) is None


@pytest.mark.parametrize(
    ("content_hash", "size", "field"),
    [
        (EMPTY_HASH, 0, None),
        ("a" * 64, 0, "content_hash"),
        ("a" * 64, BLOCK, None),
        ("a" * 64, BLOCK + 1, "content_hash"),
        ("a" * 64 + "-2", BLOCK + 1, None),
        ("a" * 64 + "-3", BLOCK + 1, "content_hash"),
        ("a" * 64 + "-1", 5, "content_hash"),
        ("nothex", 5, "content_hash"),
        ("a" * 64, -1, "size"),
        ("a" * 64 + "-10001", BLOCK * 10_001, "size"),
    ],
)
def test_claims_that_cannot_describe_a_body(content_hash: str, size: int, field: str | None):
    problem = claim_problem(content_hash, size, BLOCK)
    assert (problem[0] if problem else None) == field
