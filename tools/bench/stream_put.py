"""Streaming PUT through the service: throughput, and the service process's memory while it streams.

A client streams ``--size`` bytes (default 1 GiB) to ``PUT /v1/ns/{ns}/files/{path}`` (with the content
hash announced, so parts go straight to the blob's key). The service runs in its own process against an
emulator in another; its resident set is sampled every 20 ms. The claim under test: memory growth stays
under 64 MiB + concurrency x block size whatever the file size. Baseline in the same run: the same bytes
uploaded to the same emulator with bare aiobotocore multipart calls at the same concurrency, so the ratio
says what passing through the service costs.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator

import uvloop

from service.aws.blobs import S3BlobStore
from service.aws.clients import open_clients
from service.content import BlockHasher
from service.metrics import Metrics
from service.settings import Settings
from tools.bench import BenchParser
from tools.bench.harness import MiB, ProgressLine, RssSampler, stack
from tools.sdk.client import FileSyncClient


def pattern(size: int, chunk: int = MiB) -> tuple[bytes, int]:
    return os.urandom(chunk), size


async def generate(seed: bytes, size: int, progress: ProgressLine | None = None) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        piece = seed[: min(len(seed), size - sent)]
        sent += len(piece)
        if progress:
            progress(len(piece))
        yield piece


def content_hash(seed: bytes, size: int, block_size: int) -> str:
    hasher = BlockHasher(block_size)
    sent = 0
    while sent < size:
        piece = seed[: min(len(seed), size - sent)]
        hasher.update(piece)
        sent += len(piece)
    return hasher.finish().content_hash


async def bare_multipart(emulator: str, bucket: str, seed: bytes, size: int, block: int, concurrency: int) -> float:
    """The same bytes, the same emulator, the same concurrency: bare aiobotocore multipart calls."""
    settings = Settings(bucket=bucket).for_emulator(emulator)

    async def blocks() -> AsyncIterator[io.BytesIO]:
        buffer, filled = io.BytesIO(), 0
        async for piece in generate(seed, size):
            buffer.write(piece)
            filled += len(piece)
            if filled >= block:
                buffer.seek(0)
                yield buffer
                buffer, filled = io.BytesIO(), 0
        if filled:
            buffer.seek(0)
            yield buffer

    async with open_clients(settings.aws, Metrics()) as clients:
        store = S3BlobStore(clients.s3, bucket)
        started = time.perf_counter()
        await store.multipart(f"bench/bare-{os.urandom(8).hex()}", blocks(), block, concurrency)
        return time.perf_counter() - started


async def run(size: int, block_size: int, concurrency: int) -> None:
    seed, _ = pattern(size)
    expected = content_hash(seed, size, block_size)
    async with stack(block_size=block_size, upload_concurrency=concurrency) as running:
        async with FileSyncClient(running.service, timeout=3600) as api:
            await api.sign_up("bench", "benchmark password")
            await api.log_in("bench", "benchmark password")
            ns = (await api.account()).home_namespace
            # Warm up every code path the measured upload takes (multipart included), so the baseline
            # already holds what is loaded once per process (botocore models, pools).
            await api.put_stream(ns, "warm-up.bin", generate(seed, 3 * block_size))
            await asyncio.sleep(0.5)
            progress = ProgressLine("stream PUT through the service", size)
            async with RssSampler(running.service_pid) as rss:
                started = time.perf_counter()
                info = await api.put_stream(ns, "big.bin", generate(seed, size, progress), content_hash=expected)
                elapsed = time.perf_counter() - started
            if (info.size, info.content_hash) != (size, expected):
                raise RuntimeError("the service stored something else")
        bare = await bare_multipart(running.emulator, running.settings.bucket, seed, size, block_size, concurrency)
    growth = rss.peak - rss.baseline
    allowance = 64 * MiB + concurrency * block_size
    print(f"size {size / MiB:.0f} MiB, block {block_size / MiB:.0f} MiB, {concurrency} parts in flight")
    print(f"through the service: {elapsed:6.2f} s  {size / elapsed / MiB:7.1f} MiB/s")
    print(f"bare multipart (same emulator, same concurrency): {bare:6.2f} s  {size / bare / MiB:7.1f} MiB/s")
    print(f"service / bare time: {elapsed / bare:.2f}x")
    print(
        f"service RSS: baseline {rss.baseline / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB, "
        f"growth {growth / MiB:.0f} MiB "
        f"(allowance 64 + {concurrency} x {block_size / MiB:.0f} = {allowance / MiB:.0f} MiB: "
        f"{'within' if growth <= allowance else 'OVER'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench stream_put", __doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--block-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    uvloop.run(run(args.size_mib * MiB, args.block_mib * MiB, args.concurrency))
    return 0
