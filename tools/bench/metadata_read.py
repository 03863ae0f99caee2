"""What our stack costs on an authenticated metadata read, against two baselines measured in the same run.

The read: ``GET /v1/account`` with a bearer token (token check, one consistent DynamoDB ``GetItem`` of the
user's profile, JSON rendering, the middlewares and metrics), from ``python -m service`` in its own process
against an emulator in another. Baselines, over the same loopback with the same kind of client:

- a raw aiohttp handler answering ``hello`` in a process of its own on uvloop (what any aiohttp request
  costs: the ratio says what our stack adds), and
- the bare ``GetItem`` the read makes, sent straight to the same emulator with the service's client
  settings (the ratio is the service's overhead over the call it makes; goal <= 1.5).

One request at a time (latency, not throughput), the contenders interleaved in ``--rounds`` rounds so that
noise from other processes falls on all of them; reported: median and mean, and the DynamoDB requests per
read from the service's /metrics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web

from service.aws.clients import open_clients
from service.aws.items import key
from service.metrics import Metrics
from tools.bench import BenchParser
from tools.bench.compare import sample
from tools.bench.harness import clean_env, free_port, process, stack, wait_http
from tools.sdk.client import FileSyncClient

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway emulator


def serve_hello(port: int) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


async def timed(call: Callable[[], Awaitable[object]], n: int, into: list[float]) -> None:
    for _ in range(n):
        started = time.perf_counter()
        await call()
        into.append(time.perf_counter() - started)


async def run(requests: int, rounds: int) -> None:
    hello_port = free_port()
    with process([sys.executable, "-m", "tools.bench.metadata_read", "--serve-hello", str(hello_port)], clean_env()):
        hello_url = f"http://127.0.0.1:{hello_port}/"
        await wait_http(hello_url)
        async with stack() as running:
            async with FileSyncClient(running.service) as api:
                await api.sign_up("bench", PASSWORD)
                token = (await api.log_in("bench", PASSWORD)).access_token
            account_url = running.service + "/v1/account"
            headers = {"Authorization": f"Bearer {token}"}
            settings = running.settings
            async with aiohttp.ClientSession() as http, open_clients(settings.aws, Metrics()) as clients:

                async def hello() -> None:
                    async with http.get(hello_url) as response:
                        await response.read()

                async def ours() -> None:
                    async with http.get(account_url, headers=headers) as response:
                        if response.status != 200:
                            raise RuntimeError(f"GET /v1/account: {response.status}")
                        await response.read()

                async def get_item() -> None:
                    await clients.dynamodb.get_item(
                        TableName=settings.table, Key=key("USER#bench", "PROFILE"), ConsistentRead=True
                    )

                contenders = {"hello": hello, "ours": ours, "get_item": get_item}
                samples: dict[str, list[float]] = {name: [] for name in contenders}
                for call in contenders.values():  # warm up: connections, code paths, the emulator's tables
                    await timed(call, 50, [])
                warm = await _metrics(http, running.service)
                for round_ in range(rounds):
                    sys.stderr.write(f"\rround {round_ + 1}/{rounds} ")
                    for name, call in contenders.items():
                        await timed(call, requests // rounds, samples[name])
                sys.stderr.write("\n")
                after = await _metrics(http, running.service)
    reads = len(samples["ours"])
    get_items = sample(after, "filesync_aws_requests_total", service="dynamodb", operation="GetItem") - sample(
        warm, "filesync_aws_requests_total", service="dynamodb", operation="GetItem"
    )
    median = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    mean = {name: statistics.fmean(values) * 1e3 for name, values in samples.items()}
    print(f"{reads:,} requests each, one at a time, in {rounds} interleaved rounds (ms: median / mean)")
    print(f"GET /v1/account (token, GetItem, JSON): {median['ours']:6.3f} / {mean['ours']:6.3f}")
    print(f"  DynamoDB GetItem per read: {get_items / reads:.2f}")
    print(f"baseline: raw aiohttp 'hello' handler:  {median['hello']:6.3f} / {mean['hello']:6.3f}")
    print(f"baseline: bare DynamoDB GetItem:        {median['get_item']:6.3f} / {mean['get_item']:6.3f}")
    print(
        f"ours / hello (what our stack costs): {median['ours'] / median['hello']:.2f}x median, "
        f"{mean['ours'] / mean['hello']:.2f}x mean"
    )
    print(
        f"ours / bare GetItem (service overhead, goal <= 1.5): {median['ours'] / median['get_item']:.2f}x median, "
        f"{mean['ours'] / mean['get_item']:.2f}x mean"
    )
    print(f"the service's own time per read (ours - bare GetItem): {median['ours'] - median['get_item']:.3f} ms median")


async def _metrics(http: aiohttp.ClientSession, service: str) -> str:
    async with http.get(service + "/metrics") as response:
        return await response.text()


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench metadata_read", __doc__)
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per contender")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve-hello", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return 0
    uvloop.run(run(args.requests, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
