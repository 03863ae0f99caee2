"""Compare of a large manifest: DynamoDB requests and server time per 1,000 entries.

A namespace of ``--files`` files (default 100,000) is bulk-loaded into the table (metadata only: the
compare never reads bodies). The client sends its full manifest, every entry up to date, in pages of
5,000 sorted by path key, as the sync client does. Reported from the service's own /metrics: DynamoDB
requests by operation and the service's time in the compare handler. Baseline measured in the same run:
a bare paginated Query of the namespace's file items straight to the same emulator, i.e. the least any
compare could read.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import orjson
import uvloop

from service.aws.clients import open_clients
from service.aws.files import DynamoJournal, file_item
from service.content import digest_bytes
from service.core.models import FileVersion
from service.metrics import Metrics
from service.paths import path_key
from tools.bench import BenchParser
from tools.bench.harness import ProgressLine, RssSampler, stack
from tools.sdk.client import FileSyncClient

PAGE = 5000


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def bulk_load(settings: Any, ns: str, paths: list[str], content_hash: str, size: int = 5) -> None:
    progress = ProgressLine("bulk-loading metadata", len(paths), unit="files")
    async with open_clients(settings.aws, Metrics()) as clients:
        slots = asyncio.Semaphore(8)

        async def batch(chunk: list[str]) -> None:
            async with slots:
                requests: Any = [
                    {
                        "PutRequest": {
                            "Item": file_item(
                                ns,
                                path_key(p),
                                FileVersion(
                                    p,
                                    uuid.uuid4().hex,
                                    1,
                                    content_hash,
                                    size,
                                    0.0,
                                    False,
                                    "bench",
                                    0.0,
                                    1,
                                    None,
                                    8 << 20,
                                ),
                            )
                        }
                    }
                    for p in chunk
                ]
                pending: Any = {settings.table: requests}
                while pending:
                    response = await clients.dynamodb.batch_write_item(RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
                progress(len(chunk))

        await asyncio.gather(*(batch(paths[i : i + 25]) for i in range(0, len(paths), 25)))


async def bare_query(settings: Any, ns: str) -> tuple[float, int, int]:
    metrics = Metrics()
    async with open_clients(settings.aws, metrics) as clients:
        journal = DynamoJournal(clients.dynamodb, settings.table)
        started = time.perf_counter()
        count = 0
        async for _ in journal.files_in_range(ns, None, None):
            count += 1
        elapsed = time.perf_counter() - started
    requests = sample(metrics.render().decode(), "filesync_aws_requests_total", operation="Query")
    return elapsed, count, int(requests)


async def run(files: int, baseline: bool = True) -> None:
    async with stack() as running:
        async with FileSyncClient(running.service, timeout=600) as api:
            await api.sign_up("bench", "benchmark password")
            await api.log_in("bench", "benchmark password")
            ns = (await api.account()).home_namespace
            body = b"hello"
            content_hash = digest_bytes(body).content_hash
            paths = [f"dir{i % 100:02d}/sub{i % 7}/file-{i:07d}.txt" for i in range(files)]
            await bulk_load(running.settings, ns, paths, content_hash)
            manifest = sorted(
                (
                    path_key(p),
                    {"path": p, "content_hash": content_hash, "synced_rev": 1, "synced_hash": content_hash},
                )
                for p in paths
            )
            _, before, _ = await api.request("GET", "/metrics")
            progress = ProgressLine("compare", files, unit="entries")
            async with RssSampler(running.service_pid) as rss:
                started = time.perf_counter()
                after, needing, up_to_date = None, 0, 0
                for start in range(0, files, PAGE):
                    page = manifest[start : start + PAGE]
                    through = None if start + PAGE >= files else page[-1][0]
                    _, payload, _ = await api.request(
                        "POST",
                        f"/v1/ns/{ns}/compare",
                        json={"entries": [e for _, e in page], "after": after, "through": through},
                    )
                    result = orjson.loads(payload)
                    needing += len(result["items"])
                    up_to_date += result["up_to_date"]
                    after = through
                    progress(len(page))
                wall = time.perf_counter() - started
            _, metrics_after, _ = await api.request("GET", "/metrics")
        bare = await bare_query(running.settings, ns) if baseline else None
    text_before, text_after = before.decode(), metrics_after.decode()
    operations = ("Query", "GetItem", "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "PutItem")
    used = {
        op: sample(text_after, "filesync_aws_requests_total", service="dynamodb", operation=op)
        - sample(text_before, "filesync_aws_requests_total", service="dynamodb", operation=op)
        for op in operations
    }
    route = "/v1/ns/{ns}/compare"
    server = sample(text_after, "filesync_http_request_duration_seconds_sum", route=route) - sample(
        text_before, "filesync_http_request_duration_seconds_sum", route=route
    )
    total_requests = sum(used.values())
    per_1000 = total_requests / files * 1000
    pages = -(-files // PAGE)
    print(f"namespace of {files:,} files; manifest of {files:,} entries in {pages} pages of {PAGE:,}")
    print(f"answer: {up_to_date:,} up to date, {needing:,} needing action")
    detail = ", ".join(f"{op} {int(n)}" for op, n in used.items() if n)
    print(f"DynamoDB requests: {detail} = {int(total_requests)} ({per_1000:.1f} per 1,000 entries)")
    print(f"  (the budget: well under N/100 = {files // 100:,})")
    print(f"service time in compare: {server:.2f} s = {server / files * 1e6:.1f} ms per 1,000 entries")
    print(f"client wall time: {wall:.2f} s")
    print(f"service RSS: {rss.baseline / 2**20:.0f} MiB before, peak {rss.peak / 2**20:.0f} MiB during the compare")
    if bare is None:
        print("baseline: skipped (--no-baseline)")
        return
    bare_time, bare_items, bare_pages = bare
    print(f"baseline: bare Query of the namespace: {bare_time:.2f} s, {bare_items:,} items, {bare_pages} requests")
    print(f"  = {bare_time / bare_items * 1e6:.1f} ms per 1,000; service / bare = {server / bare_time:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench compare", __doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the bare Query baseline (it reads the whole namespace once more; its ratio does not depend on size)",
    )
    args = parser.parse_args(argv)
    uvloop.run(run(args.files, args.baseline))
    return 0
