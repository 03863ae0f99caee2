"""What a file sync costs in AWS requests: 10,000 small files uploaded and committed the way the sync client does.

Each file (1 KiB, distinct content) is checked (``blobs:check``, 1,000 hashes a request), uploaded straight to S3
with the scoped credentials (one PutObject), and committed in batches of 1,000. Counted: the service's AWS
requests by service and operation (its /metrics: every attempt, what AWS bills) plus the client's own S3 PUTs.
Reported: DynamoDB write and read requests per 1,000 files, S3 requests per file, and the cost per million files
synced at the published on-demand prices below (us-east-1). Baseline, in the same run: the least any design
needs, one S3 PUT per file and one DynamoDB write per file for its metadata.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import uvloop

from service.content import ContentDigest, digest_bytes
from tools.bench.compare import sample
from tools.bench.harness import ProgressLine, stack
from tools.sdk.client import FileSyncClient
from tools.sdk.transfer import S3Transfer

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway emulator
#: Published on-demand prices, us-east-1 (USD), as of 2026: S3 Standard PUT/COPY/POST/LIST per 1,000 requests,
#: GET/HEAD per 1,000; DynamoDB per million write and read request units (a request counted as one unit:
#: items under 1 KB; transactional writes cost two units per item, added below).
S3_PUT_PER_1000 = 0.005
S3_GET_PER_1000 = 0.0004
DYNAMODB_WRITE_PER_MILLION = 0.625
DYNAMODB_READ_PER_MILLION = 0.125
WRITE_OPERATIONS = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
READ_OPERATIONS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")
S3_WRITE_OPERATIONS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject")


async def run(files: int, batch: int) -> None:
    async with stack() as running, FileSyncClient(running.service, timeout=600) as api:
        await api.sign_up("bench", PASSWORD)
        await api.log_in("bench", PASSWORD)
        ns = (await api.account()).home_namespace
        block_size = (await api.config()).block_size
        _, before, _ = await api.request("GET", "/metrics")
        progress = ProgressLine("uploading and committing", files, unit="files")
        started = time.perf_counter()
        client_puts = 0
        with tempfile.TemporaryDirectory() as tmp:
            creds = await api.credentials([ns])
            async with S3Transfer(creds, block_size, concurrency=16) as transfer:
                slots = asyncio.Semaphore(16)

                async def put(path: Path, digest: ContentDigest) -> None:
                    async with slots:
                        await transfer.upload(ns, path, digest)

                for start in range(0, files, batch):
                    count = min(batch, files - start)
                    paths = [Path(tmp) / f"f{start + i:06d}.bin" for i in range(count)]
                    digests = []
                    for path in paths:
                        data = os.urandom(1024)
                        path.write_bytes(data)
                        digests.append(digest_bytes(data, block_size))
                    missing = set(await api.missing(ns, [d.content_hash for d in digests]))
                    todo = [(p, d) for p, d in zip(paths, digests, strict=True) if d.content_hash in missing]
                    await asyncio.gather(*(put(p, d) for p, d in todo))
                    client_puts += len(todo)
                    entries = [
                        {"path": p.name, "content_hash": d.content_hash, "size": d.size, "mtime": 1.0}
                        for p, d in zip(paths, digests, strict=True)
                    ]
                    await api.commit(ns, entries)
                    progress(count)
        elapsed = time.perf_counter() - started
        _, after, _ = await api.request("GET", "/metrics")

    def used(service: str, operations: tuple[str, ...]) -> float:
        text_before, text_after = before.decode(), after.decode()
        return sum(
            sample(text_after, "filesync_aws_requests_total", service=service, operation=op)
            - sample(text_before, "filesync_aws_requests_total", service=service, operation=op)
            for op in operations
        )

    writes, reads = used("dynamodb", WRITE_OPERATIONS), used("dynamodb", READ_OPERATIONS)
    transactions = used("dynamodb", ("TransactWriteItems",))
    s3_service_writes = used("s3", S3_WRITE_OPERATIONS)
    s3_service_reads = used("s3", ("HeadObject", "GetObject", "ListObjectsV2", "ListParts"))
    s3_per_file = (client_puts + s3_service_writes + s3_service_reads) / files
    per_k = 1000 / files
    # Units: a transaction's items cost two units each: per file its item and its blob record (each under
    # 1 KB), per transaction the head and a journal entry of up to 98 changes (about 30 KB).
    write_units = 2 * (2 * files + transactions * (1 + 30)) + (writes - transactions)
    cost = (
        (client_puts + s3_service_writes) / 1000 * S3_PUT_PER_1000
        + s3_service_reads / 1000 * S3_GET_PER_1000
        + write_units / 1e6 * DYNAMODB_WRITE_PER_MILLION
        + reads / 1e6 * DYNAMODB_READ_PER_MILLION
    ) * (1e6 / files)
    floor = (S3_PUT_PER_1000 / 1000 + 1 / 1e6 * DYNAMODB_WRITE_PER_MILLION) * 1e6
    print(f"commit_cost: {files} files of 1 KiB, distinct content, commits of {batch}: {elapsed:.1f} s")
    print(
        f"  DynamoDB: {writes:.0f} write requests = {writes * per_k:.1f} per 1,000 files "
        f"({transactions:.0f} TransactWriteItems); {reads:.0f} read requests = {reads * per_k:.1f} per 1,000"
    )
    print(
        f"  S3: {s3_per_file:.2f} requests per file ({client_puts} client PUTs, "
        f"{s3_service_writes:.0f} service writes, {s3_service_reads:.0f} service reads: verification)"
    )
    print(f"  cost per million files synced: ${cost:,.2f} (S3 ${S3_PUT_PER_1000}/1k PUT, ${S3_GET_PER_1000}/1k GET;")
    print(
        f"    DynamoDB ${DYNAMODB_WRITE_PER_MILLION}/M write units, ${DYNAMODB_READ_PER_MILLION}/M read units; "
        "journal items counted as 30 units)"
    )
    print(f"  baseline: one PUT and one metadata write per file: ${floor:,.2f} per million (ratio {cost / floor:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench commit_cost", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    uvloop.run(run(args.files, args.batch))
    return 0
