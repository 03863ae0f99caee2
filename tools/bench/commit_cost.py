"""What a file sync costs in AWS requests: 10,000 small files uploaded and committed, both ways a client can,
then pulled to a new device.

``batch`` (the sync client's way for files up to ``max_inline_file``): bodies and commit in one request of up
to 1,000 files (``POST /v1/ns/{ns}/files:batch``); the service stores the bodies as one pack (one PutObject)
and commits 98 files to a DynamoDB transaction. Pulled as the sync client pulls small files: the listing,
then ``blobs:fetch`` of 500 bodies at a time (the service reads each pack's range once). ``direct`` (the
way for larger files), measured in the same run for comparison: ``blobs:check`` of 1,000 hashes, one PUT
each straight to S3 with the scoped credentials, commits of 1,000 (the service verifies each new body and
records it, one more transaction action a file); pulled with one GET per file straight from S3.

Counted: the service's AWS requests by service and operation (its /metrics: every attempt, what AWS bills)
plus the client's own S3 requests. Reported: DynamoDB write and read requests per 1,000 files, S3 requests
per file pushed and pulled, and the cost per million files synced (pushed, and pulled to one more device)
at the published on-demand prices below (us-east-1). Baseline: the least any design without packs needs,
one S3 PUT per file and one DynamoDB write per file for its metadata. Budget: at most 0.02 S3 requests per
small file pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

from service.content import ContentDigest, digest_bytes
from service.wire import FileInfo
from tools.bench import BenchParser
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
S3_READ_OPERATIONS = ("HeadObject", "GetObject", "ListObjectsV2", "ListParts")
#: S3 requests per small file pushed, at most (packs).
S3_BUDGET_PER_FILE = 0.02
#: Bodies a fetch asks for, and fetches in flight (as the sync client).
PULL_BATCH = 500
PULLS_IN_FLIGHT = 3


@dataclass(frozen=True, slots=True)
class Pull:
    """Pulling every file to a new device: elapsed time, and the requests it cost (S3's, the client's
    included; DynamoDB's)."""

    files: int
    elapsed: float
    s3_reads: float
    reads: float

    @property
    def s3_per_file(self) -> float:
        return self.s3_reads / self.files

    @property
    def dollars_per_million(self) -> float:
        cost = self.s3_reads / 1000 * S3_GET_PER_1000 + self.reads / 1e6 * DYNAMODB_READ_PER_MILLION
        return cost * 1e6 / self.files


@dataclass(frozen=True, slots=True)
class Cost:
    way: str
    files: int
    elapsed: float
    writes: float
    reads: float
    transactions: float
    s3_writes: float
    s3_reads: float
    blob_records: int
    pull: Pull
    #: Entries the writes put in the table's gsi1 (the children index: one per live file written), each a
    #: write unit of its own (not doubled by the transaction).
    index_entries: int = 0

    @property
    def s3_per_file(self) -> float:
        return (self.s3_writes + self.s3_reads) / self.files

    @property
    def dollars_per_million(self) -> float:
        # Write units: a transaction's items cost two units each: per file its item (and its blob record, if
        # any), per transaction the head and a journal entry of up to 98 changes (about 30 KB, 30 units); and
        # one unit per entry the writes put in an index.
        units = 2 * (self.files + self.blob_records + self.transactions * (1 + 30)) + (self.writes - self.transactions)
        units += self.index_entries
        cost = (
            self.s3_writes / 1000 * S3_PUT_PER_1000
            + self.s3_reads / 1000 * S3_GET_PER_1000
            + units / 1e6 * DYNAMODB_WRITE_PER_MILLION
            + self.reads / 1e6 * DYNAMODB_READ_PER_MILLION
        )
        return cost * 1e6 / self.files


async def measure(api: FileSyncClient, way: str, files: int, batch: int, record_packed: bool = False) -> Cost:
    await api.sign_up(f"bench-{way}", PASSWORD)
    await api.log_in(f"bench-{way}", PASSWORD)
    ns = (await api.account()).home_namespace
    block_size = (await api.config()).block_size
    _, before, _ = await api.request("GET", "/metrics")
    progress = ProgressLine(f"{way}: uploading and committing", files, unit="files")
    started = time.perf_counter()
    client_puts = 0
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        transfer: S3Transfer | None = None
        if way == "direct":
            creds = await api.credentials([ns])
            transfer = await stack.enter_async_context(S3Transfer(creds, block_size, concurrency=16))
        slots = asyncio.Semaphore(16)

        async def put(path: Path, digest: ContentDigest) -> None:
            assert transfer is not None
            async with slots:
                await transfer.upload(ns, path, digest)

        for start in range(0, files, batch):
            count = min(batch, files - start)
            datas = [os.urandom(1024) for _ in range(count)]
            digests = [digest_bytes(data, block_size) for data in datas]
            names = [f"f{start + i:06d}.bin" for i in range(count)]
            entries: list[dict[str, object]] = [
                {"path": name, "content_hash": d.content_hash, "size": d.size, "mtime": 1.0}
                for name, d in zip(names, digests, strict=True)
            ]
            if way == "batch":
                await api.upload_batch(ns, entries, datas, idempotency_key=uuid.uuid4().hex)
            else:
                paths = [Path(tmp) / name for name in names]
                for path, data in zip(paths, datas, strict=True):
                    path.write_bytes(data)
                missing = set(await api.missing(ns, [d.content_hash for d in digests]))
                todo = [(p, d) for p, d in zip(paths, digests, strict=True) if d.content_hash in missing]
                await asyncio.gather(*(put(p, d) for p, d in todo))
                client_puts += len(todo)
                await api.commit(ns, entries)
            progress(count)
    elapsed = time.perf_counter() - started
    _, after, _ = await api.request("GET", "/metrics")
    used = _counter(before, after)
    pull = await measure_pull(api, way, ns, block_size, files)
    return Cost(
        way,
        files,
        elapsed,
        writes=used("dynamodb", WRITE_OPERATIONS),
        reads=used("dynamodb", READ_OPERATIONS),
        transactions=used("dynamodb", ("TransactWriteItems",)),
        s3_writes=client_puts + used("s3", S3_WRITE_OPERATIONS),
        s3_reads=used("s3", S3_READ_OPERATIONS),
        blob_records=files if way == "direct" or record_packed else 0,
        index_entries=files,
        pull=pull,
    )


def _counter(before: bytes, after: bytes) -> Callable[[str, tuple[str, ...]], float]:
    text_before, text_after = before.decode(), after.decode()

    def used(service: str, operations: tuple[str, ...]) -> float:
        return sum(
            sample(text_after, "filesync_aws_requests_total", service=service, operation=op)
            - sample(text_before, "filesync_aws_requests_total", service=service, operation=op)
            for op in operations
        )

    return used


async def measure_pull(api: FileSyncClient, way: str, ns: str, block_size: int, files: int) -> Pull:
    """Every file of ``ns`` to a new device, checked against its hash: the listing, then the bodies as the
    sync client takes them (``blobs:fetch`` for small files; S3 GETs with credentials for the direct way,
    as any file of the old layout)."""
    _, before, _ = await api.request("GET", "/metrics")
    progress = ProgressLine(f"{way}: pulling to a new device", files, unit="files")
    started = time.perf_counter()
    listed = await api.list_files(ns)
    client_gets = 0
    async with contextlib.AsyncExitStack() as stack:
        if way == "direct":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            creds = await api.credentials([ns])
            transfer = await stack.enter_async_context(S3Transfer(creds, block_size, concurrency=16))
            slots = asyncio.Semaphore(16)

            async def get(info: FileInfo) -> None:
                async with slots:
                    target = tmp / info.content_hash
                    await transfer.download(ns, info.content_hash, info.size, target, version_id=info.body_version)
                    if digest_bytes(target.read_bytes(), block_size).content_hash != info.content_hash:
                        raise RuntimeError(f"{info.path} does not match its hash")
                    target.unlink()
                    progress(1)

            await asyncio.gather(*(get(info) for info in listed))
            client_gets = len(listed)
        else:
            slots = asyncio.Semaphore(PULLS_IN_FLIGHT)

            async def fetch(chunk: list[FileInfo]) -> None:
                async with slots:
                    async for got in api.fetch(ns, chunk):
                        info = chunk[got.index]
                        if got.data is None or digest_bytes(got.data, block_size).content_hash != info.content_hash:
                            raise RuntimeError(f"{info.path} did not come whole: {got.problem}")
                        progress(1)

            chunks = [listed[i : i + PULL_BATCH] for i in range(0, len(listed), PULL_BATCH)]
            await asyncio.gather(*(fetch(chunk) for chunk in chunks))
    elapsed = time.perf_counter() - started
    _, after, _ = await api.request("GET", "/metrics")
    used = _counter(before, after)
    return Pull(
        len(listed),
        elapsed,
        s3_reads=client_gets + used("s3", S3_READ_OPERATIONS),
        reads=used("dynamodb", READ_OPERATIONS),
    )


async def run(files: int, batch: int, record_packed: bool) -> None:
    env = {"FILESYNC_RECORD_PACKED": "true"} if record_packed else None
    async with stack(service_env=env) as running, FileSyncClient(running.service, timeout=600) as api:
        costs = [await measure(api, way, files, batch, record_packed) for way in ("batch", "direct")]
    floor = (S3_PUT_PER_1000 / 1000 + 1 / 1e6 * DYNAMODB_WRITE_PER_MILLION) * 1e6
    packed = "with a record per packed content (FILESYNC_RECORD_PACKED)" if record_packed else "packs"
    print(f"commit_cost: {files:,} files of 1 KiB, distinct content, {batch:,} a request; {packed}")
    for cost in costs:
        per_k = 1000 / cost.files
        pull = cost.pull
        print(f"  {cost.way}: {cost.elapsed:.1f} s pushing, {pull.elapsed:.1f} s pulling")
        print(
            f"    DynamoDB: {cost.writes * per_k:.1f} write requests per 1,000 files "
            f"({cost.transactions:.0f} TransactWriteItems of {cost.writes:.0f} writes); "
            f"{cost.reads * per_k:.1f} read requests per 1,000"
        )
        print(
            f"    S3: {cost.s3_per_file:.2f} requests per file ({cost.s3_writes:.0f} writes, "
            f"{cost.s3_reads:.0f} reads: verification)"
        )
        print(
            f"    pull: S3 {pull.s3_per_file:.4f} requests per file ({pull.s3_reads:.0f} GETs); DynamoDB "
            f"{pull.reads * per_k:.1f} read requests per 1,000"
        )
        if cost.way == "batch":  # the budget is for small files, which go in batches
            within = "within" if cost.s3_per_file <= S3_BUDGET_PER_FILE else "OVER"
            print(f"    S3 per small file pushed: {cost.s3_per_file:.4f} ({within} the budget of {S3_BUDGET_PER_FILE})")
        print(
            f"    cost per million files synced: ${cost.dollars_per_million:,.2f} pushed "
            f"(ratio to the baseline {cost.dollars_per_million / floor:.2f}), ${pull.dollars_per_million:,.4f} "
            f"pulled to a device; ${cost.dollars_per_million + pull.dollars_per_million:,.2f} both"
        )
    print(
        f"  prices: S3 ${S3_PUT_PER_1000}/1k PUT, ${S3_GET_PER_1000}/1k GET; DynamoDB "
        f"${DYNAMODB_WRITE_PER_MILLION}/M write units, ${DYNAMODB_READ_PER_MILLION}/M read units; "
        "journal items counted as 30 units, a file's children-index entry as 1"
    )
    print(f"  baseline: one PUT and one metadata write per file: ${floor:,.2f} per million")
    batch_cost, direct_cost = costs
    print(f"  batch / direct cost: {batch_cost.dollars_per_million / direct_cost.dollars_per_million:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench commit_cost", __doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--record-packed", action="store_true", help="the service with FILESYNC_RECORD_PACKED (a record per content)"
    )
    args = parser.parse_args(argv)
    uvloop.run(run(args.files, args.batch, args.record_packed))
    return 0
