"""A no-change poll of the change feed: service requests, DynamoDB requests and milliseconds per poll.

A namespace gets ``--commits`` commits (``--files`` files each) through the API, then a client that is up
to date polls ``GET /v1/ns/{ns}/changes?cursor=<head>`` ``--polls`` times, one at a time, as a sync client
with nothing to do does. Reported from the service's /metrics: DynamoDB requests per poll by operation
(the budget: one service request and at most two DynamoDB requests) and the service's time per poll;
from the client: median and mean latency. Baseline in the same run: the same DynamoDB reads the poll
makes (membership, and the journal from the cursor's own entry), sent one after another straight to the
same emulator with the service's adapters, so the ratio is the service's overhead over its own reads.
"""

from __future__ import annotations

import statistics
import sys
import time

import uvloop

from service.aws.clients import open_clients
from service.aws.files import DynamoJournal
from service.aws.identity import DynamoIdentityStore
from service.core.sync import decode_cursor
from service.metrics import Metrics
from service.settings import Settings
from tools.bench import BenchParser
from tools.bench.compare import sample
from tools.bench.harness import stack
from tools.sdk.client import FileSyncClient

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway emulator
_DYNAMODB_OPERATIONS = ("GetItem", "Query", "BatchGetItem", "Scan")


async def run(commits: int, files: int, polls: int) -> None:
    async with stack() as running, FileSyncClient(running.service, timeout=600) as api:
        await api.sign_up("bench", PASSWORD)
        await api.log_in("bench", PASSWORD)
        ns = (await api.account()).home_namespace
        blob = await api.put_stream(ns, "seed.txt", b"hello")
        for c in range(commits):
            sys.stderr.write(f"\rcommitting {c + 1}/{commits} ")
            entries = [
                {"path": f"dir{c:03d}/file-{i:03d}.txt", "content_hash": blob.content_hash, "size": blob.size}
                for i in range(files)
            ]
            await api.commit(ns, entries)
        sys.stderr.write("\n")
        cursor = (await api.compare(ns, {"entries": []})).cursor
        for _ in range(50):  # warm up
            await api.changes(ns, cursor)
        _, before, _ = await api.request("GET", "/metrics")
        latencies = []
        for i in range(polls):
            started = time.perf_counter()
            page = await api.changes(ns, cursor)
            latencies.append(time.perf_counter() - started)
            if page.changes or page.cursor != cursor:
                raise RuntimeError("the feed reported a change where there was none")
            if i % 100 == 0:
                sys.stderr.write(f"\rpolling {i}/{polls} ")
        sys.stderr.write("\n")
        _, after, _ = await api.request("GET", "/metrics")
        bare = await bare_reads(running.settings, ns, decode_cursor(cursor), polls)
    text_before, text_after = before.decode(), after.decode()

    def delta(name: str, **labels: str) -> float:
        return sample(text_after, name, **labels) - sample(text_before, name, **labels)

    route = "/v1/ns/{ns}/changes"
    requests = delta("filesync_http_requests_total", route=route)
    used = {op: delta("filesync_aws_requests_total", service="dynamodb", operation=op) for op in _DYNAMODB_OPERATIONS}
    service_ms = delta("filesync_http_request_duration_seconds_sum", route=route) / polls * 1e3
    median, mean = statistics.median(latencies) * 1e3, statistics.fmean(latencies) * 1e3
    bare_median, bare_mean = statistics.median(bare) * 1e3, statistics.fmean(bare) * 1e3
    per_poll = sum(used.values()) / polls
    print(f"namespace of {commits * files:,} files in {commits} commits; {polls:,} no-change polls, one at a time")
    print(f"service requests per poll: {requests / polls:.2f}")
    detail = ", ".join(f"{op} {n / polls:.2f}" for op, n in used.items() if n)
    print(f"DynamoDB requests per poll: {per_poll:.2f} ({detail}); budget: at most 2")
    print(f"client latency: {median:.2f} ms median, {mean:.2f} ms mean; service time {service_ms:.2f} ms per poll")
    print(f"baseline: the same DynamoDB reads, bare: {bare_median:.2f} ms median, {bare_mean:.2f} ms mean")
    print(f"poll / bare reads: {median / bare_median:.2f}x median, {mean / bare_mean:.2f}x mean")


async def bare_reads(settings: Settings, ns: str, seq: int, polls: int) -> list[float]:
    async with open_clients(settings.aws, Metrics()) as clients:
        identity = DynamoIdentityStore(clients.dynamodb, settings.table)
        journal = DynamoJournal(clients.dynamodb, settings.table)

        async def reads() -> None:
            await identity.get_membership(ns, "bench")
            await journal.since(ns, seq - 1, 102)  # from the cursor's own entry; the SDK polls 100 a page

        for _ in range(50):
            await reads()
        times = []
        for _ in range(polls):
            started = time.perf_counter()
            await reads()
            times.append(time.perf_counter() - started)
        return times


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench feed_poll", __doc__)
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--files", type=int, default=20, help="files per commit")
    parser.add_argument("--polls", type=int, default=1000)
    args = parser.parse_args(argv)
    uvloop.run(run(args.commits, args.files, args.polls))
    return 0
