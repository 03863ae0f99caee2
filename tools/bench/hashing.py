"""Client hashing (``tools.sdk.hashing``, as the sync client hashes files) against hashlib's SHA-256 on one
core, measured in the same run.

Baseline: ``hashlib.sha256`` over an in-memory buffer in 1 MiB updates, one thread: the most one core can
hash. Measured: ``hash_file_sync`` of one ``--size-mib`` file (read from the page cache, split into
blocks, a digest per block and the content hash) on one thread, whose ratio to the baseline is the per-core
efficiency (goal >= 0.9); then ``hash_files`` over ``--files`` files of the same total size with one worker
and with one worker per core, whose ratio is the multi-core speed-up (hashlib releases the GIL, so the
threads really run in parallel), judged against bare hashlib in one thread per core over the same bytes (what
the machine allows at that moment: on a shared machine other processes hold cores too). Best of ``--rounds``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from service.content import DEFAULT_BLOCK_SIZE
from tools.bench import BenchParser
from tools.bench.harness import MiB
from tools.sdk.hashing import hash_file_sync, hash_files


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench hashing", __doc__)
    parser.add_argument("--size-mib", type=int, default=512, help="bytes hashed per measurement")
    parser.add_argument("--files", type=int, default=16, help="files for the multi-core measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    cores = os.cpu_count() or 1
    data = os.urandom(MiB) * args.size_mib
    view = memoryview(data)

    def baseline() -> None:
        digest = hashlib.sha256()
        for offset in range(0, size, MiB):
            digest.update(view[offset : offset + MiB])
        digest.digest()

    def baseline_threads() -> None:
        # The same bytes in ``cores`` threads: the speed-up the machine allows right now (other processes
        # on a shared machine take cores too), against which the client's is judged.
        share = size // cores

        def part(start: int) -> None:
            digest = hashlib.sha256()
            for offset in range(start, start + share, MiB):
                digest.update(view[offset : offset + MiB])

        with concurrent.futures.ThreadPoolExecutor(cores) as pool:
            list(pool.map(part, range(0, share * cores, share)))

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "one.bin"
        big.write_bytes(data)
        parts = []
        for i in range(args.files):
            part = Path(tmp) / f"part-{i:03d}.bin"
            part.write_bytes(view[i * size // args.files : (i + 1) * size // args.files])
            parts.append(part)
        hash_file_sync(big, DEFAULT_BLOCK_SIZE)  # into the page cache: the baseline reads no disk either
        bare = best(baseline, args.rounds)
        bare_parallel = best(baseline_threads, args.rounds)
        one_file = best(lambda: hash_file_sync(big, DEFAULT_BLOCK_SIZE), args.rounds)
        serial = best(lambda: asyncio.run(hash_files(parts, DEFAULT_BLOCK_SIZE, workers=1)), args.rounds)
        parallel = best(lambda: asyncio.run(hash_files(parts, DEFAULT_BLOCK_SIZE, workers=cores)), args.rounds)

    def rate(seconds: float) -> str:
        return f"{size / seconds / MiB:7.0f} MiB/s"

    print(f"{args.size_mib} MiB, 8 MiB blocks, best of {args.rounds}; {cores} cores")
    print(f"baseline: hashlib SHA-256, one core, in memory: {rate(bare)}")
    print(f"client, one file, one thread:     {rate(one_file)}  = {bare / one_file:.2f} of the baseline (goal >= 0.9)")
    print(f"client, {args.files} files, 1 worker:      {rate(serial)}  = {bare / serial:.2f} of the baseline")
    print(
        f"client, {args.files} files, {cores} workers:     {rate(parallel)}  = {bare / parallel:.2f} of the baseline; "
        f"speed-up over 1 worker {serial / parallel:.2f}x"
    )
    print(
        f"baseline: hashlib SHA-256 in {cores} threads: {rate(bare_parallel)}: speed-up {bare / bare_parallel:.2f}x "
        f"(ideal {cores}x; less when other processes hold cores); the client's speed-up is "
        f"{(serial / parallel) / (bare / bare_parallel):.2f} of it"
    )
    return 0
